package hostio

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeArchive(t *testing.T, name string, data []byte, gz bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		must(t, zw.Close())
		data = b.Bytes()
	}
	must(t, os.WriteFile(p, data, 0o644))
	return p
}

func TestTarArchiveNormalises(t *testing.T) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./proj/", Typeflag: tar.TypeDir, Mode: 0o2775, Uid: 1000, Gid: 1000, Uname: "me", Gname: "me"},
		{Name: "./proj//src/../main.go", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 4, Uid: 1000, Uname: "me"},
		{Name: "proj/link", Typeflag: tar.TypeSymlink, Linkname: "main.go"},
		{Name: "proj/abs", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "proj/hard", Typeflag: tar.TypeLink, Linkname: "./proj/main.go"},
	} {
		h.ModTime = testTime
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			tw.Write([]byte("code"))
		}
	}
	must(t, tw.Close())
	want := []string{"proj/ 775", `proj/main.go 755 "code"`, "proj/link -> main.go", "proj/abs -> /etc/passwd", "proj/hard => proj/main.go"}
	// gzip is found by its magic: a plain tar named .tgz and a gzipped
	// one named .tar both work.
	for _, c := range []struct {
		name string
		gz   bool
	}{{"plain.tar", false}, {"plain.tgz", false}, {"zipped.tar", true}, {"zipped.tar.gz", true}} {
		var out bytes.Buffer
		rep, err := TarArchive(context.Background(), &out, writeArchive(t, c.name, raw.Bytes(), c.gz), SeedOptions{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := listTar(t, out.Bytes()); !slices.Equal(got, want) {
			t.Errorf("%s: entries %q, want %q", c.name, got, want)
		}
		if rep.Files != 1 || rep.Dirs != 1 || rep.Symlinks != 2 || rep.HardLinks != 1 || rep.Bytes != 4 {
			t.Errorf("%s: report %+v", c.name, rep)
		}
	}
}

func TestTarArchiveRejects(t *testing.T) {
	cases := map[string]struct {
		data []byte
		msg  string
	}{
		"absolute":      {tarBytes(t, entry{name: "/etc/x", typ: tar.TypeReg, body: "x"}), "absolute name"},
		"dotdot":        {tarBytes(t, entry{name: "a/../../x", typ: tar.TypeReg, body: "x"}), `outside the archive root through ".."`},
		"hard link out": {tarBytes(t, entry{name: "h", link: "../../etc/passwd", typ: tar.TypeLink}), "outside the archive"},
		"hard link abs": {tarBytes(t, entry{name: "h", link: "/etc/passwd", typ: tar.TypeLink}), "outside the archive"},
		"truncated":     {tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "x"})[:1024], "end-of-archive marker"},
		"cut mid-file":  {tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: strings.Repeat("x", 2000)})[:1200], "unexpected EOF"},
		"not tar":       {[]byte(strings.Repeat("hello world\n", 100)), "not a valid tar archive"},
		"empty":         {nil, "end-of-archive marker"},
		"bzip2":         {[]byte("BZh91AY&SY"), "bzip2 is not supported"},
		"xz":            {[]byte("\xfd7zXZ\x00\x00"), "xz is not supported"},
		"bad gzip":      {[]byte("\x1f\x8b\x00garbage"), "gzip"},
	}
	for name, c := range cases {
		_, err := TarArchive(context.Background(), io.Discard, writeArchive(t, "a.tar", c.data, false), SeedOptions{})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %q", name, err, c.msg)
		}
	}
	_, err := TarArchive(context.Background(), io.Discard, filepath.Join(t.TempDir(), "missing.tar"), SeedOptions{})
	if err == nil {
		t.Error("missing archive: no error")
	}
}

