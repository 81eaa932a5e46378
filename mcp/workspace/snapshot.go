package workspace

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Snapshots are frozen layers of the workspace's disk.Stack, so they
// capture the whole guest disk (installed packages too) and cost no copy.
// The stack's layers form a tree: Reset checks out the target layer (the
// disk's writable top is discarded and a new one started on the target),
// so the baseline and every snapshot survive a reset to any of them.
// Deleting a snapshot forgets its name and deletes its layer unless other
// layers build on it (a later snapshot, or the disk as it is now); such a
// layer is deleted by a later SnapshotDelete or Reset once nothing builds
// on it (pruneLayers).

// snapshotLabel is the disk layer label of snapshot name.
func snapshotLabel(name string) string { return "snapshot:" + name }

// SnapshotCreate implements contract.Backend. A running workspace's guest
// syncs and freezes its file system around the disk freeze; a stopped
// one's disk is frozen as it is.
func (m *Manager) SnapshotCreate(ctx context.Context, req contract.SnapshotRequest) (contract.Snapshot, error) {
	id, name := req.ID, req.Name
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return contract.Snapshot{}, contract.Invalid("snapshot name %q is not valid", name)
	}
	w, err := m.get(id)
	if err != nil {
		return contract.Snapshot{}, err
	}
	w.touch()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return contract.Snapshot{}, err
	}
	if err := w.diskGone(); err != nil {
		return contract.Snapshot{}, err
	}
	w.mu.Lock()
	exists := slices.ContainsFunc(w.rec.Snapshots, func(s snapRecord) bool { return s.Name == name })
	state := w.state
	count := len(w.rec.Snapshots)
	w.mu.Unlock()
	if exists {
		return contract.Snapshot{}, contract.Exists(contract.ResourceSnapshot, name).
			WithHint("Snapshot names are unique in a workspace; pick another or delete the old one ({{snapshot.delete}}).")
	}
	if count >= maxSnapshots {
		return contract.Snapshot{}, contract.LimitReached("workspace %s has %d snapshots, the most a workspace keeps", id, count).
			WithHint("Delete a snapshot you no longer need ({{snapshot.list}}, {{snapshot.delete}}), then retry.")
	}
	if err := m.checkFree("taking a snapshot"); err != nil {
		return contract.Snapshot{}, err
	}
	if state == contract.StateFailed {
		return contract.Snapshot{}, contract.Stopped(id, state)
	}
	start := m.now()
	t0 := time.Now()
	var (
		layer disk.LayerInfo
		mem   memResult
	)
	if h := w.handle(); h != nil {
		if req.DiskOnly {
			layer, err = freezeLayer(ctx, h, snapshotLabel(name))
		} else {
			layer, mem, err = w.memorySnapshot(ctx, h, snapshotLabel(name))
		}
	} else {
		var st *disk.Stack
		if st, err = w.openStack(); err == nil {
			layer, err = st.Freeze(snapshotLabel(name))
			if cerr := st.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err != nil {
		return contract.Snapshot{}, contract.Internal("taking the snapshot", err)
	}
	crashAt("snapshot:frozen")
	dur := time.Since(t0)
	// The record first, then the journal line under the seq it holds: a
	// crash between leaves a recorded snapshot that the next Open journals
	// (reconcileJournal), never a journaled one the record lacks.
	seq := w.journal.reserve()
	s := snapRecord{Name: name, Layer: layer.ID, CreatedAt: start, Seq: seq, Bytes: layer.Allocated + mem.bytes,
		Memory: mem.rel, MemoryBytes: mem.bytes, Quiet: mem.rel != "" && mem.quiet}
	w.mu.Lock()
	w.rec.Snapshots = append(w.rec.Snapshots, s)
	err = w.saveLocked()
	if err != nil {
		w.rec.Snapshots = w.rec.Snapshots[:len(w.rec.Snapshots)-1]
	}
	w.mu.Unlock()
	if err != nil {
		w.removeMemory(mem.rel)
		return contract.Snapshot{}, contract.Internal("saving the workspace record", err)
	}
	crashAt("snapshot:recorded")
	detail := fmt.Sprintf("disk layer %s, %d bytes", layer.ID, layer.Allocated)
	if mem.rel != "" {
		detail += fmt.Sprintf("; memory image %d bytes (%d of %d pages written) in %v", mem.bytes, mem.stats.Memory.Written, mem.stats.Memory.Pages, mem.stats.Took.Round(time.Millisecond))
	} else if mem.note != "" {
		detail += "; " + mem.note
	}
	if _, jerr := w.journal.append(entry{Seq: seq, Time: start, Kind: contract.LogSnapshot, Command: "snapshot " + name,
		Duration: int64(dur), Detail: detail}); jerr != nil {
		m.log.Warn("writing the journal", "id", id, "err", jerr)
	}
	m.log.Info("snapshot", "id", id, "name", name, "took", dur, "memory", mem.rel != "")
	v := s.view()
	v.Note = mem.note
	return v, nil
}

func (s snapRecord) view() contract.Snapshot {
	return contract.Snapshot{Name: s.Name, CreatedAt: s.CreatedAt, Seq: s.Seq, Bytes: s.Bytes,
		Memory: s.Memory != "", MemoryBytes: s.MemoryBytes}
}

// SnapshotList implements contract.Backend.
func (m *Manager) SnapshotList(ctx context.Context, id string) ([]contract.Snapshot, error) {
	w, err := m.get(id)
	if err != nil {
		return nil, err
	}
	w.touch()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]contract.Snapshot, 0, len(w.rec.Snapshots))
	for _, s := range w.rec.Snapshots {
		out = append(out, s.view())
	}
	return out, nil
}

