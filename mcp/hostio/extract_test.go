package hostio

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExtractTree(t *testing.T) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o750},
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o555},                  // read-only: gets u+w
		{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o6755, Size: 3},    // set-id: dropped
		{Name: "deep/er/file", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3}, // parents implied
		{Name: "sparse", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5 << 20}, // all zeros
		{Name: "hard", Typeflag: tar.TypeLink, Linkname: "bin/tool"},
		{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: "bin/tool"},
		{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "bin/up", Typeflag: tar.TypeSymlink, Linkname: "../../x"},
		{Name: "twice", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "twice", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}, // replaces
		{Name: "dir-then-file/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dir-then-file", Typeflag: tar.TypeSymlink, Linkname: "rel"}, // replaces the empty dir
	} {
		h.ModTime = testTime
		must(t, tw.WriteHeader(h))
		switch {
		case h.Name == "sparse":
			tw.Write(make([]byte, h.Size))
		case h.Size > 0:
			tw.Write([]byte(h.Name[:3]))
		}
	}
	must(t, tw.Close())
	parent := t.TempDir()
	dest := filepath.Join(parent, "new/out") // parent created
	rep, err := Extract(context.Background(), &raw, dest, ExtractOptions{})
	must(t, err)
	if rep.Dest != dest || rep.Files != 4 || rep.Dirs != 3 || rep.HardLinks != 1 || rep.Symlinks != 4 || rep.Bytes != 5<<20+12 || rep.Replaced {
		t.Errorf("report %+v", rep)
	}
	if !slices.Equal(rep.LinksOutside, []string{"abs -> /etc/passwd", "bin/up -> ../../x"}) {
		t.Errorf("links outside %q", rep.LinksOutside)
	}
	got := snapshot(t, dest)
	want := map[string]string{
		".":             "drwxr-x---", // 0750 | 0700
		"bin":           "drwx-wx-wx",
		"bin/tool":      "-rwxr-xr-x bin",
		"bin/up":        "Lrwxrwxrwx -> ../../x",
		"deep":          "drwxr-xr-x",
		"deep/er":       "drwxr-xr-x",
		"deep/er/file":  "-rw------- dee",
		"sparse":        "-rw-r--r-- " + string(make([]byte, 5<<20)),
		"hard":          "-rwxr-xr-x bin",
		"rel":           "Lrwxrwxrwx -> bin/tool",
		"abs":           "Lrwxrwxrwx -> /etc/passwd",
		"twice":         "-rw-r--r-- twi",
		"dir-then-file": "Lrwxrwxrwx -> rel",
	}
	want["bin"] = "drwxr-xr-x" // 0555 | 0700
	for k := range maps.Keys(want) {
		if got[k] != want[k] {
			g, w := got[k], want[k]
			if len(g) > 40 {
				g, w = g[:40]+"…", w[:min(40, len(w))]+"…"
			}
			t.Errorf("%s: got %q, want %q", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d entries, want %d: %v", len(got), len(want), slices.Sorted(maps.Keys(got)))
	}
	a, _ := os.Stat(filepath.Join(dest, "bin/tool"))
	b, _ := os.Stat(filepath.Join(dest, "hard"))
	if !os.SameFile(a, b) || !a.ModTime().Equal(testTime) {
		t.Errorf("hard link or mtime lost: %v %v", a.ModTime(), os.SameFile(a, b))
	}
	if fi, _ := os.Stat(filepath.Join(dest, "bin")); !fi.ModTime().Equal(testTime) {
		t.Errorf("dir mtime %v", fi.ModTime())
	}
	// The sparse file took (almost) no disk.
	if n, ok := diskBytes(filepath.Join(dest, "sparse")); ok && n > 1<<20 {
		t.Errorf("sparse file uses %d bytes of disk", n)
	}
	if left := names(filepath.Dir(dest)); !slices.Equal(left, []string{"out"}) {
		t.Errorf("left beside dest: %q", left)
	}
}

// Each malicious or broken stream fails the export and leaves dest,
// its surroundings and the rest of the host as they were.
func TestExtractMalicious(t *testing.T) {
	victim := t.TempDir() // stands for any host directory
	victimLink := func(p string) entry { return entry{name: p, link: victim, typ: tar.TypeSymlink} }
	big := strings.Repeat("x", 2048)
	cases := map[string]struct {
		data []byte
		msg  string
	}{
		"dotdot":             {tarBytes(t, entry{name: "../evil", typ: tar.TypeReg, body: "bad"}), `through ".."`},
		"dotdot deep":        {tarBytes(t, entry{name: "a/b/../../../evil", typ: tar.TypeReg, body: "bad"}), `through ".."`},
		"absolute":           {tarBytes(t, entry{name: victim + "/evil", typ: tar.TypeReg, body: "bad"}), "absolute name"},
		"symlink to /etc":    {tarBytes(t, entry{name: "etc", link: "/etc", typ: tar.TypeSymlink}, entry{name: "etc/pyro-pwned", typ: tar.TypeReg, body: "bad"}), "through the symlink"},
		"symlink to victim":  {tarBytes(t, victimLink("v"), entry{name: "v/evil", typ: tar.TypeReg, body: "bad"}), "through the symlink"},
		"symlink mkdir":      {tarBytes(t, victimLink("v"), entry{name: "v/sub/", typ: tar.TypeDir}), "through the symlink"},
		"symlink relative":   {tarBytes(t, entry{name: "up", link: "../..", typ: tar.TypeSymlink}, entry{name: "up/evil", typ: tar.TypeReg, body: "bad"}), "through the symlink"},
		"symlink inside":     {tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "l", link: "d", typ: tar.TypeSymlink}, entry{name: "l/f", typ: tar.TypeReg, body: "x"}), "through the symlink"},
		"symlink chain":      {tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/up", link: "..", typ: tar.TypeSymlink}, entry{name: "d/up/up2", link: "..", typ: tar.TypeSymlink}, entry{name: "d/up/up2/x", typ: tar.TypeReg, body: "bad"}), "through the symlink"},
		"dir over symlink":   {tarBytes(t, victimLink("v"), entry{name: "v/", typ: tar.TypeDir}, entry{name: "v/evil", typ: tar.TypeReg, body: "replaced, fine"}, entry{name: "/x", typ: tar.TypeReg}), "absolute name"},
		"file over symlink":  {tarBytes(t, victimLink("v"), entry{name: "v", typ: tar.TypeReg, body: "replaced, fine"}, entry{name: "../x", typ: tar.TypeReg}), `through ".."`},
		"under a file":       {tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "x"}, entry{name: "f/g", typ: tar.TypeReg, body: "x"}), "which is a file"},
		"hard link out":      {tarBytes(t, entry{name: "h", link: "../../../etc/passwd", typ: tar.TypeLink}), "outside the archive"},
		"hard link abs":      {tarBytes(t, entry{name: "h", link: "/etc/passwd", typ: tar.TypeLink}), "outside the archive"},
		"hard link absent":   {tarBytes(t, entry{name: "h", link: "nothing", typ: tar.TypeLink}), "not a regular file earlier"},
		"hard link via sym":  {tarBytes(t, victimLink("v"), entry{name: "h", link: "v/secret", typ: tar.TypeLink}), "not a regular file earlier"},
		"hard link to sym":   {tarBytes(t, entry{name: "s", link: "/etc/passwd", typ: tar.TypeSymlink}, entry{name: "h", link: "s", typ: tar.TypeLink}), "not a regular file earlier"},
		"hard link to dir":   {tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "h", link: "d", typ: tar.TypeLink}), "not a regular file earlier"},
		"char device":        {tarBytes(t, entry{name: "null", typ: tar.TypeChar}), "character device"},
		"block device":       {tarBytes(t, entry{name: "sda", typ: tar.TypeBlock}), "block device"},
		"fifo":               {tarBytes(t, entry{name: "p", typ: tar.TypeFifo}), "named pipe"},
		"unknown type":       {tarBytes(t, entry{name: "c", typ: tar.TypeCont}), "tar type"},
		"root as file":       {tarBytes(t, entry{name: ".", typ: tar.TypeReg, body: "x"}), "names the export's root"},
		"empty name":         {tarBytes(t, entry{name: "ok", typ: tar.TypeReg, body: "x"}, entry{name: "", typ: tar.TypeDir}), "empty name"},
		"replace full dir":   {tarBytes(t, entry{name: "d/f", typ: tar.TypeReg, body: "x"}, entry{name: "d", link: "/etc", typ: tar.TypeSymlink}), "replace a directory"},
		"oversized":          {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: big}, entry{name: "b", typ: tar.TypeReg, body: big}), "more than 3000 bytes"},
		"oversized sparse":   {sparseTar(t, 1<<40), "more than 3000 bytes"},
		"too many entries":   {tarBytes(t, entry{name: "1/", typ: tar.TypeDir}, entry{name: "2/", typ: tar.TypeDir}, entry{name: "3/", typ: tar.TypeDir}, entry{name: "4/", typ: tar.TypeDir}, entry{name: "5/", typ: tar.TypeDir}), "more than 4 entries"},
		"truncated at block": {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "x"}, entry{name: "b", typ: tar.TypeReg, body: "y"})[:1024], "end-of-archive marker"},
		"truncated in body":  {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: big})[:1000], "unexpected EOF"},
		"one end block":      {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "x"})[:1536], "end-of-archive marker"},
		"empty stream":       {nil, "end-of-archive marker"},
		"deep name":          {tarBytes(t, entry{name: strings.Repeat("d/", 2100) + "f", typ: tar.TypeReg, body: "x"}), "longer than 4096 bytes"},
		"garbage":            {[]byte(strings.Repeat("not a tar ", 200)), "not a valid tar stream"},
	}
	for name, c := range cases {
		for _, existing := range []bool{false, true} {
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			writeFile(t, filepath.Join(parent, "sibling"), "keep", 0o644)
			if existing {
				writeFile(t, filepath.Join(dest, "old"), "old", 0o644)
			}
			before := snapshot(t, parent)
			_, err := Extract(context.Background(), bytes.NewReader(c.data), dest, ExtractOptions{Overwrite: true, MaxTotal: 3000, MaxEntries: 4})
			if err == nil {
				t.Errorf("%s: no error", name)
			} else if !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "left as it was") {
				t.Errorf("%s: error %q, want %q", name, err, c.msg)
			}
			if after := snapshot(t, parent); !maps.Equal(before, after) {
				t.Errorf("%s (dest existed: %v): host changed:\nbefore %v\nafter  %v", name, existing, before, after)
			}
			if left := names(victim); len(left) != 0 {
				t.Fatalf("%s: wrote into the victim directory: %v", name, left)
			}
		}
	}
	if _, err := os.Lstat("/etc/pyro-pwned"); err == nil {
		t.Fatal("wrote /etc/pyro-pwned")
	}
}

