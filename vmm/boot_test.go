package vmm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// fakeBzImage builds a minimal image with a valid 2.15 setup header.
func fakeBzImage(setupSects byte, payload int) []byte {
	sects := int(setupSects)
	if sects == 0 {
		sects = 4
	}
	img := make([]byte, (sects+1)*512+payload)
	le := binary.LittleEndian
	img[hdrSetupSects] = setupSects
	le.PutUint16(img[hdrBootFlag:], bootFlagMagic)
	img[hdrJump] = 0xeb
	img[hdrJump+1] = 0x6a // header ends at 0x26c
	le.PutUint32(img[hdrMagic:], headerMagic)
	le.PutUint16(img[hdrVersion:], 0x020f)
	img[hdrLoadFlags] = loadFlagLoadedHigh
	le.PutUint32(img[hdrInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(img[hdrKernelAlignment:], 0x200000)
	le.PutUint16(img[hdrXLoadFlags:], xlfKernel64|xlfCanBeLoadedAbove)
	le.PutUint32(img[hdrCmdlineSize:], 2048)
	le.PutUint32(img[hdrInitSize:], 8<<20)
	for i := (sects + 1) * 512; i < len(img); i++ {
		img[i] = 0xcc
	}
	return img
}

func TestParseBzImage(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage(27, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Payload) != 4096 || k.Payload[0] != 0xcc {
		t.Fatalf("payload %d bytes starting %#x", len(k.Payload), k.Payload[0])
	}
	if len(k.Setup) != 0x26c-0x1f1 || k.Version != 0x020f || k.CmdlineSize != 2048 || k.InitSize != 8<<20 {
		t.Fatalf("header: %+v", k)
	}
	// setup_sects 0 means 4.
	k, err = ParseBzImage(fakeBzImage(0, 4096))
	if err != nil || len(k.Payload) != 4096 {
		t.Fatalf("setup_sects 0: %v", err)
	}
}

func TestParseBzImageRejects(t *testing.T) {
	mut := func(f func([]byte) []byte) []byte { return f(fakeBzImage(27, 4096)) }
	for name, img := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte(strings.Repeat("garbage!", 1000)),
		"elf":       append([]byte("\x7fELF"), make([]byte, 4096)...),
		"no magic":  mut(func(b []byte) []byte { b[hdrMagic] = 'X'; return b }),
		"no 55aa":   mut(func(b []byte) []byte { b[hdrBootFlag] = 0; return b }),
		"old proto": mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[hdrVersion:], 0x0206); return b }),
		"32-bit":    mut(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[hdrXLoadFlags:], 0); return b }),
		"zImage":    mut(func(b []byte) []byte { b[hdrLoadFlags] = 0; return b }),
		"truncated": mut(func(b []byte) []byte { return b[:28*512+100] }),
		"big setup": mut(func(b []byte) []byte { b[hdrSetupSects] = 0xff; return b }),
		"short hdr": mut(func(b []byte) []byte { b[hdrJump+1] = 0; return b }),
	} {
		if _, err := ParseBzImage(img); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseBzImage([]byte("garbage")); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("garbage: %v, want ErrNotBzImage", err)
	}
}

func FuzzParseBzImage(f *testing.F) {
	f.Add(fakeBzImage(27, 1024))
	f.Add(fakeBzImage(0, 600))
	f.Fuzz(func(t *testing.T, img []byte) {
		k, err := ParseBzImage(img)
		if err != nil {
			return
		}
		if len(k.Payload) <= entry64Offset || len(k.Setup) == 0 {
			t.Fatalf("accepted an image with %d payload bytes", len(k.Payload))
		}
	})
}

