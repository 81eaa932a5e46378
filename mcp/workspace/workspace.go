package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// workspace is one workspace: its record, journal and, while it runs, VM.
//
// Locking: op serializes state changes. Calls that work inside a running
// VM (exec, files, diff, export, sync) hold it shared, so several run at
// once; calls that change what the VM or its disk is (create, start, stop,
// snapshot, reset, delete) hold it exclusively. Stop, reset and delete
// first interrupt calls in flight (their VM context is cancelled) rather
// than wait for a long command. mu guards the fields below it and is held
// only briefly, never across guest calls; Manager.mu comes before it.
type workspace struct {
	m   *Manager
	id  string
	dir string

	op      sync.RWMutex
	writeMu sync.Mutex // serializes writes (file_write, patch_apply, sync_push) among themselves
	outMu   sync.Mutex // guards outBusy and serializes pruning of out/
	// Guarded by outMu.
	outBusy map[int64]bool // seqs of execs writing their output files
	// netMu serializes network changes (grants, published ports), so the
	// record and the live stack change together (network.go).
	netMu   sync.Mutex
	journal *journal
	// sec holds the secrets (secrets.go).
	sec secretState
	bg  bgTable // background execs, with a mutex of their own (bgexec.go)
	// owner holds the flock on dir/owner.lock that makes the workspace
	// this Manager's; releaseOwner closes it.
	owner     *os.File
	ownerOnce sync.Once

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	rec record
	// Guarded by mu.
	state contract.State
	// Guarded by mu.
	vm *vmHandle
	// Guarded by mu.
	deleted bool
	// standby: an unpublished workspace holding a standby VM (standby.go),
	// until a create takes it. Guarded by mu.
	standby bool
	// Guarded by mu.
	active int // calls in flight; the reaper leaves busy workspaces alone
	// Guarded by mu.
	diffs int // patch files written to diffs/
}

// view returns the workspace as the Backend describes it.
func (w *workspace) view() contract.Workspace {
	w.mu.Lock()
	v := w.viewLocked()
	w.mu.Unlock()
	v.Background = w.bgList(true)
	return v
}

// The caller holds w.mu.
func (w *workspace) viewLocked() contract.Workspace {
	r := w.rec.clone()
	seq, _ := w.journal.last()
	v := contract.Workspace{ID: r.ID, Name: r.Name, Labels: r.Labels, Env: r.Env, State: w.state, Error: r.Error,
		CreatedAt: r.CreatedAt, LastActiveAt: r.LastActive, TTLSeconds: r.TTLSeconds,
		VCPUs: r.VCPUs, MemMiB: r.MemMiB, DiskMiB: r.DiskMiB, Seed: r.Seed, Boot: r.Boot, BootNote: r.BootNote,
		Snapshots: len(r.Snapshots), LastSeq: seq}
	if r.TTLSeconds > 0 && w.state != contract.StateExpired {
		v.ExpiresAt = r.LastActive.Add(time.Duration(r.TTLSeconds) * time.Second)
	}
	v.DiskDeleteAt, v.DiskDeletedAt = w.diskDeleteAtLocked(), r.DiskDeletedAt
	if len(r.Network) > 0 || len(r.Published) > 0 || w.vm != nil {
		ns := w.networkStatusLocked()
		v.Network = &ns
	}
	v.Secrets = w.secretInfos()
	return v
}

// diskDeleteAtLocked is when the reaper deletes the expired workspace's
// disk: the retention period after it expired. Zero when it is not
// expired, its disk is gone already, or disks are kept for ever.
// The caller holds w.mu.
func (w *workspace) diskDeleteAtLocked() time.Time {
	if w.state != contract.StateExpired || !w.rec.DiskDeletedAt.IsZero() || w.m.opts.Retention < 0 {
		return time.Time{}
	}
	at := w.rec.ExpiredAt
	if at.IsZero() {
		// Not dated (Open dates every expired workspace it adopts): keep.
		return time.Time{}
	}
	return at.Add(w.m.opts.Retention)
}

