package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// tree builds a small directory tree under dir.
func tree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0o755))
	must(os.Mkdir(filepath.Join(dir, "private"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello, world\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sub", "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "deep", "secret"), []byte("s3cret"), 0o600))
	must(os.Symlink("sub/run.sh", filepath.Join(dir, "link")))
	must(os.Symlink("sub", filepath.Join(dir, "dirlink")))
	must(os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(os.Chmod(filepath.Join(dir, "sub", "deep"), 0o750))
	old := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "a.txt"), old, old))
}

func TestStat(t *testing.T) {
	c, dir := newClient(t), t.TempDir()
	tree(t, dir)
	ctx := ctxT(t)
	fi, err := c.Stat(ctx, filepath.Join(dir, "a.txt"))
	if err != nil || fi.Type != proto.TypeFile || fi.Mode != 0o644 || fi.Size != 13 || fi.Name != "a.txt" ||
		!fi.MTime.Equal(time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)) || fi.UID != uint32(os.Getuid()) {
		t.Errorf("stat a.txt: %+v %v", fi, err)
	}
	fi, err = c.Stat(ctx, filepath.Join(dir, "link"))
	if err != nil || fi.Type != proto.TypeSymlink || fi.Target != "sub/run.sh" || fi.FileMode()&fs.ModeSymlink == 0 {
		t.Errorf("stat link (not followed): %+v %v", fi, err)
	}
	fi, err = c.Stat(ctx, filepath.Join(dir, "sub", "deep"))
	if err != nil || fi.Type != proto.TypeDir || fi.Mode != 0o750 || !fi.FileMode().IsDir() {
		t.Errorf("stat dir: %+v %v", fi, err)
	}
	if _, err := c.Stat(ctx, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || errCode(err) != "ENOENT" {
		t.Errorf("stat missing: %v", err)
	}
	if _, err := c.Stat(ctx, "relative/path"); errCode(err) != proto.CodeInvalid {
		t.Errorf("relative path: %v", err)
	}
}

func names(ents []proto.FileInfo) string {
	var n []string
	for _, e := range ents {
		n = append(n, e.Name+":"+e.Type)
	}
	return strings.Join(n, " ")
}

