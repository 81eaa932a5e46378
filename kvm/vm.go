package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine fd: guest memory, interrupt controllers and
// vCPUs hang off it.
type VM struct {
	fd      int
	runSize int
}

// Close closes the VM fd. The kernel tears the VM down once its vCPU fds are
// closed too.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// CheckExtension is KVM_CHECK_EXTENSION on the VM fd, which answers for this
// VM rather than for the host in general.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(vm.fd, kvmCheckExtension, uintptr(c))
	return int(r), err
}

// MemoryRegion describes one slot of guest-physical memory backed by host
// memory.
type MemoryRegion struct {
	Slot      uint32
	GuestAddr uint64
	// Memory is the host mapping that backs the region. It must stay mapped
	// for the VM's whole life.
	Memory []byte
	// ReadOnly makes guest writes exit as MMIO (KVM_MEM_READONLY).
	ReadOnly bool
}

const memReadOnly = 1 << 1

// SetUserMemoryRegion installs r as guest memory.
func (vm *VM) SetUserMemoryRegion(r MemoryRegion) error {
	if len(r.Memory) == 0 || len(r.Memory)%pageSize != 0 || r.GuestAddr%pageSize != 0 {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: slot %d: %#x bytes at %#x are not page-aligned", r.Slot, len(r.Memory), r.GuestAddr)
	}
	m := userspaceMemoryRegion{
		Slot:          r.Slot,
		GuestPhysAddr: r.GuestAddr,
		MemorySize:    uint64(len(r.Memory)),
		UserspaceAddr: sliceAddr(r.Memory),
	}
	if r.ReadOnly {
		m.Flags |= memReadOnly
	}
	_, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, &m)
	return err
}

const pageSize = 4096

// SetTSSAddr places the three pages Intel VMX needs for real-mode emulation
// (KVM_SET_TSS_ADDR); the range must not overlap guest memory or devices.
func (vm *VM) SetTSSAddr(addr uint32) error {
	_, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr))
	return err
}

// SetIdentityMapAddr places the one page Intel VMX needs for its
// identity-map page table (KVM_SET_IDENTITY_MAP_ADDR).
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	_, err := ioctlPtr(vm.fd, kvmSetIdentityMapAddr, &addr)
	return err
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs. Call it before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctl(vm.fd, kvmCreateIRQChip, 0)
	return err
}

// CreatePIT2 creates the in-kernel i8254 timer. flags may be PITSpeakerDummy.
func (vm *VM) CreatePIT2(flags uint32) error {
	c := pitConfig{Flags: flags}
	_, err := ioctlPtr(vm.fd, kvmCreatePIT2, &c)
	return err
}

// IRQLine sets the level of interrupt line gsi on the in-kernel irqchip.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := irqLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	_, err := ioctlPtr(vm.fd, kvmIRQLine, &l)
	return err
}

// IRQFD makes a write to eventfd fd raise interrupt gsi without a trip
// through user space.
func (vm *VM) IRQFD(fd int, gsi uint32) error {
	f := irqfd{FD: uint32(fd), GSI: gsi}
	_, err := ioctlPtr(vm.fd, kvmIRQFD, &f)
	return err
}

// RemoveIRQFD detaches an eventfd attached with IRQFD.
func (vm *VM) RemoveIRQFD(fd int, gsi uint32) error {
	f := irqfd{FD: uint32(fd), GSI: gsi, Flags: irqfdFlagDeassign}
	_, err := ioctlPtr(vm.fd, kvmIRQFD, &f)
	return err
}

// IOEventFD makes a guest write of length bytes at addr (an MMIO address,
// or a port when flags has IOEventFDPIO) signal eventfd fd instead of
// exiting to user space. With IOEventFDDataMatch only writes of datamatch
// count.
func (vm *VM) IOEventFD(fd int, addr uint64, length uint32, datamatch uint64, flags uint32) error {
	e := ioeventfd{DataMatch: datamatch, Addr: addr, Len: length, FD: int32(fd), Flags: flags}
	_, err := ioctlPtr(vm.fd, kvmIOEventFD, &e)
	return err
}

// IRQChip returns the state of in-kernel interrupt controller chip
// (IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC) (KVM_GET_IRQCHIP).
func (vm *VM) IRQChip(chip uint32) (IRQChip, error) {
	c := IRQChip{ChipID: chip}
	_, err := ioctlPtr(vm.fd, kvmGetIRQChip, &c)
	return c, err
}

// SetIRQChip sets the state of the controller c.ChipID names
// (KVM_SET_IRQCHIP).
func (vm *VM) SetIRQChip(c IRQChip) error {
	_, err := ioctlPtr(vm.fd, kvmSetIRQChip, &c)
	return err
}

// PIT2 returns the in-kernel i8254's state (KVM_GET_PIT2).
func (vm *VM) PIT2() (PITState2, error) {
	var p PITState2
	_, err := ioctlPtr(vm.fd, kvmGetPIT2, &p)
	return p, err
}

// SetPIT2 sets the in-kernel i8254's state (KVM_SET_PIT2).
func (vm *VM) SetPIT2(p PITState2) error {
	_, err := ioctlPtr(vm.fd, kvmSetPIT2, &p)
	return err
}

// Clock returns the VM's kvmclock (KVM_GET_CLOCK).
func (vm *VM) Clock() (ClockData, error) {
	var c ClockData
	_, err := ioctlPtr(vm.fd, kvmGetClock, &c)
	return c, err
}

// SetClock sets the VM's kvmclock (KVM_SET_CLOCK).
func (vm *VM) SetClock(c ClockData) error {
	_, err := ioctlPtr(vm.fd, kvmSetClock, &c)
	return err
}

// CreateVCPU creates vCPU id and maps its kvm_run region.
//
// KVM binds a vCPU to the thread that runs it; pyro creates and runs each
// vCPU on one goroutine that has called runtime.LockOSThread and never
// unlocks it. CreateVCPU does not lock the thread itself: the caller owns
// that goroutine.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	r, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, err
	}
	fd := int(r)
	// The XSAVE area's size is fixed for the vCPU's life: it follows the
	// guest's XSAVE permissions, which a process sets before creating
	// vCPUs.
	xsaveSize, err := vm.CheckExtension(CapXSave2)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	run, err := unix.Mmap(fd, 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, run: run, tid: unix.Gettid(), xsaveSize: max(xsaveSize, sizeofXSave)}, nil
}
