package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
)

// Defaults for zero Options fields.
const (
	DefaultEnv = "debian-12"
	// DefaultVCPUs is a workspace's vCPUs when a request names none, on
	// a host of four CPUs or more (see VCPUsFor): a test suite or a build
	// runs in parallel.
	DefaultVCPUs = 2
	// DefaultMemMiB is a workspace's memory when a request names none, on
	// a host with room: enough for a real test suite or a compiler, and
	// paid only as the guest touches it. On a smaller host the default is
	// a third of the RAM the memory budget lets guests have (MemTotal less
	// hostReserveMiB; see defaultMem), so three default workspaces always
	// fit the budget: an 8 GiB host gets 2048 MiB, a 4 GiB one 1152.
	DefaultMemMiB = 2048
	// DefaultDiskMiB is a workspace's disk when a request names none (or
	// the environment's image, if larger): 8 GiB, room for a scientific
	// Python stack or a node_modules. The disk is sparse: only the
	// clusters the guest writes cost host space.
	DefaultDiskMiB      = 8 << 10
	DefaultMaxRunning   = 4
	DefaultReapInterval = 10 * time.Second
	// DefaultRetention is how long an expired workspace keeps its disk
	// before the reaper deletes it: a week, so that an idle TTL (which
	// only stops the VM) never costs the user their files over a weekend.
	DefaultRetention = 7 * 24 * time.Hour

	// stopTimeout bounds a clean stop (sync, poweroff) before the VM is
	// killed; the disk is crash-consistent either way.
	stopTimeout = 10 * time.Second
	// closeTimeout is stopTimeout for Close, which stops every VM at once.
	closeTimeout = 5 * time.Second
)

// VCPUsFor is the default vCPUs of a VM on a host of ncpu CPUs: half of
// them, at least 1 and at most DefaultVCPUs, so that a few workspaces
// (each vCPU a host thread that can spin) leave a small host room for the
// chat host and pyro itself.
func VCPUsFor(ncpu int) int { return min(DefaultVCPUs, max(1, ncpu/2)) }

// Options configure a Manager. The zero value works: state in
// DefaultStateDir(), environments in $PYRO_CACHE_DIR or env.DefaultCacheRoot().
type Options struct {
	// StateDir holds the workspaces (StateDir/workspaces/ID/). "" means
	// DefaultStateDir(); the caller applies $PYRO_STATE_DIR.
	StateDir string
	// CacheRoot is where environments are built (CACHE/envs/NAME). ""
	// means $PYRO_CACHE_DIR, else env.DefaultCacheRoot().
	CacheRoot string
	// LoadEnv, if set, replaces env.Load(CacheRoot, name): the CLI passes
	// one that refreshes an environment's initramfs when this pyro binary
	// is not the agent it holds.
	LoadEnv func(ctx context.Context, name string) (*env.Env, error)
	// DefaultEnv is used when a request names none ("debian-12").
	DefaultEnv string
	// DefaultVCPUs, DefaultMemMiB and DefaultDiskMiB size a VM when a
	// request does not (0: the package's defaults; see defaultMem).
	DefaultVCPUs   int
	DefaultMemMiB  int
	DefaultDiskMiB int
	// WarmSnapshots keeps a warm memory snapshot per environment and VM
	// shape (warm.go): creates resume it instead of booting.
	WarmSnapshots bool
	// Standby keeps, after each create, one more VM restored from the
	// warm snapshot of its environment and shape, for the next such
	// create to take (standby.go); it needs WarmSnapshots.
	Standby bool
	// WarmRoot is where warm snapshots are kept (ROOT/ENV/KEY); ""
	// means CACHE/warm beside CACHE/envs.
	WarmRoot string
	// MaxRunning caps the workspaces running (or booting) at once
	// (DefaultMaxRunning when 0); beyond it Create, Start and Reset of a
	// stopped workspace fail with contract.CodeLimit.
	MaxRunning int
	// Logger gets the manager's logs (never stdout); nil discards them.
	Logger *slog.Logger
	// GitSeedDir is the directory `pyro mcp serve` started in: a git seed
	// with no path seeds from the checkout that holds it. "" means the
	// process's working directory.
	GitSeedDir string
	// ReapInterval is how often idle workspaces are checked against
	// their TTL (DefaultReapInterval when 0).
	ReapInterval time.Duration
	// Retention is how long an expired workspace keeps its disk; after
	// it the reaper deletes the disk and keeps the record, which says so.
	// 0 means DefaultRetention; negative keeps disks until deleted.
	Retention time.Duration
	// AllowHostPaths are the host directories that export, sync_push
	// and seeding may write or read, symlinks resolved: a host path
	// outside all of them is refused. Empty means
	// DefaultAllowHostPaths() (the working directory and the system
	// temporary directory).
	AllowHostPaths []string
	// Resolver resolves the names a workspace's grants cover (the DNS
	// server in each workspace's network asks it); nil means the host's
	// resolver. netstack.NewResolver makes one that asks one DNS server.
	Resolver netstack.Resolver

	// hooks replace the clock, the VM and the host's resources for tests.
	hooks hooks
}

