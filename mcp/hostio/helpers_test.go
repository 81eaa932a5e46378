package hostio

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// entry is one tar entry for mkTar.
type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64 // 0: 0644 (0755 for directories)
	size       int64 // 0: len(body); otherwise a lying header
}

var testTime = time.Unix(1_600_000_000, 0)

func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, ModTime: testTime, Size: int64(len(e.body))}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// listTar describes each entry of a tar stream on one line.
func listTar(t testing.TB, data []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q, want zeroed", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, fmt.Sprintf("%s %o", h.Name, h.Mode))
		case tar.TypeSymlink:
			out = append(out, fmt.Sprintf("%s -> %s", h.Name, h.Linkname))
		case tar.TypeLink:
			out = append(out, fmt.Sprintf("%s => %s", h.Name, h.Linkname))
		default:
			out = append(out, fmt.Sprintf("%s %o %q", h.Name, h.Mode, body))
		}
	}
}

// snapshot describes a host tree, symlinks not followed, so tests can
// check that a failed export changed nothing.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	snap := make(map[string]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case fi.Mode().IsRegular():
			if b, err := os.ReadFile(p); err != nil {
				desc += " <unreadable>"
			} else {
				desc += " " + string(b)
			}
		}
		snap[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func names(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func writeFile(t testing.TB, p, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", substr)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

// hasSkip reports whether a Report skipped path with a reason containing
// substr.
func hasSkip(rep *Report, path, substr string) bool {
	for _, s := range rep.Skipped {
		if s.Path == path && strings.Contains(s.Reason, substr) {
			return true
		}
	}
	return false
}

// diskBytes is the disk space a file takes (its allocated blocks).
func diskBytes(p string) (int64, bool) {
	var st syscall.Stat_t
	if syscall.Stat(p, &st) != nil {
		return 0, false
	}
	return st.Blocks * 512, true
}
