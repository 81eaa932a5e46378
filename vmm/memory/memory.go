// Package memory holds a guest's physical memory: one host mapping split into
// the guest-physical regions KVM maps, with bounds-checked access. The mapping
// is anonymous for a fresh guest (New) or a private, copy-on-write mapping of a
// memory snapshot file for a restored one (Open); Save writes it to such a
// file (snapshot.go).
//
// It sits between vmm/, which creates the mapping and registers each region
// with KVM, and everything that reads or writes the guest's RAM (the Linux
// loader now, virtio devices later). No caller ever gets a pointer: they pass
// a guest-physical address and length, and every access is checked with
// overflow-safe arithmetic against the region that holds it. A range that
// straddles two regions, or touches a hole, is an error, never a host read
// outside the guest's memory.
package memory

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Region is one contiguous range of guest-physical RAM and the host bytes
// that back it.
type Region struct {
	GuestAddr uint64
	Host      []byte
}

// End is the first guest-physical address after the region.
func (r Region) End() uint64 { return r.GuestAddr + uint64(len(r.Host)) }

// Guest is a guest's RAM.
type Guest struct {
	mapping []byte
	regions []Region
	// file and backing are the snapshot file a guest opened with Open maps
	// (nil and "" for anonymous memory); file stays open for Save.
	file    *os.File
	backing string
}

// Layout says where RAM goes: below Hole at address 0, the rest from 4 GiB.
// Hole is where the 32-bit MMIO window (devices, IOAPIC, LAPIC) starts.
type Layout struct {
	Size uint64
	Hole uint64
}

// FourGiB is where RAM resumes above the 32-bit MMIO hole.
const FourGiB = 1 << 32

// New maps size bytes of anonymous memory (MAP_NORESERVE: a guest costs only
// the pages it touches) and splits it around the MMIO hole.
func New(l Layout) (*Guest, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	m, err := unix.Mmap(-1, 0, int(l.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d MiB of guest memory: %w", l.Size>>20, err)
	}
	return split(m, l), nil
}

func (l Layout) check() error {
	if l.Size == 0 || l.Size%uint64(unix.Getpagesize()) != 0 {
		return fmt.Errorf("guest memory size %d is not a positive multiple of the page size", l.Size)
	}
	if l.Hole == 0 || l.Hole > FourGiB || l.Hole%uint64(unix.Getpagesize()) != 0 {
		return fmt.Errorf("guest MMIO hole at %#x is not a page-aligned address below 4 GiB", l.Hole)
	}
	return nil
}

// split lays the mapping m of l.Size bytes out as l says: RAM below the hole
// first, the rest from 4 GiB.
func split(m []byte, l Layout) *Guest {
	low := min(l.Size, l.Hole)
	g := &Guest{mapping: m, regions: []Region{{GuestAddr: 0, Host: m[:low:low]}}}
	if l.Size > low {
		g.regions = append(g.regions, Region{GuestAddr: FourGiB, Host: m[low:]})
	}
	return g
}

// FromBytes wraps plain byte slices as guest memory, for tests of code that
// reads and writes guest memory without a VM.
func FromBytes(regions ...Region) *Guest { return &Guest{regions: regions} }

// Close unmaps the memory (and closes the file it was opened from). Call it
// only after the VM that uses it is gone.
func (g *Guest) Close() error {
	if g.mapping == nil {
		return nil
	}
	err := unix.Munmap(g.mapping)
	if g.file != nil {
		if cerr := g.file.Close(); err == nil {
			err = cerr
		}
	}
	g.mapping, g.regions, g.file = nil, nil, nil
	return err
}

// Regions returns the RAM regions in ascending address order.
func (g *Guest) Regions() []Region { return g.regions }

// Size is the total RAM in bytes.
func (g *Guest) Size() uint64 {
	var n uint64
	for _, r := range g.regions {
		n += uint64(len(r.Host))
	}
	return n
}

// Slice returns the host bytes backing [addr, addr+n). The range must lie
// within one region.
func (g *Guest) Slice(addr, n uint64) ([]byte, error) {
	for _, r := range g.regions {
		if addr < r.GuestAddr || addr-r.GuestAddr >= uint64(len(r.Host)) {
			continue
		}
		off := addr - r.GuestAddr
		if n > uint64(len(r.Host))-off {
			break
		}
		return r.Host[off : off+n : off+n], nil
	}
	if n == 0 {
		// An empty range is valid anywhere a byte could be.
		return nil, nil
	}
	return nil, &RangeError{Addr: addr, Len: n}
}

// ReadAt copies len(p) bytes at guest address addr into p.
func (g *Guest) ReadAt(p []byte, addr uint64) error {
	b, err := g.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// WriteAt copies p to guest address addr.
func (g *Guest) WriteAt(p []byte, addr uint64) error {
	b, err := g.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// RangeError is an access outside guest RAM.
type RangeError struct {
	Addr, Len uint64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("guest range [%#x, +%#x) is not inside guest RAM", e.Addr, e.Len)
}
