package hostio

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// endlessPAX is a guest that streams entries without end, each an empty
// file whose PAX record carries a long name and padding: no file bytes
// at all, so only counting the raw bytes stops it.
type endlessPAX struct {
	buf bytes.Buffer
	tw  *tar.Writer
	n   int
}

func (e *endlessPAX) Read(p []byte) (int, error) {
	if e.tw == nil {
		e.tw = tar.NewWriter(&e.buf)
	}
	for e.buf.Len() < len(p) {
		e.n++
		name := fmt.Sprintf("%03d/%s", e.n%1000, strings.Repeat("n", 200))
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: testTime, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"comment": strings.Repeat("x", 60<<10)}}
		if err := e.tw.WriteHeader(h); err != nil {
			return 0, err
		}
	}
	return e.buf.Read(p)
}

// Raw bytes count, not just file sizes: PAX records, long names and
// headers of a stream that never ends stop the archive at MaxBytes,
// and nothing is left behind.
func TestWriteTarRawBytesBound(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.tar")
	const max = 4 << 20
	for _, gz := range []bool{false, true} {
		_, err := WriteTar(context.Background(), &endlessPAX{}, dest, ArchiveOptions{MaxBytes: max, Gzip: gz})
		wantErr(t, err, fmt.Sprintf("the archive is more than %d bytes, headers and names counted", max))
		if got := names(dir); len(got) != 0 {
			t.Errorf("gzip %v: left %q", gz, got)
		}
	}
	// The default bound is the file bytes' bound plus the overhead.
	rep, err := WriteTar(context.Background(), bytes.NewReader(tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "a"})), dest, ArchiveOptions{})
	must(t, err)
	if rep.Files != 1 {
		t.Errorf("report %+v", rep)
	}
	if DefaultMaxTotal+MaxArchiveOverhead != 3<<30 {
		t.Errorf("default raw bound %d", DefaultMaxTotal+MaxArchiveOverhead)
	}
}

// GNU long names count as names: a stream of them passes the bound on
// names long before it passes the one on file bytes.
func TestWriteTarLongNames(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("d/", 2100) + "f" // > PATH_MAX
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: long, Mode: 0o644, Format: tar.FormatGNU}))
	must(t, tw.Close())
	_, err := WriteTar(context.Background(), bytes.NewReader(b.Bytes()), filepath.Join(dir, "x.tar"), ArchiveOptions{})
	wantErr(t, err, "has a name longer than 4096 bytes")
	elem := tarBytes(t, entry{name: strings.Repeat("e", 256), typ: tar.TypeReg})
	_, err = WriteTar(context.Background(), bytes.NewReader(elem), filepath.Join(dir, "x.tar"), ArchiveOptions{})
	wantErr(t, err, "name element longer than 255 bytes")
	if got := names(dir); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}

// The saved archive obeys extraction's path rules: nothing written
// through a symlink or a file the archive made earlier.
func TestWriteTarPathsAsExtract(t *testing.T) {
	cases := map[string]struct {
		data []byte
		msg  string
	}{
		"symlink then through it": {tarBytes(t, entry{name: "a", link: "/etc", typ: tar.TypeSymlink},
			entry{name: "a/x", typ: tar.TypeReg, body: "owned"}), `written through the symlink "a"`},
		"relative symlink then deeper": {tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/up", link: "../..", typ: tar.TypeSymlink},
			entry{name: "d/up/home/.bashrc", typ: tar.TypeReg, body: "owned"}), `through the symlink "d/up"`},
		"beneath a file": {tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "x"}, entry{name: "f/x", typ: tar.TypeReg}), "which is a file"},
		"beneath a hard link": {tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "x"}, entry{name: "h", link: "f", typ: tar.TypeLink},
			entry{name: "h/x", typ: tar.TypeReg}), "which is a file"},
		"hard link to a symlink": {tarBytes(t, entry{name: "s", link: "/etc/passwd", typ: tar.TypeSymlink},
			entry{name: "h", link: "s", typ: tar.TypeLink}), "not a regular file earlier"},
		"filled directory replaced": {tarBytes(t, entry{name: "d/x", typ: tar.TypeReg, body: "x"},
			entry{name: "d", link: "/etc", typ: tar.TypeSymlink}), "would replace a directory the archive has filled"},
		"root not a dir": {tarBytes(t, entry{name: "./", link: "/", typ: tar.TypeSymlink}), "names the export's root"},
		"long link":      {tarBytes(t, entry{name: "s", link: strings.Repeat("l", 4096), typ: tar.TypeSymlink}), "target of 4096 bytes or more"},
	}
	for name, c := range cases {
		dir := t.TempDir()
		_, err := WriteTar(context.Background(), bytes.NewReader(c.data), filepath.Join(dir, "x.tar"), ArchiveOptions{})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: WriteTar: %v, want %q", name, err, c.msg)
		}
		_, err = Extract(context.Background(), bytes.NewReader(c.data), filepath.Join(dir, "x"), ExtractOptions{})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: Extract: %v, want %q", name, err, c.msg)
		}
		if got := names(dir); len(got) != 0 {
			t.Errorf("%s: left %q", name, got)
		}
	}
	// What extraction accepts, the archive keeps: an emptied directory
	// replaced by a symlink, an entry replaced by a later one.
	ok := tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d", link: "x", typ: tar.TypeSymlink},
		entry{name: "f", typ: tar.TypeReg, body: "1"}, entry{name: "f", typ: tar.TypeReg, body: "22"})
	dir := t.TempDir()
	rep, err := WriteTar(context.Background(), bytes.NewReader(ok), filepath.Join(dir, "ok.tar"), ArchiveOptions{})
	must(t, err)
	if rep.Files != 1 || rep.Symlinks != 1 || rep.Dirs != 0 || rep.Bytes != 3 {
		t.Errorf("report %+v", rep)
	}
}

