package kvm

import (
	"fmt"
	"strconv"
	"strings"
)

// Sizes of the kernel ABI structs, from <linux/kvm.h> and <asm/kvm.h> on
// x86_64. Tests assert that the Go declarations below match them.
const (
	sizeofRegs                  = 144
	sizeofSregs                 = 312
	sizeofSegment               = 24
	sizeofDTable                = 16
	sizeofFPU                   = 416
	sizeofCPUID2                = 8 // header; entries follow
	sizeofCPUIDEntry2           = 40
	sizeofMSRs                  = 8 // header; entries follow
	sizeofMSREntry              = 16
	sizeofMSRList               = 4 // header; indices follow
	sizeofUserspaceMemoryRegion = 32
	sizeofPITConfig             = 64
	sizeofIRQLevel              = 8
	sizeofIRQFD                 = 32
	sizeofIOEventFD             = 64
	sizeofClockData             = 48
	sizeofLAPICState            = 1024
	sizeofVCPUEvents            = 64
	sizeofXSave                 = 4096 // struct kvm_xsave without its KVM_CAP_XSAVE2 tail
	sizeofXCRs                  = 392
	sizeofDebugRegs             = 128
	sizeofIRQChip               = 520
	sizeofPITChannelState       = 24
	sizeofPITState2             = 112
)

// Regs is struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment: a segment register in its hidden,
// descriptor-cache form.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, control and descriptor-table registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64
}

// FPU is struct kvm_fpu: x87 and SSE state.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// CPUIDEntry is struct kvm_cpuid_entry2: one CPUID leaf (Function) and
// subleaf (Index) with the values the guest will read.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf index matters
// (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
const CPUIDFlagSignificantIndex = 1 << 0

// MSR is struct kvm_msr_entry: one model-specific register.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// userspaceMemoryRegion is struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// pitConfig is struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// PITSpeakerDummy makes the in-kernel PIT emulate the PC speaker port 0x61
// (KVM_PIT_SPEAKER_DUMMY), so the guest's speaker probes do not exit.
const PITSpeakerDummy = 1

// irqLevel is struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// irqfd is struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

const irqfdFlagDeassign = 1 << 0

// ioeventfd is struct kvm_ioeventfd.
type ioeventfd struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IOEventFD flags (KVM_IOEVENTFD_FLAG_*).
const (
	IOEventFDDataMatch = 1 << 0
	IOEventFDPIO       = 1 << 1
	IOEventFDDeassign  = 1 << 2
)

// ClockData is struct kvm_clock_data: the VM-wide kvmclock.
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

// LAPICState is struct kvm_lapic_state: the local APIC's 4 KiB register
// page, truncated to the 1 KiB KVM exchanges.
type LAPICState struct {
	Regs [1024]byte
}

// VCPUEvents is struct kvm_vcpu_events, kept opaque: pyro reads it for
// diagnostics and carries it whole in a snapshot.
type VCPUEvents struct {
	Raw [64]byte
}

// String summarises the events for a diagnostic: an exception, interrupt
// or NMI KVM is injecting or holds pending, and the interrupt shadow.
func (e *VCPUEvents) String() string {
	r := &e.Raw
	// exception {injected, nr, has_error_code, pending, error_code u32};
	// interrupt {injected, nr, soft, shadow}; nmi {injected, pending,
	// masked, pad}.
	var parts []string
	if r[0] != 0 || r[3] != 0 {
		parts = append(parts, fmt.Sprintf("exception %d (injected %d pending %d)", r[1], r[0], r[3]))
	}
	if r[8] != 0 {
		parts = append(parts, fmt.Sprintf("interrupt %#x injected", r[9]))
	}
	if r[11] != 0 {
		parts = append(parts, fmt.Sprintf("interrupt shadow %#x", r[11]))
	}
	if r[12] != 0 || r[13] != 0 {
		parts = append(parts, fmt.Sprintf("NMI injected %d pending %d", r[12], r[13]))
	}
	if r[14] != 0 {
		parts = append(parts, "NMIs masked")
	}
	if len(parts) == 0 {
		return "no events"
	}
	return strings.Join(parts, ", ")
}

// MP states (KVM_MP_STATE_*), as KVM_GET_MP_STATE reports them on x86.
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// XCR is struct kvm_xcr: one extended control register.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// maxXCRs is KVM_MAX_XCRS, the length of kvm_xcrs.xcrs.
const maxXCRs = 16

// XCRs is struct kvm_xcrs: the extended control registers (XCR0, the XSAVE
// feature mask, is the only one KVM knows).
type XCRs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [maxXCRs]XCR
	_      [16]uint64
}

