// Package instance boots an environment as a running microVM and hands back
// a client for the agent inside it.
//
// It is the join between the pieces below it and the users above it (pyro
// run ENV, the workspace manager): it takes a built environment
// (guest/env), a disk (the layered copy-on-write Stack of vmm/disk, served
// by virtio/blk as the guest's /dev/vda), adds a virtio-vsock device whose
// in-process host side carries the agent protocol (guest/agent/proto),
// and, with Config.Net, a virtio-net NIC whose other end is the
// workspace's network (netstack), boots the VM (vmm) and waits until the
// agent answers. Nothing here keeps state on disk: the caller owns the
// disk and decides what survives.
//
// Readiness is the agent answering a ping, not a console line: the host
// dials the agent's vsock port (a dial before the guest's driver is up
// waits; one the guest refuses because the agent is not listening yet is
// retried a millisecond later), so boot-to-ready costs no serial-port
// polling. If the VM stops first (the agent's init failed and powered off,
// the kernel panicked), Start returns an error carrying the console's last
// lines, which name the cause.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/blk"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
	"github.com/pyro-mcp/pyro/virtio/vsock"
	"github.com/pyro-mcp/pyro/vmm"
)

// GuestCID is the vsock context id every guest gets. Each VM has its own
// in-process vsock device, so CIDs need not be unique across VMs.
const GuestCID = 3

// DefaultReadyTimeout bounds boot-to-agent-ready. Booting takes well under
// a second on hardware KVM; the generous default covers nested, emulated
// hosts (the CI harness) where it takes seconds.
const DefaultReadyTimeout = 2 * time.Minute

// Config describes a VM to start.
type Config struct {
	Env  *env.Env
	Disk blk.Backend // the guest's /dev/vda; usually a *disk.Stack over Env.Rootfs
	// DiskID is the disk's serial (/sys/block/vda/serial), at most 20 bytes.
	DiskID   string
	VCPUs    int // default 1
	MemMiB   int // default 512
	Hostname string
	// Console receives the guest's serial console; nil discards it (its
	// last lines are still kept for error messages).
	Console io.Writer
	Logger  *slog.Logger
	// ReadyTimeout bounds the wait for the agent (DefaultReadyTimeout
	// when zero).
	ReadyTimeout time.Duration
	// KVMDevice overrides /dev/kvm.
	KVMDevice string
	// Net, when set, gives the guest a virtio-net NIC (its eth0, MAC
	// GuestMAC) whose frames go to Net: in pyro a *netstack.Link, whose
	// stack is the guest's gateway. If Net has a SetDevice(*vnet.Device)
	// method, Start calls it with the device before boot, so the backend
	// can deliver frames to the guest. Nil: no NIC, a sealed guest.
	Net vnet.Backend
}

// GuestMAC is the MAC address of the guest's NIC. Each VM has its own
// link to its own stack, so MACs need not be unique across VMs.
var GuestMAC = [6]byte{0x02, 0x50, 0x79, 0x52, 0x4f, 0x01}

// deviceBinder is a NIC backend that needs the device in front of it.
type deviceBinder interface{ SetDevice(*vnet.Device) }

// VM is a running guest with a ready agent.
type VM struct {
	// Agent talks to the guest's agent; safe for concurrent use.
	Agent *proto.Client
	// Ready is the time from Start's call to the agent's first answer.
	Ready time.Duration

	m      *vmm.Machine
	vs     *vsock.Device
	nd     *vnet.Device // nil without Config.Net
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	// res and err are written once by the run goroutine before done is
	// closed.
	res vmm.Result
	err error

	closeOnce sync.Once
	// restored: the VM resumed a memory snapshot instead of booting.
	restored bool
	// hostname and readyTimeout are the Config's, for Rewind.
	hostname     string
	readyTimeout time.Duration
	// For the log: how long a restored guest took to handle its
	// transport reset, and the tries its probe took.
	settled time.Duration
	tries   int
}

// Cmdline is the kernel command line for an environment's VM.
func Cmdline(hostname string) string {
	if hostname == "" {
		hostname = env.Hostname
	}
	return fmt.Sprintf("%s pyro.root=/dev/vda pyro.rootfstype=ext4 rw pyro.hostname=%s pyro.agent_port=%d",
		vmm.DefaultCmdline, hostname, proto.DefaultAgentPort)
}

