package vmm

import (
	"crypto/rand"
	"fmt"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/vmm/acpi"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// The VM generation ID: 16 random bytes in guest memory that change on every
// restore of a snapshot, so that forks of one saved guest stop sharing the
// state of their random number generators. The DSDT describes it
// (acpi.VMGenIDConfig): Linux's vmgenid driver maps the bytes, and when the
// GED's interrupt fires it reads them again and, if they changed, reseeds the
// kernel RNG at once. A boot writes the first ID; a restore writes a new one
// before any vCPU runs and raises the interrupt once they do.
//
// A snapshot's memory holds the DSDT of the pyro that booted it, naming this
// address and GSI: changing either breaks restoring older snapshots.
const (
	// genIDAddr is the ID's guest-physical address: the last 16 bytes
	// below 0xf0000, inside the ACPI area [acpiAddr, acpiEnd) that e820Map
	// reserves, so the guest never takes it for RAM (the specification's
	// requirement R1d). The tables grow up from acpiAddr and take a few
	// KiB; acpi.Build fails rather than let them reach the ID. The address
	// is below the 0xf0000-0xfffff segment Linux scans for MP and SMBIOS
	// entry points, and off the 2 KiB boundaries it probes for option ROM
	// signatures, so random bytes here are never taken for either.
	genIDAddr = 0xefff0
	// genIDGSI is the Generic Event Device's interrupt. COM1 has 4 and
	// the virtio devices take 5 upward, up to the last I/O APIC pin; 3,
	// the ISA line of COM2, which pyro does not emulate, is free. 0 and 2
	// are the timer's and the cascade's, 1 the keyboard controller's.
	genIDGSI = 3
)

// genIDConfig is the ACPI description of the VM generation ID.
func genIDConfig() *acpi.VMGenIDConfig {
	return &acpi.VMGenIDConfig{Addr: genIDAddr, GSI: genIDGSI}
}

// writeGenID stores a fresh random 16-byte generation ID in guest memory and
// returns it.
func writeGenID(mem *memory.Guest) ([16]byte, error) {
	var id [acpi.VMGenIDSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("VM generation ID: %w", err)
	}
	if err := mem.WriteAt(id[:], genIDAddr); err != nil {
		return id, fmt.Errorf("VM generation ID at %#x: %w", genIDAddr, err)
	}
	return id, nil
}

// notifyGenID raises the GED's interrupt so the guest re-reads the ID. The
// interrupt is edge triggered: the line goes high, which the I/O APIC
// delivers, then low again, ready for the next pulse.
func notifyGenID(vm *kvm.VM) error {
	if err := vm.IRQLine(genIDGSI, true); err != nil {
		return fmt.Errorf("VM generation ID notification (GSI %d): %w", genIDGSI, err)
	}
	if err := vm.IRQLine(genIDGSI, false); err != nil {
		return fmt.Errorf("VM generation ID notification (GSI %d): %w", genIDGSI, err)
	}
	return nil
}
