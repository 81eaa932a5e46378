package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/vmm/acpi"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// lowMemory returns 2 MiB of guest RAM at 0 filled with 0xAA.
func lowMemory() (*memory.Guest, []byte) {
	ram := bytes.Repeat([]byte{0xAA}, 2<<20)
	return memory.FromBytes(memory.Region{GuestAddr: 0, Host: ram}), ram
}

func TestGenIDWrite(t *testing.T) {
	mem, ram := lowMemory()
	first, err := writeGenID(mem)
	if err != nil {
		t.Fatal(err)
	}
	if got := ram[genIDAddr : genIDAddr+16]; !bytes.Equal(got, first[:]) {
		t.Fatalf("guest memory at %#x holds % x, writeGenID returned % x", genIDAddr, got, first)
	}
	// Exactly 16 bytes change: the neighbours keep their pattern.
	if ram[genIDAddr-1] != 0xAA || ram[genIDAddr+16] != 0xAA {
		t.Errorf("bytes around the ID changed: %#x before, %#x after", ram[genIDAddr-1], ram[genIDAddr+16])
	}
	// A restore writes a new ID; vmgenid.c ignores a notification whose
	// ID did not change, so each must differ.
	second, err := writeGenID(mem)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Errorf("two IDs are equal: % x", first)
	}
	if !bytes.Equal(ram[genIDAddr:genIDAddr+16], second[:]) {
		t.Errorf("guest memory holds % x after the second write, want % x", ram[genIDAddr:genIDAddr+16], second)
	}
}

func TestGenIDWriteOutsideMemory(t *testing.T) {
	small := memory.FromBytes(memory.Region{GuestAddr: 0, Host: make([]byte, 0x10000)})
	_, err := writeGenID(small)
	var re *memory.RangeError
	if !errors.As(err, &re) {
		t.Fatalf("writeGenID into 64 KiB of RAM: err = %v, want a *memory.RangeError", err)
	}
}

// TestGenIDConfigFitsLayout builds the tables the VMM would build, the
// largest included, and checks that the ID lies outside them, inside the
// range the e820 map reserves, and on a GSI nothing else uses.
func TestGenIDConfigFitsLayout(t *testing.T) {
	if genIDAddr%8 != 0 {
		t.Fatalf("genIDAddr %#x is not 8-byte aligned", genIDAddr)
	}
	for _, c := range []struct{ vcpus, devices int }{{1, 0}, {2, 3}, {MaxVCPUs, maxVirtioDevices}} {
		t.Run(fmt.Sprintf("%d vCPUs, %d devices", c.vcpus, c.devices), func(t *testing.T) {
			m := &Machine{cfg: Config{VCPUs: c.vcpus, Devices: make([]virtio.Device, c.devices)}}
			cfg := m.acpiConfig()
			cfg.VMGenID = genIDConfig()
			tables, _, err := acpi.Build(cfg, acpiAddr)
			if err != nil {
				t.Fatalf("acpi.Build: %v", err)
			}
			if end := acpiAddr + uint64(len(tables)); end > genIDAddr {
				t.Errorf("tables end at %#x, past the ID at %#x", end, genIDAddr)
			}
			// Build also rejects the interrupt sharing; check the
			// ranges directly too, so a change there cannot hide it.
			for i, d := range cfg.VirtioMMIO {
				if d.GSI == genIDGSI {
					t.Errorf("virtio device %d has the ID's GSI %d", i, d.GSI)
				}
			}
		})
	}
	if genIDGSI == com1IRQ || genIDGSI >= acpi.IOAPICPins {
		t.Errorf("genIDGSI %d is COM1's or not an I/O APIC input", genIDGSI)
	}

	mem, _ := lowMemory()
	var reserved, ram bool
	for _, e := range e820Map(mem) {
		overlaps := genIDAddr < e.Addr+e.Size && e.Addr < genIDAddr+16
		switch {
		case overlaps && e.Type == e820RAM:
			ram = true
		case overlaps && e.Type == e820Reserved && e.Addr <= genIDAddr && genIDAddr+16 <= e.Addr+e.Size:
			reserved = true
		}
	}
	if ram || !reserved {
		t.Errorf("e820 map %+v: ID at %#x is RAM=%v, inside a reserved range=%v; want reserved only", e820Map(mem), genIDAddr, ram, reserved)
	}
}

// TestNotifyGenID pulses the GED's line on KVM's in-kernel I/O APIC. Without
// an irqchip KVM_IRQ_LINE fails, which shows the pulse reaches KVM.
func TestNotifyGenID(t *testing.T) {
	sys := kvmtest.Require(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := notifyGenID(vm); err == nil {
		t.Fatal("notifyGenID succeeded on a VM without an in-kernel irqchip")
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := notifyGenID(vm); err != nil {
			t.Fatalf("pulse %d: %v", i, err)
		}
	}
}
