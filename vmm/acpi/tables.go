package acpi

import "encoding/binary"

// FADT (§5.2.9, Table 5.9): byte offsets of the fields pyro fills in.
const (
	fadtLength       = 276 // revision 6
	fadtRevision     = 6
	fadtMinorVersion = 5 // ACPI 6.5

	fadtDSDT            = 40  // DSDT, 32-bit physical address
	fadtIAPCBootArch    = 109 // IAPC_BOOT_ARCH, 2 bytes
	fadtFlags           = 112 // Flags, 4 bytes
	fadtResetReg        = 116 // RESET_REG, GAS
	fadtResetValue      = 128 // RESET_VALUE
	fadtMinorVersionOff = 131 // FADT Minor Version
	fadtXDSDT           = 140 // X_DSDT, 64-bit physical address
	fadtSleepControlReg = 244 // SLEEP_CONTROL_REG, GAS
	fadtSleepStatusReg  = 256 // SLEEP_STATUS_REG, GAS
	fadtHypervisorID    = 268 // Hypervisor Vendor Identity, 8 bytes
)

// FADT Flags (§5.2.9, Table 5.10).
const (
	fadtFlagPwrButton     = 1 << 4  // PWR_BUTTON: no fixed-feature power button
	fadtFlagSlpButton     = 1 << 5  // SLP_BUTTON: no fixed-feature sleep button
	fadtFlagResetRegSup   = 1 << 10 // RESET_REG_SUP
	fadtFlagHWReducedACPI = 1 << 20 // HW_REDUCED_ACPI
)

// IA-PC Boot Architecture Flags (§5.2.9.3, Table 5.11). LEGACY_DEVICES (bit 0)
// and 8042 (bit 1) stay clear: there are no ISA devices beyond what the DSDT
// declares and no keyboard controller, so Linux skips the i8042 probe.
const (
	iapcVGANotPresent     = 1 << 2 // VGA Not Present
	iapcMSINotSupported   = 1 << 3 // MSI Not Supported (there is no PCI)
	iapcPCIeASPMControls  = 1 << 4 // PCIe ASPM Controls: OSPM must not enable ASPM
	iapcCMOSRTCNotPresent = 1 << 5 // CMOS RTC Not Present
)

// Generic Address Structure (§5.2.3.2, Table 5.1).
const (
	gasSystemIO   = 1 // Address Space ID: System I/O
	gasAccessByte = 1 // Access Size: byte access
)

// putGASPort8 writes a GAS for an 8-bit register at I/O port port.
func putGASPort8(b []byte, port uint16) {
	b[0] = gasSystemIO
	b[1] = 8 // Register Bit Width
	b[2] = 0 // Register Bit Offset
	b[3] = gasAccessByte
	binary.LittleEndian.PutUint64(b[4:12], uint64(port))
}

// buildFADT returns the Fixed ACPI Description Table ("FACP", §5.2.9) of a
// hardware-reduced platform (§4.1): no PM1/PM2/GPE/PM timer blocks, no SCI,
// no SMI command port and no FACS. Poweroff goes through the sleep
// control/status registers, reboot through RESET_REG; all three are the
// 8-bit I/O port cfg.PowerPort.
func buildFADT(cfg Config, dsdt uint64) []byte {
	f := make([]byte, fadtLength-headerLength)
	at := func(off int) []byte { return f[off-headerLength:] }

	if dsdt <= 0xFFFFFFFF {
		// Both DSDT fields hold the same address, which ACPICA accepts.
		binary.LittleEndian.PutUint32(at(fadtDSDT), uint32(dsdt))
	}
	binary.LittleEndian.PutUint64(at(fadtXDSDT), dsdt)

	bootArch := uint16(iapcVGANotPresent | iapcMSINotSupported | iapcPCIeASPMControls)
	if !cfg.CMOSRTC {
		bootArch |= iapcCMOSRTCNotPresent
	}
	binary.LittleEndian.PutUint16(at(fadtIAPCBootArch), bootArch)
	binary.LittleEndian.PutUint32(at(fadtFlags),
		fadtFlagHWReducedACPI|fadtFlagResetRegSup|fadtFlagPwrButton|fadtFlagSlpButton)

	putGASPort8(at(fadtResetReg), cfg.PowerPort)
	at(fadtResetValue)[0] = cfg.ResetValue
	at(fadtMinorVersionOff)[0] = fadtMinorVersion
	putGASPort8(at(fadtSleepControlReg), cfg.PowerPort)
	putGASPort8(at(fadtSleepStatusReg), cfg.PowerPort)
	copy(at(fadtHypervisorID), hypervisorVendorID)

	return newTable("FACP", fadtRevision, "PYROFACP", f)
}

// MADT (§5.2.12).
const (
	madtRevision         = 5
	madtFlagPCATCompat   = 1 << 0 // PCAT_COMPAT: dual 8259s present (KVM's irqchip has them)
	madtTypeLocalAPIC    = 0      // §5.2.12.2
	madtLocalAPICLength  = 8
	madtLocalAPICEnabled = 1 << 0
	madtTypeIOAPIC       = 1 // §5.2.12.3
	madtIOAPICLength     = 12
)

// buildMADT returns the Multiple APIC Description Table ("APIC", §5.2.12):
// one enabled Processor Local APIC per vCPU (UID = APIC ID = index) and one
// I/O APIC with GSI base 0. It has no Interrupt Source Overrides: KVM's
// default routing wires ISA IRQ n to I/O APIC pin n, which is the identity
// mapping an OS assumes without overrides, and in hardware-reduced mode there
// is no SCI needing one.
func buildMADT(cfg Config) []byte {
	body := make([]byte, 8, 8+madtLocalAPICLength*cfg.NumCPUs+madtIOAPICLength)
	binary.LittleEndian.PutUint32(body[0:4], cfg.LAPICAddr) // Local Interrupt Controller Address
	binary.LittleEndian.PutUint32(body[4:8], madtFlagPCATCompat)
	for i := 0; i < cfg.NumCPUs; i++ {
		e := make([]byte, madtLocalAPICLength)
		e[0] = madtTypeLocalAPIC
		e[1] = madtLocalAPICLength
		e[2] = byte(i) // ACPI Processor UID
		e[3] = byte(i) // APIC ID
		binary.LittleEndian.PutUint32(e[4:8], madtLocalAPICEnabled)
		body = append(body, e...)
	}
	e := make([]byte, madtIOAPICLength)
	e[0] = madtTypeIOAPIC
	e[1] = madtIOAPICLength
	e[2] = cfg.IOAPICID
	binary.LittleEndian.PutUint32(e[4:8], cfg.IOAPICAddr)
	binary.LittleEndian.PutUint32(e[8:12], 0) // Global System Interrupt Base
	body = append(body, e...)
	return newTable("APIC", madtRevision, "PYROAPIC", body)
}
