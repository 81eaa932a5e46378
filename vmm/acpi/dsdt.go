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

	// The VM generation ID device. _HID is ours (requirement R6 of the
	// specification: unique to the hypervisor vendor; an ACPI ID is four
	// letters or digits and four hex digits). _CID and _DDN are the
	// specification's "VM_Gen_Counter"; ACPICA upper-cases _HID and _CID
	// strings when it reads them (acpi_ns_repair_HID in nsrepair2.c), so
	// Linux sees "VM_GEN_COUNTER", one of the IDs vmgenid_ids lists.
	vmGenIDHID = "PYRO0001"
	vmGenIDCID = "VM_Gen_Counter"
	vmGenIDDDN = "VM_Gen_Counter"
	vmGenIDDev = `\_SB_.VGEN`
	// vmGenIDNotify is the Notify value the vmgenid driver acts on: 0x80,
	// the first device-specific value (§5.6.6).
	vmGenIDNotify = 0x80

	gedHID = "ACPI0013" // Generic Event Device, hardware-reduced ACPI 6.1 and later
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
//	    Device (VGEN) {                        // only with Config.VMGenID
//	        Name (_HID, "PYRO0001")
//	        Name (_CID, "VM_Gen_Counter")
//	        Name (_DDN, "VM_Gen_Counter")
//	        Method (ADDR, 0) { Return (Package () { addr & 0xFFFFFFFF, addr >> 32 }) }
//	    }
//	    Device (GED0) {                        // only with Config.VMGenID
//	        Name (_HID, "ACPI0013")
//	        Name (_UID, 0)
//	        Name (_CRS, ResourceTemplate () {
//	            Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }
//	        })
//	        Method (_EVT, 1) {                 // Arg0: the GSI that fired
//	            If (LEqual (Arg0, gsi)) { Notify (\_SB.VGEN, 0x80) }
//	        }
//	    }
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
	if g := cfg.VMGenID; g != nil {
		devices = append(devices, vmGenIDDevices(*g)...)
	}
	if len(devices) > 0 {
		aml = append(aml, amlScope(`\_SB_`, devices...)...)
	}
	return newTable("DSDT", dsdtRevision, "PYRODSDT", aml)
}

// vmGenIDDevices returns \_SB_.VGEN and \_SB_.GED0 for g (see buildDSDT).
// ADDR is a method, as the specification has it, returning the address as
// two 32-bit integers, low half first: the form vmgenid.c's
// parse_vmgenid_address expects. Linux's GED driver runs _EVT from a
// threaded handler with the GSI as Arg0; _EVT compares it so that the
// device can grow more events later.
func vmGenIDDevices(g VMGenIDConfig) [][]byte {
	vgen := amlDevice("VGEN",
		amlName("_HID", amlString(vmGenIDHID)),
		amlName("_CID", amlString(vmGenIDCID)),
		amlName("_DDN", amlString(vmGenIDDDN)),
		amlMethod("ADDR", 0, false, amlReturn(amlPackage(
			amlInteger(g.Addr&0xFFFFFFFF),
			amlInteger(g.Addr>>32),
		))),
	)
	ged := amlDevice("GED0",
		amlName("_HID", amlString(gedHID)),
		amlName("_UID", amlInteger(0)),
		amlName("_CRS", amlResourceTemplate(resInterruptDesc(g.GSI))),
		amlMethod("_EVT", 1, false,
			amlIf(amlLEqual(amlArg(0), amlInteger(uint64(g.GSI))),
				amlNotify(vmGenIDDev, amlInteger(vmGenIDNotify)),
			),
		),
	)
	return [][]byte{vgen, ged}
}
