package memory

import (
	"errors"
	"testing"
)

func TestLayoutSplitsAroundHole(t *testing.T) {
	g, err := New(Layout{Size: 3 << 20, Hole: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rs := g.Regions()
	if len(rs) != 2 || rs[0].GuestAddr != 0 || len(rs[0].Host) != 2<<20 || rs[1].GuestAddr != FourGiB || len(rs[1].Host) != 1<<20 {
		t.Fatalf("regions: %+v", rs)
	}
	if g.Size() != 3<<20 {
		t.Fatalf("size %d", g.Size())
	}
	// The two regions share one mapping, disjointly.
	if err := g.WriteAt([]byte("low"), 2<<20-3); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteAt([]byte("high"), FourGiB); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if err := g.ReadAt(p[:3], 2<<20-3); err != nil || string(p[:3]) != "low" {
		t.Fatalf("%q %v", p, err)
	}
	if err := g.ReadAt(p, FourGiB); err != nil || string(p) != "high" {
		t.Fatalf("%q %v", p, err)
	}
}

func TestSmallGuestHasOneRegion(t *testing.T) {
	g, err := New(Layout{Size: 1 << 20, Hole: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if len(g.Regions()) != 1 {
		t.Fatalf("regions: %+v", g.Regions())
	}
}

func TestBadLayouts(t *testing.T) {
	for _, l := range []Layout{{0, 1 << 20}, {4097, 1 << 20}, {1 << 20, 0}, {1 << 20, FourGiB + 4096}, {1 << 20, 4095}} {
		if g, err := New(l); err == nil {
			g.Close()
			t.Errorf("%+v accepted", l)
		}
	}
}

func TestSliceBounds(t *testing.T) {
	g := FromBytes(Region{GuestAddr: 0x1000, Host: make([]byte, 0x1000)}, Region{GuestAddr: 0x3000, Host: make([]byte, 0x1000)})
	ok := []struct{ addr, n uint64 }{{0x1000, 0x1000}, {0x1fff, 1}, {0x3000, 0}, {0x3800, 0x800}}
	for _, c := range ok {
		b, err := g.Slice(c.addr, c.n)
		if err != nil || uint64(len(b)) != c.n {
			t.Errorf("Slice(%#x, %#x) = %d bytes, %v", c.addr, c.n, len(b), err)
		}
	}
	bad := []struct{ addr, n uint64 }{
		{0, 1}, {0xfff, 2}, {0x1fff, 2}, {0x2000, 1}, {0x1800, 0x2000}, // holes and straddles
		{0x3fff, 2}, {0x4000, 1},
		{^uint64(0), 2}, {0x1000, ^uint64(0)}, {0x3001, ^uint64(0) - 0x3000}, // overflow
	}
	for _, c := range bad {
		_, err := g.Slice(c.addr, c.n)
		var re *RangeError
		if !errors.As(err, &re) {
			t.Errorf("Slice(%#x, %#x) = %v, want a RangeError", c.addr, c.n, err)
		}
	}
	// A slice cannot be grown past its range with append.
	b, _ := g.Slice(0x1000, 4)
	if cap(b) != 4 {
		t.Errorf("cap %d leaks the rest of the region", cap(b))
	}
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0x1000), uint64(16))
	f.Add(uint64(0x1fff), uint64(2))
	f.Add(^uint64(0), uint64(1))
	g := FromBytes(Region{GuestAddr: 0x1000, Host: make([]byte, 0x1000)}, Region{GuestAddr: 0x3000, Host: make([]byte, 0x100)})
	f.Fuzz(func(t *testing.T, addr, n uint64) {
		b, err := g.Slice(addr, n)
		if err != nil {
			return
		}
		if uint64(len(b)) != n {
			t.Fatalf("Slice(%#x, %#x) returned %d bytes", addr, n, len(b))
		}
		in := func(r Region) bool { return addr >= r.GuestAddr && addr+n <= r.End() && addr+n >= addr }
		if n > 0 && !in(g.regions[0]) && !in(g.regions[1]) {
			t.Fatalf("Slice(%#x, %#x) accepted a range outside RAM", addr, n)
		}
	})
}
