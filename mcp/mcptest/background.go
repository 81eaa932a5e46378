package mcptest

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Background commands: ExecStart journals the command as running and
// returns; the test writes its output (BackgroundOutput) and ends it
// (BackgroundEnd); ExecPoll pages the output by offset and waits for the
// end as the real one does.

var _ contract.BackgroundBackend = (*Backend)(nil)

// bgCmd is a background command; v.Result.Stdout and Stderr hold all of
// its output. Guarded by Backend.mu.
type bgCmd struct {
	v    contract.BackgroundExec
	done chan struct{} // closed when it ends
}

// find returns workspace id's command seq. Called with mu held.
func (w *workspace) findBg(seq int64) *bgCmd {
	for _, c := range w.bg {
		if c.v.Seq == seq {
			return c
		}
	}
	return nil
}

// runningBg lists the running background commands. Called with mu held.
func (w *workspace) runningBg() []contract.BackgroundExec {
	var out []contract.BackgroundExec
	for _, c := range w.bg {
		if c.v.State == contract.ExecRunning {
			out = append(out, c.view(0, 0, false))
		}
	}
	return out
}

// ExecStart implements contract.BackgroundBackend.
func (b *Backend) ExecStart(ctx context.Context, req contract.ExecRequest) (contract.BackgroundExec, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ExecStart"); err != nil {
		return contract.BackgroundExec{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.BackgroundExec{}, err
	}
	running := 0
	for _, c := range w.bg {
		if c.v.State == contract.ExecRunning {
			running++
		}
	}
	if running >= contract.MaxBackground {
		return contract.BackgroundExec{}, contract.LimitReached("%d background commands are running", running)
	}
	cmd := req.Command
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	seq := w.log(b.now, contract.LogExec, cmd, nil, "background; running")
	c := &bgCmd{v: contract.BackgroundExec{Seq: seq, Command: cmd, State: contract.ExecRunning, StartedAt: b.now, TimeoutSeconds: req.TimeoutSeconds,
		Result: contract.ExecResult{Seq: seq, StdoutPath: "/state/out/" + cmd + ".stdout", StderrPath: "/state/out/" + cmd + ".stderr"}},
		done: make(chan struct{})}
	w.bg = append(w.bg, c)
	return c.view(0, 0, false), nil
}

// view returns the command with its output after the offsets (with
// output) or without. Called with mu held.
func (c *bgCmd) view(outOff, errOff int64, output bool) contract.BackgroundExec {
	v := c.v
	r := &v.Result
	r.StdoutSize, r.StderrSize = int64(len(r.Stdout)), int64(len(r.Stderr))
	v.StdoutNext, v.StderrNext = r.StdoutSize, r.StderrSize
	if output {
		r.Stdout = slices.Clone(r.Stdout[min(max(outOff, 0), r.StdoutSize):])
		r.Stderr = slices.Clone(r.Stderr[min(max(errOff, 0), r.StderrSize):])
	} else {
		r.Stdout, r.Stderr = nil, nil
	}
	return v
}

// BackgroundOutput appends to a running background command's output.
func (b *Backend) BackgroundOutput(id string, seq int64, stdout, stderr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		if c := w.findBg(seq); c != nil && c.v.State == contract.ExecRunning {
			c.v.Result.Stdout = append(c.v.Result.Stdout, stdout...)
			c.v.Result.Stderr = append(c.v.Result.Stderr, stderr...)
		}
	}
}

// BackgroundEnd ends a running background command with exit code (124
// and timed out when timedOut), journaling it.
func (b *Backend) BackgroundEnd(id string, seq int64, exit int, timedOut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		if c := w.findBg(seq); c != nil && c.v.State == contract.ExecRunning {
			c.v.State, c.v.Result.ExitCode, c.v.Result.Duration = contract.ExecExited, exit, 90*time.Second
			if timedOut {
				c.v.State, c.v.Result.ExitCode, c.v.Result.TimedOut = contract.ExecTimedOut, 124, true
			}
			code := c.v.Result.ExitCode
			w.journal[seq-1].ExitCode, w.journal[seq-1].Detail = &code, "background"
			close(c.done)
		}
	}
}

// ExecPoll implements contract.BackgroundBackend.
func (b *Backend) ExecPoll(ctx context.Context, req contract.PollRequest) (contract.BackgroundExec, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ExecPoll"); err != nil {
		return contract.BackgroundExec{}, err
	}
	w, err := b.get(req.ID, false)
	if err != nil {
		return contract.BackgroundExec{}, err
	}
	c := w.findBg(req.Seq)
	if c == nil {
		return contract.BackgroundExec{}, contract.NotFound("command", "seq")
	}
	if req.Kill && c.v.State == contract.ExecRunning {
		c.v.State, c.v.Reason = contract.ExecKilled, "killed on request (exec_status kill)"
		w.journal[c.v.Seq-1].Detail = "background; killed: " + c.v.Reason
		close(c.done)
	}
	if req.Wait > 0 && c.v.State == contract.ExecRunning {
		b.mu.Unlock()
		t := time.NewTimer(req.Wait)
		select {
		case <-c.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		b.mu.Lock()
	}
	return c.view(req.StdoutOffset, req.StderrOffset, true), nil
}

// ExecList implements contract.BackgroundBackend.
func (b *Backend) ExecList(ctx context.Context, id string) ([]contract.BackgroundExec, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ExecList"); err != nil {
		return nil, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return nil, err
	}
	var out []contract.BackgroundExec
	for _, c := range w.bg {
		out = append(out, c.view(0, 0, false))
	}
	return out, nil
}