// Overwriting keeps the old archive as a dated backup, and a gzip
// archive holds the stream exactly.
func TestWriteTarBackupAndGzip(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "ws.tgz")
	writeFile(t, dest, "old archive", 0o600)
	data := tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "new"})
	before := time.Now().UTC().Truncate(time.Second)
	rep, err := WriteTar(context.Background(), bytes.NewReader(data), dest, ArchiveOptions{Overwrite: true, Gzip: true})
	must(t, err)
	if !rep.Replaced || filepath.Dir(rep.Backup) != dir {
		t.Fatalf("report %+v", rep)
	}
	stamp, ok := strings.CutPrefix(filepath.Base(rep.Backup), "ws.tgz"+BackupMarker)
	if at, err := time.Parse(backupTimeFormat, stamp); !ok || err != nil || at.Before(before) || at.After(time.Now().UTC()) {
		t.Errorf("backup name %s: %v", rep.Backup, err)
	}
	if b, _ := os.ReadFile(rep.Backup); string(b) != "old archive" {
		t.Errorf("backup holds %q", b)
	}
	f, err := os.Open(dest)
	must(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(t, err)
	got, err := io.ReadAll(zr)
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("gunzipped %d bytes, want the %d sent", len(got), len(data))
	}
	// A second overwrite within the same second gets its own backup.
	_, err = WriteTar(context.Background(), bytes.NewReader(data), dest, ArchiveOptions{Overwrite: true})
	must(t, err)
	_, err = WriteTar(context.Background(), bytes.NewReader(data), dest, ArchiveOptions{Overwrite: true})
	must(t, err)
	if got := names(dir); len(got) != 4 {
		t.Errorf("dir holds %q, want the archive and three backups", got)
	}
}

// The temporaries of a killed export are swept by the next export into
// the same directory; a running export's (locked), a fresh one, a
// backup and other files stay.
func TestSweepTemps(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * staleTempAge)
	mk := func(name string, isDir bool) string {
		p := filepath.Join(dir, name)
		if isDir {
			writeFile(t, filepath.Join(p, "sub/file"), "partial", 0o644)
			must(t, os.Chmod(filepath.Join(p, "sub"), 0o500)) // a read-only directory does not keep it
		} else {
			writeFile(t, p, "partial", 0o600)
		}
		must(t, os.Chtimes(p, old, old))
		return p
	}
	mk(".out.pyro-tmp-123", true)         // a killed tree export
	mk(".out.tar.pyro-tmp-456", false)    // a killed archive export
	mk(".other.pyro-old-789", true)       // an old version's aside directory
	mk(".other.tgz.pyro-tar-1abc", false) // an old version's .tar stage
	running := mk(".out.pyro-tmp-999", false)
	held, err := os.Open(running)
	must(t, err)
	defer held.Close()
	must(t, unix.Flock(int(held.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	writeFile(t, filepath.Join(dir, ".new.pyro-tmp-fresh"), "just made", 0o600)
	backup := mk("out"+BackupMarker+"20260101T000000", true)
	mk(".hidden-user-file", false)
	link := filepath.Join(dir, ".link.pyro-tmp-ln")
	must(t, os.Symlink("/etc", link))
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, link, ts, unix.AT_SYMLINK_NOFOLLOW))

	rep, err := Extract(context.Background(), bytes.NewReader(tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "a"})),
		filepath.Join(dir, "out"), ExtractOptions{})
	must(t, err)
	want := []string{".hidden-user-file", ".new.pyro-tmp-fresh", ".out.pyro-tmp-999", "out", filepath.Base(backup)}
	if got := names(dir); !slices.Equal(got, want) {
		t.Errorf("after the sweep: %q\nwant %q", got, want)
	}
	if rep.SweptTemps != 5 || len(rep.Warnings) != 0 {
		t.Errorf("report %+v", rep)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Errorf("the symlink was followed: %v", err)
	}
	// Once the export that held it is gone, its temporary goes too.
	held.Close()
	n, err := SweepTemps(dir, time.Now())
	must(t, err)
	if n != 1 || slices.Contains(names(dir), ".out.pyro-tmp-999") {
		t.Errorf("second sweep removed %d: %q", n, names(dir))
	}
	// And the fresh one once it is old.
	n, err = SweepTemps(dir, time.Now().Add(2*staleTempAge))
	must(t, err)
	if want := []string{".hidden-user-file", "out", filepath.Base(backup)}; n != 1 || !slices.Equal(names(dir), want) {
		t.Errorf("third sweep removed %d: %q", n, names(dir))
	}
}
