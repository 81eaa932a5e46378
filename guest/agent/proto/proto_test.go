package proto

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net"
	"runtime"
	"strings"
	"testing"
)

func frame(t FrameType, p []byte) []byte { return AppendFrame(nil, t, p) }

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	big := bytes.Repeat([]byte{7}, MaxPayload)
	for _, f := range []struct {
		t FrameType
		p []byte
	}{{FrameRequest, []byte(`{"op":"ping"}`)}, {FrameEnd, nil}, {FrameData, big}, {FrameStdout, []byte("x")}} {
		if err := enc.WriteFrame(f.t, f.p); err != nil {
			t.Fatal(err)
		}
	}
	dec := NewDecoder(&buf)
	for _, want := range []FrameType{FrameRequest, FrameEnd, FrameData, FrameStdout} {
		ft, p, err := dec.ReadFrame()
		if err != nil || ft != want {
			t.Fatalf("got %v %v, want %v", ft, err, want)
		}
		if ft == FrameData && !bytes.Equal(p, big) {
			t.Fatal("1 MiB payload corrupted")
		}
	}
	if _, _, err := dec.ReadFrame(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	if err := NewEncoder(io.Discard).WriteFrame(FrameData, make([]byte, MaxPayload+1)); err == nil {
		t.Error("encoder accepted an oversized frame")
	}
	over := []byte{byte(FrameData), 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(over[1:], MaxPayload+1)
	for name, in := range map[string][]byte{
		"oversized":        over,
		"huge":             {byte(FrameData), 0xff, 0xff, 0xff, 0xff},
		"unknown type":     {0x7f, 0, 0, 0, 0},
		"zero type":        {0, 0, 0, 0, 0},
		"truncated header": {byte(FrameData), 1, 0},
		"truncated body":   append([]byte{byte(FrameData), 10, 0, 0, 0}, "abc"...),
	} {
		_, _, err := NewDecoder(bytes.NewReader(in)).ReadFrame()
		if !IsProtocol(err) {
			t.Errorf("%s: got %v, want a protocol error", name, err)
		}
	}
}

// A header that claims a big frame must not cost memory before the bytes
// arrive.
func TestDecoderAllocatesAsBytesArrive(t *testing.T) {
	in := append([]byte{byte(FrameData), 0, 0, 0x10, 0}, "short"...) // claims 1 MiB
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := 0; i < 100; i++ {
		NewDecoder(bytes.NewReader(in)).ReadFrame()
	}
	runtime.ReadMemStats(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / 100; per > 200<<10 {
		t.Errorf("a truncated 1 MiB frame costs %d bytes", per)
	}
}

func TestHello(t *testing.T) {
	v, err := ReadHello(bytes.NewReader(Hello(Version)))
	if err != nil || v != Version {
		t.Fatal(v, err)
	}
	if _, err := ReadHello(strings.NewReader("GET / HTTP/1.1\r\n")); !IsProtocol(err) {
		t.Errorf("garbage hello: %v", err)
	}
	if _, err := ReadHello(strings.NewReader("PYRO")); !IsProtocol(err) {
		t.Errorf("short hello: %v", err)
	}
}

// fakeAgent serves one stream per Dial with handler, after reading the
// client's hello and request.
func fakeAgent(t *testing.T, version uint16, handler func(req *Request, enc *Encoder)) *Client {
	return &Client{Dial: func(ctx context.Context) (net.Conn, error) {
		c, s := net.Pipe()
		go func() {
			defer s.Close()
			dec := NewDecoder(s)
			if _, err := ReadHello(dec.Reader()); err != nil {
				return
			}
			var req Request
			err := dec.ReadJSON(FrameRequest, &req)
			s.Write(Hello(version))
			if err != nil || version != Version {
				return
			}
			go io.Copy(io.Discard, dec.Reader())
			handler(&req, NewEncoder(s))
		}()
		return c, nil
	}}
}

func TestClientVersionMismatch(t *testing.T) {
	c := fakeAgent(t, Version+1, nil)
	_, err := c.Ping(context.Background())
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Guest != Version+1 || !strings.Contains(err.Error(), "rebuild the environment") {
		t.Fatalf("got %v, want a VersionError", err)
	}
}

// The client trusts nothing the guest says.
func TestClientHostileGuest(t *testing.T) {
	ctx := context.Background()
	c := fakeAgent(t, Version, func(req *Request, enc *Encoder) {
		switch req.Op {
		case OpStat:
			enc.WriteFrame(FrameStdout, []byte("surprise"))
		case OpList:
			for i := 0; i < 3; i++ {
				enc.WriteJSON(FrameEntries, []FileInfo{{Name: "a"}, {Name: "b"}})
			}
			enc.WriteJSON(FrameResult, ListResult{Count: 6})
		case OpReadFile:
			enc.WriteFrame(FrameData, make([]byte, req.Max+1))
		case OpPing:
			enc.WriteFrame(FrameResult, []byte("{not json"))
		case OpSync:
			enc.WriteJSON(FrameError, Error{Code: "ENOENT", Message: "gone"})
		case OpExec:
			enc.WriteFrame(FrameStdout, []byte("partial"))
			// and close without a result
		}
	})
	if _, err := c.Stat(ctx, "/x"); !IsProtocol(err) {
		t.Errorf("stat answered with stdout: %v", err)
	}
	if _, _, err := c.List(ctx, "/", false, 5); !IsProtocol(err) {
		t.Errorf("list over the limit: %v", err)
	}
	if _, _, err := c.ReadFile(ctx, "/x", 0, 10); !IsProtocol(err) {
		t.Errorf("read over max: %v", err)
	}
	if _, err := c.Ping(ctx); !IsProtocol(err) {
		t.Errorf("bad JSON result: %v", err)
	}
	if err := c.Sync(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error frame: %v", err)
	}
	var out bytes.Buffer
	if _, err := c.Exec(ctx, ExecRequest{Argv: []string{"x"}}, &out, nil); !errors.Is(err, errClosedEarly) || out.String() != "partial" {
		t.Errorf("exec without result: %v, output %q", err, out.String())
	}
}

func TestClientCancel(t *testing.T) {
	started, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	c := fakeAgent(t, Version, func(req *Request, enc *Encoder) {
		close(started)
		<-stop // never answers
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	if _, err := c.Exec(ctx, ExecRequest{Shell: "sleep 100"}, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestClientRejectsBadRequests(t *testing.T) {
	c := &Client{Dial: func(context.Context) (net.Conn, error) { t.Fatal("dialled"); return nil, nil }}
	ctx := context.Background()
	if _, err := c.Exec(ctx, ExecRequest{}, nil, nil); err == nil {
		t.Error("exec without argv or shell")
	}
	if _, err := c.Exec(ctx, ExecRequest{Argv: []string{"a"}, Shell: "b"}, nil, nil); err == nil {
		t.Error("exec with both")
	}
	if _, _, err := c.ReadFile(ctx, "/x", -1, 0); err == nil {
		t.Error("negative offset")
	}
	if _, _, err := c.List(ctx, "/", false, MaxListLimit+1); err == nil {
		t.Error("list limit over the maximum")
	}
}

func FuzzDecodeFrames(f *testing.F) {
	f.Add(append(Hello(Version), frame(FrameRequest, []byte(`{"op":"ping"}`))...))
	f.Add(append(frame(FrameData, []byte("abc")), frame(FrameEnd, nil)...))
	f.Add([]byte{byte(FrameData), 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		dec := NewDecoder(bytes.NewReader(in))
		var again []byte
		for {
			ft, p, err := dec.ReadFrame()
			if err != nil {
				if err != io.EOF && !IsProtocol(err) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				break
			}
			if len(p) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
			again = AppendFrame(again, ft, p)
		}
		// What decoded re-encodes to a prefix of the input.
		if !bytes.HasPrefix(in, again) {
			t.Fatal("re-encoded frames differ from the input")
		}
		var r Request
		DecodeJSON(FrameRequest, in, &r) // must not panic
	})
}
