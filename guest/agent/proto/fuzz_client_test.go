package proto

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// clientCalls are the Client methods FuzzClientAnswers drives, each
// checking the bounds its answer must respect.
// Calls run on their own goroutine: they report with t.Errorf.
var clientCalls = []func(t *testing.T, c *Client) error{
	func(t *testing.T, c *Client) error { _, err := c.Ping(context.Background()); return err },
	func(t *testing.T, c *Client) error {
		fi, err := c.Stat(context.Background(), "/workspace/a")
		if err == nil && (len(fi.Name) > MaxNameLen || len(fi.Target) > MaxNameLen) {
			t.Errorf("Stat returned a %d-byte name, %d-byte target", len(fi.Name), len(fi.Target))
		}
		return err
	},
	func(t *testing.T, c *Client) error {
		const limit = 100
		es, _, err := c.List(context.Background(), "/workspace", true, limit)
		if len(es) > limit {
			t.Errorf("List returned %d entries, asked for %d", len(es), limit)
		}
		for _, e := range es {
			if len(e.Name) > MaxNameLen || len(e.Target) > MaxNameLen || len(e.Type) > maxTypeLen {
				t.Errorf("List returned an entry with a %d-byte name, %d-byte target", len(e.Name), len(e.Target))
			}
		}
		return err
	},
	func(t *testing.T, c *Client) error {
		const max = 4096
		b, _, err := c.ReadFile(context.Background(), "/workspace/a", 0, max)
		if len(b) > max {
			t.Errorf("ReadFile returned %d bytes, asked for %d", len(b), max)
		}
		return err
	},
	func(t *testing.T, c *Client) error {
		return c.WriteFile(context.Background(), "/workspace/a", strings.NewReader("content"), 0o644, true)
	},
	func(t *testing.T, c *Client) error {
		rc, err := c.TarOut(context.Background(), "/workspace")
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	},
	func(t *testing.T, c *Client) error {
		_, err := c.TarIn(context.Background(), "/workspace", strings.NewReader(strings.Repeat("\x00", 1024)))
		return err
	},
	func(t *testing.T, c *Client) error {
		_, err := c.Exec(context.Background(), ExecRequest{Shell: "true", Stdin: strings.NewReader("in")}, io.Discard, io.Discard)
		return err
	},
	func(t *testing.T, c *Client) error { return c.Sync(context.Background()) },
	func(t *testing.T, c *Client) error { return c.Poweroff(context.Background()) },
	func(t *testing.T, c *Client) error {
		conn, err := c.DialPort(context.Background(), 8080)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = io.Copy(io.Discard, conn)
		return err
	},
}

// scriptedAgent answers one request with the given bytes (after its
// hello unless raw), then closes the stream.
func scriptedAgent(answer []byte, raw bool) *Client {
	return &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		go func() {
			defer guest.Close()
			dec := NewDecoder(guest)
			if _, err := ReadHello(dec.Reader()); err != nil {
				return
			}
			if _, _, err := dec.ReadFrame(); err != nil {
				return
			}
			go io.Copy(io.Discard, dec.Reader())
			if !raw {
				if _, err := guest.Write(Hello(Version)); err != nil {
					return
				}
			}
			guest.Write(answer)
		}()
		return host, nil
	}}
}

func jsonFrame(t FrameType, v any) []byte {
	b, _ := json.Marshal(v)
	return frame(t, b)
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// FuzzClientAnswers feeds arbitrary bytes as the agent's answer to each
// Client call. The call must end (no hang), never panic, return no more
// than it asked for, and allocate in proportion to what arrived, not to
// what frame headers or counts claim.
func FuzzClientAnswers(f *testing.F) {
	for op := range clientCalls {
		f.Add(uint8(op), jsonFrame(FrameResult, struct{}{}))
		f.Add(uint8(op), jsonFrame(FrameError, Error{Code: "ENOENT", Message: "no such file"}))
	}
	f.Add(uint8(0), jsonFrame(FrameResult, PingResult{Version: "v", Protocol: Version, Kernel: "6.1"}))
	f.Add(uint8(1), jsonFrame(FrameResult, FileInfo{Name: "a", Type: TypeFile, Size: 3}))
	f.Add(uint8(2), cat(jsonFrame(FrameEntries, []FileInfo{{Name: "a", Type: TypeDir}, {Name: "a/b", Type: TypeSymlink, Target: "x"}}),
		jsonFrame(FrameResult, ListResult{Count: 2})))
	f.Add(uint8(2), cat(frame(FrameEntries, []byte("[{},{},{},{}]")), jsonFrame(FrameResult, ListResult{Count: 4, Truncated: true})))
	f.Add(uint8(2), frame(FrameEntries, []byte("null")))
	f.Add(uint8(3), cat(frame(FrameData, []byte("abc")), jsonFrame(FrameResult, ReadResult{Size: 3, N: 3, EOF: true})))
	f.Add(uint8(4), jsonFrame(FrameResult, WriteResult{N: 7}))
	f.Add(uint8(5), cat(frame(FrameData, make([]byte, 1024)), jsonFrame(FrameResult, TarResult{})))
	f.Add(uint8(7), cat(frame(FrameStdout, []byte("out")), frame(FrameStderr, []byte("err")),
		jsonFrame(FrameResult, ExecResult{ExitCode: 1})))
	f.Add(uint8(10), cat(frame(FrameOpen, nil), frame(FrameData, []byte("pong")), frame(FrameEnd, nil),
		jsonFrame(FrameResult, DialResult{In: 0, Out: 4})))
	f.Add(uint8(10), jsonFrame(FrameError, Error{Code: CodeInvalid, Message: `unknown operation "dial"`}))
	f.Add(uint8(restoredCall), jsonFrame(FrameResult, RestoredResult{Reseeded: true, BootID: "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10"}))
	f.Add(uint8(3), []byte{byte(FrameData), 0xff, 0xff, 0x0f, 0})           // claims 1 MiB, sends nothing
	f.Add(uint8(0x80), []byte("PYROAG\x01\x00"))                            // an older agent
	f.Add(uint8(0x81), append([]byte("NOTPYRO!"), frame(FrameEnd, nil)...)) // not an agent
	f.Fuzz(func(t *testing.T, op uint8, answer []byte) {
		call := clientCalls[int(op&0x7f)%len(clientCalls)]
		c := scriptedAgent(answer, op&0x80 != 0)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		done := make(chan error, 1)
		go func() { done <- call(t, c) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the call did not end after the agent closed the stream")
		}
		runtime.ReadMemStats(&m1)
		if pe := (*Error)(nil); errors.As(err, &pe) && (len(pe.Message) > MaxErrorMessage || len(pe.Code) > maxCodeLen) {
			t.Fatalf("error with a %d-byte message, %d-byte code", len(pe.Message), len(pe.Code))
		}
		// Buffers (bufio, the first chunk, the upload's) and a JSON
		// decoding of what arrived; never a claimed size.
		if alloc, bound := m1.TotalAlloc-m0.TotalAlloc, uint64(2<<20+16*len(answer)); alloc > bound {
			t.Fatalf("a %d-byte answer cost %d bytes of allocation (bound %d)", len(answer), alloc, bound)
		}
	})
}
