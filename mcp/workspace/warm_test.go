package workspace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/vmm"
)

// fakeEnv is an environment whose files exist (warm keys hash their sizes
// and times) but boot nothing.
func fakeEnv(t *testing.T, cache, name string) *env.Env {
	t.Helper()
	dir := filepath.Join(cache, "envs", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env.Env{Name: name, Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.cpio"), Rootfs: filepath.Join(dir, "rootfs.ext4")}
	for _, p := range []string{e.Kernel, e.Initrd, e.Rootfs} {
		if err := os.WriteFile(p, []byte(filepath.Base(p)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// putWarm writes a warm snapshot directory as captureWarm leaves one (the
// files' contents aside), with info as given.
func putWarm(t *testing.T, root, envName, dirName string, info warmInfo, image int) {
	t.Helper()
	dir := filepath.Join(root, envName, dirName)
	if err := os.MkdirAll(filepath.Join(dir, memoryDir), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(info)
	for p, data := range map[string][]byte{
		warmInfoName:                             b,
		warmBaseName:                             make([]byte, 1024),
		filepath.Join(memoryDir, vmm.StateFile):  []byte("state"),
		filepath.Join(memoryDir, vmm.MemoryFile): make([]byte, image),
	} {
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// pyro doctor's view of warm snapshots: which are current for their
// shape, which stale, and what disk each holds; findWarm agrees on the
// current one.
func TestWarmSnapshotsList(t *testing.T) {
	cache, root := t.TempDir(), t.TempDir()
	e := fakeEnv(t, cache, "debian-12")
	// A day ago: the unreadable snapshot below, dated by its directory
	// (made now), lists first.
	at := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second)

	key, err := warmKey(e, 1, 384, 8192)
	if err != nil {
		t.Fatal(err)
	}
	putWarm(t, root, e.Name, key, warmInfo{Format: warmFormat, Key: key, Layer: "l1", Created: at,
		VCPUs: 1, MemMiB: 384, DiskMiB: 8192}, 1<<20)
	// Taken before the environment's rootfs changed: its key no longer
	// matches its shape.
	oldKey, _ := warmKey(e, 2, 512, 8192)
	putWarm(t, root, e.Name, oldKey, warmInfo{Format: warmFormat, Key: oldKey, Layer: "l2", Created: at.Add(-time.Hour),
		VCPUs: 2, MemMiB: 512, DiskMiB: 8192}, 4096)
	// One with no shape, and one of an older format.
	putWarm(t, root, e.Name, "0123456789abcdef", warmInfo{Format: warmFormat, Key: "0123456789abcdef", Layer: "l3",
		Created: at.Add(-2 * time.Hour)}, 4096)
	putWarm(t, root, e.Name, "fedcba9876543210", warmInfo{Format: warmFormat - 1, Key: "fedcba9876543210", Layer: "l4",
		Created: at.Add(-3 * time.Hour)}, 4096)
	// A capture in progress is not listed.
	if err := os.MkdirAll(filepath.Join(root, e.Name, ".tmp-"+key+"-1-x"), 0o700); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(e.Rootfs, later, later); err != nil {
		t.Fatal(err)
	}
	// The rootfs changed: recompute the current snapshot's key and move
	// it there, as a capture after the rebuild would have named it.
	newKey, _ := warmKey(e, 1, 384, 8192)
	if newKey == key {
		t.Fatal("warm key ignores the rootfs's time")
	}
	os.RemoveAll(filepath.Join(root, e.Name, key))
	putWarm(t, root, e.Name, newKey, warmInfo{Format: warmFormat, Key: newKey, Layer: "l1", Created: at,
		VCPUs: 1, MemMiB: 384, DiskMiB: 8192}, 1<<20)

	got := WarmSnapshots(root, e)
	if len(got) != 4 {
		t.Fatalf("listed %d warm snapshots, want 4: %+v", len(got), got)
	}
	want := []struct {
		vcpus, mem int
		current    bool
	}{{0, 0, false}, {1, 384, true}, {2, 512, false}, {0, 0, false}}
	for i, w := range want {
		g := got[i]
		if g.VCPUs != w.vcpus || g.MemMiB != w.mem || g.Current != w.current {
			t.Errorf("snapshot %d: %d vCPUs, %d MiB, current %v; want %d, %d, %v", i, g.VCPUs, g.MemMiB, g.Current, w.vcpus, w.mem, w.current)
		}
		if g.Bytes <= 0 {
			t.Errorf("snapshot %d holds %d bytes", i, g.Bytes)
		}
	}
	if got[1].Bytes < 1<<20 {
		t.Errorf("the current snapshot holds %d bytes, less than its 1 MiB image", got[1].Bytes)
	}
	if !got[1].Created.Equal(at) {
		t.Errorf("created %v, want %v from warm.json", got[1].Created, at)
	}

	m := &Manager{opts: Options{WarmSnapshots: true, WarmRoot: root}}
	if ws := m.findWarm(e, 1, 384, 8192); ws == nil || ws.info.Layer != "l1" {
		t.Errorf("findWarm at the current shape: %+v", ws)
	}
	if ws := m.findWarm(e, 2, 512, 8192); ws != nil {
		t.Errorf("findWarm found the stale snapshot: %+v", ws)
	}
	if got := WarmSnapshots(root, fakeEnv(t, cache, "minimal")); len(got) != 0 {
		t.Errorf("an environment with no warm snapshots lists %+v", got)
	}
}
