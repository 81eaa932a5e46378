package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/netstack"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Standby VMs. A create from a warm snapshot restores it into a new VM
// whose guest then faults in, through the host's nested page tables, each
// page it touches: on the nested harness that is most of such a create's
// second. A reset that rewinds its VM in place avoids it (rewind.go), and
// so can a create, by taking a VM restored ahead of time: after each create
// (with Options.Standby), the manager restores one more VM from the warm
// snapshot of that create's environment and shape, in the background, and
// runs one command in it so that what an exec touches is mapped. The next
// create of that environment and shape takes it and rewinds it to the warm
// snapshot: its guest is then the snapshot's exactly, with a new identity
// (clock, entropy, boot ID), as a restore into a new VM gives, and nothing
// the standby ran before survives. Any failure there restores a new VM.
//
// A standby is a workspace not yet published: a directory whose lock it
// holds and which has no record (a crash leaves the next server a
// directory it removes), a disk forked from the warm snapshot's, and a
// running VM that holds a running slot and a memory reservation marked as
// a standby's (which no server counts as promised: budget.go). It is given
// up when a create of another environment or shape comes, when its slot
// or this server's memory budget is wanted for anything else, when the
// warm snapshot it came from is replaced, when its VM stops, and when the
// server closes. pyro mcp serve also makes one as it starts
// (StandbyForDefault).

// standby is a VM restored from a warm snapshot, waiting for a create.
type standby struct {
	w    *workspace // unpublished; w.standby set
	plan bootPlan   // the warm snapshot's: from, kind, baseline
	warm string     // the warm snapshot's directory
}

// standbyState is the Manager's standby and its making; guarded by
// Manager.mu.
type standbyState struct {
	ready  *standby
	making bool
	cancel context.CancelFunc // ends the making; set while making
	done   chan struct{}      // closed when the making ends; set while making
}

// standbyDelay is how long after a create its standby starts being made:
// the agent's first calls on the new workspace, which it waits for, then
// run while nothing else does (on a small host a restore takes a core for
// a while).
var standbyDelay = 2 * time.Second

// fillStandby starts making a standby for environment e at a shape, in the
// background and standbyDelay later, unless standbys are off or one is
// there or being made.
func (m *Manager) fillStandby(e *env.Env, vcpus, mem, diskMiB int) {
	if !m.opts.Standby {
		return
	}
	m.mu.Lock()
	if m.closed || m.sb.making || m.sb.ready != nil {
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.sb.making, m.sb.cancel, m.sb.done = true, cancel, done
	m.mu.Unlock()
	go func() {
		defer close(done)
		defer cancel()
		var (
			sb  *standby
			err error
		)
		select {
		case <-time.After(standbyDelay):
			sb, err = m.makeStandby(ctx, e, vcpus, mem, diskMiB)
		case <-ctx.Done():
			err = ctx.Err()
		}
		m.mu.Lock()
		m.sb.making, m.sb.cancel, m.sb.done = false, nil, nil
		if err == nil && !m.closed {
			m.sb.ready, sb = sb, nil
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Info("no standby VM", "env", e.Name, "err", err)
		}
		if sb != nil {
			sb.discard()
		}
	}()
}

// StandbyForDefault makes, in the background, the standby a create naming
// no environment and no shape would take, when the default environment
// has a warm snapshot at that shape: pyro mcp serve calls it as it
// starts, so that the chat's first create takes a standby too.
func (m *Manager) StandbyForDefault() {
	if !m.opts.Standby || !m.opts.WarmSnapshots {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e, err := m.loadEnv(ctx, m.opts.DefaultEnv)
		if err != nil {
			return // the first create says why
		}
		fi, err := os.Stat(e.Rootfs)
		if err != nil {
			return
		}
		diskMiB, err := m.diskSize(0, e.Name, fi.Size())
		if err != nil || m.findWarm(e, m.opts.DefaultVCPUs, m.opts.DefaultMemMiB, diskMiB) == nil {
			return
		}
		m.fillStandby(e, m.opts.DefaultVCPUs, m.opts.DefaultMemMiB, diskMiB)
	}()
}

// standbyMade waits for a standby being made (tests and benchmarks).
func (m *Manager) standbyMade() {
	m.mu.Lock()
	done := m.sb.done
	m.mu.Unlock()
	if done != nil {
		<-done
	}
}

// makeStandby restores a VM from e's warm snapshot at this shape and runs
// a command in it.
func (m *Manager) makeStandby(ctx context.Context, e *env.Env, vcpus, mem, diskMiB int) (_ *standby, err error) {
	ws := m.findWarm(e, vcpus, mem, diskMiB)
	if ws == nil {
		return nil, errors.New("the environment has no warm snapshot at this shape")
	}
	// A standby is not worth crowding the host for: it takes only room
	// a create would be admitted to.
	if err := m.admitCreate(mem); err != nil {
		return nil, err
	}
	release, err := m.acquireSlot()
	if err != nil {
		return nil, err
	}
	id, dir, owner, err := m.newDir()
	if err != nil {
		release()
		return nil, err
	}
	w := &workspace{m: m, id: id, dir: dir, owner: owner, state: contract.StateCreating, standby: true,
		journal: &journal{path: filepath.Join(dir, journalName), next: 1},
		rec:     record{ID: id, Env: e.Name, VCPUs: vcpus, MemMiB: mem, DiskMiB: diskMiB}}
	w.journal.redact = w.redactText
	sb := &standby{w: w, warm: ws.dir}
	defer func() {
		if err != nil {
			sb.discard()
		}
	}()
	st, plan, err := forkWarm(ws, filepath.Join(dir, diskDir))
	if err != nil {
		release()
		return nil, err
	}
	sb.plan = plan
	resumed, note, err := w.bootFrom(ctx, st, release, plan)
	if err != nil {
		return nil, err
	}
	h := w.handle()
	if !resumed || h == nil {
		return nil, fmt.Errorf("the warm snapshot did not resume: %s", note)
	}
	if r, ok := h.VM.(rewinder); !ok || !r.CanRewind(plan.from.dir) {
		return nil, errors.New("its VM cannot rewind to the warm snapshot")
	}
	cctx, cancel := context.WithTimeout(ctx, agentCallTimeout)
	defer cancel()
	res, err := h.Agent.Exec(cctx, proto.ExecRequest{Shell: "true", Cwd: hostio.Workspace, Timeout: time.Minute}, io.Discard, io.Discard)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit status %d", res.ExitCode)
	}
	if err != nil {
		return nil, fmt.Errorf("a first command in it: %w", err)
	}
	return sb, nil
}

