package kvm

// ioctl request encoding, as in <asm-generic/ioctl.h>:
// dir(2 bits) | size(14 bits) | type(8 bits) | nr(8 bits).
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	kvmio = 0xAE
)

func io(nr uintptr) uintptr             { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr      { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr      { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr     { return ioc(iocRead|iocWrite, nr, size) }
func ioc(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | kvmio<<8 | nr }

// Requests on the system fd (/dev/kvm).
var (
	kvmGetAPIVersion     = io(0x00)
	kvmCreateVM          = io(0x01)
	kvmGetMSRIndexList   = iowr(0x02, sizeofMSRList)
	kvmCheckExtension    = io(0x03)
	kvmGetVCPUMmapSize   = io(0x04)
	kvmGetSupportedCPUID = iowr(0x05, sizeofCPUID2)
)

// Requests on a VM fd.
var (
	kvmCreateVCPU          = io(0x41)
	kvmSetUserMemoryRegion = iow(0x46, sizeofUserspaceMemoryRegion)
	kvmSetTSSAddr          = io(0x47)
	kvmSetIdentityMapAddr  = iow(0x48, 8)
	kvmCreateIRQChip       = io(0x60)
	kvmIRQLine             = iow(0x61, sizeofIRQLevel)
	kvmGetIRQChip          = iowr(0x62, sizeofIRQChip)
	kvmSetIRQChip          = ior(0x63, sizeofIRQChip) // _IOR in <linux/kvm.h>, though KVM reads it
	kvmIRQFD               = iow(0x76, sizeofIRQFD)
	kvmCreatePIT2          = iow(0x77, sizeofPITConfig)
	kvmIOEventFD           = iow(0x79, sizeofIOEventFD)
	kvmSetClock            = iow(0x7b, sizeofClockData)
	kvmGetClock            = ior(0x7c, sizeofClockData)
	kvmGetPIT2             = ior(0x9f, sizeofPITState2)
	kvmSetPIT2             = iow(0xa0, sizeofPITState2)
)

// Requests on a vCPU fd.
var (
	kvmRun           = io(0x80)
	kvmGetRegs       = ior(0x81, sizeofRegs)
	kvmSetRegs       = iow(0x82, sizeofRegs)
	kvmGetSregs      = ior(0x83, sizeofSregs)
	kvmSetSregs      = iow(0x84, sizeofSregs)
	kvmGetMSRs       = iowr(0x88, sizeofMSRs)
	kvmSetMSRs       = iow(0x89, sizeofMSRs)
	kvmGetFPU        = ior(0x8c, sizeofFPU)
	kvmSetFPU        = iow(0x8d, sizeofFPU)
	kvmGetLAPIC      = ior(0x8e, sizeofLAPICState)
	kvmSetLAPIC      = iow(0x8f, sizeofLAPICState)
	kvmSetCPUID2     = iow(0x90, sizeofCPUID2)
	kvmGetCPUID2     = iowr(0x91, sizeofCPUID2)
	kvmGetMPState    = ior(0x98, 4)
	kvmSetMPState    = iow(0x99, 4)
	kvmSetTSCKHz     = io(0xa2)
	kvmGetTSCKHz     = io(0xa3)
	kvmGetVCPUEvents = ior(0x9f, sizeofVCPUEvents)
	kvmSetVCPUEvents = iow(0xa0, sizeofVCPUEvents)
	kvmGetDebugRegs  = ior(0xa1, sizeofDebugRegs)
	kvmSetDebugRegs  = iow(0xa2, sizeofDebugRegs)
	kvmGetXSave      = ior(0xa4, sizeofXSave)
	kvmSetXSave      = iow(0xa5, sizeofXSave)
	kvmGetXCRs       = ior(0xa6, sizeofXCRs)
	kvmSetXCRs       = iow(0xa7, sizeofXCRs)
	kvmKVMClockCtrl  = io(0xad)
	kvmGetXSave2     = ior(0xcf, sizeofXSave) // writes KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) bytes
)

// ioctlNames maps request numbers to the names used in <linux/kvm.h>, for
// error messages.
var ioctlNames = map[uintptr]string{
	kvmGetAPIVersion:       "KVM_GET_API_VERSION",
	kvmCreateVM:            "KVM_CREATE_VM",
	kvmGetMSRIndexList:     "KVM_GET_MSR_INDEX_LIST",
	kvmCheckExtension:      "KVM_CHECK_EXTENSION",
	kvmGetVCPUMmapSize:     "KVM_GET_VCPU_MMAP_SIZE",
	kvmGetSupportedCPUID:   "KVM_GET_SUPPORTED_CPUID",
	kvmCreateVCPU:          "KVM_CREATE_VCPU",
	kvmSetUserMemoryRegion: "KVM_SET_USER_MEMORY_REGION",
	kvmSetTSSAddr:          "KVM_SET_TSS_ADDR",
	kvmSetIdentityMapAddr:  "KVM_SET_IDENTITY_MAP_ADDR",
	kvmCreateIRQChip:       "KVM_CREATE_IRQCHIP",
	kvmGetIRQChip:          "KVM_GET_IRQCHIP",
	kvmSetIRQChip:          "KVM_SET_IRQCHIP",
	kvmIRQLine:             "KVM_IRQ_LINE",
	kvmIRQFD:               "KVM_IRQFD",
	kvmCreatePIT2:          "KVM_CREATE_PIT2",
	kvmIOEventFD:           "KVM_IOEVENTFD",
	kvmSetClock:            "KVM_SET_CLOCK",
	kvmGetClock:            "KVM_GET_CLOCK",
	kvmGetPIT2:             "KVM_GET_PIT2",
	kvmSetPIT2:             "KVM_SET_PIT2",
	kvmRun:                 "KVM_RUN",
	kvmGetRegs:             "KVM_GET_REGS",
	kvmSetRegs:             "KVM_SET_REGS",
	kvmGetSregs:            "KVM_GET_SREGS",
	kvmSetSregs:            "KVM_SET_SREGS",
	kvmGetMSRs:             "KVM_GET_MSRS",
	kvmSetMSRs:             "KVM_SET_MSRS",
	kvmGetFPU:              "KVM_GET_FPU",
	kvmSetFPU:              "KVM_SET_FPU",
	kvmGetLAPIC:            "KVM_GET_LAPIC",
	kvmSetLAPIC:            "KVM_SET_LAPIC",
	kvmSetCPUID2:           "KVM_SET_CPUID2",
	kvmGetCPUID2:           "KVM_GET_CPUID2",
	kvmGetMPState:          "KVM_GET_MP_STATE",
	kvmSetTSCKHz:           "KVM_SET_TSC_KHZ",
	kvmGetTSCKHz:           "KVM_GET_TSC_KHZ",
	kvmGetVCPUEvents:       "KVM_GET_VCPU_EVENTS",
	kvmSetMPState:          "KVM_SET_MP_STATE",
	kvmSetVCPUEvents:       "KVM_SET_VCPU_EVENTS",
	kvmGetDebugRegs:        "KVM_GET_DEBUGREGS",
	kvmSetDebugRegs:        "KVM_SET_DEBUGREGS",
	kvmGetXSave:            "KVM_GET_XSAVE",
	kvmSetXSave:            "KVM_SET_XSAVE",
	kvmGetXCRs:             "KVM_GET_XCRS",
	kvmSetXCRs:             "KVM_SET_XCRS",
	kvmKVMClockCtrl:        "KVM_KVMCLOCK_CTRL",
	kvmGetXSave2:           "KVM_GET_XSAVE2",
}
