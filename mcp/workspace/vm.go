package workspace

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/guest/instance"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// guest is what the manager asks of a running VM's agent; *proto.Client
// implements it, and the tests' fake does too.
type guest interface {
	Exec(ctx context.Context, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error)
	Stat(ctx context.Context, path string) (proto.FileInfo, error)
	List(ctx context.Context, path string, recursive bool, limit int) ([]proto.FileInfo, bool, error)
	ReadFile(ctx context.Context, path string, offset, max int64) ([]byte, proto.ReadResult, error)
	WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode, mkdirParents bool) error
	TarOut(ctx context.Context, dir string) (io.ReadCloser, error)
	TarIn(ctx context.Context, dir string, r io.Reader) (proto.TarResult, error)
	Sync(ctx context.Context) error
	Freeze(ctx context.Context, mountpoint string) error
	Thaw(ctx context.Context, mountpoint string) error
}

var _ guest = (*proto.Client)(nil)

// machine is a running VM's lifecycle; *instance.VM implements it.
type machine interface {
	// Shutdown syncs and powers the guest off, killing it if ctx ends first.
	Shutdown(ctx context.Context) error
	// Kill stops the VM at once.
	Kill()
	// Close releases the VM (killing it if needed).
	Close() error
	// Done is closed when the VM has stopped.
	Done() <-chan struct{}
}

var _ machine = (*instance.VM)(nil)

// stopResult is a machine that says how it stopped (*instance.VM); the
// tests' fake VMs need not.
type stopResult interface {
	Result() (vmm.Result, error)
}

var _ stopResult = (*instance.VM)(nil)

// stopResultOf returns how machine vm stopped, and false when it cannot
// say (a fake, or a VM whose run failed before it stopped).
func stopResultOf(vm machine) (vmm.Result, bool) {
	r, ok := vm.(stopResult)
	if !ok {
		return vmm.Result{}, false
	}
	res, err := r.Result()
	return res, err == nil && res.Reason != 0
}

// stopSummary is a short account of how a VM stopped, for the workspace's
// error: the reason and the first line of the VMM's detail.
func stopSummary(res vmm.Result) string {
	s := res.Reason.String()
	if d, _, _ := strings.Cut(res.Detail, "\n"); d != "" {
		if len(d) > 160 {
			d = d[:160] + "…"
		}
		s += ": " + d
	}
	return s
}

// stopCause describes how a VM stopped, for the log: the reason, the
// VMM's detail of a crash, and the guest's last console lines.
func stopCause(res vmm.Result) []any {
	a := []any{"reason", res.Reason.String()}
	if res.Detail != "" {
		a = append(a, "detail", res.Detail)
	}
	if n := len(res.ConsoleTail); n > 0 {
		a = append(a, "console", strings.Join(res.ConsoleTail[max(0, n-5):], " | "))
	}
	return a
}

// snapshotter is a machine that can take a memory snapshot of itself
// (*instance.VM); the tests' fake VMs cannot.
type snapshotter interface {
	Snapshot(dir, note string, atPause func() error) (vmm.SnapshotStats, error)
}

var _ snapshotter = (*instance.VM)(nil)

// bootSpec is what booting a workspace's VM needs.
type bootSpec struct {
	Env     *env.Env
	Disk    *disk.Stack
	DiskID  string
	VCPUs   int
	MemMiB  int
	Console io.Writer
	Logger  *slog.Logger
	// Net is the VM's virtio-net backend, the far end of the
	// workspace's netstack (network.go); nil: no network card.
	Net vnet.Backend
	// Restore, when set, is a memory snapshot to resume instead of
	// booting; Disk then reads as it did when the snapshot was taken.
	Restore string
}

// booted is a VM that answered its agent.
type booted struct {
	Agent guest // unconfined: exec, sync, freeze, and the manager's own chores
	Files guest // confined beneath /workspace: every path an agent names
	VM    machine
}

// bootFunc boots a VM; the real one is bootInstance, tests swap in a fake.
type bootFunc func(ctx context.Context, spec bootSpec) (*booted, error)

// bootInstance boots spec as a real microVM.
func bootInstance(ctx context.Context, spec bootSpec) (*booted, error) {
	cfg := instance.Config{
		Env: spec.Env, Disk: spec.Disk, DiskID: spec.DiskID, VCPUs: spec.VCPUs, MemMiB: spec.MemMiB,
		Hostname: env.Hostname, Console: spec.Console, Logger: spec.Logger, Net: spec.Net,
	}
	var (
		vm  *instance.VM
		err error
	)
	if spec.Restore != "" {
		vm, err = instance.Restore(ctx, cfg, spec.Restore)
	} else {
		vm, err = instance.Start(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	if spec.Logger != nil {
		spec.Logger.Info("VM ready", "ready", vm.Ready)
	}
	// The agent resolves every path the files client sends beneath
	// /workspace (openat2 RESOLVE_BENEATH), so ".." and symlinks cannot
	// lead a file tool out of it. Client holds no state but its dialer.
	files := *vm.Agent
	files.Beneath = hostio.Workspace
	return &booted{Agent: vm.Agent, Files: &files, VM: vm}, nil
}

// vmHandle is a workspace's running VM with the disk it serves.
type vmHandle struct {
	*booted
	stack *disk.Stack
	// net is the workspace's network while this VM runs; teardown and
	// detachVM close it.
	net *workspaceNet
	// shells are the host's side of the shells running in this VM (shell.go).
	shells shellSet
	// inherited: the VM resumed an image of a running workspace (a
	// snapshot or a fork), whose guest may run shells this host has
	// not filed yet; workspace_status asks the guest for them.
	inherited bool
	// ctx is cancelled when the VM is going away (stop, reset, delete, or
	// it stopped by itself): calls in flight on it end.
	ctx    context.Context
	cancel context.CancelFunc
	// stopping is set before the manager stops the VM on purpose, so the
	// watcher does not report it as a crash.
	stopping atomic.Bool
	// services is set once a service was started on this VM: stop,
	// reset and delete then end the services first (service.go).
	services atomic.Bool
	release  func() // gives the running slot back; idempotent
	console  io.Closer
	closed   sync.Once
}

// teardown releases the VM, its disk and its slot. The VM must have
// stopped, or be about to be killed: Close kills it.
func (h *vmHandle) teardown() error {
	var err error
	h.closed.Do(func() {
		h.cancel()
		h.VM.Close()
		h.net.close()
		err = h.stack.Close()
		if h.console != nil {
			h.console.Close()
		}
		h.release()
	})
	return err
}
