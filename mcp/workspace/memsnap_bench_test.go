package workspace

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/memory"
)

// BenchmarkMemorySnapshots measures, in one run and side by side, what
// memory snapshots change (issue 13's figures):
//
//   - workspace_create to its first exec answered: cold boot vs the
//     environment's warm snapshot, restored into a new VM and taking the
//     standby VM (standby.go);
//   - workspace_reset to its first exec answered: to a disk-only snapshot
//     (a boot) vs to a memory snapshot;
//   - workspace_fork of a running workspace (one fork, to its first exec);
//   - the host memory ten idle forks of one workspace hold vs ten
//     cold-booted workspaces (minimal environment).
//
// Each timing is the median of several runs. The set runs once per process
// whatever -benchtime says (the framework's later rounds report the same
// figures): one set is minutes in the harness. Timings use debian-12 when
// PYRO_TEST_ENV_DEBIAN names it, else the minimal environment (the native
// bundle carries only that one).
func BenchmarkMemorySnapshots(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	minimal := kvmtest.Path(b, "PYRO_TEST_ENV_MINIMAL")
	timingEnv := minimal
	if d := os.Getenv("PYRO_TEST_ENV_DEBIAN"); d != "" {
		timingEnv = d
	}
	memBench.once.Do(func() {
		memBench.metrics = map[string]float64{}
		benchTimings(b, timingEnv, memBench.metrics)
		benchMemory(b, minimal, memBench.metrics)
	})
	for unit, v := range memBench.metrics {
		b.ReportMetric(v, unit)
	}
}

// memBench holds the one set's figures.
var memBench struct {
	once    sync.Once
	metrics map[string]float64
}