// diskGone returns the error for a call that needs the disk of a
// workspace whose retention period deleted it, or nil.
func (w *workspace) diskGone() error {
	w.mu.Lock()
	at := w.rec.DiskDeletedAt
	w.mu.Unlock()
	if at.IsZero() {
		return nil
	}
	return contract.Stopped(w.id, contract.StateExpired).WithHint(fmt.Sprintf(
		"Its disk was deleted on %s, when the retention period after its idle TTL expired; its files are gone. "+
			"{{delete}} removes the record; {{create}} makes a new workspace.", at.UTC().Format(time.RFC3339)))
}

// touch marks the workspace active now, pushing its expiry forward.
func (w *workspace) touch() {
	now := w.m.now()
	w.mu.Lock()
	if now.After(w.rec.LastActive) {
		w.rec.LastActive = now
	}
	w.mu.Unlock()
}

// idleExpired reports whether the TTL has passed with no call in flight.
func (w *workspace) idleExpired(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deleted || w.active > 0 || w.rec.TTLSeconds <= 0 {
		return false
	}
	if w.state != contract.StateRunning && w.state != contract.StateStopped {
		return false
	}
	return now.After(w.rec.LastActive.Add(time.Duration(w.rec.TTLSeconds) * time.Second))
}

// alive returns NotFound once the workspace is deleted.
func (w *workspace) alive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deleted {
		return contract.NotFound(contract.ResourceWorkspace, w.id)
	}
	return nil
}

// handle returns the running VM, or nil.
func (w *workspace) handle() *vmHandle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.vm
}

// interrupt cancels the calls in flight on the VM, so that a stop, reset
// or delete does not wait for a long command.
func (w *workspace) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vm != nil {
		w.vm.stopping.Store(true)
		w.vm.cancel()
	}
}

// saveLocked writes the record.
// The caller holds w.mu.
func (w *workspace) saveLocked() error {
	r := w.rec.clone()
	r.State = w.state
	return writeRecord(w.dir, &r)
}

// logLife journals a lifecycle event; failures are logged, not returned,
// since the event already happened.
func (w *workspace) logLife(kind contract.LogKind, cmd, detail string, start time.Time) int64 {
	seq, err := w.journal.append(entry{Time: start, Kind: kind, Command: cmd, Detail: detail,
		Duration: int64(w.m.now().Sub(start))})
	if err != nil {
		w.m.log.Warn("writing the journal", "id", w.id, "err", err)
	}
	return seq
}

// call is one Backend call working inside the running VM.
type call struct {
	w      *workspace
	h      *vmHandle
	ctx    context.Context // the caller's, also cancelled when the VM goes away or the call's limit passes
	parent context.Context // the caller's
	end    func()
	// A background exec's call (bgexec.go) has its seq reserved when it
	// starts, and keeps its output files when the command does not end.
	seq        int64
	background bool
}

// agentCallTimeout bounds a file, patch, diff, export or sync call, so
// that a guest that stops answering costs the agent a clear error instead
// of a call that never returns. Exec has its own bound, from its timeout.
// A variable for tests.
var agentCallTimeout = 5 * time.Minute

// enter starts a call that needs the VM running: it holds op shared until
// done, marks the workspace active and merges the caller's context with
// the VM's.
func (w *workspace) enter(ctx context.Context) (*call, error) { return w.enterLimit(ctx, 0) }

// enterLimit is enter with the call cut off after limit (0: no limit).
func (w *workspace) enterLimit(ctx context.Context, limit time.Duration) (*call, error) {
	w.op.RLock()
	w.mu.Lock()
	if w.deleted {
		w.mu.Unlock()
		w.op.RUnlock()
		return nil, contract.NotFound(contract.ResourceWorkspace, w.id)
	}
	h := w.vm
	if h == nil {
		st, why := w.state, w.rec.Error
		w.mu.Unlock()
		w.op.RUnlock()
		e := contract.Stopped(w.id, st)
		if why != "" {
			e.Msg += ": " + why // how it stopped, and what starts it again
		}
		return nil, e
	}
	w.active++
	w.mu.Unlock()
	w.touch()
	var cctx context.Context
	var cancel context.CancelFunc
	if limit > 0 {
		cctx, cancel = context.WithTimeout(ctx, limit)
	} else {
		cctx, cancel = context.WithCancel(ctx)
	}
	stop := context.AfterFunc(h.ctx, cancel)
	return &call{w: w, h: h, ctx: cctx, parent: ctx, end: func() {
		stop()
		cancel()
		w.touch()
		w.mu.Lock()
		w.active--
		w.mu.Unlock()
		w.op.RUnlock()
	}}, nil
}

