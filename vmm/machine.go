// Package vmm assembles and runs a microVM on KVM: guest memory, vCPUs, the
// in-kernel interrupt controllers and timer, the legacy devices a Linux
// console needs, ACPI tables, and the Linux 64-bit boot protocol.
//
// It sits between kvm/ (the raw ioctls) and everything that wants a running
// guest: pyro run boots a kernel and an initrd with it directly, and the
// workspace layer adds virtio devices on top. Each vCPU runs on its own
// goroutine, locked to its OS thread before the vCPU is created and never
// unlocked; the VM stops as a whole, with one recorded reason, when the guest
// powers off or reboots, when a vCPU meets an exit it cannot handle, or when
// the caller's context ends.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/vmm/acpi"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// Config describes a VM to boot.
type Config struct {
	Kernel  string // path to a bzImage
	Initrd  string // path to an initramfs; optional
	Cmdline string // kernel command line; pyro prepends nothing
	VCPUs   int
	MemMiB  int
	// Console receives what the guest writes to its serial port (ttyS0).
	Console io.Writer
	// KVMDevice is the KVM device node; DevicePath when empty.
	KVMDevice string
	// Devices are virtio devices, each behind its own virtio-mmio
	// transport, described to the guest in the ACPI DSDT.
	Devices []virtio.Device
	// Logger receives the VMM's diagnostics (device protocol violations
	// and the like); nothing when nil.
	Logger *slog.Logger
}

// MaxVCPUs bounds Config.VCPUs: one MADT entry and one APIC ID byte each.
const MaxVCPUs = 254

// DefaultCmdline is a command line for a quiet serial-console microVM.
//
// reboot=acpi: on a hardware-reduced ACPI machine Linux would otherwise try
// EFI and then the BIOS reset vector, which hangs with no firmware.
const DefaultCmdline = "console=ttyS0 quiet reboot=acpi panic=-1 pci=off no_timer_check"

// StopReason says why a VM stopped.
type StopReason int

// Stop reasons.
const (
	StopPoweroff StopReason = iota + 1 // the guest powered off (ACPI S5)
	StopReboot                         // the guest asked to reboot (ACPI reset)
	StopCrash                          // triple fault, unhandled exit, or KVM error
	StopCanceled                       // the caller's context ended
)

func (r StopReason) String() string {
	switch r {
	case StopPoweroff:
		return "poweroff"
	case StopReboot:
		return "reboot"
	case StopCrash:
		return "crash"
	case StopCanceled:
		return "canceled"
	}
	return fmt.Sprintf("StopReason(%d)", int(r))
}

// Result is how a VM run ended.
type Result struct {
	Reason StopReason
	// Detail explains a crash: the exit, the vCPU, its registers.
	Detail string
	// ConsoleTail holds the last lines the guest printed.
	ConsoleTail []string
	// UnhandledAccesses counts port and MMIO accesses that hit no device.
	UnhandledAccesses uint64
}

// Machine is a VM ready to run: memory loaded, vCPUs created and configured.
type Machine struct {
	cfg     Config
	sys     *kvm.System
	vm      *kvm.VM
	mem     *memory.Guest
	pio     Bus
	mmio    Bus
	console *consoleLog
	serial  *Serial
	irqfds  []int
	virtio  []*virtioSlot

	vcpus  []*kvm.VCPU        // index = vCPU id; each used only by its own thread
	probes []chan chan string // index = vCPU id: DebugVCPUs's requests
	// onThread (index = vCPU id) carries work a parked vCPU runs on its
	// own thread: saving its state.
	onThread []chan func(*kvm.VCPU)
	// pause is set while the vCPUs are asked to park (Pause).
	pause   atomic.Pointer[pauseState]
	pauseMu sync.Mutex // serialises Pause, Resume and Snapshot
	paused  bool       // guarded by pauseMu
	// restoring holds a decoded snapshot while Restore builds the
	// machine; nil for a boot.
	restoring *restoreState
	// genIDNew: Restore gave the guest a new VM generation ID, which Run
	// announces (the GED's interrupt).
	genIDNew bool
	// probeMu orders DebugVCPUs's kicks before Close unmaps the vCPUs.
	probeMu     sync.Mutex
	vcpusClosed bool // guarded by probeMu
	start       chan struct{}
	abort       chan struct{}
	exited      sync.WaitGroup
	ran         bool
	closed      bool

	// stopping is set once, by the first stop; vCPU loops poll it.
	stopping atomic.Bool
	stopOnce sync.Once
	result   Result
	stopped  chan struct{}
}

