package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchStack is a 1 GiB disk with no base and 64 MiB written across it in
// 1 MiB pieces, flushed.
func benchStack(b *testing.B) *Stack {
	b.Helper()
	s, err := Create(filepath.Join(b.TempDir(), "s"), "", 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	p := fill(1<<20, 1)
	for off := int64(0); off < 1<<30; off += 16 << 20 {
		if _, err := s.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkFreeze is the cost of a snapshot: one cluster written since the
// last one, then Freeze (a flush, a new layer, a manifest).
func BenchmarkFreeze(b *testing.B) {
	s := benchStack(b)
	p := fill(ClusterSize, 2)
	for i := 0; b.Loop(); i++ {
		if _, err := s.WriteAt(p, int64(i%1000)*ClusterSize); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Freeze("bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCutBack is the cost of a reset to a snapshot with one cluster
// written since.
func BenchmarkCutBack(b *testing.B) {
	s := benchStack(b)
	snap, err := s.Freeze("snap")
	if err != nil {
		b.Fatal(err)
	}
	p := fill(ClusterSize, 2)
	for b.Loop() {
		if _, err := s.WriteAt(p, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.CutBack(snap.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFork is the cost of starting a workspace from a snapshot of a
// running one: Fork of the second of two frozen layers (64 MiB written in
// the first, one cluster in the second), linked, while the source is open;
// then Close and removal of the fork.
func BenchmarkFork(b *testing.B) {
	s := benchStack(b)
	if _, err := s.Freeze("a"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.WriteAt(fill(ClusterSize, 2), 0); err != nil {
		b.Fatal(err)
	}
	snap, err := s.Freeze("b")
	if err != nil {
		b.Fatal(err)
	}
	tmp := b.TempDir()
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(tmp, fmt.Sprint(i))
		f, err := Fork(s.dir, snap.ID, dir)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		f.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

// BenchmarkSeqWrite writes 1 MiB at a time across the disk, into the page
// cache: the cost of the write path, not of the host's disk.
func BenchmarkSeqWrite(b *testing.B) {
	s := benchStack(b)
	p := fill(1<<20, 3)
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		if _, err := s.WriteAt(p, int64(i%1024)<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeqRead reads 1 MiB at a time: from one layer below the top
// (one pread), and from a region whose clusters alternate between two layers
// (256 preads, the worst case for coalescing).
func BenchmarkSeqRead(b *testing.B) {
	s := benchStack(b)
	p := fill(1<<20, 4)
	for off := int64(0); off < 64<<20; off += 1 << 20 {
		s.WriteAt(p, off)
		s.WriteAt(p, 256<<20+off)
	}
	if _, err := s.Freeze("lower"); err != nil {
		b.Fatal(err)
	}
	for off := int64(0); off < 64<<20; off += 2 * ClusterSize {
		s.WriteAt(p[:ClusterSize], off)
	}
	b.Run("fragmented", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for i := 0; b.Loop(); i++ {
			if _, err := s.ReadAt(p, int64(i%64)<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-layer", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for i := 0; b.Loop(); i++ {
			if _, err := s.ReadAt(p, 256<<20+int64(i%64)<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
}