// SnapshotDelete implements contract.Backend. It forgets the name and frees the
// disk layers no name or layer needs any more, this snapshot's if nothing
// builds on it; a layer still in use stays until its dependents go.
func (m *Manager) SnapshotDelete(ctx context.Context, id string, name string) error {
	w, err := m.get(id)
	if err != nil {
		return err
	}
	w.touch()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return err
	}
	w.mu.Lock()
	i := slices.IndexFunc(w.rec.Snapshots, func(s snapRecord) bool { return s.Name == name })
	if i < 0 {
		w.mu.Unlock()
		return w.unknownSnapshot(name)
	}
	old := w.rec.Snapshots
	w.rec.Snapshots = slices.Delete(slices.Clone(old), i, i+1)
	err = w.saveLocked()
	if err != nil {
		w.rec.Snapshots = old
	}
	w.mu.Unlock()
	if err != nil {
		return contract.Internal("saving the workspace record", err)
	}
	crashAt("snapshot-delete:recorded")
	w.removeMemory(old[i].Memory)
	start := m.now()
	detail := fmt.Sprintf("disk layer %s kept: later snapshots or the current disk build on it; its space is freed when they go", old[i].Layer)
	var st *disk.Stack
	if h := w.handle(); h != nil {
		st = h.stack
	} else if st, err = w.openStack(); err != nil {
		m.log.Warn("opening the disk to free the snapshot's layer", "id", id, "err", err)
		detail = fmt.Sprintf("disk layer %s kept (the disk did not open: %v); its space is freed by a later delete or reset", old[i].Layer, err)
		st = nil
	} else {
		defer st.Close()
	}
	if st != nil {
		if freed, bytes := w.pruneLayers(st); freed[old[i].Layer] {
			detail = fmt.Sprintf("disk layers freed: %d, %d bytes", len(freed), bytes)
		}
	}
	w.logLife(contract.LogSnapshot, "snapshot delete "+name, detail, start)
	return nil
}

// pruneLayers deletes the frozen disk layers that neither the baseline nor
// a snapshot names and that no other layer builds on (deleted snapshots',
// or a freeze whose record was never saved), repeatedly, since deleting
// one may free its parent. It returns the IDs deleted and the bytes they
// held. The caller holds op.
func (w *workspace) pruneLayers(st *disk.Stack) (map[string]bool, int64) {
	w.mu.Lock()
	keep := map[string]bool{w.rec.BaselineLayer: true}
	for _, s := range w.rec.Snapshots {
		keep[s.Layer] = true
	}
	w.mu.Unlock()
	freed := map[string]bool{}
	var bytes int64
	for again := true; again; {
		again = false
		for _, l := range st.Layers() {
			if !l.Frozen || keep[l.ID] {
				continue
			}
			switch err := st.DeleteLayer(l.ID); {
			case err == nil:
				freed[l.ID], again = true, true
				bytes += l.Allocated
			case !errors.Is(err, disk.ErrLayerInUse):
				w.m.log.Warn("deleting an unused disk layer", "id", w.id, "layer", l.ID, "err", err)
			}
		}
	}
	return freed, bytes
}

func (w *workspace) unknownSnapshot(name string) error {
	w.mu.Lock()
	var names []string
	for _, s := range w.rec.Snapshots {
		names = append(names, s.Name)
	}
	w.mu.Unlock()
	hint := "This workspace has no snapshots; reset with no snapshot goes back to the baseline."
	if len(names) > 0 {
		hint = "Snapshots of this workspace: " + strings.Join(names, ", ") + "; no snapshot means the baseline."
	}
	return contract.NotFound(contract.ResourceSnapshot, name).WithHint(hint)
}