func TestList(t *testing.T) {
	c, dir := newClient(t), t.TempDir()
	tree(t, dir)
	ctx := ctxT(t)
	ents, trunc, err := c.List(ctx, dir, false, 0)
	if err != nil || trunc {
		t.Fatal(err, trunc)
	}
	if got, want := names(ents), "a.txt:file dangling:symlink dirlink:symlink link:symlink private:dir sub:dir"; got != want {
		t.Errorf("list:\n got %s\nwant %s", got, want)
	}
	ents, _, err = c.List(ctx, dir, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "a.txt:file dangling:symlink dirlink:symlink link:symlink private:dir sub:dir sub/deep:dir sub/deep/secret:file sub/run.sh:file"
	if got := names(ents); got != want {
		t.Errorf("recursive list (symlinks not followed):\n got %s\nwant %s", got, want)
	}
	ents, trunc, err = c.List(ctx, dir, true, 3)
	if err != nil || !trunc || len(ents) != 3 {
		t.Errorf("limit 3: %d entries, truncated %v, %v", len(ents), trunc, err)
	}
	// The listed path itself may be a symlink to a directory.
	ents, _, err = c.List(ctx, filepath.Join(dir, "dirlink"), false, 0)
	if err != nil || names(ents) != "deep:dir run.sh:file" {
		t.Errorf("list through dirlink: %s %v", names(ents), err)
	}
	if _, _, err := c.List(ctx, filepath.Join(dir, "a.txt"), false, 0); errCode(err) != "ENOTDIR" {
		t.Errorf("list of a file: %v", err)
	}
	// Many entries arrive in several Entries frames.
	big := t.TempDir()
	for i := 0; i < 3000; i++ {
		os.WriteFile(filepath.Join(big, strings.Repeat("x", 100)+string(rune('a'+i%26))+strings.Repeat("y", i%7)+"-"+strconv.Itoa(i)), nil, 0o644)
	}
	ents, _, err = c.List(ctx, big, false, 0)
	if err != nil || len(ents) != 3000 {
		t.Errorf("3000 entries: got %d, %v", len(ents), err)
	}
}

func TestReadFile(t *testing.T) {
	c, dir := newClient(t), t.TempDir()
	tree(t, dir)
	ctx := ctxT(t)
	p := filepath.Join(dir, "a.txt")
	for _, tc := range []struct {
		off, max int64
		want     string
		eof      bool
	}{{0, 0, "hello, world\n", true}, {7, 0, "world\n", true}, {0, 5, "hello", false}, {7, 6, "world\n", true}, {13, 10, "", true}, {100, 10, "", true}} {
		data, res, err := c.ReadFile(ctx, p, tc.off, tc.max)
		if err != nil || string(data) != tc.want || res.EOF != tc.eof || res.Size != 13 || res.N != int64(len(data)) {
			t.Errorf("read %d+%d: %q %+v %v, want %q eof=%v", tc.off, tc.max, data, res, err, tc.want, tc.eof)
		}
	}
	// Reading follows symlinks; /proc files (size 0) read fine.
	if data, _, err := c.ReadFile(ctx, filepath.Join(dir, "link"), 0, 0); err != nil || string(data) != "#!/bin/sh\necho hi\n" {
		t.Errorf("read through symlink: %q %v", data, err)
	}
	if data, res, err := c.ReadFile(ctx, "/proc/self/status", 0, 0); err != nil || !bytes.Contains(data, []byte("Pid:")) || !res.EOF {
		t.Errorf("read /proc file: %v %+v", err, res)
	}
	// Large file, across many Data frames.
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000)
	os.WriteFile(filepath.Join(dir, "big"), big, 0o644)
	if data, res, err := c.ReadFile(ctx, filepath.Join(dir, "big"), 5, 8<<20); err != nil || !bytes.Equal(data, big[5:]) || !res.EOF {
		t.Errorf("read big: %d bytes, %+v, %v", len(data), res, err)
	}
	if _, _, err := c.ReadFile(ctx, dir, 0, 0); errCode(err) != "EISDIR" {
		t.Errorf("read dir: %v", err)
	}
	if _, _, err := c.ReadFile(ctx, filepath.Join(dir, "missing"), 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read missing: %v", err)
	}
	if _, _, err := c.ReadFile(ctx, "/dev/null", 0, 0); errCode(err) != proto.CodeInvalid {
		t.Errorf("read device: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	c, dir := newClient(t), t.TempDir()
	tree(t, dir)
	ctx := ctxT(t)
	check := func(name, content string, mode fs.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != content || fi.Mode().Perm() != mode {
			t.Errorf("%s: %q %v %v, want %q %v", name, b, fi.Mode(), err, content, mode)
		}
	}
	if err := c.WriteFile(ctx, filepath.Join(dir, "new", "dirs", "f.txt"), strings.NewReader("x"), 0, true); err != nil {
		t.Fatal(err)
	}
	check("new/dirs/f.txt", "x", 0o644)
	err := c.WriteFile(ctx, filepath.Join(dir, "nope", "f.txt"), strings.NewReader("x"), 0, false)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "mkdir_parents") {
		t.Errorf("missing parent: %v", err)
	}
	// Mode 0 keeps the existing file's mode; an explicit one applies.
	c.WriteFile(ctx, filepath.Join(dir, "sub", "run.sh"), strings.NewReader("#!/bin/sh\n"), 0, false)
	check("sub/run.sh", "#!/bin/sh\n", 0o755)
	c.WriteFile(ctx, filepath.Join(dir, "a.txt"), strings.NewReader("new"), 0o600, false)
	check("a.txt", "new", 0o600)
	// Through a symlink: the target changes, the link stays.
	c.WriteFile(ctx, filepath.Join(dir, "link"), strings.NewReader("via link"), 0, false)
	check("sub/run.sh", "via link", 0o755)
	if fi, _ := os.Lstat(filepath.Join(dir, "link")); fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("writing through a symlink replaced it")
	}
	if err := c.WriteFile(ctx, filepath.Join(dir, "sub"), strings.NewReader("x"), 0, false); errCode(err) != "EISDIR" {
		t.Errorf("write over a dir: %v", err)
	}
	// Big content.
	big := bytes.Repeat([]byte("z"), 5<<20+3)
	if err := c.WriteFile(ctx, filepath.Join(dir, "big"), bytes.NewReader(big), 0, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "big")); !bytes.Equal(b, big) {
		t.Error("big write corrupted")
	}
	noTemps(t, dir)
}

