package treediff

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// FuzzLineDiff checks the line diff on any two texts: its hunks, applied
// to the old text by a strict applier, give the new text; the counts
// match the hunks; and for small inputs the diff is minimal.
func FuzzLineDiff(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), []byte("a\nc\nd\n"), uint8(3))
	f.Add([]byte("x"), []byte("x\n"), uint8(0))
	f.Add([]byte("one\r\ntwo\r\n"), []byte("one\r\ntwo\n"), uint8(1))
	f.Add([]byte(""), []byte("new\n"), uint8(3))
	f.Add([]byte("a\x00b\nc"), []byte(""), uint8(7))
	f.Add([]byte(numbered(1, 30)), []byte(strings.Replace(numbered(1, 30), "line 9\n", "", 1)), uint8(3))
	f.Fuzz(func(t *testing.T, a, b []byte, ctx uint8) {
		context := int(ctx % 8)
		if ctx&0x80 != 0 {
			// Also exercise the out-of-budget fallback.
			old := diffWorkBase
			diffWorkBase = -int(ctx&0x7f) * 4
			defer func() { diffWorkBase = old }()
		}
		d := diffLines(a, b)
		var w bytes.Buffer
		d.writeHunks(&w, context)
		got, err := applyHunks(string(a), w.String())
		if err != nil {
			t.Fatalf("hunks do not apply: %v\n%s", err, w.Bytes())
		}
		if got != string(b) {
			t.Fatalf("applied hunks give %q, want %q\n%s", got, b, w.Bytes())
		}
		ins, del := d.counts()
		if n := bytes.Count(w.Bytes(), []byte("\n+")); n != ins { // hunks start with "@@"
			t.Fatalf("%d insertions counted, %d in the hunks", ins, n)
		}
		if (w.Len() == 0) != bytes.Equal(a, b) {
			t.Fatalf("empty patch %v for equal=%v", w.Len() == 0, bytes.Equal(a, b))
		}
		if ctx&0x80 == 0 && len(d.a)*len(d.b) < 1<<16 {
			if want := len(d.a) + len(d.b) - 2*lcs(d.a, d.b); ins+del != want {
				t.Fatalf("%d edits, minimal is %d", ins+del, want)
			}
		}
	})
}

// FuzzDiffTar feeds any bytes to Diff as the current tree. It must never
// panic; when it succeeds, the result is sorted and, for text changes,
// its patch turns the baseline into exactly the tree IndexTar reads from
// the same bytes.
func FuzzDiffTar(f *testing.F) {
	base, cur := sinkTrees(true)
	baseTar := mkTar(f, base...)
	blobs := MemBlobs{}
	ix, err := IndexTar(bytes.NewReader(baseTar), blobs)
	if err != nil {
		f.Fatal(err)
	}
	baseView := make(map[string]gitFile)
	for _, e := range ix.Entries() {
		if v, ok := viewOf(&e, blobs); ok {
			baseView[e.Path] = v
		}
	}
	f.Add(mkTar(f, cur...), uint8(0))
	f.Add(baseTar, uint8(1))
	f.Add(mkTar(f), uint8(2))
	f.Add(mkTar(f, file("a/../../x", "y")), uint8(3))
	f.Add([]byte("garbage"), uint8(4))
	full := mkTar(f, cur...)
	f.Add(full[:len(full)/2], uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, o uint8) {
		opts := Options{Context: int(o%5) - 1, MaxFileBytes: 64 << (o % 4), MaxPatchBytes: 1 << (8 + o%16)}
		if o&0x80 != 0 {
			opts.Prefix = "src"
		}
		r, err := Diff(ix, blobs, bytes.NewReader(data), opts)
		if err != nil {
			return
		}
		if !slices.IsSortedFunc(r.Files, func(a, b FileDiff) int { return strings.Compare(a.Path, b.Path) }) {
			t.Fatal("files not sorted")
		}
		if r.Truncated || opts.Prefix != "" {
			return
		}
		curBlobs := MemBlobs{}
		cix, err := IndexTar(bytes.NewReader(data), curBlobs)
		if err != nil {
			t.Fatalf("Diff took the archive, IndexTar did not: %v", err)
		}
		want := make(map[string]gitFile)
		for _, e := range cix.Entries() {
			if v, ok := viewOf(&e, curBlobs); ok {
				want[e.Path] = v
			}
		}
		// The patch has no binary data: leave binary paths out of it, and
		// expect them as they were.
		binary := make(map[string]bool)
		for _, fd := range r.Files {
			if fd.Binary {
				binary[fd.Path] = true
				delete(want, fd.Path)
				if v, ok := baseView[fd.Path]; ok {
					want[fd.Path] = v
				}
			}
		}
		got, err := applyPatch(baseView, blocksExcept(t, r.Patch, binary))
		if err != nil {
			t.Fatalf("patch does not apply: %v\n%s", err, r.Patch)
		}
		if d := diffViews(want, got); d != "" {
			t.Fatalf("patched tree differs:\n%s", d)
		}
	})
}

// viewOf is what git tracks of an index entry.
func viewOf(e *Entry, blobs MemBlobs) (gitFile, bool) {
	switch {
	case e == nil || e.Type == Dir:
		return gitFile{}, false
	case e.Type == Symlink:
		return gitFile{modeSymlink, e.Target}, true
	}
	return gitFile{e.gitMode(), string(blobs[e.Sum])}, true
}

// blocksExcept returns the patch without the "diff --git" blocks of the
// paths in skip.
func blocksExcept(t *testing.T, patch []byte, skip map[string]bool) []byte {
	var out []byte
	for len(patch) > 0 {
		block := patch
		if next := bytes.Index(patch, []byte("\ndiff --git ")); next >= 0 {
			block = patch[:next+1]
		}
		patch = patch[len(block):]
		hdr, _, _ := bytes.Cut(bytes.TrimPrefix(block, []byte("diff --git ")), []byte("\n"))
		path, err := parseGitHeader(string(hdr))
		if err != nil {
			t.Fatal(err)
		}
		if !skip[path] {
			out = append(out, block...)
		}
	}
	return out
}

// FuzzDecodeIndex: any bytes as an index file never panic, and whatever
// decodes re-encodes to an index that decodes the same.
func FuzzDecodeIndex(f *testing.F) {
	var b bytes.Buffer
	ix, _ := IndexTar(bytes.NewReader(mkTar(f, dir("d"), file("d/a b", "x\n"), link("l", "d"), exe("\xff", ""))), nil)
	encodeIndex(&b, ix)
	f.Add(b.Bytes())
	f.Add([]byte("pyro-treediff index v1 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := decodeIndex(data)
		if err != nil {
			return
		}
		var w bytes.Buffer
		encodeIndex(&w, ix)
		again, err := decodeIndex(w.Bytes())
		if err != nil {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		if !slices.Equal(again.Entries(), ix.Entries()) {
			t.Fatal("re-encoded index differs")
		}
	})
}
