package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/vmm/memory"
	"github.com/pyro-mcp/pyro/vmm/snapshot"
)

// A memory snapshot is a directory with two files: StateFile, the
// versioned machine state (package vmm/snapshot: every vCPU, the in-kernel
// irqchip, PIT and clock, the serial port and each virtio transport with
// its device), and MemoryFile, the guest's RAM as a sparse image. Save
// writes the memory first and the state last, so a directory with a state
// file is a complete snapshot.
const (
	StateFile  = "state"
	MemoryFile = "memory"
)

// pauseTimeout bounds the wait for every vCPU to leave the guest after a
// kick. A kicked vCPU leaves at once; the bound is for a vCPU thread stuck
// in a device handler, which would otherwise hold Pause for ever.
const pauseTimeout = 10 * time.Second

// pauseState is one Pause: each vCPU marks itself parked on parked, then
// waits on its thread for work (onThread) until resume is closed.
type pauseState struct {
	parked sync.WaitGroup
	resume chan struct{}
}

// ErrNotRunning is returned by Pause on a machine that is not running.
var ErrNotRunning = errors.New("vmm: the VM is not running")

// Pause stops the guest at an instruction boundary: every vCPU leaves the
// guest and parks on its own thread (with any port or MMIO access it was
// in completed), then every virtio device stops using its queues. The
// guest's memory and state then hold still until Resume.
func (m *Machine) Pause() error {
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	if m.paused {
		return nil
	}
	if !m.ran || m.stopping.Load() {
		return ErrNotRunning
	}
	p := &pauseState{resume: make(chan struct{})}
	p.parked.Add(len(m.vcpus))
	m.pause.Store(p)
	for _, v := range m.vcpus {
		v.Kick()
	}
	all := make(chan struct{})
	go func() { p.parked.Wait(); close(all) }()
	select {
	case <-all:
	case <-m.stopped:
		m.unpark(p)
		return ErrNotRunning
	case <-time.After(pauseTimeout):
		m.unpark(p)
		return fmt.Errorf("vmm: pause: a vCPU did not leave the guest within %v", pauseTimeout)
	}
	for i, s := range m.virtio {
		if err := s.transport.Pause(); err != nil {
			for _, r := range m.virtio[:i] {
				r.transport.Resume()
			}
			m.unpark(p)
			return fmt.Errorf("vmm: pause virtio device %d: %w", i, err)
		}
	}
	m.paused = true
	return nil
}

// Resume lets a paused guest run on: devices first, then the vCPUs.
func (m *Machine) Resume() error {
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	if !m.paused {
		return nil
	}
	var errs []error
	for i, s := range m.virtio {
		if err := s.transport.Resume(); err != nil {
			errs = append(errs, fmt.Errorf("virtio device %d: %w", i, err))
		}
	}
	m.unpark(m.pause.Load())
	m.paused = false
	return errors.Join(errs...)
}

// unpark releases the vCPUs parked by p.
func (m *Machine) unpark(p *pauseState) {
	m.pause.Store(nil)
	close(p.resume)
}

// park holds vCPU v on its thread for pause p, running the work sent on
// its onThread channel, until Resume or until the VM stops.
func (m *Machine) park(v *kvm.VCPU, p *pauseState) {
	p.parked.Done()
	for {
		select {
		case f := <-m.onThread[v.ID()]:
			f(v)
		case <-p.resume:
			return
		case <-m.stopped:
			return
		}
	}
}

// onVCPU runs f on parked vCPU id's thread and returns its error.
func (m *Machine) onVCPU(id int, f func(*kvm.VCPU) error) error {
	done := make(chan error, 1)
	select {
	case m.onThread[id] <- func(v *kvm.VCPU) { done <- f(v) }:
		return <-done
	case <-m.stopped:
		return ErrNotRunning
	}
}

// SnapshotStats describes a Snapshot.
type SnapshotStats struct {
	Memory     memory.SaveStats
	StateBytes int
	Took       time.Duration
}