// sparseTar is a PAX (GNU 1.0) sparse file of the given logical size,
// all hole, in four blocks. tar.Writer will not write one, so it is
// built by hand.
func sparseTar(t *testing.T, size int64) []byte {
	var recs string
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "huge"}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		recs += fmt.Sprint(n) + rec
	}
	var b []byte
	b = append(b, ustarBlock("PaxHeaders/huge", 'x', int64(len(recs)))...)
	b = append(b, pad512([]byte(recs))...)
	b = append(b, ustarBlock("huge", '0', 512)...)
	b = append(b, pad512([]byte("0\n"))...) // an empty sparse map: all hole
	b = append(b, make([]byte, 1024)...)
	// Check the construction: tar.Reader must see the logical size.
	h, err := tar.NewReader(bytes.NewReader(b)).Next()
	if err != nil || h.Size != size {
		t.Fatalf("sparseTar: %v %+v", err, h)
	}
	return b
}

func ustarBlock(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], fmt.Sprintf("%011o\x00", testTime.Unix()))
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512)...)
}

func TestExtractOverwrite(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	writeFile(t, filepath.Join(dest, "old.txt"), "old", 0o644)
	tree := tarBytes(t, entry{name: "new.txt", typ: tar.TypeReg, body: "new"})

	// Refused before anything is read.
	_, err := Extract(context.Background(), failReader{t}, dest, ExtractOptions{})
	wantErr(t, err, dest+" exists; pass overwrite: true to replace it")
	_, err = WriteTar(context.Background(), failReader{t}, dest, ArchiveOptions{})
	wantErr(t, err, "exists; pass overwrite: true")

	// A directory replaces a directory, read-only subdirectories and all.
	must(t, os.MkdirAll(filepath.Join(dest, "ro/sub"), 0o755))
	must(t, os.Chmod(filepath.Join(dest, "ro"), 0o500))
	rep, err := Extract(context.Background(), bytes.NewReader(tree), dest, ExtractOptions{Overwrite: true})
	must(t, err)
	if !rep.Replaced || len(rep.Warnings) != 0 || filepath.Dir(rep.Backup) != parent ||
		!strings.HasPrefix(filepath.Base(rep.Backup), "out.pyro-backup-20") {
		t.Errorf("report %+v", rep)
	}
	if got := names(dest); !slices.Equal(got, []string{"new.txt"}) {
		t.Errorf("dest holds %q", got)
	}
	// The old tree is kept, whole, as the backup.
	if got := names(rep.Backup); !slices.Equal(got, []string{"old.txt", "ro"}) {
		t.Errorf("backup holds %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(rep.Backup, "old.txt")); string(b) != "old" {
		t.Errorf("backup old.txt = %q", b)
	}
	if got := names(parent); !slices.Equal(got, []string{"out", filepath.Base(rep.Backup)}) {
		t.Errorf("left beside dest: %q", got)
	}
	dropBackups(t, parent)

	// A file replaces the directory, and a directory the file.
	one := tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/only", typ: tar.TypeReg, body: "single", mode: 0o640})
	_, err = Extract(context.Background(), bytes.NewReader(one), dest, ExtractOptions{Overwrite: true, File: true})
	must(t, err)
	if b, err := os.ReadFile(dest); string(b) != "single" || err != nil {
		t.Errorf("file export: %q %v", b, err)
	}
	if fi, _ := os.Stat(dest); fi.Mode() != 0o640 || !fi.ModTime().Equal(testTime) {
		t.Errorf("file export mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	_, err = Extract(context.Background(), bytes.NewReader(tree), dest, ExtractOptions{Overwrite: true})
	must(t, err)
	if got := names(dest); !slices.Equal(got, []string{"new.txt"}) {
		t.Errorf("dest holds %q", got)
	}

	// Symlinks already inside dest are never followed: the export is
	// built in a fresh directory, and the old tree is removed without
	// following them.
	victim := t.TempDir()
	writeFile(t, filepath.Join(victim, "keep"), "k", 0o644)
	must(t, os.Symlink(victim, filepath.Join(dest, "v")))
	through := tarBytes(t, entry{name: "v/file", typ: tar.TypeReg, body: "x"}, entry{name: "keep", link: "v/keep", typ: tar.TypeLink})
	_, err = Extract(context.Background(), bytes.NewReader(through), dest, ExtractOptions{Overwrite: true})
	wantErr(t, err, "not a regular file earlier in the archive")
	_, err = Extract(context.Background(), bytes.NewReader(through[:512+512]), dest, ExtractOptions{Overwrite: true})
	wantErr(t, err, "end-of-archive")
	_, err = Extract(context.Background(), bytes.NewReader(tarBytes(t, entry{name: "v/file", typ: tar.TypeReg, body: "x"})), dest, ExtractOptions{Overwrite: true})
	must(t, err)
	if fi, err := os.Lstat(filepath.Join(dest, "v")); err != nil || !fi.IsDir() {
		t.Errorf("dest/v: %v %v", fi, err)
	}
	if got := names(victim); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("victim holds %q", got)
	}

	// An existing symlink is replaced, not followed.
	elsewhere := t.TempDir()
	writeFile(t, filepath.Join(elsewhere, "precious"), "p", 0o644)
	link := filepath.Join(parent, "link")
	must(t, os.Symlink(elsewhere, link))
	_, err = Extract(context.Background(), bytes.NewReader(tree), link, ExtractOptions{Overwrite: true})
	must(t, err)
	if fi, _ := os.Lstat(link); !fi.IsDir() {
		t.Errorf("symlink dest not replaced: %v", fi.Mode())
	}
	if got := names(elsewhere); !slices.Equal(got, []string{"precious"}) {
		t.Errorf("symlink followed: %q", got)
	}
	dropBackups(t, parent)
	if got := names(parent); !slices.Equal(got, []string{"link", "out"}) {
		t.Errorf("left beside dest: %q", got)
	}
}

// dropBackups removes the backups of replaced destinations in dir.
func dropBackups(t *testing.T, dir string) {
	t.Helper()
	for _, n := range names(dir) {
		if strings.Contains(n, BackupMarker) {
			p := filepath.Join(dir, n)
			filepath.WalkDir(p, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					os.Chmod(p, 0o700)
				}
				return nil
			})
			must(t, os.RemoveAll(p))
		}
	}
}

