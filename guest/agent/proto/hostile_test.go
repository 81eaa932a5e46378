package proto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// A hostile agent: a fake guest agent on the far end of a net.Pipe that
// speaks the real wire protocol (hello, frames) but lies about sizes or
// streams without end. Each test asserts that the Client ends the call
// with a clear error, stops reading (the agent's writes fail, so what it
// managed to deliver is bounded), and holds no more than the stated
// bound.

// hostileAgent serves one call: it reads the hello and the request,
// answers the hello, then runs answer until it returns (a write failed,
// or it chose to stop).
type hostileAgent struct {
	answer  func(req *Request, enc *Encoder) error
	written atomic.Int64  // bytes the client accepted, hello included
	done    chan struct{} // closed when the agent's goroutine ends
}

func newHostile(answer func(req *Request, enc *Encoder) error) *hostileAgent {
	return &hostileAgent{answer: answer, done: make(chan struct{})}
}

func (a *hostileAgent) client() *Client {
	return &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		go a.serve(guest)
		return host, nil
	}}
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (a *hostileAgent) serve(conn net.Conn) {
	defer close(a.done)
	defer conn.Close()
	dec := NewDecoder(conn)
	if _, err := ReadHello(dec.Reader()); err != nil {
		return
	}
	var req Request
	if err := dec.ReadJSON(FrameRequest, &req); err != nil {
		return
	}
	go io.Copy(io.Discard, dec.Reader()) // uploads, if any
	w := countWriter{conn, &a.written}
	if _, err := w.Write(Hello(Version)); err != nil {
		return
	}
	a.answer(&req, NewEncoder(w))
}

// wait returns once the agent has stopped: the client closed the stream.
func (a *hostileAgent) wait(t *testing.T) int64 {
	t.Helper()
	<-a.done
	return a.written.Load()
}

// forever writes the frame until the client stops reading, or cap bytes
// went out (so that a client without the bound under test fails the
// test instead of exhausting the machine).
func forever(enc *Encoder, t FrameType, p []byte, cap int64) error {
	for sent := int64(0); sent < cap; sent += int64(len(p)) {
		if err := enc.WriteFrame(t, p); err != nil {
			return err
		}
	}
	return nil
}

// heapAfter is the live heap after a GC.
func heapAfter() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// entriesFrame is an Entries frame of n entries named name.
func entriesFrame(n int, name string) []byte {
	batch := make([]FileInfo, n)
	for i := range batch {
		batch[i] = FileInfo{Name: name, Type: TypeFile}
	}
	b, _ := json.Marshal(batch)
	return b
}

func TestHostileListEndless(t *testing.T) {
	// 4096-byte names, the most allowed, without end.
	p := entriesFrame(200, strings.Repeat("n", MaxNameLen))
	a := newHostile(func(req *Request, enc *Encoder) error {
		return forever(enc, FrameEntries, p, 4*MaxListBytes)
	})
	before := heapAfter()
	entries, _, err := a.client().List(context.Background(), "/workspace", true, MaxListLimit)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeTooLarge || !strings.Contains(err.Error(), "list a subdirectory") {
		t.Fatalf("List = %d entries, %v; want a %s error that says what to do", len(entries), err, CodeTooLarge)
	}
	held := heapAfter() - before
	runtime.KeepAlive(entries)
	if sent := a.wait(t); sent > MaxListBytes+2*MaxPayload {
		t.Errorf("the client read %d bytes of an endless listing; the bound is %d", sent, MaxListBytes)
	}
	if held > MaxListBytes+8<<20 {
		t.Errorf("the client holds %d MiB after an endless listing; the bound is %d MiB", held>>20, 64)
	}
}