// Snapshot writes the paused machine to dir (which must exist and hold no
// snapshot): its RAM to MemoryFile, then its state to StateFile. note is
// kept in the state file. The machine stays paused; Resume it, or Close it.
func (m *Machine) Snapshot(dir, note string) (SnapshotStats, error) {
	begin := time.Now()
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	if !m.paused {
		return SnapshotStats{}, errors.New("vmm: snapshot of a VM that is not paused")
	}
	st := &snapshot.State{
		Arch:    "x86_64",
		VCPUs:   m.cfg.VCPUs,
		MemSize: m.mem.Size(),
		MemHole: mmioHoleStart,
		Created: time.Now().UTC(),
		Note:    note,
	}
	vs, err := m.vm.SaveState()
	if err != nil {
		return SnapshotStats{}, fmt.Errorf("VM state: %w", err)
	}
	if st.VM, err = vs.MarshalBinary(); err != nil {
		return SnapshotStats{}, err
	}
	msrs, err := m.sys.SaveableMSRs()
	if err != nil {
		return SnapshotStats{}, err
	}
	// KVM's list leaves out MSRs pyro sets at boot itself (bootMSRs):
	// the MTRR default type among them, without which a restored Linux
	// would map its RAM uncached.
	for _, b := range bootMSRs() {
		if !slices.Contains(msrs, b.Index) {
			msrs = append(msrs, b.Index)
		}
	}
	for id := range m.vcpus {
		var blob []byte
		err := m.onVCPU(id, func(v *kvm.VCPU) error {
			s, err := v.SaveState(msrs)
			if err != nil {
				return err
			}
			blob, err = s.MarshalBinary()
			return err
		})
		if err != nil {
			return SnapshotStats{}, fmt.Errorf("vCPU %d state: %w", id, err)
		}
		st.CPUs = append(st.CPUs, blob)
	}
	st.Serial = m.serial.SaveState()
	for i, s := range m.virtio {
		ts, err := s.transport.SaveState()
		if err != nil {
			return SnapshotStats{}, fmt.Errorf("virtio device %d: %w", i, err)
		}
		blob, err := ts.MarshalBinary()
		if err != nil {
			return SnapshotStats{}, fmt.Errorf("virtio device %d: %w", i, err)
		}
		st.Devices = append(st.Devices, snapshot.Device{ID: uint32(ts.DeviceID), Transport: blob})
	}
	stats := SnapshotStats{}
	memPath := filepath.Join(dir, MemoryFile)
	if stats.Memory, err = m.mem.Save(memPath); err != nil {
		return SnapshotStats{}, fmt.Errorf("guest memory: %w", err)
	}
	statePath := filepath.Join(dir, StateFile)
	if err := snapshot.Write(statePath, st); err != nil {
		os.Remove(memPath)
		return SnapshotStats{}, err
	}
	if fi, err := os.Stat(statePath); err == nil {
		stats.StateBytes = int(fi.Size())
	}
	// The guest runs on from the image just written, copy-on-write, as a
	// guest restored from it would: its RAM is shared with the image's
	// page cache instead of held twice, and Rewind can take it back to
	// this snapshot in place. (Its pages are then faulted in again, once
	// each, as it touches them.)
	if err := m.mem.Remap(memPath); err != nil {
		if errors.Is(err, memory.ErrLost) {
			m.stop(Result{Reason: StopCrash, Detail: "after its snapshot: " + err.Error()})
		} else if m.cfg.Logger != nil {
			m.cfg.Logger.Warn("the guest runs on without its snapshot's image under it", "err", err)
		}
	}
	stats.Took = time.Since(begin)
	return stats, nil
}

// restoreState is a snapshot decoded in full before anything is created,
// so that a bad one fails before it can be half-restored.
type restoreState struct {
	vm     *kvm.VMState
	cpus   []*kvm.VCPUState
	serial []byte
	devs   []*virtio.TransportState
}

// SnapshotError is a snapshot this host cannot restore: damaged, from
// another format version, for another VM shape or CPU. Its message says
// why.
type SnapshotError struct {
	Dir string
	Err error
}

func (e *SnapshotError) Error() string { return fmt.Sprintf("snapshot %s: %v", e.Dir, e.Err) }
func (e *SnapshotError) Unwrap() error { return e.Err }

// ReadSnapshot decodes and checks the snapshot in dir against cfg's
// devices without touching KVM. The VM shape (vCPUs, memory) comes from
// the snapshot; cfg.VCPUs and cfg.MemMiB, when set, must agree with it.
func ReadSnapshot(cfg Config, dir string) (*snapshot.State, error) {
	st, _, err := decodeSnapshot(cfg, dir)
	return st, err
}

