package hostio

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seedTree makes a directory with one of everything TarDir meets.
func seedTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a/b.txt"), "bee", 0o644)
	writeFile(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(dir, "setuid"), "s", 0o755)
	must(t, os.Chmod(filepath.Join(dir, "setuid"), 0o755|fs.ModeSetuid|fs.ModeSetgid))
	writeFile(t, filepath.Join(dir, "empty"), "", 0o600)
	must(t, os.Mkdir(filepath.Join(dir, "emptydir"), 0o700))
	// Symlink loops of every kind: to itself, to each other, to an
	// ancestor, to the parent of the root.
	must(t, os.Symlink("self", filepath.Join(dir, "self")))
	must(t, os.Symlink("loop2", filepath.Join(dir, "loop1")))
	must(t, os.Symlink("loop1", filepath.Join(dir, "loop2")))
	must(t, os.Symlink("..", filepath.Join(dir, "a/up")))
	must(t, os.Symlink("../..", filepath.Join(dir, "a/upup")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	for _, p := range []string{"a/b.txt", "run.sh", "a", "."} {
		must(t, os.Chtimes(filepath.Join(dir, p), testTime, testTime))
	}
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTarDir(t *testing.T) {
	dir := seedTree(t)
	var b bytes.Buffer
	rep, err := TarDir(context.Background(), &b, dir, SeedOptions{})
	must(t, err)
	want := []string{
		"a/ 755",
		`a/b.txt 644 "bee"`,
		"a/up -> ..",
		"a/upup -> ../..",
		"dangling -> /nonexistent/target",
		`empty 600 ""`,
		"emptydir/ 700",
		"loop1 -> loop2",
		"loop2 -> loop1",
		`run.sh 755 "#!/bin/sh\n"`,
		"self -> self",
		`setuid 755 "s"`, // set-id bits dropped
	}
	if got := listTar(t, b.Bytes()); !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Files != 4 || rep.Dirs != 2 || rep.Symlinks != 6 || rep.Bytes != 3+10+1 || rep.SkippedCount != 0 {
		t.Errorf("report %+v", rep)
	}
	// mtimes survive, to the second.
	tr := tar.NewReader(bytes.NewReader(b.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if (h.Name == "a/b.txt" || h.Name == "a/") && !h.ModTime.Equal(testTime) {
			t.Errorf("%s mtime %v, want %v", h.Name, h.ModTime, testTime)
		}
	}
}

func TestTarDirDeterministic(t *testing.T) {
	dir := seedTree(t)
	for i := range 50 {
		writeFile(t, filepath.Join(dir, "many", string(rune('z'-i%26))+strings.Repeat("x", i)), strings.Repeat("y", i), 0o644)
	}
	var first []byte
	for range 3 {
		var b bytes.Buffer
		_, err := TarDir(context.Background(), &b, dir, SeedOptions{})
		must(t, err)
		if first == nil {
			first = b.Bytes()
		} else if !bytes.Equal(first, b.Bytes()) {
			t.Fatal("two seeds of the same tree differ")
		}
	}
	// Sorted, each directory before what it holds.
	got := listTar(t, first)
	var nm []string
	for _, l := range got {
		nm = append(nm, strings.Fields(l)[0])
	}
	if !slices.IsSorted(nm) {
		t.Errorf("entries not sorted: %v", nm)
	}
}

func TestTarDirSkips(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok"), "ok", 0o644)
	// A unix socket, a FIFO, a sparse file over the limit.
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(t, err)
	defer l.Close()
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	big, err := os.Create(filepath.Join(dir, "big"))
	must(t, err)
	must(t, big.Truncate(DefaultMaxFileSize+1)) // sparse: no disk used
	big.Close()
	small, err := os.Create(filepath.Join(dir, "under"))
	must(t, err)
	must(t, small.Truncate(1000))
	small.Close()
	// Unreadable file and directory.
	writeFile(t, filepath.Join(dir, "secret"), "s", 0o000)
	writeFile(t, filepath.Join(dir, "locked/inside"), "i", 0o644)
	must(t, os.Chmod(filepath.Join(dir, "locked"), 0o000))
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "locked"), 0o755) })

	var b bytes.Buffer
	done := make(chan struct{})
	var rep *Report
	go func() { // a FIFO opened for reading would block forever
		defer close(done)
		rep, err = TarDir(context.Background(), &b, dir, SeedOptions{})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("TarDir hung")
	}
	must(t, err)
	for p, why := range map[string]string{"sock": "socket", "fifo": "named pipe", "big": "larger than the 268435456-byte file limit"} {
		if !hasSkip(rep, p, why) {
			t.Errorf("%s not skipped for %q: %+v", p, why, rep.Skipped)
		}
	}
	got := listTar(t, b.Bytes())
	if !slices.Contains(got, `ok 644 "ok"`) || !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "under 644") }) {
		t.Errorf("entries %v", got)
	}
	if f, err := os.Open(filepath.Join(dir, "secret")); err == nil {
		f.Close()
		t.Log("running with CAP_DAC_OVERRIDE (root): chmod 000 does not make files unreadable, so the permission-denied skips are not checked")
		return
	}
	if !hasSkip(rep, "secret", "permission denied") || !hasSkip(rep, "locked/", "permission denied") {
		t.Errorf("unreadable entries not reported: %+v", rep.Skipped)
	}
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "locked") || strings.HasPrefix(s, "secret") }) {
		t.Errorf("unreadable entries sent: %v", got)
	}
}

