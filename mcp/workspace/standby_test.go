package workspace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// standbyHarness is a harness whose fake VMs rewind and whose
// environment "debian-12" has a warm snapshot at the shape standbyReq
// asks for.
func standbyHarness(t *testing.T, maxRunning int) *harness {
	t.Helper()
	delay := standbyDelay
	standbyDelay = 0
	t.Cleanup(func() { standbyDelay = delay })
	cache, warmRoot := t.TempDir(), t.TempDir()
	e := fakeEnv(t, cache, "debian-12")
	// The fake guest reads its files from the disk's first bytes: zeros.
	if err := os.WriteFile(e.Rootfs, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) {
		o.WarmSnapshots, o.WarmRoot, o.Standby, o.MaxRunning = true, warmRoot, true, maxRunning
		o.LoadEnv = func(ctx context.Context, name string) (*env.Env, error) { return e, nil }
	})
	h.w.rewinds = true
	key, err := warmKey(e, 1, 256, 64)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(warmRoot, e.Name, key)
	st, err := disk.Create(filepath.Join(dir, diskDir), e.Rootfs, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := st.Freeze("warm")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	putWarm(t, warmRoot, e.Name, key, warmInfo{Format: warmFormat, Key: key, Layer: layer.ID, Created: time.Now(), VCPUs: 1, MemMiB: 256, DiskMiB: 64}, 4096)
	return h
}

var standbyReq = contract.CreateRequest{Env: "debian-12", VCPUs: 1, MemMiB: 256, DiskMiB: 64}

// standbyOf returns h's standby once it is made (nil: none was).
func standbyOf(h *harness) *standby {
	h.m.standbyMade()
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.m.sb.ready
}