func decodeSnapshot(cfg Config, dir string) (*snapshot.State, *restoreState, error) {
	bad := func(format string, args ...any) error {
		return &SnapshotError{Dir: dir, Err: fmt.Errorf(format, args...)}
	}
	st, err := snapshot.Read(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, nil, &SnapshotError{Dir: dir, Err: err}
	}
	if st.Arch != "x86_64" {
		return nil, nil, bad("taken on %s, this VMM runs x86_64", st.Arch)
	}
	if st.MemHole != mmioHoleStart {
		return nil, nil, bad("memory layout with the MMIO hole at %#x, this VMM puts it at %#x", st.MemHole, mmioHoleStart)
	}
	if cfg.VCPUs != 0 && cfg.VCPUs != st.VCPUs {
		return nil, nil, bad("taken with %d vCPUs, asked for %d", st.VCPUs, cfg.VCPUs)
	}
	if cfg.MemMiB != 0 && uint64(cfg.MemMiB)<<20 != st.MemSize {
		return nil, nil, bad("taken with %d MiB of memory, asked for %d", st.MemSize>>20, cfg.MemMiB)
	}
	if len(cfg.Devices) != len(st.Devices) {
		return nil, nil, bad("taken with %d virtio devices, this VM has %d", len(st.Devices), len(cfg.Devices))
	}
	fi, err := os.Stat(filepath.Join(dir, MemoryFile))
	if err != nil {
		return nil, nil, bad("memory image: %v", unwrapPath(err))
	}
	if uint64(fi.Size()) != st.MemSize {
		return nil, nil, bad("memory image is %d bytes, the state says %d", fi.Size(), st.MemSize)
	}
	rs := &restoreState{vm: new(kvm.VMState), serial: st.Serial}
	if err := rs.vm.UnmarshalBinary(st.VM); err != nil {
		return nil, nil, bad("VM state: %v", err)
	}
	for i, b := range st.CPUs {
		c := new(kvm.VCPUState)
		if err := c.UnmarshalBinary(b); err != nil {
			return nil, nil, bad("vCPU %d state: %v", i, err)
		}
		rs.cpus = append(rs.cpus, c)
	}
	for i, d := range st.Devices {
		ts := new(virtio.TransportState)
		if err := ts.UnmarshalBinary(d.Transport); err != nil {
			return nil, nil, bad("virtio device %d: %v", i, err)
		}
		if got := cfg.Devices[i].ID(); ts.DeviceID != got || d.ID != uint32(got) {
			return nil, nil, bad("virtio device %d was type %d, this VM has type %d there", i, ts.DeviceID, got)
		}
		rs.devs = append(rs.devs, ts)
	}
	return st, rs, nil
}

