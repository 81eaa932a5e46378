package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/pyro-mcp/pyro/kvm"
)

// MSRs set on every vCPU before it runs.
const (
	msrIA32TSC         = 0x10
	msrIA32SysenterCS  = 0x174
	msrIA32SysenterESP = 0x175
	msrIA32SysenterEIP = 0x176
	msrIA32MiscEnable  = 0x1a0
	msrMTRRDefType     = 0x2ff
	msrSTAR            = 0xc0000081
	msrLSTAR           = 0xc0000082
	msrCSTAR           = 0xc0000083
	msrSyscallMask     = 0xc0000084
	msrKernelGSBase    = 0xc0000102

	miscEnableFastString = 1 << 0
	mtrrEnable           = 1 << 11
	mtrrTypeWriteBack    = 6
)

// bootMSRs are the MSR values a vCPU starts with: syscall MSRs cleared, fast
// strings on, and MTRRs enabled with write-back as the default memory type
// (without it Linux maps all RAM uncached and runs many times slower).
func bootMSRs() []kvm.MSR {
	return []kvm.MSR{
		{Index: msrIA32SysenterCS}, {Index: msrIA32SysenterESP}, {Index: msrIA32SysenterEIP},
		{Index: msrSTAR}, {Index: msrCSTAR}, {Index: msrKernelGSBase},
		{Index: msrSyscallMask}, {Index: msrLSTAR}, {Index: msrIA32TSC},
		{Index: msrIA32MiscEnable, Data: miscEnableFastString},
		{Index: msrMTRRDefType, Data: mtrrEnable | mtrrTypeWriteBack},
	}
}

// Local APIC registers and delivery modes for the LINT pins.
const (
	apicLVT0         = 0x350
	apicLVT1         = 0x360
	apicModeExtINT   = 0x7
	apicModeNMI      = 0x4
	apicDeliveryMask = 0x700
)

// setLINT wires LINT0 to the 8259 (ExtINT) and LINT1 to NMI, as a PC BIOS
// would; Linux expects to find them so.
func setLINT(v *kvm.VCPU) error {
	l, err := v.LAPIC()
	if err != nil {
		return err
	}
	set := func(off int, mode uint32) {
		r := binary.LittleEndian.Uint32(l.Regs[off:])
		binary.LittleEndian.PutUint32(l.Regs[off:], r&^apicDeliveryMask|mode<<8)
	}
	set(apicLVT0, apicModeExtINT)
	set(apicLVT1, apicModeNMI)
	return v.SetLAPIC(l)
}

// setupVCPU gives vCPU v its CPUID table, MSRs, FPU state and LAPIC wiring.
// The boot CPU additionally gets the long-mode registers and entry point.
func setupVCPU(v *kvm.VCPU, cpuid []kvm.CPUIDEntry, boot *bootState) error {
	if err := v.SetCPUID(cpuid); err != nil {
		return err
	}
	if err := v.SetMSRs(bootMSRs()); err != nil {
		return err
	}
	if err := v.SetFPU(kvm.FPU{FCW: 0x37f, MXCSR: 0x1f80}); err != nil {
		return err
	}
	if err := setLINT(v); err != nil {
		return err
	}
	if boot == nil {
		return nil // application processors wait for INIT/SIPI from the BSP
	}
	s, err := v.Sregs()
	if err != nil {
		return err
	}
	if err := v.SetSregs(longModeSregs(s)); err != nil {
		return err
	}
	return v.SetRegs(kvm.Regs{
		RIP:    boot.entry,
		RSP:    bootStackTop,
		RBP:    bootStackTop,
		RSI:    zeroPageAddr,
		RFLAGS: 2, // bit 1 is reserved and always set
	})
}

// bootState is what the boot CPU needs to enter the kernel.
type bootState struct {
	entry uint64
}

// registerDump formats vCPU v's registers for a crash diagnostic.
func registerDump(v *kvm.VCPU) string {
	r, err := v.Regs()
	if err != nil {
		return fmt.Sprintf("registers unavailable: %v", err)
	}
	s, err := v.Sregs()
	if err != nil {
		return fmt.Sprintf("registers unavailable: %v", err)
	}
	return fmt.Sprintf("rip=%#x rsp=%#x rbp=%#x rflags=%#x rax=%#x rbx=%#x rcx=%#x rdx=%#x rsi=%#x rdi=%#x "+
		"cr0=%#x cr2=%#x cr3=%#x cr4=%#x efer=%#x cs=%#x(base %#x l=%d) ss=%#x",
		r.RIP, r.RSP, r.RBP, r.RFLAGS, r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI,
		s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.CS.Selector, s.CS.Base, s.CS.L, s.SS.Selector)
}
