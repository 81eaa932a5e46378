package workspace

import (
	"context"
	"time"

	"github.com/pyro-mcp/pyro/guest/instance"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Rewinding in place. A reset to a memory snapshot whose image the running
// VM is mapped on (it took that snapshot last, or was resumed or rewound
// from it last: the usual loop of an agent that snapshots, tries things
// and resets, again and again) keeps the VM: the guest pauses, the disk layer is checked
// out, the pages the guest wrote are read back from the image and every
// register and device is reloaded, and the guest resumes. The RAM it uses
// stays mapped, so it runs on without the page faults a new VM's guest
// takes on each page it touches again: on the nested harness those are
// most of a restore's time. Anything else resets by building a new VM
// (bootFrom), as does a rewind that fails.

// rewinder is a machine that can take itself back to a memory snapshot in
// place; *instance.VM is one.
type rewinder interface {
	CanRewind(dir string) bool
	Rewind(ctx context.Context, dir string, atPause func() error) error
}

var _ rewinder = (*instance.VM)(nil)

// rewindable returns the workspace's running VM when a reset to the image
// from can rewind it in place, else nil.
func (w *workspace) rewindable(from *memImage) *vmHandle {
	if from == nil {
		return nil
	}
	w.mu.Lock()
	h := w.vm
	w.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h.VM.Done():
		return nil
	default:
	}
	if r, ok := h.VM.(rewinder); !ok || !r.CanRewind(from.dir) {
		return nil
	}
	return h
}

// rewind resets the running VM h in place to the image from, checking its
// disk layer out while the guest is paused (cut is how long that took);
// kind is what the workspace then says it started from.
// On success the workspace runs on a new handle over the same VM, its
// disk, network and slot. On failure the VM is gone and the caller builds
// a new one on the stack and slot returned.
func (w *workspace) rewind(ctx context.Context, h *vmHandle, from *memImage, kind contract.BootKind) (cut time.Duration, st *disk.Stack, release func(), err error) {
	w.bgWait()
	t0 := time.Now()
	err = h.VM.(rewinder).Rewind(ctx, from.dir, func() error {
		err := h.stack.Checkout(from.layer)
		cut = time.Since(t0)
		return err
	})
	if err == nil {
		err = w.pushSecrets(ctx, h.Agent)
	}
	if err != nil {
		st, release = w.detachVM()
		return cut, st, release, err
	}
	hctx, cancel := context.WithCancel(context.Background())
	// The guest is the image's: its shells are the ones it had then
	// (a warm snapshot's has none), and its services unless it had none.
	nh := &vmHandle{booted: h.booted, stack: h.stack, net: h.net, ctx: hctx, cancel: cancel,
		release: h.release, console: h.console, inherited: kind != contract.BootWarm}
	nh.services.Store(!from.quiet)
	w.mu.Lock()
	w.vm = nh
	w.rec.Boot, w.rec.BootNote = kind, ""
	w.mu.Unlock()
	go w.watch(nh)
	return cut, nil, nil, nil
}
