package agent

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// The services run on the host here, without cgroups (the agent outside
// a guest has none): the supervisor, readiness checks, logs and stops.
// The cgroup side (services surviving an exec's kill, the grace's
// cgroup.kill) is exercised in a VM by mcp/workspace's
// TestWorkspaceVMServices.

func serviceClient(t *testing.T) (*proto.Client, *Server) {
	t.Helper()
	srv := &Server{}
	srv.services.dir = t.TempDir()
	c := serve(t, srv)
	t.Cleanup(func() {
		srv.serviceStopAll(nil, &proto.ServiceStopAllArgs{GraceMs: 100})
	})
	return c, srv
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startService(t *testing.T, c *proto.Client, a proto.ServiceStartArgs) proto.ServiceStatus {
	t.Helper()
	st, err := c.ServiceStart(ctxT(t), a)
	if err != nil {
		t.Fatalf("service_start %s: %v", a.Name, err)
	}
	return st
}

func TestServiceHTTPReady(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on this host")
	}
	c, _ := serviceClient(t)
	port := freePort(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from a service\n"), 0o644)
	url := fmt.Sprintf("http://127.0.0.1:%d/hello.txt", port)
	st := startService(t, c, proto.ServiceStartArgs{Name: "web", Cwd: dir,
		Argv:      []string{"python3", "-u", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1"},
		Readiness: proto.Readiness{Kind: proto.ReadyHTTP, URL: url, TimeoutMs: 30000, IntervalMs: 50}})
	if st.State != proto.ServiceReady || st.PID <= 1 || st.ReadyAt.IsZero() || st.ReadyAt.Before(st.StartedAt) || st.ExitCode != nil {
		t.Fatalf("start: %+v", st)
	}
	// Reachable, and still after the request that started it ended.
	for range 3 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello from a service\n" {
			t.Fatalf("GET: %q", b)
		}
	}
	if st, err := c.ServiceStatus(ctxT(t), "web"); err != nil || st.State != proto.ServiceReady {
		t.Fatalf("status: %+v %v", st, err)
	}
	// Its access log went to stderr.
	logs, err := c.ServiceLogs(ctxT(t), proto.ServiceLogsArgs{Name: "web", TailLines: 2})
	if err != nil || !strings.Contains(string(logs.Stderr.Data), "GET /hello.txt") {
		t.Fatalf("logs: %+v %v", logs, err)
	}
	// A second start of a running name is refused.
	if _, err := c.ServiceStart(ctxT(t), proto.ServiceStartArgs{Name: "web", Cwd: "/", Argv: []string{"true"}}); errCode(err) != "EEXIST" {
		t.Errorf("second start: %v", err)
	}
	st, err = c.ServiceStop(ctxT(t), "web", 5*time.Second)
	if err != nil || st.State != proto.ServiceStopped || st.Reason != proto.ReasonStopped || st.PID != 0 || st.EndedAt.IsZero() {
		t.Fatalf("stop: %+v %v", st, err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the server answers after its stop")
	}
}

func TestServiceFailsBeforeReady(t *testing.T) {
	c, _ := serviceClient(t)
	st := startService(t, c, proto.ServiceStartArgs{Name: "crash", Cwd: "/", Shell: "echo starting; echo boom >&2; exit 3",
		Readiness: proto.Readiness{Kind: proto.ReadyTCP, Port: freePort(t), TimeoutMs: 30000}})
	if st.State != proto.ServiceFailed || st.Reason != proto.ReasonExitedBeforeReady || st.ExitCode == nil || *st.ExitCode != 3 {
		t.Fatalf("status: %+v", st)
	}
	if st.Tail == nil || string(st.Tail.Stderr) != "boom\n" || string(st.Tail.Stdout) != "starting\n" {
		t.Fatalf("tail: %+v", st.Tail)
	}
	// An ended service's name may be started again.
	st = startService(t, c, proto.ServiceStartArgs{Name: "crash", Cwd: "/", Shell: "exit 0"})
	if st.Name != "crash" {
		t.Fatalf("restart of an ended name: %+v", st)
	}
}

func TestServiceReadinessTimeout(t *testing.T) {
	c, _ := serviceClient(t)
	dir := t.TempDir()
	st := startService(t, c, proto.ServiceStartArgs{Name: "slow", Cwd: dir, Shell: "sleep 1000",
		Readiness: proto.Readiness{Kind: proto.ReadyFile, Path: "ready.flag", TimeoutMs: 300, IntervalMs: 20}})
	if st.State != proto.ServiceFailed || st.Reason != proto.ReasonReadyTimeout || !strings.Contains(st.Message, "ready.flag") {
		t.Fatalf("status: %+v", st)
	}
	// And the file check passes when the service makes the file.
	st = startService(t, c, proto.ServiceStartArgs{Name: "fileready", Cwd: dir, Shell: "sleep 0.2; touch ready.flag; exec sleep 1000",
		Readiness: proto.Readiness{Kind: proto.ReadyFile, Path: "ready.flag", TimeoutMs: 20000, IntervalMs: 20}})
	if st.State != proto.ServiceReady {
		t.Fatalf("file readiness: %+v", st)
	}
	// A command check, run in the service's cwd.
	st = startService(t, c, proto.ServiceStartArgs{Name: "cmdready", Cwd: dir, Shell: "exec sleep 1000",
		Readiness: proto.Readiness{Kind: proto.ReadyCommand, Command: "test -f ready.flag", TimeoutMs: 20000}})
	if st.State != proto.ServiceReady {
		t.Fatalf("command readiness: %+v", st)
	}
	// Past wait_ms the answer says starting, and the check goes on.
	st = startService(t, c, proto.ServiceStartArgs{Name: "later", Cwd: dir, Shell: "sleep 0.5; touch later.flag; exec sleep 1000", WaitMs: 1,
		Readiness: proto.Readiness{Kind: proto.ReadyFile, Path: "later.flag", TimeoutMs: 20000, IntervalMs: 20}})
	if st.State != proto.ServiceStarting || st.PID <= 1 {
		t.Fatalf("wait_ms: %+v", st)
	}
	deadline := time.Now().Add(20 * time.Second)
	for st.State == proto.ServiceStarting && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		st, _ = c.ServiceStatus(ctxT(t), "later")
	}
	if st.State != proto.ServiceReady {
		t.Fatalf("later: %+v", st)
	}
}

