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
		{"kvm_xcrs", unsafe.Sizeof(XCRs{}), sizeofXCRs},
		{"kvm_xcr", unsafe.Sizeof(XCR{}), 16},
		{"kvm_debugregs", unsafe.Sizeof(DebugRegs{}), sizeofDebugRegs},
		{"kvm_irqchip", unsafe.Sizeof(IRQChip{}), sizeofIRQChip},
		{"kvm_pit_channel_state", unsafe.Sizeof(PITChannelState{}), sizeofPITChannelState},
		{"kvm_pit_state2", unsafe.Sizeof(PITState2{}), sizeofPITState2},
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

// Offsets of the fields the snapshot code reads or the kernel checks, from
// <asm/kvm.h> on x86_64 (printed with offsetof by a C program).
func TestStateStructOffsets(t *testing.T) {
	var x XCRs
	var d DebugRegs
	var c IRQChip
	var p PITState2
	var ch PITChannelState
	var k ClockData
	for _, o := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_xcrs.flags", unsafe.Offsetof(x.Flags), 4},
		{"kvm_xcrs.xcrs", unsafe.Offsetof(x.XCRs), 8},
		{"kvm_xcr.value", unsafe.Offsetof(x.XCRs[0].Value), 8},
		{"kvm_debugregs.dr6", unsafe.Offsetof(d.DR6), 32},
		{"kvm_debugregs.dr7", unsafe.Offsetof(d.DR7), 40},
		{"kvm_debugregs.flags", unsafe.Offsetof(d.Flags), 48},
		{"kvm_irqchip.chip", unsafe.Offsetof(c.Chip), 8},
		{"kvm_pit_state2.flags", unsafe.Offsetof(p.Flags), 72},
		{"kvm_pit_channel_state.mode", unsafe.Offsetof(ch.Mode), 13},
		{"kvm_pit_channel_state.count_load_time", unsafe.Offsetof(ch.CountLoadTime), 16},
		{"kvm_clock_data.flags", unsafe.Offsetof(k.Flags), 8},
		{"kvm_clock_data.realtime", unsafe.Offsetof(k.Realtime), 16},
		{"kvm_clock_data.host_tsc", unsafe.Offsetof(k.HostTSC), 24},
	} {
		if o.got != o.want {
			t.Errorf("%s at %d, want %d", o.name, o.got, o.want)
		}
	}
}
