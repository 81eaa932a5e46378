package instance

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// shellTrips is how many round trips BenchmarkShellRoundTrip times at
// least (as BenchmarkExecTrue's minExecs).
const shellTrips = 500

// BenchmarkShellRoundTrip measures one interaction with a shell in a
// running minimal VM, as the shell tools make it: write a line to the
// terminal of `cat` (shell_write), then read until cat has written it
// back (shell_read with a wait). Each is one agent stream over vsock; the
// line crosses the terminal twice (the echo, then cat's copy).
func BenchmarkShellRoundTrip(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "minimal", "PYRO_TEST_ENV_MINIMAL")
	vm := benchStart(b, e, benchDisk(b, e))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	si, err := vm.Agent.ShellOpen(ctx, proto.ShellOpenArgs{Argv: []string{"cat"}})
	if err != nil {
		b.Fatal(err)
	}
	var cursor int64
	n := 0
	trip := func() time.Duration {
		n++
		line := fmt.Sprintf("line-%d\r", n)
		want := []byte(fmt.Sprintf("line-%d\r\nline-%d\r\n", n, n)) // the echo, then cat's copy
		start := time.Now()
		if _, err := vm.Agent.ShellWrite(ctx, si.ID, []byte(line)); err != nil {
			b.Fatal(err)
		}
		var got []byte
		for !bytes.Equal(got, want) {
			data, res, err := vm.Agent.ShellRead(ctx, proto.ShellReadArgs{ID: si.ID, Cursor: cursor, WaitMs: 10000})
			if err != nil {
				b.Fatal(err)
			}
			got, cursor = append(got, data...), res.Next
			if len(got) > len(want) || res.Exited {
				b.Fatalf("round trip %d: got %q, want %q", n, got, want)
			}
		}
		return time.Since(start)
	}
	for range 10 {
		trip()
	}
	var lat []time.Duration
	for b.Loop() {
		for range 100 {
			lat = append(lat, trip())
		}
	}
	for len(lat) < shellTrips {
		lat = append(lat, trip())
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	b.ReportMetric(usOf(p50), "p50-us")
	b.ReportMetric(usOf(p99), "p99-us")
	b.Logf("shell round trip (write a line to cat on a terminal, read it back), %d trips: p50 %v, p99 %v", len(lat), p50, p99)
}
