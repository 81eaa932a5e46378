package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// shortDir is a fresh directory with a path short enough for sockets
// (t.TempDir's carry the test's name).
func shortDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serve starts a server for b on a socket in dir and returns its path.
func serve(t testing.TB, dir string, b contract.Backend, opts Options) string {
	t.Helper()
	ln, path, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, path, b, opts)
}

func serveOn(t testing.TB, ln net.Listener, path string, b contract.Backend, opts Options) string {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, b, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// listenAs listens on a socket named as process pid's would be.
func listenAs(t testing.TB, dir string, pid int) (net.Listener, string) {
	t.Helper()
	path := filepath.Join(dir, socketName(pid))
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln, path
}

func dial(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// full is every interface a Client implements.
type full interface {
	contract.Backend
	contract.BackgroundBackend
	contract.ShellBackend
	contract.ServiceBackend
	contract.NetworkBackend
	contract.SecretBackend
	contract.Forker
}

// echoExec answers every command with its stdin as stdout (bytes as they
// came) and its environment on stderr.
func echoExec(req contract.ExecRequest) (contract.ExecResult, error) {
	env := fmt.Sprintf("%v %v %s %d", req.EnvVars, req.SecretEnv, req.Cwd, req.TimeoutSeconds)
	return contract.ExecResult{ExitCode: 3, Signal: "SIGTERM", Duration: 1234567891 * time.Nanosecond,
		Stdout: []byte(req.Stdin), Stderr: []byte(env), StdoutSize: int64(len(req.Stdin)), StderrSize: int64(len(env)),
		StdoutPath: "/state/out/1.stdout", Limited: "a note", Network: "refused \xff"}, nil
}

// Every operation gives through the socket exactly what it gives called
// directly: two fakes fed the same calls, one through a Client, answer
// alike, types and all (times, durations, bytes, strings that are not
// UTF-8).
func TestEveryOpRoundTrips(t *testing.T) {
	served, direct := mcptest.New(), mcptest.New()
	served.ExecFunc, direct.ExecFunc = echoExec, echoExec
	c := dial(t, serve(t, shortDir(t), served, Options{}))
	ctx := context.Background()
	grants, err := contract.CanonicalGrants([]string{"pypi.org:443"})
	if err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	odd := "caf\xe9 \U0010FFFF \U0010FE00 \U0010FF41 \xf4\x8f"
	wait := contract.ShellWait{Idle: 250 * time.Millisecond, Pattern: regexp.MustCompile(`\$ $`), Timeout: 3 * time.Second}
	const id = "ws-1"
	var bgSeq int64
	patch := "--- a/new.txt\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n"

	steps := []struct {
		name string
		call func(b full) (any, error)
	}{
		{"envs", func(b full) (any, error) { return b.Envs(ctx) }},
		{"create", func(b full) (any, error) {
			return b.Create(ctx, contract.CreateRequest{Name: "alpha", Labels: map[string]string{"k": "v\U0010FFFF\U0010FE00x\U0010FF41"},
				VCPUs: 2, MemMiB: 512, DiskMiB: 2048, TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone}, Network: grants,
				Secrets: map[string]contract.SecretSource{"tok": {Value: "s3cretvalue"}}})
		}},
		{"list", func(b full) (any, error) { return b.List(ctx) }},
		{"status", func(b full) (any, error) { return b.Status(ctx, id) }},
		{"update", func(b full) (any, error) {
			return b.Update(ctx, id, contract.UpdateRequest{Name: &name, Labels: map[string]string{"a": "b"}, RemoveLabels: []string{"k"}})
		}},
		{"file.write", func(b full) (any, error) {
			return b.WriteFile(ctx, contract.WriteFileRequest{ID: id, Path: "/workspace/\U0010FFFF\U0010FE00", Content: binary, Mode: 0o755})
		}},
		{"a guest file name that is not UTF-8", func(b full) (any, error) {
			b.(interface{ SetFile(string, string, []byte) }).SetFile(id, "/workspace/"+odd, []byte(odd))
			return nil, nil
		}},
		{"file.list", func(b full) (any, error) {
			return b.ListFiles(ctx, contract.ListFilesRequest{ID: id, Path: "/workspace", Recursive: true, Limit: 100})
		}},
		{"file.read", func(b full) (any, error) {
			return b.ReadFile(ctx, contract.ReadFileRequest{ID: id, Path: "/workspace/\U0010FFFF\U0010FE00", Offset: 3, MaxBytes: 1000})
		}},
		{"exec", func(b full) (any, error) {
			return b.Exec(ctx, contract.ExecRequest{ID: id, Command: "cat", Cwd: "/tmp", TimeoutSeconds: 3600, Stdin: "\xff\xfe" + odd,
				EnvVars: map[string]string{"A": odd}, SecretEnv: map[string]string{"TOK": "tok"}})
		}},
		{"exec argv", func(b full) (any, error) {
			return b.Exec(ctx, contract.ExecRequest{ID: id, Argv: []string{"ls", odd}, Cwd: "/workspace", TimeoutSeconds: 30})
		}},
		{"patch.apply", func(b full) (any, error) { return b.ApplyPatch(ctx, id, patch) }},
		{"diff", func(b full) (any, error) { return b.Diff(ctx, contract.DiffRequest{ID: id}) }},
		{"export", func(b full) (any, error) {
			return b.Export(ctx, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: "/tmp/out.tar", Format: contract.ExportTar, Overwrite: true})
		}},
		{"sync.push", func(b full) (any, error) {
			return b.SyncPush(ctx, contract.SyncPushRequest{ID: id, HostPath: "/tmp/src", GuestDest: "/workspace/in"})
		}},
		{"snapshot.create", func(b full) (any, error) {
			return b.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "snap"})
		}},
		{"snapshot.list", func(b full) (any, error) { return b.SnapshotList(ctx, id) }},
		{"fork", func(b full) (any, error) {
			return b.Fork(ctx, contract.ForkRequest{ID: id, Count: 2, Names: []string{"left", "right"},
				Labels: map[string]string{"try": "\U0010FE00\U0010FF41b"}})
		}},
		{"fork of a snapshot", func(b full) (any, error) { return b.Fork(ctx, contract.ForkRequest{ID: id, Snapshot: "snap"}) }},
		{"fork of a fork", func(b full) (any, error) { return b.Fork(ctx, contract.ForkRequest{ID: "ws-2", Count: 3}) }},
		{"reset", func(b full) (any, error) { return b.Reset(ctx, id, "snap") }},
		{"snapshot.delete", func(b full) (any, error) { return nil, b.SnapshotDelete(ctx, id, "snap") }},
		{"exec.start", func(b full) (any, error) {
			v, err := b.ExecStart(ctx, contract.ExecRequest{ID: id, Command: "sleep 100", Cwd: "/workspace", TimeoutSeconds: 7200})
			bgSeq = v.Seq
			return v, err
		}},
		{"exec.status", func(b full) (any, error) {
			return b.ExecPoll(ctx, contract.PollRequest{ID: id, Seq: bgSeq, StdoutOffset: 0, Wait: 0})
		}},
		{"exec.status unknown", func(b full) (any, error) {
			return b.ExecPoll(ctx, contract.PollRequest{ID: id, Seq: 99, Wait: time.Second})
		}},
		{"exec.list", func(b full) (any, error) { return b.ExecList(ctx, id) }},
		{"logs", func(b full) (any, error) { return b.Logs(ctx, contract.LogsRequest{ID: id, AfterSeq: 1, Limit: 50}) }},
		{"summary", func(b full) (any, error) { return b.Summary(ctx, id) }},
		{"network.grant", func(b full) (any, error) { return b.NetworkGrant(ctx, id, []string{"example.com:443"}) }},
		{"network.status", func(b full) (any, error) { return b.NetworkStatus(ctx, id) }},
		{"network.revoke", func(b full) (any, error) { return b.NetworkRevoke(ctx, id, []string{"example.com:443"}) }},
		{"port.publish", func(b full) (any, error) {
			return b.PortPublish(ctx, contract.PublishRequest{ID: id, GuestPort: 8080})
		}},
		{"port.unpublish", func(b full) (any, error) { return nil, b.PortUnpublish(ctx, id, 8080) }},
		{"secret.set", func(b full) (any, error) {
			return b.SecretSet(ctx, id, "db", contract.SecretSource{Value: "hunter22"})
		}},
		{"secret.delete", func(b full) (any, error) { return b.SecretDelete(ctx, id, "db") }},
		{"service.start", func(b full) (any, error) {
			return b.ServiceStart(ctx, contract.ServiceStartRequest{ID: id, Name: "web", Command: "serve", Cwd: "/workspace",
				Wait: 30 * time.Second, Readiness: contract.Readiness{Kind: contract.ReadyTCP, Port: 80}})
		}},
		{"service.start crash", func(b full) (any, error) {
			return b.ServiceStart(ctx, contract.ServiceStartRequest{ID: id, Name: "db", Command: "crash", Cwd: "/workspace", Wait: time.Second})
		}},
		{"service.status", func(b full) (any, error) { return b.ServiceStatus(ctx, id, "") }},
		{"service.logs", func(b full) (any, error) {
			return b.ServiceLogs(ctx, contract.ServiceLogsRequest{ID: id, Name: "db", TailLines: 50})
		}},
		{"service.stop", func(b full) (any, error) { return b.ServiceStop(ctx, id, "web", 5*time.Second) }},
		{"service.restart", func(b full) (any, error) { return b.ServiceRestart(ctx, id, "web", 30*time.Second) }},
		{"shell.open", func(b full) (any, error) {
			return b.ShellOpen(ctx, contract.ShellOpenRequest{ID: id, Argv: []string{"python3"}, Cwd: "/workspace", Cols: 80, Rows: 24, Wait: wait})
		}},
		{"shell.write", func(b full) (any, error) {
			return b.ShellWrite(ctx, contract.ShellWriteRequest{ID: id, Shell: 1, Input: []byte("print(1)\r"), Wait: wait})
		}},
		{"shell.read", func(b full) (any, error) {
			cur := int64(0)
			return b.ShellRead(ctx, contract.ShellReadRequest{ID: id, Shell: 1, Raw: true, Cursor: &cur, Wait: wait})
		}},
		{"shell.signal", func(b full) (any, error) {
			return b.ShellSignal(ctx, contract.ShellSignalRequest{ID: id, Shell: 1, Signal: "INT", Wait: wait})
		}},
		{"shell.resize", func(b full) (any, error) { return b.ShellResize(ctx, id, 1, 100, 30) }},
		{"shell.list", func(b full) (any, error) { return b.ShellList(ctx, id) }},
		{"shell.close", func(b full) (any, error) { return b.ShellClose(ctx, id, 1) }},
		{"stop", func(b full) (any, error) { return b.Stop(ctx, id) }},
		{"exec stopped", func(b full) (any, error) {
			return b.Exec(ctx, contract.ExecRequest{ID: id, Command: "true", Cwd: "/workspace", TimeoutSeconds: 30})
		}},
		{"start", func(b full) (any, error) { return b.Start(ctx, id) }},
		{"run", func(b full) (any, error) {
			return b.Run(ctx, contract.RunRequest{Command: "uname", Cwd: "/workspace", TimeoutSeconds: 30, Stdin: odd,
				Seed: contract.SeedSpec{Kind: contract.SeedNone}})
		}},
		{"delete", func(b full) (any, error) { return nil, b.Delete(ctx, id) }},
	}
	for _, s := range steps {
		var got any
		var gerr error
		if strings.HasPrefix(s.name, "a guest file") {
			got, gerr = s.call(served) // the fake's own hook, not a call
		} else {
			got, gerr = s.call(c)
		}
		want, werr := s.call(direct)
		if strings.HasPrefix(s.name, "fork") && gerr != nil {
			t.Fatalf("%s: %v", s.name, gerr) // a fork that fails alike on both sides shows nothing
		}
		if !reflect.DeepEqual(errView(gerr), errView(werr)) {
			t.Fatalf("%s: error %v through the socket, %v directly", s.name, gerr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Fatalf("%s: through the socket\n%s\ndirectly\n%s", s.name, g, w)
		}
	}
	if g, w := served.Calls(), direct.Calls(); !reflect.DeepEqual(g, w) {
		t.Fatalf("the served fake got calls %v; the direct one %v", g, w)
	}
	_, gerr := c.Status(ctx, id)
	_, werr := direct.Status(ctx, id)
	if !reflect.DeepEqual(errView(gerr), errView(werr)) || !contract.IsCode(gerr, contract.CodeNotFound) {
		t.Fatalf("status of a deleted workspace: %v through the socket, %v directly", gerr, werr)
	}
}

