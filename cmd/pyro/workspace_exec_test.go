package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// execRun is a pyro workspace exec running in the background of a test.
type execRun struct {
	out, err syncBuffer
	done     chan int
	sigs     chan chan<- os.Signal // the signal channel exec registered
}

// startExec runs pyro workspace args with the signal source replaced, and
// returns once the fake's background command seq (the first the test
// made) has started.
func startExec(t *testing.T, b *mcptest.Backend, args ...string) *execRun {
	t.Helper()
	r := &execRun{done: make(chan int, 1), sigs: make(chan chan<- os.Signal, 1)}
	old := wsNotifySignals
	wsNotifySignals = func(ch chan<- os.Signal) func() {
		r.sigs <- ch
		return func() {}
	}
	t.Cleanup(func() { wsNotifySignals = old })
	wsStdin = strings.NewReader("")
	go func() { r.done <- workspaceMain(args, &r.out, &r.err) }()
	waitFor(t, "the background command to start", func() bool {
		list, _ := b.ExecList(context.Background(), "ws-1")
		return len(list) == 1
	})
	return r
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (this is not a timing assertion: cond is what is checked).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *execRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("pyro workspace exec did not return")
		return -1
	}
}

// TestExecStreams checks that exec writes a background command's output
// while it runs, over several polls, in order and whole, and exits with
// the command's status.
func TestExecStreams(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	r := startExec(t, b, "exec", "dev", "--env", "A=1", "--", "make", "test")
	const seq = 2
	b.BackgroundOutput("ws-1", seq, "one\n", "warn 1\n")
	waitFor(t, "the first output", func() bool { return r.out.String() == "one\n" && r.err.String() == "warn 1\n" })
	b.BackgroundOutput("ws-1", seq, "two\n", "")
	waitFor(t, "the second output", func() bool { return r.out.String() == "one\ntwo\n" })
	b.BackgroundOutput("ws-1", seq, "three\n", "warn 2\n")
	b.BackgroundEnd("ws-1", seq, 3, false)
	if code := r.wait(t); code != 3 {
		t.Errorf("exit %d, want the command's 3; stderr %q", code, r.err.String())
	}
	if got := r.out.String(); got != "one\ntwo\nthree\n" {
		t.Errorf("stdout %q", got)
	}
	if got := r.err.String(); got != "warn 1\nwarn 2\n" {
		t.Errorf("stderr %q", got)
	}
	polls := 0
	for _, c := range b.Calls() {
		if c == "ExecPoll" {
			polls++
		}
	}
	if polls < 3 {
		t.Errorf("%d polls for output in three steps", polls)
	}
	if list, _ := b.ExecList(context.Background(), "ws-1"); len(list) != 1 || list[0].Command != "make test" || list[0].TimeoutSeconds != contract.DefaultBackgroundTimeout {
		t.Errorf("started %+v", list)
	}
}

func TestExecExitStatuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exit     int
		timedOut bool
		args     []string
		want     int
		stderr   string
	}{
		{name: "success", exit: 0, want: 0},
		{name: "signal", exit: 128 + 9, want: 137},
		{name: "timeout", exit: 0, timedOut: true, args: []string{"--timeout", "90s"}, want: 124, stderr: "timed out after 1m30s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fakeWorkspaces(t, nil)
			r := startExec(t, b, append(append([]string{"exec", "ws-1"}, tc.args...), "--", "sleep", "1")...)
			b.BackgroundEnd("ws-1", 2, tc.exit, tc.timedOut)
			if code := r.wait(t); code != tc.want {
				t.Errorf("exit %d, want %d", code, tc.want)
			}
			if !strings.Contains(r.err.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", r.err.String(), tc.stderr)
			}
		})
	}
}

