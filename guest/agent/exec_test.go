package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

func run(t *testing.T, c *proto.Client, req proto.ExecRequest) (proto.ExecResult, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	res, err := c.Exec(ctxT(t), req, &out, &errb)
	if err != nil {
		t.Fatalf("exec %v%q: %v", req.Argv, req.Shell, err)
	}
	return res, out.String(), errb.String()
}

func TestExecBasics(t *testing.T) {
	c := newClient(t)
	res, out, _ := run(t, c, proto.ExecRequest{Argv: []string{"echo", "hello", "world"}})
	if res.ExitCode != 0 || res.Signal != "" || out != "hello world\n" || res.Duration <= 0 {
		t.Errorf("echo: %+v %q", res, out)
	}
	res, _, _ = run(t, c, proto.ExecRequest{Shell: "exit 7"})
	if res.ExitCode != 7 {
		t.Errorf("exit 7: %+v", res)
	}
	res, out, errs := run(t, c, proto.ExecRequest{Shell: "echo out; echo err >&2"})
	if out != "out\n" || errs != "err\n" {
		t.Errorf("stdout %q, stderr %q", out, errs)
	}
	for _, sig := range []string{"TERM", "KILL"} {
		res, _, _ = run(t, c, proto.ExecRequest{Shell: "kill -" + sig + " $$"})
		if res.ExitCode != -1 || res.Signal != "SIG"+sig || res.TimedOut {
			t.Errorf("kill -%s: %+v", sig, res)
		}
	}
}

func TestExecEnvCwd(t *testing.T) {
	c := newClient(t)
	dir := t.TempDir()
	_, out, _ := run(t, c, proto.ExecRequest{Shell: `echo "$FOO|$HOME|$LANG|$TERM|$PATH"; pwd`, Env: map[string]string{"FOO": "bar baz"}, Cwd: dir})
	want := "bar baz|/root|C.UTF-8|xterm|" + DefaultPath + "\n" + dir + "\n"
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	_, out, _ = run(t, c, proto.ExecRequest{Argv: []string{"pwd"}})
	if out != "/\n" {
		t.Errorf("default cwd %q", out)
	}
	// The request's PATH is the one searched.
	os.WriteFile(filepath.Join(dir, "hello-pyro"), []byte("#!/bin/sh\necho found me\n"), 0o755)
	_, out, _ = run(t, c, proto.ExecRequest{Argv: []string{"hello-pyro"}, Env: map[string]string{"PATH": dir + ":/bin:/usr/bin"}})
	if out != "found me\n" {
		t.Errorf("PATH lookup: %q", out)
	}
	_, err := c.Exec(ctxT(t), proto.ExecRequest{Argv: []string{"no-such-command-pyro"}}, nil, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "not found in PATH") {
		t.Errorf("missing command: %v", err)
	}
	_, err = c.Exec(ctxT(t), proto.ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing cwd: %v", err)
	}
	_, err = c.Exec(ctxT(t), proto.ExecRequest{Argv: []string{"true"}, Env: map[string]string{"A=B": "x"}}, nil, nil)
	if errCode(err) != proto.CodeInvalid {
		t.Errorf("bad env name: %v", err)
	}
}

func TestExecUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	c := newClient(t)
	_, out, _ := run(t, c, proto.ExecRequest{Shell: "id -u; id -g", User: "65534:65533"})
	if out != "65534\n65533\n" {
		t.Errorf("uid:gid %q", out)
	}
	if _, err := c.Exec(ctxT(t), proto.ExecRequest{Argv: []string{"true"}, User: "no-such-user-pyro"}, nil, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestExecStdin(t *testing.T) {
	c := newClient(t)
	in := make([]byte, 3<<20+17)
	rand.New(rand.NewSource(1)).Read(in)
	res, out, _ := run(t, c, proto.ExecRequest{Argv: []string{"cat"}, Stdin: bytes.NewReader(in)})
	if res.ExitCode != 0 || out != string(in) {
		t.Fatalf("cat returned %d of %d bytes, %+v", len(out), len(in), res)
	}
	// A command that does not read its stdin still finishes.
	res, _, _ = run(t, c, proto.ExecRequest{Argv: []string{"true"}, Stdin: bytes.NewReader(in)})
	if res.ExitCode != 0 {
		t.Fatalf("true with unread stdin: %+v", res)
	}
	// Without Stdin, the command reads /dev/null.
	_, out, _ = run(t, c, proto.ExecRequest{Argv: []string{"wc", "-c"}})
	if strings.TrimSpace(out) != "0" {
		t.Fatalf("no stdin: %q", out)
	}
}

func TestExecBigOutput(t *testing.T) {
	c := newClient(t)
	f := filepath.Join(t.TempDir(), "blob")
	script := fmt.Sprintf("head -c 10485760 /dev/urandom > %s && cat %s && sha256sum %s >&2", f, f, f)
	h := sha256.New()
	var errb bytes.Buffer
	res, err := c.Exec(ctxT(t), proto.ExecRequest{Shell: script}, h, &errb)
	if err != nil || res.ExitCode != 0 {
		t.Fatal(res, err, errb.String())
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), strings.Fields(errb.String())[0]; got != want {
		t.Fatalf("10 MiB of output arrived with sha256 %s, the guest computed %s", got, want)
	}
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// groupMembers lists the live processes in process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitGone(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200 && !cond(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !cond() {
		t.Errorf("%s still alive", what)
	}
}

