package vmm

import "github.com/pyro-mcp/pyro/vmm/acpi"

// powerDevice is the I/O port behind the FADT's sleep control, sleep status
// and reset registers (hardware-reduced ACPI, ACPI 6.x §4.8.3.7 and §4.8.4).
// Linux's ACPI poweroff writes SLP_TYP(S5)<<2 | SLP_EN to it; its ACPI
// reboot (reboot=acpi) writes the FADT's reset value.
type powerDevice struct {
	cfg        acpi.Config
	onPoweroff func()
	onReset    func()
}

func (p *powerDevice) Read(off uint64, data []byte) {
	for i := range data {
		data[i] = 0 // sleep status: not waking
	}
}

func (p *powerDevice) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	switch p.cfg.DecodePowerWrite(data[0]) {
	case acpi.PowerOff:
		p.onPoweroff()
	case acpi.PowerReset:
		p.onReset()
	}
}