func TestServiceIgnoresTerm(t *testing.T) {
	c, _ := serviceClient(t)
	// Ready once the trap is set: a stop before would end it at once.
	st := startService(t, c, proto.ServiceStartArgs{Name: "stubborn", Cwd: t.TempDir(), Shell: "trap '' TERM; touch up; while :; do sleep 1; done",
		Readiness: proto.Readiness{Kind: proto.ReadyFile, Path: "up", TimeoutMs: 20000, IntervalMs: 10}})
	if st.State != proto.ServiceReady {
		t.Fatalf("start: %+v", st)
	}
	pid := st.PID
	st, err := c.ServiceStop(ctxT(t), "stubborn", 300*time.Millisecond)
	if err != nil || st.State != proto.ServiceStopped || st.Reason != proto.ReasonKilled || st.Signal != "SIGKILL" {
		t.Fatalf("stop: %+v %v", st, err)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("pid %d still there after the stop: %v", pid, err)
	}
	// Stopping it again answers its status.
	if st2, err := c.ServiceStop(ctxT(t), "stubborn", 0); err != nil || st2.Reason != proto.ReasonKilled {
		t.Errorf("second stop: %+v %v", st2, err)
	}
}

func TestServiceLogsCursor(t *testing.T) {
	c, _ := serviceClient(t)
	startService(t, c, proto.ServiceStartArgs{Name: "talker", Cwd: "/",
		Shell: "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exec sleep 1000"})
	var logs proto.ServiceLogs
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if logs, err = c.ServiceLogs(ctxT(t), proto.ServiceLogsArgs{Name: "talker", TailLines: 2}); err != nil {
			t.Fatal(err)
		}
		if logs.Stdout.Total == 25 && logs.Stderr.Total == 25 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if string(logs.Stdout.Data) != "out4\nout5\n" || string(logs.Stderr.Data) != "err4\nerr5\n" || logs.Stdout.Next != 25 {
		t.Fatalf("tail: %+v %+v", logs.Stdout, logs.Stderr)
	}
	l, err := c.ServiceLogs(ctxT(t), proto.ServiceLogsArgs{Name: "talker", Stream: proto.StreamStdout, StdoutOffset: 5, MaxBytes: 10})
	if err != nil || l.Stderr != nil || string(l.Stdout.Data) != "out2\nout3\n" || l.Stdout.Offset != 5 || l.Stdout.Next != 15 {
		t.Fatalf("range: %+v %v", l.Stdout, err)
	}
	if _, err := c.ServiceLogs(ctxT(t), proto.ServiceLogsArgs{Name: "nope"}); errCode(err) != "ENOENT" {
		t.Errorf("unknown service: %v", err)
	}
}