// Start boots cfg and returns once the agent answers. ctx bounds only the
// start; the VM then runs until Shutdown, Kill or Close, or until the
// guest stops by itself (Done).
func Start(ctx context.Context, cfg Config) (_ *VM, err error) {
	begin := time.Now()
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	d, err := newDevices(cfg)
	if err != nil {
		return nil, err
	}
	m, err := vmm.New(vmm.Config{
		Kernel:    cfg.Env.Kernel,
		Initrd:    cfg.Env.Initrd,
		Cmdline:   Cmdline(cfg.Hostname),
		VCPUs:     cfg.VCPUs,
		MemMiB:    cfg.MemMiB,
		Console:   cfg.Console,
		KVMDevice: cfg.KVMDevice,
		Devices:   d.list,
		Logger:    cfg.Logger,
	})
	if err != nil {
		d.vs.Close()
		return nil, err
	}
	v, err := launch(ctx, cfg, m, d, nil)
	if err != nil {
		return nil, err
	}
	v.Ready = time.Since(begin)
	if err := setClock(ctx, v.Agent, setClockTimeout); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// defaults fills cfg's zero fields and checks it.
func (cfg *Config) defaults() error {
	if cfg.Env == nil {
		return errors.New("instance: no environment")
	}
	if cfg.Disk == nil {
		return errors.New("instance: no disk")
	}
	if cfg.VCPUs == 0 {
		cfg.VCPUs = 1
	}
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 512
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if err := validHostname(cfg.Hostname); err != nil {
		return err
	}
	if kind := kvm.DetectHost("/sys"); kind == kvm.HostPVM {
		// A stock kernel spins forever there instead of failing: say so now.
		return ErrPVMHost
	}
	return nil
}

// devices are a VM's virtio devices, in the order the guest sees them:
// the disk, vsock, and the NIC when there is one.
type devices struct {
	list []virtio.Device
	vs   *vsock.Device
	nd   *vnet.Device
}

func newDevices(cfg Config) (*devices, error) {
	bd, err := blk.New(cfg.Disk, blk.Options{ID: cfg.DiskID, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("disk device: %w", err)
	}
	vs, err := vsock.New(GuestCID, vsock.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("vsock device: %w", err)
	}
	d := &devices{list: []virtio.Device{bd, vs}, vs: vs}
	if cfg.Net != nil {
		d.nd, err = vnet.New(cfg.Net, vnet.Options{MAC: GuestMAC, Logger: cfg.Logger})
		if err != nil {
			vs.Close()
			return nil, fmt.Errorf("network device: %w", err)
		}
		if b, ok := cfg.Net.(deviceBinder); ok {
			b.SetDevice(d.nd)
		}
		d.list = append(d.list, d.nd)
	}
	return d, nil
}

// launch runs machine m and waits until its agent answers probe, called
// until it succeeds: a ping when probe is nil (a booted guest), the call
// that gives a restored guest its identity otherwise. On error the VM is
// closed.
func launch(ctx context.Context, cfg Config, m *vmm.Machine, d *devices, probe func(context.Context, *VM) error) (_ *VM, err error) {
	restored := probe != nil
	runCtx, cancel := context.WithCancel(context.Background())
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &VM{m: m, vs: d.vs, nd: d.nd, log: log, cancel: cancel, done: make(chan struct{}), restored: restored,
		hostname: cfg.Hostname, readyTimeout: cfg.ReadyTimeout}
	v.Agent = &proto.Client{Dial: v.dial}
	vs := d.vs
	go func() {
		v.res, v.err = runRecovered(func() (vmm.Result, error) { return m.Run(runCtx) })
		// Mark the VM stopped before failing its streams, so that a call
		// whose stream fails sees done closed and reports why the VM
		// stopped (its crash, its console), not "the device was closed".
		close(v.done)
		// The guest is gone: fail its streams now (an exec waiting for
		// output would otherwise wait for ever).
		vs.Close()
	}()
	defer func() {
		if err != nil {
			v.Close()
		}
	}()

	readyCtx, stop := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer stop()
	if restored {
		v.awaitTransportReset(readyCtx)
	}
	if err := v.waitReady(readyCtx, probe); err != nil {
		if ve := (*proto.VersionError)(nil); errors.As(err, &ve) {
			// The environment's /init is another pyro: env build puts
			// this one in its initramfs (in seconds; nothing else is
			// rebuilt), so the message names the command.
			err = &proto.VersionError{Host: ve.Host, Guest: ve.Guest, Env: cfg.Env.Name}
		}
		return nil, err
	}
	return v, nil
}

// awaitTransportReset waits, within resetSettleWait, for a resumed guest
// to handle its vsock transport reset: it resets the sockets it had once it
// reads the event, and a stream opened before then is reset with them. The
// probe that follows retries such a reset anyway.
func (v *VM) awaitTransportReset(ctx context.Context) {
	t0 := time.Now()
	select {
	case <-v.vs.ResetSettled():
	case <-time.After(resetSettleWait):
		v.log.Warn("the resumed guest has not handled its vsock transport reset yet", "after", resetSettleWait)
	case <-v.done:
	case <-ctx.Done():
	}
	v.settled = time.Since(t0)
}

// resetSettleWait bounds how long a restore waits for the guest to handle
// its vsock transport reset before it tries the agent anyway.
const resetSettleWait = 5 * time.Second

// setClockTimeout bounds one call that sets the guest's clock: at a boot,
// after the agent has answered a ping; at a restore, each try of the
// restored op, which is the readiness probe there and sets the clock with
// the guest's identity. Either takes a round trip; the bound is there for
// an agent that answers pings and then nothing else, which would
// otherwise hold the start (and the workspace's lifecycle lock, which its
// caller holds) for as long as the caller's context allows, often for
// ever. Ten seconds covers the slowest nested host the harness has seen
// by far.
const setClockTimeout = 10 * time.Second

// setClock gives the guest the host's clock (it has no RTC) before
// anything runs, within timeout.
func setClock(ctx context.Context, c *proto.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.SetTime(ctx, time.Now()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("setting the guest clock: the agent did not answer within %v (stop and start the workspace; if it persists, rebuild the environment with pyro env build --force NAME)", timeout)
		}
		return fmt.Errorf("setting the guest clock: %w", err)
	}
	return nil
}

// runRecovered runs the VM (run is its Machine's Run) and turns a panic on
// the way into that VM's error, so that a bug in the VMM costs this VM and
// not the process with every other VM in it.
func runRecovered(run func() (vmm.Result, error)) (res vmm.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = vmm.Result{Reason: vmm.StopCrash}, virtio.NewPanicError("the VM's run loop", r)
		}
	}()
	return run()
}

