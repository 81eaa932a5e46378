// Package acpi builds the ACPI tables pyro hands to its guest: an RSDP, an
// XSDT, a hardware-reduced FADT, a MADT and a DSDT whose AML declares the
// virtio-mmio devices, an optional COM1, an optional VM generation ID with
// the Generic Event Device that announces its changes, and the \_S5
// soft-off state.
//
// Place in the data path: while the VMM lays out guest memory it calls Build
// once, copies the returned image to guest physical address base (normally
// DefaultBase, in the legacy BIOS area that Linux scans for "RSD PTR ") and, when
// it boots through the Linux boot protocol, may also store the returned RSDP
// address in boot_params.acpi_rsdp_addr. After boot the only part of the package
// still in use is Config.DecodePowerWrite, which the VMM's port-I/O handler for
// Config.PowerPort calls to turn guest writes into poweroff and reset requests.
//
// Section numbers in comments refer to the ACPI Specification 6.5.
package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Guest physical layout constants.
const (
	// DefaultBase is where the image is meant to go: the start of the
	// 0xE0000-0xFFFFF window that ACPICA (Linux acpi_find_root_pointer) scans
	// on 16-byte boundaries for the RSDP signature (§5.2.5.1).
	DefaultBase = 0xE0000
	// BIOSAreaEnd is the end (exclusive) of the legacy BIOS area. An image
	// that starts below it must also end at or below it.
	BIOSAreaEnd = 0x100000

	// DefaultLAPICAddr is the local APIC MMIO base (IA32_APIC_BASE reset value).
	DefaultLAPICAddr = 0xFEE00000
	// DefaultIOAPICAddr is the base of KVM's in-kernel I/O APIC.
	DefaultIOAPICAddr = 0xFEC00000
	// IOAPICPins is the number of redirection entries of KVM's in-kernel I/O
	// APIC (KVM_IOAPIC_NUM_PINS); with GSI base 0 it serves GSIs 0..23.
	IOAPICPins = 24
	// MaxCPUs is the largest supported vCPU count: xAPIC IDs and the MADT
	// processor UID are 8-bit, and 0xFF is the xAPIC broadcast ID.
	MaxCPUs = 254

	// DefaultPowerPort is the I/O port used for SLEEP_CONTROL_REG,
	// SLEEP_STATUS_REG and RESET_REG when Config.PowerPort is 0. It lies
	// outside every legacy ISA range ACPICA treats as protected.
	DefaultPowerPort = 0x600
	// DefaultResetValue is the RESET_VALUE used when Config.ResetValue is 0.
	DefaultResetValue = 0x01
)

// Sleep control/status register encoding for hardware-reduced ACPI
// (§4.8.3.7). The same 8-bit port carries both registers and RESET_REG.
const (
	// SleepTypeS5 is the SLP_TYP value the DSDT's \_S5 package advertises.
	SleepTypeS5 = 5
	// SleepTypeShift is the position of SLP_TYPx (bits 4:2) in SLEEP_CONTROL_REG.
	SleepTypeShift = 2
	// SleepTypeMask selects SLP_TYPx in SLEEP_CONTROL_REG.
	SleepTypeMask = 0x7 << SleepTypeShift
	// SleepEnable is SLP_EN (bit 5) of SLEEP_CONTROL_REG.
	SleepEnable = 1 << 5
	// WakeStatus is WAK_STS (bit 7) of SLEEP_STATUS_REG. Linux writes it to
	// the port to clear wake status just before it writes PoweroffValue.
	WakeStatus = 1 << 7
	// PoweroffValue is the byte Linux writes to the power port to enter S5:
	// SLP_TYP=5 | SLP_EN = 0x34.
	PoweroffValue = SleepTypeS5<<SleepTypeShift | SleepEnable
)

// Table identity written into every header (§5.2.6).
const (
	oemID           = "PYRO  "
	oemRevision     = 1
	creatorID       = "PYRO"
	creatorRevision = 1
	// hypervisorVendorID fills the FADT Hypervisor Vendor Identity (§5.2.9).
	hypervisorVendorID = "PYROVMM\x00"
)