type hooks struct {
	now    func() time.Time
	boot   bootFunc
	mem    *memSource
	statfs func(path string) (free uint64, err error)
	// newLink, netDialer and netResolver build each boot's network
	// (network.go): nil means defaultLink, a net.Dialer and
	// Options.Resolver (Open sets netResolver from it).
	newLink     newLinkFunc
	netDialer   netstack.Dialer
	netResolver netstack.Resolver
}

// DefaultStateDir is $XDG_STATE_HOME/pyro, or ~/.local/state/pyro; with
// neither (no HOME) it is pyro-UID in the system temp directory, which
// Open refuses if another user made it first.
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "pyro")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" || !filepath.IsAbs(home) {
		return filepath.Join(os.TempDir(), fmt.Sprintf("pyro-%d", os.Getuid()))
	}
	return filepath.Join(home, ".local", "state", "pyro")
}

// checkStateDir refuses a state directory (or a symlink to it) that
// another user owns or that others may write: they could plant or swap
// workspace directories, records and disks under this server.
func checkStateDir(dir string) error {
	uid := uint32(os.Getuid())
	for _, follow := range []bool{false, true} {
		var st unix.Stat_t
		var err error
		if follow {
			err = unix.Stat(dir, &st)
		} else {
			err = unix.Lstat(dir, &st)
		}
		if err != nil {
			return fmt.Errorf("the state directory %s: %w", dir, err)
		}
		// A symlink may be root's (a system-wide link); the directory
		// itself must be this user's.
		if owner := st.Uid; owner != uid && (follow || owner != 0) {
			return fmt.Errorf("the state directory %s belongs to uid %d, not to this user (uid %d): "+
				"use a directory of your own (--state-dir or $PYRO_STATE_DIR)", dir, owner, uid)
		}
		if follow && st.Mode&0o022 != 0 {
			return fmt.Errorf("the state directory %s is writable by other users (mode %o): run `chmod go-w %s`, "+
				"or use another directory (--state-dir or $PYRO_STATE_DIR)", dir, st.Mode&0o7777, dir)
		}
	}
	return nil
}

// Manager is the workspace manager: it implements contract.Backend over
// microVMs and the state directory. See the package documentation.
type Manager struct {
	opts   Options
	log    *slog.Logger
	root   string // StateDir/workspaces
	now    func() time.Time
	boot   bootFunc
	reapQ  chan struct{} // closed by Close to stop the reaper
	mem    memSource
	statfs func(path string) (uint64, error)
	reapW  sync.WaitGroup

	mu sync.Mutex // guards the fields below; taken before any workspace's mu
	// Guarded by mu.
	ws map[string]*workspace
	// Guarded by mu.
	running int // VMs running or booting, against MaxRunning
	// Guarded by mu.
	closed bool
	// Guarded by mu.
	sb standbyState
}

var _ contract.Backend = (*Manager)(nil)

