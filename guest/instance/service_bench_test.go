package instance

import (
	"context"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// BenchmarkServiceHTTPReady times a service's start to ready in a running
// debian-12 VM: service_start of `python3 -m http.server` with an http
// readiness check polled every 20 ms, from the call to its answer (the
// process's start, Python's import of http.server, the first GET that
// answers). One op is one start; each is stopped before the next.
func BenchmarkServiceHTTPReady(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "debian-12", "PYRO_TEST_ENV_DEBIAN")
	vm := benchStart(b, e, benchDisk(b, e))
	args := proto.ServiceStartArgs{Name: "web", Cwd: "/tmp", Argv: []string{"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"},
		Readiness: proto.Readiness{Kind: proto.ReadyHTTP, URL: "http://127.0.0.1:8000/", TimeoutMs: 120000, IntervalMs: 20},
		WaitMs:    proto.MaxServiceWait.Milliseconds()}
	start := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		t0 := time.Now()
		st, err := vm.Agent.ServiceStart(ctx, args)
		d := time.Since(t0)
		if err != nil || st.State != proto.ServiceReady {
			b.Fatalf("service_start: %+v %v", st, err)
		}
		if _, err := vm.Agent.ServiceStop(ctx, "web", 5*time.Second); err != nil {
			b.Fatal(err)
		}
		return d
	}
	start() // warm up: python3 and its modules in the page cache
	var ds []time.Duration
	for b.Loop() {
		ds = append(ds, start())
	}
	med := medianDur(ds)
	b.ReportMetric(msOf(med), "ready-ms")
	b.Logf("service start to ready, python3 -m http.server with http readiness: median %.0f ms over %d starts (min %.0f, max %.0f)",
		msOf(med), len(ds), msOf(percentile(ds, 0)), msOf(percentile(ds, 100)))
}
