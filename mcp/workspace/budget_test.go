package workspace

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// The package's tests run on a host of plenty by default, so that they
// do not depend on the machine's free memory or disk; the budget tests
// below inject tight ones.
func init() {
	hostMem = plentyMem.source()
	hostStatfs = func(string) (uint64, error) { return 1 << 40, nil }
}

// fakeMem is a settable host memory, in MiB; held is 0 for every pid (the
// fake VMs touch no memory), so rule 2 counts every promise as untouched.
type fakeMem struct {
	mu           sync.Mutex
	total, avail uint64
}

var plentyMem = &fakeMem{total: 1 << 30, avail: 1 << 30}

func (f *fakeMem) source() memSource {
	return memSource{
		meminfo: func() (uint64, uint64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.total, f.avail, nil
		},
		held: func(int) uint64 { return 0 },
	}
}

func (f *fakeMem) set(total, avail uint64) {
	f.mu.Lock()
	f.total, f.avail = total, avail
	f.mu.Unlock()
}

// withMem gives a harness the host memory f.
func withMem(f *fakeMem) func(*Options) {
	return func(o *Options) {
		src := f.source()
		o.hooks.mem = &src
	}
}

// fakeDisk is a settable free space on the state directory.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
}

func (d *fakeDisk) statfs(string) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.free, nil
}

func (d *fakeDisk) set(free uint64) {
	d.mu.Lock()
	d.free = free
	d.mu.Unlock()
}

func (h *harness) tryCreate(mem int) (contract.Workspace, error) {
	return h.m.Create(bg, contract.CreateRequest{MemMiB: mem, TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
}

// ledger reads the state directory's memory ledger.
func ledger(t *testing.T, state string) []memEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, memLedgerName))
	if err != nil {
		t.Fatal(err)
	}
	var es []memEntry
	if len(b) > 0 {
		if err := json.Unmarshal(b, &es); err != nil {
			t.Fatalf("ledger %q: %v", b, err)
		}
	}
	return es
}

