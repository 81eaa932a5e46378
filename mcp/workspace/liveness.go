package workspace

import (
	"context"
	"errors"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Liveness during a long command. An exec waits on its own stream for
// as long as the command's timeout allows (up to an hour), and a guest
// whose kernel wedged (a vCPU spinning, a lost interrupt) would keep it
// waiting all that time in silence: nothing on the stream tells a wedged
// guest from a command that prints nothing. So while a command runs, the
// manager pings the agent on a stream of its own; when it answers none of
// livenessMisses pings in a row, each given livenessEvery, the command's
// call ends with the guest "stopped answering", about a minute and a half
// after it last showed a sign of life. The VM is left as it is (a guest
// under crushing load may yet come back); the error says how to restart
// it. A guest that answers, however busy its command keeps it, is never
// cut off.

// pinger is a guest agent that answers a ping (*proto.Client).
type pinger interface {
	Ping(ctx context.Context) (proto.PingResult, error)
}

var _ pinger = (*proto.Client)(nil)

// livenessEvery is the time between pings, and each ping's limit;
// livenessMisses the pings in a row unanswered that mean the guest is
// wedged. Variables for tests.
var (
	livenessEvery  = 20 * time.Second
	livenessMisses = 4
)

// errWedged is the cause of a call that watchLiveness cut off.
var errWedged = errors.New("the guest answered no ping")

// watchLiveness pings g while ctx lives and cancels ctx with errWedged
// after livenessMisses pings in a row go unanswered. A guest that cannot
// be pinged (the tests' fakes may not) is not watched.
func watchLiveness(ctx context.Context, g guest, cancel context.CancelCauseFunc) {
	p, ok := g.(pinger)
	if !ok {
		return
	}
	t := time.NewTicker(livenessEvery)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, livenessEvery)
		_, err := p.Ping(pctx)
		pcancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			misses = 0
		default:
			if misses++; misses >= livenessMisses {
				cancel(errWedged)
				return
			}
		}
	}
}

// livenessWindow is how long a guest went unanswering before
// watchLiveness gave up on it, for messages.
func livenessWindow() time.Duration { return time.Duration(livenessMisses) * livenessEvery }