// TestExecInterrupt checks that Ctrl-C kills the command through the
// backend and exits 130.
func TestExecInterrupt(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	r := startExec(t, b, "exec", "dev", "--", "sleep", "100")
	ch := <-r.sigs
	b.BackgroundOutput("ws-1", 2, "partial\n", "")
	waitFor(t, "the output", func() bool { return r.out.String() == "partial\n" })
	ch <- os.Interrupt
	if code := r.wait(t); code != exitRunSignal {
		t.Errorf("exit %d after Ctrl-C, want %d", code, exitRunSignal)
	}
	list, _ := b.ExecList(context.Background(), "ws-1")
	if len(list) != 1 || list[0].State != contract.ExecKilled {
		t.Errorf("after Ctrl-C: %+v", list)
	}
}

// TestExecJSON checks that --json gathers the whole output into the
// contract's ExecResult, as text.
func TestExecJSON(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	r := startExec(t, b, "exec", "dev", "--json", "--", "make")
	b.BackgroundOutput("ws-1", 2, "a\n", "")
	waitFor(t, "a poll", func() bool { return strings.Count(strings.Join(b.Calls(), " "), "ExecPoll") >= 2 })
	b.BackgroundOutput("ws-1", 2, "b\n", "e\n")
	b.BackgroundEnd("ws-1", 2, 1, false)
	if code := r.wait(t); code != 1 {
		t.Errorf("exit %d", code)
	}
	var res struct {
		ExitCode       int
		Stdout, Stderr string
	}
	if err := json.Unmarshal([]byte(r.out.String()), &res); err != nil {
		t.Fatalf("%v: %s", err, r.out.String())
	}
	if res.ExitCode != 1 || res.Stdout != "a\nb\n" || res.Stderr != "e\n" {
		t.Errorf("result %+v", res)
	}
}

// TestExecStatusFollow checks that exec-status --follow streams from the
// offsets given and exits with the command's status.
func TestExecStatusFollow(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	ctx := context.Background()
	b.ExecStart(ctx, contract.ExecRequest{ID: "ws-1", Command: "make", TimeoutSeconds: 60})
	b.BackgroundOutput("ws-1", 2, "seen\n", "")
	r := startExec(t, b, "exec-status", "dev", "2", "--follow", "--stdout-offset", "5")
	b.BackgroundOutput("ws-1", 2, "new\n", "")
	waitFor(t, "the new output", func() bool { return r.out.String() == "new\n" })
	b.BackgroundEnd("ws-1", 2, 0, false)
	if code := r.wait(t); code != 0 || r.out.String() != "new\n" {
		t.Errorf("exit %d, stdout %q", code, r.out.String())
	}
}

// TestWriteWindow checks how one poll's window reaches the terminal: as
// is when whole; from the host file when the poll cut it and the file
// holds the stretch; as is (with its marker) when it does not.
func TestWriteWindow(t *testing.T) {
	whole := []byte(strings.Repeat("0123456789", 300))
	path := filepath.Join(t.TempDir(), "seq.stdout")
	if err := os.WriteFile(path, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	cut := append(append(append([]byte{}, whole[100:110]...), "\n[... 2870 bytes omitted ...]\n"...), whole[2980:3000]...)
	for _, tc := range []struct {
		name      string
		chunk     []byte
		off, next int64
		path      string
		want      []byte
	}{
		{"whole", whole[100:200], 100, 200, path, whole[100:200]},
		{"cut, file holds it", cut, 100, 3000, path, whole[100:3000]},
		{"cut, no file", cut, 100, 3000, "", cut},
		{"cut, file too short", cut, 100, 3001, path, cut},
		{"cut, file gone", cut, 100, 3000, path + ".gone", cut},
		{"nothing new", nil, 50, 50, path, nil},
	} {
		var buf bytes.Buffer
		writeWindow(&buf, tc.chunk, tc.off, tc.next, tc.path)
		if !bytes.Equal(buf.Bytes(), tc.want) {
			t.Errorf("%s: wrote %d bytes %.40q..., want %d", tc.name, buf.Len(), buf.Bytes(), len(tc.want))
		}
	}
}
