package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// Zero page (struct boot_params) fields outside the setup header.
const (
	zpACPIRSDPAddr  = 0x070
	zpExtRamdiskImg = 0x0c0
	zpExtRamdiskSz  = 0x0c4
	zpExtCmdLinePtr = 0x0c8
	zpE820Entries   = 0x1e8
	zpE820Table     = 0x2d0
	zpSize          = 0x1000

	e820Max      = 128
	e820RAM      = 1
	e820Reserved = 2
	e820ACPI     = 3

	typeOfLoaderUndefined = 0xff
)

// E820Entry is one range of the BIOS memory map handed to the kernel.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// e820Map describes guest RAM: low memory up to the EBDA, the ACPI tables,
// then everything from 1 MiB, split around the MMIO hole.
func e820Map(mem *memory.Guest) []E820Entry {
	m := []E820Entry{
		{Addr: 0, Size: lowRAMEnd, Type: e820RAM},
		{Addr: acpiAddr, Size: acpiEnd - acpiAddr, Type: e820Reserved},
	}
	for _, r := range mem.Regions() {
		start := max(r.GuestAddr, kernelAddr)
		if r.End() > start {
			m = append(m, E820Entry{Addr: start, Size: r.End() - start, Type: e820RAM})
		}
	}
	return m
}

// bootParams builds the zero page for kernel k.
func bootParams(k *Kernel, initrdAddr, initrdSize uint64, rsdp uint64, e820 []E820Entry) ([]byte, error) {
	if len(e820) > e820Max {
		return nil, fmt.Errorf("e820 map has %d entries, the zero page holds %d", len(e820), e820Max)
	}
	zp := make([]byte, zpSize)
	copy(zp[hdrSetupSects:], k.Setup)
	le := binary.LittleEndian
	zp[hdrTypeOfLoader] = typeOfLoaderUndefined
	zp[hdrLoadFlags] |= loadFlagCanUseHeap
	le.PutUint16(zp[hdrHeapEndPtr:], 0xfe00)
	le.PutUint32(zp[hdrCmdLinePtr:], cmdlineAddr)
	le.PutUint32(zp[zpExtCmdLinePtr:], 0) // the command line is NUL-terminated below 4 GiB
	le.PutUint32(zp[hdrRamdiskImage:], uint32(initrdAddr))
	le.PutUint32(zp[hdrRamdiskSize:], uint32(initrdSize))
	le.PutUint32(zp[zpExtRamdiskImg:], uint32(initrdAddr>>32))
	le.PutUint32(zp[zpExtRamdiskSz:], uint32(initrdSize>>32))
	le.PutUint64(zp[zpACPIRSDPAddr:], rsdp)
	zp[zpE820Entries] = byte(len(e820))
	for i, e := range e820 {
		b := zp[zpE820Table+20*i:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
	}
	return zp, nil
}

// initrdPlacement picks where the initrd goes: as high as possible in the
// low RAM region, below the kernel's initrd_addr_max, page aligned, and
// clear of the kernel's decompression area.
func initrdPlacement(k *Kernel, mem *memory.Guest, size uint64) (uint64, error) {
	low := mem.Regions()[0]
	top := low.End()
	if maxAddr := uint64(k.InitrdAddrMax) + 1; k.XLoadFlags&xlfCanBeLoadedAbove == 0 && maxAddr < top {
		top = maxAddr
	}
	if size > top {
		return 0, fmt.Errorf("initrd of %d MiB does not fit in %d MiB of guest RAM: raise --mem-mib", size>>20, top>>20)
	}
	addr := (top - size) &^ 0xfff
	// The kernel decompresses at 16 MiB (or its load address, aligned up),
	// using init_size bytes from there.
	kernelEnd := uint64(16<<20) + uint64(k.InitSize)
	if addr < kernelEnd {
		return 0, fmt.Errorf("initrd of %d MiB and the kernel (needs %d MiB) do not fit in %d MiB of guest RAM: raise --mem-mib", size>>20, kernelEnd>>20, top>>20)
	}
	return addr, nil
}

// Page-table entry bits.
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7
)