// Total memory across one server's VMs: a 4 GiB host (256 MiB kept)
// takes three 1 GiB VMs, not four; stopping one makes room, and a start
// that would overcommit is refused without failing the workspace.
func TestMemoryBudgetAcrossVMs(t *testing.T) {
	mem := &fakeMem{total: 4096, avail: 4096}
	h := newHarness(t, withMem(mem))
	var ids []string
	for range 3 {
		w, err := h.tryCreate(1024)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, w.ID)
	}
	_, err := h.tryCreate(1024)
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "3072 MiB") || !strings.Contains(e.Hint, "{{stop}}") || !strings.Contains(e.Hint, "{{-mem_mib}}") {
		t.Fatalf("refusal does not say why or what to do: %q / %q", e.Msg, e.Hint)
	}
	if n := len(h.workspaceDirs()); n != 3 {
		t.Fatalf("a refused create left a directory: %d dirs", n)
	}
	// A smaller VM fits.
	small, err := h.tryCreate(512)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ledger(t, h.state)); got != 4 {
		t.Fatalf("ledger has %d entries, want 4", got)
	}
	if _, err := h.m.Stop(bg, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Stop(bg, small.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.tryCreate(1024); err != nil {
		t.Fatalf("create after a stop: %v", err)
	}
	// Now 3 GiB run again: starting the stopped one is refused, and it
	// stays stopped (not failed), startable later.
	_, err = h.m.Start(bg, ids[0])
	wantCode(t, err, contract.CodeLimit)
	if ws, _ := h.m.Status(bg, ids[0]); ws.State != contract.StateStopped {
		t.Fatalf("a refused start left the workspace %s", ws.State)
	}
	// Memory other host processes hold counts too (rule 2): with 1 GiB
	// available a 512 MiB VM does not fit beside 3 GiB of untouched
	// promises even once RAM allows it.
	if err := h.m.Delete(bg, ids[1]); err != nil {
		t.Fatal(err)
	}
	mem.set(8192, 1024)
	_, err = h.m.Start(bg, small.ID)
	wantCode(t, err, contract.CodeLimit)
	mem.set(8192, 8192)
	if _, err := h.m.Start(bg, small.ID); err != nil {
		t.Fatal(err)
	}
	// Close takes this server's VMs off the ledger.
	h.m.Close()
	h.m = nil
	if es := ledger(t, filepath.Join(h.state)); len(es) != 0 {
		t.Fatalf("ledger after Close: %+v", es)
	}
}

// Total memory across two servers on one state directory: what one
// server runs counts against the other's creates, and its Close frees it.
func TestMemoryBudgetAcrossServers(t *testing.T) {
	mem := &fakeMem{total: 4096, avail: 4096}
	a := newHarness(t, withMem(mem))
	b := newHarness(t, withMem(mem), func(o *Options) { o.StateDir = a.state })
	b.state = a.state
	for range 2 {
		if _, err := a.tryCreate(1024); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.tryCreate(1024); err != nil {
		t.Fatal(err)
	}
	_, err := b.tryCreate(1024)
	wantCode(t, err, contract.CodeLimit)
	_, err = a.tryCreate(1024)
	wantCode(t, err, contract.CodeLimit)
	a.m.Close()
	a.m = nil
	for range 2 {
		if _, err := b.tryCreate(1024); err != nil {
			t.Fatalf("after the other server closed: %v", err)
		}
	}
}

// budgetChildEnv makes the test binary a second server (see
// TestBudgetChildServer) on the state directory it names.
const budgetChildEnv = "PYRO_TEST_BUDGET_CHILD"

// TestBudgetChildServer is the second server of
// TestMemoryBudgetAcrossProcesses: it runs one 3 GiB workspace on the
// shared state directory, says "ready", and waits to be killed.
func TestBudgetChildServer(t *testing.T) {
	state := os.Getenv(budgetChildEnv)
	if state == "" {
		t.Skip("run by TestMemoryBudgetAcrossProcesses")
	}
	mem := &fakeMem{total: 4096, avail: 4096}
	h := newHarness(t, withMem(mem), func(o *Options) { o.StateDir = state })
	if _, err := h.tryCreate(3072); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

// Across processes: another server's VMs count through the ledger file,
// and a server killed with SIGKILL gives its memory back (its entries
// are dropped once its pid is gone).
func TestMemoryBudgetAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	mem := &fakeMem{total: 4096, avail: 4096}
	h := newHarness(t, withMem(mem))
	cmd := exec.Command(os.Args[0], "-test.run=^TestBudgetChildServer$", "-test.count=1", "-test.timeout=2m")
	// The child dies by SIGKILL, its cleanups unrun: its temp files go
	// under one of ours.
	cmd.Env = append(os.Environ(), budgetChildEnv+"="+h.state, "TMPDIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("the child server never got ready")
	}
	es := ledger(t, h.state)
	if len(es) != 1 || es[0].PID != cmd.Process.Pid || es[0].MemMiB != 3072 {
		t.Fatalf("ledger: %+v", es)
	}
	_, err = h.tryCreate(1024)
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "3072 MiB") {
		t.Fatalf("refusal: %q", e.Msg)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := h.tryCreate(1024); err != nil {
		t.Fatalf("after the other server was killed: %v", err)
	}
	es = ledger(t, h.state)
	if len(es) != 1 || es[0].PID != os.Getpid() {
		t.Fatalf("the killed server's entry stayed: %+v", es)
	}
}

// A pid that is reused by another process does not keep a dead
// server's entry alive: entries carry the process's start time.
func TestLedgerDropsDeadAndReusedPIDs(t *testing.T) {
	h := newHarness(t, withMem(&fakeMem{total: 4096, avail: 4096}))
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := []memEntry{
		{PID: dead.Process.Pid, Start: "1", Workspace: "ws-dead", MemMiB: 3000},
		{PID: os.Getpid(), Start: "not-my-start", Workspace: "ws-reused", MemMiB: 3000},
	}
	b, _ := json.Marshal(stale)
	if err := os.WriteFile(filepath.Join(h.state, memLedgerName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := h.tryCreate(2048); err != nil {
		t.Fatalf("stale entries still counted: %v", err)
	}
	if es := ledger(t, h.state); len(es) != 1 || es[0].MemMiB != 2048 {
		t.Fatalf("ledger: %+v", es)
	}
}

// Another live server's standby VM promises nothing: only what it holds
// counts, through the host's available memory.
func TestLedgerIgnoresStandbyPromises(t *testing.T) {
	h := newHarness(t, withMem(&fakeMem{total: 4096, avail: 4096}))
	other := []memEntry{{PID: os.Getpid(), Start: selfStart(), Workspace: "ws-standby", MemMiB: 3000, Standby: true}}
	b, _ := json.Marshal(other)
	if err := os.WriteFile(filepath.Join(h.state, memLedgerName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := h.tryCreate(2048)
	if err != nil {
		t.Fatalf("a standby's promise was counted: %v", err)
	}
	if err := h.m.Delete(bg, w.ID); err != nil {
		t.Fatal(err)
	}
	// The same entry unmarked refuses it.
	other[0].Standby = false
	b, _ = json.Marshal(other)
	if err := os.WriteFile(filepath.Join(h.state, memLedgerName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = h.tryCreate(2048)
	wantCode(t, err, contract.CodeLimit)
}

func TestProcReaders(t *testing.T) {
	total, avail, err := procMeminfo()
	if err != nil {
		t.Skip("no /proc/meminfo:", err)
	}
	if total == 0 || avail > total {
		t.Fatalf("meminfo: total %d MiB, available %d MiB", total, avail)
	}
	if selfStart() == "" || procStart(os.Getpid()) != selfStart() {
		t.Fatalf("start time of this process: %q", selfStart())
	}
	if procStart(1<<30) != "" {
		t.Fatal("a pid that cannot exist has a start time")
	}
	if free, err := statfsFree(t.TempDir()); err != nil || free == 0 {
		t.Fatalf("statfs: %d, %v", free, err)
	}
}

func TestSnapshotCap(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	for i := range maxSnapshots {
		if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: fmt.Sprintf("s%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "one-too-many"})
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Hint, "{{snapshot.delete}}") {
		t.Fatalf("hint: %q", e.Hint)
	}
	if err := h.m.SnapshotDelete(bg, id, "s3"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "one-too-many"}); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
}

// out/ keeps the full output of the latest keptOutputs execs only.
func TestExecOutputPruned(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	var paths []string
	for i := range keptOutputs + 5 {
		r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: fmt.Sprintf("echo %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if r.StdoutPath == "" {
			t.Fatal("no output file")
		}
		paths = append(paths, r.StdoutPath)
	}
	des, err := os.ReadDir(filepath.Join(h.state, "workspaces", id, outDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != keptOutputs {
		t.Fatalf("out/ holds %d files, want %d", len(des), keptOutputs)
	}
	for i, p := range paths {
		_, err := os.Stat(p)
		if kept := i >= 5; kept != (err == nil) {
			t.Fatalf("exec %d's output: kept %v, stat %v", i, kept, err)
		}
	}
}

// The journal rotates to journal.1.jsonl past journalRotateBytes, keeps
// two generations on disk and in memory, and sequence numbers carry on
// across rotations and a reload.
func TestJournalRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, journalName)
	j, err := loadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	detail := strings.Repeat("x", 64<<10)
	perFile := journalRotateBytes/(64<<10) + 1
	n := 2*perFile + perFile/2 // two rotations and half a file
	for i := range n {
		seq, err := j.append(entry{Time: time.Unix(int64(i), 0), Kind: contract.LogExec, Command: "c", Detail: detail})
		if err != nil {
			t.Fatal(err)
		}
		if seq != int64(i+1) {
			t.Fatalf("seq %d, want %d", seq, i+1)
		}
	}
	j.close()
	for _, name := range []string{journalName, "journal.1.jsonl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > journalRotateBytes+(65<<10) {
			t.Fatalf("%s is %d bytes", name, fi.Size())
		}
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 2 {
		t.Fatalf("journal files: %v", des)
	}
	inMem := len(j.since(0))
	if inMem >= n || inMem < perFile {
		t.Fatalf("%d entries in memory of %d written", inMem, n)
	}
	j2, err := loadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(j2.since(0)); got != inMem {
		t.Fatalf("reload has %d entries, before %d", got, inMem)
	}
	page, more := j2.page(0, 1)
	if len(page) != 1 || !more || page[0].Seq != int64(n-inMem+1) {
		t.Fatalf("first entry after rotation: %+v (more %v), want seq %d", page, more, n-inMem+1)
	}
	if last, _ := j2.last(); last != int64(n) {
		t.Fatalf("last seq %d, want %d", last, n)
	}
	if seq, err := j2.append(entry{Kind: contract.LogLife, Command: "x"}); err != nil || seq != int64(n+1) {
		t.Fatalf("append after reload: %d, %v", seq, err)
	}
}

// An expired workspace keeps its disk for the retention period, to the
// second, and loses it after; the record and status say so, and the
// calls that need the disk explain.
func TestRetentionDeletesExpiredDisks(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Retention = 48 * time.Hour })
	a := h.create(contract.CreateRequest{TTLSeconds: 60})
	keep := h.create(contract.CreateRequest{TTLSeconds: 60})
	h.write(a.ID, "/workspace/f.txt", "precious")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: a.ID, Name: "s"}); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(61 * time.Second)
	expiredAt := h.clock.now()
	h.m.reap()
	ws, _ := h.m.Status(bg, a.ID)
	if ws.State != contract.StateExpired || !ws.DiskDeleteAt.Equal(expiredAt.Add(48*time.Hour)) || !ws.DiskDeletedAt.IsZero() {
		t.Fatalf("expired: %+v", ws)
	}
	// keep is started again within the period: its clock starts over.
	h.clock.advance(47 * time.Hour)
	if _, err := h.m.Start(bg, keep.ID); err != nil {
		t.Fatal(err)
	}
	diskPath := filepath.Join(h.state, "workspaces", a.ID, diskDir)
	h.clock.advance(time.Hour - time.Second) // one second short
	h.m.reap()
	if _, err := os.Stat(diskPath); err != nil {
		t.Fatalf("disk deleted within the retention period: %v", err)
	}
	h.clock.advance(2 * time.Second)
	h.m.reap()
	if _, err := os.Stat(diskPath); !os.IsNotExist(err) {
		t.Fatalf("disk kept past the retention period: %v", err)
	}
	ws, _ = h.m.Status(bg, a.ID)
	if ws.State != contract.StateExpired || ws.DiskDeletedAt.IsZero() || !ws.DiskDeleteAt.IsZero() || ws.Snapshots != 0 {
		t.Fatalf("after deletion: %+v", ws)
	}
	_, err := h.m.Start(bg, a.ID)
	e := wantCode(t, err, contract.CodeStopped)
	if !strings.Contains(e.Hint, "disk was deleted") || !strings.Contains(e.Hint, "{{delete}}") {
		t.Fatalf("start hint: %q", e.Hint)
	}
	_, err = h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: a.ID, Name: "t"})
	wantCode(t, err, contract.CodeStopped)
	_, err = h.m.Reset(bg, a.ID, "")
	wantCode(t, err, contract.CodeStopped)
	// keep expired again an hour ago: its disk stays two more days.
	if ws, _ := h.m.Status(bg, keep.ID); ws.State != contract.StateExpired || !ws.DiskDeletedAt.IsZero() ||
		ws.DiskDeleteAt.Before(h.clock.now().Add(46*time.Hour)) {
		t.Fatalf("the restarted workspace: %+v", ws)
	}
	if _, err := os.Stat(filepath.Join(h.state, "workspaces", keep.ID, diskDir)); err != nil {
		t.Fatal(err)
	}
	lp, _ := h.m.Logs(bg, contract.LogsRequest{ID: a.ID, Limit: 100})
	if last := lp.Entries[len(lp.Entries)-1]; last.Command != "retire" {
		t.Fatalf("journal's last entry: %+v", last)
	}
	// The record says so across a restart, and delete still works.
	h.m.Close()
	h.open()
	ws, _ = h.m.Status(bg, a.ID)
	if ws.State != contract.StateExpired || ws.DiskDeletedAt.IsZero() {
		t.Fatalf("after a restart: %+v", ws)
	}
	if err := h.m.Delete(bg, a.ID); err != nil {
		t.Fatal(err)
	}
}

// Negative retention keeps expired disks for ever.
func TestRetentionDisabled(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Retention = -1 })
	a := h.create(contract.CreateRequest{TTLSeconds: 60})
	h.clock.advance(61 * time.Second)
	h.m.reap()
	h.clock.advance(10 * 365 * 24 * time.Hour)
	h.m.reap()
	ws, _ := h.m.Status(bg, a.ID)
	if ws.State != contract.StateExpired || !ws.DiskDeleteAt.IsZero() || !ws.DiskDeletedAt.IsZero() {
		t.Fatalf("%+v", ws)
	}
	if _, err := h.m.Start(bg, a.ID); err != nil {
		t.Fatal(err)
	}
}