func TestServiceRestartPolicyAndLimits(t *testing.T) {
	c, _ := serviceClient(t)
	st := startService(t, c, proto.ServiceStartArgs{Name: "flaky", Cwd: "/", Shell: "echo try; exit 1",
		Restart: proto.RestartOnFailure, MaxRestarts: 2})
	// Ready at once (no check), then it exits, is restarted twice and
	// gives up.
	deadline := time.Now().Add(30 * time.Second)
	for (st.Reason != proto.ReasonRestartsExhausted) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		st, _ = c.ServiceStatus(ctxT(t), "flaky")
	}
	if st.Reason != proto.ReasonRestartsExhausted || st.Restarts != 2 || st.State != proto.ServiceExited {
		t.Fatalf("flaky: %+v", st)
	}
	l, _ := c.ServiceLogs(ctxT(t), proto.ServiceLogsArgs{Name: "flaky", Stream: proto.StreamStdout})
	if string(l.Stdout.Data) != "try\ntry\ntry\n" {
		t.Errorf("three runs' log: %q", l.Stdout.Data)
	}
	// Restart starts it from its spec again, its log going on.
	st, err := c.ServiceRestart(ctxT(t), "flaky", 0, 0)
	if err != nil || st.Name != "flaky" {
		t.Fatalf("restart: %+v %v", st, err)
	}
	// At most MaxServices services; ended ones make room.
	for i := 0; len(mustList(t, c)) < proto.MaxServices; i++ {
		startService(t, c, proto.ServiceStartArgs{Name: fmt.Sprintf("s%02d", i), Cwd: "/", Argv: []string{"sleep", "1000"}})
	}
	list := mustList(t, c)
	running := 0
	for _, s := range list {
		if s.Running() {
			running++
		}
	}
	_, err = c.ServiceStart(ctxT(t), proto.ServiceStartArgs{Name: "one-more", Cwd: "/", Argv: []string{"sleep", "1000"}})
	if running == proto.MaxServices {
		if errCode(err) != proto.CodeBusy {
			t.Errorf("service %d: %v", proto.MaxServices+1, err)
		}
	} else if err != nil {
		t.Errorf("an ended service should make room: %v", err)
	}
	all, err := c.ServiceStopAll(ctxT(t), 100*time.Millisecond)
	if err != nil || len(all) != proto.MaxServices {
		t.Fatalf("stop all: %d %v", len(all), err)
	}
	for _, s := range all {
		if s.Running() {
			t.Errorf("%s still running after stop_all", s.Name)
		}
	}
}

func mustList(t *testing.T, c *proto.Client) []proto.ServiceStatus {
	t.Helper()
	l, err := c.ServiceList(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestServiceBadSpecs(t *testing.T) {
	c, _ := serviceClient(t)
	for _, a := range []proto.ServiceStartArgs{
		{Name: "x", Cwd: "/", Argv: []string{"no-such-program-pyro"}},
		{Name: "x", Cwd: "/no/such/dir", Argv: []string{"true"}},
		{Name: "x", Cwd: "/", Argv: []string{"true"}, Readiness: proto.Readiness{Kind: "smoke"}},
		{Name: "x", Cwd: "/", Argv: []string{"true"}, Readiness: proto.Readiness{Kind: proto.ReadyTCP, Port: 70000}},
		{Name: "x", Cwd: "/", Argv: []string{"true"}, Readiness: proto.Readiness{Kind: proto.ReadyHTTP, URL: "ftp://x/"}},
		{Name: "x", Cwd: "/", Argv: []string{"true"}, Restart: "always"},
	} {
		if _, err := c.ServiceStart(ctxT(t), a); err == nil {
			t.Errorf("%+v: no error", a)
		}
	}
	if _, err := c.ServiceStart(ctxT(t), proto.ServiceStartArgs{Name: "Bad Name", Argv: []string{"true"}}); errCode(err) != proto.CodeInvalid {
		t.Errorf("bad name: %v", err)
	}
}

func TestLogStreamRotation(t *testing.T) {
	l, err := openLog(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	line := func(i int) []byte { return []byte(fmt.Sprintf("line %07d %s\n", i, strings.Repeat("x", 100))) }
	var all bytes.Buffer
	for i := 0; all.Len() < 5*proto.ServiceLogGeneration/2; i++ {
		all.Write(line(i))
		l.Write(line(i))
	}
	total := int64(all.Len())
	c := l.read(0, proto.MaxServiceLogRead)
	if c.Total != total || c.First <= 0 || c.Skipped != c.First || c.Offset != c.First || total-c.First > 2*proto.ServiceLogGeneration {
		t.Fatalf("after rotations: total %d first %d skipped %d offset %d", c.Total, c.First, c.Skipped, c.Offset)
	}
	if !bytes.Equal(c.Data, all.Bytes()[c.Offset:c.Next]) {
		t.Fatal("read across the window's start differs from what was written")
	}
	// A read spanning the two generations, by cursor, to the end.
	var got bytes.Buffer
	for off := c.First; off < total; {
		ch := l.read(off, 100000)
		if ch.Offset != off || len(ch.Data) == 0 {
			t.Fatalf("read at %d: %+v", off, ch)
		}
		got.Write(ch.Data)
		off = ch.Next
	}
	if !bytes.Equal(got.Bytes(), all.Bytes()[c.First:]) {
		t.Fatal("paged reads differ from what was written")
	}
	tail := l.tail(3, 1<<20)
	if want := all.Bytes()[total-3*int64(len(line(0))):]; !bytes.Equal(tail.Data, want) || tail.Next != total {
		t.Fatalf("tail: %q", tail.Data)
	}
	if end := l.read(total+100, 10); len(end.Data) != 0 || end.Next != total {
		t.Fatalf("past the end: %+v", end)
	}
}

func TestTailLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb\n"},
		{"", 3, ""},
		{"\n\n", 1, "\n"},
	} {
		if got := c.in[tailLines([]byte(c.in), c.n):]; got != c.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
