package treediff

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ent is one archive entry as a test writes it.
type ent struct {
	name string // as written in the archive
	typ  Type
	perm uint32
	body string // file content or symlink target
}

func file(name, body string) ent      { return ent{name, File, 0o644, body} }
func exe(name, body string) ent       { return ent{name, File, 0o755, body} }
func dir(name string) ent             { return ent{name, Dir, 0o755, ""} }
func link(name, target string) ent    { return ent{name, Symlink, 0o777, target} }
func withPerm(e ent, perm uint32) ent { e.perm = perm; return e }
func renamed(e ent, name string) ent  { e.name = name; return e }
func entPath(t testing.TB, e ent) string {
	t.Helper()
	p, err := cleanPath(e.name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mkTar writes the entries, in the order given, as tar_out would.
func mkTar(t testing.TB, es ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: int64(e.perm), ModTime: time.Unix(1e9, 0)}
		switch e.typ {
		case File:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case Dir:
			h.Typeflag = tar.TypeDir
			if !strings.HasSuffix(h.Name, "/") {
				h.Name += "/"
			}
		case Symlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == File {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// diffTrees runs the whole pipeline on two entry lists: baseline in
// memory, then Diff.
func diffTrees(t testing.TB, base, cur []ent, opts Options) *Result {
	t.Helper()
	blobs := MemBlobs{}
	ix, err := IndexTar(bytes.NewReader(mkTar(t, base...)), blobs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Diff(ix, blobs, bytes.NewReader(mkTar(t, cur...)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gitFile is what git tracks of a path: its mode (100644, 100755 or
// 120000) and content (a symlink's target).
type gitFile struct {
	mode Mode
	body string
}

// gitView is the part of a tree a patch can describe: no directories,
// only the owner execute bit of permissions.
func gitView(t testing.TB, es []ent) map[string]gitFile {
	t.Helper()
	m := make(map[string]gitFile)
	for _, e := range es {
		en := Entry{Type: e.typ, Perm: e.perm}
		if e.typ != Dir {
			m[entPath(t, e)] = gitFile{en.gitMode(), e.body}
		}
	}
	return m
}

// applyPatch is a small, strict, pure-Go `git apply`: it applies a patch
// as Diff writes it to a git view of a tree, checking every context and
// deleted line against the tree. A "Binary files" block is an error.
func applyPatch(tree map[string]gitFile, patch []byte) (map[string]gitFile, error) {
	out := make(map[string]gitFile, len(tree))
	for k, v := range tree {
		out[k] = v
	}
	lines := strings.SplitAfter(string(patch), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	i := 0
	for i < len(lines) {
		hdr, ok := strings.CutPrefix(lines[i], "diff --git ")
		if !ok {
			return nil, fmt.Errorf("line %d: want diff --git, got %q", i+1, lines[i])
		}
		i++
		path, err := parseGitHeader(strings.TrimSuffix(hdr, "\n"))
		if err != nil {
			return nil, err
		}
		var newMode, oldMode Mode
		var created, deleted bool
		var index string
		for i < len(lines) {
			l := strings.TrimSuffix(lines[i], "\n")
			var m string
			switch {
			case strings.HasPrefix(l, "new file mode "):
				created, m = true, strings.TrimPrefix(l, "new file mode ")
				err = newMode.UnmarshalText([]byte(m))
			case strings.HasPrefix(l, "deleted file mode "):
				deleted, m = true, strings.TrimPrefix(l, "deleted file mode ")
				err = oldMode.UnmarshalText([]byte(m))
			case strings.HasPrefix(l, "old mode "):
				err = oldMode.UnmarshalText([]byte(strings.TrimPrefix(l, "old mode ")))
			case strings.HasPrefix(l, "new mode "):
				err = newMode.UnmarshalText([]byte(strings.TrimPrefix(l, "new mode ")))
			case strings.HasPrefix(l, "index "):
				index = strings.TrimPrefix(l, "index ")
			default:
				goto body
			}
			if err != nil {
				return nil, err
			}
			i++
		}
	body:
		cur, exists := out[path]
		switch {
		case created && exists:
			return nil, fmt.Errorf("%q: created but exists", path)
		case !created && !exists:
			return nil, fmt.Errorf("%q: patched but missing", path)
		case oldMode != 0 && cur.mode != oldMode:
			return nil, fmt.Errorf("%q: old mode %v, tree has %v", path, oldMode, cur.mode)
		}
		if i < len(lines) && strings.HasPrefix(lines[i], "Binary files ") {
			return nil, fmt.Errorf("%q: binary patch", path)
		}
		oldID := "0000000"
		if !created {
			id := gitID([]byte(cur.body))
			oldID = hex.EncodeToString(id[:])[:7]
		}
		if i < len(lines) && strings.HasPrefix(lines[i], "--- ") {
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "+++ ") {
				return nil, fmt.Errorf("%q: --- without +++", path)
			}
			a := strings.TrimSuffix(strings.TrimSuffix(lines[i][4:], "\n"), "\t")
			b := strings.TrimSuffix(strings.TrimSuffix(lines[i+1][4:], "\n"), "\t")
			if (a == "/dev/null") != created || (b == "/dev/null") != deleted {
				return nil, fmt.Errorf("%q: ---/+++ disagree with the header", path)
			}
			i += 2
			var hunks []string
			for i < len(lines) && !strings.HasPrefix(lines[i], "diff --git ") {
				hunks = append(hunks, lines[i])
				i++
			}
			body, err := applyHunks(cur.body, strings.Join(hunks, ""))
			if err != nil {
				return nil, fmt.Errorf("%q: %w", path, err)
			}
			cur.body = body
		}
		newID := "0000000"
		if !deleted {
			id := gitID([]byte(cur.body))
			newID = hex.EncodeToString(id[:])[:7]
		}
		wantIndex := oldID + ".." + newID
		if !created && !deleted && (newMode == 0 || newMode == cur.mode) {
			wantIndex += " " + cur.mode.String()
		}
		if oldID == newID {
			wantIndex = ""
		}
		if index != wantIndex {
			return nil, fmt.Errorf("%q: index line %q, want %q", path, index, wantIndex)
		}
		switch {
		case deleted:
			if cur.body != "" {
				return nil, fmt.Errorf("%q: deleted but %d bytes left", path, len(cur.body))
			}
			delete(out, path)
			continue
		case created:
			cur.mode = newMode
		case newMode != 0:
			cur.mode = newMode
		}
		out[path] = cur
	}
	return out, nil
}

// parseGitHeader returns the path of "a/P b/P", quoted or not.
func parseGitHeader(h string) (string, error) {
	if strings.HasPrefix(h, `"`) {
		q, err := strconv.QuotedPrefix(h)
		if err != nil {
			return "", err
		}
		a, _ := strconv.Unquote(q)
		rest := strings.TrimPrefix(h[len(q):], " ")
		b, err := strconv.Unquote(rest)
		if err != nil || a[2:] != b[2:] || !strings.HasPrefix(a, "a/") || !strings.HasPrefix(b, "b/") {
			return "", fmt.Errorf("bad header %q", h)
		}
		return a[2:], nil
	}
	n := (len(h) - 5) / 2
	if n < 1 || h != "a/"+h[2:2+n]+" b/"+h[2:2+n] {
		return "", fmt.Errorf("bad header %q", h)
	}
	return h[2 : 2+n], nil
}

// applyHunks applies unified hunks to text strictly: each hunk's old
// lines must be found exactly where its header says, and the counts in
// the header must match its lines.
func applyHunks(text, hunks string) (string, error) {
	old := splitLines([]byte(text))
	var out []byte
	pos := 0    // next old line not yet copied
	newPos := 0 // lines in out
	lines := strings.SplitAfter(hunks, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i := 0; i < len(lines); {
		var ostart, oc, ns, nc int
		if err := parseHunkHeader(lines[i], &ostart, &oc, &ns, &nc); err != nil {
			return "", err
		}
		i++
		start := ostart - 1
		if oc == 0 {
			start = ostart
		}
		if start < pos || start > len(old) {
			return "", fmt.Errorf("hunk %q out of order or range", lines[i-1])
		}
		if nl := newPos + start - pos; (nc == 0 && nl != ns) || (nc > 0 && nl != ns-1) {
			return "", fmt.Errorf("hunk %q: new start should be %d", lines[i-1], nl)
		}
		for _, l := range old[pos:start] {
			out = append(out, l...)
		}
		newPos += start - pos
		pos = start
		var gotOld, gotNew int
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@ ") {
			l := lines[i]
			i++
			content := l[1:]
			if i < len(lines) && lines[i] == "\\ No newline at end of file\n" {
				content = strings.TrimSuffix(content, "\n")
				i++
			} else if !strings.HasSuffix(content, "\n") {
				return "", fmt.Errorf("line %q lacks a newline and its marker", l)
			}
			switch l[0] {
			case ' ', '-':
				if pos >= len(old) || string(old[pos]) != content {
					return "", fmt.Errorf("old line %d: want %q", pos+1, content)
				}
				pos++
				gotOld++
				if l[0] == ' ' {
					out = append(out, content...)
					gotNew++
				}
			case '+':
				out = append(out, content...)
				gotNew++
			default:
				return "", fmt.Errorf("bad hunk line %q", l)
			}
		}
		if gotOld != oc || gotNew != nc {
			return "", fmt.Errorf("hunk %q has %d old and %d new lines", lines[i-1], gotOld, gotNew)
		}
		newPos += gotNew
	}
	for _, l := range old[pos:] {
		out = append(out, l...)
	}
	return string(out), nil
}

func parseHunkHeader(l string, so, oc, ns, nc *int) error {
	rest, ok := strings.CutPrefix(l, "@@ -")
	ranges, _, found := strings.Cut(rest, " @@")
	if !ok || !found || !strings.HasSuffix(rest, "\n") {
		return fmt.Errorf("bad hunk header %q", l)
	}
	o, n, ok := strings.Cut(ranges, " +")
	if !ok {
		return fmt.Errorf("bad hunk header %q", l)
	}
	parse := func(r string, s, c *int) error {
		a, b, has := strings.Cut(r, ",")
		var err error
		if *s, err = strconv.Atoi(a); err != nil {
			return err
		}
		*c = 1
		if has {
			if *c, err = strconv.Atoi(b); err != nil {
				return err
			}
			if b == "1" {
				return errors.New("git writes a count of 1 as nothing")
			}
		}
		return nil
	}
	if err := parse(o, so, oc); err != nil {
		return fmt.Errorf("%q: %w", l, err)
	}
	return parse(n, ns, nc)
}

// writeTree materialises entries under root.
func writeTree(t testing.TB, root string, es []ent) {
	t.Helper()
	for _, e := range es {
		p := filepath.Join(root, filepath.FromSlash(entPath(t, e)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.typ {
		case File:
			err = os.WriteFile(p, []byte(e.body), 0o600)
			if err == nil {
				err = os.Chmod(p, os.FileMode(e.perm))
			}
		case Dir:
			err = os.MkdirAll(p, 0o755)
		case Symlink:
			err = os.Symlink(e.body, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readGitView reads what git tracks of the tree under root.
func readGitView(t testing.TB, root string) map[string]gitFile {
	t.Helper()
	m := make(map[string]gitFile)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			m[rel] = gitFile{modeSymlink, target}
			return err
		}
		b, err := os.ReadFile(p)
		e := Entry{Type: File, Perm: uint32(fi.Mode().Perm())}
		m[rel] = gitFile{e.gitMode(), string(b)}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffViews(want, got map[string]gitFile) string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%q missing", k))
		} else if g != w {
			out = append(out, fmt.Sprintf("%q: got %v %q, want %v %q", k, g.mode, g.body, w.mode, w.body))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%q unexpected", k))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
