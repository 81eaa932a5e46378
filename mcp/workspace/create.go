package workspace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/guest/instance"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/mcp/treediff"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// baselineLabel is the disk layer name of the baseline.
const baselineLabel = "baseline"

// Create implements contract.Backend: it boots a VM on a fresh copy-on-write
// layer over the environment's image (or resumes the environment's warm
// snapshot, or takes the standby VM restored from it: standby.go), seeds
// /workspace, and records the baseline (a frozen disk layer and a treediff
// index of /workspace).
// On any failure everything it made is removed.
func (m *Manager) Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error) {
	w, err := m.create(ctx, req)
	if err != nil {
		return contract.Workspace{}, err
	}
	return w.view(), nil
}

func (m *Manager) create(ctx context.Context, req contract.CreateRequest) (_ *workspace, err error) {
	if err := m.admitCreate(req.MemMiB); err != nil {
		return nil, err
	}
	start := m.now()
	envName, err := m.envName(req.Env)
	if err != nil {
		return nil, err
	}
	seedKind, seedPath, err := m.seedSource(req.Seed)
	if err != nil {
		return nil, err
	}
	grants, err := canonicalGrants(req.Network)
	if err != nil {
		return nil, err
	}
	secrets, err := m.readSecrets(req.Secrets)
	if err != nil {
		return nil, err
	}
	vcpus, mem := req.VCPUs, req.MemMiB
	if vcpus <= 0 {
		vcpus = m.opts.DefaultVCPUs
	}
	if mem <= 0 {
		mem = m.opts.DefaultMemMiB
	}
	// Fail fast, before any disk work, on an environment that is not built.
	e, err := m.loadEnv(ctx, envName)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(e.Rootfs)
	if err != nil {
		return nil, contract.Internal("reading the environment's root filesystem", err)
	}
	diskMiB, err := m.diskSize(req.DiskMiB, envName, fi.Size())
	if err != nil {
		return nil, err
	}

	// The standby VM, when it fits, is this workspace already booted:
	// its directory, disk and running slot become this one's.
	sb := m.takeStandby(e, vcpus, mem, diskMiB)
	var w *workspace
	if sb != nil {
		w = sb.w
	} else {
		id, dir, owner, err := m.newDir()
		if err != nil {
			return nil, contract.Internal("creating the workspace directory", err)
		}
		w = &workspace{m: m, id: id, dir: dir, owner: owner, journal: &journal{path: filepath.Join(dir, journalName), next: 1}}
		w.journal.redact = w.redactText
	}
	id, dir, owner := w.id, w.dir, w.owner
	defer func() {
		if err != nil {
			owner.Close() // after the directory is gone: deferred first
		}
	}()
	crashAt("create:dir")
	now := m.now()
	w.mu.Lock()
	w.state = contract.StateCreating
	w.rec = record{ID: id, Name: req.Name, Labels: req.Labels, Env: envName, CreatedAt: now, LastActive: now,
		TTLSeconds: req.TTLSeconds, VCPUs: vcpus, MemMiB: mem, DiskMiB: diskMiB, Seed: contract.SeedReport{Kind: seedKind, Source: seedPath},
		Network: grants}
	if len(w.rec.Labels) == 0 {
		w.rec.Labels = nil
	}
	w.mu.Unlock()
	w.op.Lock() // held until the workspace is whole: other calls on it wait
	defer w.op.Unlock()

	// Publish it (state creating) with its name and running slot
	// reserved (a standby's VM holds its own).
	release := func() {}
	if sb == nil {
		if release, err = m.acquireSlot(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	m.mu.Lock()
	if m.nameTaken(req.Name, nil) {
		m.mu.Unlock()
		release()
		w.killVM()
		os.RemoveAll(dir)
		return nil, contract.Exists(contract.ResourceWorkspace, req.Name).
			WithHint("Names are unique among workspaces; pick another, or use the existing one ({{list}}).")
	}
	m.ws[id] = w
	m.mu.Unlock()

	defer func() {
		if err == nil {
			return
		}
		m.log.Warn("create failed; removing the workspace", "id", id, "err", err)
		w.killVM()
		m.mu.Lock()
		delete(m.ws, id)
		w.mu.Lock()
		w.deleted = true
		w.mu.Unlock()
		m.mu.Unlock()
		w.journal.close()
		os.RemoveAll(dir)
	}()

	if err := w.initSecrets(secrets); err != nil {
		release()
		return nil, err
	}
	var (
		plan          bootPlan
		resumed, kept bool
	)
	if sb != nil {
		plan = sb.plan
		crashAt("create:disk")
		resumed, kept, err = w.adopt(ctx, sb)
	} else {
		var st *disk.Stack
		st, plan, err = m.newDisk(e, dir, vcpus, mem, diskMiB)
		if err != nil {
			release()
			return nil, contract.Internal("creating the workspace's disk", err)
		}
		crashAt("create:disk")
		resumed, _, err = w.bootFrom(ctx, st, release, plan)
	}
	if err != nil {
		if ctx.Err() != nil || contract.IsCode(err, contract.CodeEnvMissing) || contract.IsCode(err, contract.CodeLimit) {
			return nil, err
		}
		hint := "Run `pyro kvm-check` on the host to see whether this machine can run microVMs."
		if errors.Is(err, instance.ErrStopped) {
			hint = "The microVM stopped while it booted (the message says how). Create the workspace again; " +
				"if it keeps happening, run `pyro doctor` on the host and report the message."
		}
		return nil, &contract.Error{Code: contract.CodeInternal, Err: err,
			Msg: "booting " + envName + " failed: " + firstLine(err.Error()), Hint: hint}
	}
	h := w.handle()
	// Seeding and the baseline talk to the guest: bound them, so that a
	// guest that stops answering fails the create instead of hanging it.
	bctx, cancel := context.WithTimeout(ctx, agentCallTimeout)
	defer cancel()
	stuck := func(what string, err error) error {
		if bctx.Err() != nil && ctx.Err() == nil {
			return contract.Timeout("the guest agent stopped answering while %s (no answer within %v)", what, agentCallTimeout).
				WithHint("Create the workspace again; if it keeps failing, run `pyro kvm-check` on the host.")
		}
		return err
	}

	// /workspace (the warm snapshot has it), then the seed. Unseeded, a
	// create from the warm snapshot is that snapshot (asIs).
	warm := resumed && plan.kind == contract.BootWarm && plan.baseline != ""
	asIs := warm && seedKind == contract.SeedNone
	if !warm {
		if res, err := h.Agent.Exec(bctx, execMkdir(hostio.Workspace), nil, nil); err != nil || res.ExitCode != 0 {
			return nil, stuck("creating /workspace", contract.Internal("creating /workspace in the guest", errors.Join(err, fmt.Errorf("mkdir exit %d", res.ExitCode))))
		}
	}
	if seedKind != contract.SeedNone {
		contract.Progress(ctx, "seeding /workspace from "+seedPath, 0, 0)
		rep, err := pushTar(bctx, h.Files, hostio.Workspace, func(out io.Writer) (*hostio.Report, error) {
			return produceSeed(bctx, out, seedKind, seedPath)
		})
		if err != nil {
			return nil, stuck("seeding /workspace", hostErr("seeding /workspace from "+seedPath, seedPath, err))
		}
		w.mu.Lock()
		w.rec.Seed.Files, w.rec.Seed.Bytes, w.rec.Seed.Skipped = rep.Files, rep.Bytes, skipped(rep)
		w.mu.Unlock()
	}

	// The baseline: a frozen disk layer and an index of /workspace.
	w.mu.Lock()
	seeded := w.rec.Seed.Files
	w.mu.Unlock()
	if seedKind != contract.SeedNone {
		contract.Progress(ctx, fmt.Sprintf("recording the baseline (%d files seeded)", seeded), 0, 0)
	} else {
		contract.Progress(ctx, "recording the baseline", 0, 0)
	}
	var layer disk.LayerInfo
	var rc io.ReadCloser
	if asIs {
		// The guest is as the warm snapshot left it: its layer and
		// index are the baseline.
		layer.ID = plan.from.layer
		rc, err = os.Open(plan.baseline)
		if err != nil {
			return nil, contract.Internal("reading the warm snapshot's baseline", err)
		}
	} else {
		layer, err = freezeLayer(bctx, h, baselineLabel)
		if err != nil {
			return nil, stuck("recording the baseline", contract.Internal("recording the baseline", err))
		}
		crashAt("create:baseline-layer")
		rc, err = h.Files.TarOut(bctx, hostio.Workspace)
		if err != nil {
			return nil, stuck("reading /workspace", contract.Internal("reading /workspace for the baseline", err))
		}
	}
	_, err = treediff.WriteBaseline(filepath.Join(dir, baselineDir), rc)
	rc.Close()
	if err != nil {
		return nil, stuck("reading /workspace", contract.Internal("writing the baseline index", err))
	}
	crashAt("create:baseline-index")

	// An unseeded create from a warm snapshot is that snapshot: keep its
	// image, so that a reset to the baseline resumes it. (Across file
	// systems it cannot be linked, and such a reset boots.)
	var baseMem string
	if asIs {
		if baseMem, err = w.linkImage(plan.from.dir); err != nil {
			m.log.Info("the baseline keeps no memory image; a reset to it will boot", "id", id, "err", err)
			baseMem = ""
		}
	}

	// Commit: the record makes the workspace exist for the next Open.
	w.mu.Lock()
	w.rec.BaselineLayer = layer.ID
	w.rec.BaselineMemory = baseMem
	w.state = contract.StateRunning
	err = w.saveLocked()
	seed := w.rec.Seed
	w.mu.Unlock()
	if err != nil {
		return nil, contract.Internal("saving the workspace record", err)
	}
	crashAt("create:recorded")
	detail := fmt.Sprintf("env %s, seed %s", envName, seedKind)
	if seedKind != contract.SeedNone {
		detail += fmt.Sprintf(" from %s: %d files, %d bytes", seedPath, seed.Files, seed.Bytes)
	}
	if kept {
		detail += "; " + standbyDetail
	}
	w.logLife(contract.LogLife, "create", detail, start)
	m.log.Info("workspace created", "id", id, "env", envName, "standby", sb != nil, "took", m.now().Sub(start))
	m.fillStandby(e, vcpus, mem, diskMiB)
	return w, nil
}

// newDisk makes a new workspace's disk in dir and says how to start its
// guest: from the environment's warm snapshot for this shape when there
// is one (the disk then shares its frozen layer), else by booting, and
// taking the warm snapshot on the way when warm snapshots are on.
func (m *Manager) newDisk(e *env.Env, dir string, vcpus, mem, diskMiB int) (*disk.Stack, bootPlan, error) {
	stackDir := filepath.Join(dir, diskDir)
	if ws := m.findWarm(e, vcpus, mem, diskMiB); ws != nil {
		st, plan, err := forkWarm(ws, stackDir)
		if err == nil {
			return st, plan, nil
		}
		m.log.Warn("using the warm snapshot's disk; booting instead", "env", e.Name, "err", err)
		os.RemoveAll(stackDir)
	}
	st, err := disk.Create(stackDir, e.Rootfs, int64(diskMiB)<<20)
	if err != nil {
		return nil, bootPlan{}, err
	}
	var plan bootPlan
	if m.opts.WarmSnapshots {
		plan.coldBooted = func(b *booted, st *disk.Stack) {
			if sn, ok := b.VM.(snapshotter); ok {
				m.captureWarm(e, vcpus, mem, diskMiB, b, sn, st, stackDir)
			}
		}
	}
	return st, plan, nil
}

// forkWarm makes a disk in stackDir on warm snapshot ws's layer, and the
// plan that resumes ws on it.
func forkWarm(ws *warmSnap, stackDir string) (*disk.Stack, bootPlan, error) {
	st, err := disk.Fork(ws.disk(), ws.info.Layer, stackDir)
	if err != nil {
		return nil, bootPlan{}, err
	}
	return st, bootPlan{from: &memImage{dir: ws.memory(), layer: ws.info.Layer, quiet: true}, kind: contract.BootWarm, baseline: ws.baseline()}, nil
}

// diskSize picks a new workspace's disk size in MiB: the request's, else
// the default, and never less than the environment's image (imageBytes),
// which the guest's root file system is grown from. An explicit size
// smaller than the image, or beyond contract.MaxDiskMiB, is refused.
func (m *Manager) diskSize(req int, envName string, imageBytes int64) (int, error) {
	imageMiB := int((imageBytes + 1<<20 - 1) >> 20)
	if req == 0 {
		return min(contract.MaxDiskMiB, max(m.opts.DefaultDiskMiB, imageMiB)), nil
	}
	if req < imageMiB || req > contract.MaxDiskMiB {
		return 0, contract.Invalid("disk_mib %d does not fit: %s's image is %d MiB, so the disk must be between %d and %d MiB",
			req, envName, imageMiB, imageMiB, contract.MaxDiskMiB).
			WithHint(fmt.Sprintf("Give disk_mib between %d and %d, or leave it out for the default (%d MiB; the disk is sparse, so a large one costs host space only as it fills).",
				imageMiB, contract.MaxDiskMiB, max(m.opts.DefaultDiskMiB, imageMiB)))
	}
	return req, nil
}

// newDir makes StateDir/workspaces/ID for a fresh random ID and takes its
// ownership, both under the scan lock: no other server's scan can take it
// for a create that crashed.
func (m *Manager) newDir() (id, dir string, owner *os.File, err error) {
	err = m.withScanLock(func() error {
		for range 16 {
			var b [4]byte
			rand.Read(b[:])
			id = "ws-" + hex.EncodeToString(b[:])
			dir = filepath.Join(m.root, id)
			err := os.Mkdir(dir, 0o700)
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if err != nil {
				return err
			}
			f, ok, err := claim(dir)
			if err == nil && !ok {
				err = errors.New("a new workspace directory was locked by someone else")
			}
			if err != nil {
				os.RemoveAll(dir)
				return err
			}
			for _, sub := range []string{outDir, diffsDir} {
				if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
					os.RemoveAll(dir)
					f.Close()
					return err
				}
			}
			owner = f
			return nil
		}
		return errors.New("no free workspace ID")
	})
	return id, dir, owner, err
}

// freezeLayer checkpoints the running VM's disk: the guest syncs and
// freezes its root file system, the disk's top layer is frozen under
// label, and the guest thaws.
func freezeLayer(ctx context.Context, h *vmHandle, label string) (disk.LayerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, agentCallTimeout) // a guest that stops answering
	defer cancel()
	if err := h.Agent.Sync(ctx); err != nil {
		return disk.LayerInfo{}, fmt.Errorf("syncing the guest: %w", err)
	}
	if err := h.Agent.Freeze(ctx, "/"); err != nil {
		return disk.LayerInfo{}, fmt.Errorf("freezing the guest file system: %w", err)
	}
	layer, ferr := h.stack.Freeze(label)
	// Thaw whatever happened, even if ctx has ended: a frozen guest
	// blocks every writer.
	tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	terr := h.Agent.Thaw(tctx, "/")
	if ferr != nil {
		return disk.LayerInfo{}, fmt.Errorf("freezing the disk layer: %w", ferr)
	}
	if terr != nil {
		return disk.LayerInfo{}, fmt.Errorf("thawing the guest file system: %w", terr)
	}
	return layer, nil
}

