package main

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// fakeTerm is a terminal whose keystrokes the test types into a pipe.
type fakeTerm struct {
	r *io.PipeReader

	mu         sync.Mutex
	cols, rows int
	raw        bool // in raw mode now
	restored   int  // times restore ran
}

func (f *fakeTerm) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *fakeTerm) Size() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cols, f.rows
}

func (f *fakeTerm) Raw() (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = true
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.raw = false
			f.restored++
		})
	}, nil
}

func (f *fakeTerm) state() (raw bool, restored int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.raw, f.restored
}

// shellRun is a pyro workspace shell running in the background of a
// test, on a fake terminal.
type shellRun struct {
	term           *fakeTerm
	keys           *io.PipeWriter
	out, err       syncBuffer
	done           chan int
	resize, signal chan chan<- os.Signal
}

func startShell(t *testing.T, args ...string) *shellRun {
	t.Helper()
	pr, pw := io.Pipe()
	s := &shellRun{term: &fakeTerm{r: pr, cols: 132, rows: 50}, keys: pw, done: make(chan int, 1),
		resize: make(chan chan<- os.Signal, 1), signal: make(chan chan<- os.Signal, 1)}
	oldTerm, oldResize, oldSigs := openTerminal, wsNotifyResize, wsNotifySignals
	openTerminal = func() (wsTerminal, error) { return s.term, nil }
	wsNotifyResize = func(ch chan<- os.Signal) func() { s.resize <- ch; return func() {} }
	wsNotifySignals = func(ch chan<- os.Signal) func() { s.signal <- ch; return func() {} }
	t.Cleanup(func() {
		pw.Close()
		openTerminal, wsNotifyResize, wsNotifySignals = oldTerm, oldResize, oldSigs
	})
	go func() { s.done <- workspaceMain(args, &s.out, &s.err) }()
	return s
}

// sessionStarted waits for the session to watch the window's size, which
// it does once the shell is open, and returns the channel that delivers
// resizes. It fails the test at once if the command returned instead,
// and after a minute if it did neither.
func (s *shellRun) sessionStarted(t *testing.T) chan<- os.Signal {
	t.Helper()
	select {
	case ch := <-s.resize:
		return ch
	case code := <-s.done:
		t.Fatalf("pyro workspace shell returned %d before its session began; stderr %q", code, s.err.String())
	case <-time.After(time.Minute):
		t.Fatalf("pyro workspace shell opened no session in a minute; stderr %q", s.err.String())
	}
	return nil
}

func (s *shellRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-s.done:
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("pyro workspace shell did not return")
		return -1
	}
}

// shellInfo returns the fake's record of the workspace's shell n, with
// ok false once it is closed.
func shellInfo(b *mcptest.Backend, n int) (contract.ShellInfo, bool) {
	list, _ := b.ShellList(context.Background(), "ws-1")
	for _, s := range list {
		if s.Shell == n {
			return s, true
		}
	}
	return contract.ShellInfo{}, false
}

// TestShellSession drives a session: the terminal goes raw, keystrokes
// reach the shell as typed and its output this terminal, a window resize
// reaches the shell, and when the input ends the shell is closed and the
// terminal restored.
func TestShellSession(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	s := startShell(t, "shell", "dev", "--", "bash")
	resize := s.sessionStarted(t)
	waitFor(t, "the prompt", func() bool { return s.out.String() == "$ " })
	if raw, _ := s.term.state(); !raw {
		t.Error("the terminal is not raw during the session")
	}
	info, ok := shellInfo(b, 1)
	if !ok || info.Cols != 132 || info.Rows != 50 || !slices.Equal(info.Argv, []string{"bash"}) {
		t.Errorf("opened %+v (%v)", info, ok)
	}
	io.WriteString(s.keys, "echo hi\r") // the fake answers a line typed in one go
	waitFor(t, "the answer", func() bool { return strings.Contains(s.out.String(), "ran: echo hi\r\n$ ") })
	if got := s.out.String(); got != "$ echo hi\r\nran: echo hi\r\n$ " {
		t.Errorf("terminal shows %q: output lost or doubled", got)
	}
	s.term.mu.Lock()
	s.term.cols, s.term.rows = 80, 24
	s.term.mu.Unlock()
	resize <- syscall.SIGWINCH
	waitFor(t, "the resize", func() bool { i, _ := shellInfo(b, 1); return i.Cols == 80 && i.Rows == 24 })
	s.keys.Close()
	if code := s.wait(t); code != exitOK {
		t.Errorf("exit %d; stderr %q", code, s.err.String())
	}
	if _, open := shellInfo(b, 1); open {
		t.Error("the shell was not closed")
	}
	if raw, restored := s.term.state(); raw || restored != 1 {
		t.Errorf("terminal raw %v, restored %d times", raw, restored)
	}
}

// TestShellSignal checks that a signal to pyro ends the session with the
// terminal restored and the shell closed.
func TestShellSignal(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	s := startShell(t, "shell", "dev")
	sigs := <-s.signal
	waitFor(t, "the prompt", func() bool { return s.out.String() == "$ " })
	sigs <- syscall.SIGTERM
	if code := s.wait(t); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit %d after SIGTERM", code)
	}
	if _, open := shellInfo(b, 1); open {
		t.Error("the shell was not closed")
	}
	if raw, restored := s.term.state(); raw || restored != 1 {
		t.Errorf("terminal raw %v, restored %d times", raw, restored)
	}
	if !strings.Contains(s.err.String(), "closing the shell") {
		t.Errorf("stderr %q", s.err.String())
	}
}

// TestShellFailure checks that a backend failure mid-session is reported
// with the terminal restored.
func TestShellFailure(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	s := startShell(t, "shell", "dev")
	waitFor(t, "the prompt", func() bool { return s.out.String() == "$ " })
	b.SetError("ShellRead", contract.Stopped("ws-1", contract.StateStopped))
	if code := s.wait(t); code != exitFailure {
		t.Errorf("exit %d", code)
	}
	if !strings.Contains(s.err.String(), `workspace "ws-1" is stopped`) || !strings.Contains(s.err.String(), "pyro workspace start") {
		t.Errorf("stderr %q", s.err.String())
	}
	if raw, restored := s.term.state(); raw || restored != 1 {
		t.Errorf("terminal raw %v, restored %d times", raw, restored)
	}
}

func TestShellArgs(t *testing.T) {
	fakeWorkspaces(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"shell"}, "name the workspace"},
		{[]string{"shell", "dev", "python3"}, "a program goes after --"},
		{[]string{"shell", "dev", "-c", "top", "--", "top"}, "not both"},
	} {
		if r := runWS("", tc.args...); r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v", tc.args, r)
		}
	}
}