// DebugState describes the running VM for a report on a guest that
// stopped answering: each vCPU (running or halted, where, its pending
// interrupts and timer, its last exits) and the vsock device (its rings,
// streams and last packets).
func (v *VM) DebugState() string {
	return v.m.DebugVCPUs() + "\n" + v.vs.DebugState()
}

// waitReady calls probe (nil: ping the agent) until it succeeds, the VM
// stops or ctx ends.
func (v *VM) waitReady(ctx context.Context, probe func(context.Context, *VM) error) error {
	bound := 3 * time.Second
	if probe == nil {
		probe = func(ctx context.Context, v *VM) error {
			_, err := v.Agent.Ping(ctx)
			return err
		}
	} else {
		bound = setClockTimeout // the probe does some work
	}
	for {
		// Each try is bounded: a connection request lost during the
		// guest's boot must cost a retry, not the whole start timeout.
		try, cancel := context.WithTimeout(ctx, bound)
		err := probe(try, v)
		v.tries++
		tryExpired := try.Err() != nil
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-v.done:
			return v.stoppedError("before its agent was ready")
		default:
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			v.Kill()
			return fmt.Errorf("waiting for the guest's agent: %w", ctx.Err())
		}
		if ctx.Err() != nil {
			v.log.Warn("the guest's agent did not answer within the start timeout", "state", v.DebugState())
			v.Kill() // stop it first, so its console's last lines can be shown
			return fmt.Errorf("the guest's agent did not answer within the start timeout: %w%s", ctx.Err(), v.consoleHint())
		}
		var pe *proto.VersionError
		if errors.As(err, &pe) {
			return err // Start says how to rebuild
		}
		// A restored guest resets the sockets it had once it reads the
		// transport reset event; a first connection that raced the
		// event is reset with them: try again.
		retry := errors.Is(err, vsock.ErrConnRefused) || tryExpired || v.restored && errors.Is(err, vsock.ErrConnReset)
		if !retry {
			// A guest going down resets its vsock device before the VM
			// stops: give the VM a moment, so that the error says why
			// it stopped (a FATAL line from init, a panic), not that
			// the connection was lost.
			select {
			case <-v.done:
				return v.stoppedError("before its agent was ready")
			case <-time.After(2 * time.Second):
			case <-ctx.Done():
			}
			return fmt.Errorf("reaching the guest's agent: %w", err)
		}
		select {
		case <-time.After(time.Millisecond):
		case <-v.done:
		case <-ctx.Done():
		}
	}
}

