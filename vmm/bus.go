package vmm

import (
	"fmt"
	"sort"
	"sync/atomic"
)

// Device is something behind a range of I/O ports or MMIO addresses. off is
// the offset of the access within the device's range; data is 1 to 8 bytes
// to fill (Read) or consume (Write).
type Device interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

type busRange struct {
	base, size uint64
	dev        Device
	name       string
}

// Bus routes port or MMIO accesses to devices by address. It is built before
// the vCPUs start and read-only afterwards, so lookups take no lock.
type Bus struct {
	ranges []busRange
	// unhandled counts accesses that hit no device: reads see all ones,
	// writes are dropped, as on a PC bus with nothing there.
	unhandled atomic.Uint64
}

// Add places dev at [base, base+size).
func (b *Bus) Add(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("device %s: bad range %#x+%#x", name, base, size)
	}
	for _, r := range b.ranges {
		if base < r.base+r.size && r.base < base+size {
			return fmt.Errorf("device %s at %#x+%#x overlaps %s at %#x+%#x", name, base, size, r.name, r.base, r.size)
		}
	}
	b.ranges = append(b.ranges, busRange{base: base, size: size, dev: dev, name: name})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

func (b *Bus) find(addr uint64) (*busRange, uint64) {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) && addr >= b.ranges[i].base {
		return &b.ranges[i], addr - b.ranges[i].base
	}
	return nil, 0
}

// Read dispatches a guest load at addr.
func (b *Bus) Read(addr uint64, data []byte) {
	if r, off := b.find(addr); r != nil {
		r.dev.Read(off, data)
		return
	}
	b.unhandled.Add(1)
	for i := range data {
		data[i] = 0xff
	}
}

// Write dispatches a guest store at addr.
func (b *Bus) Write(addr uint64, data []byte) {
	if r, off := b.find(addr); r != nil {
		r.dev.Write(off, data)
		return
	}
	b.unhandled.Add(1)
}

// Unhandled returns how many accesses hit no device.
func (b *Bus) Unhandled() uint64 { return b.unhandled.Load() }