// errView is what a test compares of an error.
func errView(err error) any {
	if err == nil {
		return nil
	}
	if e, ok := contract.AsError(err); ok {
		return *e.Worded(identity{}) // Err (the cause) does not travel
	}
	return err.Error()
}

type identity struct{}

func (identity) OpName(op contract.Op) string { return "{{" + string(op) + "}}" }
func (identity) ArgName(a string) string      { return "{{-" + a + "}}" }

func TestErrorsKeepCodeHintAndMarkers(t *testing.T) {
	f := mcptest.New()
	c := dial(t, serve(t, shortDir(t), f, Options{}))
	ctx := context.Background()
	w, err := c.Create(ctx, contract.CreateRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	f.SetError("Exec", contract.Stopped(w.ID, contract.StateStopped).WithHint("Call {{start}}, then {{exec}} again (--{{-mem_mib}})."))
	_, err = c.Exec(ctx, contract.ExecRequest{ID: w.ID, Command: "true"})
	e, ok := contract.AsError(err)
	if !ok {
		t.Fatalf("not a *contract.Error: %T %v", err, err)
	}
	if e.Code != contract.CodeStopped || e.Resource != contract.ResourceWorkspace || e.Name != w.ID ||
		e.Msg != fmt.Sprintf("workspace %q is stopped", w.ID) || e.Hint != "Call {{start}}, then {{exec}} again (--{{-mem_mib}})." {
		t.Fatalf("error came back as %#v", e)
	}
	f.SetError("Exec", errors.New("disk on fire"))
	_, err = c.Exec(ctx, contract.ExecRequest{ID: w.ID, Command: "true"})
	if e, ok := contract.AsError(err); !ok || e.Code != contract.CodeInternal || !strings.Contains(e.Msg, "disk on fire") {
		t.Fatalf("a plain error: %v", err)
	}
	// Validated on the server, with the contract's messages.
	_, err = c.Exec(ctx, contract.ExecRequest{ID: w.ID, Command: "true", TimeoutSeconds: 99999})
	if !contract.IsCode(err, contract.CodeInvalid) || !strings.Contains(err.Error(), "timeout_seconds must be between 1 and 3600") {
		t.Fatalf("an exec past the timeout limit: %v", err)
	}
	before := len(f.Calls())
	_, err = c.Fork(ctx, contract.ForkRequest{ID: w.ID, Count: 2, Names: []string{"x", "x"}})
	if !contract.IsCode(err, contract.CodeInvalid) || !strings.Contains(err.Error(), `names[1] "x" repeats names[0]`) || len(f.Calls()) != before {
		t.Fatalf("a fork with one name twice: %v; calls %v", err, f.Calls()[before:])
	}
	_, err = c.Status(ctx, "")
	if e, ok := contract.AsError(err); !ok || e.Code != contract.CodeInvalid || !strings.Contains(e.Msg, "{{create}}") {
		t.Fatalf("an empty id: %v", err)
	}
}

func TestNameResolves(t *testing.T) {
	f := mcptest.New()
	c := dial(t, serve(t, shortDir(t), f, Options{}))
	ctx := context.Background()
	w, err := c.Create(ctx, contract.CreateRequest{Name: "alpha", TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, "alpha")
	if err != nil || st.ID != w.ID {
		t.Fatalf("status by name: %v %+v", err, st)
	}
	r, err := c.Exec(ctx, contract.ExecRequest{ID: "alpha", Command: "make test"})
	if err != nil || string(r.Stdout) != "ran: make test\n" {
		t.Fatalf("exec by name: %v %+v", err, r)
	}
	if _, err := c.Status(ctx, "beta"); !contract.IsCode(err, contract.CodeNotFound) {
		t.Fatalf("an unknown name: %v", err)
	}
}

// rawConn is a connection speaking the wire format by hand.
type rawConn struct {
	t    testing.TB
	conn *net.UnixConn
	r    *bufio.Reader
}

func rawDial(t testing.TB, path string) *rawConn {
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, conn: c.(*net.UnixConn), r: bufio.NewReader(c)}
}

func (c *rawConn) send(line string) {
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) recv() map[string]any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("reading an answer: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		c.t.Fatalf("an answer that is not JSON: %q", line)
	}
	return m
}

