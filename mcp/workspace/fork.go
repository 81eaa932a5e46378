package workspace

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Forks. A fork is a new workspace that starts as an exact copy of
// another at one instant: its running state (a memory snapshot taken for
// the fork) or one of its snapshots. Its disk is a new stack whose frozen
// layers are the source's chain up to that instant, shared by hard link
// (disk.Fork), with a writable top of its own; its memory is the source's
// image mapped copy-on-write, so the pages no fork writes are shared by
// all of them through the host's page cache. A fork keeps the source's
// environment, shape, seed, baseline (its diff is against the same
// starting point), grants and secrets; not its snapshots, published
// ports, name or journal.

// forkLabel labels the disk layer frozen for a fork of the running state.
const forkLabel = "fork"

// Fork implements contract.Forker.
func (m *Manager) Fork(ctx context.Context, req contract.ForkRequest) (contract.ForkResult, error) {
	begin := time.Now()
	if err := contract.ValidateFork(&req); err != nil {
		return contract.ForkResult{}, err
	}
	src, err := m.get(req.ID)
	if err != nil {
		return contract.ForkResult{}, err
	}
	src.touch()
	for _, n := range req.Names {
		m.mu.Lock()
		taken := m.nameTaken(n, nil)
		m.mu.Unlock()
		if taken {
			return contract.ForkResult{}, contract.Exists(contract.ResourceWorkspace, n).
				WithHint("Names are unique among workspaces; pick others, or leave names out.")
		}
	}
	if err := m.checkFree("forking a workspace"); err != nil {
		return contract.ForkResult{}, err
	}
	// The source holds still while it is copied: no reset, delete or
	// snapshot change under the forks.
	src.op.Lock()
	point, err := src.forkPoint(ctx, req.Snapshot)
	if err != nil {
		src.op.Unlock()
		return contract.ForkResult{}, err
	}
	src.mu.Lock()
	rec := src.rec.clone()
	src.mu.Unlock()
	secrets := src.secrets()
	stackDir := filepath.Join(src.dir, diskDir)
	baseline := filepath.Join(src.dir, baselineDir)
	var forks []*workspace
	for i := range req.Count {
		name := ""
		if i < len(req.Names) {
			name = req.Names[i]
		}
		fw, err := m.forkOne(rec, secrets, stackDir, baseline, point, name, req.Labels)
		if err != nil {
			for _, f := range forks {
				m.discard(f)
			}
			src.op.Unlock()
			point.cleanup()
			return contract.ForkResult{}, err
		}
		forks = append(forks, fw)
	}
	// The forks' disks and images are their own (hard links) from here.
	src.op.Unlock()

	res := contract.ForkResult{Source: src.id, Snapshot: req.Snapshot, Memory: point.mem != nil}
	errs := make([]error, len(forks))
	notes := make([]string, len(forks))
	resumed := make([]bool, len(forks))
	done := make(chan int)
	for i, fw := range forks {
		go func() {
			resumed[i], notes[i], errs[i] = fw.startFork(ctx, point)
			done <- i
		}()
	}
	for range forks {
		<-done
	}
	point.cleanup()
	if err := errors.Join(errs...); err != nil {
		for _, f := range forks {
			m.discard(f)
		}
		return contract.ForkResult{}, err
	}
	for i, fw := range forks {
		res.Forks = append(res.Forks, fw.view())
		if !resumed[i] {
			res.Memory = false
		}
		if notes[i] != "" {
			res.Note = notes[i]
		}
	}
	if point.note != "" && res.Note == "" {
		res.Note = point.note
	}
	res.Duration = time.Since(begin)
	detail := fmt.Sprintf("%d forks", len(forks))
	if req.Snapshot != "" {
		detail += " of snapshot " + req.Snapshot
	}
	for _, f := range forks {
		detail += " " + f.id
	}
	src.logLife(contract.LogLife, "fork", detail, m.now().Add(-res.Duration))
	m.log.Info("forked", "id", src.id, "forks", len(forks), "memory", res.Memory, "took", res.Duration)
	return res, nil
}

// forkSource is the instant forks start from: a frozen disk layer of the
// source and, when the source was running, a memory image taken with it.
type forkSource struct {
	layer string
	mem   *memImage
	note  string
	// temp is a memory image taken for this fork alone, deleted once the
	// forks have their own links to it.
	temp string
	w    *workspace
}

func (p *forkSource) cleanup() {
	if p.temp != "" {
		p.w.removeMemory(p.temp)
		p.temp = ""
	}
}