// DebugRegs is struct kvm_debugregs: DR0-DR3, DR6 and DR7.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// IRQChip is struct kvm_irqchip: one in-kernel interrupt controller's state.
// Chip holds the union (struct kvm_pic_state or struct kvm_ioapic_state),
// kept opaque: it is only carried from KVM_GET_IRQCHIP to KVM_SET_IRQCHIP.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// Chip IDs of struct kvm_irqchip (KVM_IRQCHIP_*).
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// PITChannelState is struct kvm_pit_channel_state: one i8254 counter.
type PITChannelState struct {
	Count         uint32 // 0 to 0x10000
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64 // host monotonic ns when Count was loaded
}

// PITState2 is struct kvm_pit_state2: the in-kernel i8254's three counters.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

// kvm_clock_data.flags (KVM_CLOCK_*).
const (
	// ClockTSCStable: the clock is stable across vCPUs (GET only;
	// KVM_SET_CLOCK on kernels before 5.16 refuses every flag).
	ClockTSCStable = 1 << 1
	// ClockRealtime: Realtime holds CLOCK_REALTIME at the instant of
	// Clock; on KVM_SET_CLOCK, KVM advances the clock by the real time
	// elapsed since.
	ClockRealtime = 1 << 2
	// ClockHostTSC: HostTSC holds the host TSC at that instant.
	ClockHostTSC = 1 << 3
)

// Cap is a KVM capability number for KVM_CHECK_EXTENSION.
type Cap int

// Capabilities pyro's VMM uses or reports.
const (
	CapIRQChip            Cap = 0
	CapHLT                Cap = 1
	CapUserMemory         Cap = 3
	CapSetTSSAddr         Cap = 4
	CapExtCPUID           Cap = 7
	CapNrVCPUs            Cap = 9
	CapNrMemslots         Cap = 10
	CapMPState            Cap = 14
	CapIRQRouting         Cap = 25
	CapIRQFD              Cap = 32
	CapPIT2               Cap = 33
	CapIOEventFD          Cap = 36
	CapSetIdentityMapAddr Cap = 37
	CapAdjustClock        Cap = 39
	CapVCPUEvents         Cap = 41
	CapDebugRegs          Cap = 50
	CapXSave              Cap = 55
	CapXCRs               Cap = 56
	CapTSCControl         Cap = 60
	CapGetTSCKHz          Cap = 61
	CapMaxVCPUs           Cap = 66
	CapKVMClockCtrl       Cap = 76
	CapImmediateExit      Cap = 136
	CapXSave2             Cap = 208
)

var capNames = map[Cap]string{
	CapIRQChip:            "KVM_CAP_IRQCHIP",
	CapHLT:                "KVM_CAP_HLT",
	CapUserMemory:         "KVM_CAP_USER_MEMORY",
	CapSetTSSAddr:         "KVM_CAP_SET_TSS_ADDR",
	CapExtCPUID:           "KVM_CAP_EXT_CPUID",
	CapNrVCPUs:            "KVM_CAP_NR_VCPUS",
	CapNrMemslots:         "KVM_CAP_NR_MEMSLOTS",
	CapMPState:            "KVM_CAP_MP_STATE",
	CapIRQRouting:         "KVM_CAP_IRQ_ROUTING",
	CapIRQFD:              "KVM_CAP_IRQFD",
	CapPIT2:               "KVM_CAP_PIT2",
	CapIOEventFD:          "KVM_CAP_IOEVENTFD",
	CapSetIdentityMapAddr: "KVM_CAP_SET_IDENTITY_MAP_ADDR",
	CapAdjustClock:        "KVM_CAP_ADJUST_CLOCK",
	CapVCPUEvents:         "KVM_CAP_VCPU_EVENTS",
	CapDebugRegs:          "KVM_CAP_DEBUGREGS",
	CapXSave:              "KVM_CAP_XSAVE",
	CapXCRs:               "KVM_CAP_XCRS",
	CapTSCControl:         "KVM_CAP_TSC_CONTROL",
	CapGetTSCKHz:          "KVM_CAP_GET_TSC_KHZ",
	CapMaxVCPUs:           "KVM_CAP_MAX_VCPUS",
	CapKVMClockCtrl:       "KVM_CAP_KVMCLOCK_CTRL",
	CapImmediateExit:      "KVM_CAP_IMMEDIATE_EXIT",
	CapXSave2:             "KVM_CAP_XSAVE2",
}

func (c Cap) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return "KVM_CAP_" + strconv.Itoa(int(c))
}

// RequiredCaps are the capabilities without which pyro's VMM cannot boot a
// guest. pyro kvm-check reports each one.
var RequiredCaps = []Cap{
	CapIRQChip, CapHLT, CapUserMemory, CapSetTSSAddr, CapExtCPUID,
	CapPIT2, CapIRQFD, CapIOEventFD, CapSetIdentityMapAddr,
	CapAdjustClock, CapImmediateExit, CapMPState,
}

// APIVersion is the only KVM API version there has ever been (KVM_API_VERSION).
const APIVersion = 12
