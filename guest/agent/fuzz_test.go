package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// fuzzConn is a net.Conn whose peer sent in and then closed its side.
type fuzzConn struct {
	r      io.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

const fuzzMaxOut = 64 << 20

func (c *fuzzConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.out.Len()+len(p) > fuzzMaxOut {
		return 0, errors.New("fuzz: too much output")
	}
	return c.out.Write(p)
}
func (c *fuzzConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.UnixAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.UnixAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzRequest is a stream: a hello, op's request with args, and frames.
func fuzzRequest[A, R any](op proto.Op[A, R], args A, frames ...[]byte) []byte {
	b := proto.Hello(proto.Version)
	req, err := proto.NewRequest(op, args)
	if err != nil {
		panic(err)
	}
	p, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	b = proto.AppendFrame(b, proto.FrameRequest, p)
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

// fuzzSeeds are valid streams: a hello and each kind of request, with the
// frames that follow it. (No dial: it would reach the host's loopback.)
func fuzzSeeds(t testing.TB) map[string][]byte {
	data := func(s string) []byte { return proto.AppendFrame(nil, proto.FrameData, []byte(s)) }
	end := proto.AppendFrame(nil, proto.FrameEnd, nil)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d/f"})
	tw.Close()
	path := func(p string) proto.PathArgs { return proto.PathArgs{Path: p} }
	return map[string][]byte{
		"ping":          fuzzRequest(proto.OpPing, proto.Empty{}),
		"exec":          fuzzRequest(proto.OpExec, proto.ExecArgs{Argv: []string{"echo", "hi"}, Env: map[string]string{"A": "b"}, Cwd: "/", TimeoutMs: 1000}),
		"exec_stdin":    fuzzRequest(proto.OpExec, proto.ExecArgs{Shell: "cat", Stdin: true}, data("input"), end),
		"exec_confined": fuzzRequest(proto.OpExec, proto.ExecArgs{Argv: []string{"true"}, Cwd: "/", Beneath: "/"}),
		"stat":          fuzzRequest(proto.OpStat, proto.StatArgs{PathArgs: path("/")}),
		"stat_confined": fuzzRequest(proto.OpStat, proto.StatArgs{PathArgs: proto.PathArgs{Path: "/f", Beneath: "/"}}),
		"list":          fuzzRequest(proto.OpList, proto.ListArgs{PathArgs: path("/"), Recursive: true, Limit: 10}),
		"read_file":     fuzzRequest(proto.OpReadFile, proto.ReadFileArgs{PathArgs: path("/f"), Offset: 1, Max: 10}),
		"write_file":    fuzzRequest(proto.OpWriteFile, proto.WriteFileArgs{PathArgs: path("/a/f"), Mode: 0o600, MkdirParents: true}, data("content"), end),
		"tar_out":       fuzzRequest(proto.OpTarOut, proto.TarOutArgs{PathArgs: path("/")}),
		"tar_in":        fuzzRequest(proto.OpTarIn, proto.TarInArgs{PathArgs: path("/t")}, data(tb.String()), end),
		"tar_sparse":    fuzzRequest(proto.OpTarIn, proto.TarInArgs{PathArgs: path("/s")}, data(string(sparseTar(64<<20))), end),
		"sync":          fuzzRequest(proto.OpSync, proto.Empty{}),
		"freeze":        fuzzRequest(proto.OpFreeze, proto.FreezeArgs{Mountpoint: "/"}),
		"thaw":          fuzzRequest(proto.OpThaw, proto.ThawArgs{Mountpoint: "/"}),
		"set_time":      fuzzRequest(proto.OpSetTime, proto.SetTimeArgs{TimeNs: 1700000000000000000}),
		"poweroff":      fuzzRequest(proto.OpPoweroff, proto.Empty{}),
		"restored": fuzzRequest(proto.OpRestored, proto.RestoredArgs{TimeNs: 1700000000000000000, Entropy: bytes.Repeat([]byte{7, 0, 255}, 22),
			Hostname: "ws-1", BootID: "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10", MachineID: "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8"}),
	}
}

// TestWriteFuzzSeeds regenerates the committed seed corpus
// (PYRO_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PYRO_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set PYRO_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzServeStream")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzServeStream")
	os.MkdirAll(dir, 0o755)
	for name, b := range fuzzSeeds(t) {
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzServeStream feeds arbitrary bytes to the agent as one stream. The
// server must not panic, must close the stream, must not allocate much
// more than it was sent, and must answer a well-formed hello with a hello
// and then frames ending in exactly one Result or Error. File operations
// are confined to a fresh directory, every exec runs cat, and whole-guest
// operations go to a fake.
func FuzzServeStream(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		f.Skip("no cat")
	}
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, in []byte) {
		root, err := os.MkdirTemp(base, "root")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		os.WriteFile(filepath.Join(root, "f"), []byte("some file content"), 0o644)
		srv := &Server{root: root, execArgv: []string{cat}, System: &fakeSystem{}, maxTarEntry: 16 << 20}
		conn := &fuzzConn{r: bytes.NewReader(in)}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		done := make(chan struct{})
		go func() { srv.ServeConn(conn); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the server did not finish the stream")
		}
		runtime.ReadMemStats(&m1)
		if !conn.closed {
			t.Fatal("the server did not close the stream")
		}
		if d := m1.TotalAlloc - m0.TotalAlloc; d > uint64(64<<20+8*len(in)) {
			t.Fatalf("serving %d bytes allocated %d", len(in), d)
		}
		// Check the answer's shape.
		out := conn.out.Bytes()
		if len(in) < proto.HelloSize || !bytes.HasPrefix(in, []byte(proto.Magic)) {
			if len(out) != 0 {
				t.Fatalf("answered a stream without a hello: %q", out)
			}
			return
		}
		if !bytes.HasPrefix(out, proto.Hello(proto.Version)) {
			t.Fatalf("no hello in the answer %q", out)
		}
		if !bytes.Equal(in[:proto.HelloSize], proto.Hello(proto.Version)) {
			return // version mismatch: hello only
		}
		dec := proto.NewDecoder(bytes.NewReader(out[proto.HelloSize:]))
		terminal := 0
		for {
			ft, _, err := dec.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("the server sent a bad frame: %v", err)
			}
			if terminal > 0 {
				t.Fatalf("%v frame after the last one", ft)
			}
			if ft == proto.FrameResult || ft == proto.FrameError {
				terminal++
			}
		}
		if terminal != 1 {
			t.Fatalf("the answer has %d final frames, want 1", terminal)
		}
	})
}

// Every seed is a request the agent carries out.
func TestFuzzSeedsSucceed(t *testing.T) {
	for name, in := range fuzzSeeds(t) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "f"), []byte("some file content"), 0o644)
		conn := &fuzzConn{r: bytes.NewReader(in)}
		(&Server{root: root, execArgv: []string{"cat"}, System: &fakeSystem{}}).ServeConn(conn)
		dec := proto.NewDecoder(bytes.NewReader(conn.out.Bytes()))
		proto.ReadHello(dec.Reader())
		last := proto.FrameType(0)
		var payload []byte
		for {
			ft, p, err := dec.ReadFrame()
			if err != nil {
				break
			}
			last, payload = ft, append([]byte(nil), p...)
		}
		if last != proto.FrameResult {
			t.Errorf("seed %s: last frame %v %s, want a Result", name, last, payload)
		}
	}
}