// A create leaves a standby VM behind, restored from the warm snapshot
// and unlisted; the next create of that shape takes it (no new VM),
// rewound so that nothing it held before survives, and another is made.
func TestStandbyTakenByCreate(t *testing.T) {
	h := standbyHarness(t, 8)
	ctx := context.Background()
	first, err := h.m.Create(ctx, standbyReq)
	if err != nil {
		t.Fatal(err)
	}
	if first.Boot != contract.BootWarm {
		t.Fatalf("first create: boot %q (%s)", first.Boot, first.BootNote)
	}
	sb := standbyOf(h)
	if sb == nil {
		t.Fatal("no standby after a create from the warm snapshot")
	}
	if _, err := os.Stat(filepath.Join(sb.w.dir, recordName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the standby has a record (%v): a crash would leave a workspace", err)
	}
	if l, _ := h.m.List(ctx); len(l) != 1 {
		t.Errorf("list shows %d workspaces with a standby made, want 1", len(l))
	}
	// On the memory ledger it is marked, so that no server counts its
	// promise; once taken it counts as any workspace does.
	standbyEntry := func(id string) (marked, found bool) {
		for _, e := range ledger(t, h.state) {
			if e.Workspace == id {
				return e.Standby, true
			}
		}
		return false, false
	}
	if marked, found := standbyEntry(sb.w.id); !marked || !found {
		t.Errorf("the standby's ledger entry: found %v, marked %v", found, marked)
	}
	// The standby's guest writes a file (not synced: gone with a rewind).
	if err := sb.w.handle().Agent.WriteFile(ctx, "/workspace/leak", strings.NewReader("x"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	boots := h.w.bootCount()

	ws, err := h.m.Create(ctx, contract.CreateRequest{Env: "debian-12", VCPUs: 1, MemMiB: 256, DiskMiB: 64, Name: "taken", Labels: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if ws.ID != sb.w.id || ws.Boot != contract.BootWarm || ws.Name != "taken" || ws.Labels["a"] != "b" {
		t.Errorf("create with a standby: %+v, want the standby %s as a warm workspace named taken", ws, sb.w.id)
	}
	if d := lifeDetail(t, h.m, ws.ID, "create"); !strings.Contains(d, standbyDetail) {
		t.Errorf("journal: %q", d)
	}
	if marked, found := standbyEntry(ws.ID); marked || !found {
		t.Errorf("the taken standby's ledger entry: found %v, still marked %v", found, marked)
	}
	next := standbyOf(h)
	if next == nil || next == sb {
		t.Fatal("no new standby after the create took one")
	}
	if got := h.w.bootCount(); got != boots+1 {
		t.Errorf("%d VMs started for the create and the next standby, want 1 (the standby's)", got-boots)
	}
	h.w.mu.Lock()
	rewound := h.w.rewound
	h.w.mu.Unlock()
	if rewound != 1 {
		t.Errorf("%d rewinds, want 1", rewound)
	}
	if _, err := h.m.ReadFile(ctx, contract.ReadFileRequest{ID: ws.ID, Path: "leak", MaxBytes: 10}); !contract.IsCode(err, contract.CodeNotFound) {
		t.Errorf("the standby's file in the new workspace: %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(h.state, "workspaces", ws.ID, recordName)); err != nil {
		t.Errorf("the created workspace has no record: %v", err)
	}
	// A rewind that fails leaves a new VM restored instead.
	h.w.mu.Lock()
	h.w.failRewind = errors.New("injected")
	h.w.mu.Unlock()
	boots = h.w.bootCount()
	again, err := h.m.Create(ctx, standbyReq)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != next.w.id || again.Boot != contract.BootWarm {
		t.Errorf("create whose standby failed to rewind: %+v", again)
	}
	if d := lifeDetail(t, h.m, again.ID, "create"); strings.Contains(d, standbyDetail) {
		t.Errorf("journal of a create whose standby failed: %q", d)
	}
	standbyOf(h)
	if got := h.w.bootCount(); got != boots+2 {
		t.Errorf("%d VMs started, want 2 (the create's and the next standby's)", got-boots)
	}
}

// A standby gives way: to a create of another shape, to a slot something
// else needs, when its VM stops, and when the server closes; each time its
// directory goes.
func TestStandbyGivesWay(t *testing.T) {
	h := standbyHarness(t, 2)
	ctx := context.Background()
	if _, err := h.m.Create(ctx, standbyReq); err != nil {
		t.Fatal(err)
	}
	gone := func(what string, sb *standby) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := os.Stat(sb.w.dir)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the standby's directory is still there (%v)", what, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		if h.m.sb.ready == sb {
			t.Errorf("%s: the standby is still held", what)
		}
	}

	// Both slots taken (the workspace, the standby): one more is the
	// standby's.
	sb := standbyOf(h)
	if sb == nil {
		t.Fatal("no standby")
	}
	release, err := h.m.acquireSlot()
	if err != nil {
		t.Fatalf("a slot with the standby holding the last: %v", err)
	}
	gone("a slot wanted", sb)
	release()

	// Its VM stops by itself.
	h.m.fillStandby(mustEnv(t, h), 1, 256, 64)
	sb = standbyOf(h)
	if sb == nil {
		t.Fatal("no standby")
	}
	sb.w.handle().VM.Kill()
	gone("its VM stopped", sb)

	// A create of another shape.
	h.m.fillStandby(mustEnv(t, h), 1, 256, 64)
	sb = standbyOf(h)
	if sb == nil {
		t.Fatal("no standby")
	}
	other, err := h.m.Create(ctx, contract.CreateRequest{Env: "debian-12", VCPUs: 1, MemMiB: 128, DiskMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == sb.w.id || other.Boot != contract.BootCold {
		t.Errorf("create of another shape: %+v", other)
	}
	gone("a create of another shape", sb)
	if err := h.m.Delete(ctx, other.ID); err != nil {
		t.Fatal(err)
	}

	// The server closes.
	h.m.fillStandby(mustEnv(t, h), 1, 256, 64)
	sb = standbyOf(h)
	if sb == nil {
		t.Fatal("no standby")
	}
	h.m.Close()
	gone("the server closed", sb)
}

func mustEnv(t *testing.T, h *harness) *env.Env {
	t.Helper()
	e, err := h.m.loadEnv(context.Background(), "debian-12")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A server that starts with the default environment's warm snapshot at
// the default shape makes a standby for the first create.
func TestStandbyForDefault(t *testing.T) {
	h := standbyHarness(t, 8)
	h.m.Close()
	h.opts.DefaultEnv, h.opts.DefaultVCPUs, h.opts.DefaultMemMiB, h.opts.DefaultDiskMiB = "debian-12", 1, 256, 64
	h.open()
	h.m.StandbyForDefault()
	deadline := time.Now().Add(10 * time.Second)
	var sb *standby
	for sb == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		sb = standbyOf(h)
	}
	if sb == nil {
		t.Fatal("no standby made at start")
	}
	ws, err := h.m.Create(context.Background(), contract.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ws.ID != sb.w.id {
		t.Errorf("the first create did not take the standby made at start: %+v", ws)
	}
}