func TestTarDirLimits(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), strings.Repeat("a", 600), 0o644)
	writeFile(t, filepath.Join(dir, "b"), strings.Repeat("b", 600), 0o644)
	writeFile(t, filepath.Join(dir, "c"), strings.Repeat("c", 100), 0o644)

	var b bytes.Buffer
	rep, err := TarDir(context.Background(), &b, dir, SeedOptions{MaxFileSize: 500})
	must(t, err)
	if rep.Files != 1 || !hasSkip(rep, "a", "larger than the 500-byte") || !hasSkip(rep, "b", "larger") {
		t.Errorf("report %+v", rep)
	}
	_, err = TarDir(context.Background(), io.Discard, dir, SeedOptions{MaxTotal: 1000})
	wantErr(t, err, "pass the 1000-byte limit at b")
	_, err = TarDir(context.Background(), io.Discard, dir, SeedOptions{MaxEntries: 2})
	wantErr(t, err, "more than 2 entries")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = TarDir(ctx, io.Discard, dir, SeedOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	_, err = TarDir(context.Background(), io.Discard, filepath.Join(dir, "a"), SeedOptions{})
	wantErr(t, err, "not a directory")
	_, err = TarDir(context.Background(), io.Discard, filepath.Join(dir, "nope"), SeedOptions{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestTarDirExclude(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "src/main.go"), "package main", 0o644)
	writeFile(t, filepath.Join(dir, "src/debug.log"), "log", 0o644)
	writeFile(t, filepath.Join(dir, "node_modules/x/index.js"), "js", 0o644)
	var asked []string
	var b bytes.Buffer
	rep, err := TarDir(context.Background(), &b, dir, SeedOptions{Exclude: func(rel string, fi fs.FileInfo) bool {
		asked = append(asked, rel)
		return (rel == "node_modules" && fi.IsDir()) || strings.HasSuffix(rel, ".log")
	}})
	must(t, err)
	if got, want := listTar(t, b.Bytes()), []string{"src/ 755", `src/main.go 644 "package main"`}; !slices.Equal(got, want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	if rep.Excluded != 2 || slices.Contains(asked, "node_modules/x") {
		t.Errorf("excluded %d, asked %v", rep.Excluded, asked)
	}
}

// A file that shrinks or grows while it is read still gives a valid
// stream holding exactly the size in its header.
func TestCopyExactChangingFile(t *testing.T) {
	var b bytes.Buffer
	s := newSeeder(context.Background(), &b, SeedOptions{})
	must(t, s.header(&tar.Header{Typeflag: tar.TypeReg, Name: "shrank", Size: 10, Mode: 0o644}))
	must(t, s.copyExact("shrank", strings.NewReader("abc"), 10))
	must(t, s.header(&tar.Header{Typeflag: tar.TypeReg, Name: "grew", Size: 3, Mode: 0o644}))
	must(t, s.copyExact("grew", strings.NewReader("abcdef"), 3))
	must(t, s.finish())
	want := []string{`shrank 644 "abc\x00\x00\x00\x00\x00\x00\x00"`, `grew 644 "abc"`}
	if got := listTar(t, b.Bytes()); !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	if len(s.rep.Changed) != 2 || !strings.Contains(s.rep.Changed[0].Reason, "shrank") || !strings.Contains(s.rep.Changed[1].Reason, "grew") {
		t.Errorf("changed %+v", s.rep.Changed)
	}

	// A real file whose stat size (0) is smaller than what it yields.
	if _, err := os.Stat("/proc/self/status"); err == nil {
		s := newSeeder(context.Background(), io.Discard, SeedOptions{})
		must(t, s.hostFile("status", "/proc/self/status"))
		if len(s.rep.Changed) != 1 || !strings.Contains(s.rep.Changed[0].Reason, "grew") {
			t.Errorf("/proc file: %+v", s.rep)
		}
	}
}

// What TarDir sends, Extract puts back: contents, modes, links, mtimes.
func TestTarDirExtractRoundTrip(t *testing.T) {
	dir := seedTree(t)
	var b bytes.Buffer
	_, err := TarDir(context.Background(), &b, dir, SeedOptions{})
	must(t, err)
	dest := filepath.Join(t.TempDir(), "out")
	rep, err := Extract(context.Background(), &b, dest, ExtractOptions{})
	must(t, err)
	if rep.Files != 4 || rep.Symlinks != 6 || rep.LinksOutsideCount != 2 {
		t.Errorf("report %+v", rep)
	}
	src, got := snapshot(t, dir), snapshot(t, dest)
	if src["setuid"] != "ugrwxr-xr-x s" {
		t.Fatalf("source setuid file is %q", src["setuid"])
	}
	src["setuid"] = "-rwxr-xr-x s" // set-id bits dropped on the way
	src["."], got["."] = "", ""
	for k, v := range src {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(src) {
		t.Errorf("got %d entries, want %d", len(got), len(src))
	}
	fi, err := os.Stat(filepath.Join(dest, "a/b.txt"))
	must(t, err)
	if !fi.ModTime().Equal(testTime) {
		t.Errorf("mtime %v", fi.ModTime())
	}
	fi, err = os.Stat(filepath.Join(dest, "a"))
	must(t, err)
	if !fi.ModTime().Equal(testTime) {
		t.Errorf("dir mtime %v", fi.ModTime())
	}
}
