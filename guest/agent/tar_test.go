package agent

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// snapshot describes a tree: per relative path, type, mode, size,
// content or link target, and mtime to the second.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(root, p)
		info := fileInfo(rel, fi, readlink(p))
		s := info.Type + " " + fs.FileMode(info.Mode).String()
		switch info.Type {
		case proto.TypeFile:
			b, _ := os.ReadFile(p)
			s += " " + string(b) + " " + info.MTime.Round(time.Second).UTC().Format(time.RFC3339)
		case proto.TypeSymlink:
			s = info.Type + " -> " + info.Target
		case proto.TypeDir:
			s += " " + info.MTime.Round(time.Second).UTC().Format(time.RFC3339)
		}
		m[rel] = s
		return nil
	})
	return m
}

func TestTarRoundTrip(t *testing.T) {
	c, src := newClient(t), t.TempDir()
	ctx := ctxT(t)
	tree(t, src)
	os.Mkdir(filepath.Join(src, "empty"), 0o711)
	os.WriteFile(filepath.Join(src, "setuid"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(src, "setuid"), 0o4755)
	os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hardlink"))
	dt := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "sub"), dt, dt)

	r, err := c.TarOut(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if _, err := io.Copy(&archive, r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// The archive is a plain tar with relative names.
	tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "sub/deep/secret") || strings.Contains(got, src) {
		t.Errorf("archive names: %s", got)
	}

	dst := filepath.Join(t.TempDir(), "new", "dest") // created by TarIn
	res, err := c.TarIn(ctx, dst, bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != len(names) {
		t.Errorf("extracted %d entries, the archive has %d", res.Entries, len(names))
	}
	want, got := snapshot(t, src), snapshot(t, dst)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("extra entry %s", k)
		}
	}
	// Extracting again over the same tree replaces what is there.
	if _, err := c.TarIn(ctx, dst, bytes.NewReader(archive.Bytes())); err != nil {
		t.Fatal("second extraction:", err)
	}
	// TarOut of a file or a missing path fails cleanly.
	if r, err := c.TarOut(ctx, filepath.Join(src, "a.txt")); err == nil {
		_, err = io.ReadAll(r)
		if errCode(err) != "ENOTDIR" {
			t.Errorf("tar_out of a file: %v", err)
		}
	}
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func mkTar(t *testing.T, ents ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return b.Bytes()
}

func TestTarInRejectsEscapes(t *testing.T) {
	sandbox := t.TempDir()
	// Paths are confined to sandbox, so even a broken check cannot touch
	// the real /etc.
	c := serve(t, &Server{root: sandbox})
	ctx := ctxT(t)
	for name, archive := range map[string][]byte{
		"dotdot":             mkTar(t, entry{name: "../x", typ: tar.TypeReg, body: "bad"}),
		"absolute":           mkTar(t, entry{name: "/etc/x", typ: tar.TypeReg, body: "bad"}),
		"link then dotdot":   mkTar(t, entry{name: "link", link: "sub", typ: tar.TypeSymlink}, entry{name: "link/../../x", typ: tar.TypeReg, body: "bad"}),
		"through abs link":   mkTar(t, entry{name: "evil", link: "/etc", typ: tar.TypeSymlink}, entry{name: "evil/x", typ: tar.TypeReg, body: "bad"}),
		"through rel link":   mkTar(t, entry{name: "evil", link: "../../", typ: tar.TypeSymlink}, entry{name: "evil/x", typ: tar.TypeReg, body: "bad"}),
		"nested link escape": mkTar(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/up", link: "..", typ: tar.TypeSymlink}, entry{name: "d/up/up2", link: "..", typ: tar.TypeSymlink}, entry{name: "d/up/up2/x", typ: tar.TypeReg, body: "bad"}),
		"dir via link":       mkTar(t, entry{name: "evil", link: "/", typ: tar.TypeSymlink}, entry{name: "evil/newdir/", typ: tar.TypeDir}),
		"hardlink outside":   mkTar(t, entry{name: "h", link: "../x", typ: tar.TypeLink}),
		"hardlink via link":  mkTar(t, entry{name: "evil", link: "/etc", typ: tar.TypeSymlink}, entry{name: "h", link: "evil/passwd", typ: tar.TypeLink}),
	} {
		t.Run(name, func(t *testing.T) {
			target := "/work/" + strings.ReplaceAll(name, " ", "-") + "/target"
			_, err := c.TarIn(ctx, target, bytes.NewReader(archive))
			if errCode(err) != "EXDEV" {
				t.Fatalf("got %v, want an EXDEV rejection", err)
			}
			// Nothing was written outside the target.
			filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, err error) error {
				if d != nil && (d.Name() == "x" || d.Name() == "newdir" || d.Name() == "h") {
					if rel, _ := filepath.Rel(filepath.Join(sandbox, target), p); strings.HasPrefix(rel, "..") {
						t.Errorf("escaped: %s", p)
					}
				}
				return nil
			})
		})
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Error("/etc/x exists")
	}
	// Symlinks that point outside are fine to create, and inside ones
	// may be written through.
	_, err := c.TarIn(ctx, "/ok", bytes.NewReader(mkTar(t,
		entry{name: "abs", link: "/etc/passwd", typ: tar.TypeSymlink},
		entry{name: "real/", typ: tar.TypeDir},
		entry{name: "in", link: "real", typ: tar.TypeSymlink},
		entry{name: "in/f", typ: tar.TypeReg, body: "ok"},
		entry{name: "./real/g", typ: tar.TypeReg, body: "ok"},
		entry{name: "hl", link: "real/g", typ: tar.TypeLink},
		entry{name: "abs", typ: tar.TypeReg, body: "replaced the link, not /etc/passwd"},
	)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"real/f", "real/g", "hl"} {
		if b, _ := os.ReadFile(filepath.Join(sandbox, "ok", f)); string(b) != "ok" {
			t.Errorf("%s: %q", f, b)
		}
	}
	if fi, err := os.Lstat(filepath.Join(sandbox, "ok", "abs")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("abs was not replaced by a file: %v", err)
	}
}

