package workspace

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm"
)

// counterServer answers each TCP connection on 127.0.0.1:7070 with the
// next value of a counter it holds in memory only.
const counterServer = `import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7070))
s.listen(8)
n = 0
while True:
    c, _ = s.accept()
    n += 1
    c.sendall(str(n).encode())
    c.close()
`

const counterClient = `python3 -c 'import socket; c = socket.create_connection(("127.0.0.1", 7070)); print(c.recv(64).decode())'`

// The memory-snapshot loop on real debian-12 workspaces: a create from the
// environment's warm snapshot, a reset that resumes a Python process with
// the state it held in memory, forks that are isolated from each other
// and from their parent and do not share randomness, and a damaged memory
// image that makes the reset boot from the disk instead.
func TestMemorySnapshotsDebian(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_DEBIAN")
	// A private warm root: this test's warm snapshot must not reach
	// other tests.
	warmRoot := t.TempDir()
	m, err := Open(Options{StateDir: t.TempDir(), CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: 384,
		WarmSnapshots: true, WarmRoot: warmRoot, Standby: true,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := t.Context()
	sh := func(id, cmd string) string {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, TimeoutSeconds: 120})
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("%s: %q: %+v %v", id, cmd, r, err)
		}
		return strings.TrimSpace(string(r.Stdout))
	}
	src := seedDir(t, map[string]string{"hello.txt": "hello\n", "counter.py": counterServer})

	// The first create boots and takes the warm snapshot; the second
	// takes the standby VM restored from it meanwhile.
	t0 := time.Now()
	cold, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: src}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE create (cold boot, taking the warm snapshot): %v", time.Since(t0))
	if cold.Boot != contract.BootCold {
		t.Errorf("first create: boot %q, want %q", cold.Boot, contract.BootCold)
	}
	// What the standby ran before a create took it is gone: the create
	// rewinds it to the warm snapshot, with a new identity.
	standbyBoot := standbyLeaves(t, m)
	t0 = time.Now()
	ws, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: src}})
	if err != nil {
		t.Fatal(err)
	}
	kernel := sh(ws.ID, "uname -r")
	t.Logf("FIGURE create from the standby VM to first exec: %v", time.Since(t0))
	if ws.Boot != contract.BootWarm {
		t.Fatalf("second create: boot %q (%s), want %q", ws.Boot, ws.BootNote, contract.BootWarm)
	}
	if d := lifeDetail(t, m, ws.ID, "create"); !strings.Contains(d, standbyDetail) {
		t.Errorf("second create's journal: %q, want it to say %q", d, standbyDetail)
	}
	if out, err := m.Exec(ctx, contract.ExecRequest{ID: ws.ID, Command: "test -e /tmp/standby-leak -o -e /workspace/standby-leak"}); err != nil || out.ExitCode == 0 {
		t.Errorf("a file the standby VM wrote before the create took it is in the workspace (%v)", err)
	}
	wsBoot := sh(ws.ID, "cat /proc/sys/kernel/random/boot_id")
	if wsBoot == standbyBoot {
		t.Errorf("the workspace kept the standby's boot ID %s", wsBoot)
	}
	// pyro doctor's view of it: current, at the shape just created.
	if e, err := m.loadEnv(ctx, "debian-12"); err != nil {
		t.Error(err)
	} else if snaps := WarmSnapshots(warmRoot, e); len(snaps) != 1 || !snaps[0].Current || snaps[0].MemMiB != 384 || snaps[0].Bytes == 0 {
		t.Errorf("warm snapshots as doctor lists them: %+v", snaps)
	}
	if want := sh(cold.ID, "uname -r"); kernel != want {
		t.Errorf("warm workspace runs kernel %q, the cold one %q", kernel, want)
	}
	if got := sh(ws.ID, "cat /workspace/hello.txt"); got != "hello" {
		t.Errorf("warm workspace's seed: %q", got)
	}
	// An unseeded create from the warm snapshot takes the snapshot's
	// disk layer and /workspace index as its baseline, and its image:
	// the diff sees exactly what changed since, and a reset to the
	// baseline resumes instead of booting. This one restores the warm
	// snapshot into a new VM: no standby.
	m.standbyMade()
	m.opts.Standby = false
	if !m.evictStandby() {
		t.Errorf("no standby VM after a create from the standby")
	}
	t0 = time.Now()
	bare, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12"})
	if err != nil {
		t.Fatal(err)
	}
	sh(bare.ID, "true")
	t.Logf("FIGURE unseeded create from the warm snapshot (a new VM) to first exec: %v", time.Since(t0))
	if bare.Boot != contract.BootWarm {
		t.Fatalf("unseeded create: boot %q (%s), want %q", bare.Boot, bare.BootNote, contract.BootWarm)
	}
	if d := lifeDetail(t, m, bare.ID, "create"); strings.Contains(d, standbyDetail) {
		t.Errorf("create without a standby: journal says %q", d)
	}
	if b := sh(bare.ID, "cat /proc/sys/kernel/random/boot_id"); b == wsBoot || b == standbyBoot {
		t.Errorf("two creates from one warm snapshot share boot ID %s", b)
	}
	sh(bare.ID, "echo new >/workspace/new.txt")
	d, err := m.Diff(ctx, contract.DiffRequest{ID: bare.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Files) != 1 || d.Files[0].Path != "new.txt" || d.Files[0].Status != "added" {
		t.Errorf("diff of an unseeded warm workspace after writing new.txt: %+v", d.Files)
	}
	// No service ever ran in it: its snapshot says so, and a reset to
	// it will not ask the guest to end any.
	if _, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: bare.ID, Name: "quiet"}); err != nil {
		t.Fatal(err)
	}
	if s := snapRecords(t, m, bare.ID); len(s) != 1 || s[0].Memory == "" || !s[0].Quiet {
		t.Errorf("snapshot of a workspace that never ran a service: %+v, want a quiet memory image", s)
	}
	br, err := m.Reset(ctx, bare.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if !br.Memory {
		t.Errorf("reset of an unseeded warm workspace to its baseline booted: %+v", br)
	}
	if got := sh(bare.ID, "ls -A /workspace | wc -l"); got != "0" {
		t.Errorf("after the reset to the baseline /workspace holds: %q", got)
	}
	if d, err := m.Diff(ctx, contract.DiffRequest{ID: bare.ID}); err != nil || len(d.Files) != 0 {
		t.Errorf("diff after the reset to the baseline: %+v %v", d.Files, err)
	}
	if err := m.Delete(ctx, bare.ID); err != nil {
		t.Fatal(err)
	}

	// The rest works on the booted workspace: in the nested harness a
	// guest resumed from an image of an already resumed guest, while
	// other guests run, has lost its FPU state at once (see the README's
	// known issues); the reset and forks below resume images of a booted
	// guest.
	if err := m.Delete(ctx, ws.ID); err != nil {
		t.Fatal(err)
	}
	id := cold.ID

	// A process holding state in memory survives a reset to a memory
	// snapshot, with the state it had then.
	if _, err := m.ServiceStart(ctx, contract.ServiceStartRequest{ID: id, Name: "counter", Command: "python3 counter.py",
		Readiness: contract.Readiness{Kind: "tcp", Port: 7070}, Wait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// The readiness probe's connection counts too: go by what it says.
	first := sh(id, counterClient)
	var atSnap int
	if _, err := fmt.Sscan(first, &atSnap); err != nil {
		t.Fatalf("counter: %q", first)
	}
	atSnap++
	if got := sh(id, counterClient); got != fmt.Sprint(atSnap) {
		t.Fatalf("counter: %q, want %d", got, atSnap)
	}
	snap, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "two"})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Memory || snap.MemoryBytes == 0 {
		t.Fatalf("snapshot of a running workspace: %+v, want a memory image", snap)
	}
	if s := snapRecords(t, m, id); len(s) != 1 || s[0].Quiet {
		t.Errorf("snapshot of a workspace running a service: %+v, want it not quiet", s)
	}
	sh(id, counterClient)
	sh(id, counterClient)
	sh(id, "echo later >/workspace/later.txt")
	bootID := sh(id, "cat /proc/sys/kernel/random/boot_id")
	// The VM runs on the image since its snapshot: the reset rewinds it
	// in place.
	resetTo := func(what, name, wantHow string) {
		t.Helper()
		t0 := time.Now()
		rr, err := m.Reset(ctx, id, name)
		if err != nil {
			t.Fatal(err)
		}
		got := sh(id, counterClient)
		t.Logf("FIGURE reset to a memory snapshot (%s) to first exec: %v (reset %v)", what, time.Since(t0), rr.Duration)
		if d := lastResetDetail(t, m, id); !rr.Memory || !strings.Contains(d, wantHow) {
			t.Fatalf("reset to %s (%s): %+v, journal %q; want %q", name, what, rr, d, wantHow)
		}
		if got != fmt.Sprint(atSnap+1) {
			t.Errorf("after the reset (%s) the counter says %q, want %d (it had answered %d when the snapshot was taken)", what, got, atSnap+1, atSnap)
		}
		if out, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: "test -e /workspace/later.txt -o -e /workspace/again.txt"}); err != nil || out.ExitCode == 0 {
			t.Errorf("a file written after the snapshot survived the reset (%s) (%v)", what, err)
		}
		if b := sh(id, "cat /proc/sys/kernel/random/boot_id"); b == bootID {
			t.Errorf("the guest kept its boot ID %s through the reset (%s)", b, what)
		}
		bootID = sh(id, "cat /proc/sys/kernel/random/boot_id")
	}
	resetTo("rewound in place", "two", "rewound in place")
	// After a later snapshot the VM runs on that one's image: a reset
	// to "two" resumes it in a new VM, which a reset to "two" again
	// rewinds in place.
	if s, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "three"}); err != nil || !s.Memory {
		t.Fatalf("snapshot: %+v %v", s, err)
	}
	sh(id, "echo again >/workspace/again.txt")
	resetTo("in a new VM", "two", "resumed from its memory image")
	// The harness's state disk is small: give its image back.
	if err := m.SnapshotDelete(ctx, id, "three"); err != nil {
		t.Fatal(err)
	}
	sh(id, counterClient)
	sh(id, "echo again >/workspace/again.txt")
	resetTo("the resumed VM rewound in place", "two", "rewound in place")

	// Forks of the snapshot, beside the running workspace: each sees
	// only what it wrote.
	t0 = time.Now()
	fr, err := m.Fork(ctx, contract.ForkRequest{ID: id, Snapshot: "two", Count: 3, Labels: map[string]string{"fork": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE fork x3 of a memory snapshot: %v", time.Since(t0))
	if len(fr.Forks) != 3 || !fr.Memory {
		t.Fatalf("fork: %+v", fr)
	}
	var boots, randoms []string
	for i, f := range fr.Forks {
		if f.Boot != contract.BootFork || f.Labels["fork"] != "yes" {
			t.Errorf("fork %d: boot %q labels %v", i, f.Boot, f.Labels)
		}
		sh(f.ID, fmt.Sprintf("echo %d >/workspace/fork-%d.txt", i, i))
		boots = append(boots, sh(f.ID, "cat /proc/sys/kernel/random/boot_id"))
		randoms = append(randoms, sh(f.ID, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"))
	}
	for i, f := range fr.Forks {
		if got := sh(f.ID, "cd /workspace && ls fork-*.txt | tr '\\n' ' '"); got != fmt.Sprintf("fork-%d.txt", i) {
			t.Errorf("fork %d sees %q, want only its own file", i, got)
		}
		// Processes came along: the counter goes on from its state in
		// the snapshot.
		if got := sh(f.ID, counterClient); got != fmt.Sprint(atSnap+1) {
			t.Errorf("fork %d's counter: %q, want %d", i, got, atSnap+1)
		}
	}
	if out, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: "ls /workspace/fork-*.txt"}); err != nil || out.ExitCode == 0 {
		t.Errorf("the parent sees its forks' files: %q", out.Stdout)
	}
	for i := range boots {
		for j := range i {
			if boots[i] == boots[j] || randoms[i] == randoms[j] {
				t.Errorf("forks %d and %d share boot_id (%s, %s) or /dev/urandom output (%s, %s)", j, i, boots[j], boots[i], randoms[j], randoms[i])
			}
		}
	}

	for _, f := range fr.Forks {
		if err := m.Delete(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
	}

	// A damaged memory image: the reset boots from the snapshot's disk
	// and says why.
	if s, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "damaged"}); err != nil || !s.Memory {
		t.Fatalf("snapshot: %+v %v", s, err)
	}
	w, err := m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	img := filepath.Join(w.dir, w.rec.Snapshots[len(w.rec.Snapshots)-1].Memory, vmm.StateFile)
	w.mu.Unlock()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rr, err := m.Reset(ctx, id, "damaged")
	if err != nil {
		t.Fatal(err)
	}
	if rr.Memory || rr.Note == "" {
		t.Errorf("reset to a damaged memory image: %+v, want a boot with a note", rr)
	}
	t.Logf("damaged image: %s", rr.Note)
	if got := sh(id, "cat /workspace/hello.txt"); got != "hello" {
		t.Errorf("after the fallback boot: %q", got)
	}
}

// standbyLeaves waits for m's standby VM, writes files in its guest (in
// /tmp and /workspace) and returns its boot ID.
func standbyLeaves(t *testing.T, m *Manager) string {
	t.Helper()
	m.standbyMade()
	m.mu.Lock()
	sb := m.sb.ready
	m.mu.Unlock()
	if sb == nil {
		t.Fatal("no standby VM after a create")
	}
	var out strings.Builder
	r, err := sb.w.handle().Agent.Exec(t.Context(), proto.ExecRequest{
		Shell:   "echo x >/tmp/standby-leak && echo x >/workspace/standby-leak && cat /proc/sys/kernel/random/boot_id",
		Timeout: time.Minute}, &out, io.Discard)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("writing in the standby VM: %+v %v", r, err)
	}
	return strings.TrimSpace(out.String())
}

// lifeDetail returns the detail of the first journal line of workspace
// id made by command cmd.
func lifeDetail(t testing.TB, m *Manager, id, cmd string) string {
	t.Helper()
	logs, err := m.Logs(context.Background(), contract.LogsRequest{ID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.Entries {
		if e.Command == cmd {
			return e.Detail
		}
	}
	t.Fatalf("no %s line in the journal: %+v", cmd, logs.Entries)
	return ""
}

// snapRecords returns workspace id's snapshot records.
func snapRecords(t *testing.T, m *Manager, id string) []snapRecord {
	t.Helper()
	w, err := m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.clone().Snapshots
}

// lastResetDetail is the journal's line on workspace id's last reset.
func lastResetDetail(t testing.TB, m *Manager, id string) string {
	t.Helper()
	w, err := m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	seq := w.rec.ResetSeq
	w.mu.Unlock()
	logs, err := m.Logs(context.Background(), contract.LogsRequest{ID: id, AfterSeq: seq - 1, Limit: 1})
	if err != nil || len(logs.Entries) != 1 || logs.Entries[0].Kind != contract.LogReset {
		t.Fatalf("the journal's reset entry %d: %+v %v", seq, logs.Entries, err)
	}
	return logs.Entries[0].Detail
}
