package workspace

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent"
	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/redact"
	"github.com/pyro-mcp/pyro/mcp/term"
)

// agentShells serves a real agent in this process (its shells run on this
// host's pseudo-terminals) and returns a call on a VM handle with no VM,
// and the agent's client.
func agentShells(t *testing.T) (*call, *proto.Client) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &agent.Server{}
	go srv.Serve(l)
	var d net.Dialer
	g := &proto.Client{Dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	hctx, hcancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		list, _ := g.ShellList(context.Background())
		for _, s := range list {
			g.ShellClose(context.Background(), s.ID, time.Second)
		}
		cancel()
		hcancel()
		l.Close()
	})
	return &call{w: &workspace{}, h: &vmHandle{ctx: hctx}, ctx: ctx, parent: ctx}, g
}

func TestShellPlainOutput(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		// Inside the harness's L1 (which has no python3) this host-side
		// test has nothing to drive; the VM tests drive python3 in a guest.
		t.Skipf("no python3 on this host: %v", err)
	}
	c, g := agentShells(t)
	si, err := g.ShellOpen(c.ctx, proto.ShellOpenArgs{Argv: []string{"python3", "-q"}, Cols: 80, Rows: 24,
		Env: map[string]string{"PYTHONSTARTUP": ""}})
	if err != nil {
		t.Fatal(err)
	}
	hs := c.h.shells.add(si)
	prompt := contract.ShellWait{Pattern: regexp.MustCompile(`>>> $`), Timeout: 20 * time.Second}
	o, err := c.shellIO(g, hs, false, nil, prompt, nil)
	if err != nil || !o.Matched || o.Text != ">>>" {
		t.Fatalf("first prompt: %+v %v", o, err)
	}
	o, err = c.shellIO(g, hs, false, nil, prompt, func() (int, error) {
		return g.ShellWrite(c.ctx, hs.id, []byte("print('x'*3, 6*7)\r"))
	})
	if err != nil || o.Text != ">>> print('x'*3, 6*7)\nxxx 42\n>>>" || o.Written != 18 || o.TimedOut {
		t.Fatalf("computation: %q %+v %v", o.Text, o, err)
	}
	// Raw re-read of the same bytes, escapes and all.
	from := o.Start
	o2, err := c.shellIO(g, hs, true, &from, contract.ShellWait{}, nil)
	if err != nil || o2.Start != from || o2.End != o.End || !strings.Contains(o2.Text, "xxx 42\r\n>>> ") {
		t.Fatalf("raw re-read: %q %+v %v", o2.Text, o2, err)
	}
	// An idle wait with nothing coming times out after the idle span,
	// not the timeout.
	t0 := time.Now()
	o, err = c.shellIO(g, hs, false, nil, contract.ShellWait{Idle: 200 * time.Millisecond, Timeout: 20 * time.Second}, nil)
	if err != nil || o.Text != "" || o.TimedOut || time.Since(t0) > 10*time.Second {
		t.Fatalf("idle: %+v after %v, %v", o, time.Since(t0), err)
	}
	// A pattern that never comes ends at the timeout.
	o, err = c.shellIO(g, hs, false, nil, contract.ShellWait{Pattern: regexp.MustCompile("never"), Timeout: time.Second}, nil)
	if err != nil || o.Matched || !o.TimedOut {
		t.Fatalf("timeout: %+v %v", o, err)
	}
	o, err = c.shellIO(g, hs, false, nil, prompt, func() (int, error) { return g.ShellWrite(c.ctx, hs.id, []byte("exit(5)\r")) })
	if err != nil || !o.Info.Exited || o.Info.ExitCode != 5 {
		t.Fatalf("exit: %+v %v", o, err)
	}
}

