package mcp

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Progress notifications. A client that wants them puts a progressToken in
// a tools/call request's _meta; the call then gets a contract.Progress
// reporter on its context, and the Backend's stage reports (booting the
// microVM, seeding /workspace, recording the baseline, ...) go out as
// notifications/progress for that token. While the call runs, a heartbeat
// every heartbeatEvery says it still does, with the last stage and the time
// so far, so that a long command or wait is not mistaken for a hung server.
// Nothing is sent after the call's result.
//
// The progress value is the count of notifications sent for the call, so
// that it increases with each one as the protocol asks; the stage's own
// count, when it has one, is in the message. total stays unset: no call
// knows its number of stages in advance.

// heartbeatEvery is how often a call with a progress token says it is
// still running. Tests shorten it.
var heartbeatEvery = 5 * time.Second

// minStageGap bounds how often one stage that reports its count (files
// seeded) is forwarded.
const minStageGap = 250 * time.Millisecond

type progressSender struct {
	ctx   context.Context
	ss    *sdk.ServerSession
	token any
	start time.Time
	log   func(msg string, args ...any)

	mu sync.Mutex // guards the fields below; held while sending, which orders the notifications
	// n is the notifications sent so far: the progress value.
	n float64
	// stage is the last stage reported.
	stage string
	// sentAt is when the last notification went out.
	sentAt time.Time
	// closed is set once the call returned.
	closed bool
}

// progress readies a call's progress notifications, if its request asked
// for them: it returns the context the call runs with and a func to call
// once it returned.
func (h *handler) progress(ctx context.Context, req *sdk.CallToolRequest) (context.Context, func()) {
	if req == nil || req.Params == nil || req.Session == nil {
		return ctx, func() {}
	}
	token := req.Params.GetProgressToken()
	if token == nil {
		return ctx, func() {}
	}
	p := &progressSender{ctx: ctx, ss: req.Session, token: token, start: time.Now(), log: h.log.Debug}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				p.heartbeat()
			}
		}
	}()
	return contract.WithProgress(ctx, p.report), func() {
		close(stop)
		<-stopped
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
	}
}

// report forwards one of the Backend's stage reports.
func (p *progressSender) report(stage string, done, total float64) {
	stage = word(stage)
	msg := stage
	if total > 0 {
		msg = fmt.Sprintf("%s (%s of %s)", stage, formatCount(done), formatCount(total))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if stage == p.stage && done < total && time.Since(p.sentAt) < minStageGap {
		return // the same stage counting up: not every step
	}
	p.stage = stage
	p.sendLocked(msg)
}

// heartbeat says the call is still running, unless a stage just did.
func (p *progressSender) heartbeat() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || time.Since(p.sentAt) < heartbeatEvery/2 {
		return
	}
	stage := p.stage
	if stage == "" {
		stage = "running"
	}
	p.sendLocked(fmt.Sprintf("%s, %d s so far", stage, int(time.Since(p.start).Seconds())))
}

func (p *progressSender) sendLocked(msg string) {
	p.n++
	p.sentAt = time.Now()
	err := p.ss.NotifyProgress(p.ctx, &sdk.ProgressNotificationParams{ProgressToken: p.token, Progress: p.n, Message: msg})
	if err != nil {
		p.log("sending a progress notification", "err", err)
	}
}

func formatCount(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}
