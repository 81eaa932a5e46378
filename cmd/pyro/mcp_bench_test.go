package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// BenchmarkMCPWorkspace measures the workspace figures through the real
// product: the go-sdk client drives `pyro mcp serve` over stdio, and each
// figure is a tool call as a chat host makes it, from the request out to
// the result in. Each iteration creates a debian-12 workspace (cold boot,
// seed, baseline) and times its first exec, 20 exec round trips of `true`,
// a snapshot, a reset to that snapshot, and the delete. Medians over the
// iterations (each iteration's exec figure is its own median of 20).
//
//	make bench   (runs it with -benchtime 5x)
func BenchmarkMCPWorkspace(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	m := startMCP(b, b.TempDir())
	var create, first, exec, snap, reset, del []time.Duration
	timed := func(tool string, args map[string]any) (map[string]any, time.Duration) {
		t0 := time.Now()
		out := m.ok(tool, args)
		return out, time.Since(t0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seed := pythonFixture(b)
		out, d := timed("workspace_create", map[string]any{"name": fmt.Sprintf("bench-%d", i), "seed": map[string]any{"kind": "dir", "path": seed}})
		create = append(create, d)
		id := str(out["workspace"].(map[string]any)["id"])
		_, d = timed("workspace_exec", map[string]any{"id": id, "argv": []string{"true"}})
		first = append(first, d+create[len(create)-1])
		var round []time.Duration
		for range 20 {
			_, d = timed("workspace_exec", map[string]any{"id": id, "argv": []string{"true"}})
			round = append(round, d)
		}
		exec = append(exec, median(round))
		_, d = timed("snapshot_create", map[string]any{"id": id, "name": "s"})
		snap = append(snap, d)
		_, d = timed("workspace_reset", map[string]any{"id": id, "snapshot": "s"})
		reset = append(reset, d)
		_, d = timed("workspace_delete", map[string]any{"id": id})
		del = append(del, d)
	}
	b.StopTimer()
	for _, f := range []struct {
		unit string
		ds   []time.Duration
	}{
		{"create-ms", create}, {"create-to-first-exec-ms", first}, {"exec-roundtrip-ms", exec},
		{"snapshot-ms", snap}, {"reset-to-snapshot-ms", reset}, {"delete-ms", del},
	} {
		b.ReportMetric(ms(median(f.ds)), f.unit)
		b.Logf("%s: median %.1f, min %.1f, max %.1f (n=%d)", f.unit, ms(median(f.ds)), ms(slices.Min(f.ds)), ms(slices.Max(f.ds)), len(f.ds))
	}
}
