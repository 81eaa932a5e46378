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
		for k, v := range after {
			if !inDest(k) && before[k] != v {
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