// pageTables returns the PML4, PDPT and four PDs that identity-map the first
// 4 GiB with 2 MiB pages, laid out contiguously from pml4Addr.
func pageTables() []byte {
	pt := make([]byte, 6*0x1000)
	le := binary.LittleEndian
	le.PutUint64(pt[0:], pdptAddr|ptePresent|pteWritable)
	pdpt := pt[0x1000:0x2000]
	for i := uint64(0); i < 4; i++ {
		le.PutUint64(pdpt[8*i:], (pdAddr+i*0x1000)|ptePresent|pteWritable)
		pd := pt[0x2000+0x1000*i:]
		for j := uint64(0); j < 512; j++ {
			le.PutUint64(pd[8*j:], (i<<30|j<<21)|ptePresent|pteWritable|ptePageSize)
		}
	}
	return pt
}

// GDT selectors of the 64-bit boot protocol: __BOOT_CS and __BOOT_DS.
const (
	bootCS = 0x10
	bootDS = 0x18
	bootTR = 0x20
)

// gdtEntry encodes a segment descriptor from its flags (type/S/DPL/P in the
// low byte, AVL/L/DB/G in the top nibble), base and 20-bit limit.
func gdtEntry(flags uint16, base, limit uint32) uint64 {
	return uint64(base&0xff000000)<<32 | uint64(flags&0xf0ff)<<40 | uint64(limit&0xf0000)<<32 |
		uint64(base&0x00ffffff)<<16 | uint64(limit&0xffff)
}

// gdt is the boot GDT: null, null, 64-bit code, data, TSS.
func gdt() []uint64 {
	return []uint64{
		0,
		0,
		gdtEntry(0xa09b, 0, 0xfffff), // code: P, DPL0, S, execute/read, accessed; G, L
		gdtEntry(0xc093, 0, 0xfffff), // data: P, DPL0, S, read/write, accessed; G, DB
		gdtEntry(0x808b, 0, 0xfffff), // TSS: P, busy 64-bit TSS; G
	}
}

// segmentFromGDT decodes descriptor e into KVM's segment-cache form.
func segmentFromGDT(e uint64, selector uint16) kvm.Segment {
	limit := uint32(e&0xffff) | uint32(e>>32)&0xf0000
	g := uint8(e>>55) & 1
	if g == 1 {
		limit = limit<<12 | 0xfff
	}
	return kvm.Segment{
		Base:     (e>>16)&0xffffff | (e>>32)&0xff000000,
		Limit:    limit,
		Selector: selector,
		Type:     uint8(e>>40) & 0xf,
		S:        uint8(e>>44) & 1,
		DPL:      uint8(e>>45) & 3,
		Present:  uint8(e>>47) & 1,
		AVL:      uint8(e>>52) & 1,
		L:        uint8(e>>53) & 1,
		DB:       uint8(e>>54) & 1,
		G:        g,
	}
}

// Control-register and EFER bits.
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0NE   = 1 << 5
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// longModeSregs puts the boot CPU in 64-bit mode with the boot GDT, an empty
// IDT and the identity map.
func longModeSregs(s kvm.Sregs) kvm.Sregs {
	g := gdt()
	s.CS = segmentFromGDT(g[bootCS/8], bootCS)
	ds := segmentFromGDT(g[bootDS/8], bootDS)
	s.DS, s.ES, s.FS, s.GS, s.SS = ds, ds, ds, ds, ds
	s.TR = segmentFromGDT(g[bootTR/8], bootTR)
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: uint16(8*len(g) - 1)}
	s.IDT = kvm.DTable{Base: idtAddr, Limit: 0}
	s.CR0 = cr0PE | cr0ET | cr0NE | cr0PG
	s.CR3 = pml4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
	return s
}

// encodeGDT lays the GDT out for guest memory.
func encodeGDT() []byte {
	g := gdt()
	b := make([]byte, 8*len(g))
	for i, e := range g {
		binary.LittleEndian.PutUint64(b[8*i:], e)
	}
	return b
}
