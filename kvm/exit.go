package kvm

import (
	"encoding/binary"
	"fmt"
)

// Offsets into struct kvm_run (x86_64), from <linux/kvm.h>. The region is
// shared with the kernel, so it is read field by field at these offsets
// rather than overlaid with a Go struct.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32 // start of the per-exit union
	runMinSize       = 2352

	// io
	runIODirection  = runUnion + 0
	runIOSize       = runUnion + 1
	runIOPort       = runUnion + 2
	runIOCount      = runUnion + 4
	runIODataOffset = runUnion + 8
	// mmio
	runMMIOPhysAddr = runUnion + 0
	runMMIOData     = runUnion + 8
	runMMIOLen      = runUnion + 16
	runMMIOIsWrite  = runUnion + 20
	// system_event, internal: a u32, a u32 count, then u64 data[16]
	runEventType  = runUnion + 0
	runEventNData = runUnion + 4
	runEventData  = runUnion + 8
	// fail_entry
	runFailReason = runUnion + 0
	runFailCPU    = runUnion + 8
)

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons, as in <linux/kvm.h>.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitNotify        ExitReason = 37
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "KVM_EXIT_UNKNOWN", ExitException: "KVM_EXIT_EXCEPTION",
	ExitIO: "KVM_EXIT_IO", ExitHypercall: "KVM_EXIT_HYPERCALL",
	ExitDebug: "KVM_EXIT_DEBUG", ExitHLT: "KVM_EXIT_HLT", ExitMMIO: "KVM_EXIT_MMIO",
	ExitIRQWindowOpen: "KVM_EXIT_IRQ_WINDOW_OPEN", ExitShutdown: "KVM_EXIT_SHUTDOWN",
	ExitFailEntry: "KVM_EXIT_FAIL_ENTRY", ExitIntr: "KVM_EXIT_INTR",
	ExitSetTPR: "KVM_EXIT_SET_TPR", ExitTPRAccess: "KVM_EXIT_TPR_ACCESS",
	ExitNMI: "KVM_EXIT_NMI", ExitInternalError: "KVM_EXIT_INTERNAL_ERROR",
	ExitSystemEvent: "KVM_EXIT_SYSTEM_EVENT", ExitX86RDMSR: "KVM_EXIT_X86_RDMSR",
	ExitX86WRMSR: "KVM_EXIT_X86_WRMSR", ExitNotify: "KVM_EXIT_NOTIFY",
}

func (r ExitReason) String() string {
	if n, ok := exitNames[r]; ok {
		return n
	}
	return fmt.Sprintf("KVM_EXIT_%d", uint32(r))
}

// Exit is why KVM_RUN returned. Its accessors decode the matching member of
// kvm_run's union; the slices they return alias the shared region and are
// valid until the next Run.
type Exit struct {
	Reason ExitReason
	run    []byte
}

// IO port directions (KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT).
const (
	IOIn  = 0
	IOOut = 1
)

// IOExit is a guest IN or OUT (possibly a string instruction: Count > 1).
type IOExit struct {
	Out  bool
	Port uint16
	Size int // bytes per access: 1, 2 or 4
	// Data holds Size*Count bytes: what the guest wrote, or where to put
	// what it reads.
	Data  []byte
	Count int
}

// IO decodes a KVM_EXIT_IO.
func (e Exit) IO() (IOExit, error) {
	r := e.run
	io := IOExit{
		Out:   r[runIODirection] == IOOut,
		Size:  int(r[runIOSize]),
		Port:  binary.LittleEndian.Uint16(r[runIOPort:]),
		Count: int(binary.LittleEndian.Uint32(r[runIOCount:])),
	}
	off := binary.LittleEndian.Uint64(r[runIODataOffset:])
	n := uint64(io.Size) * uint64(io.Count)
	if io.Size != 1 && io.Size != 2 && io.Size != 4 || off > uint64(len(r)) || n > uint64(len(r))-off {
		return IOExit{}, fmt.Errorf("KVM_EXIT_IO: port %#x: bad access (size %d, count %d, data offset %#x)", io.Port, io.Size, io.Count, off)
	}
	io.Data = r[off : off+n]
	return io, nil
}

// MMIOExit is a guest load or store to an address with no memory behind it.
type MMIOExit struct {
	Addr    uint64
	IsWrite bool
	// Data holds the stored bytes, or receives the loaded ones (1 to 8).
	Data []byte
}

// MMIO decodes a KVM_EXIT_MMIO.
func (e Exit) MMIO() (MMIOExit, error) {
	r := e.run
	n := binary.LittleEndian.Uint32(r[runMMIOLen:])
	m := MMIOExit{
		Addr:    binary.LittleEndian.Uint64(r[runMMIOPhysAddr:]),
		IsWrite: r[runMMIOIsWrite] != 0,
	}
	if n == 0 || n > 8 {
		return MMIOExit{}, fmt.Errorf("KVM_EXIT_MMIO at %#x: bad length %d", m.Addr, n)
	}
	m.Data = r[runMMIOData : runMMIOData+n]
	return m, nil
}

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// SystemEvent decodes a KVM_EXIT_SYSTEM_EVENT: its type and data words.
func (e Exit) SystemEvent() (typ uint32, data []uint64) {
	return e.typedData()
}

// InternalError decodes a KVM_EXIT_INTERNAL_ERROR: suberror and data words.
func (e Exit) InternalError() (suberror uint32, data []uint64) {
	return e.typedData()
}

func (e Exit) typedData() (uint32, []uint64) {
	r := e.run
	n := min(binary.LittleEndian.Uint32(r[runEventNData:]), 16)
	data := make([]uint64, n)
	for i := range data {
		data[i] = binary.LittleEndian.Uint64(r[runEventData+8*i:])
	}
	return binary.LittleEndian.Uint32(r[runEventType:]), data
}

// FailEntry decodes a KVM_EXIT_FAIL_ENTRY: the hardware's reason and the
// physical CPU.
func (e Exit) FailEntry() (reason uint64, cpu uint32) {
	return binary.LittleEndian.Uint64(e.run[runFailReason:]), binary.LittleEndian.Uint32(e.run[runFailCPU:])
}

// HardwareReason decodes a KVM_EXIT_UNKNOWN: the hardware exit reason.
func (e Exit) HardwareReason() uint64 {
	return binary.LittleEndian.Uint64(e.run[runUnion:])
}