func errorOf(m map[string]any) (code, msg string) {
	e, _ := m["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["msg"].(string)
	return code, msg
}

func TestBadRequestsAreAnsweredAndTheConnectionLives(t *testing.T) {
	f := mcptest.New()
	c := rawDial(t, serve(t, shortDir(t), f, Options{MaxRequestBytes: 1024}))
	c.send(`{"op":"create","args":{"Name":"` + strings.Repeat("x", 2000) + `"}}`)
	if code, msg := errorOf(c.recv()); code != "invalid" || !strings.Contains(msg, "more than 1024 bytes") {
		t.Fatalf("an oversized request: %s %s", code, msg)
	}
	for _, tc := range []struct{ line, want string }{
		{`{"op": "list"`, "not a request"},
		{`[1,2]`, "not a request"},
		{`{"op":"list","bogus":1}`, "not a request"},
		{`{"op":"teleport"}`, "unknown op"},
		{`{"op":"status","args":{"ID":"ws-1","Colour":"red"}}`, "bad arguments"},
		{`{"op":"status","args":{"ID":7}}`, "bad arguments"},
		{`{"op":"exec","args":{"ID":"ws-1"}}`, "pass command"},
		{`{"op":"shell.read","args":{"ID":"ws-1","Shell":1,"Wait":{"Pattern":"("}}}`, "not a regular expression"},
		{`{"op":"create","args":{"TTLSeconds":5}}`, "ttl_seconds"},
	} {
		c.send(tc.line)
		if code, msg := errorOf(c.recv()); code != "invalid" || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: answered %s %q, want invalid %q", tc.line, code, msg, tc.want)
		}
	}
	c.send(`{"id":"x1","op":"create","args":{"TTLSeconds":600}}`)
	m := c.recv()
	if m["id"] != "x1" || m["result"] == nil {
		t.Fatalf("a good request after bad ones: %v", m)
	}
	if got := f.Calls(); !reflect.DeepEqual(got, []string{"Create"}) {
		t.Fatalf("the backend saw %v; only the good request should reach it", got)
	}
}