// noTemps checks that no temporary file is left (after giving the server
// a moment to notice a cancelled upload).
func noTemps(t *testing.T, dir string) {
	t.Helper()
	var left []string
	for i := 0; i < 300; i++ {
		left = nil
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if d != nil && strings.HasPrefix(d.Name(), ".pyro-write-") {
				left = append(left, p)
			}
			return nil
		})
		if len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("temporary files left behind: %v", left)
}

// gatedReader yields first, then blocks until release is closed, then
// yields rest (or fails with err).
type gatedReader struct {
	first, rest []byte
	release     chan struct{}
	reached     chan struct{}
	err         error
	stage       int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	switch g.stage {
	case 0:
		g.stage++
		return copy(p, g.first), nil
	case 1:
		close(g.reached)
		<-g.release
		g.stage++
		if g.err != nil {
			return 0, g.err
		}
		return copy(p, g.rest), nil
	}
	return 0, io.EOF
}

func TestWriteFileAtomic(t *testing.T) {
	c, dir := newClient(t), t.TempDir()
	ctx := ctxT(t)
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0o644)
	g := &gatedReader{first: []byte("new-"), rest: []byte("content"), release: make(chan struct{}), reached: make(chan struct{})}
	done := make(chan error)
	go func() { done <- c.WriteFile(ctx, p, g, 0, false) }()
	<-g.reached
	time.Sleep(50 * time.Millisecond)
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("mid-write the file reads %q, want the old content", b)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new-content" {
		t.Errorf("after: %q", b)
	}
	// A failed upload (the reader errs, the stream closes) leaves the old file.
	g = &gatedReader{first: []byte("partial"), release: make(chan struct{}), reached: make(chan struct{}), err: errors.New("disk on fire")}
	close(g.release)
	if err := c.WriteFile(ctx, p, g, 0, false); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failed upload: %v", err)
	}
	// Cancelling mid-upload too.
	cctx, cancel := context.WithCancel(ctx)
	g = &gatedReader{first: []byte("partial"), release: make(chan struct{}), reached: make(chan struct{})}
	go func() { <-g.reached; cancel(); time.Sleep(20 * time.Millisecond); close(g.release) }()
	if err := c.WriteFile(cctx, p, g, 0, false); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled upload: %v", err)
	}
	noTemps(t, dir) // the server has noticed the closed stream
	if b, _ := os.ReadFile(p); string(b) != "new-content" {
		t.Errorf("after failed uploads: %q", b)
	}
	noTemps(t, dir)
}

