package workspace

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// The fake VM keeps the guest's files in memory and persists them, as
// JSON, at the start of the workspace's real disk.Stack whenever the guest
// would have made them durable (sync, freeze, clean shutdown). So the
// manager's disk work (baseline, snapshots, reset, restart, crash) has its
// real effect on what the next boot sees, without KVM.

type fakeFile struct {
	Data   []byte    `json:"data,omitempty"`
	Mode   uint32    `json:"mode"`
	Type   string    `json:"type"`
	Target string    `json:"target,omitempty"`
	MTime  time.Time `json:"mtime"`
}

// world is every fake VM a test booted.
type world struct {
	t        *testing.T
	mu       sync.Mutex
	boots    int
	failBoot error
	vms      []*fakeVM
	// exec answers commands the fake does not run itself; nil answers
	// exit 0 with "ran: COMMAND\n".
	exec func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error)
	// dialPort answers the agent's DialPort (network_relay_test.go);
	// nil answers as an agent too old to relay.
	dialPort func(ctx context.Context, port uint16) (net.Conn, error)
	// hangReads and hangSyncs make ReadFile and Sync wait for their
	// context, as a guest that stopped answering.
	hangReads, hangSyncs bool
	// hangPings makes Ping wait for its context, as a wedged guest's
	// agent; pings counts the pings answered or not.
	hangPings bool
	pings     int
	// rewinds makes the VMs rewinders (standby_test.go); rewound counts
	// their rewinds, and failRewind, when set, is what each returns
	// after checking the disk out, its VM gone.
	rewinds    bool
	rewound    int
	failRewind error
}

type fakeVM struct {
	w     *world
	stack *disk.Stack
	mu    sync.Mutex
	files map[string]*fakeFile
	done  chan struct{}
	once  sync.Once
	// killed/shut count how the VM ended.
	killed, shut bool
	res          vmm.Result // how it stopped, when it crashed (crashWith)
}

func (wd *world) boot(ctx context.Context, spec bootSpec) (*booted, error) {
	wd.mu.Lock()
	wd.boots++
	fail := wd.failBoot
	wd.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	vm := &fakeVM{w: wd, stack: spec.Disk, done: make(chan struct{})}
	if err := vm.load(); err != nil {
		return nil, err
	}
	wd.mu.Lock()
	wd.vms = append(wd.vms, vm)
	wd.mu.Unlock()
	return &booted{Agent: &fakeGuest{vm: vm}, Files: &fakeGuest{vm: vm, beneath: "/workspace"}, VM: vm}, nil
}

func (wd *world) bootCount() int {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	return wd.boots
}

// crash kills every VM without syncing, as a SIGKILL of the server would.
func (wd *world) crash() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	for _, vm := range wd.vms {
		vm.Kill()
	}
}

func (vm *fakeVM) load() error {
	var hdr [8]byte
	if _, err := vm.stack.ReadAt(hdr[:], 0); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint64(hdr[:])
	vm.files = map[string]*fakeFile{"/": {Type: proto.TypeDir, Mode: 0o755}}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := vm.stack.ReadAt(b, 8); err != nil {
		return err
	}
	return json.Unmarshal(b, &vm.files)
}

func (vm *fakeVM) persist() error {
	vm.mu.Lock()
	disk := map[string]*fakeFile{}
	for p, f := range vm.files {
		if p != "/run" && !strings.HasPrefix(p, "/run/") { // /run is a tmpfs
			disk[p] = f
		}
	}
	b, err := json.Marshal(disk)
	vm.mu.Unlock()
	if err != nil {
		return err
	}
	buf := make([]byte, 8+len(b))
	binary.LittleEndian.PutUint64(buf, uint64(len(b)))
	copy(buf[8:], b)
	if _, err := vm.stack.WriteAt(buf, 0); err != nil {
		return err
	}
	return vm.stack.Flush()
}

func (vm *fakeVM) stopped() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

func (vm *fakeVM) Shutdown(ctx context.Context) error {
	vm.once.Do(func() {
		vm.persist()
		vm.shut = true
		close(vm.done)
	})
	return nil
}
func (vm *fakeVM) Kill() {
	vm.once.Do(func() { vm.killed = true; close(vm.done) })
}
func (vm *fakeVM) Close() error { vm.Kill(); return nil }