// takeStandby returns the standby when it was made from e's current warm
// snapshot at this shape, taking it out of the Manager's hands; any other
// is given up (the next create makes one for its own kind).
func (m *Manager) takeStandby(e *env.Env, vcpus, mem, diskMiB int) *standby {
	m.mu.Lock()
	sb := m.sb.ready
	m.sb.ready = nil
	if sb != nil {
		sb.w.mu.Lock()
		sb.w.standby = false // its VM's watcher leaves it to the create now
		sb.w.mu.Unlock()
	}
	m.mu.Unlock()
	if sb == nil {
		return nil
	}
	r := sb.w.rec // fixed since it was made
	if r.Env == e.Name && r.VCPUs == vcpus && r.MemMiB == mem && r.DiskMiB == diskMiB {
		if ws := m.findWarm(e, vcpus, mem, diskMiB); ws != nil && ws.dir == sb.warm {
			return sb
		}
	}
	sb.discard()
	return nil
}

// evictStandby gives the standby up, if there is one, so that its running
// slot and memory go to something else; it says whether there was one.
func (m *Manager) evictStandby() bool {
	sb := m.dropStandby()
	if sb == nil {
		return false
	}
	m.log.Info("giving up the standby VM for a workspace that needs its room", "standby", sb.w.id)
	sb.discard()
	return true
}

// dropStandby takes the standby out of the Manager's hands (nil: none).
func (m *Manager) dropStandby() *standby {
	m.mu.Lock()
	defer m.mu.Unlock()
	sb := m.sb.ready
	m.sb.ready = nil
	return sb
}

// standbyStopped is the watcher's word that standby w's VM stopped by
// itself: it is given up, unless a create took it meanwhile (false).
func (m *Manager) standbyStopped(w *workspace, vm machine) bool {
	m.mu.Lock()
	sb := m.sb.ready
	mine := sb != nil && sb.w == w
	if mine {
		m.sb.ready = nil
	}
	m.mu.Unlock()
	if !mine {
		return false
	}
	logged := []any{"standby", w.id}
	if res, ok := stopResultOf(vm); ok {
		logged = append(logged, stopCause(res)...)
	}
	m.log.Warn("the standby VM stopped by itself; the next create makes another", logged...)
	sb.discard()
	return true
}

// closeStandby ends a making in progress and gives the standby up (Close).
func (m *Manager) closeStandby() {
	m.mu.Lock()
	if m.sb.cancel != nil {
		m.sb.cancel()
	}
	m.mu.Unlock()
	m.standbyMade()
	if sb := m.dropStandby(); sb != nil {
		sb.discard()
	}
}

// discard stops the standby's VM and removes its directory.
func (sb *standby) discard() {
	w := sb.w
	w.killVM()
	w.journal.close()
	os.RemoveAll(w.dir)
	w.releaseOwner()
}

// standbyDetail ends the journal line of a create that took the standby.
const standbyDetail = "the standby VM rewound to the warm snapshot"

// adopt makes standby sb's VM the guest of w (the standby's own
// workspace, now the create's): it gets w's grants and is rewound to the
// warm snapshot (kept). When that fails it restores a new VM from the
// snapshot as a create without a standby does (resumed says whether it
// could).
func (w *workspace) adopt(ctx context.Context, sb *standby) (resumed, kept bool, err error) {
	from := sb.plan.from
	h := w.handle()
	var (
		st      *disk.Stack
		release func()
	)
	if h != nil {
		// Its memory now counts as any workspace's: on the ledger, a
		// counted entry replaces the standby's (which h.release removes).
		if _, err := w.m.reserveMem(w.id, w.rec.MemMiB); err != nil {
			return false, false, err
		}
		for _, s := range w.rec.Network { // canonical: create checked them
			g, err := netstack.ParseGrant(s)
			if err == nil {
				_, err = h.net.stack.Grant(g)
			}
			if err != nil {
				return false, false, contract.Internal("granting on the standby VM's network", err)
			}
		}
		if _, st, release, err = w.rewind(ctx, h, from, contract.BootWarm); err == nil {
			return true, true, nil
		}
		if ctx.Err() != nil {
			if st != nil {
				st.Close()
				release()
			}
			return false, false, err
		}
		w.m.log.Warn("rewinding the standby VM failed; restoring a new one", "id", w.id, "err", err)
	}
	if st == nil {
		// Its VM stopped before the create took it.
		if release, err = w.m.acquireSlot(); err != nil {
			return false, false, err
		}
		if st, err = w.openStack(); err != nil {
			release()
			return false, false, contract.Internal("opening the workspace's disk", err)
		}
	}
	if err := st.Checkout(from.layer); err != nil {
		st.Close()
		release()
		return false, false, contract.Internal("checking out the warm snapshot's disk layer", err)
	}
	resumed, _, err = w.bootFrom(ctx, st, release, sb.plan)
	return resumed, false, err
}
