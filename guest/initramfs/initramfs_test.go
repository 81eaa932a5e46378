package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// entry is one parsed archive member.
type entry struct {
	name         string
	mode         uint32
	nlink        uint32
	rmajor       uint32
	rminor       uint32
	data         string
	ino, uid, gd uint32
}

// parse is a minimal, strict newc reader used to check what Writer produces.
func parse(t *testing.T, b []byte) []entry {
	t.Helper()
	if len(b)%512 != 0 {
		t.Errorf("archive length %d is not a multiple of 512", len(b))
	}
	var out []entry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+headerLen > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+headerLen]
		if string(h[:6]) != magic {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		if f[5] != 0 {
			t.Errorf("mtime %d, want 0", f[5])
		}
		nameSize := int(f[11])
		name := string(b[off+headerLen : off+headerLen+nameSize])
		if !strings.HasSuffix(name, "\x00") {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		name = name[:len(name)-1]
		off = align(off + headerLen + nameSize)
		size := int(f[6])
		data := string(b[off : off+size])
		for _, z := range b[off+size : align(off+size)] {
			if z != 0 {
				t.Fatalf("non-zero padding after %s", name)
			}
		}
		off = align(off + size)
		if name == trailerName {
			for _, z := range b[off:] {
				if z != 0 {
					t.Fatal("non-zero bytes after trailer")
				}
			}
			return out
		}
		out = append(out, entry{name: name, mode: f[1], nlink: f[4], rmajor: f[9], rminor: f[10],
			data: data, ino: f[0], uid: f[2], gd: f[3]})
	}
}

func build(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("/dev", 0o755))
	must(w.CharDev("/dev/console", 0o600, 5, 1))
	must(w.File("/bin/busybox", 0o755, []byte("not really busybox")))
	must(w.Symlink("bin/sh", "busybox"))
	must(w.File("/init", 0o755, []byte("#!/bin/sh\n")))
	must(w.FileFrom("/a/b/c/odd", 0o644, 3, strings.NewReader("xyzTRAILING")))
	must(w.Dir("tmp", 0o1777))
	must(w.Dir("/a/b", 0o700)) // already there: no-op
	must(w.Close())
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	got := parse(t, build(t))
	want := []entry{
		{name: "dev", mode: modeDir | 0o755, nlink: 2},
		{name: "dev/console", mode: modeCharDev | 0o600, nlink: 1, rmajor: 5, rminor: 1},
		{name: "bin", mode: modeDir | 0o755, nlink: 2},
		{name: "bin/busybox", mode: modeFile | 0o755, nlink: 1, data: "not really busybox"},
		{name: "bin/sh", mode: modeSymlink | 0o777, nlink: 1, data: "busybox"},
		{name: "init", mode: modeFile | 0o755, nlink: 1, data: "#!/bin/sh\n"},
		{name: "a", mode: modeDir | 0o755, nlink: 2},
		{name: "a/b", mode: modeDir | 0o755, nlink: 2},
		{name: "a/b/c", mode: modeDir | 0o755, nlink: 2},
		{name: "a/b/c/odd", mode: modeFile | 0o644, nlink: 1, data: "xyz"},
		{name: "tmp", mode: modeDir | 0o1777, nlink: 2},
	}
	for i := range got {
		if got[i].ino != uint32(i+1) || got[i].uid != 0 || got[i].gd != 0 {
			t.Errorf("%s: ino %d uid %d gid %d", got[i].name, got[i].ino, got[i].uid, got[i].gd)
		}
		got[i].ino, got[i].uid, got[i].gd = 0, 0, 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
	if !bytes.Equal(build(t), build(t)) {
		t.Error("output is not deterministic")
	}
}

func TestErrors(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.File("/", 0o644, nil); err == nil {
		t.Error("root path accepted")
	}
	w = NewWriter(io.Discard)
	if err := w.File("x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.File("x", 0o644, nil); err == nil {
		t.Error("duplicate accepted")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after an error returned nil")
	}
	w = NewWriter(io.Discard)
	_ = w.File("f", 0o644, nil)
	if err := w.File("f/g", 0o644, nil); err == nil {
		t.Error("file under a file accepted")
	}
	w = NewWriter(io.Discard)
	if err := w.FileFrom("short", 0o644, 10, strings.NewReader("abc")); err == nil {
		t.Error("short reader accepted")
	}
	if got, err := Clean("/../a/./b/"); err != nil || got != "a/b" {
		t.Errorf("Clean = %q, %v", got, err)
	}
}

func TestAddHost(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.AddHost("/x/y", dir); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range parse(t, buf.Bytes()) {
		got = append(got, fmt.Sprintf("%s %o %q", e.name, e.mode, e.data))
	}
	want := []string{
		`x 40755 ""`, `x/y 40700 ""`, `x/y/link 120777 "sub/f"`, `x/y/sub 40750 ""`, `x/y/sub/f 100640 "hello"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestCpioLists checks the archive against GNU cpio, an independent reader.
func TestCpioLists(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("cpio not installed; CI must run this check (apt-get install cpio)")
		}
		t.Skip("SKIPPING: cpio not installed, the archive is not checked against an independent reader")
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(build(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	want := "dev\ndev/console\nbin\nbin/busybox\nbin/sh\ninit\na\na/b\na/b/c\na/b/c/odd\ntmp\n"
	if string(out) != want {
		t.Errorf("cpio -t listed:\n%s\nwant:\n%s", out, want)
	}
}
