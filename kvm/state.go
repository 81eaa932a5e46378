package kvm

// Snapshots: everything KVM holds for a VM, read out of one VM and written
// into a fresh one.
//
// A snapshot is the guest's memory (the VMM's business) plus, here, one
// VCPUState per vCPU and one VMState. The order of the ioctls matters, and
// follows Firecracker's (src/vmm/src/vstate/vcpu/x86_64.rs), which follows
// QEMU's target/i386/kvm.c:
//   - save: KVM_GET_MP_STATE first, because it makes KVM accept pending
//     INIT/SIPI events into the LAPIC and vCPU state the later GETs read;
//     KVM_GET_VCPU_EVENTS last, since the GETs before it may still change
//     what is pending;
//   - restore: the TSC frequency and CPUID before anything they validate
//     (CR4 bits, XSAVE features, MSRs); MP state, registers, XSAVE and XCRs,
//     debug registers, then the LAPIC before the MSRs (the TSC deadline MSR
//     needs the restored timer), and the vCPU events last, so nothing after
//     them clears what they inject.

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"golang.org/x/sys/unix"
)

// VCPUState is everything KVM holds for one vCPU.
type VCPUState struct {
	ID      int
	CPUID   []CPUIDEntry // the table set with SetCPUID (read back with KVM_GET_CPUID2)
	TSCKHz  uint32
	Regs    Regs
	Sregs   Sregs
	XSave   []byte // kvm_xsave region (4096 bytes or the XSAVE2 size)
	XCRs    XCRs
	MSRs    []MSR
	LAPIC   LAPICState
	Events  VCPUEvents
	MPState uint32
	Debug   DebugRegs
}

// VMState is the VM-wide state KVM holds: the in-kernel interrupt
// controllers, the i8254 timer and the kvmclock.
type VMState struct {
	PICMaster, PICSlave, IOAPIC IRQChip
	PIT                         PITState2
	Clock                       ClockData
}

// SaveableMSRs returns the MSRs a snapshot must carry: the ones KVM saves
// and restores for a guest (KVM_GET_MSR_INDEX_LIST).
func (s *System) SaveableMSRs() ([]uint32, error) {
	return s.MSRIndexList()
}

// SaveState reads the state of the vCPU, with the MSRs listed in msrs
// (normally SaveableMSRs). An MSR that KVM refuses to read is left out:
// the index list names some that not every host or guest configuration
// can read.
//
// It must run on the vCPU's thread, while the vCPU is out of the guest
// and its last exit complete: after a Run that returned ExitIntr, or after
// CompletePendingIO. Pyro always has an in-kernel irqchip; SaveState
// needs one.
func (v *VCPU) SaveState(msrs []uint32) (*VCPUState, error) {
	s := &VCPUState{ID: v.id}
	var err error
	step := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("save vCPU %d: %s: %w", v.id, name, e)
			}
		}
	}
	step("MP state", func() (e error) { s.MPState, e = v.MPState(); return })
	step("registers", func() (e error) { s.Regs, e = v.Regs(); return })
	step("special registers", func() (e error) { s.Sregs, e = v.Sregs(); return })
	step("XSAVE area", func() (e error) { s.XSave, e = v.XSave(); return })
	step("XCRs", func() (e error) { s.XCRs, e = v.XCRs(); return })
	step("debug registers", func() (e error) { s.Debug, e = v.DebugRegs(); return })
	step("LAPIC", func() (e error) { s.LAPIC, e = v.LAPIC(); return })
	step("TSC frequency", func() (e error) { s.TSCKHz, e = v.TSCKHz(); return })
	step("CPUID", func() (e error) { s.CPUID, e = v.CPUID(); return })
	step("MSRs", func() (e error) { s.MSRs, e = v.readableMSRs(msrs); return })
	step("vCPU events", func() (e error) { s.Events, e = v.Events(); return })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// readableMSRs reads the MSRs in indices that KVM lets it read, in order,
