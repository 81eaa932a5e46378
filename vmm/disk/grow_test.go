package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A workspace's disk is larger than its environment's image: the room past
// the image reads as zeros, takes writes like any other range, and keeps
// its size through flush, freeze, checkout and reopen.
func TestDiskLargerThanBase(t *testing.T) {
	const base = 1<<20 + 1536 // ends inside a cluster
	const size = 16 << 20
	m := newModel(t, "", base, size, 31)
	m.read(base-512, 8192) // straddles the base's end: base bytes, then zeros
	m.read(size-ClusterSize, ClusterSize)
	m.write(base-100, fill(300, 1)) // the cluster holding the base's end
	m.write(8<<20, fill(3*ClusterSize, 2))
	m.write(size-700, fill(700, 3)) // the disk's last bytes
	m.flush()
	m.freeze("baseline")
	m.write(12<<20, fill(ClusterSize, 4))
	m.checkout(0) // back to the baseline: the later write is gone
	m.reopen()
	if m.s.Size() != size {
		t.Fatalf("size after reopen %d, want %d", m.s.Size(), size)
	}
	m.check()
}

// A large disk over a small image costs host space only for what is
// written, and a stack created at the image's size (every workspace made
// before disks had a size) keeps that size when reopened.
func TestLargeDiskIsSparse(t *testing.T) {
	tmp := t.TempDir()
	basePath, img := writeBase(t, tmp, 64<<10, 32)
	dir := filepath.Join(tmp, "big")
	s, err := Create(dir, basePath, 8<<30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt(fill(ClusterSize, 5), 6<<30); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := make([]byte, 2*ClusterSize)
	if _, err := s.ReadAt(got, 6<<30-ClusterSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:ClusterSize], make([]byte, ClusterSize)) || !bytes.Equal(got[ClusterSize:], fill(ClusterSize, 5)) {
		t.Fatal("8 GiB disk: past the image does not read zeros then the write")
	}
	head := make([]byte, len(img))
	if _, err := s.ReadAt(head, 0); err != nil || !bytes.Equal(head, img) {
		t.Fatalf("8 GiB disk: the image does not read through: %v", err)
	}
	id := s.Layers()[0].ID
	if n := blocks(t, dataPath(dir, id)); n > 64<<10 {
		t.Fatalf("one cluster written on an 8 GiB disk allocated %d bytes", n)
	}

	old := filepath.Join(tmp, "old")
	o, err := Create(old, basePath, 0)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	if o, err = Open(old); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Size() != int64(len(img)) {
		t.Fatalf("a stack at its image's size reopened as %d bytes, want %d", o.Size(), len(img))
	}
	if _, err := o.ReadAt(make([]byte, 1), int64(len(img))); err == nil {
		t.Fatal("read past an image-sized disk succeeded")
	}
	if fi, err := os.Stat(dataPath(old, o.Layers()[0].ID)); err != nil || fi.Size() != int64(len(img)) {
		t.Fatalf("its data file: %v %v", fi, err)
	}
}