// InputError is a problem with the caller's Config: a missing file, an image
// that is not a kernel, an impossible size. Its message says what to fix.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErr(format string, args ...any) error { return &InputError{fmt.Sprintf(format, args...)} }

// Validate checks cfg without touching KVM.
func (cfg *Config) Validate() error {
	if cfg.VCPUs < 1 || cfg.VCPUs > MaxVCPUs {
		return inputErr("--vcpus %d: choose 1 to %d", cfg.VCPUs, MaxVCPUs)
	}
	if cfg.MemMiB < MinMemMiB {
		return inputErr("--mem-mib %d: a Linux guest needs at least %d MiB", cfg.MemMiB, MinMemMiB)
	}
	if host := hostMemMiB(); host > 0 && uint64(cfg.MemMiB) > host {
		return inputErr("--mem-mib %d: more than this host's %d MiB of RAM", cfg.MemMiB, host)
	}
	if cfg.Kernel == "" {
		return inputErr("no kernel given: pass --kernel PATH to a bzImage (e.g. /boot/vmlinuz-*)")
	}
	if strings.IndexByte(cfg.Cmdline, 0) >= 0 {
		return inputErr("kernel command line contains a NUL byte")
	}
	return nil
}

// unwrapPath drops the operation and path from an *os.PathError, which the
// caller's message already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// hostMemMiB returns the host's RAM in MiB, or 0 if unknown.
func hostMemMiB() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit) >> 20
}