func TestShellMatchText(t *testing.T) {
	for _, c := range []struct {
		cols int
		in   string
		want string
	}{
		{80, "line\r\n$ ", "line\n$ "},
		{80, "$ ", "$ "},
		{80, "abc\r\n", "abc"},
		{10, strings.Repeat("A", 25) + "\r\n# ", strings.Repeat("A", 25) + "\n# "},
		{10, strings.Repeat("B", 10) + "\r\n>>> ", strings.Repeat("B", 10) + "\n>>> "},
		{10, "x\r\n$ \x1b[2A", "x\n$"}, // the cursor moved away: nothing added
	} {
		s := term.NewScreen(c.cols, 24)
		s.Write([]byte(c.in))
		if got := matchText(s); got != c.want {
			t.Errorf("%q on %d columns: %q, want %q", c.in, c.cols, got, c.want)
		}
	}
}

// A secret a shell prints in two pieces, read by two calls, reaches
// neither the screen nor the raw bytes: the piece that may begin it
// waits for the rest.
func TestShellOutputRedacted(t *testing.T) {
	c, g := agentShells(t)
	set, err := redact.New([][]byte{[]byte("secret-123")})
	if err != nil {
		t.Fatal(err)
	}
	c.w.sec.set = set
	for _, raw := range []bool{false, true} {
		si, err := g.ShellOpen(c.ctx, proto.ShellOpenArgs{Argv: []string{"sh", "-c", "printf 'tok: sec'; sleep 1; printf 'ret-123 done\\n'; sleep 5"},
			Cols: 80, Rows: 24})
		if err != nil {
			t.Fatal(err)
		}
		hs := c.h.shells.add(si)
		var all string
		for _, wait := range []contract.ShellWait{
			{Pattern: regexp.MustCompile(`tok:`), Timeout: 20 * time.Second},
			{Pattern: regexp.MustCompile(`done`), Timeout: 20 * time.Second},
		} {
			o, err := c.shellIO(g, hs, raw, nil, wait, nil)
			if err != nil {
				t.Fatal(err)
			}
			all += o.Text
			if strings.Contains(o.Text, "sec") {
				t.Errorf("raw %v: a read shows part of the secret: %q", raw, o.Text)
			}
		}
		if !strings.Contains(all, "[REDACTED] done") {
			t.Errorf("raw %v: the reads %q lack the redacted secret", raw, all)
		}
	}
}

// A shell the guest runs but the host never filed (one a memory snapshot's
// guest had open) is adopted by the first call naming it: its screen shows
// what the guest kept of its output, and that call's wait_for pattern
// matches new output only, not the old prompt.
func TestShellAdopted(t *testing.T) {
	c, g := agentShells(t)
	si, err := g.ShellOpen(c.ctx, proto.ShellOpenArgs{Argv: []string{"sh"}, Cols: 80, Rows: 24,
		Env: map[string]string{"PS1": "$ "}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.ShellWrite(c.ctx, si.ID, []byte("x=41; echo old-$x\r")); err != nil {
		t.Fatal(err)
	}
	var seen string
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(seen, "old-41\r\n$ "); {
		if time.Now().After(deadline) {
			t.Fatalf("the shell's first output: %q", seen)
		}
		data, _, err := g.ShellRead(c.ctx, proto.ShellReadArgs{ID: si.ID, Max: 4096, WaitMs: 200, IdleMs: 50})
		if err != nil {
			t.Fatal(err)
		}
		seen = string(data)
	}
	hs, err := c.shell(g, si.ID)
	if err != nil {
		t.Fatal(err)
	}
	if hs.cursor == 0 || !hs.caughtUp {
		t.Fatalf("adopted at cursor %d, caught up %v", hs.cursor, hs.caughtUp)
	}
	prompt := contract.ShellWait{Pattern: regexp.MustCompile(`\$ $`), Timeout: 20 * time.Second}
	o, err := c.shellIO(g, hs, false, nil, prompt, func() (int, error) {
		return g.ShellWrite(c.ctx, hs.id, []byte("echo new-$((x+1))\r"))
	})
	if err != nil || !o.Matched {
		t.Fatalf("a command in the adopted shell: %+v %v", o, err)
	}
	if !strings.Contains(o.Text, "old-41") || !strings.Contains(o.Text, "new-42\n$") {
		t.Errorf("the adopted shell's screen: %q", o.Text)
	}
	if again, err := c.shell(g, si.ID); err != nil || again != hs {
		t.Errorf("a second call adopted it again: %p %p %v", again, hs, err)
	}
}
