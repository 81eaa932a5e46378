package hostio

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fuzzSeeds are the archives FuzzExtract starts from, besides the
// committed corpus in testdata/fuzz/FuzzExtract.
func fuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		tarBytes(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, body: "hi"}, entry{name: "l", link: "d/f", typ: tar.TypeSymlink}, entry{name: "h", link: "d/f", typ: tar.TypeLink}),
		tarBytes(t, entry{name: "evil", link: "../outside", typ: tar.TypeSymlink}, entry{name: "evil/x", typ: tar.TypeReg, body: "bad"}),
		tarBytes(t, entry{name: "../outside/x", typ: tar.TypeReg, body: "bad"}),
		tarBytes(t, entry{name: "h", link: "../outside/keep", typ: tar.TypeLink}),
		tarBytes(t, entry{name: "only", typ: tar.TypeReg, body: "one file", mode: 0o4755}),
		tarBytes(t, entry{name: "p", typ: tar.TypeFifo}),
	}
}

// FuzzExtract feeds arbitrary bytes to Extract as a guest's tar stream:
// it must never panic, never write outside dest (the parent directory,
// holding dest and a sibling the seeds aim at, is compared before and
// after), leave nothing behind, and leave dest as it was on error.
func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, overwrite, file bool) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		writeFile(t, filepath.Join(parent, "outside/keep"), "keep", 0o644)
		if overwrite {
			writeFile(t, filepath.Join(dest, "old"), "old", 0o644)
		}
		before := snapshot(t, parent)
		rep, err := Extract(context.Background(), bytes.NewReader(data), dest, ExtractOptions{
			Overwrite: overwrite, File: file, MaxTotal: 1 << 20, MaxEntries: 1000,
		})
		after := snapshot(t, parent)
		inDest := func(k string) bool { return k == "dest" || strings.HasPrefix(k, "dest/") }
		// A successful overwrite moves the old dest to its backup beside
		// it (checked below).
		isBackup := func(k string) bool {
			if err != nil || !overwrite || rep == nil || rep.Backup == "" {
				return false
			}
			b := filepath.Base(rep.Backup)
			return k == b || strings.HasPrefix(k, b+"/")
		}
		for k, v := range after {
			if !inDest(k) && !isBackup(k) && before[k] != v {
				t.Fatalf("outside dest, %s changed: %q, was %q", k, v, before[k])
			}
		}
		for k, v := range before {
			if !inDest(k) && after[k] != v {
				t.Fatalf("outside dest, %s changed: now %q, was %q", k, after[k], v)
			}
			if err != nil && inDest(k) && after[k] != v {
				t.Fatalf("failed export (%v) changed dest: %s now %q, was %q", err, k, after[k], v)
			}
		}
		want := []string{"outside"}
		if err == nil || overwrite {
			want = []string{"dest", "outside"}
		}
		if err == nil && overwrite {
			want = []string{"dest", filepath.Base(rep.Backup), "outside"}
			if !strings.HasPrefix(rep.Backup, dest+BackupMarker) || snapshot(t, rep.Backup)["old"] != before["dest/old"] {
				t.Fatalf("the old dest was not kept as %q", rep.Backup)
			}
		}
		if got := names(parent); !slices.Equal(got, want) {
			t.Fatalf("parent holds %q, want %q (err %v)", got, want, err)
		}
		if err == nil {
			fi, serr := os.Lstat(dest)
			if rep == nil || serr != nil || fi.Mode().IsRegular() != file {
				t.Fatalf("success, but dest %v %v, report %+v", fi, serr, rep)
			}
			if err := filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky|os.ModeDevice|os.ModeNamedPipe|os.ModeSocket|os.ModeCharDevice) != 0 {
					t.Errorf("%s has mode %v", p, fi.Mode())
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzExportArchive feeds arbitrary bytes to WriteTar as a guest's tar
// stream, with tight bounds: it must never panic, must accept exactly
// what Extract accepts (the same checks, shared), must save the stream
// byte for byte within MaxBytes, and must leave nothing but the archive
// beside it (and on error, nothing at all).
func FuzzExportArchive(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint16(0))
	}
	f.Add(tarBytes(f, entry{name: "a", link: "/etc", typ: tar.TypeSymlink}, entry{name: "a/x", typ: tar.TypeReg, body: "x"}), uint16(0))
	f.Add(tarBytes(f, entry{name: "d/x", typ: tar.TypeReg, body: "x"}, entry{name: "d", link: "/", typ: tar.TypeSymlink}), uint16(0))
	f.Add(tarBytes(f, entry{name: strings.Repeat("n", 300), typ: tar.TypeReg}), uint16(600))
	f.Fuzz(func(t *testing.T, data []byte, maxBytes uint16) {
		const maxTotal, maxEntries = 1 << 16, 100
		parent := t.TempDir()
		dest := filepath.Join(parent, "a.tar")
		limit := int64(maxBytes)
		if limit == 0 {
			limit = 1 << 20
		}
		rep, err := WriteTar(context.Background(), bytes.NewReader(data), dest,
			ArchiveOptions{MaxTotal: maxTotal, MaxEntries: maxEntries, MaxBytes: limit})
		saved, rerr := os.ReadFile(dest)
		if err != nil {
			if rerr == nil || len(names(parent)) != 0 {
				t.Fatalf("failed (%v) but left %q", err, names(parent))
			}
		} else {
			if rerr != nil || rep == nil {
				t.Fatalf("success, but %v %+v", rerr, rep)
			}
			if int64(len(saved)) > limit || !bytes.HasPrefix(data, saved) {
				t.Fatalf("saved %d bytes (limit %d) that are not the stream's first", len(saved), limit)
			}
			if got := names(parent); !slices.Equal(got, []string{"a.tar"}) {
				t.Fatalf("left %q beside the archive", got)
			}
		}
		// Extract, with the same bounds, agrees (a stream cut by
		// MaxBytes aside).
		xrep, xerr := Extract(context.Background(), bytes.NewReader(data), filepath.Join(parent, "tree"),
			ExtractOptions{MaxTotal: maxTotal, MaxEntries: maxEntries})
		cut := err != nil && strings.Contains(err.Error(), "headers and names counted")
		switch {
		case cut:
		case (err == nil) != (xerr == nil):
			t.Fatalf("WriteTar: %v; Extract: %v", err, xerr)
		case err == nil && (rep.Files != xrep.Files || rep.Dirs != xrep.Dirs || rep.Symlinks != xrep.Symlinks ||
			rep.HardLinks != xrep.HardLinks || rep.Bytes != xrep.Bytes):
			t.Fatalf("WriteTar reports %+v, Extract %+v", rep, xrep)
		}
		if err == nil {
			// The saved archive extracts as the stream did.
			if _, err := Extract(context.Background(), bytes.NewReader(saved), filepath.Join(parent, "again"),
				ExtractOptions{MaxTotal: maxTotal, MaxEntries: maxEntries}); err != nil {
				t.Fatalf("the saved archive does not extract: %v", err)
			}
		}
	})
}
