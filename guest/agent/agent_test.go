package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// serve starts srv on a Unix socket and returns a client for it.
func serve(t *testing.T, srv *Server) *proto.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	var d net.Dialer
	return &proto.Client{Dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }}
}

func newClient(t *testing.T) *proto.Client { return serve(t, &Server{}) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func errCode(err error) string {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestPing(t *testing.T) {
	c := newClient(t)
	r, err := c.Ping(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != proto.Version || r.Kernel == "" || r.Uptime <= 0 || r.PID != os.Getpid() || r.Version != Version {
		t.Errorf("ping: %+v", r)
	}
}

// Every stream also works over net.Pipe (unbuffered, synchronous).
func TestServeConnOverPipe(t *testing.T) {
	srv := &Server{}
	c := &proto.Client{Dial: func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go srv.ServeConn(b)
		return a, nil
	}}
	var out bytes.Buffer
	res, err := c.Exec(ctxT(t), proto.ExecRequest{Argv: []string{"cat"}, Stdin: strings.NewReader("piped\n")}, &out, nil)
	if err != nil || res.ExitCode != 0 || out.String() != "piped\n" {
		t.Fatalf("exec over a pipe: %+v %v %q", res, err, out.String())
	}
	if _, err := c.Stat(ctxT(t), "/"); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownOp(t *testing.T) {
	conn := rawStream(t, serve(t, &Server{}), proto.Hello(proto.Version), proto.AppendFrame(nil, proto.FrameRequest, []byte(`{"op":"dance"}`)))
	if e := readError(t, conn); e.Code != proto.CodeInvalid || !strings.Contains(e.Message, "dance") {
		t.Fatalf("got %+v", e)
	}
}

// Arguments that are not an object of the operation's argument type are a
// protocol error; unknown fields, in the request or its arguments, are
// ignored.
func TestRequestArgs(t *testing.T) {
	c := newClient(t)
	hello := proto.Hello(proto.Version)
	for _, bad := range []string{
		`{"op":"exec","args":["sh"]}`,
		`{"op":"stat","args":{"path":5}}`,
		`{"op":"ping","args":"x"}`,
	} {
		e := readError(t, rawStream(t, c, hello, proto.AppendFrame(nil, proto.FrameRequest, []byte(bad))))
		if e.Code != proto.CodeProtocol || !strings.Contains(e.Message, "arguments") {
			t.Errorf("%s: got %+v, want a protocol error about the arguments", bad, e)
		}
	}
	conn := rawStream(t, c, hello, proto.AppendFrame(nil, proto.FrameRequest,
		[]byte(`{"op":"ping","later":1,"args":{"later":{"x":[1]}}}`)))
	dec := proto.NewDecoder(conn)
	proto.ReadHello(dec.Reader())
	var res proto.PingResult
	if err := dec.ReadJSON(proto.FrameResult, &res); err != nil || res.Protocol != proto.Version {
		t.Fatalf("ping with unknown fields: %+v, %v", res, err)
	}
}

// Every operation the agent serves has a row in the operations table of
// proto's package doc, and every row an operation the agent serves.
func TestHandlersMatchDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("proto", "doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n//\top ")
	if !ok {
		t.Fatal(`no operations table (a line "//\top ...") in proto/doc.go`)
	}
	table, _, _ = strings.Cut(table, "\n//\n")
	documented := map[string]bool{}
	for _, l := range strings.Split(table, "\n")[1:] {
		if f := strings.Fields(strings.TrimPrefix(l, "//")); len(f) > 0 && !strings.HasPrefix(l, "//\t ") {
			documented[f[0]] = true
		}
	}
	for op := range handlers {
		if !documented[op] {
			t.Errorf("the agent serves %q, which proto/doc.go's operations table lacks", op)
		}
	}
	for op := range documented {
		if handlers[op] == nil {
			t.Errorf("proto/doc.go documents %q, which the agent does not serve", op)
		}
	}
}

// rawStream dials the agent and writes raw bytes.
func rawStream(t *testing.T, c *proto.Client, chunks ...[]byte) net.Conn {
	t.Helper()
	conn, err := c.Dial(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	for _, b := range chunks {
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// readError reads the server's hello and the Error frame that must follow
// it, then checks the server closed the stream.
func readError(t *testing.T, conn net.Conn) *proto.Error {
	t.Helper()
	dec := proto.NewDecoder(conn)
	if v, err := proto.ReadHello(dec.Reader()); err != nil || v != proto.Version {
		t.Fatalf("hello: %v %v", v, err)
	}
	var e proto.Error
	if err := dec.ReadJSON(proto.FrameError, &e); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dec.ReadFrame(); err != io.EOF {
		t.Fatalf("after the error: %v, want the stream closed", err)
	}
	return &e
}

func TestProtocolViolations(t *testing.T) {
	c := newClient(t)
	hello := proto.Hello(proto.Version)
	over := []byte{byte(proto.FrameRequest), 1, 0, 0x10, 0} // MaxPayload+1
	t.Run("oversized", func(t *testing.T) {
		e := readError(t, rawStream(t, c, hello, over))
		if e.Code != proto.CodeProtocol || !strings.Contains(e.Message, "exceeds") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		conn := rawStream(t, c, hello, []byte{byte(proto.FrameRequest), 100, 0, 0, 0, '{'})
		conn.(*net.UnixConn).CloseWrite()
		if e := readError(t, conn); e.Code != proto.CodeProtocol {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("not a request", func(t *testing.T) {
		e := readError(t, rawStream(t, c, hello, proto.AppendFrame(nil, proto.FrameData, []byte("x"))))
		if e.Code != proto.CodeProtocol {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("bad json", func(t *testing.T) {
		e := readError(t, rawStream(t, c, hello, proto.AppendFrame(nil, proto.FrameRequest, []byte("{]"))))
		if e.Code != proto.CodeProtocol {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		conn := rawStream(t, c, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if b, err := io.ReadAll(conn); err != nil || len(b) != 0 {
			t.Fatalf("server answered garbage with %q, %v; want a silent close", b, err)
		}
	})
	t.Run("version mismatch", func(t *testing.T) {
		conn := rawStream(t, c, proto.AppendFrame(proto.Hello(proto.Version+1), proto.FrameRequest, []byte(`{"op":"ping"}`)))
		b, err := io.ReadAll(conn)
		if err != nil || !bytes.Equal(b, hello) {
			t.Fatalf("got %q %v, want only the server's hello", b, err)
		}
	})
	t.Run("exec frame after stdin end", func(t *testing.T) {
		conn := rawStream(t, c, hello, proto.AppendFrame(nil, proto.FrameRequest, []byte(`{"op":"exec","args":{"argv":["sleep","30"],"stdin":true}}`)),
			proto.AppendFrame(nil, proto.FrameEnd, nil), proto.AppendFrame(nil, proto.FrameData, []byte("late")))
		dec := proto.NewDecoder(conn)
		proto.ReadHello(dec.Reader())
		var res proto.ExecResult
		start := time.Now()
		if err := dec.ReadJSON(proto.FrameResult, &res); err != nil {
			t.Fatal(err)
		}
		if res.Signal != "SIGTERM" || time.Since(start) > 10*time.Second {
			t.Fatalf("a protocol violation should kill the command at once: %+v", res)
		}
	})
}

func TestBusy(t *testing.T) {
	c := serve(t, &Server{MaxStreams: 1})
	ctx := ctxT(t)
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.Exec(ctx, proto.ExecRequest{Shell: "echo up; sleep 2"}, writerFunc(func(p []byte) { close(started) }), nil)
	}()
	<-started
	_, err := c.Ping(ctx)
	if errCode(err) != proto.CodeBusy {
		t.Errorf("second stream: %v, want busy", err)
	}
	wg.Wait()
	// The server frees the slot just after the client has its answer.
	for i := 0; ; i++ {
		_, err = c.Ping(ctx)
		if err == nil {
			break
		}
		if errCode(err) != proto.CodeBusy || i == 100 {
			t.Fatalf("after the first stream ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

type fakeSystem struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeSystem) rec(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }
func (f *fakeSystem) Sync() error  { f.rec("sync"); return nil }
func (f *fakeSystem) Freeze(p string) error {
	f.rec("freeze " + p)
	return nil
}
func (f *fakeSystem) Thaw(p string) error { f.rec("thaw " + p); return nil }
func (f *fakeSystem) SetTime(t time.Time) error {
	f.rec("time " + t.UTC().Format(time.RFC3339Nano))
	return nil
}
func (f *fakeSystem) Poweroff() (func(), error) { return func() { f.rec("off") }, nil }

// fakeBootID is the boot id fakeSystem reports when restored names none.
const fakeBootID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

func (f *fakeSystem) Restored(a proto.RestoredArgs) (proto.RestoredResult, error) {
	f.rec(fmt.Sprintf("restored %d %d bytes %q %q %q", a.TimeNs, len(a.Entropy), a.Hostname, a.BootID, a.MachineID))
	id := a.BootID
	if id == "" {
		id = fakeBootID
	}
	return proto.RestoredResult{Reseeded: true, BootID: id}, nil
}

func TestSystemOps(t *testing.T) {
	ctx := ctxT(t)
	host := newClient(t)
	for name, err := range map[string]error{
		"freeze": host.Freeze(ctx, "/"), "thaw": host.Thaw(ctx, "/"),
		"set_time": host.SetTime(ctx, time.Now()), "poweroff": host.Poweroff(ctx),
		"restored": restoredErr(host.Restored(ctx, restoredArgs())),
	} {
		if errCode(err) != proto.CodeUnsupported {
			t.Errorf("%s outside a guest: %v, want unsupported", name, err)
		}
	}
	if err := host.Sync(ctx); err != nil {
		t.Error(err)
	}
	fs := &fakeSystem{}
	c := serve(t, &Server{System: fs})
	when := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, err := range []error{c.Sync(ctx), c.Freeze(ctx, "/mnt"), c.Thaw(ctx, "/mnt"), c.SetTime(ctx, when),
		restoredErr(c.Restored(ctx, restoredArgs())), c.Poweroff(ctx)} {
		if err != nil {
			t.Error(err)
		}
	}
	if err := c.Freeze(ctx, "relative"); errCode(err) != proto.CodeInvalid {
		t.Error("freeze of a relative path:", err)
	}
	want := "sync,freeze /mnt,thaw /mnt,time 2030-01-02T03:04:05.000000006Z," +
		`restored 1700000000000000001 64 bytes "ws-2" "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10" "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8",off`
	var got string
	for i := 0; i < 500 && got != want; i++ { // poweroff runs after the answer
		time.Sleep(10 * time.Millisecond)
		fs.mu.Lock()
		got = strings.Join(fs.calls, ",")
		fs.mu.Unlock()
	}
	if got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
}