// lost says whether the call's VM went away (stopped, reset, deleted,
// crashed) while it ran, and returns the error to report then.
func (c *call) lost() error {
	if c.h.ctx.Err() == nil {
		return nil
	}
	return contract.Conflict("the workspace was stopped, reset or deleted while this call ran").
		WithHint("Check {{status}}; start the workspace if it is stopped, then retry.")
}

// guestErr turns an agent error into an *contract.Error.
func (c *call) guestErr(what, path string, err error) error {
	if l := c.lost(); l != nil {
		return l
	}
	if errors.Is(err, context.DeadlineExceeded) && c.parent.Err() == nil {
		return contract.Timeout("the guest agent stopped answering while %s (no answer within %v)", what, agentCallTimeout).
			WithHint("{{stop}} then {{start}} restarts the VM; the disk is kept.")
	}
	return guestError(what, path, err)
}

// stopVM stops the running VM, if any, and sets state (stopped or
// expired). A clean stop syncs the guest and powers it off; when ctx ends
// first the VM is killed (the disk is crash-consistent). The caller holds
// op exclusively.
func (w *workspace) stopVM(ctx context.Context, state contract.State, why string) error {
	start := w.m.now()
	w.mu.Lock()
	h := w.vm
	if h == nil {
		changed := state == contract.StateExpired && w.state == contract.StateStopped
		if changed {
			w.state = state
			w.rec.ExpiredAt = start
			err := w.saveLocked()
			w.mu.Unlock()
			w.logLife(contract.LogLife, "expire", why, start)
			return err
		}
		w.mu.Unlock()
		return nil
	}
	h.stopping.Store(true)
	w.mu.Unlock()

	w.endServices(h)
	h.cancel()
	w.bgWait()
	var errs []error
	if err := h.VM.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutting the VM down: %w", err))
	}
	if err := h.teardown(); err != nil {
		errs = append(errs, fmt.Errorf("closing the disk: %w", err))
	}
	w.mu.Lock()
	w.vm = nil
	w.state = state
	w.rec.Error = ""
	if state == contract.StateExpired {
		w.rec.ExpiredAt = start
	}
	if err := w.saveLocked(); err != nil {
		errs = append(errs, err)
	}
	w.mu.Unlock()
	cmd := "stop"
	if state == contract.StateExpired {
		cmd = "expire"
	}
	w.logLife(contract.LogLife, cmd, why, start)
	return errors.Join(errs...)
}

// killVM stops the VM at once, discarding what the guest did not write
// (for delete, which throws it all away), and releases it with its disk.
func (w *workspace) killVM() {
	if st, release := w.detachVM(); st != nil {
		st.Close()
		release()
	}
}

// detachVM kills the VM, if any, but keeps its disk open and its running
// slot, and returns them (nil when no VM ran): reset checks out a layer
// and boots again on them.
func (w *workspace) detachVM() (*disk.Stack, func()) {
	w.mu.Lock()
	h := w.vm
	w.vm = nil
	w.mu.Unlock()
	if h == nil {
		return nil, nil
	}
	h.stopping.Store(true)
	w.endServices(h)
	h.cancel()
	w.bgWait()
	h.VM.Kill()
	h.VM.Close()
	h.net.close()
	if h.console != nil {
		h.console.Close()
	}
	return h.stack, h.release
}