// dial opens a stream to the agent; it fails fast once the VM has stopped.
func (v *VM) dial(ctx context.Context) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, v.stoppedError("")
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-v.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := v.vs.Dial(ctx, proto.DefaultAgentPort)
	if err != nil {
		select {
		case <-v.done:
			return nil, v.stoppedError("")
		default:
		}
		return nil, err
	}
	return &vmConn{Conn: c, v: v}, nil
}

// vmConn is a stream to the agent that, once the VM has stopped, fails
// with why it stopped (the crash, the poweroff) instead of the bare end of
// stream the vsock device gives, so that a request the VM's death cut
// short says what happened.
type vmConn struct {
	net.Conn
	v *VM
}

func (c *vmConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	return n, c.explain(err)
}

func (c *vmConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	return n, c.explain(err)
}

func (c *vmConn) explain(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-c.v.done:
		return c.v.stoppedError("while a request was in progress")
	default:
		return err
	}
}

// ErrPVMHost says the host's KVM is PVM, which cannot boot the stock
// Debian kernels environments use.
var ErrPVMHost = errors.New("this host's /dev/kvm is PVM (the kvm_pvm module), which boots only PVM-enabled guest kernels; " +
	"environments boot Debian's stock cloud kernel, so run pyro on a host with hardware virtualization (VT-x or AMD-V); pyro kvm-check explains")

// ErrStopped is wrapped by the errors of calls on a VM that has stopped.
var ErrStopped = errors.New("the VM has stopped")

func (v *VM) stoppedError(when string) error {
	if when != "" {
		when = " " + when
	}
	if v.err != nil {
		return fmt.Errorf("%w%s: %v", ErrStopped, when, v.err)
	}
	return fmt.Errorf("%w%s (%s)%s", ErrStopped, when, describe(v.res), v.consoleHint())
}

func describe(r vmm.Result) string {
	if r.Detail != "" {
		return r.Reason.String() + ": " + r.Detail
	}
	return r.Reason.String()
}

// consoleHint returns the guest's last console lines, most useful first:
// the agent's fatal line when there is one.
func (v *VM) consoleHint() string {
	select {
	case <-v.done:
	default:
		return ""
	}
	var b strings.Builder
	for _, l := range v.res.ConsoleTail {
		if strings.HasPrefix(l, proto.FatalMarker) {
			return "\n" + l
		}
	}
	if len(v.res.ConsoleTail) > 0 {
		b.WriteString("\nlast console lines:")
		for _, l := range v.res.ConsoleTail {
			b.WriteString("\n  | " + l)
		}
	}
	return b.String()
}

// NetStats returns the NIC's counters, and false for a VM without one.
func (v *VM) NetStats() (vnet.Stats, bool) {
	if v.nd == nil {
		return vnet.Stats{}, false
	}
	return v.nd.Stats(), true
}

// Done is closed when the VM has stopped, for whatever reason.
func (v *VM) Done() <-chan struct{} { return v.done }

// Result says how the VM stopped; valid after Done is closed.
func (v *VM) Result() (vmm.Result, error) {
	<-v.done
	return v.res, v.err
}

// Shutdown asks the agent to sync and power the guest off and waits for
// the VM to stop; if that does not happen before ctx ends, the VM is
// killed. Either way the VM's resources are released.
func (v *VM) Shutdown(ctx context.Context) error {
	defer v.Close()
	select {
	case <-v.done:
		return nil
	default:
	}
	// Poweroff syncs the guest's filesystems first.
	err := v.Agent.Poweroff(ctx)
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("the guest did not power off: %w; stopped it", err)
	}
}

// Kill stops the VM at once, as pulling the plug would, and waits for it.
func (v *VM) Kill() {
	v.cancel()
	<-v.done
}

// Close kills the VM if it still runs and releases its memory, file
// descriptors and devices. It is safe to call more than once.
func (v *VM) Close() error {
	var err error
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done     // Run returns once its context ends
		v.vs.Close() // the run goroutine may not have got to it yet
		err = v.m.Close()
	})
	return err
}

// validHostname accepts RFC 1123 host names (the guest's kernel command
// line carries it, so spaces and the like must not reach it).
func validHostname(h string) error {
	if h == "" {
		return nil
	}
	if len(h) > 63 {
		return fmt.Errorf("hostname %q is longer than 63 characters", h)
	}
	for i, c := range h {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0
		if !ok {
			return fmt.Errorf("hostname %q: use letters, digits and inner hyphens only", h)
		}
	}
	return nil
}