// Creates, snapshots and exports are refused while the state
// directory's file system has less than minFreeBytes free.
func TestLowDiskRefusal(t *testing.T) {
	d := &fakeDisk{free: 1 << 40}
	h := newHarness(t, func(o *Options) { o.hooks.statfs = d.statfs })
	id := h.create(contract.CreateRequest{}).ID
	d.set(minFreeBytes - 1)
	_, err := h.tryCreate(0)
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "free") || !strings.Contains(e.Hint, "free space") {
		t.Fatalf("create refusal: %q / %q", e.Msg, e.Hint)
	}
	_, err = h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "s"})
	wantCode(t, err, contract.CodeLimit)
	_, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: filepath.Join(t.TempDir(), "out"), Format: contract.ExportTree})
	wantCode(t, err, contract.CodeLimit)
	if n := len(h.workspaceDirs()); n != 1 {
		t.Fatalf("%d workspace dirs", n)
	}
	d.set(minFreeBytes)
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.tryCreate(0); err != nil {
		t.Fatal(err)
	}
}

// With no HOME the state directory is per user, and Open refuses one
// that others may write or that another user owns.
func TestStateDirOwnership(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "")
	want := filepath.Join(os.TempDir(), fmt.Sprintf("pyro-%d", os.Getuid()))
	if got := DefaultStateDir(); got != want {
		t.Fatalf("DefaultStateDir with no HOME: %s, want %s", got, want)
	}

	h := newHarness(t)
	h.m.Close()
	h.m = nil
	if err := os.Chmod(h.state, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := Open(h.opts)
	if err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Fatalf("world-writable state dir: %v", err)
	}
	if err := os.Chmod(h.state, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(h.state, link); err != nil {
		t.Fatal(err)
	}
	o := h.opts
	o.StateDir = link
	m, err := Open(o)
	if err != nil {
		t.Fatalf("a symlink of one's own to one's own directory: %v", err)
	}
	m.Close()
	if os.Getuid() != 0 {
		t.Skip("making a directory another user owns needs root")
	}
	if err := os.Chown(h.state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = Open(h.opts)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("another user's state dir: %v", err)
	}
}

