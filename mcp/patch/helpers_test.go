package patch

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
)

// memFile is a file of a memFS.
type memFile struct {
	data string
	mode fs.FileMode
}

// memFS is an in-memory workspace. Directories are implied by file paths.
type memFS map[string]memFile

var errIsDir = errors.New("is a directory")

func (m memFS) ReadFile(name string) ([]byte, fs.FileMode, error) {
	if f, ok := m[name]; ok {
		return []byte(f.data), f.mode, nil
	}
	for p := range m {
		if strings.HasPrefix(p, name+"/") {
			return nil, 0, errIsDir
		}
	}
	return nil, 0, fs.ErrNotExist
}

// files builds a memFS of mode-0644 files from path, content pairs.
func files(kv ...string) memFS {
	m := memFS{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = memFile{data: kv[i+1], mode: 0o644}
	}
	return m
}

// perform applies changes to a copy of m, as a caller would.
func perform(t testing.TB, m memFS, changes []Change) memFS {
	t.Helper()
	out := maps.Clone(m)
	seen := map[string]bool{}
	for _, c := range changes {
		if seen[c.Path] {
			t.Fatalf("two changes for %s", c.Path)
		}
		seen[c.Path] = true
		_, exists := out[c.Path]
		switch c.Op {
		case OpAdd:
			if exists {
				t.Fatalf("add of existing %s", c.Path)
			}
			out[c.Path] = memFile{data: string(c.Content), mode: c.Mode}
		case OpModify:
			if !exists {
				t.Fatalf("modify of missing %s", c.Path)
			}
			out[c.Path] = memFile{data: string(c.Content), mode: c.Mode}
		case OpDelete:
			if !exists {
				t.Fatalf("delete of missing %s", c.Path)
			}
			if c.Content != nil {
				t.Fatalf("delete of %s carries content", c.Path)
			}
			delete(out, c.Path)
		default:
			t.Fatalf("change %+v has op %v", c, c.Op)
		}
	}
	return out
}

// parseApply parses and applies patch to m and returns the workspace after.
func parseApply(t testing.TB, m memFS, patch string) (memFS, *Result) {
	t.Helper()
	fps, err := Parse([]byte(patch))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	res, err := Apply(m, fps)
	if err != nil {
		t.Fatalf("Apply: %v\n%s", err, res)
	}
	return perform(t, m, res.Changes), res
}

// diffFS describes how got differs from want, or returns "".
func diffFS(got, want memFS) string {
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		switch {
		case !ok:
			b.WriteString("missing " + p + "\n")
		case g.data != want[p].data:
			b.WriteString(p + ": content " + quote(g.data) + ", want " + quote(want[p].data) + "\n")
		case g.mode != want[p].mode:
			b.WriteString(p + ": mode " + g.mode.String() + ", want " + want[p].mode.String() + "\n")
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			b.WriteString("unexpected " + p + "\n")
		}
	}
	return b.String()
}

func quote(s string) string {
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return "\"" + strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s) + "\""
}