// ErrInvalidConfig is wrapped by every error Build returns.
var ErrInvalidConfig = errors.New("acpi: invalid configuration")

// VirtioMMIODevice is one virtio-mmio transport as the guest will see it.
type VirtioMMIODevice struct {
	Base uint64 // guest physical base of the register window; Base+Size must fit in 32 bits
	Size uint64 // window size in bytes, usually 0x1000
	GSI  uint32 // I/O APIC input (0..IOAPICPins-1), edge triggered, active high
}

// Config describes the machine the tables advertise. The zero value of every
// optional field selects the documented default.
type Config struct {
	// NumCPUs is the number of vCPUs, 1..MaxCPUs. vCPU i must have APIC ID i.
	NumCPUs int
	// LAPICAddr is the local APIC base; 0 means DefaultLAPICAddr.
	LAPICAddr uint32
	// IOAPICAddr is the I/O APIC base; 0 means DefaultIOAPICAddr.
	IOAPICAddr uint32
	// IOAPICID is the I/O APIC ID (0..15). The default 0 matches the ID
	// register of KVM's in-kernel I/O APIC after reset; x86-64 Linux keeps
	// I/O APIC IDs apart from local APIC IDs, so it does not clash with CPU 0.
	IOAPICID uint8
	// PowerPort is the I/O port of SLEEP_CONTROL_REG, SLEEP_STATUS_REG and
	// RESET_REG (all 8 bits wide); 0 means DefaultPowerPort.
	PowerPort uint16
	// ResetValue is the FADT RESET_VALUE; 0 means DefaultResetValue. It must
	// have neither SleepEnable nor WakeStatus set, so that every write to the
	// shared port decodes unambiguously.
	ResetValue uint8
	// VirtioMMIO lists the virtio-mmio devices, declared as \_SB_.V000,
	// \_SB_.V001, ... with _UID equal to their index.
	VirtioMMIO []VirtioMMIODevice
	// COM1 declares \_SB_.COM1 (PNP0501, I/O 0x3F8-0x3FF, GSI 4). Set it
	// whenever the VMM emulates a 16550 there: in hardware-reduced mode Linux
	// installs no legacy PIC and maps no ISA IRQ by default, so without this
	// device ttyS0 has no usable interrupt. The 8250 PNP driver takes over the
	// port the legacy probe found at the same address; it stays ttyS0.
	COM1 bool
	// CMOSRTC says that the VMM emulates an MC146818 RTC at ports 0x70/0x71.
	// When false the FADT sets "CMOS RTC Not Present" and Linux does not
	// register the rtc_cmos device.
	CMOSRTC bool
	// VMGenID, when set, declares a VM generation ID (\_SB_.VGEN) and the
	// Generic Event Device (\_SB_.GED0) whose interrupt tells the guest
	// to re-read it. See VMGenIDConfig.
	VMGenID *VMGenIDConfig
	// ExtraTables are complete ACPI tables (header included) to list in the
	// XSDT after the FADT and MADT. Build copies them and recomputes their
	// checksums; the header length must equal the slice length.
	ExtraTables [][]byte
}

// VMGenIDConfig places a VM generation ID, as Microsoft's "Virtual Machine
// Generation ID" specification defines it: 16 bytes in guest memory that the
// VMM changes whenever the guest may be running for a second time from the
// same state (each restore of a snapshot), and an interrupt that makes the
// guest look.
//
// Linux's vmgenid driver (drivers/virt/vmgenid.c, CONFIG_VMGENID) binds to
// \_SB_.VGEN by its _CID, maps the 16 bytes at the address its ADDR method
// returns and, on Notify (VGEN, 0x80), reads them again and, if they
// changed, reseeds the kernel RNG at once (add_vmfork_randomness). The
// Notify comes from the Generic Event Device (drivers/acpi/evged.c, built in
// whenever ACPI is): on an edge of GSI it runs _EVT (GSI).
type VMGenIDConfig struct {
	// Addr is the guest-physical address of the 16-byte ID, 8-byte aligned
	// (the specification's requirement R1a). The VMM must keep the guest
	// from using it as RAM: the specification wants it in memory that the
	// e820 map marks neither usable RAM nor ACPI (R1c, R1d), and mapped
	// cacheable (R1e). It must not overlap the tables Build lays out.
	Addr uint64
	// GSI is the I/O APIC input (0..IOAPICPins-1) of the GED's interrupt,
	// edge triggered and active high: pulse it to notify the guest. It
	// must differ from COM1's and every virtio-mmio device's.
	GSI uint32
}