// Open opens the state directory and returns a Manager. It boots nothing:
// every workspace found there is listed as stopped (a crash lost its VM,
// not its data), and directories of creates that never finished (no
// record) are removed.
//
// Several Managers (one per chat session's pyro mcp serve) may share a
// state directory. Each workspace belongs to one at a time: the one that
// holds the flock on its directory's owner.lock, taken when the Manager
// first sees the workspace free (at Open, at a list, at a call naming it)
// and kept until the workspace is deleted or the Manager closes. A
// workspace another live Manager holds is not listed, and a call naming it
// gets a Conflict that says so. A killed server's locks go with its
// process, so its workspaces pass to the next Manager that looks.
func Open(opts Options) (*Manager, error) {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir()
	}
	if opts.CacheRoot == "" {
		opts.CacheRoot = os.Getenv("PYRO_CACHE_DIR")
		if opts.CacheRoot == "" {
			opts.CacheRoot = env.DefaultCacheRoot()
		}
	}
	if opts.DefaultEnv == "" {
		opts.DefaultEnv = DefaultEnv
	}
	if opts.DefaultVCPUs <= 0 {
		opts.DefaultVCPUs = VCPUsFor(runtime.NumCPU())
	}
	if opts.DefaultDiskMiB <= 0 {
		opts.DefaultDiskMiB = DefaultDiskMiB
	}
	if opts.MaxRunning <= 0 {
		opts.MaxRunning = DefaultMaxRunning
	}
	if opts.ReapInterval <= 0 {
		opts.ReapInterval = DefaultReapInterval
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.hooks.netResolver == nil {
		opts.hooks.netResolver = opts.Resolver
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts, log: opts.Logger, root: filepath.Join(opts.StateDir, "workspaces"),
		now: opts.hooks.now, boot: opts.hooks.boot, reapQ: make(chan struct{}), ws: map[string]*workspace{}}
	if m.now == nil {
		m.now = time.Now
	}
	if m.boot == nil {
		m.boot = bootInstance
	}
	m.mem = hostMem
	if opts.hooks.mem != nil {
		m.mem = *opts.hooks.mem
	}
	if m.opts.DefaultMemMiB <= 0 {
		m.opts.DefaultMemMiB = defaultMem(m.mem)
	}
	m.statfs = hostStatfs
	if opts.hooks.statfs != nil {
		m.statfs = opts.hooks.statfs
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := checkStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.root, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := m.scan(); err != nil {
		m.releaseAll()
		return nil, err
	}
	m.reapW.Add(1)
	go m.reaper()
	return m, nil
}

// ownerLock is the file in a workspace's directory whose flock says which
// Manager owns it.
const ownerLock = "owner.lock"

// claim takes dir's ownership without waiting; ok is false while another
// Manager holds it.
func claim(dir string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, ownerLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

// withScanLock runs fn holding StateDir/lock, which orders the Managers'
// scans against each other and against a create's first steps: a scan
// never sees a new directory before its creator holds it.
func (m *Manager) withScanLock(fn func() error) error {
	lock, err := os.OpenFile(filepath.Join(m.opts.StateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening the state directory's lock: %w", err)
	}
	defer lock.Close() // and with it the flock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking the state directory: %w", err)
	}
	return fn()
}

// scan adopts every workspace in the state directory that no Manager
// holds, and clears what crashes left: a delete's remains, a create that
// never wrote its record.
func (m *Manager) scan() error {
	return m.withScanLock(func() error {
		des, err := os.ReadDir(m.root)
		if err != nil {
			return fmt.Errorf("reading the state directory: %w", err)
		}
		for _, de := range des {
			m.adoptLocked(de)
		}
		return nil
	})
}

// rescan is scan for a running Manager: a failure is logged, not returned.
func (m *Manager) rescan() {
	if err := m.scan(); err != nil {
		m.log.Warn("rescanning the state directory", "err", err)
	}
}

// adoptLocked looks at one entry of the state directory. The scan lock
// is held.
func (m *Manager) adoptLocked(de fs.DirEntry) {
	name := de.Name()
	dir := filepath.Join(m.root, name)
	if !de.IsDir() {
		return
	}
	m.mu.Lock()
	_, known := m.ws[name]
	closed := m.closed
	m.mu.Unlock()
	if known || closed {
		return
	}
	f, ok, err := claim(dir)
	if err != nil {
		m.log.Warn("skipping a workspace directory that cannot be locked", "path", dir, "err", err)
		return
	}
	if !ok {
		return // another Manager's, or one it is deleting
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	if strings.HasPrefix(name, ".") {
		// A delete that a crash interrupted.
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("removing leftover", "path", dir, "err", err)
		}
		return
	}
	rec, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A create that never finished (its creator would hold the
		// lock): nothing was handed out.
		m.log.Info("removing unfinished workspace", "path", dir)
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("removing unfinished workspace", "path", dir, "err", err)
		}
		return
	}
	if err != nil {
		// Never delete what we cannot read: say so and leave it.
		m.log.Error("skipping workspace with an unreadable record", "path", dir, "err", err)
		return
	}
	j, err := loadJournal(filepath.Join(dir, journalName))
	if err != nil {
		m.log.Error("skipping workspace with an unreadable journal", "path", dir, "err", err)
		return
	}
	state := rec.State
	if state != contract.StateExpired && state != contract.StateFailed {
		state = contract.StateStopped
	}
	if state == contract.StateExpired && rec.ExpiredAt.IsZero() && rec.DiskDeletedAt.IsZero() {
		// Expired by a version that kept no date: its retention period
		// starts now, so an upgrade never deletes a disk unannounced.
		rec.ExpiredAt = m.now()
		if err := writeRecord(dir, rec); err != nil {
			m.log.Warn("dating an expired workspace", "path", dir, "err", err)
		}
	}
	if _, t := j.last(); t.After(rec.LastActive) {
		rec.LastActive = t
	}
	w := &workspace{m: m, id: rec.ID, dir: dir, rec: *rec, state: state, journal: j, owner: f}
	if err := w.loadSecrets(); err != nil {
		m.log.Error("skipping workspace with unreadable secrets", "path", dir, "err", err)
		return
	}
	w.recover()
	m.mu.Lock()
	if !m.closed {
		m.ws[rec.ID] = w
		keep = true
	}
	m.mu.Unlock()
}

// releaseAll drops the ownership of every workspace this Manager holds.
func (m *Manager) releaseAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.ws {
		w.releaseOwner()
	}
}

