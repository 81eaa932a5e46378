package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its fd and its shared kvm_run region. All methods
// except Kick must be called from the OS thread that created it.
type VCPU struct {
	fd  int
	id  int
	tid int    // OS thread that created (and runs) the vCPU
	run []byte // mmap of struct kvm_run, read at named offsets
}

// ID is the vCPU index passed to CreateVCPU (also its initial APIC ID).
func (v *VCPU) ID() int { return v.id }

// Close unmaps kvm_run and closes the vCPU fd.
func (v *VCPU) Close() error {
	err := unix.Munmap(v.run)
	if cerr := unix.Close(v.fd); err == nil {
		err = cerr
	}
	return err
}

// Run enters the guest until it exits to user space, and returns why.
// A Kick from another thread makes Run return an Exit with Reason ExitIntr.
func (v *VCPU) Run() (Exit, error) {
	_, err := ioctl(v.fd, kvmRun, 0)
	if err != nil {
		if IsInterrupted(err) {
			// Consumed: the next Run enters the guest, unless
			// another Kick comes first.
			v.run[runImmediateExit] = 0
			return Exit{Reason: ExitIntr, run: v.run}, nil
		}
		return Exit{}, err
	}
	return Exit{Reason: ExitReason(binary.LittleEndian.Uint32(v.run[runExitReason:])), run: v.run}, nil
}

// Kick makes the vCPU leave the guest: Run returns ExitIntr now if it is
// running, or at its next call. Safe to call from any goroutine.
func (v *VCPU) Kick() error {
	// immediate_exit makes KVM_RUN return EINTR at entry; the signal
	// interrupts a KVM_RUN already in progress. SIGURG is the Go runtime's
	// own preemption signal: its handler accepts spurious ones.
	v.run[runImmediateExit] = 1
	err := unix.Tgkill(unix.Getpid(), v.tid, unix.SIGURG)
	if errors.Is(err, unix.ESRCH) {
		return nil // the thread has already exited
	}
	return err
}

// Regs returns the general-purpose registers.
func (v *VCPU) Regs() (Regs, error) {
	var r Regs
	_, err := ioctlPtr(v.fd, kvmGetRegs, &r)
	return r, err
}

// SetRegs sets the general-purpose registers.
func (v *VCPU) SetRegs(r Regs) error {
	_, err := ioctlPtr(v.fd, kvmSetRegs, &r)
	return err
}

// Sregs returns the segment, control and descriptor-table registers.
func (v *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	_, err := ioctlPtr(v.fd, kvmGetSregs, &s)
	return s, err
}

// SetSregs sets the segment, control and descriptor-table registers.
func (v *VCPU) SetSregs(s Sregs) error {
	_, err := ioctlPtr(v.fd, kvmSetSregs, &s)
	return err
}

// SetFPU sets the x87/SSE state.
func (v *VCPU) SetFPU(f FPU) error {
	_, err := ioctlPtr(v.fd, kvmSetFPU, &f)
	return err
}

// FPU returns the x87/SSE state.
func (v *VCPU) FPU() (FPU, error) {
	var f FPU
	_, err := ioctlPtr(v.fd, kvmGetFPU, &f)
	return f, err
}

// SetCPUID sets the CPUID table the guest reads (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) == 0 || len(entries) > maxCPUIDEntries {
		return fmt.Errorf("KVM_SET_CPUID2: %d entries, want 1 to %d", len(entries), maxCPUIDEntries)
	}
	_, err := ioctlBytes(v.fd, kvmSetCPUID2, encodeCPUID2(entries))
	return err
}

// SetMSRs writes msrs. KVM stops at the first MSR it refuses; the error
// names it.
func (v *VCPU) SetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	n, err := ioctlBytes(v.fd, kvmSetMSRs, encodeMSRs(msrs))
	if err != nil {
		return err
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_SET_MSRS: KVM refused MSR %#x (set %d of %d)", msrs[n].Index, n, len(msrs))
	}
	return nil
}

// MSRs reads the MSRs whose Index fields are set, filling in Data.
func (v *VCPU) MSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	buf := encodeMSRs(msrs)
	n, err := ioctlBytes(v.fd, kvmGetMSRs, buf)
	if err != nil {
		return err
	}
	decodeMSRs(buf, msrs, int(n))
	if int(n) != len(msrs) {
		return fmt.Errorf("KVM_GET_MSRS: KVM refused MSR %#x (read %d of %d)", msrs[n].Index, n, len(msrs))
	}
	return nil
}

// LAPIC returns the local APIC register page.
func (v *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	_, err := ioctlPtr(v.fd, kvmGetLAPIC, &l)
	return l, err
}

// SetLAPIC sets the local APIC register page.
func (v *VCPU) SetLAPIC(l LAPICState) error {
	_, err := ioctlPtr(v.fd, kvmSetLAPIC, &l)
	return err
}

// TSCKHz returns the guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
func (v *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctl(v.fd, kvmGetTSCKHz, 0)
	return uint32(r), err
}

// SetTSCKHz sets the guest TSC frequency in kHz (KVM_SET_TSC_KHZ).
func (v *VCPU) SetTSCKHz(khz uint32) error {
	_, err := ioctl(v.fd, kvmSetTSCKHz, uintptr(khz))
	return err
}

// MPState returns the vCPU's multiprocessing state (KVM_MP_STATE_*).
func (v *VCPU) MPState() (uint32, error) {
	var s uint32
	_, err := ioctlPtr(v.fd, kvmGetMPState, &s)
	return s, err
}

// Events returns the pending and injected exceptions, interrupts and NMIs
// (KVM_GET_VCPU_EVENTS).
func (v *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	_, err := ioctlPtr(v.fd, kvmGetVCPUEvents, &e)
	return e, err
}