// VMGenIDSize is the size of the VM generation ID in bytes.
const VMGenIDSize = 16

// WithDefaults returns c with every zero optional field replaced by its default.
func (c Config) WithDefaults() Config {
	if c.LAPICAddr == 0 {
		c.LAPICAddr = DefaultLAPICAddr
	}
	if c.IOAPICAddr == 0 {
		c.IOAPICAddr = DefaultIOAPICAddr
	}
	if c.PowerPort == 0 {
		c.PowerPort = DefaultPowerPort
	}
	if c.ResetValue == 0 {
		c.ResetValue = DefaultResetValue
	}
	return c
}

// PowerAction is what a guest write to the power port asks the VMM to do.
type PowerAction int

const (
	// PowerNone: ignore the write (for example the WAK_STS clear Linux issues
	// before entering S5, or a sleep state the tables do not advertise).
	PowerNone PowerAction = iota
	// PowerOff: the guest entered S5; stop the VM.
	PowerOff
	// PowerReset: the guest wrote RESET_VALUE to RESET_REG; reboot the VM.
	PowerReset
)

// DecodePowerWrite classifies an 8-bit guest write to c's power port. Reads of
// the port (SLEEP_STATUS_REG) should return 0.
func (c Config) DecodePowerWrite(v uint8) PowerAction {
	c = c.WithDefaults()
	switch {
	case v&SleepEnable != 0:
		if (v&SleepTypeMask)>>SleepTypeShift == SleepTypeS5 {
			return PowerOff
		}
		return PowerNone
	case v == c.ResetValue:
		return PowerReset
	}
	return PowerNone
}

// Build lays out the tables for cfg at guest physical address base and returns
// the image to copy there together with the RSDP's guest physical address,
// which is base itself: the RSDP comes first. base must be 16-byte aligned. If
// base is below BIOSAreaEnd the whole image must end at or below BIOSAreaEnd;
// only an image inside 0xE0000-0xFFFFF is found by the guest's RSDP scan, so
// any other placement requires boot_params.acpi_rsdp_addr.
func Build(cfg Config, base uint64) (image []byte, rsdp uint64, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, 0, err
	}
	if base%16 != 0 {
		return nil, 0, fmt.Errorf("%w: base %#x is not 16-byte aligned (the RSDP is searched on 16-byte boundaries)", ErrInvalidConfig, base)
	}
	extras, err := copyExtraTables(cfg.ExtraTables)
	if err != nil {
		return nil, 0, err
	}

	dsdt := buildDSDT(cfg)
	madt := buildMADT(cfg)

	// Layout: RSDP, XSDT, FADT, MADT, DSDT, extra tables; each 16-byte aligned.
	size := 0
	place := func(n int) int {
		off := (size + 15) &^ 15
		size = off + n
		return off
	}
	rsdpOff := place(rsdpLength)
	xsdtOff := place(headerLength + 8*(2+len(extras)))
	fadtOff := place(fadtLength)
	madtOff := place(len(madt))
	dsdtOff := place(len(dsdt))
	extraOffs := make([]int, len(extras))
	for i, t := range extras {
		extraOffs[i] = place(len(t))
	}

	end := base + uint64(size)
	if end < base {
		return nil, 0, fmt.Errorf("%w: image at %#x overflows the address space", ErrInvalidConfig, base)
	}
	if base < BIOSAreaEnd && end > BIOSAreaEnd {
		return nil, 0, fmt.Errorf("%w: %d-byte image at %#x ends at %#x, past the end of the BIOS area (%#x)", ErrInvalidConfig, size, base, end, BIOSAreaEnd)
	}
	if g := cfg.VMGenID; g != nil && g.Addr < end && base < g.Addr+VMGenIDSize {
		return nil, 0, fmt.Errorf("%w: VM generation ID at %#x overlaps the %d-byte image at %#x", ErrInvalidConfig, g.Addr, size, base)
	}

	addr := func(off int) uint64 { return base + uint64(off) }
	entries := []uint64{addr(fadtOff), addr(madtOff)}
	for _, off := range extraOffs {
		entries = append(entries, addr(off))
	}

	image = make([]byte, size)
	copy(image[rsdpOff:], buildRSDP(addr(xsdtOff)))
	copy(image[xsdtOff:], buildXSDT(entries))
	copy(image[fadtOff:], buildFADT(cfg, addr(dsdtOff)))
	copy(image[madtOff:], madt)
	copy(image[dsdtOff:], dsdt)
	for i, t := range extras {
		copy(image[extraOffs[i]:], t)
	}
	return image, addr(rsdpOff), nil
}