// crashWith stops the VM as a crash the VMM describes with detail.
func (vm *fakeVM) crashWith(detail string) {
	vm.once.Do(func() {
		vm.res = vmm.Result{Reason: vmm.StopCrash, Detail: detail}
		vm.killed = true
		close(vm.done)
	})
}

// Result says how the VM stopped, as *instance.VM's does.
func (vm *fakeVM) Result() (vmm.Result, error) {
	<-vm.done
	return vm.res, nil
}

// CanRewind and Rewind make the fake a rewinder when its world says so.
// A rewind checks the disk out (atPause) and reads the files back from
// it: a guest rewound to the image taken with that layer sees them so.
func (vm *fakeVM) CanRewind(dir string) bool {
	vm.w.mu.Lock()
	defer vm.w.mu.Unlock()
	return vm.w.rewinds && !vm.stopped()
}

func (vm *fakeVM) Rewind(ctx context.Context, dir string, atPause func() error) error {
	vm.w.mu.Lock()
	vm.w.rewound++
	fail := vm.w.failRewind
	vm.w.mu.Unlock()
	if err := atPause(); err != nil {
		vm.Kill()
		return err
	}
	if fail != nil {
		vm.Kill()
		return fail
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.load()
}
func (vm *fakeVM) Done() <-chan struct{} { return vm.done }

// file returns a copy of a guest file's content (for test checks).
func (vm *fakeVM) file(p string) (string, bool) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	f, ok := vm.files[p]
	if !ok {
		return "", false
	}
	return string(f.Data), true
}

func (vm *fakeVM) put(p string, f *fakeFile) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.mkdirAll(path.Dir(p))
	vm.files[p] = f
}

// mkdirAll needs vm.mu held.
func (vm *fakeVM) mkdirAll(p string) {
	for d := p; d != "/"; d = path.Dir(d) {
		if _, ok := vm.files[d]; !ok {
			vm.files[d] = &fakeFile{Type: proto.TypeDir, Mode: 0o755}
		}
	}
}

// fakeGuest is one client of a fake VM; beneath confines it like
// proto.Client.Beneath.
type fakeGuest struct {
	vm      *fakeVM
	beneath string
}

// Ping answers at once, or waits for its context with hangPings.
func (g *fakeGuest) Ping(ctx context.Context) (proto.PingResult, error) {
	w := g.vm.w
	w.mu.Lock()
	w.pings++
	hang := w.hangPings
	w.mu.Unlock()
	if hang {
		<-ctx.Done()
		return proto.PingResult{}, ctx.Err()
	}
	return proto.PingResult{}, nil
}

func errno(code, p string) error { return &proto.Error{Code: code, Message: code + ": " + p} }

// resolve checks p against beneath, following symlinks in its parent
// directories (and the last component when follow).
func (g *fakeGuest) resolve(p string, follow bool) (string, error) {
	if g.vm.stopped() {
		return "", errors.New("the VM has stopped")
	}
	p = path.Clean(p)
	if g.beneath == "" {
		return p, nil
	}
	g.vm.mu.Lock()
	defer g.vm.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		if f, ok := g.vm.files[next]; ok && f.Type == proto.TypeSymlink && (i < len(parts)-1 || follow) {
			if strings.HasPrefix(f.Target, "/") {
				return "", errno("EXDEV", p)
			}
			next = path.Join(cur, f.Target)
		}
		cur = next
	}
	if cur != g.beneath && !strings.HasPrefix(cur, g.beneath+"/") {
		return "", errno("EXDEV", p)
	}
	return cur, nil
}

func (g *fakeGuest) info(p string) (proto.FileInfo, error) {
	g.vm.mu.Lock()
	defer g.vm.mu.Unlock()
	f, ok := g.vm.files[p]
	if !ok {
		return proto.FileInfo{}, errno("ENOENT", p)
	}
	return proto.FileInfo{Name: path.Base(p), Type: f.Type, Mode: f.Mode, Size: int64(len(f.Data)), MTime: f.MTime, Target: f.Target}, nil
}

