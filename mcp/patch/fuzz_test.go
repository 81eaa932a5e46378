package patch

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// Seed corpora live in testdata/fuzz/FuzzParse and testdata/fuzz/FuzzApply:
// the git fixtures' patches and hand-written edge cases.

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fps, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if fps != nil {
				t.Fatalf("Parse returned file patches and an error")
			}
			if n := bytes.Count(data, []byte("\n")) + 1; pe.Line < 0 || pe.Line > n+1 {
				t.Fatalf("error on line %d of a %d-line patch: %v", pe.Line, n, err)
			}
			return
		}
		checkFilePatches(t, fps)
	})
}

// checkFilePatches checks what Parse promises of its output.
func checkFilePatches(t *testing.T, fps []FilePatch) {
	t.Helper()
	if len(fps) == 0 {
		t.Fatal("Parse succeeded with no file patches")
	}
	for i, fp := range fps {
		if fp.Op < OpModify || fp.Op > OpCopy {
			t.Fatalf("file %d: op %v", i, fp.Op)
		}
		if (fp.Op == OpAdd) != (fp.OldPath == "") || (fp.Op == OpDelete) != (fp.NewPath == "") {
			t.Fatalf("file %d: %v with paths %q, %q", i, fp.Op, fp.OldPath, fp.NewPath)
		}
		for _, p := range []string{fp.OldPath, fp.NewPath} {
			if c, err := CleanPath(p); p != "" && (err != nil || c != p) {
				t.Fatalf("file %d: path %q is not clean: %q, %v", i, p, c, err)
			}
		}
		if fp.Op == OpModify && fp.OldPath != fp.NewPath {
			t.Fatalf("file %d: modify from %q to %q", i, fp.OldPath, fp.NewPath)
		}
		prevEnd := 0
		for j, h := range fp.Hunks {
			var o, n int
			for _, l := range h.Lines {
				switch l.Kind {
				case LineContext:
					o++
					n++
				case LineRemoved:
					o++
				case LineAdded:
					n++
				default:
					t.Fatalf("file %d hunk %d: line kind %q", i, j, l.Kind)
				}
			}
			if o != h.OldLines || n != h.NewLines {
				t.Fatalf("file %d hunk %d: %s has %d old and %d new lines", i, j, h.Header(), o, n)
			}
			if fp.Op == OpAdd && o != 0 || fp.Op == OpDelete && n != 0 {
				t.Fatalf("file %d hunk %d: %v with %d old and %d new lines", i, j, fp.Op, o, n)
			}
			begin := h.OldStart
			if h.OldLines > 0 {
				begin--
			}
			if begin < prevEnd {
				t.Fatalf("file %d hunk %d: overlaps the previous hunk", i, j)
			}
			prevEnd = begin + h.OldLines
		}
	}
}

// fuzzFS is the workspace FuzzApply patches.
var fuzzFS = memFS{
	"a.txt":     {data: "one\ntwo\nthree\nfour\nfive\nsix\nseven\n", mode: 0o644},
	"crlf.txt":  {data: "x\r\ny\r\nz\r\n", mode: 0o644},
	"noeol.txt": {data: "p\nq", mode: 0o644},
	"empty":     {data: "", mode: 0o644},
	"dir/b.txt": {data: "b\n\nb\n", mode: 0o644},
	"run.sh":    {data: "#!/bin/sh\necho hi\n", mode: 0o755},
}

func FuzzApply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fps, err := Parse(data)
		if err != nil {
			return
		}
		res, err := Apply(fuzzFS, fps)
		if res == nil || len(res.Files) != len(fps) {
			t.Fatalf("result %+v for %d file patches", res, len(fps))
		}
		res2, err2 := Apply(fuzzFS, fps)
		if !reflect.DeepEqual(res.Changes, res2.Changes) || (err == nil) != (err2 == nil) {
			t.Fatal("Apply is not deterministic")
		}
		if err != nil {
			if !errors.Is(err, ErrNotApplied) || res.Changes != nil {
				t.Fatalf("failure %v with changes %+v", err, res.Changes)
			}
			failed := false
			for _, f := range res.Files {
				failed = failed || f.Err != nil
			}
			if !failed {
				t.Fatalf("Apply failed (%v) but no file did", err)
			}
			return
		}
		for i, f := range res.Files {
			if f.Err != nil || f.HunksApplied != f.HunksTotal || f.HunksTotal != len(fps[i].Hunks) || len(f.Hunks) != f.HunksTotal {
				t.Fatalf("Apply succeeded but file %d reports %s", i, f.String())
			}
		}
		for _, c := range res.Changes {
			orig, existed := fuzzFS[c.Path]
			switch {
			case c.Op == OpAdd && existed, c.Op != OpAdd && !existed:
				t.Fatalf("%v of %s, which existed: %v", c.Op, c.Path, existed)
			case c.Op == OpModify && string(c.Content) == orig.data && c.Mode == orig.mode:
				t.Fatalf("modify of %s changes nothing", c.Path)
			case c.Op != OpDelete && (c.Content == nil || c.Mode&^0o777 != 0 || c.Mode == 0):
				t.Fatalf("%v of %s with content %v, mode %v", c.Op, c.Path, c.Content != nil, c.Mode)
			}
			if p, err := CleanPath(c.Path); err != nil || p != c.Path {
				t.Fatalf("change path %q is not clean", c.Path)
			}
		}
		perform(t, fuzzFS, res.Changes) // fails on duplicate or inconsistent changes
	})
}