func TestHostileListLongNames(t *testing.T) {
	for name, fi := range map[string]FileInfo{
		"name":   {Name: strings.Repeat("n", MaxNameLen+1), Type: TypeFile},
		"target": {Name: "l", Type: TypeSymlink, Target: strings.Repeat("t", 512<<10)},
		"type":   {Name: "x", Type: strings.Repeat("t", 512<<10)},
	} {
		a := newHostile(func(req *Request, enc *Encoder) error {
			b, _ := json.Marshal([]FileInfo{fi})
			return forever(enc, FrameEntries, b, 64<<20)
		})
		_, _, err := a.client().List(context.Background(), "/workspace", false, 0)
		if !IsProtocol(err) {
			t.Errorf("%s over the limit: List = %v, want a protocol error", name, err)
		}
		if sent := a.wait(t); sent > 2*MaxPayload {
			t.Errorf("%s over the limit: the client read %d bytes", name, sent)
		}
	}
}

// A frame of a million tiny entries must cost no more than the entries
// asked for: the client decodes entry by entry.
func TestHostileListTinyEntries(t *testing.T) {
	p := []byte("[" + strings.Repeat("{},", MaxPayload/3-1) + "{}]")
	a := newHostile(func(req *Request, enc *Encoder) error { return enc.WriteFrame(FrameEntries, p) })
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, _, err := a.client().List(context.Background(), "/", false, 10)
	runtime.ReadMemStats(&m1)
	if !IsProtocol(err) || !strings.Contains(err.Error(), "more than the 10 entries") {
		t.Fatalf("List = %v, want a protocol error for entries past the limit", err)
	}
	// The frame itself (1 MiB) and the decoder's buffers; not 350,000 FileInfos.
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 8<<20 {
		t.Errorf("a frame of tiny entries cost %d MiB of allocation", alloc>>20)
	}
	a.wait(t)
}

func TestHostileStat(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		return enc.WriteJSON(FrameResult, FileInfo{Name: strings.Repeat("n", 512<<10), Type: TypeFile})
	})
	fi, err := a.client().Stat(context.Background(), "/workspace/x")
	if !IsProtocol(err) || fi.Name != "" {
		t.Fatalf("Stat = %d-byte name, %v; want a protocol error", len(fi.Name), err)
	}
	a.wait(t)
}

func TestHostileReadEndless(t *testing.T) {
	chunk := bytes.Repeat([]byte{'x'}, ChunkSize)
	a := newHostile(func(req *Request, enc *Encoder) error {
		return forever(enc, FrameData, chunk, 64<<20) // whatever Max said
	})
	const max = 1 << 20
	data, _, err := a.client().ReadFile(context.Background(), "/workspace/big", 0, max)
	if !IsProtocol(err) || !strings.Contains(err.Error(), "more than the 1048576 bytes asked for") {
		t.Fatalf("ReadFile = %d bytes, %v; want a protocol error", len(data), err)
	}
	if sent := a.wait(t); sent > max+2*MaxPayload {
		t.Errorf("the client read %d bytes of an endless file; it asked for %d", sent, max)
	}
}

func TestHostileErrorFrame(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		return enc.WriteJSON(FrameError, Error{Code: strings.Repeat("E", 1000), Message: strings.Repeat("é", 400<<10)})
	})
	err := a.client().Sync(context.Background())
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Sync = %v, want the agent's error", err)
	}
	if len(pe.Message) > MaxErrorMessage || !strings.HasSuffix(pe.Message, "(clipped)") || pe.Code != CodeInternal {
		t.Errorf("error frame: code %.40q, message of %d bytes (clipped: %v); want code internal and at most %d bytes",
			pe.Code, len(pe.Message), strings.HasSuffix(pe.Message, "(clipped)"), MaxErrorMessage)
	}
	if !utf8Valid(pe.Message) {
		t.Error("clipping cut a rune")
	}
	a.wait(t)
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// Results are single frames: a header claiming more than MaxPayload is
// refused before any of it is read.
func TestHostileOversizedResult(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		enc.w.Write([]byte{byte(FrameResult), 0xff, 0xff, 0xff, 0x7f})
		return forever(enc, FrameData, make([]byte, ChunkSize), 64<<20)
	})
	_, err := a.client().Ping(context.Background())
	if !IsProtocol(err) {
		t.Fatalf("Ping = %v, want a protocol error", err)
	}
	if sent := a.wait(t); sent > 2*MaxPayload {
		t.Errorf("the client read %d bytes after an oversized header", sent)
	}
}

// errFull is what a bounded output writer returns when it is full.
var errFull = errors.New("output full")

