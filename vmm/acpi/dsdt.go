package acpi

import "fmt"

const (
	dsdtRevision = 2 // ComplianceRevision >= 2: 64-bit AML integers (§5.2.11.1)

	// virtioMMIOHID is the _HID Linux's virtio_mmio driver matches
	// (virtio_mmio_acpi_match in drivers/virtio/virtio_mmio.c).
	virtioMMIOHID = "LNRO0005"

	com1HID     = "PNP0501" // 16550A-compatible COM port
	com1Port    = 0x3F8
	com1PortLen = 8
	com1GSI     = 4
)

// buildDSDT returns the Differentiated System Description Table (§5.2.11.1):
//
//	Name (\_S5, Package () { 5, 0 })          // §7.4.2: SLP_TYPa, SLP_TYPb
//	Scope (\_SB) {
//	    Device (COM1) { ... }                  // only with Config.COM1
//	    Device (V000) {
//	        Name (_HID, "LNRO0005")            // §6.1.5
//	        Name (_UID, 0)                     // §6.1.12
//	        Name (_CRS, ResourceTemplate () {  // §6.2.2
//	            Memory32Fixed (ReadWrite, base, size)
//	            Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }
//	        })
//	    }
//	    ...
//	}
//
// With SLEEP_CONTROL_REG present, Linux registers ACPI poweroff once it can
// evaluate \_S5 and enters S5 by writing SLP_TYP<<2 | SLP_EN (PoweroffValue).
func buildDSDT(cfg Config) []byte {
	aml := amlName(`\_S5_`, amlPackage(amlInteger(SleepTypeS5), amlInteger(0)))

	var devices [][]byte
	if cfg.COM1 {
		devices = append(devices, amlDevice("COM1",
			amlName("_HID", amlEISAID(com1HID)),
			amlName("_UID", amlInteger(0)),
			amlName("_CRS", amlResourceTemplate(
				resIOPortDesc(com1Port, com1PortLen),
				resInterruptDesc(com1GSI),
			)),
		))
	}
	for i, d := range cfg.VirtioMMIO {
		devices = append(devices, amlDevice(fmt.Sprintf("V%03d", i),
			amlName("_HID", amlString(virtioMMIOHID)),
			amlName("_UID", amlInteger(uint64(i))),
			amlName("_CRS", amlResourceTemplate(
				resMemory32FixedDesc(uint32(d.Base), uint32(d.Size)),
				resInterruptDesc(d.GSI),
			)),
		))
	}
	if len(devices) > 0 {
		aml = append(aml, amlScope(`\_SB_`, devices...)...)
	}
	return newTable("DSDT", dsdtRevision, "PYRODSDT", aml)
}