// seedSource checks a seed request against the host and resolves its
// path. A path the request names must lie within the allowed host
// directories (allowedHostPath); the checkout a git seed with no path
// takes is the server's own, which the user chose by starting it there.
func (m *Manager) seedSource(s contract.SeedSpec) (contract.SeedKind, string, error) {
	kind := s.Kind
	if kind == "" {
		kind = contract.SeedNone
	}
	switch kind {
	case contract.SeedNone:
		return kind, "", nil
	case contract.SeedGit:
		p := s.Path
		if p == "" {
			p = m.opts.GitSeedDir
			if p == "" {
				p, _ = os.Getwd()
			}
			root, err := hostio.FindGitRoot(p)
			if err != nil {
				return "", "", contract.Invalid("the server's directory %s is not inside a git checkout", p).
					WithHint("Seed with kind dir and a host path instead.")
			}
			return kind, root, nil
		}
		abs, err := m.allowedHostPath("seed path", p, false)
		if err != nil {
			return "", "", err
		}
		if err := mustStat(abs, true); err != nil {
			return "", "", err
		}
		return kind, abs, nil
	case contract.SeedDir, contract.SeedArchive:
		abs, err := m.allowedHostPath("seed path", s.Path, false)
		if err != nil {
			return "", "", err
		}
		if err := mustStat(abs, kind == contract.SeedDir); err != nil {
			return "", "", err
		}
		return kind, abs, nil
	}
	return "", "", contract.Invalid("seed kind %q is not none, dir, archive or git", kind)
}