// and drops the others.
func (v *VCPU) readableMSRs(indices []uint32) ([]MSR, error) {
	out := make([]MSR, 0, len(indices))
	for len(indices) > 0 {
		batch := make([]MSR, min(len(indices), maxIOMSRs))
		for i := range batch {
			batch[i].Index = indices[i]
		}
		n, err := v.getMSRs(batch)
		if err != nil {
			return nil, err
		}
		out = append(out, batch[:n]...)
		if n < len(batch) {
			n++ // KVM stopped at indices[n]: skip it
		}
		indices = indices[n:]
	}
	return out, nil
}

// cr4OSXSAVE is CR4 bit 18: the OS has enabled XSAVE and XCR0.
const cr4OSXSAVE = 1 << 18

// tscKHzTolerance is how far (in parts per million) the saved TSC
// frequency may be from this vCPU's before RestoreState sets it: hosts
// calibrate their TSC anew at each boot, and a frequency KVM cannot scale
// to is an error, so a difference within calibration noise is left alone
// (QEMU's and Firecracker's 250 ppm).
const tscKHzTolerance = 250

// RestoreState loads s into the vCPU, which must be freshly created (no
// Run yet, no CPUID set) and have the ID s was saved from. It runs on the
// vCPU's thread. Any error names the step that failed.
func (v *VCPU) RestoreState(s *VCPUState) error { return v.restoreState(s, false) }

// ReloadState loads s, a state this vCPU's VM saved (or was restored
// from), into the vCPU after it has run: a VM rewound in place. It is
// RestoreState but for the TSC frequency and the CPUID table, which stay
// as they are: they are the ones s was saved with. KVM allows setting the
// table after KVM_RUN only to what it holds already, and refused the
// table read back from a booted vCPU (KVM_SET_CPUID2: EINVAL) in the
// nested harness.
func (v *VCPU) ReloadState(s *VCPUState) error { return v.restoreState(s, true) }

func (v *VCPU) restoreState(s *VCPUState, reload bool) error {
	if s.ID != v.id {
		return fmt.Errorf("restore vCPU %d: the state is vCPU %d's", v.id, s.ID)
	}
	var err error
	step := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("restore vCPU %d: %s: %w", v.id, name, e)
			}
		}
	}
	step("TSC frequency", func() error {
		if s.TSCKHz == 0 || reload {
			return nil
		}
		cur, err := v.TSCKHz()
		if err != nil {
			return err
		}
		diff := max(cur, s.TSCKHz) - min(cur, s.TSCKHz)
		if uint64(diff)*1_000_000 <= uint64(s.TSCKHz)*tscKHzTolerance {
			return nil
		}
		return v.SetTSCKHz(s.TSCKHz)
	})
	step("CPUID", func() error {
		if len(s.CPUID) == 0 || reload {
			return nil // the saved vCPU never had a table set, or it has its own
		}
		return v.SetCPUID(s.CPUID)
	})
	step("MP state", func() error { return v.SetMPState(s.MPState) })
	step("registers", func() error { return v.SetRegs(s.Regs) })
	// The XSAVE area and XCR0 before the special registers (CR4), as
	// QEMU orders them. (Guests that resumed with their vector state
	// unusable, #UD on AVX2 or "Bad FPU state detected", had lost XCR0
	// at the save, in ioctlPtr; not to this order.)
	step("XSAVE area", func() error { return v.SetXSave(s.XSave) })
	step("XCRs", func() error {
		if s.XCRs.NrXCRs == 0 {
			if s.Sregs.CR4&cr4OSXSAVE != 0 {
				// The guest had XSAVE on, so XCR0 was there to
				// save: without it the guest would resume with
				// only x87 state enabled and die at its first
				// vector instruction. (pyro before the fix in
				// ioctlPtr lost it now and then.)
				return errors.New("the saved state has no XCR0 though the guest had XSAVE enabled (CR4.OSXSAVE): the snapshot is incomplete")
			}
			return nil // saved on a host without XSAVE
		}
		return v.SetXCRs(s.XCRs)
	})
	step("special registers", func() error { return v.SetSregs(s.Sregs) })
	step("debug registers", func() error { return v.SetDebugRegs(s.Debug) })
	step("LAPIC", func() error { return v.SetLAPIC(s.LAPIC) })
	step("MSRs", func() error { return v.SetMSRs(s.MSRs) })
	step("vCPU events", func() error { return v.SetEvents(s.Events) })
	step("kvmclock stop notice", func() error {
		if err := v.KVMClockCtrl(); err != nil && !errors.Is(err, unix.EINVAL) {
			return err // EINVAL: the guest has no kvmclock to tell
		}
		return nil
	})
	return err
}