func TestTarArchiveSkips(t *testing.T) {
	data := tarBytes(t,
		entry{name: "dev/null", typ: tar.TypeChar},
		entry{name: "dev/sda", typ: tar.TypeBlock},
		entry{name: "pipe", typ: tar.TypeFifo},
		entry{name: "big", typ: tar.TypeReg, body: strings.Repeat("b", 100)},
		entry{name: "link-to-big", link: "big", typ: tar.TypeLink},
		entry{name: "link-to-nothing", link: "nothing", typ: tar.TypeLink},
		entry{name: "sym", link: "small", typ: tar.TypeSymlink},
		entry{name: "link-to-sym", link: "sym", typ: tar.TypeLink},
		entry{name: "small", typ: tar.TypeReg, body: "s"},
		entry{name: "link-to-small", link: "small", typ: tar.TypeLink},
		entry{name: "small", typ: tar.TypeSymlink, link: "elsewhere"}, // replaces the file
		entry{name: "link-to-replaced", link: "small", typ: tar.TypeLink},
		entry{name: "cont", typ: tar.TypeCont},
	)
	var out bytes.Buffer
	rep, err := TarArchive(context.Background(), &out, writeArchive(t, "x.tar", data, true), SeedOptions{MaxFileSize: 10})
	must(t, err)
	want := []string{"sym -> small", `small 644 "s"`, "link-to-small => small", "small -> elsewhere"}
	if got := listTar(t, out.Bytes()); !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	for p, why := range map[string]string{
		"dev/null": "character device", "dev/sda": "block device", "pipe": "named pipe", "big": "larger than the 10-byte",
		"link-to-big": "not a regular file sent earlier", "link-to-nothing": "not a regular file sent earlier",
		"link-to-sym": "not a regular file sent earlier", "link-to-replaced": "not a regular file sent earlier", "cont": "tar type",
	} {
		if !hasSkip(rep, p, why) {
			t.Errorf("%s not skipped for %q: %+v", p, why, rep.Skipped)
		}
	}
	if _, err := TarArchive(context.Background(), io.Discard, writeArchive(t, "x.tar", data, false), SeedOptions{MaxTotal: 50}); err == nil || !strings.Contains(err.Error(), "50-byte limit") {
		t.Errorf("MaxTotal: %v", err)
	}
}

func TestTarArchiveExclude(t *testing.T) {
	// No entry for node_modules itself: Exclude is still asked about it.
	data := tarBytes(t,
		entry{name: "node_modules/a/index.js", typ: tar.TypeReg, body: "x"},
		entry{name: "src/", typ: tar.TypeDir},
		entry{name: "src/app.js", typ: tar.TypeReg, body: "y"},
		entry{name: "src/app.log", typ: tar.TypeReg, body: "z"},
	)
	var out bytes.Buffer
	rep, err := TarArchive(context.Background(), &out, writeArchive(t, "x.tar", data, false), SeedOptions{
		Exclude: func(rel string, fi fs.FileInfo) bool {
			return (rel == "node_modules" && fi.IsDir()) || strings.HasSuffix(rel, ".log")
		},
	})
	must(t, err)
	if got, want := listTar(t, out.Bytes()), []string{"src/ 755", `src/app.js 644 "y"`}; !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	if rep.Excluded != 2 {
		t.Errorf("excluded %d", rep.Excluded)
	}
}

// The normalised stream extracts cleanly, hard link included.
func TestTarArchiveExtract(t *testing.T) {
	data := tarBytes(t,
		entry{name: "d/", typ: tar.TypeDir},
		entry{name: "d/f", typ: tar.TypeReg, body: "data"},
		entry{name: "d/h", link: "d/f", typ: tar.TypeLink},
	)
	var out bytes.Buffer
	_, err := TarArchive(context.Background(), &out, writeArchive(t, "x.tar", data, false), SeedOptions{})
	must(t, err)
	dest := filepath.Join(t.TempDir(), "x")
	_, err = Extract(context.Background(), &out, dest, ExtractOptions{})
	must(t, err)
	a, _ := os.Stat(filepath.Join(dest, "d/f"))
	b, _ := os.Stat(filepath.Join(dest, "d/h"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("hard link not kept: %v %v", a, b)
	}
}