// openStack opens the workspace's disk and drops snapshots whose layers a
// crash during a reset left out of it.
func (w *workspace) openStack() (*disk.Stack, error) {
	st, err := disk.Open(filepath.Join(w.dir, diskDir))
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, l := range st.Layers() {
		if l.Frozen {
			have[l.ID] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !have[w.rec.BaselineLayer] {
		st.Close()
		return nil, fmt.Errorf("the disk has lost its baseline layer %s", w.rec.BaselineLayer)
	}
	kept := slices.DeleteFunc(slices.Clone(w.rec.Snapshots), func(s snapRecord) bool { return !have[s.Layer] })
	if len(kept) != len(w.rec.Snapshots) {
		w.rec.Snapshots = kept
		if err := w.saveLocked(); err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

// startVM boots the workspace from its disk (kind is "start" or "reset"):
// the caller holds op exclusively and the VM is not running.
func (w *workspace) startVM(ctx context.Context, cmd, detail string) error {
	if err := w.diskGone(); err != nil {
		return err
	}
	start := w.m.now()
	release, err := w.m.acquireSlot()
	if err != nil {
		return err
	}
	st, err := w.openStack()
	if err != nil {
		release()
		return w.failed("opening the workspace's disk", err)
	}
	w.completeReset(st)
	if err := w.bootOn(ctx, st, release); err != nil {
		if ctx.Err() != nil || contract.IsCode(err, contract.CodeEnvMissing) || contract.IsCode(err, contract.CodeNotFound) || contract.IsCode(err, contract.CodeLimit) {
			return err
		}
		return w.failed("booting "+w.view().Env, err)
	}
	w.mu.Lock()
	w.state = contract.StateRunning
	w.rec.Error = ""
	w.rec.ExpiredAt = time.Time{}
	err = w.saveLocked()
	w.mu.Unlock()
	w.logLife(contract.LogLife, cmd, detail, start)
	if err != nil {
		return contract.Internal("saving the workspace record", err)
	}
	return nil
}

// failed marks the workspace failed with err's message and returns the
// *contract.Error to report.
func (w *workspace) failed(what string, err error) error {
	msg := what + ": " + firstLine(err.Error())
	w.mu.Lock()
	w.state = contract.StateFailed
	w.rec.Error = msg
	w.saveLocked()
	w.mu.Unlock()
	w.m.log.Error(what, "id", w.id, "err", err)
	return &contract.Error{Code: contract.CodeInternal, Msg: msg, Err: err,
		Hint: "{{start}} retries; {{delete}} removes it."}
}

// bootOn boots a VM on the open stack st; on failure it closes st and
// releases the slot. The VM's memory goes on the state directory's
// ledger first (see budget.go), refused with CodeLimit when the host
// cannot hold it; the slot's release takes it off.
func (w *workspace) bootOn(ctx context.Context, st *disk.Stack, release func()) error {
	_, _, err := w.bootFrom(ctx, st, release, bootPlan{})
	return err
}

// bootPlan says how bootFrom starts the guest.
type bootPlan struct {
	// from is a memory snapshot to resume instead of booting, and kind
	// what the workspace then says it started from.
	from *memImage
	kind contract.BootKind
	// baseline is the tar stream of /workspace kept with a warm
	// snapshot (from), whose layer is then an unseeded create's
	// baseline.
	baseline string
	// coldBooted, when set, runs on a guest that booted (not resumed)
	// as soon as its agent answers, before anything of the workspace
	// (secrets) reaches it: create takes the warm snapshot there.
	coldBooted func(b *booted, st *disk.Stack)
}

// memImage is a memory snapshot to resume: its directory and the frozen
// disk layer taken with it.
type memImage struct {
	dir   string // absolute
	layer string
	// quiet says the image holds no services: no service had been
	// started in the VM it was taken from (a warm snapshot's, say), so
	// stop, reset and delete need not end any in the resumed guest.
	quiet bool
}

// bootFrom is bootOn resuming the memory snapshot from instead of booting
// when from is set; st must then have a fresh top on from.layer. If the
// image cannot be restored (damaged, from another pyro, for another CPU),
// the disk's top is checked out on from.layer again and the guest boots
// from it: resumed is false and note says why.
func (w *workspace) bootFrom(ctx context.Context, st *disk.Stack, release func(), plan bootPlan) (resumed bool, note string, err error) {
	from := plan.from
	w.mu.Lock()
	rec := w.rec.clone()
	w.mu.Unlock()
	e, err := w.m.loadEnv(ctx, rec.Env)
	if err != nil {
		st.Close()
		release()
		return false, "", err
	}
	reserve := w.m.reserveMem
	w.mu.Lock()
	if w.standby {
		reserve = w.m.reserveStandbyMem
	}
	w.mu.Unlock()
	memRelease, err := reserve(rec.ID, rec.MemMiB)
	if err != nil {
		st.Close()
		release()
		return false, "", err
	}
	slotRelease := release
	release = func() { memRelease(); slotRelease() }
	wn, nb, err := w.m.startNet(rec)
	if err != nil {
		st.Close()
		release()
		return false, "", err
	}
	console, _ := os.OpenFile(filepath.Join(w.dir, consoleName), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	cw := &cappedWriter{f: console, max: consoleCap, secrets: w.redactor}
	spec := bootSpec{Env: e, Disk: st, DiskID: rec.ID, VCPUs: rec.VCPUs, MemMiB: rec.MemMiB,
		Console: cw, Logger: w.m.log.With("workspace", rec.ID), Net: nb}
	var b *booted
	if from != nil {
		contract.Progress(ctx, "resuming the "+rec.Env+" microVM from its memory image", 0, 0)
		spec.Restore = from.dir
		b, err = w.m.boot(ctx, spec)
		if err != nil && ctx.Err() == nil {
			w.m.log.Warn("resuming a memory snapshot failed; booting from its disk layer", "workspace", rec.ID, "image", from.dir, "err", err)
			note = "the memory image could not be resumed (" + firstLine(err.Error()) + "); the guest booted from the snapshot's disk instead"
			// The failed guest may have written to the top: start it
			// afresh on the snapshot's layer.
			if cerr := st.Checkout(from.layer); cerr != nil {
				err = fmt.Errorf("%w; and checking the disk layer out again: %v", err, cerr)
			} else {
				spec.Restore = ""
				err = nil
			}
		}
		resumed = err == nil && spec.Restore != ""
	}
	if err == nil && !resumed {
		contract.Progress(ctx, "booting the "+rec.Env+" microVM", 0, 0)
		b, err = w.m.boot(ctx, spec)
	}
	if err != nil {
		wn.close()
		cw.Close()
		st.Close()
		release()
		return false, "", err
	}
	if !resumed && plan.coldBooted != nil {
		plan.coldBooted(b, st)
	}
	wn.relayThrough(b.Agent, w.m.log.With("workspace", rec.ID))
	if err := w.pushSecrets(ctx, b.Agent); err != nil {
		b.VM.Close()
		wn.close()
		cw.Close()
		st.Close()
		release()
		return false, "", err
	}
	contract.Progress(ctx, "guest agent ready", 0, 0)
	hctx, cancel := context.WithCancel(context.Background())
	h := &vmHandle{booted: b, stack: st, net: wn, ctx: hctx, cancel: cancel, release: release, console: cw,
		inherited: resumed && plan.kind != contract.BootWarm}
	if resumed && !from.quiet {
		// The image may hold running services: stop, reset and delete
		// end them first, as on a VM that started some.
		h.services.Store(true)
	}
	w.mu.Lock()
	w.vm = h
	w.rec.Boot, w.rec.BootNote = contract.BootCold, note
	if resumed {
		w.rec.Boot = plan.kind
	}
	w.mu.Unlock()
	go w.watch(h)
	return resumed, note, nil
}

// watch notices a VM that stops by itself (the guest powered off or
// crashed) and marks the workspace stopped.
func (w *workspace) watch(h *vmHandle) {
	select {
	case <-h.VM.Done():
	case <-h.ctx.Done():
		if h.stopping.Load() {
			return
		}
		<-h.VM.Done()
	}
	if h.stopping.Load() {
		return
	}
	h.cancel() // end the calls in flight
	w.op.Lock()
	defer w.op.Unlock()
	w.mu.Lock()
	mine, standby := w.vm == h, w.standby
	w.mu.Unlock()
	if !mine || standby && w.m.standbyStopped(w, h.VM) {
		return
	}
	// Release the disk before the workspace reads as stopped, so that a
	// start right after never finds it still open.
	h.teardown()
	w.mu.Lock()
	w.vm = nil
	w.state = contract.StateStopped
	why, logged := "the guest powered off, rebooted or crashed", []any{"id", w.id}
	if res, ok := stopResultOf(h.VM); ok {
		why, logged = stopSummary(res), append(logged, stopCause(res)...)
	}
	w.rec.Error = "the VM stopped by itself (" + why + "); {{start}} boots it again"
	w.saveLocked()
	w.mu.Unlock()
	w.m.log.Warn("workspace VM stopped by itself", logged...)
	w.logLife(contract.LogLife, "stopped", "the VM stopped by itself", w.m.now())
}

// destroy removes the workspace: VM, disk, records. The caller holds op
// exclusively. The directory is first renamed aside (atomically), so a
// crash mid-removal leaves nothing that Open would list.
func (w *workspace) destroy() error {
	w.killVM()
	crashAt("delete:killed")
	w.m.mu.Lock()
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	delete(w.m.ws, w.id)
	w.m.mu.Unlock()
	w.journal.close()
	defer w.releaseOwner()
	// Under the scan lock, so that another server's scan sees the
	// directory whole or not at all, never half removed.
	return w.m.withScanLock(func() error {
		gone := filepath.Join(filepath.Dir(w.dir), ".deleting-"+w.id)
		if err := os.Rename(w.dir, gone); err != nil && !errors.Is(err, os.ErrNotExist) {
			return contract.Internal("removing the workspace directory", err)
		}
		syncDir(filepath.Dir(w.dir))
		crashAt("delete:renamed")
		if err := os.RemoveAll(gone); err != nil {
			return contract.Internal("removing the workspace directory", err)
		}
		return nil
	})
}

// diskFiles are what deleting an expired workspace's disk removes: the
// disk layers, the baseline's copy of /workspace, exec output, patches
// and the console log. The record and journal stay, to say what it was.
var diskFiles = []string{diskDir, baselineDir, outDir, diffsDir, consoleName, secretsName}

// retire deletes the disk of a workspace whose retention period after
// expiry has passed (never sooner: deleteAt is checked under op, which
// every start holds), and finishes a deletion that a crash interrupted.
func (w *workspace) retire(now time.Time) {
	w.mu.Lock()
	at, gone := w.diskDeleteAtLocked(), !w.rec.DiskDeletedAt.IsZero()
	w.mu.Unlock()
	if !gone && (at.IsZero() || now.Before(at)) {
		return
	}
	if !w.op.TryLock() {
		return
	}
	defer w.op.Unlock()
	if w.alive() != nil {
		return
	}
	w.mu.Lock()
	at, gone = w.diskDeleteAtLocked(), !w.rec.DiskDeletedAt.IsZero()
	if !gone {
		if at.IsZero() || now.Before(at) || w.vm != nil {
			w.mu.Unlock()
			return
		}
		// The record says so first: a crash before the files go leaves
		// a record the next reap finishes, never a half-deleted disk
		// that a start would try.
		old := w.rec.Snapshots
		w.rec.DiskDeletedAt, w.rec.Snapshots = now, nil // their layers go with the disk
		if err := w.saveLocked(); err != nil {
			w.rec.DiskDeletedAt, w.rec.Snapshots = time.Time{}, old
			w.mu.Unlock()
			w.m.log.Warn("saving the record of a retired workspace", "id", w.id, "err", err)
			return
		}
	}
	w.mu.Unlock()
	removed := false
	for _, name := range diskFiles {
		p := filepath.Join(w.dir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		removed = true
		if err := os.RemoveAll(p); err != nil {
			w.m.log.Warn("deleting a retired workspace's disk", "id", w.id, "path", p, "err", err)
		}
	}
	w.replaceSecrets(nil) // their file went with the disk
	if removed && !gone {
		w.m.log.Info("workspace disk deleted after its retention period", "id", w.id)
		w.logLife(contract.LogLife, "retire", fmt.Sprintf("disk deleted: expired longer than the retention period (%v)", w.m.opts.Retention), now)
	}
}

// releaseOwner gives up the workspace's ownership (its flock).
func (w *workspace) releaseOwner() {
	w.ownerOnce.Do(func() {
		if w.owner != nil {
			w.owner.Close()
		}
	})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