func (g *fakeGuest) Exec(ctx context.Context, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
	if g.vm.stopped() {
		return proto.ExecResult{}, errors.New("the VM has stopped")
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if len(req.Argv) > 0 {
		switch req.Argv[0] {
		case "mkdir":
			g.vm.mu.Lock()
			g.vm.mkdirAll(req.Argv[len(req.Argv)-1])
			g.vm.mu.Unlock()
			return proto.ExecResult{}, nil
		case "rm":
			g.vm.mu.Lock()
			delete(g.vm.files, req.Argv[len(req.Argv)-1])
			g.vm.mu.Unlock()
			return proto.ExecResult{}, nil
		}
	}
	if req.Shell == guestSecretsPrep.Shell {
		g.vm.mu.Lock()
		g.vm.mkdirAll(guestSecretsDir)
		g.vm.mu.Unlock()
		return proto.ExecResult{}, nil
	}
	if g.vm.w.exec != nil {
		return g.vm.w.exec(ctx, g.vm, req, stdout, stderr)
	}
	cmd := req.Shell
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	fmt.Fprintf(stdout, "ran: %s\n", cmd)
	return proto.ExecResult{}, nil
}

func (g *fakeGuest) Stat(ctx context.Context, p string) (proto.FileInfo, error) {
	r, err := g.resolve(p, false)
	if err != nil {
		return proto.FileInfo{}, err
	}
	return g.info(r)
}

func (g *fakeGuest) List(ctx context.Context, p string, recursive bool, limit int) ([]proto.FileInfo, bool, error) {
	r, err := g.resolve(p, true)
	if err != nil {
		return nil, false, err
	}
	if fi, err := g.info(r); err != nil {
		return nil, false, err
	} else if fi.Type != proto.TypeDir {
		return nil, false, errno("ENOTDIR", p)
	}
	g.vm.mu.Lock()
	var out []proto.FileInfo
	for fp, f := range g.vm.files {
		rel, ok := strings.CutPrefix(fp, strings.TrimSuffix(r, "/")+"/")
		if !ok || rel == "" || (!recursive && strings.Contains(rel, "/")) {
			continue
		}
		out = append(out, proto.FileInfo{Name: rel, Type: f.Type, Mode: f.Mode, Size: int64(len(f.Data)), Target: f.Target})
	}
	g.vm.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if limit > 0 && len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func (g *fakeGuest) ReadFile(ctx context.Context, p string, offset, max int64) ([]byte, proto.ReadResult, error) {
	g.vm.w.mu.Lock()
	hang := g.vm.w.hangReads
	g.vm.w.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, proto.ReadResult{}, ctx.Err()
	}
	r, err := g.resolve(p, true)
	if err != nil {
		return nil, proto.ReadResult{}, err
	}
	g.vm.mu.Lock()
	defer g.vm.mu.Unlock()
	f, ok := g.vm.files[r]
	if !ok {
		return nil, proto.ReadResult{}, errno("ENOENT", p)
	}
	if f.Type == proto.TypeDir {
		return nil, proto.ReadResult{}, errno("EISDIR", p)
	}
	start := min(offset, int64(len(f.Data)))
	end := min(start+max, int64(len(f.Data)))
	b := bytes.Clone(f.Data[start:end])
	return b, proto.ReadResult{Size: int64(len(f.Data)), N: int64(len(b)), EOF: end == int64(len(f.Data))}, nil
}

func (g *fakeGuest) WriteFile(ctx context.Context, p string, rd io.Reader, mode fs.FileMode, mkdirParents bool) error {
	r, err := g.resolve(p, true)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	g.vm.mu.Lock()
	defer g.vm.mu.Unlock()
	if _, ok := g.vm.files[path.Dir(r)]; !ok {
		if !mkdirParents {
			return errno("ENOENT", p)
		}
		g.vm.mkdirAll(path.Dir(r))
	}
	m := uint32(mode.Perm())
	if old, ok := g.vm.files[r]; ok && m == 0 {
		m = old.Mode
	} else if m == 0 {
		m = 0o644
	}
	g.vm.files[r] = &fakeFile{Data: b, Mode: m, Type: proto.TypeFile, MTime: time.Now()}
	return nil
}

func (g *fakeGuest) TarOut(ctx context.Context, dir string) (io.ReadCloser, error) {
	r, err := g.resolve(dir, true)
	if err != nil {
		return nil, err
	}
	g.vm.mu.Lock()
	var names []string
	for fp := range g.vm.files {
		if strings.HasPrefix(fp, r+"/") {
			names = append(names, fp)
		}
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, fp := range names {
		f := g.vm.files[fp]
		mt := f.MTime
		if mt.IsZero() {
			mt = time.Unix(1e9, 0)
		}
		h := &tar.Header{Name: strings.TrimPrefix(fp, r+"/"), Mode: int64(f.Mode), ModTime: mt}
		switch f.Type {
		case proto.TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case proto.TypeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Target
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			g.vm.mu.Unlock()
			return nil, err
		}
		tw.Write(f.Data)
	}
	tw.Close()
	g.vm.mu.Unlock()
	return io.NopCloser(&buf), nil
}

func (g *fakeGuest) TarIn(ctx context.Context, dir string, rd io.Reader) (proto.TarResult, error) {
	r, err := g.resolve(dir, true)
	if err != nil {
		return proto.TarResult{}, err
	}
	tr := tar.NewReader(rd)
	var res proto.TarResult
	g.vm.mu.Lock()
	defer g.vm.mu.Unlock()
	g.vm.mkdirAll(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		name := path.Join(r, h.Name)
		if !strings.HasPrefix(name, r+"/") {
			return res, errno("EXDEV", h.Name)
		}
		g.vm.mkdirAll(path.Dir(name))
		f := &fakeFile{Mode: uint32(h.Mode) & 0o7777, MTime: h.ModTime}
		switch h.Typeflag {
		case tar.TypeDir:
			f.Type = proto.TypeDir
		case tar.TypeSymlink:
			f.Type, f.Target = proto.TypeSymlink, h.Linkname
		default:
			f.Type = proto.TypeFile
			if f.Data, err = io.ReadAll(tr); err != nil {
				return res, err
			}
			res.Bytes += int64(len(f.Data))
		}
		g.vm.files[name] = f
		res.Entries++
	}
}

func (g *fakeGuest) Sync(ctx context.Context) error {
	g.vm.w.mu.Lock()
	hang := g.vm.w.hangSyncs
	g.vm.w.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if g.vm.stopped() {
		return errors.New("the VM has stopped")
	}
	return g.vm.persist()
}
func (g *fakeGuest) Freeze(ctx context.Context, mp string) error { return g.Sync(ctx) }
func (g *fakeGuest) Thaw(ctx context.Context, mp string) error   { return nil }

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a Manager over fake VMs, a fake clock and a temp state dir.
type harness struct {
	t     *testing.T
	w     *world
	clock *fakeClock
	state string
	opts  Options
	m     *Manager
}

func newHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	root := t.TempDir()
	base := filepath.Join(root, "rootfs.ext4")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(base, 16<<20); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, w: &world{t: t}, clock: &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		state: filepath.Join(root, "state")}
	h.opts = Options{
		StateDir:     h.state,
		CacheRoot:    filepath.Join(root, "cache"),
		ReapInterval: time.Hour, // tests call reap themselves
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			if name == "minimal" {
				return nil, &env.NotBuiltError{Name: name}
			}
			return &env.Env{Name: name, Rootfs: base}, nil
		},
		hooks: hooks{now: h.clock.now, boot: h.w.boot},
	}
	for _, f := range tweak {
		f(&h.opts)
	}
	h.open()
	t.Cleanup(func() {
		if h.m != nil {
			h.m.Close()
		}
	})
	return h
}

func (h *harness) open() {
	h.t.Helper()
	m, err := Open(h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.m = m
}

// crash drops the Manager as a SIGKILL would: VMs die unsynced, nothing
// is closed cleanly, the state directory's lock is released.
func (h *harness) crash() {
	h.w.crash()
	// A dead process's file locks go with it; here the killed VMs' disks
	// are closed by their watchers, asynchronously: wait for that.
	h.m.mu.Lock()
	ws := make([]*workspace, 0, len(h.m.ws))
	for _, w := range h.m.ws {
		ws = append(ws, w)
	}
	h.m.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range ws {
		for w.handle() != nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	close(h.m.reapQ)
	h.m.reapW.Wait()
	h.m.releaseAll()
	h.m = nil
}

// vm returns the fake VM currently running workspace id.
func (h *harness) vm(id string) *fakeVM {
	h.t.Helper()
	w, err := h.m.get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	hd := w.handle()
	if hd == nil {
		h.t.Fatalf("workspace %s is not running", id)
	}
	return hd.VM.(*fakeVM)
}