// New builds a VM from cfg: it loads the kernel and initrd, lays out the
// boot structures and ACPI tables, and creates and configures the vCPUs.
// Nothing runs until Run.
func New(cfg Config) (m *Machine, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	img, err := os.ReadFile(cfg.Kernel)
	if err != nil {
		return nil, inputErr("kernel %s: %v (pass --kernel PATH to a bzImage)", cfg.Kernel, unwrapPath(err))
	}
	kern, err := ParseBzImage(img)
	if err != nil {
		return nil, inputErr("kernel %s: %v", cfg.Kernel, err)
	}
	if kern.CmdlineSize > 0 && uint32(len(cfg.Cmdline)) >= min(kern.CmdlineSize, cmdlineMax) {
		return nil, inputErr("kernel command line is %d bytes; this kernel takes at most %d", len(cfg.Cmdline), min(kern.CmdlineSize, cmdlineMax)-1)
	}
	var initrd []byte
	if cfg.Initrd != "" {
		if initrd, err = os.ReadFile(cfg.Initrd); err != nil {
			return nil, inputErr("initrd %s: %v", cfg.Initrd, unwrapPath(err))
		}
	}
	m, err = newMachine(cfg, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	if m.mem, err = memory.New(memory.Layout{Size: uint64(cfg.MemMiB) << 20, Hole: mmioHoleStart}); err != nil {
		return nil, err
	}
	if err := m.assemble(func() error { return m.load(kern, initrd) }); err != nil {
		return nil, err
	}
	return m, nil
}

// newMachine opens KVM and creates the VM with its interrupt controllers
// and timer; restoring is nil for a boot. The caller closes m on error.
func newMachine(cfg Config, restoring *restoreState) (*Machine, error) {
	dev := cfg.KVMDevice
	if dev == "" {
		dev = kvm.DevicePath
	}
	sys, err := kvm.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("%w (run pyro kvm-check to see what this host lacks)", err)
	}
	m := &Machine{cfg: cfg, sys: sys, restoring: restoring, start: make(chan struct{}), abort: make(chan struct{}), stopped: make(chan struct{})}
	m.console = &consoleLog{out: cfg.Console}
	if m.vm, err = sys.CreateVM(); err != nil {
		m.Close()
		return nil, err
	}
	for _, step := range []func() error{
		func() error { return m.vm.SetTSSAddr(tssAddr) },
		func() error { return m.vm.SetIdentityMapAddr(identityMapAddr) },
		m.vm.CreateIRQChip,
		func() error { return m.vm.CreatePIT2(kvm.PITSpeakerDummy) },
	} {
		if err := step(); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// assemble maps m.mem into the VM, runs load (which fills memory for a
// boot, or restores the VM-wide state), wires the devices and creates the
// vCPUs.
func (m *Machine) assemble(load func() error) error {
	for i, r := range m.mem.Regions() {
		if err := m.vm.SetUserMemoryRegion(kvm.MemoryRegion{Slot: uint32(i), GuestAddr: r.GuestAddr, Memory: r.Host}); err != nil {
			return err
		}
	}
	if err := load(); err != nil {
		return err
	}
	if err := m.addLegacyDevices(); err != nil {
		return err
	}
	log := m.cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := m.addVirtio(m.cfg.Devices, log); err != nil {
		return err
	}
	if m.restoring != nil {
		if err := m.restoreDevices(); err != nil {
			return err
		}
	}
	return m.createVCPUs()
}

// acpiConfig describes the machine to the guest's ACPI tables.
func (m *Machine) acpiConfig() acpi.Config {
	return acpi.Config{
		NumCPUs:    m.cfg.VCPUs,
		IOAPICAddr: ioapicAddr,
		LAPICAddr:  lapicAddr,
		PowerPort:  powerPort,
		// With hardware-reduced ACPI Linux sets up no ISA interrupts of its
		// own: COM1 must be described for ttyS0 to get IRQ 4.
		COM1:       true,
		VirtioMMIO: virtioLayout(len(m.cfg.Devices)),
		VMGenID:    genIDConfig(),
	}
}

// load writes the boot structures, kernel, initrd and ACPI tables into guest
// memory.
func (m *Machine) load(k *Kernel, initrd []byte) error {
	tables, rsdp, err := acpi.Build(m.acpiConfig(), acpiAddr)
	if err != nil {
		return fmt.Errorf("ACPI tables: %w", err)
	}
	if acpiAddr+uint64(len(tables)) > acpiEnd {
		return fmt.Errorf("ACPI tables are %d bytes, more than the %d reserved for them", len(tables), acpiEnd-acpiAddr)
	}
	var initrdAddr uint64
	if len(initrd) > 0 {
		if initrdAddr, err = initrdPlacement(k, m.mem, uint64(len(initrd))); err != nil {
			return inputErr("%v", err)
		}
	}
	zp, err := bootParams(k, initrdAddr, uint64(len(initrd)), rsdp, e820Map(m.mem))
	if err != nil {
		return err
	}
	cmdline := append([]byte(m.cfg.Cmdline), 0)
	for _, w := range []struct {
		what string
		addr uint64
		data []byte
	}{
		{"GDT", gdtAddr, encodeGDT()},
		{"IDT", idtAddr, make([]byte, 8)},
		{"page tables", pml4Addr, pageTables()},
		{"command line", cmdlineAddr, cmdline},
		{"ACPI tables", acpiAddr, tables},
		{"zero page", zeroPageAddr, zp},
		{"kernel", kernelAddr, k.Payload},
		{"initrd", initrdAddr, initrd},
	} {
		if len(w.data) == 0 {
			continue
		}
		if err := m.mem.WriteAt(w.data, w.addr); err != nil {
			return inputErr("%s does not fit in guest RAM (%v): raise --mem-mib", w.what, err)
		}
	}
	if _, err := writeGenID(m.mem); err != nil {
		return err
	}
	return nil
}

const (
	com1Port = 0x3f8
	com1IRQ  = 4
)

// addLegacyDevices wires the serial console and the ACPI power port.
func (m *Machine) addLegacyDevices() error {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd for the serial interrupt: %w", err)
	}
	m.irqfds = append(m.irqfds, efd)
	if err := m.vm.IRQFD(efd, com1IRQ); err != nil {
		return err
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	m.serial = NewSerial(m.console, func() { unix.Write(efd, one) })
	if m.restoring != nil {
		if err := m.serial.RestoreState(m.restoring.serial); err != nil {
			return fmt.Errorf("serial port: %w", err)
		}
	}
	if err := m.pio.Add("serial", com1Port, 8, m.serial); err != nil {
		return err
	}
	power := &powerDevice{
		cfg:        m.acpiConfig(),
		onPoweroff: func() { m.stop(Result{Reason: StopPoweroff}) },
		onReset:    func() { m.stop(Result{Reason: StopReboot}) },
	}
	return m.pio.Add("acpi-power", powerPort, 1, power)
}

// createVCPUs starts one locked goroutine per vCPU, which creates and
// configures its vCPU, then waits for Run.
func (m *Machine) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	m.vcpus = make([]*kvm.VCPU, m.cfg.VCPUs)
	m.probes = make([]chan chan string, m.cfg.VCPUs)
	m.onThread = make([]chan func(*kvm.VCPU), m.cfg.VCPUs)
	for i := range m.probes {
		m.probes[i] = make(chan chan string, 1)
		m.onThread[i] = make(chan func(*kvm.VCPU))
	}
	ready := make(chan error)
	for id := 0; id < m.cfg.VCPUs; id++ {
		var boot *bootState
		if id == 0 && m.restoring == nil {
			boot = &bootState{entry: kernelAddr + entry64Offset}
		}
		m.exited.Add(1)
		go m.vcpuThread(id, supported, boot, ready)
		if err := <-ready; err != nil {
			return fmt.Errorf("vCPU %d: %w", id, err)
		}
	}
	return nil
}

func (m *Machine) vcpuThread(id int, supported []kvm.CPUIDEntry, boot *bootState, ready chan<- error) {
	defer m.exited.Done()
	readied := false
	defer func() {
		if r := recover(); r != nil {
			// A bug in a device or bus handler this vCPU called: stop
			// this VM, keep the process and its other VMs.
			err := virtio.NewPanicError(fmt.Sprintf("vCPU %d", id), r)
			if !readied {
				ready <- err
				return
			}
			m.stop(Result{Reason: StopCrash, Detail: err.Error()})
		}
	}()
	// KVM ties a vCPU to the thread that runs it; this goroutine keeps its
	// thread for life, and the runtime retires the thread when it returns.
	runtime.LockOSThread()
	v, err := m.vm.CreateVCPU(id)
	if err != nil {
		ready <- err
		return
	}
	// Close closes it once every vCPU thread has returned, so a Kick from
	// another thread never touches an unmapped kvm_run.
	m.vcpus[id] = v
	if m.restoring != nil {
		err = v.RestoreState(m.restoring.cpus[id])
	} else {
		var tsc uint32
		if tsc, err = v.TSCKHz(); err == nil {
			err = setupVCPU(v, guestCPUID(supported, id, m.cfg.VCPUs, tsc), boot)
		}
	}
	if err != nil {
		ready <- err
		return
	}
	readied = true
	ready <- nil
	select {
	case <-m.start:
	case <-m.abort:
		return
	}
	m.runLoop(v)
}

// runLoop runs vCPU v until the VM stops.
func (m *Machine) runLoop(v *kvm.VCPU) {
	var rec exitRecorder
	crash := func(what string) { m.crash(v, what+"; "+rec.String()) }
	for !m.stopping.Load() {
		exit, err := v.Run()
		if errors.Is(err, unix.EAGAIN) {
			// An application processor left its wait-for-SIPI state
			// (KVM_MP_STATE_UNINITIALIZED); KVM asks to be called again.
			continue
		}
		if err != nil {
			crash(fmt.Sprintf("vCPU %d: %v", v.ID(), err))
			return
		}
		switch exit.Reason {
		case kvm.ExitIO:
			io, err := exit.IO()
			if err != nil {
				crash(fmt.Sprintf("vCPU %d: %v", v.ID(), err))
				return
			}
			rec.add(exitRecord{reason: exit.Reason, addr: uint64(io.Port), size: uint8(io.Size), write: io.Out})
			for i := 0; i < io.Count; i++ {
				chunk := io.Data[i*io.Size : (i+1)*io.Size]
				if io.Out {
					m.pio.Write(uint64(io.Port), chunk)
				} else {
					m.pio.Read(uint64(io.Port), chunk)
				}
			}
		case kvm.ExitMMIO:
			mm, err := exit.MMIO()
			if err != nil {
				crash(fmt.Sprintf("vCPU %d: %v", v.ID(), err))
				return
			}
			rec.add(exitRecord{reason: exit.Reason, addr: mm.Addr, size: uint8(len(mm.Data)), write: mm.IsWrite})
			if mm.IsWrite {
				m.mmio.Write(mm.Addr, mm.Data)
			} else {
				m.mmio.Read(mm.Addr, mm.Data)
			}
		case kvm.ExitIntr:
			rec.add(exitRecord{reason: exit.Reason})
			// A kick (checked by the loop condition), a probe, or a
			// stray signal.
			select {
			case reply := <-m.probes[v.ID()]:
				reply <- vcpuReport(v, &rec)
			default:
			}
			if p := m.pause.Load(); p != nil {
				m.park(v, p)
			}
		case kvm.ExitSystemEvent:
			typ, _ := exit.SystemEvent()
			switch typ {
			case kvm.SystemEventShutdown:
				m.stop(Result{Reason: StopPoweroff})
			case kvm.SystemEventReset:
				m.stop(Result{Reason: StopReboot})
			default:
				crash(fmt.Sprintf("vCPU %d: KVM_EXIT_SYSTEM_EVENT type %d (guest crash)", v.ID(), typ))
			}
			return
		case kvm.ExitShutdown:
			what := fmt.Sprintf("vCPU %d: triple fault (KVM_EXIT_SHUTDOWN)", v.ID())
			if r, err := v.Regs(); err == nil && r.RIP == 0xfff0 {
				// On AMD, KVM re-initialises a vCPU after a shutdown
				// intercept, so the faulting state is gone.
				what += " (KVM reset the vCPU on shutdown, as on AMD hosts: the registers below are its reset state, not where it faulted)"
			}
			crash(what)
			return
		case kvm.ExitFailEntry:
			reason, cpu := exit.FailEntry()
			crash(fmt.Sprintf("vCPU %d: KVM_EXIT_FAIL_ENTRY: hardware entry failure reason %#x on host CPU %d", v.ID(), reason, cpu))
			return
		case kvm.ExitInternalError:
			sub, data := exit.InternalError()
			crash(fmt.Sprintf("vCPU %d: KVM_EXIT_INTERNAL_ERROR suberror %d data %#x", v.ID(), sub, data))
			return
		default:
			crash(fmt.Sprintf("vCPU %d: unhandled exit %v", v.ID(), exit.Reason))
			return
		}
	}
}

// recoverCrash, deferred directly at the top of a goroutine of the VM,
// turns a panic there into a crash of this VM with the panic and its
// stack as the detail, so that a bug costs one VM and not the process.
func (m *Machine) recoverCrash(where string) {
	if r := recover(); r != nil {
		m.stop(Result{Reason: StopCrash, Detail: virtio.NewPanicError(where, r).Error()})
	}
}

// crash stops the VM with a diagnostic naming the exit and v's registers.
func (m *Machine) crash(v *kvm.VCPU, what string) {
	m.stop(Result{Reason: StopCrash, Detail: what + "; " + registerDump(v)})
}

// stop records the first reason the VM stops and kicks every vCPU out of
// the guest.
func (m *Machine) stop(r Result) {
	m.stopOnce.Do(func() {
		m.result = r
		m.stopping.Store(true)
		for _, v := range m.vcpus {
			if v != nil {
				v.Kick()
			}
		}
		close(m.stopped)
	})
}

// Run starts the vCPUs and blocks until the VM stops: the guest powers off
// or reboots, it crashes, or ctx ends. A Machine runs once.
func (m *Machine) Run(ctx context.Context) (Result, error) {
	if m.ran {
		return Result{}, errors.New("vmm: a Machine runs only once")
	}
	m.ran = true
	close(m.start)
	if m.genIDNew {
		// A restored guest learns its new generation ID at once.
		if err := notifyGenID(m.vm); err != nil {
			m.stop(Result{Reason: StopCrash, Detail: err.Error()})
		}
	}
	select {
	case <-m.stopped:
	case <-ctx.Done():
		m.stop(Result{Reason: StopCanceled, Detail: context.Cause(ctx).Error()})
	}
	m.exited.Wait()
	m.console.Flush()
	r := m.result
	r.ConsoleTail = m.console.Tail()
	r.UnhandledAccesses = m.pio.Unhandled() + m.mmio.Unhandled()
	return r, nil
}

// Close releases the VM, its memory and its vCPUs. It stops a VM that is
// still running.
func (m *Machine) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	if m.ran {
		m.stop(Result{Reason: StopCanceled, Detail: "closed"})
	} else {
		close(m.abort)
	}
	m.exited.Wait()
	m.closeVirtio()
	m.probeMu.Lock()
	m.vcpusClosed = true
	m.probeMu.Unlock()
	for _, v := range m.vcpus {
		if v != nil {
			v.Close()
		}
	}
	for _, fd := range m.irqfds {
		unix.Close(fd)
	}
	if m.vm != nil {
		m.vm.Close()
	}
	if m.mem != nil {
		m.mem.Close()
	}
	return m.sys.Close()
}