func TestTarInBadStream(t *testing.T) {
	c := serve(t, &Server{root: t.TempDir()})
	ctx := ctxT(t)
	if _, err := c.TarIn(ctx, "/x", strings.NewReader(strings.Repeat("garbage!", 200))); errCode(err) != proto.CodeInvalid {
		t.Errorf("garbage archive: %v", err)
	}
	good := mkTar(t, entry{name: "f", typ: tar.TypeReg, body: strings.Repeat("y", 5000)})
	if _, err := c.TarIn(ctx, "/x", bytes.NewReader(good[:1500])); errCode(err) != proto.CodeInvalid {
		t.Errorf("truncated archive: %v", err)
	}
	if _, err := c.TarIn(ctx, "/x", bytes.NewReader(nil)); err != nil {
		t.Errorf("empty archive: %v", err)
	}
}

// sparseTar is a PAX 1.0 sparse archive: a few KiB describing a file of
// size bytes, all hole but for "A" at offset 0.
func sparseTar(size int64) []byte {
	header := func(name string, typ byte, n int) []byte {
		h := make([]byte, 512)
		copy(h, name)
		copy(h[100:], "0000644\x00")
		copy(h[124:], fmt.Sprintf("%011o\x00", n))
		copy(h[136:], "00000000000\x00")
		h[156] = typ
		copy(h[257:], "ustar\x0000")
		copy(h[148:], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		return h
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }
	var recs []byte
	for _, kv := range []string{"GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.name=big", fmt.Sprintf("GNU.sparse.realsize=%d", size)} {
		rec := " " + kv + "\n"
		n := len(rec) + 2
		for len(fmt.Sprint(n))+len(rec) != n {
			n = len(fmt.Sprint(n)) + len(rec)
		}
		recs = append(recs, fmt.Sprintf("%d%s", n, rec)...)
	}
	out := append(header("pax", 'x', len(recs)), pad(recs)...)
	sparseMap := pad([]byte("1\n0\n1\n"))
	out = append(out, header("big", '0', len(sparseMap)+1)...)
	out = append(out, sparseMap...)
	out = append(out, pad([]byte("A"))...)
	return append(out, make([]byte, 1024)...)
}

// A sparse entry stays sparse: a few KiB of archive cannot fill the disk.
func TestTarInSparse(t *testing.T) {
	dir := t.TempDir()
	c := newClient(t)
	const size = 1 << 30
	if _, err := c.TarIn(ctxT(t), dir, bytes.NewReader(sparseTar(size))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "big"))
	if err != nil || fi.Size() != size {
		t.Fatalf("big: %v %v", fi, err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks; blocks*512 > 1<<20 {
		t.Errorf("a 1 GiB hole takes %d bytes of disk", blocks*512)
	}
	b := make([]byte, 2)
	f, _ := os.Open(filepath.Join(dir, "big"))
	f.Read(b)
	f.Close()
	if string(b) != "A\x00" {
		t.Errorf("content %q", b)
	}
}

func readlink(p string) string {
	t, _ := os.Readlink(p)
	return t
}