func (c Config) validate() error {
	if c.NumCPUs < 1 || c.NumCPUs > MaxCPUs {
		return fmt.Errorf("%w: NumCPUs %d out of range 1..%d", ErrInvalidConfig, c.NumCPUs, MaxCPUs)
	}
	if c.IOAPICID > 15 {
		return fmt.Errorf("%w: IOAPICID %d does not fit the 4-bit I/O APIC ID register", ErrInvalidConfig, c.IOAPICID)
	}
	if c.ResetValue&(SleepEnable|WakeStatus) != 0 {
		return fmt.Errorf("%w: ResetValue %#x sets SLP_EN or WAK_STS, so it cannot share the power port", ErrInvalidConfig, c.ResetValue)
	}
	gsiOwner := map[uint32]string{}
	if c.COM1 {
		gsiOwner[com1GSI] = "COM1"
	}
	for i, d := range c.VirtioMMIO {
		name := fmt.Sprintf("virtio-mmio device %d", i)
		if d.Size == 0 {
			return fmt.Errorf("%w: %s has size 0", ErrInvalidConfig, name)
		}
		if d.Base > 0xFFFFFFFF || d.Size > 0xFFFFFFFF || d.Base+d.Size > 1<<32 {
			return fmt.Errorf("%w: %s [%#x, +%#x) does not fit below 4 GiB (Memory32Fixed)", ErrInvalidConfig, name, d.Base, d.Size)
		}
		if d.GSI >= IOAPICPins {
			return fmt.Errorf("%w: %s GSI %d is not an I/O APIC input (0..%d)", ErrInvalidConfig, name, d.GSI, IOAPICPins-1)
		}
		if owner, dup := gsiOwner[d.GSI]; dup {
			return fmt.Errorf("%w: %s GSI %d already used by %s (interrupts are declared exclusive)", ErrInvalidConfig, name, d.GSI, owner)
		}
		gsiOwner[d.GSI] = name
		for j, o := range c.VirtioMMIO[:i] {
			if d.Base < o.Base+o.Size && o.Base < d.Base+d.Size {
				return fmt.Errorf("%w: %s [%#x, +%#x) overlaps virtio-mmio device %d", ErrInvalidConfig, name, d.Base, d.Size, j)
			}
		}
	}
	if g := c.VMGenID; g != nil {
		if g.Addr == 0 || g.Addr%8 != 0 {
			return fmt.Errorf("%w: VM generation ID address %#x is not a non-zero multiple of 8", ErrInvalidConfig, g.Addr)
		}
		if g.Addr+VMGenIDSize < g.Addr {
			return fmt.Errorf("%w: VM generation ID at %#x overflows the address space", ErrInvalidConfig, g.Addr)
		}
		if g.GSI >= IOAPICPins {
			return fmt.Errorf("%w: VM generation ID GSI %d is not an I/O APIC input (0..%d)", ErrInvalidConfig, g.GSI, IOAPICPins-1)
		}
		if owner, dup := gsiOwner[g.GSI]; dup {
			return fmt.Errorf("%w: VM generation ID GSI %d already used by %s (interrupts are declared exclusive)", ErrInvalidConfig, g.GSI, owner)
		}
	}
	return nil
}