// Restore builds a machine from the snapshot in dir instead of booting a
// kernel: the guest resumes where it was paused. cfg supplies the devices
// (fresh ones of the same types, in the same order, over the same disk
// contents) and the console; Kernel, Initrd and Cmdline are ignored. The
// memory image is mapped copy-on-write, so restores of one snapshot share
// the pages none of them writes. Either the whole snapshot is restored or
// nothing is: a snapshot that does not fit this host or cfg gives a
// *SnapshotError saying why.
func Restore(cfg Config, dir string) (m *Machine, err error) {
	st, rs, err := decodeSnapshot(cfg, dir)
	if err != nil {
		return nil, err
	}
	cfg.VCPUs, cfg.MemMiB = st.VCPUs, int(st.MemSize>>20)
	if cfg.VCPUs < 1 || cfg.VCPUs > MaxVCPUs {
		return nil, &SnapshotError{Dir: dir, Err: fmt.Errorf("%d vCPUs", cfg.VCPUs)}
	}
	m, err = newMachine(cfg, rs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	if err := kvm.CPUIDCompatible(rs.cpus[0].CPUID, supported); err != nil {
		return nil, &SnapshotError{Dir: dir, Err: fmt.Errorf("this host's CPU cannot run it: %w", err)}
	}
	if m.mem, err = memory.Open(memory.Layout{Size: st.MemSize, Hole: st.MemHole}, filepath.Join(dir, MemoryFile)); err != nil {
		return nil, &SnapshotError{Dir: dir, Err: err}
	}
	// Each restore is a new generation of the guest: a guest kernel with
	// a vmgenid driver reseeds its random number generator when Run
	// announces it. (Debian 12's cloud kernel has none; the agent's
	// restored op reseeds it anyway.)
	if _, err := writeGenID(m.mem); err != nil {
		return nil, err
	}
	m.genIDNew = true
	if err := m.assemble(func() error { return m.vm.RestoreState(rs.vm) }); err != nil {
		return nil, err
	}
	for i, s := range m.virtio {
		if err := s.transport.Resume(); err != nil {
			return nil, fmt.Errorf("virtio device %d: %w", i, err)
		}
	}
	m.restoring = nil // the decoded state is not needed past here
	return m, nil
}

// restoreDevices loads each virtio transport's saved state (addVirtio has
// just created them).
func (m *Machine) restoreDevices() error {
	for i, s := range m.virtio {
		if err := s.transport.RestoreState(m.restoring.devs[i]); err != nil {
			return fmt.Errorf("virtio device %d: %w", i, err)
		}
	}
	return nil
}

// ErrNotSameImage is returned by Rewind for a snapshot whose memory image
// is not the one the machine's RAM is mapped on.
var ErrNotSameImage = errors.New("vmm: the machine's memory is not mapped on that snapshot's image")

// CanRewind reports whether Rewind can take the machine back to the
// snapshot in dir: its RAM is mapped on that snapshot's memory image (the
// machine saved it, or was restored or rewound from it, last).
func (m *Machine) CanRewind(dir string) bool {
	return m.mem != nil && m.mem.SameImage(filepath.Join(dir, MemoryFile))
}

// RewindStats describes a Rewind.
type RewindStats struct {
	Memory memory.RewindStats
	Took   time.Duration
}

// Rewind takes the paused machine back to the snapshot in dir without
// building a new one, as Restore would have left it: the RAM pages the
// guest wrote since are read back from the image (the others already read
// as it), then the VM, each vCPU, the serial port and each virtio
// transport (reset first: a vsock device drops its streams) load their
// saved state, and the guest gets a new generation ID. The pages stay
// mapped where the hypervisor's page tables point, so the resumed guest
// does not fault on each page it touches again, as a restored one does.
// The machine stays paused; Resume runs the rewound guest.
//
// The snapshot is checked before anything changes: one that is damaged,
// for another shape of VM, or whose image the RAM is not mapped on
// (ErrNotSameImage; see CanRewind) leaves the machine as it was. A
// failure after that leaves it part rewound: Rewind stops it, and the
// caller closes it.
func (m *Machine) Rewind(dir string) (RewindStats, error) {
	begin := time.Now()
	m.pauseMu.Lock()
	defer m.pauseMu.Unlock()
	if !m.paused {
		return RewindStats{}, errors.New("vmm: rewind of a VM that is not paused")
	}
	if !m.CanRewind(dir) {
		return RewindStats{}, ErrNotSameImage
	}
	_, rs, err := decodeSnapshot(m.cfg, dir)
	if err != nil {
		return RewindStats{}, err
	}
	if len(rs.cpus) != len(m.vcpus) {
		return RewindStats{}, &SnapshotError{Dir: dir, Err: fmt.Errorf("%d vCPUs saved, the machine has %d", len(rs.cpus), len(m.vcpus))}
	}
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return RewindStats{}, err
	}
	if err := kvm.CPUIDCompatible(rs.cpus[0].CPUID, supported); err != nil {
		return RewindStats{}, &SnapshotError{Dir: dir, Err: fmt.Errorf("this host's CPU cannot run it: %w", err)}
	}
	// From here on a failure leaves the machine part rewound.
	fail := func(what string, err error) (RewindStats, error) {
		err = fmt.Errorf("vmm: rewind: %s: %w", what, err)
		m.stop(Result{Reason: StopCrash, Detail: err.Error()})
		return RewindStats{}, err
	}
	var stats RewindStats
	if stats.Memory, err = m.mem.Rewind(); err != nil {
		return fail("guest memory", err)
	}
	if _, err := writeGenID(m.mem); err != nil {
		return fail("generation ID", err)
	}
	if err := m.vm.RestoreState(rs.vm); err != nil {
		return fail("VM state", err)
	}
	for id := range m.vcpus {
		if err := m.onVCPU(id, func(v *kvm.VCPU) error { return v.ReloadState(rs.cpus[id]) }); err != nil {
			return fail(fmt.Sprintf("vCPU %d", id), err)
		}
	}
	if err := m.serial.RestoreState(rs.serial); err != nil {
		return fail("serial port", err)
	}
	for i, s := range m.virtio {
		if err := s.transport.Reload(rs.devs[i]); err != nil {
			return fail(fmt.Sprintf("virtio device %d", i), err)
		}
	}
	// After the irqchip's state, which would otherwise drop it.
	if err := notifyGenID(m.vm); err != nil {
		return fail("generation ID", err)
	}
	stats.Took = time.Since(begin)
	return stats, nil
}