// SaveState reads the VM-wide state: both PICs, the IOAPIC, the PIT and
// the kvmclock. Save it after every vCPU has stopped.
func (vm *VM) SaveState() (*VMState, error) {
	s := &VMState{}
	var err error
	step := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("save VM: %s: %w", name, e)
			}
		}
	}
	step("PIC master", func() (e error) { s.PICMaster, e = vm.IRQChip(IRQChipPICMaster); return })
	step("PIC slave", func() (e error) { s.PICSlave, e = vm.IRQChip(IRQChipPICSlave); return })
	step("IOAPIC", func() (e error) { s.IOAPIC, e = vm.IRQChip(IRQChipIOAPIC); return })
	step("PIT", func() (e error) { s.PIT, e = vm.PIT2(); return })
	step("kvmclock", func() (e error) { s.Clock, e = vm.Clock(); return })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// RestoreState loads s into a VM that has its irqchip and PIT
// (CreateIRQChip, CreatePIT2): the PIT, the three interrupt controllers,
// then the kvmclock.
//
// The clock resumes at the saved value, as the vCPUs' TSCs do (their MSRs
// are restored): the guest's monotonic clock goes on from where it was,
// consistent with its TSC, as if no time had passed (as Firecracker does).
// Advancing it by the real time elapsed (KVM's ClockRealtime) would leave
// the TSC behind: the guest's clocksource watchdog then marks the TSC
// unstable, and every timer due in the gap fires at once. The guest's
// wall clock is set by its agent after the restore instead.
func (vm *VM) RestoreState(s *VMState) error {
	var err error
	step := func(name string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = fmt.Errorf("restore VM: %s: %w", name, e)
			}
		}
	}
	step("PIT", func() error { return vm.SetPIT2(s.PIT) })
	for _, c := range []struct {
		name string
		id   uint32
		chip IRQChip
	}{
		{"PIC master", IRQChipPICMaster, s.PICMaster},
		{"PIC slave", IRQChipPICSlave, s.PICSlave},
		{"IOAPIC", IRQChipIOAPIC, s.IOAPIC},
	} {
		step(c.name, func() error {
			if c.chip.ChipID != c.id {
				return fmt.Errorf("state is for chip %d, want %d", c.chip.ChipID, c.id)
			}
			return vm.SetIRQChip(c.chip)
		})
	}
	step("kvmclock", func() error {
		c := s.Clock
		c.Flags = 0
		return vm.SetClock(c)
	})
	return err
}

