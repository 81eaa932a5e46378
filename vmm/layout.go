package vmm

// Guest-physical memory map of a pyro VM.
//
//	0x0000_0000  real-mode IVT and BIOS data area (left zero)
//	0x0000_0500  boot GDT
//	0x0000_0540  boot IDT (empty)
//	0x0000_7000  zero page (struct boot_params)
//	0x0000_8ff0  initial stack top (the kernel sets its own at once)
//	0x0000_9000  PML4, then PDPT and four page directories: 4 GiB identity map
//	0x0002_0000  kernel command line
//	0x0009_fc00  end of low RAM in the e820 map
//	0x000e_0000  ACPI tables (RSDP first; Linux also scans here for it)
//	0x0010_0000  protected-mode kernel (decompresses itself to 16 MiB+)
//	...          initrd, at the top of RAM below the MMIO hole
//	0xc000_0000  MMIO hole: virtio-mmio windows from 0xd000_0000
//	0xfec0_0000  IOAPIC
//	0xfee0_0000  local APICs
//	0xfffb_c000  VMX identity-map page and TSS (Intel only, three pages)
//	0x1_0000_0000 RAM above 3 GiB, if any
const (
	gdtAddr         = 0x500
	idtAddr         = 0x540
	zeroPageAddr    = 0x7000
	bootStackTop    = 0x8ff0
	pml4Addr        = 0x9000
	pdptAddr        = 0xa000
	pdAddr          = 0xb000 // four pages: 0xb000-0xefff
	cmdlineAddr     = 0x20000
	cmdlineMax      = 0x10000 // room before the next structure we place
	lowRAMEnd       = 0x9fc00
	acpiAddr        = 0xe0000
	acpiEnd         = 0x100000
	kernelAddr      = 0x100000
	mmioHoleStart   = 0xc0000000
	virtioMMIOBase  = 0xd0000000
	ioapicAddr      = 0xfec00000
	lapicAddr       = 0xfee00000
	identityMapAddr = 0xfffbc000
	tssAddr         = 0xfffbd000

	// powerPort is the I/O port of the ACPI sleep control/status and reset
	// registers that the FADT advertises (see power.go).
	powerPort = 0x600

	// MinMemMiB is the least RAM a guest can have: the kernel decompresses
	// itself at 16 MiB and needs its init_size above that.
	MinMemMiB = 64
)