func TestExtractFile(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		data []byte
		msg  string
	}{
		"two files":  {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "a"}, entry{name: "b", typ: tar.TypeReg, body: "b"}), `holds "a" and "b"`},
		"symlink":    {tarBytes(t, entry{name: "a", link: "/etc/passwd", typ: tar.TypeSymlink}), "is a symlink"},
		"none":       {tarBytes(t, entry{name: "d/", typ: tar.TypeDir}), "holds none"},
		"device":     {tarBytes(t, entry{name: "n", typ: tar.TypeChar}), "character device"},
		"too big":    {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: strings.Repeat("a", 200)}), "more than the 100-byte limit"},
		"truncated":  {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "a"})[:1024], "end-of-archive"},
		"then later": {tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "a"}, entry{name: "l", typ: tar.TypeLink, link: "a"}), "is a hard link"},
	}
	for name, c := range cases {
		dest := filepath.Join(dir, "f")
		_, err := Extract(context.Background(), bytes.NewReader(c.data), dest, ExtractOptions{File: true, MaxTotal: 100})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %q", name, err, c.msg)
		}
		if got := names(dir); len(got) != 0 {
			t.Errorf("%s: left %q", name, got)
		}
	}
}

func TestWriteTar(t *testing.T) {
	dir := t.TempDir()
	data := tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, body: "hello"}, entry{name: "l", link: "d/f", typ: tar.TypeSymlink})
	dest := filepath.Join(dir, "sub/export.tar")
	rep, err := WriteTar(context.Background(), bytes.NewReader(data), dest, ArchiveOptions{})
	must(t, err)
	got, err := os.ReadFile(dest)
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("saved %d bytes, want the %d sent", len(got), len(data))
	}
	if rep.Files != 1 || rep.Dirs != 1 || rep.Symlinks != 1 || rep.Bytes != 5 {
		t.Errorf("report %+v", rep)
	}
	if fi, _ := os.Stat(dest); fi.Mode() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	for name, bad := range map[string][]byte{
		"truncated": data[:len(data)-512],
		"garbage":   []byte(strings.Repeat("x", 5000)),
		"dotdot":    tarBytes(t, entry{name: "../x", typ: tar.TypeReg}),
		"absolute":  tarBytes(t, entry{name: "/x", typ: tar.TypeReg}),
		"hard out":  tarBytes(t, entry{name: "h", link: "../x", typ: tar.TypeLink}),
		"device":    tarBytes(t, entry{name: "null", typ: tar.TypeChar}),
	} {
		_, err := WriteTar(context.Background(), bytes.NewReader(bad), dest, ArchiveOptions{Overwrite: true})
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
			t.Errorf("%s: dest changed", name)
		}
		if left := names(filepath.Dir(dest)); !slices.Equal(left, []string{"export.tar"}) {
			t.Errorf("%s: left %q", name, left)
		}
	}
}

func TestExtractCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dest := filepath.Join(t.TempDir(), "x")
	_, err := Extract(ctx, bytes.NewReader(tarBytes(t, entry{name: "a", typ: tar.TypeReg, body: "x"})), dest, ExtractOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dest exists: %v", err)
	}
	if left := names(filepath.Dir(dest)); len(left) != 0 {
		t.Errorf("left %q", left)
	}
}

func TestExtractBadDest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "file"), "x", 0o644)
	for dest, msg := range map[string]string{
		"/":                               "cannot be a destination",
		"":                                "empty",
		filepath.Join(dir, "file", "sub"): "not a directory",
	} {
		_, err := Extract(context.Background(), failReader{t}, dest, ExtractOptions{Overwrite: true})
		wantErr(t, err, msg)
	}
}

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("the stream was read")
	return 0, io.EOF
}