// A client confined Beneath a directory cannot reach outside it, through
// "..", absolute paths or symlinks, with any path-taking request; inside,
// everything works, including files that do not exist yet.
func TestBeneath(t *testing.T) {
	c, base := newClient(t), t.TempDir()
	ws := filepath.Join(base, "workspace")
	tree(t, ws)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(base, "outside.txt"), []byte("secret"), 0o644))
	must(os.Symlink("../outside.txt", filepath.Join(ws, "rel-escape")))
	must(os.Symlink(base, filepath.Join(ws, "abs-escape")))
	must(os.Symlink("..", filepath.Join(ws, "up")))
	c.Beneath = ws
	ctx := ctxT(t)

	// Inside: fine, symlinks that stay inside included.
	if _, err := c.Stat(ctx, filepath.Join(ws, "a.txt")); err != nil {
		t.Errorf("stat inside: %v", err)
	}
	if b, _, err := c.ReadFile(ctx, filepath.Join(ws, "link"), 0, 100); err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("read through an inside symlink: %q %v", b, err)
	}
	if err := c.WriteFile(ctx, filepath.Join(ws, "new", "dir", "f"), strings.NewReader("x"), 0o644, true); err != nil {
		t.Errorf("write a new file inside: %v", err)
	}
	if _, err := c.Stat(ctx, filepath.Join(ws, "rel-escape")); err != nil {
		t.Errorf("stat of an escaping symlink itself (not followed): %v", err)
	}
	if _, _, err := c.List(ctx, ws, true, 0); err != nil {
		t.Errorf("list inside: %v", err)
	}

	outside := []string{
		filepath.Join(ws, "rel-escape"),
		filepath.Join(ws, "abs-escape", "outside.txt"),
		filepath.Join(ws, "up", "outside.txt"),
		filepath.Join(ws, "..", "outside.txt"),
		filepath.Join(base, "outside.txt"),
		"/etc/passwd",
	}
	if err := c.WriteFile(ctx, filepath.Join(ws, "abs-escape", "outside.txt-new"), strings.NewReader("x"), 0o644, true); errCode(err) != "EXDEV" {
		t.Errorf("write_file of a new file through an escaping symlink: %v, want EXDEV", err)
	}
	for _, p := range outside {
		if _, _, err := c.ReadFile(ctx, p, 0, 100); errCode(err) != "EXDEV" {
			t.Errorf("read_file %s: %v, want EXDEV", p, err)
		}
		if strings.HasPrefix(p, base) { // never aim a write at the real /etc
			if err := c.WriteFile(ctx, p, strings.NewReader("x"), 0o644, true); errCode(err) != "EXDEV" {
				t.Errorf("write_file %s: %v, want EXDEV", p, err)
			}
		}
	}
	for _, p := range []string{filepath.Join(ws, "up"), filepath.Join(ws, "abs-escape"), base} {
		if _, _, err := c.List(ctx, p, false, 0); errCode(err) != "EXDEV" {
			t.Errorf("list %s: %v, want EXDEV", p, err)
		}
		if rc, err := c.TarOut(ctx, p); err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if errCode(err) != "EXDEV" {
				t.Errorf("tar_out %s: %v, want EXDEV", p, err)
			}
		} else if errCode(err) != "EXDEV" {
			t.Errorf("tar_out %s: %v, want EXDEV", p, err)
		}
		if _, err := c.Exec(ctx, proto.ExecRequest{Argv: []string{"true"}, Cwd: p}, io.Discard, io.Discard); errCode(err) != "EXDEV" {
			t.Errorf("exec in %s: %v, want EXDEV", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(base, "outside.txt")); err != nil || string(b) != "secret" {
		t.Fatalf("the outside file changed: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(base, "outside.txt-new")); err == nil {
		t.Fatal("a file was written outside")
	}
}

// A directory swapped for a symlink out of the confinement after the
// check and before the operation (a guest process racing the agent) leads
// nowhere: each operation resolves its path again, beneath, when it
// opens it.
func TestBeneathRace(t *testing.T) {
	base := t.TempDir()
	ws, out := filepath.Join(base, "workspace"), filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(ws, "dir"), out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(ws, "dir"), out} {
		if err := os.WriteFile(filepath.Join(d, "f.txt"), []byte("in "+d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var swaps int
	srv := &Server{checked: func() {
		// ws/dir becomes a symlink to outside, once per request.
		os.Rename(filepath.Join(ws, "dir"), filepath.Join(ws, "dir.real"))
		os.Symlink(out, filepath.Join(ws, "dir"))
		swaps++
	}}
	c := serve(t, srv)
	c.Beneath = ws
	ctx := ctxT(t)
	restore := func() {
		t.Helper()
		os.Remove(filepath.Join(ws, "dir"))
		if err := os.Rename(filepath.Join(ws, "dir.real"), filepath.Join(ws, "dir")); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(ws, "dir", "f.txt")
	check := func(op string, err error) {
		t.Helper()
		restore()
		if errCode(err) != "EXDEV" {
			t.Errorf("%s after the swap: %v, want EXDEV", op, err)
		}
	}
	b, _, err := c.ReadFile(ctx, p, 0, 100)
	if string(b) == "in "+out {
		t.Errorf("read_file read the outside file")
	}
	check("read_file", err)
	_, err = c.Stat(ctx, p)
	check("stat", err)
	_, _, err = c.List(ctx, filepath.Join(ws, "dir"), true, 0)
	check("list", err)
	err = c.WriteFile(ctx, filepath.Join(ws, "dir", "new.txt"), strings.NewReader("x"), 0o644, true)
	check("write_file", err)
	err = c.WriteFile(ctx, p, strings.NewReader("x"), 0o644, false)
	check("write_file over", err)
	if rc, err := c.TarOut(ctx, filepath.Join(ws, "dir")); err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		check("tar_out", err)
	} else {
		check("tar_out", err)
	}
	_, err = c.Exec(ctx, proto.ExecRequest{Argv: []string{"cat", "f.txt"}, Cwd: filepath.Join(ws, "dir")}, io.Discard, io.Discard)
	check("exec in", err)
	if swaps != 7 {
		t.Errorf("%d swaps, want one per request", swaps)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 {
		t.Errorf("the outside directory changed: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f.txt")); string(b) != "in "+out {
		t.Errorf("the outside file changed: %q", b)
	}
}
