package workspace

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// fastLiveness makes the liveness watch ping every 5 ms and give up after
// three misses, for one test.
func fastLiveness(t *testing.T) {
	every, misses := livenessEvery, livenessMisses
	livenessEvery, livenessMisses = 5*time.Millisecond, 3
	t.Cleanup(func() { livenessEvery, livenessMisses = every, misses })
}

// A command whose guest wedged (its output stops, and so do the agent's
// answers to pings) ends with the guest stopped answering, long before
// the command's own timeout; one whose guest answers pings runs on,
// however long it stays silent.
func TestExecEndsWhenTheGuestAnswersNoPing(t *testing.T) {
	fastLiveness(t)
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		if req.Shell == "wedged" { // a wedged guest's stream: nothing ever comes
			<-ctx.Done()
			return proto.ExecResult{}, ctx.Err()
		}
		time.Sleep(200 * time.Millisecond) // a quiet command that ends
		return proto.ExecResult{}, nil
	}
	r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "quiet", TimeoutSeconds: 600})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("a quiet command in an answering guest: %+v %v", r, err)
	}
	h.w.mu.Lock()
	pings := h.w.pings
	h.w.hangPings = true
	h.w.mu.Unlock()
	if pings < 5 {
		t.Errorf("%d pings during a 200 ms command, want one every 5 ms", pings)
	}

	begin := time.Now()
	_, err = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "wedged", TimeoutSeconds: 600})
	wantCode(t, err, contract.CodeTimeout)
	if !strings.Contains(err.Error(), "answered no ping") {
		t.Errorf("exec in a wedged guest: %v", err)
	}
	if d := time.Since(begin); d > time.Minute {
		t.Errorf("the wedged guest's exec returned after %v, want about 15 ms: its own 10 minutes ran", d)
	}
	if h.handle(id) == nil {
		t.Error("the VM was stopped: a guest that may come back is left running")
	}
}