// Close stops every VM (sync and poweroff, killed after a short timeout:
// the disks are crash-consistent either way) and releases the state
// directory. The workspaces stay, stopped, for the next Open.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	list := make([]*workspace, 0, len(m.ws))
	for _, w := range m.ws {
		list = append(list, w)
	}
	m.mu.Unlock()
	close(m.reapQ)
	m.reapW.Wait()
	m.closeStandby()

	var wg sync.WaitGroup
	for _, w := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.bgEnding("the pyro server closed")
			w.interrupt()
			w.op.Lock()
			defer w.op.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			defer cancel()
			if err := w.stopVM(ctx, contract.StateStopped, "server closing"); err != nil {
				m.log.Warn("stopping workspace", "id", w.id, "err", err)
			}
			w.journal.close()
		}()
	}
	wg.Wait()
	m.releaseAll()
	return nil
}

// acquireSlot reserves one of MaxRunning running VMs, giving the standby
// VM's up for it when that is the last one.
func (m *Manager) acquireSlot() (release func(), err error) {
	m.mu.Lock()
	if m.running >= m.opts.MaxRunning && m.sb.ready != nil {
		m.mu.Unlock()
		m.evictStandby()
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	if m.closed {
		return nil, contract.Conflict("the server is shutting down")
	}
	if m.running >= m.opts.MaxRunning {
		return nil, contract.LimitReached("%d workspaces are already running, the limit on this host", m.running).
			WithHint("Stop or delete a workspace you no longer need ({{stop}}, {{delete}}), then retry.")
	}
	m.running++
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.running--
			m.mu.Unlock()
		})
	}, nil
}

