package kvm

import (
	"testing"
	"unsafe"
)

// The Go declarations must match the kernel's struct sizes exactly, or the
// kernel reads and writes past them.
func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), sizeofRegs},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), sizeofSregs},
		{"kvm_segment", unsafe.Sizeof(Segment{}), sizeofSegment},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), sizeofDTable},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), sizeofFPU},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), sizeofCPUIDEntry2},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), sizeofMSREntry},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), sizeofUserspaceMemoryRegion},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), sizeofPITConfig},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), sizeofIRQLevel},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), sizeofIRQFD},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), sizeofIOEventFD},
		{"kvm_clock_data", unsafe.Sizeof(ClockData{}), sizeofClockData},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), sizeofLAPICState},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), sizeofVCPUEvents},
	} {
		if c.got != c.want {
			t.Errorf("%s: Go struct is %d bytes, kernel's is %d", c.name, c.got, c.want)
		}
	}
	// Field offsets the kernel relies on.
	var s Sregs
	if off := unsafe.Offsetof(s.GDT); off != 192 {
		t.Errorf("kvm_sregs.gdt at %d, want 192", off)
	}
	if off := unsafe.Offsetof(s.CR0); off != 224 {
		t.Errorf("kvm_sregs.cr0 at %d, want 224", off)
	}
	var f FPU
	if off := unsafe.Offsetof(f.MXCSR); off != 408 {
		t.Errorf("kvm_fpu.mxcsr at %d, want 408", off)
	}
	var r Regs
	if off := unsafe.Offsetof(r.RIP); off != 128 {
		t.Errorf("kvm_regs.rip at %d, want 128", off)
	}
}