// blocking is a fake whose Exec waits for release or its ctx.
type blocking struct {
	*mcptest.Backend
	started  chan struct{}
	release  chan struct{}
	canceled chan struct{}
}

func newBlocking() *blocking {
	return &blocking{Backend: mcptest.New(), started: make(chan struct{}, 4), release: make(chan struct{}), canceled: make(chan struct{}, 4)}
}

func (b *blocking) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return b.Backend.Exec(ctx, req)
	case <-ctx.Done():
		b.canceled <- struct{}{}
		return contract.ExecResult{}, ctx.Err()
	}
}

func waitFor(t testing.TB, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestDisconnectCancelsTheCall(t *testing.T) {
	b := newBlocking()
	path := serve(t, shortDir(t), b, Options{})
	c := dial(t, path)
	w, err := c.Create(context.Background(), contract.CreateRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	// A Client whose ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, contract.ExecRequest{ID: w.ID, Command: "sleep 3600"})
		errc <- err
	}()
	waitFor(t, b.started, "the exec to start")
	cancel()
	waitFor(t, b.canceled, "the server to cancel the exec")
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled call returned %v", err)
	}

	// A raw client that hangs up.
	rc := rawDial(t, path)
	rc.send(`{"op":"exec","args":{"ID":"` + w.ID + `","Command":"sleep 3600"}}`)
	waitFor(t, b.started, "the raw exec to start")
	rc.conn.Close()
	waitFor(t, b.canceled, "the server to cancel the raw exec")

	// One that only stops sending still gets its answer.
	rc = rawDial(t, path)
	rc.send(`{"id":1,"op":"exec","args":{"ID":"` + w.ID + `","Command":"make"}}`)
	waitFor(t, b.started, "the half-closed exec to start")
	if err := rc.conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // longer than the hang-up poll: it must not take this for one
	close(b.release)
	m := rc.recv()
	if m["error"] != nil || m["result"] == nil {
		t.Fatalf("a half-closed connection's answer: %v", m)
	}
	select {
	case <-b.canceled:
		t.Fatal("the half-closed connection's exec was cancelled")
	default:
	}
}

