package mcp_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// progressLog records a client's progress notifications by token.
type progressLog struct {
	mu    sync.Mutex // guards notes
	notes map[any][]*sdk.ProgressNotificationParams
	// changed gets a value (dropped when full) whenever one arrives.
	changed chan struct{}
}

func newProgressLog() *progressLog {
	return &progressLog{notes: map[any][]*sdk.ProgressNotificationParams{}, changed: make(chan struct{}, 1)}
}

func (l *progressLog) handler(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
	l.mu.Lock()
	l.notes[r.Params.ProgressToken] = append(l.notes[r.Params.ProgressToken], r.Params)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// messages returns token's notification messages so far.
func (l *progressLog) messages(token any) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, n := range l.notes[token] {
		out = append(out, n.Message)
	}
	return out
}

// waitFor waits until a message of token's satisfies ok. Notifications are
// sent before the result but may be handled after CallTool returns.
func (l *progressLog) waitFor(t *testing.T, token any, ok func(string) bool) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		msgs := l.messages(token)
		if slices.ContainsFunc(msgs, ok) {
			return msgs
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("token %v: the awaited notification never came; got %q", token, msgs)
		}
	}
}

// checkIncreasing checks that token's progress values increase, as the
// protocol asks.
func (l *progressLog) checkIncreasing(t *testing.T, token any) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	last := 0.0
	for _, n := range l.notes[token] {
		if n.Progress <= last {
			t.Errorf("token %v: progress %v after %v", token, n.Progress, last)
		}
		last = n.Progress
	}
}

func withToken(name string, token any, args map[string]any) *sdk.CallToolParams {
	p := &sdk.CallToolParams{Name: name, Arguments: args}
	p.SetProgressToken(token)
	return p
}

// TestProgressNotifications: a call whose request carries a progress token
// gets the Backend's stages as notifications/progress, and a heartbeat while
// it runs; a call without one gets none. Under both protocol versions.
func TestProgressNotifications(t *testing.T) {
	defer mcp.SetHeartbeat(20 * time.Millisecond)()
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			b := mcptest.New()
			log := newProgressLog()
			s := connectWith(t, b, mcp.Options{Profile: mcp.ProfileFull},
				&sdk.ClientOptions{ProgressNotificationHandler: log.handler}, &sdk.ClientSessionOptions{ProtocolVersion: version})
			if v := s.cs.InitializeResult().ProtocolVersion; v != version {
				t.Fatalf("negotiated %s, want %s", v, version)
			}

			// Without a token: no notifications.
			id := s.create(nil)

			r := s.callParams(withToken("workspace_create", "create", map[string]any{"seed": map[string]any{"path": "/src/repo"}}))
			if r.isErr {
				t.Fatal(r.text)
			}
			msgs := log.waitFor(t, "create", func(m string) bool { return m == "recording the baseline" })
			for _, want := range []string{"booting the microVM", "guest agent ready", "seeding /workspace (0 of 3)", "seeding /workspace (3 of 3)"} {
				if !slices.Contains(msgs, want) {
					t.Errorf("create: no %q in %q", want, msgs)
				}
			}
			if i, j := slices.Index(msgs, "booting the microVM"), slices.Index(msgs, "recording the baseline"); i > j {
				t.Errorf("create: stages out of order: %q", msgs)
			}
			log.checkIncreasing(t, "create")

			s.ok("snapshot_create", map[string]any{"id": id, "name": "s1"})
			s.callParams(withToken("workspace_reset", 7, map[string]any{"id": id, "snapshot": "s1"}))
			log.waitFor(t, 7.0, func(m string) bool { return m == "guest agent ready" })
			if msgs := log.messages(7.0); msgs[0] != "restoring snapshot s1" {
				t.Errorf("reset: %q", msgs)
			}

			// A long command: heartbeats while it runs, with the time so far.
			beat := make(chan struct{})
			b.ExecFunc = func(req contract.ExecRequest) (contract.ExecResult, error) {
				select {
				case <-beat:
				case <-time.After(30 * time.Second):
				}
				return contract.ExecResult{Stdout: []byte("done\n"), StdoutSize: 5}, nil
			}
			done := make(chan result, 1)
			go func() {
				done <- s.callParams(withToken("workspace_exec", "exec", map[string]any{"id": id, "command": "make test", "timeout_seconds": 600}))
			}()
			log.waitFor(t, "exec", func(m string) bool { return strings.HasPrefix(m, "running, ") && strings.HasSuffix(m, " s so far") })
			close(beat)
			if r := <-done; r.isErr || r.str("stdout") != "done\n" {
				t.Errorf("exec: %s", r.text)
			}
			log.checkIncreasing(t, "exec")

			log.mu.Lock()
			for token := range log.notes {
				if token != "create" && token != 7.0 && token != "exec" {
					t.Errorf("notifications for token %v, which no call gave", token)
				}
			}
			log.mu.Unlock()
		})
	}
}