// forkPoint freezes the instant forks start from: snapshot's layer and
// image, or for "" the running state now (a stopped workspace's disk
// as it is). The caller holds op.
func (w *workspace) forkPoint(ctx context.Context, snapshot string) (*forkSource, error) {
	if err := w.alive(); err != nil {
		return nil, err
	}
	if err := w.diskGone(); err != nil {
		return nil, err
	}
	w.mu.Lock()
	state := w.state
	created := w.rec.BaselineLayer != ""
	w.mu.Unlock()
	if !created || state == contract.StateFailed || state == contract.StateCreating {
		return nil, contract.Stopped(w.id, state)
	}
	p := &forkSource{w: w}
	if snapshot != "" {
		w.mu.Lock()
		i := slices.IndexFunc(w.rec.Snapshots, func(s snapRecord) bool { return s.Name == snapshot })
		var s snapRecord
		if i >= 0 {
			s = w.rec.Snapshots[i]
		}
		w.mu.Unlock()
		if i < 0 {
			return nil, w.unknownSnapshot(snapshot)
		}
		p.layer = s.Layer
		p.mem, p.note = w.memoryImage(s.Memory, s.Layer, s.Quiet)
		if s.Memory == "" {
			p.note = "snapshot " + snapshot + " holds the disk only: the forks booted from it"
		}
		return p, nil
	}
	label := forkLabel + ":" + randomName()
	h := w.handle()
	if h == nil {
		st, err := w.openStack()
		if err != nil {
			return nil, contract.Internal("opening the workspace's disk", err)
		}
		layer, err := st.Freeze(label)
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, contract.Internal("freezing the disk for the fork", err)
		}
		p.layer = layer.ID
		p.note = "the workspace was not running: the forks booted from its disk"
		return p, nil
	}
	layer, mem, err := w.memorySnapshot(ctx, h, label)
	if err != nil {
		return nil, contract.Internal("freezing the workspace for the fork", err)
	}
	p.layer, p.note, p.temp = layer.ID, mem.note, mem.rel
	if mem.rel != "" {
		p.mem = &memImage{dir: filepath.Join(w.dir, mem.rel), layer: layer.ID, quiet: mem.quiet}
	}
	return p, nil
}

// forkOne makes one fork's directory, disk, baseline and record, and
// publishes it (state creating). The source's op is held.
func (m *Manager) forkOne(rec record, secrets []secretEntry, stackDir, baseline string, p *forkSource, name string, labels map[string]string) (_ *workspace, err error) {
	id, dir, owner, err := m.newDir()
	if err != nil {
		return nil, contract.Internal("creating the fork's directory", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			owner.Close()
		}
	}()
	st, err := disk.Fork(stackDir, p.layer, filepath.Join(dir, diskDir))
	if err != nil {
		return nil, contract.Internal("forking the disk", err)
	}
	if err := st.Close(); err != nil {
		return nil, contract.Internal("forking the disk", err)
	}
	if err := linkTree(baseline, filepath.Join(dir, baselineDir)); err != nil {
		return nil, contract.Internal("copying the baseline index", err)
	}
	now := m.now()
	r := record{ID: id, Name: name, Env: rec.Env, CreatedAt: now, LastActive: now, TTLSeconds: rec.TTLSeconds,
		VCPUs: rec.VCPUs, MemMiB: rec.MemMiB, DiskMiB: rec.DiskMiB, Seed: rec.Seed, BaselineLayer: rec.BaselineLayer,
		Network: slices.Clone(rec.Network)}
	if len(rec.Labels)+len(labels) > 0 {
		r.Labels = maps.Clone(rec.Labels)
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		maps.Copy(r.Labels, labels)
	}
	w := &workspace{m: m, id: id, dir: dir, owner: owner, state: contract.StateCreating,
		journal: &journal{path: filepath.Join(dir, journalName), next: 1}, rec: r}
	w.journal.redact = w.redactText
	if err := w.initSecrets(secrets); err != nil {
		return nil, err
	}
	w.mu.Lock()
	err = w.saveLocked()
	w.mu.Unlock()
	if err != nil {
		return nil, contract.Internal("saving the fork's record", err)
	}
	m.mu.Lock()
	if m.nameTaken(name, nil) {
		m.mu.Unlock()
		return nil, contract.Exists(contract.ResourceWorkspace, name).
			WithHint("Names are unique among workspaces; pick others, or leave names out.")
	}
	m.ws[id] = w
	m.mu.Unlock()
	return w, nil
}

// startFork boots fork w from p: its image resumed when there is one.
func (w *workspace) startFork(ctx context.Context, p *forkSource) (resumed bool, note string, err error) {
	w.op.Lock()
	defer w.op.Unlock()
	release, err := w.m.acquireSlot()
	if err != nil {
		return false, "", err
	}
	st, err := w.openStack()
	if err != nil {
		release()
		return false, "", contract.Internal("opening the fork's disk", err)
	}
	var from *memImage
	if p.mem != nil {
		from = &memImage{dir: p.mem.dir, layer: p.layer, quiet: p.mem.quiet}
	}
	start := w.m.now()
	resumed, note, err = w.bootFrom(ctx, st, release, bootPlan{from: from, kind: contract.BootFork})
	if err != nil {
		return false, "", err
	}
	w.mu.Lock()
	w.state = contract.StateRunning
	err = w.saveLocked()
	w.mu.Unlock()
	if err != nil {
		return false, "", contract.Internal("saving the fork's record", err)
	}
	detail := "fork of " + p.w.id
	if resumed {
		detail += ", resumed from its memory"
	}
	w.logLife(contract.LogLife, "create", detail, start)
	return resumed, note, nil
}

// discard removes a fork that could not be made whole.
func (m *Manager) discard(w *workspace) {
	w.killVM()
	m.mu.Lock()
	delete(m.ws, w.id)
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	m.mu.Unlock()
	w.journal.close()
	os.RemoveAll(w.dir)
	w.releaseOwner()
}

// linkTree recreates the tree src at dst (which must not exist) with hard
// links to src's files, copying where a link is refused.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0o700)
		case d.Type().IsRegular():
			if err := os.Link(p, to); err == nil {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o600)
		}
		return nil
	})
}