// A workspace that an older version expired (its record has no
// expired_at) gets the whole retention period from the upgrade on.
func TestRetentionOfUndatedExpiry(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Retention = 48 * time.Hour })
	a := h.create(contract.CreateRequest{TTLSeconds: 60})
	h.clock.advance(61 * time.Second)
	h.m.reap()
	h.m.Close()
	h.m = nil
	dir := filepath.Join(h.state, "workspaces", a.ID)
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec.ExpiredAt = time.Time{}
	if err := writeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(30 * 24 * time.Hour) // long expired when the upgrade comes
	h.open()
	h.m.reap()
	if _, err := os.Stat(filepath.Join(dir, diskDir)); err != nil {
		t.Fatalf("an undated expired workspace lost its disk at the upgrade: %v", err)
	}
	if ws, _ := h.m.Status(bg, a.ID); !ws.DiskDeleteAt.Equal(h.clock.now().Add(48 * time.Hour)) {
		t.Fatalf("disk_delete_at %v", ws.DiskDeleteAt)
	}
	h.clock.advance(48*time.Hour + time.Second)
	h.m.reap()
	if _, err := os.Stat(filepath.Join(dir, diskDir)); !os.IsNotExist(err) {
		t.Fatalf("disk kept past the retention period: %v", err)
	}
}

// Pruning leaves the output of an exec still running alone, however many
// finish meanwhile.
func TestExecOutputPruningSparesRunning(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	started, release := make(chan struct{}), make(chan struct{})
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		fmt.Fprintf(stdout, "out of %s\n", req.Shell)
		if req.Shell == "slow" {
			close(started)
			<-release
			fmt.Fprintln(stdout, "slow done")
		}
		return proto.ExecResult{}, nil
	}
	type res struct {
		r   contract.ExecResult
		err error
	}
	done := make(chan res)
	go func() {
		r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "slow"})
		done <- res{r, err}
	}()
	<-started
	for i := range keptOutputs + 3 {
		if _, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: fmt.Sprintf("fast %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	b, err := os.ReadFile(r.r.StdoutPath)
	if err != nil || string(b) != "out of slow\nslow done\n" {
		t.Fatalf("the running exec's output file: %q, %v", b, err)
	}
}