// Reset implements contract.Backend: the disk's baseline or snapshot layer
// is checked out (its writable top discarded, a new one started on that
// layer) and the guest starts again from it: the running VM rewound in
// place when it runs on the target's memory image (rewind.go), else a new
// VM that resumes the image, or boots when there is none. The baseline and
// every snapshot are kept.
func (m *Manager) Reset(ctx context.Context, id string, snapshot string) (contract.ResetResult, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.ResetResult{}, err
	}
	w.touch()
	w.mu.Lock()
	target := w.rec.BaselineLayer
	// The baseline's image is a warm snapshot's: quiet.
	memRel, quiet := w.rec.BaselineMemory, true
	if snapshot != "" {
		i := slices.IndexFunc(w.rec.Snapshots, func(s snapRecord) bool { return s.Name == snapshot })
		if i < 0 {
			w.mu.Unlock()
			return contract.ResetResult{}, w.unknownSnapshot(snapshot)
		}
		target = w.rec.Snapshots[i].Layer
		memRel, quiet = w.rec.Snapshots[i].Memory, w.rec.Snapshots[i].Quiet
	}
	w.mu.Unlock()

	w.bgEnding("{{reset}} reset the workspace")
	w.interrupt()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return contract.ResetResult{}, err
	}
	if err := w.diskGone(); err != nil {
		return contract.ResetResult{}, err
	}
	start := m.now()
	t0 := time.Now()
	if snapshot != "" {
		contract.Progress(ctx, "restoring snapshot "+snapshot, 0, 0)
	} else {
		contract.Progress(ctx, "restoring the baseline", 0, 0)
	}
	from, note := w.memoryImage(memRel, target, quiet)
	var (
		st       *disk.Stack
		release  func()
		cut      time.Duration
		resumed  bool
		rewound  bool
		freed    map[string]bool
		freedB   int64
		bootNote string
	)
	if h := w.rewindable(from); h != nil {
		if err := w.beginReset(target, snapshot, start); err != nil {
			return contract.ResetResult{}, contract.Internal("saving the workspace record", err)
		}
		crashAt("reset:pending")
		var rerr error
		if cut, st, release, rerr = w.rewind(ctx, h, from, contract.BootMemory); rerr == nil {
			rewound, resumed = true, true
			freed, freedB = w.pruneLayers(h.stack)
		} else if ctx.Err() != nil {
			// The disk may be checked out already: the reset stays
			// pending, and the next start completes it.
			if st != nil {
				st.Close()
				release()
			}
			return contract.ResetResult{}, w.failed("rewinding the VM", rerr)
		} else {
			m.log.Warn("rewinding the running VM in place failed; restoring a new one", "id", id, "err", rerr)
		}
	} else {
		st, release = w.detachVM()
	}
	if !rewound {
		if st == nil {
			if release, err = m.acquireSlot(); err != nil {
				return contract.ResetResult{}, err
			}
			if st, err = w.openStack(); err != nil {
				release()
				return contract.ResetResult{}, w.failed("opening the workspace's disk", err)
			}
		}
		if err := w.beginReset(target, snapshot, start); err != nil {
			st.Close()
			release()
			return contract.ResetResult{}, w.failed("saving the workspace record", err)
		}
		crashAt("reset:pending")
		if err := st.Checkout(target); err != nil {
			st.Close()
			release()
			w.endReset()
			return contract.ResetResult{}, w.failed("checking out the disk layer", err)
		}
		cut = time.Since(t0)
		crashAt("reset:checked-out")
		// The discarded top may have been all that built on a deleted
		// snapshot's layer.
		freed, freedB = w.pruneLayers(st)

		w.mu.Lock()
		w.state = contract.StateCreating
		saveErr := w.saveLocked()
		w.mu.Unlock()
		if saveErr != nil {
			m.log.Warn("saving the record", "id", id, "err", saveErr)
		}

		resumed, bootNote, err = w.bootFrom(ctx, st, release, bootPlan{from: from, kind: contract.BootMemory})
		if bootNote != "" {
			note = bootNote
		}
		if err != nil {
			if contract.IsCode(err, contract.CodeLimit) {
				// The host's memory went to other VMs meanwhile: the disk is
				// reset, the VM not booted; workspace_start boots it later.
				w.mu.Lock()
				w.state = contract.StateStopped
				w.saveLocked()
				w.mu.Unlock()
				return contract.ResetResult{}, err
			}
			return contract.ResetResult{}, w.failed("booting after the reset", err)
		}
	}
	crashAt("reset:booted")
	dur := time.Since(t0)
	detail := "baseline"
	if snapshot != "" {
		detail = "snapshot " + snapshot
	}
	detail += fmt.Sprintf("; disk layer checked out in %v", cut.Round(time.Microsecond))
	switch {
	case rewound:
		detail += "; the running VM rewound in place to its memory image"
	case resumed:
		detail += "; resumed from its memory image"
	case note != "":
		detail += "; " + note
	}
	if len(freed) > 0 {
		detail += fmt.Sprintf("; freed %d unused disk layers, %d bytes", len(freed), freedB)
	}
	seq, jerr := w.journal.append(entry{Time: start, Kind: contract.LogReset, Command: "reset", Detail: detail, Duration: int64(dur)})
	if jerr != nil {
		m.log.Warn("writing the journal", "id", id, "err", jerr)
	}
	w.mu.Lock()
	w.state = contract.StateRunning
	w.rec.Error = ""
	w.rec.ResetAt, w.rec.ResetFrom, w.rec.ResetSeq = start, snapshot, seq
	w.rec.ResetPending = nil
	err = w.saveLocked()
	w.mu.Unlock()
	if err != nil {
		return contract.ResetResult{}, contract.Internal("saving the workspace record", err)
	}
	m.log.Info("reset", "id", id, "to", detail, "took", dur)
	return contract.ResetResult{Workspace: w.view(), Snapshot: snapshot, Duration: dur, Memory: resumed, Note: note}, nil
}