// get returns workspace id: one this Manager holds, or one it can adopt
// now (another server let it go). One another live server holds is a
// Conflict; anything else NotFound.
func (m *Manager) get(id string) (*workspace, error) {
	if w := m.lookup(id); w != nil {
		return w, nil
	}
	if id == "" || id[0] == '.' || strings.ContainsAny(id, `/\`) {
		return nil, contract.NotFound(contract.ResourceWorkspace, id)
	}
	if _, err := os.Stat(filepath.Join(m.root, id)); err != nil {
		return nil, contract.NotFound(contract.ResourceWorkspace, id)
	}
	m.rescan()
	if w := m.lookup(id); w != nil {
		return w, nil
	}
	if _, err := os.Stat(filepath.Join(m.root, id, recordName)); err != nil {
		return nil, contract.NotFound(contract.ResourceWorkspace, id) // still being created elsewhere, or gone
	}
	return nil, contract.Conflict("workspace %s is in use by another pyro server (another chat session's pyro mcp serve)", id).
		WithHint("Work on it in that session, or end that session and retry; {{list}} shows the workspaces this session can use.")
}

// lookup returns the workspace id this Manager holds, or nil.
func (m *Manager) lookup(id string) *workspace {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ws[id]
}

// nameTaken reports whether another workspace than self is called name.
// The caller holds m.mu.
func (m *Manager) nameTaken(name string, self *workspace) bool {
	if name == "" {
		return false
	}
	for _, w := range m.ws {
		if w == self {
			continue
		}
		w.mu.Lock()
		taken := w.rec.Name == name
		w.mu.Unlock()
		if taken {
			return true
		}
	}
	return false
}

// List implements contract.Backend: the workspaces this Manager holds, after
// adopting any that no server holds any more.
func (m *Manager) List(ctx context.Context) ([]contract.Workspace, error) {
	m.rescan()
	m.mu.Lock()
	list := make([]*workspace, 0, len(m.ws))
	for _, w := range m.ws {
		list = append(list, w)
	}
	m.mu.Unlock()
	out := make([]contract.Workspace, 0, len(list))
	for _, w := range list {
		out = append(out, w.view())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastActiveAt.Equal(out[j].LastActiveAt) {
			return out[i].LastActiveAt.After(out[j].LastActiveAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Status implements contract.Backend.
func (m *Manager) Status(ctx context.Context, id string) (contract.Workspace, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	v := w.view()
	v.Services = w.runningServices(ctx)
	v.Shells = w.shells(ctx)
	return v, nil
}

// Update implements contract.Backend.
func (m *Manager) Update(ctx context.Context, id string, req contract.UpdateRequest) (contract.Workspace, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	// Hold m.mu across the check and the change so two renames cannot
	// both take one name.
	m.mu.Lock()
	if req.Name != nil && m.nameTaken(*req.Name, w) {
		m.mu.Unlock()
		return contract.Workspace{}, contract.Exists(contract.ResourceWorkspace, *req.Name).
			WithHint("Names are unique among workspaces; pick another, or {{list}} to see them.")
	}
	w.mu.Lock()
	if w.deleted {
		w.mu.Unlock()
		m.mu.Unlock()
		return contract.Workspace{}, contract.NotFound(contract.ResourceWorkspace, id)
	}
	old := w.rec.clone()
	if req.Name != nil {
		w.rec.Name = *req.Name
	}
	for _, k := range req.RemoveLabels {
		delete(w.rec.Labels, k)
	}
	for k, v := range req.Labels {
		if w.rec.Labels == nil {
			w.rec.Labels = map[string]string{}
		}
		w.rec.Labels[k] = v
	}
	if len(w.rec.Labels) == 0 {
		w.rec.Labels = nil
	}
	err = w.saveLocked()
	if err != nil {
		w.rec = old
	}
	w.mu.Unlock()
	m.mu.Unlock()
	if err != nil {
		return contract.Workspace{}, contract.Internal("saving the workspace record", err)
	}
	return w.view(), nil
}

// Stop implements contract.Backend.
func (m *Manager) Stop(ctx context.Context, id string) (contract.Workspace, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	w.bgEnding("{{stop}} stopped the workspace")
	w.interrupt()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return contract.Workspace{}, err
	}
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := w.stopVM(sctx, contract.StateStopped, "stop"); err != nil {
		return contract.Workspace{}, contract.Internal("stopping the workspace", err)
	}
	return w.view(), nil
}

// Start implements contract.Backend.
func (m *Manager) Start(ctx context.Context, id string) (contract.Workspace, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return contract.Workspace{}, err
	}
	if w.handle() != nil {
		return w.view(), nil
	}
	if err := w.startVM(ctx, "start", ""); err != nil {
		return contract.Workspace{}, err
	}
	return w.view(), nil
}

// Delete implements contract.Backend.
func (m *Manager) Delete(ctx context.Context, id string) error {
	w, err := m.get(id)
	if err != nil {
		return err
	}
	w.bgEnding("{{delete}} deleted the workspace")
	w.interrupt()
	w.op.Lock()
	defer w.op.Unlock()
	if err := w.alive(); err != nil {
		return err
	}
	return w.destroy()
}

// reaper stops workspaces whose TTL passed while they were idle.
func (m *Manager) reaper() {
	defer m.reapW.Done()
	t := time.NewTicker(m.opts.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-m.reapQ:
			return
		case <-t.C:
			m.reap()
		}
	}
}

// reap expires every idle workspace whose ExpiresAt has passed, and
// deletes the disks of those expired longer than the retention period.
func (m *Manager) reap() {
	m.mu.Lock()
	list := make([]*workspace, 0, len(m.ws))
	for _, w := range m.ws {
		list = append(list, w)
	}
	m.mu.Unlock()
	now := m.now()
	for _, w := range list {
		if !w.idleExpired(now) {
			continue
		}
		// An op that starts meanwhile pushes ExpiresAt; expire only if
		// none holds the workspace now.
		if !w.op.TryLock() {
			continue
		}
		if w.alive() == nil && w.idleExpired(m.now()) {
			m.log.Info("workspace expired", "id", w.id)
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			if err := w.stopVM(ctx, contract.StateExpired, "expired (idle past its TTL)"); err != nil {
				m.log.Warn("expiring workspace", "id", w.id, "err", err)
			}
			cancel()
		}
		w.op.Unlock()
	}
	for _, w := range list {
		w.retire(m.now())
	}
}