func testMem(t *testing.T, mib uint64) *memory.Guest {
	t.Helper()
	g, err := memory.New(memory.Layout{Size: mib << 20, Hole: mmioHoleStart})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestZeroPage(t *testing.T) {
	k, err := ParseBzImage(fakeBzImage(27, 4096))
	if err != nil {
		t.Fatal(err)
	}
	mem := testMem(t, 256)
	e820 := e820Map(mem)
	zp, err := bootParams(k, 0x0f000000, 0x123456, 0xe0000, e820)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	check := func(name string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %#x, want %#x", name, got, want)
		}
	}
	check("magic", uint64(le.Uint32(zp[hdrMagic:])), headerMagic)
	check("type_of_loader", uint64(zp[hdrTypeOfLoader]), 0xff)
	check("loadflags", uint64(zp[hdrLoadFlags]), loadFlagLoadedHigh|loadFlagCanUseHeap)
	check("cmd_line_ptr", uint64(le.Uint32(zp[hdrCmdLinePtr:])), cmdlineAddr)
	check("ramdisk_image", uint64(le.Uint32(zp[hdrRamdiskImage:])), 0x0f000000)
	check("ramdisk_size", uint64(le.Uint32(zp[hdrRamdiskSize:])), 0x123456)
	check("acpi_rsdp_addr", le.Uint64(zp[zpACPIRSDPAddr:]), 0xe0000)
	check("e820_entries", uint64(zp[zpE820Entries]), uint64(len(e820)))
	check("heap_end_ptr", uint64(le.Uint16(zp[hdrHeapEndPtr:])), 0xfe00)
	for i, e := range e820 {
		b := zp[zpE820Table+20*i:]
		check("e820 addr", le.Uint64(b), e.Addr)
		check("e820 size", le.Uint64(b[8:]), e.Size)
		check("e820 type", uint64(le.Uint32(b[16:])), uint64(e.Type))
	}
	if _, err := bootParams(k, 0, 0, 0, make([]E820Entry, 129)); err == nil {
		t.Error("129 e820 entries accepted")
	}
}

func TestE820Map(t *testing.T) {
	small := e820Map(testMem(t, 256))
	want := []E820Entry{
		{0, lowRAMEnd, e820RAM},
		{acpiAddr, acpiEnd - acpiAddr, e820Reserved},
		{kernelAddr, 256<<20 - kernelAddr, e820RAM},
	}
	if len(small) != len(want) {
		t.Fatalf("map %+v", small)
	}
	for i := range want {
		if small[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, small[i], want[i])
		}
	}
	big := e820Map(testMem(t, 4096))
	last := big[len(big)-1]
	if last.Addr != memory.FourGiB || last.Size != 1<<30 || last.Type != e820RAM {
		t.Errorf("RAM above the hole: %+v", last)
	}
	if big[2].Addr+big[2].Size != mmioHoleStart {
		t.Errorf("low RAM ends at %#x, want the hole at %#x", big[2].Addr+big[2].Size, mmioHoleStart)
	}
	// No entry may overlap another or cover a structure pyro places outside RAM.
	for i := 1; i < len(big); i++ {
		if big[i].Addr < big[i-1].Addr+big[i-1].Size {
			t.Errorf("entries %d and %d overlap", i-1, i)
		}
	}
}

func TestInitrdPlacement(t *testing.T) {
	k, _ := ParseBzImage(fakeBzImage(27, 4096))
	mem := testMem(t, 256)
	addr, err := initrdPlacement(k, mem, 10<<20+5)
	if err != nil {
		t.Fatal(err)
	}
	if addr%4096 != 0 || addr+10<<20+5 > 256<<20 || addr < 240<<20 {
		t.Errorf("initrd at %#x", addr)
	}
	if _, err := initrdPlacement(k, mem, 250<<20); err == nil || !strings.Contains(err.Error(), "--mem-mib") {
		t.Errorf("initrd overlapping the kernel: %v", err)
	}
	// A kernel that cannot take an initrd above initrd_addr_max.
	k.XLoadFlags &^= xlfCanBeLoadedAbove
	k.InitrdAddrMax = 128<<20 - 1
	addr, err = initrdPlacement(k, mem, 1<<20)
	if err != nil || addr+1<<20 > 128<<20 {
		t.Errorf("initrd at %#x (%v), want below 128 MiB", addr, err)
	}
}

