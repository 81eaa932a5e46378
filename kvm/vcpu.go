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
	// xsaveSize is the size of this vCPU's kvm_xsave region:
	// KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on its VM, at least 4096.
	xsaveSize int
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

// maxIOMSRs is how many MSRs one KVM_GET_MSRS or KVM_SET_MSRS may carry:
// KVM answers E2BIG from MAX_IO_MSRS (256) entries on.
const maxIOMSRs = 255

// SetMSRs writes msrs, in batches KVM accepts. KVM stops at the first MSR
// it refuses; the error names it.
func (v *VCPU) SetMSRs(msrs []MSR) error {
	for done := 0; done < len(msrs); {
		batch := msrs[done:min(len(msrs), done+maxIOMSRs)]
		n, err := ioctlBytes(v.fd, kvmSetMSRs, encodeMSRs(batch))
		if err != nil {
			return err
		}
		if int(n) > len(batch) {
			return fmt.Errorf("KVM_SET_MSRS: KVM reports %d MSRs set of %d", n, len(batch))
		}
		if int(n) != len(batch) {
			return fmt.Errorf("KVM_SET_MSRS: KVM refused MSR %#x (set %d of %d)", batch[n].Index, done+int(n), len(msrs))
		}
		done += len(batch)
	}
	return nil
}

// MSRs reads the MSRs whose Index fields are set, filling in Data.
func (v *VCPU) MSRs(msrs []MSR) error {
	for done := 0; done < len(msrs); {
		batch := msrs[done:min(len(msrs), done+maxIOMSRs)]
		n, err := v.getMSRs(batch)
		if err != nil {
			return err
		}
		if n != len(batch) {
			return fmt.Errorf("KVM_GET_MSRS: KVM refused MSR %#x (read %d of %d)", batch[n].Index, done+n, len(msrs))
		}
		done += len(batch)
	}
	return nil
}

// getMSRs reads up to maxIOMSRs MSRs into batch and returns how many KVM
// read: it stops at the first one it refuses.
func (v *VCPU) getMSRs(batch []MSR) (int, error) {
	buf := encodeMSRs(batch)
	n, err := ioctlBytes(v.fd, kvmGetMSRs, buf)
	if err != nil {
		return 0, err
	}
	if int(n) > len(batch) {
		return 0, fmt.Errorf("KVM_GET_MSRS: KVM reports %d MSRs read of %d", n, len(batch))
	}
	decodeMSRs(buf, batch, int(n))
	return int(n), nil
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

// SetMPState sets the vCPU's multiprocessing state (KVM_SET_MP_STATE).
func (v *VCPU) SetMPState(s uint32) error {
	_, err := ioctlPtr(v.fd, kvmSetMPState, &s)
	return err
}

// SetEvents sets the pending and injected exceptions, interrupts and NMIs
// (KVM_SET_VCPU_EVENTS), as Events returned them.
func (v *VCPU) SetEvents(e VCPUEvents) error {
	_, err := ioctlPtr(v.fd, kvmSetVCPUEvents, &e)
	return err
}

// XSave returns the vCPU's XSAVE area (x87, SSE, AVX and every other
// XSAVE-managed state) as struct kvm_xsave: 4096 bytes, or more where
// KVM_CAP_XSAVE2 says the guest's features need more (KVM_GET_XSAVE2).
func (v *VCPU) XSave() ([]byte, error) {
	if v.xsaveSize > sizeofXSave {
		buf := make([]byte, v.xsaveSize)
		_, err := ioctlBytes(v.fd, kvmGetXSave2, buf)
		return buf, err
	}
	buf := make([]byte, sizeofXSave)
	_, err := ioctlBytes(v.fd, kvmGetXSave, buf)
	return buf, err
}

// SetXSave loads an XSAVE area that XSave returned (KVM_SET_XSAVE). KVM
// reads as many bytes as KVM_CAP_XSAVE2 gives for this vCPU, so a shorter
// area is padded with zeros (components absent from its header's
// XSTATE_BV stay in their initial state).
func (v *VCPU) SetXSave(area []byte) error {
	if len(area) < sizeofXSave {
		return fmt.Errorf("KVM_SET_XSAVE: %d bytes, want at least %d", len(area), sizeofXSave)
	}
	buf := area
	if len(buf) < v.xsaveSize {
		buf = make([]byte, v.xsaveSize)
		copy(buf, area)
	}
	_, err := ioctlBytes(v.fd, kvmSetXSave, buf)
	return err
}

// XCRs returns the extended control registers (KVM_GET_XCRS).
func (v *VCPU) XCRs() (XCRs, error) {
	var x XCRs
	_, err := ioctlPtr(v.fd, kvmGetXCRs, &x)
	return x, err
}

// SetXCRs sets the extended control registers (KVM_SET_XCRS).
func (v *VCPU) SetXCRs(x XCRs) error {
	_, err := ioctlPtr(v.fd, kvmSetXCRs, &x)
	return err
}

// DebugRegs returns DR0-DR3, DR6 and DR7 (KVM_GET_DEBUGREGS).
func (v *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	_, err := ioctlPtr(v.fd, kvmGetDebugRegs, &d)
	return d, err
}

// SetDebugRegs sets DR0-DR3, DR6 and DR7 (KVM_SET_DEBUGREGS).
func (v *VCPU) SetDebugRegs(d DebugRegs) error {
	_, err := ioctlPtr(v.fd, kvmSetDebugRegs, &d)
	return err
}

// CPUID returns the CPUID table the guest reads (KVM_GET_CPUID2): the one
// SetCPUID set, with the bits KVM keeps current at run time (OSXSAVE,
// OSPKE, the APIC enable bit) as the guest last left them. It is empty
// before SetCPUID.
func (v *VCPU) CPUID() ([]CPUIDEntry, error) {
	buf := make([]byte, sizeofCPUID2+maxCPUIDEntries*sizeofCPUIDEntry2)
	binary.LittleEndian.PutUint32(buf, maxCPUIDEntries)
	if _, err := ioctlBytes(v.fd, kvmGetCPUID2, buf); err != nil {
		return nil, err
	}
	return decodeCPUID2(buf)
}

// KVMClockCtrl tells the guest, through its kvmclock page, that the host
// stopped it (KVM_KVMCLOCK_CTRL), so its soft-lockup watchdog does not
// count the pause. KVM answers EINVAL when the guest has not enabled
// kvmclock.
func (v *VCPU) KVMClockCtrl() error {
	_, err := ioctl(v.fd, kvmKVMClockCtrl, 0)
	return err
}

// CompletePendingIO finishes the port or MMIO access of the last exit
// without entering the guest again: a Run with immediate_exit set, which
// KVM ends with EINTR once it has stored the data of an IN or a load into
// the guest's registers and moved RIP past the instruction. Until then the
// guest's state is not consistent (KVM API, "KVM_RUN"), so a vCPU whose
// last Run returned anything but ExitIntr calls this before SaveState.
//
// It returns an Exit with Reason ExitIntr when the vCPU is consistent. An
// access KVM completes in pieces (a string I/O instruction, an MMIO access
// that spans pages) can end in one more port or MMIO exit instead: handle
// it as any exit, then call CompletePendingIO again. (immediate_exit stays
// set after such an exit, as after a Kick that lands between two Runs: a
// plain Run then returns ExitIntr at once. Clearing it could drop a Kick
// from another goroutine.)
func (v *VCPU) CompletePendingIO() (Exit, error) {
	v.run[runImmediateExit] = 1
	return v.Run()
}