// mustStat checks that the host path exists and is a directory (dir) or a
// regular file.
func mustStat(p string, dir bool) error {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return contract.NotFound(contract.ResourceHostPath, p).WithHint("Check the host path; relative paths are relative to the server's directory.")
	}
	if err != nil {
		return contract.Invalid("host path %s: %v", p, err)
	}
	if dir && !fi.IsDir() {
		return contract.Invalid("host path %s is not a directory", p).WithHint("For a .tar, .tar.gz or .tgz file use kind archive.")
	}
	if !dir && !fi.Mode().IsRegular() {
		return contract.Invalid("host path %s is not a file", p).WithHint("For a directory use kind dir.")
	}
	return nil
}

// produceSeed writes the seed's tar stream.
func produceSeed(ctx context.Context, out io.Writer, kind contract.SeedKind, p string) (*hostio.Report, error) {
	switch kind {
	case contract.SeedDir:
		return hostio.TarDir(ctx, out, p, hostio.SeedOptions{})
	case contract.SeedArchive:
		return hostio.TarArchive(ctx, out, p, hostio.SeedOptions{})
	case contract.SeedGit:
		return hostio.TarGit(ctx, out, p, hostio.SeedOptions{})
	}
	return nil, fmt.Errorf("seed kind %q", kind)
}

