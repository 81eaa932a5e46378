package memory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A guest opened from an image, written here and there (over the image's
// data and over its holes) and read elsewhere, reads as the image again
// after Rewind, which copies back exactly the pages written.
func TestRewind(t *testing.T) {
	dir := t.TempDir()
	g := newTestGuest(t, testLayout)
	writeTestPattern(t, g)
	img := filepath.Join(dir, "image")
	if _, err := g.Save(img); err != nil {
		t.Fatal(err)
	}
	want := readFile(t, img)

	r := openImage(t, img)
	if !r.SameImage(img) {
		t.Fatal("SameImage: the guest's own image is not the same")
	}
	cp := filepath.Join(dir, "copy")
	if err := os.WriteFile(cp, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if r.SameImage(cp) || r.SameImage(filepath.Join(dir, "missing")) || g.SameImage(img) {
		t.Fatal("SameImage: a copy, a missing file or anonymous memory counted as the image")
	}

	// Read a few pages: they stay the file's and are not copied.
	buf := make([]byte, 3*pageSize)
	for _, a := range []uint64{0, 0x200000, FourGiB} {
		if err := r.ReadAt(buf, a); err != nil {
			t.Fatal(err)
		}
	}
	// Write four pages (two of them adjacent, one over a hole, one past
	// the MMIO hole) and zero a fifth.
	mod := make([]byte, 64)
	fill(mod, 0x33)
	writes := []uint64{0x10000 + 100, 0x11000, 0x300000, FourGiB + 1<<20}
	for _, a := range writes {
		if err := r.WriteAt(mod, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.WriteAt(make([]byte, pageSize), FourGiB); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(image(r), want) {
		t.Fatal("the writes did not change the memory")
	}
	for round := range 2 {
		st, err := r.Rewind()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(image(r), want) {
			t.Fatalf("round %d: the rewound memory differs from the image", round)
		}
		// The pages copied back stay the process's own: a second
		// rewind copies them again (and nothing else).
		if st.Copied != uint64(len(writes)+1) || st.Pages != testLayout.Size/pageSize {
			t.Fatalf("round %d: stats %+v, want %d pages copied of %d", round, st, len(writes)+1, testLayout.Size/pageSize)
		}
	}
	if _, err := g.Rewind(); !errors.Is(err, ErrNotImage) {
		t.Fatalf("Rewind of anonymous memory: %v", err)
	}
}

// Remap puts anonymous RAM on the image just saved from it: the bytes are
// the same, none of the pages is the process's own any more, and Rewind
// takes the RAM back to the image from then on.
func TestRemapOnSavedImage(t *testing.T) {
	dir := t.TempDir()
	g := newTestGuest(t, testLayout)
	writeTestPattern(t, g)
	want := append([]byte(nil), image(g)...)
	img := filepath.Join(dir, "image")
	if _, err := g.Save(img); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, want[:pageSize], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Remap(short); err == nil || errors.Is(err, ErrLost) {
		t.Fatalf("Remap on an image of another size: %v", err)
	}
	if !bytes.Equal(image(g), want) || g.SameImage(short) {
		t.Fatal("a refused Remap changed the RAM")
	}
	if err := g.Remap(img); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(image(g), want) || !g.SameImage(img) || g.Backing() != img {
		t.Fatal("the remapped RAM differs from what was saved")
	}
	st, err := g.Rewind()
	if err != nil || st.Copied != 0 {
		t.Fatalf("right after Remap, Rewind copied %d pages (%v): the process kept its own copies", st.Copied, err)
	}
	if err := g.WriteAt([]byte("changed"), 0x5000); err != nil {
		t.Fatal(err)
	}
	if st, err = g.Rewind(); err != nil || st.Copied != 1 || !bytes.Equal(image(g), want) {
		t.Fatalf("Rewind after a write: %+v %v", st, err)
	}
	if !bytes.Equal(readFile(t, img), want) {
		t.Fatal("the guest's writes reached the image")
	}
}