func TestPageTablesIdentityMap4GiB(t *testing.T) {
	pt := pageTables()
	le := binary.LittleEndian
	// Walk the tables for a few addresses, as the MMU would.
	for _, va := range []uint64{0, 0x100000, 0x1234567, 0xbfffffff, 0xfee00000, 0xffffffff} {
		pml4e := le.Uint64(pt[8*((va>>39)&511):])
		if pml4e&ptePresent == 0 || pml4e&^0xfff != pdptAddr {
			t.Fatalf("%#x: PML4E %#x", va, pml4e)
		}
		pdpte := le.Uint64(pt[0x1000+8*((va>>30)&511):])
		pdIndex := (pdpte&^0xfff - pml4Addr) / 0x1000
		if pdpte&ptePresent == 0 || pdIndex < 2 || pdIndex > 5 {
			t.Fatalf("%#x: PDPTE %#x", va, pdpte)
		}
		pde := le.Uint64(pt[pdIndex*0x1000+8*((va>>21)&511):])
		if pde&(ptePresent|pteWritable|ptePageSize) != ptePresent|pteWritable|ptePageSize {
			t.Fatalf("%#x: PDE %#x", va, pde)
		}
		if pa := pde&^0x1fffff + va&0x1fffff; pa != va {
			t.Fatalf("%#x maps to %#x", va, pa)
		}
	}
	if len(pt) != 6*4096 || pml4Addr+uint64(len(pt)) > cmdlineAddr {
		t.Fatalf("page tables of %d bytes collide with the command line", len(pt))
	}
}

func TestGDTAndLongModeSregs(t *testing.T) {
	g := gdt()
	if g[bootCS/8] != 0x00af9b000000ffff || g[bootDS/8] != 0x00cf93000000ffff || g[bootTR/8] != 0x008f8b000000ffff {
		t.Fatalf("GDT %#x", g)
	}
	s := longModeSregs(kvm.Sregs{CR0: 0x60000010})
	if s.CS.Selector != 0x10 || s.CS.L != 1 || s.CS.DB != 0 || s.CS.Type != 0xb || s.CS.Present != 1 || s.CS.S != 1 {
		t.Errorf("CS %+v", s.CS)
	}
	if s.CS.Limit != 0xffffffff || s.CS.Base != 0 {
		t.Errorf("CS is not flat: %+v", s.CS)
	}
	for _, seg := range []kvm.Segment{s.DS, s.ES, s.SS} {
		if seg.Selector != 0x18 || seg.Type != 3 || seg.DB != 1 || seg.Limit != 0xffffffff {
			t.Errorf("data segment %+v", seg)
		}
	}
	if s.TR.Selector != 0x20 || s.TR.Type != 0xb || s.TR.S != 0 {
		t.Errorf("TR %+v", s.TR)
	}
	if s.CR0&(cr0PE|cr0PG) != cr0PE|cr0PG || s.CR0&0x60000000 != 0 {
		t.Errorf("CR0 %#x: want PE|PG, caches enabled", s.CR0)
	}
	if s.CR4&cr4PAE == 0 || s.EFER != eferLME|eferLMA || s.CR3 != pml4Addr {
		t.Errorf("CR4 %#x EFER %#x CR3 %#x", s.CR4, s.EFER, s.CR3)
	}
	if s.GDT.Base != gdtAddr || s.GDT.Limit != 39 || s.IDT.Limit != 0 {
		t.Errorf("GDTR %+v IDTR %+v", s.GDT, s.IDT)
	}
	if gdtAddr+len(encodeGDT()) > idtAddr {
		t.Error("GDT overlaps the IDT")
	}
}

func TestBootStructuresDoNotOverlap(t *testing.T) {
	type span struct {
		name       string
		start, end uint64
	}
	spans := []span{
		{"gdt", gdtAddr, gdtAddr + uint64(len(encodeGDT()))},
		{"idt", idtAddr, idtAddr + 8},
		{"zero page", zeroPageAddr, zeroPageAddr + zpSize},
		{"stack", bootStackTop - 0x100, bootStackTop},
		{"page tables", pml4Addr, pml4Addr + uint64(len(pageTables()))},
		{"cmdline", cmdlineAddr, cmdlineAddr + cmdlineMax},
		{"acpi", acpiAddr, acpiEnd},
		{"kernel", kernelAddr, kernelAddr + 1},
	}
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			a, b := spans[i], spans[j]
			if a.start < b.end && b.start < a.end {
				t.Errorf("%s [%#x,%#x) overlaps %s [%#x,%#x)", a.name, a.start, a.end, b.name, b.start, b.end)
			}
		}
	}
	if cmdlineAddr+cmdlineMax > lowRAMEnd {
		t.Error("command line runs past low RAM")
	}
}
