package kvm

import "testing"

// The request numbers as <linux/kvm.h> computes them on x86_64 (checked
// against the header with a C program).
func TestIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		got  uintptr
		want uintptr
	}{
		{kvmGetAPIVersion, 0xae00}, {kvmCreateVM, 0xae01}, {kvmGetMSRIndexList, 0xc004ae02},
		{kvmCheckExtension, 0xae03}, {kvmGetVCPUMmapSize, 0xae04}, {kvmGetSupportedCPUID, 0xc008ae05},
		{kvmCreateVCPU, 0xae41}, {kvmSetUserMemoryRegion, 0x4020ae46}, {kvmSetTSSAddr, 0xae47},
		{kvmSetIdentityMapAddr, 0x4008ae48}, {kvmCreateIRQChip, 0xae60}, {kvmIRQLine, 0x4008ae61},
		{kvmCreatePIT2, 0x4040ae77}, {kvmIOEventFD, 0x4040ae79}, {kvmIRQFD, 0x4020ae76},
		{kvmSetClock, 0x4030ae7b}, {kvmGetClock, 0x8030ae7c}, {kvmRun, 0xae80},
		{kvmGetRegs, 0x8090ae81}, {kvmSetRegs, 0x4090ae82}, {kvmGetSregs, 0x8138ae83},
		{kvmSetSregs, 0x4138ae84}, {kvmGetMSRs, 0xc008ae88}, {kvmSetMSRs, 0x4008ae89},
		{kvmGetFPU, 0x81a0ae8c}, {kvmSetFPU, 0x41a0ae8d}, {kvmGetLAPIC, 0x8400ae8e},
		{kvmSetLAPIC, 0x4400ae8f}, {kvmSetCPUID2, 0x4008ae90}, {kvmGetCPUID2, 0xc008ae91},
		{kvmSetTSCKHz, 0xaea2}, {kvmGetTSCKHz, 0xaea3}, {kvmGetMPState, 0x8004ae98},
		{kvmGetVCPUEvents, 0x8040ae9f},
		{kvmSetMPState, 0x4004ae99}, {kvmSetVCPUEvents, 0x4040aea0}, {kvmGetDebugRegs, 0x8080aea1},
		{kvmSetDebugRegs, 0x4080aea2}, {kvmGetXSave, 0x9000aea4}, {kvmSetXSave, 0x5000aea5},
		{kvmGetXSave2, 0x9000aecf}, {kvmGetXCRs, 0x8188aea6}, {kvmSetXCRs, 0x4188aea7},
		{kvmGetIRQChip, 0xc208ae62}, {kvmSetIRQChip, 0x8208ae63}, {kvmGetPIT2, 0x8070ae9f},
		{kvmSetPIT2, 0x4070aea0}, {kvmKVMClockCtrl, 0xaead},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", ioctlName(c.got), c.got, c.want)
		}
	}
	if len(ioctlNames) != 48 {
		t.Errorf("ioctlNames has %d entries; two requests share a number or one lacks a name", len(ioctlNames))
	}
}

func TestErrorNamesIoctl(t *testing.T) {
	_, err := ioctl(-1, kvmGetRegs, 0)
	if err == nil || err.Error() != "KVM_GET_REGS: bad file descriptor" {
		t.Fatalf("ioctl on a bad fd: %v", err)
	}
}