func benchManager(b *testing.B, envDir string, mem, maxRunning int) *Manager {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("PYRO_BENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m, err := Open(Options{StateDir: b.TempDir(), CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: mem,
		WarmSnapshots: true, WarmRoot: b.TempDir(), MaxRunning: maxRunning, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchExec(b *testing.B, m *Manager, id string) {
	b.Helper()
	r, err := m.Exec(context.Background(), contract.ExecRequest{ID: id, Command: "true", TimeoutSeconds: 120})
	if err != nil || r.ExitCode != 0 {
		b.Fatalf("exec in %s: %+v %v", id, r, err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchTimings(b *testing.B, envDir string, metrics map[string]float64) {
	ctx := context.Background()
	m := benchManager(b, envDir, 384, 16)
	env := filepath.Base(envDir)
	var made []string // created workspaces, deleted when timed
	timed := func(n int, f func() string) []time.Duration {
		var ds []time.Duration
		for range n {
			t0 := time.Now()
			id := f()
			benchExec(b, m, id)
			ds = append(ds, time.Since(t0))
			made = append(made, id)
		}
		return ds
	}
	// Deleting the timed creates keeps the harness's memory for the VMs
	// that follow.
	deleteMade := func() {
		for _, id := range made {
			if err := m.Delete(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		made = nil
	}
	create := func(want contract.BootKind) func() string {
		return func() string {
			w, err := m.Create(ctx, contract.CreateRequest{Env: env})
			if err != nil {
				b.Fatal(err)
			}
			if w.Boot != want {
				b.Fatalf("create: boot %q (%s), want %q", w.Boot, w.BootNote, want)
			}
			return w.ID
		}
	}
	// The first create boots and takes the warm snapshot: time cold
	// creates with warm snapshots off.
	m.opts.WarmSnapshots = false
	cold := timed(3, create(contract.BootCold))
	m.opts.WarmSnapshots = true
	create(contract.BootCold)() // takes the warm snapshot
	warm := timed(5, create(contract.BootWarm))
	deleteMade()
	// Creates that take a standby VM (standby.go), each made before the
	// create, as an agent's next create finds it.
	m.opts.Standby = true
	create(contract.BootWarm)() // leaves the first standby
	var standby []time.Duration
	for range 5 {
		m.standbyMade()
		standby = append(standby, timed(1, create(contract.BootWarm))...)
		if d := lifeDetail(b, m, made[len(made)-1], "create"); !strings.Contains(d, standbyDetail) {
			b.Logf("FIGURE a create did not take the standby VM (its time is a restore's): %s", d)
		}
	}
	m.standbyMade()
	m.opts.Standby = false
	m.evictStandby()
	deleteMade()

	w, err := m.Create(ctx, contract.CreateRequest{Env: env})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: w.ID, Name: "disk", DiskOnly: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: w.ID, Name: "mem"}); err != nil {
		b.Fatal(err)
	}
	reset := func(name string, memory bool) func() string {
		return func() string {
			r, err := m.Reset(ctx, w.ID, name)
			if err != nil {
				b.Fatal(err)
			}
			if r.Memory != memory {
				b.Fatalf("reset to %s: memory %v (%s)", name, r.Memory, r.Note)
			}
			return w.ID
		}
	}
	resetDisk := timed(3, reset("disk", false))
	// The first reset to the image resumes it in a new VM; later ones
	// rewind that VM in place (rewind.go).
	var resetFirst []time.Duration
	for range 3 {
		resetFirst = append(resetFirst, timed(1, reset("mem", true))...)
		timed(1, reset("disk", false))
	}
	timed(1, reset("mem", true)) // a new VM on the image, which the resets below rewind
	resetMem := timed(5, reset("mem", true))
	if d := lastResetDetail(b, m, w.ID); !strings.Contains(d, "rewound in place") {
		b.Logf("FIGURE the last reset to the memory snapshot did not rewind in place: %s", d)
	}
	fork := timed(3, func() string {
		r, err := m.Fork(ctx, contract.ForkRequest{ID: w.ID, Count: 1})
		if err != nil {
			b.Fatal(err)
		}
		if !r.Memory {
			b.Logf("FIGURE a fork booted instead of resuming (its time is a boot's): %s", r.Note)
		}
		return r.Forks[0].ID
	})
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	metrics["create-cold-ms"] = ms(median(cold))
	metrics["create-warm-ms"] = ms(median(warm))
	metrics["create-standby-ms"] = ms(median(standby))
	metrics["reset-disk-ms"] = ms(median(resetDisk))
	metrics["reset-memory-new-vm-ms"] = ms(median(resetFirst))
	metrics["reset-memory-ms"] = ms(median(resetMem))
	metrics["fork-ms"] = ms(median(fork))
	b.Logf("FIGURE %s create to first exec: cold %v %v, warm snapshot in a new VM %v %v: %.0fx, "+
		"warm snapshot in the standby VM %v %v: %.0fx", env,
		median(cold), cold, median(warm), warm, float64(median(cold))/float64(median(warm)),
		median(standby), standby, float64(median(cold))/float64(median(standby)))
	b.Logf("FIGURE %s reset to first exec: disk snapshot (boot) %v %v, memory snapshot in a new VM %v %v: %.0fx, "+
		"memory snapshot again (rewound in place) %v %v: %.0fx", env,
		median(resetDisk), resetDisk, median(resetFirst), resetFirst, float64(median(resetDisk))/float64(median(resetFirst)),
		median(resetMem), resetMem, float64(median(resetDisk))/float64(median(resetMem)))
	b.Logf("FIGURE %s fork of a running workspace to first exec: %v %v", env, median(fork), fork)
	// Stop these VMs: the memory figures below start from none.
	m.Close()
}

// benchMemory compares the host memory of ten idle forks of one running
// workspace with ten cold-booted ones: anonymous memory the process holds
// (pages guests wrote) plus the page cache of the memory image they share
// (counted once).
func benchMemory(b *testing.B, envDir string, metrics map[string]float64) {
	ctx := context.Background()
	env := filepath.Base(envDir)
	const n, mem = 10, 256
	// Let the guests go idle, and give the heap the servers' own garbage
	// (that of the VMs stopped before) back, so that RssAnon moves with
	// the guests only.
	settle := func() {
		time.Sleep(5 * time.Second)
		debug.FreeOSMemory()
	}

	m := benchManager(b, envDir, mem, 2*n+2)
	m.opts.WarmSnapshots = false // cold boots, all of them
	settle()
	base := anonKiB(b)
	var cold []string
	for range n {
		w, err := m.Create(ctx, contract.CreateRequest{Env: env})
		if err != nil {
			b.Fatal(err)
		}
		cold = append(cold, w.ID)
	}
	settle()
	coldKiB := anonKiB(b) - base
	for _, id := range cold {
		m.Delete(ctx, id)
	}

	parent, err := m.Create(ctx, contract.CreateRequest{Env: env})
	if err != nil {
		b.Fatal(err)
	}
	w, _ := m.get(parent.ID)
	// One image for all ten (a fork takes at most contract.MaxForks at
	// once): fork a memory snapshot of the parent, twice.
	if s, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: parent.ID, Name: "idle"}); err != nil || !s.Memory {
		b.Fatalf("snapshot: %+v %v", s, err)
	}
	settle()
	base = anonKiB(b)
	for _, count := range []int{contract.MaxForks, n - contract.MaxForks} {
		r, err := m.Fork(ctx, contract.ForkRequest{ID: parent.ID, Snapshot: "idle", Count: count})
		if err != nil {
			b.Fatal(err)
		}
		if !r.Memory {
			b.Fatalf("fork booted: %s", r.Note)
		}
	}
	settle()
	forkAnon := anonKiB(b) - base
	cached := imageCacheKiB(b, w.dir)
	metrics["10cold-MiB"] = float64(coldKiB) / 1024
	metrics["10forks-MiB"] = float64(forkAnon+cached) / 1024
	b.Logf("FIGURE %s host memory, %d idle workspaces of %d MiB: cold-booted %d MiB; forks %d MiB (%d MiB private + %d MiB shared image in page cache): %.1fx less",
		env, n, mem, coldKiB/1024, (forkAnon+cached)/1024, forkAnon/1024, cached/1024, float64(coldKiB)/float64(max(forkAnon+cached, 1)))
}

// anonKiB is this process's anonymous resident memory (RssAnon).
func anonKiB(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "RssAnon:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	b.Fatal("no RssAnon in /proc/self/status")
	return 0
}

// imageCacheKiB is the page cache the memory images under dir hold.
func imageCacheKiB(b *testing.B, dir string) int64 {
	images, err := filepath.Glob(filepath.Join(dir, memoryDir, "*", vmm.MemoryFile))
	if err != nil {
		b.Fatal(err)
	}
	var kib int64
	for _, p := range images {
		n, err := memory.CachedPages(p)
		if err != nil {
			b.Fatal(err)
		}
		kib += int64(n) * 4
	}
	return kib
}
