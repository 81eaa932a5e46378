package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// The limits' arithmetic and the sweep's bookkeeping run on the host; the
// kernel's side (clone into the cgroup, the limits biting) is exercised by
// mcp/workspace's TestWorkspaceVMLimits in a VM.

func TestUserMemMax(t *testing.T) {
	for _, c := range []struct{ total, want int64 }{
		{100 << 20, 52 << 20},      // small VM: the minimum reserve
		{1 << 30, 896 << 20},       // an eighth
		{8 << 30, 8<<30 - 256<<20}, // capped reserve
		{64 << 20, 32 << 20},       // never less than half
	} {
		if got := userMemMax(c.total); got != c.want {
			t.Errorf("userMemMax(%d MiB) = %d MiB, want %d MiB", c.total>>20, got>>20, c.want>>20)
		}
	}
}

func TestMemTotal(t *testing.T) {
	n, err := memTotal([]byte("MemFree:  1 kB\nMemTotal:        2013956 kB\n"))
	if err != nil || n != 2013956<<10 {
		t.Errorf("memTotal = %d, %v", n, err)
	}
	if _, err := memTotal([]byte("MemFree: 1 kB\n")); err == nil {
		t.Error("no MemTotal: no error")
	}
}

// fakeCgroup makes a directory that reads like a populated cgroup. Unlike
// a real one it cannot be removed, which the sweep takes as populated.
func fakeCgroup(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupSweep(t *testing.T) {
	user := t.TempDir()
	c := &cgroups{user: user, logf: t.Logf, active: map[string]bool{}, reported: map[string][2]int64{}}
	os.Mkdir(filepath.Join(user, "exec-1"), 0o755)                  // finished and empty: removed
	fakeCgroup(t, filepath.Join(user, "exec-2"), map[string]string{ // a fork bomb's leftovers
		"cgroup.procs": "5\n6\n", "pids.events": "max 3\n", "memory.events": "oom 0\noom_kill 0\n", "cgroup.kill": ""})
	fakeCgroup(t, filepath.Join(user, "exec-3"), map[string]string{ // a background server
		"cgroup.procs": "7\n", "pids.events": "max 0\n", "cgroup.kill": ""})
	fakeCgroup(t, filepath.Join(user, "exec-4"), map[string]string{ // still being served
		"cgroup.procs": "8\n", "pids.events": "max 9\n", "cgroup.kill": ""})
	c.active["exec-4"] = true
	fakeCgroup(t, filepath.Join(user, "other"), map[string]string{"cgroup.procs": "9\n", "pids.events": "max 1\n"})

	l := c.sweep(false)
	if want := (leftovers{Running: 1, Killed: 2, PidsLimited: 3}); l != want {
		t.Errorf("sweep = %+v, want %+v", l, want)
	}
	if _, err := os.Stat(filepath.Join(user, "exec-1")); !os.IsNotExist(err) {
		t.Errorf("the empty cgroup is still there: %v", err)
	}
	for dir, want := range map[string]string{"exec-2": "1", "exec-3": "", "exec-4": ""} {
		if b, _ := os.ReadFile(filepath.Join(user, dir, "cgroup.kill")); string(b) != want {
			t.Errorf("%s/cgroup.kill = %q, want %q", dir, b, want)
		}
	}
	// A count is reported once; a new refusal is reported again.
	os.WriteFile(filepath.Join(user, "exec-3", "pids.events"), []byte("max 2\n"), 0o644)
	if l := c.sweep(false); l.PidsLimited != 2 {
		t.Errorf("second sweep: %+v, want only exec-3's 2 new refusals", l)
	}
	// With no room left, everything finished goes, active execs stay.
	os.WriteFile(filepath.Join(user, "exec-3", "pids.events"), []byte("max 0\n"), 0o644)
	os.WriteFile(filepath.Join(user, "exec-3", "cgroup.kill"), nil, 0o644)
	if l := c.sweep(true); l.Killed != 3 || l.Running != 0 {
		t.Errorf("sweep(all) = %+v, want exec-2's and exec-3's 3 processes killed", l)
	}
	if b, _ := os.ReadFile(filepath.Join(user, "exec-3", "cgroup.kill")); string(b) != "1" {
		t.Errorf("sweep(all) left exec-3 alone")
	}
	if b, _ := os.ReadFile(filepath.Join(user, "exec-4", "cgroup.kill")); string(b) != "" {
		t.Errorf("sweep(all) killed the active exec-4")
	}
}

func TestExecCgroupLifecycle(t *testing.T) {
	user := t.TempDir()
	c := &cgroups{user: user, logf: t.Logf, active: map[string]bool{}, reported: map[string][2]int64{}}
	x, err := c.start()
	if err != nil {
		t.Fatal(err)
	}
	if !c.active[x.name] || x.fd == nil {
		t.Fatalf("started %+v, active %v", x, c.active)
	}
	if l := c.sweep(false); l != (leftovers{}) {
		t.Errorf("the sweep touched an active exec: %+v", l)
	}
	if _, err := os.Stat(x.dir); err != nil {
		t.Fatalf("the active exec's cgroup is gone: %v", err)
	}
	if p, o, n := x.done(); p != 0 || o != 0 || n != 0 {
		t.Errorf("done = %d %d %d", p, o, n)
	}
	if _, err := os.Stat(x.dir); !os.IsNotExist(err) || len(c.active) != 0 {
		t.Errorf("after done: %v, active %v", err, c.active)
	}
	x.done() // again, as the deferred call does
	var nilc *cgroups
	if x, err := nilc.start(); x != nil || err != nil || nilc.sweep(false) != (leftovers{}) {
		t.Error("a nil *cgroups is not a no-op")
	}
}