// Several calls on one connection run at once, answered as they end.
func TestCallsOnOneConnectionRunConcurrently(t *testing.T) {
	b := newBlocking()
	path := serve(t, shortDir(t), b, Options{})
	c := dial(t, path)
	w, err := c.Create(context.Background(), contract.CreateRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	rc := rawDial(t, path)
	rc.send(`{"id":1,"op":"exec","args":{"ID":"` + w.ID + `","Command":"slow"}}`)
	waitFor(t, b.started, "the exec to start")
	rc.send(`{"id":2,"op":"status","args":{"ID":"` + w.ID + `"}}`)
	if m := rc.recv(); m["id"] != float64(2) {
		t.Fatalf("status should answer while the exec runs: %v", m)
	}
	close(b.release)
	if m := rc.recv(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("the exec's answer: %v", m)
	}
}

func TestSocketModes(t *testing.T) {
	dir := filepath.Join(shortDir(t), "pyro", "control")
	ln, path, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, fmt.Sprintf("%d.sock", os.Getpid())) {
		t.Fatalf("socket path %s", path)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Dir(dir), 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.mode {
			t.Errorf("%s has mode %o, want %o", c.path, fi.Mode().Perm(), c.mode)
		}
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket outlived its listener: %v", err)
	}
	// A directory others may enter is made private.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, _, err = Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("the directory kept mode %o", fi.Mode().Perm())
	}
	// A path too long for a socket says so.
	long := filepath.Join(shortDir(t), strings.Repeat("d", 120))
	if _, _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "107") {
		t.Fatalf("a long path: %v", err)
	}
}