// errGuestDone closes a tar pipe whose reader (the guest) has finished.
var errGuestDone = errors.New("the guest stopped reading")

// pushTar streams what produce writes into the guest directory dest.
func pushTar(ctx context.Context, g guest, dest string, produce func(io.Writer) (*hostio.Report, error)) (*hostio.Report, error) {
	pr, pw := io.Pipe()
	var (
		rep  *hostio.Report
		perr error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, perr = produce(pw)
		pw.CloseWithError(perr) // nil: a clean EOF
	}()
	_, gerr := g.TarIn(ctx, dest, pr)
	pr.CloseWithError(errGuestDone)
	<-done
	switch {
	case perr != nil && !errors.Is(perr, errGuestDone):
		return nil, perr // the host side failed first: its error says why
	case gerr != nil:
		return nil, &guestSideError{gerr}
	case perr != nil:
		return nil, perr
	}
	return rep, nil
}

// guestSideError marks an error of the guest's side of a crossing.
type guestSideError struct{ err error }

func (e *guestSideError) Error() string { return e.err.Error() }
func (e *guestSideError) Unwrap() error { return e.err }

// hostErr turns the error of a host → guest crossing into an *contract.Error.
func hostErr(what, hostPath string, err error) error {
	if _, ok := contract.AsError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var g *guestSideError
	if errors.As(err, &g) {
		return guestError(what, hostio.Workspace, g.err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return contract.NotFound(contract.ResourceHostPath, hostPath)
	}
	e := contract.Invalid("%s: %v", what, err)
	e.Err = err
	return e
}

// skipped converts a Report's skipped entries.
func skipped(r *hostio.Report) []contract.SkippedEntry {
	var out []contract.SkippedEntry
	for _, s := range r.Skipped {
		out = append(out, contract.SkippedEntry{Path: s.Path, Reason: s.Reason})
	}
	if more := r.SkippedCount - len(r.Skipped); more > 0 {
		out = append(out, contract.SkippedEntry{Path: "...", Reason: fmt.Sprintf("%d more entries skipped, not listed", more)})
	}
	for _, s := range r.Changed {
		out = append(out, contract.SkippedEntry{Path: s.Path, Reason: "sent altered: " + s.Reason})
	}
	return out
}