// CPUID leaves and registers CPUIDCompatible compares, and the bits in them
// that are not host features: bits the guest sets at run time (OSXSAVE
// mirrors CR4.OSXSAVE, OSPKE mirrors CR4.PKE), bits the VMM sets whatever
// the host (hypervisor, HTT for a multi-vCPU topology), and the TSC-deadline
// timer, which KVM emulates but (before Linux 6.14) reported only through
// KVM_CAP_TSC_DEADLINE_TIMER.
var cpuidFeatureRegs = []struct {
	leaf, subleaf uint32
	reg           string
	notFeatures   uint32
}{
	{0x1, 0, "ECX", 1<<24 | 1<<27 | 1<<31}, // TSC-deadline, OSXSAVE, hypervisor
	{0x1, 0, "EDX", 1 << 28},               // HTT
	{0x7, 0, "EBX", 0},
	{0x7, 0, "ECX", 1 << 4}, // OSPKE
	{0x7, 0, "EDX", 0},
	{0xd, 1, "EAX", 0},
	{0x80000001, 0, "ECX", 0},
	{0x80000001, 0, "EDX", 0},
}

// CPUIDCompatible says whether a guest that ran with saved can run on a
// host whose KVM_GET_SUPPORTED_CPUID is supported: same vendor string, and
// every feature bit of leaves 1 (ECX,EDX), 7.0 (EBX,ECX,EDX), 0xd.1 (EAX)
// and 0x80000001 (ECX,EDX) set in saved is set in supported; the error
// names the leaf, register and missing bits. Bits that describe the VM
// rather than the host (see cpuidFeatureRegs) are not compared.
func CPUIDCompatible(saved, supported []CPUIDEntry) error {
	sv, ok := cpuidLeaf(saved, 0, 0)
	if !ok {
		return errors.New("CPUID: the saved table has no leaf 0 (vendor)")
	}
	hv, ok := cpuidLeaf(supported, 0, 0)
	if !ok {
		return errors.New("CPUID: this host's table has no leaf 0 (vendor)")
	}
	if a, b := cpuidVendor(sv), cpuidVendor(hv); a != b {
		return fmt.Errorf("CPUID vendor: the guest ran on %q, this host is %q", a, b)
	}
	var missing []string
	for _, r := range cpuidFeatureRegs {
		s, ok := cpuidLeaf(saved, r.leaf, r.subleaf)
		if !ok {
			continue // nothing required
		}
		h, _ := cpuidLeaf(supported, r.leaf, r.subleaf) // absent: no bits
		want := cpuidReg(s, r.reg) &^ r.notFeatures
		if lack := want &^ cpuidReg(h, r.reg); lack != 0 {
			missing = append(missing, fmt.Sprintf("leaf %#x.%d %s lacks %#08x (bits %s)",
				r.leaf, r.subleaf, r.reg, lack, bitList(lack)))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("CPUID: this host lacks features the guest ran with: %s", strings.Join(missing, "; "))
	}
	return nil
}

// cpuidLeaf finds leaf.subleaf in t. Failing an exact match, an entry for
// leaf whose subleaf does not matter (no CPUIDFlagSignificantIndex)
// answers for every subleaf.
func cpuidLeaf(t []CPUIDEntry, leaf, subleaf uint32) (CPUIDEntry, bool) {
	for _, e := range t {
		if e.Function == leaf && e.Index == subleaf {
			return e, true
		}
	}
	for _, e := range t {
		if e.Function == leaf && e.Flags&CPUIDFlagSignificantIndex == 0 {
			return e, true
		}
	}
	return CPUIDEntry{}, false
}

func cpuidReg(e CPUIDEntry, reg string) uint32 {
	switch reg {
	case "EAX":
		return e.EAX
	case "EBX":
		return e.EBX
	case "ECX":
		return e.ECX
	}
	return e.EDX
}

// cpuidVendor is leaf 0's vendor string: EBX, EDX, ECX.
func cpuidVendor(e CPUIDEntry) string {
	var b [12]byte
	for i, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(r), byte(r>>8), byte(r>>16), byte(r>>24)
	}
	return string(b[:])
}

// bitList names the set bits of x: "3,17".
func bitList(x uint32) string {
	var out []string
	for x != 0 {
		b := bits.TrailingZeros32(x)
		out = append(out, fmt.Sprint(b))
		x &^= 1 << b
	}
	return strings.Join(out, ",")
}