func TestDir(t *testing.T) {
	rt := shortDir(t)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	if got := Dir("/state"); got != filepath.Join(rt, "pyro", "control") {
		t.Fatalf("with a runtime dir: %s", got)
	}
	if err := os.Chmod(rt, 0o777); err != nil {
		t.Fatal(err)
	}
	if got := Dir("/state"); got != "/state/control" {
		t.Fatalf("with a runtime dir others may write: %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "relative/dir")
	if got := Dir("/state"); got != "/state/control" {
		t.Fatalf("with a relative runtime dir: %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := Dir("/state"); got != "/state/control" {
		t.Fatalf("without a runtime dir: %s", got)
	}
}

// deadPID is the pid of a process that has exited.
func deadPID(t testing.TB) int {
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Skipf("no /bin/true: %v", err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

func TestDiscoverCleansStaleSockets(t *testing.T) {
	dir := shortDir(t)
	live := serve(t, dir, mcptest.New(), Options{Hello: Hello{Version: "v-test", StateDir: "/s"}})
	// A server that died: its socket stays, nobody listens.
	ln, stalePath := listenAs(t, dir, deadPID(t))
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	// A socket of a live process that is not a server yet (just made):
	// left alone.
	young, youngPath := listenAs(t, dir, os.Getppid())
	young.(*net.UnixListener).SetUnlinkOnClose(false)
	young.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)

	scan, err := DiscoverAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Servers) != 1 || scan.Servers[0].Path != live || scan.Servers[0].PID != os.Getpid() ||
		scan.Servers[0].Version != "v-test" || scan.Servers[0].StateDir != "/s" || scan.Servers[0].Protocol != Protocol {
		t.Fatalf("servers: %+v", scan.Servers)
	}
	if !reflect.DeepEqual(scan.Removed, []string{stalePath}) {
		t.Fatalf("removed %v, want %s", scan.Removed, stalePath)
	}
	if _, err := os.Stat(stalePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale socket is still there: %v", err)
	}
	if len(scan.Unreachable) != 1 || !strings.HasPrefix(scan.Unreachable[0], youngPath) {
		t.Fatalf("unreachable: %v", scan.Unreachable)
	}
	if _, err := os.Stat(youngPath); err != nil {
		t.Fatalf("a live process's socket was removed: %v", err)
	}
	// Once old, a socket nobody listens on is stale even if its pid lives.
	old := time.Now().Add(-time.Minute)
	os.Chtimes(youngPath, old, old)
	if scan, _ := DiscoverAll(dir); !reflect.DeepEqual(scan.Removed, []string{youngPath}) {
		t.Fatalf("an old socket nobody listens on: removed %v", scan.Removed)
	}
	if servers, err := Discover(filepath.Join(dir, "missing")); err != nil || len(servers) != 0 {
		t.Fatalf("a missing directory: %v %v", servers, err)
	}
}

// Two servers and a fallback: the router lists every workspace once with
// its owner and runs each call where the workspace lives.
func TestRouterTwoServers(t *testing.T) {
	dir := shortDir(t)
	a, b, local := mcptest.New(), mcptest.New(), mcptest.New()
	ctx := context.Background()
	mk := func(f *mcptest.Backend, n int, name string) contract.Workspace {
		var w contract.Workspace
		for i := 0; i < n; i++ { // the fakes number from ws-1: skip some so that IDs differ
			var err error
			w, err = f.Create(ctx, contract.CreateRequest{TTLSeconds: 600})
			if err != nil {
				t.Fatal(err)
			}
			if i < n-1 {
				f.Delete(ctx, w.ID)
			}
		}
		name2 := name
		w, err := f.Update(ctx, w.ID, contract.UpdateRequest{Name: &name2})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	wa, wb, wl := mk(a, 1, "alpha"), mk(b, 2, "beta"), mk(local, 3, "gamma")
	// Two servers in one directory, as two processes would be.
	lnA, pathA := listenAs(t, dir, os.Getpid())
	serveOn(t, lnA, pathA, a, Options{Hello: Hello{PID: os.Getpid(), Started: time.Now().Add(-time.Hour)}})
	lnB, pathB := listenAs(t, dir, os.Getppid())
	serveOn(t, lnB, pathB, b, Options{Hello: Hello{PID: os.Getppid(), Started: time.Now()}})

	opened := 0
	r := NewRouter(discover(t, dir), func() (contract.Backend, error) { opened++; return local, nil })
	if s := r.Servers(); len(s) != 2 || s[0].Path != pathA || s[1].Path != pathB {
		t.Fatalf("servers: %+v", s)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range list {
		got[w.ID] = w.Name
	}
	if len(list) != 3 || got[wa.ID] != "alpha" || got[wb.ID] != "beta" || got[wl.ID] != "gamma" {
		t.Fatalf("list: %v", got)
	}
	if s, ok := r.Owner(wa.ID); !ok || s.Path != pathA {
		t.Errorf("owner of %s: %+v %v", wa.ID, s, ok)
	}
	if s, ok := r.Owner(wb.ID); !ok || s.Path != pathB {
		t.Errorf("owner of %s: %+v %v", wb.ID, s, ok)
	}
	if _, ok := r.Owner(wl.ID); ok {
		t.Errorf("the fallback's workspace has a server")
	}

	// An exec on the other server's workspace, by ID and by name, runs there.
	for _, ref := range []string{wb.ID, "beta"} {
		res, err := r.Exec(ctx, contract.ExecRequest{ID: ref, Command: "whoami"})
		if err != nil || string(res.Stdout) != "ran: whoami\n" {
			t.Fatalf("exec on %s: %v %+v", ref, err, res)
		}
	}
	if n := count(b.Calls(), "Exec"); n != 2 {
		t.Fatalf("server B ran %d execs, want 2: %v", n, b.Calls())
	}
	if n := count(a.Calls(), "Exec") + count(local.Calls(), "Exec"); n != 0 {
		t.Fatalf("the exec ran elsewhere too: %v %v", a.Calls(), local.Calls())
	}
	if _, err := r.Exec(ctx, contract.ExecRequest{ID: "alpha", Command: "id"}); err != nil || count(a.Calls(), "Exec") != 1 {
		t.Fatalf("exec on A's workspace: %v %v", err, a.Calls())
	}
	if _, err := r.Exec(ctx, contract.ExecRequest{ID: "gamma", Command: "id"}); err != nil || count(local.Calls(), "Exec") != 1 {
		t.Fatalf("exec on the fallback's workspace: %v %v", err, local.Calls())
	}
	// Optional interfaces route too.
	if _, err := r.ShellOpen(ctx, contract.ShellOpenRequest{ID: "beta"}); err != nil || count(b.Calls(), "ShellOpen") != 1 {
		t.Fatalf("shell on B's workspace: %v %v", err, b.Calls())
	}
	// With two servers a create goes to the fallback.
	w, err := r.Create(ctx, contract.CreateRequest{TTLSeconds: 600})
	if err != nil || count(local.Calls(), "Create") != 4 {
		t.Fatalf("create with two servers: %v %v", err, local.Calls())
	}
	if _, ok := r.Owner(w.ID); ok {
		t.Fatalf("the new workspace is said to be a server's")
	}
	if _, err := r.Status(ctx, "nope"); !contract.IsCode(err, contract.CodeNotFound) {
		t.Fatalf("an unknown workspace: %v", err)
	}
	if opened != 1 {
		t.Fatalf("the fallback was opened %d times", opened)
	}

	// A workspace that moved (server A let it go; B holds it now) is found
	// again.
	moved := mk(b, 3, "")
	if _, err := r.Status(ctx, moved.ID); err != nil || count(b.Calls(), "Status") != 1 {
		t.Fatalf("a workspace the router had not seen: %v %v", err, b.Calls())
	}
}

// noForker hides a fake's Fork: a server (or fallback) that cannot fork.
type noForker struct{ contract.Backend }

// A fork runs where its source lives, and its forks are that backend's:
// the router sends later calls on them there without looking again. A
// server that cannot fork says so, and so does a fallback that cannot.
func TestRouterFork(t *testing.T) {
	dir := shortDir(t)
	a, b, local := mcptest.New(), mcptest.New(), mcptest.New()
	ctx := context.Background()
	for _, c := range []struct {
		f    *mcptest.Backend
		skip int
		name string
	}{{a, 0, "alpha"}, {b, 10, "beta"}, {local, 20, "gamma"}} {
		for range c.skip { // the fakes number from ws-1: skip some so that IDs differ, forks' too
			w, _ := c.f.Create(ctx, contract.CreateRequest{TTLSeconds: 600})
			c.f.Delete(ctx, w.ID)
		}
		if _, err := c.f.Create(ctx, contract.CreateRequest{Name: c.name, TTLSeconds: 600}); err != nil {
			t.Fatal(err)
		}
	}
	lnA, pathA := listenAs(t, dir, os.Getpid())
	serveOn(t, lnA, pathA, a, Options{Hello: Hello{PID: os.Getpid(), Started: time.Now().Add(-time.Hour)}})
	lnB, pathB := listenAs(t, dir, os.Getppid())
	serveOn(t, lnB, pathB, noForker{b}, Options{Hello: Hello{PID: os.Getppid(), Started: time.Now()}})
	r := NewRouter(discover(t, dir), func() (contract.Backend, error) { return local, nil })
	if _, err := r.List(ctx); err != nil {
		t.Fatal(err)
	}

	res, err := r.Fork(ctx, contract.ForkRequest{ID: "alpha", Count: 2, Names: []string{"alpha-1", "alpha-2"}})
	if err != nil || len(res.Forks) != 2 || res.Source != "ws-1" || count(a.Calls(), "Fork") != 1 {
		t.Fatalf("fork of A's workspace: %v %+v; A's calls %v", err, res, a.Calls())
	}
	for _, w := range res.Forks {
		if s, ok := r.Owner(w.ID); !ok || s.Path != pathA {
			t.Errorf("fork %s is said to be %+v's (%v)", w.ID, s, ok)
		}
	}
	lists := count(a.Calls(), "List") + count(b.Calls(), "List") + count(local.Calls(), "List")
	if _, err := r.Exec(ctx, contract.ExecRequest{ID: "alpha-2", Command: "true"}); err != nil || count(a.Calls(), "Exec") != 1 {
		t.Fatalf("exec in a fork by name: %v; A's calls %v", err, a.Calls())
	}
	if n := count(a.Calls(), "List") + count(b.Calls(), "List") + count(local.Calls(), "List"); n != lists {
		t.Errorf("the router listed again to find a fork it made")
	}

	_, err = r.Fork(ctx, contract.ForkRequest{ID: "beta"})
	if !contract.IsCode(err, contract.CodeInvalid) || !strings.Contains(err.Error(), "has no workspace forks") || count(b.Calls(), "Fork") != 0 {
		t.Fatalf("fork on a server that cannot: %v; B's calls %v", err, b.Calls())
	}

	res, err = r.Fork(ctx, contract.ForkRequest{ID: "gamma", Labels: map[string]string{"try": "1"}})
	if err != nil || len(res.Forks) != 1 || count(local.Calls(), "Fork") != 1 || count(a.Calls(), "Fork") != 1 {
		t.Fatalf("fork of the fallback's workspace: %v %+v", err, res)
	}
	if _, ok := r.Owner(res.Forks[0].ID); ok {
		t.Errorf("the fallback's fork is said to be a server's")
	}

	plain := NewRouter(nil, func() (contract.Backend, error) { return noForker{local}, nil })
	if _, err := plain.Fork(ctx, contract.ForkRequest{ID: "gamma"}); !contract.IsCode(err, contract.CodeInvalid) || !strings.Contains(err.Error(), "has no workspace forks") {
		t.Fatalf("fork on a fallback that cannot: %v", err)
	}
}

func count(calls []string, name string) int {
	n := 0
	for _, c := range calls {
		if c == name {
			n++
		}
	}
	return n
}

func TestRouterOneServerCreatesThere(t *testing.T) {
	dir := shortDir(t)
	a := mcptest.New()
	serve(t, dir, a, Options{})
	r := NewRouter(discover(t, dir), func() (contract.Backend, error) { return nil, errors.New("the fallback must not be opened") })
	ctx := context.Background()
	w, err := r.Create(ctx, contract.CreateRequest{Name: "x", TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Owner(w.ID); !ok || count(a.Calls(), "Create") != 1 {
		t.Fatalf("create with one server: %v", a.Calls())
	}
	if _, err := r.Exec(ctx, contract.ExecRequest{ID: "x", Command: "true"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Envs(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRouterWithoutServers(t *testing.T) {
	local := mcptest.New()
	r := NewRouter(discover(t, filepath.Join(shortDir(t), "none")), func() (contract.Backend, error) { return local, nil })
	ctx := context.Background()
	if _, err := r.Create(ctx, contract.CreateRequest{Name: "solo", TTLSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "solo" {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := r.Exec(ctx, contract.ExecRequest{ID: "solo", Command: "true"}); err != nil {
		t.Fatal(err)
	}
	if len(r.Servers()) != 0 {
		t.Fatal("servers out of nowhere")
	}
}

// A server that stops between discovery and the call: its workspaces
// fall to the fallback.
func TestRouterServerGone(t *testing.T) {
	dir := shortDir(t)
	a, local := mcptest.New(), mcptest.New()
	ln, path := listenAs(t, dir, os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, ln, a, Options{}); close(done) }()
	r := NewRouter(discover(t, dir), func() (contract.Backend, error) { return local, nil })
	cancel()
	<-done
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket outlived the server: %v", err)
	}
	w, err := r.Create(context.Background(), contract.CreateRequest{TTLSeconds: 600})
	if err != nil {
		t.Fatalf("create after the only server went: %v", err)
	}
	if count(local.Calls(), "Create") != 1 || len(r.Servers()) != 0 {
		t.Fatalf("the create did not fall back: %v, servers %v", local.Calls(), r.Servers())
	}
	if _, err := r.Status(context.Background(), w.ID); err != nil {
		t.Fatal(err)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "caf\xe9", "\xff\xfe\xfd", "\U0010FFFF", "\U0010FE00", "\U0010FE00\U0010FF00",
		"\xf4\x8f", "\xf4\x8f\xbf", "\U0010FF41x\xc3", "x\U0010FE00"} {
		e := escapeString(s)
		if !utf8.ValidString(e) {
			t.Errorf("%q escaped to %q, not valid UTF-8", s, e)
		}
		if u := unescapeString(e); u != s {
			t.Errorf("%q -> %q -> %q", s, e, u)
		}
	}
	// Through encoding/json, in nested values.
	type inner struct{ S string }
	in := struct {
		M map[string]*inner
		L []string
		B []byte
		P *string
	}{M: map[string]*inner{"k\xff": {S: "v\xfe"}}, L: []string{"\xc0", "ok"}, B: []byte{0xff}}
	p := "\xe9"
	in.P = &p
	data, err := marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := in
	out.M, out.L, out.B, out.P = nil, nil, nil, nil
	if err := unmarshal(data, &out, true); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("%+v came back as %+v", in, out)
	}
	if in.M["k\xff"].S != "v\xfe" || *in.P != "\xe9" {
		t.Fatal("marshal changed its argument")
	}
}

func discover(t testing.TB, dir string) []Server {
	t.Helper()
	s, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
