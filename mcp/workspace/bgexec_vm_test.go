package workspace

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// A 90-second command started in the background in a debian-12 workspace:
// ExecStart answers at once; polls while it runs see it running with its
// output growing, each from where the last left off; then it finishes with
// its exit code, its 90 lines of stdout whole (read back by offsets and
// from the start) and its stderr, and the journal says how it ended.
func TestWorkspaceVMBackgroundDebian(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := vmManager(t, "PYRO_TEST_ENV_DEBIAN", 256)
	ctx := t.Context()
	ws, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", TTLSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	const cmd = `for i in $(seq 90); do echo line $i; sleep 1; done; echo done >&2; exit 3`
	v, err := m.ExecStart(ctx, contract.ExecRequest{ID: ws.ID, Command: cmd, TimeoutSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if v.State != contract.ExecRunning || v.Seq == 0 {
		t.Fatalf("started: %+v", v)
	}
	var (
		out, errOut strings.Builder
		outOff      int64
		errOff      int64
		grew        int // running polls that brought new output
		last        int64
		p           contract.BackgroundExec
	)
	deadline := time.Now().Add(8 * time.Minute)
	for {
		p, err = m.ExecPoll(ctx, contract.PollRequest{ID: ws.ID, Seq: v.Seq, StdoutOffset: outOff, StderrOffset: errOff, Wait: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out.Write(p.Result.Stdout)
		errOut.Write(p.Result.Stderr)
		outOff, errOff = p.StdoutNext, p.StderrNext
		if p.State != contract.ExecRunning {
			break
		}
		if p.Result.StdoutSize > last && len(p.Result.Stdout) > 0 {
			grew++
		}
		last = p.Result.StdoutSize
		t.Logf("poll: running, %d bytes of stdout so far", p.Result.StdoutSize)
		if time.Now().After(deadline) {
			t.Fatalf("still running after 8 minutes: %+v", p)
		}
	}
	if grew < 3 {
		t.Errorf("only %d polls saw the output grow while the command ran", grew)
	}
	var want strings.Builder
	for i := 1; i <= 90; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if p.State != contract.ExecExited || p.Result.ExitCode != 3 || out.String() != want.String() || errOut.String() != "done\n" {
		t.Fatalf("ended: state %s exit %d reason %q, stdout by offsets %q, stderr %q", p.State, p.Result.ExitCode, p.Reason, out.String(), errOut.String())
	}
	whole, err := m.ExecPoll(ctx, contract.PollRequest{ID: ws.ID, Seq: v.Seq})
	if err != nil {
		t.Fatal(err)
	}
	if string(whole.Result.Stdout) != want.String() || whole.Result.StdoutSize != int64(want.Len()) || string(whole.Result.Stderr) != "done\n" {
		t.Fatalf("whole output: %+v", whole)
	}
	if whole.Result.Duration < 90*time.Second {
		t.Errorf("ran %v, less than its 90 sleeps", whole.Result.Duration)
	}
	logs, err := m.Logs(ctx, contract.LogsRequest{ID: ws.ID, AfterSeq: v.Seq - 1, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e := logs.Entries[0]; e.Seq != v.Seq || e.ExitCode == nil || *e.ExitCode != 3 || e.Detail != bgDetail {
		t.Fatalf("journal: %+v", e)
	}
	if st, _ := m.Status(ctx, ws.ID); len(st.Background) != 0 {
		t.Fatalf("status still lists it: %+v", st.Background)
	}
}