func TestExecTimeoutKillsGroup(t *testing.T) {
	c := newClient(t)
	start := time.Now()
	res, out, _ := run(t, c, proto.ExecRequest{Shell: "sleep 100 & echo $! $$; sleep 100", Timeout: 300 * time.Millisecond, KillGrace: time.Second})
	if !res.TimedOut || res.Signal != "SIGTERM" || time.Since(start) > 5*time.Second {
		t.Fatalf("timed-out exec: %+v after %v", res, time.Since(start))
	}
	var bg, sh int
	if _, err := fmt.Sscan(out, &bg, &sh); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	waitGone(t, "background sleep", func() bool { return !alive(bg) })
	waitGone(t, "process group", func() bool { return len(groupMembers(sh)) == 0 })

	// A group that ignores SIGTERM gets SIGKILL after the grace.
	start = time.Now()
	res, out, _ = run(t, c, proto.ExecRequest{Shell: "trap '' TERM; sleep 100 & echo $!; sleep 100", Timeout: 200 * time.Millisecond, KillGrace: 300 * time.Millisecond})
	if !res.TimedOut || res.Signal != "SIGKILL" || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("TERM-ignoring exec: %+v after %v", res, time.Since(start))
	}
	fmt.Sscan(out, &bg)
	waitGone(t, "TERM-ignoring background sleep", func() bool { return !alive(bg) })
}

func TestExecCancel(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	pidc := make(chan int, 1)
	var once sync.Once
	go func() {
		<-pidc
		cancel()
	}()
	start := time.Now()
	var pid int
	_, err := c.Exec(ctx, proto.ExecRequest{Shell: "echo $$; exec sleep 100"}, writerFunc(func(p []byte) {
		once.Do(func() { fmt.Sscan(string(p), &pid); pidc <- pid })
	}), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("cancel took too long")
	}
	waitGone(t, "cancelled command", func() bool { return !alive(pid) })
}

// A background process that keeps stdout open does not hold the exec
// hostage.
func TestExecBackgroundHoldsStdout(t *testing.T) {
	c := newClient(t)
	start := time.Now()
	res, out, _ := run(t, c, proto.ExecRequest{Shell: "sleep 3 & echo started"})
	if res.ExitCode != 0 || out != "started\n" || time.Since(start) > 2*time.Second {
		t.Fatalf("%+v %q after %v", res, out, time.Since(start))
	}
	// Output written right before the exit is not lost to the drain.
	res, out, _ = run(t, c, proto.ExecRequest{Shell: "sleep 3 & head -c 300000 /dev/zero"})
	if len(out) != 300000 {
		t.Fatalf("got %d bytes, want 300000", len(out))
	}
}

func TestExecSequentialAndConcurrent(t *testing.T) {
	c := newClient(t)
	for i := 0; i < 50; i++ {
		res, out, _ := run(t, c, proto.ExecRequest{Argv: []string{"echo", strconv.Itoa(i)}})
		if res.ExitCode != 0 || out != strconv.Itoa(i)+"\n" {
			t.Fatalf("exec %d: %+v %q", i, res, out)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			res, err := c.Exec(ctxT(t), proto.ExecRequest{Shell: fmt.Sprintf("sleep 0.2; echo %d; exit %d", i, i%5)}, &out, io.Discard)
			if err == nil && (res.ExitCode != i%5 || out.String() != fmt.Sprintf("%d\n", i)) {
				err = fmt.Errorf("exec %d: %+v %q", i, res, out.String())
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("32 concurrent 0.2 s execs took %v: not concurrent", d)
	}
}