type fullAfter struct{ left int }

func (w *fullAfter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errFull
	}
	w.left -= len(p)
	return len(p), nil
}

func TestHostileExecEndless(t *testing.T) {
	chunk := bytes.Repeat([]byte{'y'}, ChunkSize)
	endless := func(req *Request, enc *Encoder) error { return forever(enc, FrameStdout, chunk, 1<<30) }

	// A writer that fills up ends the call with its error.
	a := newHostile(endless)
	_, err := a.client().Exec(context.Background(), ExecRequest{Shell: "yes"}, &fullAfter{left: 4 << 20}, nil)
	if !errors.Is(err, errFull) || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("Exec = %v, want the writer's error", err)
	}
	if sent := a.wait(t); sent > 4<<20+2*MaxPayload {
		t.Errorf("the client read %d bytes after its writer was full", sent)
	}

	// A writer that takes everything: the caller's context ends the
	// call (the workspace's exec deadline), and the stream stops.
	ctx, cancel := context.WithCancelCause(context.Background())
	var got int
	w := writerFunc(func(p []byte) (int, error) {
		if got += len(p); got > 8<<20 {
			cancel(errors.New("deadline"))
		}
		return len(p), nil
	})
	a = newHostile(endless)
	_, err = a.client().Exec(ctx, ExecRequest{Shell: "yes"}, w, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec with its context cancelled = %v, want context.Canceled", err)
	}
	if sent := a.wait(t); sent > 8<<20+2*MaxPayload {
		t.Errorf("the client read %d bytes after its context ended", sent)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestHostileTarOutEndless(t *testing.T) {
	chunk := make([]byte, ChunkSize)
	a := newHostile(func(req *Request, enc *Encoder) error { return forever(enc, FrameData, chunk, 1<<30) })
	rc, err := a.client().TarOut(context.Background(), "/workspace")
	if err != nil {
		t.Fatal(err)
	}
	// The consumer (treediff, hostio) decides how much is enough; the
	// reader hands out frames without holding more than one.
	before := heapAfter()
	n, err := io.Copy(io.Discard, io.LimitReader(rc, 16<<20))
	if err != nil || n != 16<<20 {
		t.Fatalf("reading the archive: %d bytes, %v", n, err)
	}
	held := heapAfter() - before
	rc.Close()
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if sent := a.wait(t); sent > 16<<20+2*MaxPayload {
		t.Errorf("the client read %d bytes; the consumer took 16 MiB and closed", sent)
	}
	if held > 4<<20 {
		t.Errorf("reading 16 MiB of archive left %d MiB held", held>>20)
	}
}

// An agent that lies about how much it sent.
func TestHostileCounts(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		enc.WriteFrame(FrameData, []byte("abc"))
		return enc.WriteJSON(FrameResult, ReadResult{Size: 1 << 40, N: 1 << 40, EOF: true})
	})
	if _, _, err := a.client().ReadFile(context.Background(), "/f", 0, 10); !IsProtocol(err) {
		t.Errorf("read with a lying count = %v, want a protocol error", err)
	}
	a.wait(t)
	a = newHostile(func(req *Request, enc *Encoder) error {
		enc.WriteFrame(FrameEntries, entriesFrame(2, "x"))
		return enc.WriteJSON(FrameResult, ListResult{Count: 1 << 30})
	})
	if _, _, err := a.client().List(context.Background(), "/", false, 10); !IsProtocol(err) {
		t.Errorf("list with a lying count = %v, want a protocol error", err)
	}
	a.wait(t)
}

// An exec's signal name goes into the workspace journal: a lying one is
// cut to a signal name's size.
func TestHostileExecSignal(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		return enc.WriteJSON(FrameResult, ExecResult{ExitCode: -1, Signal: strings.Repeat("S", 512<<10)})
	})
	res, err := a.client().Exec(context.Background(), ExecRequest{Shell: "true"}, nil, nil)
	if err != nil || len(res.Signal) > maxCodeLen {
		t.Errorf("Exec = %d-byte signal, %v; want at most %d bytes", len(res.Signal), err, maxCodeLen)
	}
	a.wait(t)
}