// reservedSignatures are the tables Build writes itself.
var reservedSignatures = map[string]bool{"RSD ": true, "RSDT": true, "XSDT": true, "FACP": true, "FACS": true, "APIC": true, "DSDT": true}

func copyExtraTables(tables [][]byte) ([][]byte, error) {
	out := make([][]byte, len(tables))
	for i, t := range tables {
		if len(t) < headerLength {
			return nil, fmt.Errorf("%w: extra table %d is %d bytes, shorter than a table header", ErrInvalidConfig, i, len(t))
		}
		sig := string(t[0:4])
		if n := binary.LittleEndian.Uint32(t[4:8]); uint64(n) != uint64(len(t)) {
			return nil, fmt.Errorf("%w: extra table %d (%q) header length %d != %d bytes given", ErrInvalidConfig, i, sig, n, len(t))
		}
		if reservedSignatures[sig] {
			return nil, fmt.Errorf("%w: extra table %d has signature %q, which Build generates itself", ErrInvalidConfig, i, sig)
		}
		c := append([]byte(nil), t...)
		setChecksum(c, headerChecksumOffset)
		out[i] = c
	}
	return out, nil
}

// --- Common table plumbing --------------------------------------------------

const (
	headerLength         = 36 // §5.2.6, Table 5.4
	headerChecksumOffset = 9
	rsdpLength           = 36 // §5.2.5.3, Table 5.3 (revision 2)
)

// newTable returns header+body with the length and checksum filled in (§5.2.6).
func newTable(signature string, revision uint8, oemTableID string, body []byte) []byte {
	t := make([]byte, headerLength, headerLength+len(body))
	copy(t[0:4], signature)
	binary.LittleEndian.PutUint32(t[4:8], uint32(headerLength+len(body)))
	t[8] = revision
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	binary.LittleEndian.PutUint32(t[24:28], oemRevision)
	copy(t[28:32], creatorID)
	binary.LittleEndian.PutUint32(t[32:36], creatorRevision)
	t = append(t, body...)
	setChecksum(t, headerChecksumOffset)
	return t
}

// setChecksum sets b[at] so that all bytes of b sum to 0 mod 256.
func setChecksum(b []byte, at int) {
	b[at] = 0
	var sum byte
	for _, v := range b {
		sum += v
	}
	b[at] = -sum
}

// buildRSDP returns the revision-2 Root System Description Pointer (§5.2.5.3).
// RsdtAddress is 0: there is no RSDT, and ACPICA prefers the XSDT whenever
// the revision is 2 or more and XsdtAddress is non-zero.
func buildRSDP(xsdt uint64) []byte {
	r := make([]byte, rsdpLength)
	copy(r[0:8], "RSD PTR ")
	copy(r[9:15], oemID)
	r[15] = 2                                           // Revision: ACPI 2.0+
	binary.LittleEndian.PutUint32(r[20:24], rsdpLength) // Length
	binary.LittleEndian.PutUint64(r[24:32], xsdt)       // XsdtAddress
	setChecksum(r[0:20], 8)                             // Checksum: first 20 bytes
	setChecksum(r, 32)                                  // Extended Checksum: all 36 bytes
	return r
}

// buildXSDT returns the Extended System Description Table (§5.2.8).
func buildXSDT(entries []uint64) []byte {
	body := make([]byte, 8*len(entries))
	for i, e := range entries {
		binary.LittleEndian.PutUint64(body[8*i:], e)
	}
	return newTable("XSDT", 1, "PYROXSDT", body)
}
