package proto

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
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
	if !errors.As(err, &ve) || ve.Guest != Version+1 || !strings.Contains(err.Error(), "rebuild the environment") ||
		!strings.Contains(err.Error(), "pyro env build NAME") {
		t.Fatalf("got %v, want a VersionError", err)
	}
	ve.Env = "debian-12" // the caller knows the environment
	if !strings.HasSuffix(ve.Error(), "pyro env build debian-12") {
		t.Fatalf("got %v, want it to name the environment", err)
	}
}

// The client trusts nothing the guest says.
func TestClientHostileGuest(t *testing.T) {
	ctx := context.Background()
	c := fakeAgent(t, Version, func(req *Request, enc *Encoder) {
		switch req.Op {
		case OpStat.Name:
			enc.WriteFrame(FrameStdout, []byte("surprise"))
		case OpList.Name:
			for i := 0; i < 3; i++ {
				enc.WriteJSON(FrameEntries, []FileInfo{{Name: "a"}, {Name: "b"}})
			}
			enc.WriteJSON(FrameResult, ListResult{Count: 6})
		case OpReadFile.Name:
			a, _ := DecodeArgs(OpReadFile, req)
			enc.WriteFrame(FrameData, make([]byte, a.Max+1))
		case OpPing.Name:
			enc.WriteFrame(FrameResult, []byte("{not json"))
		case OpSync.Name:
			enc.WriteJSON(FrameError, Error{Code: "ENOENT", Message: "gone"})
		case OpExec.Name:
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

// argDecoders decode a Request's arguments as each operation's.
var argDecoders = []func(*Request) error{
	func(r *Request) error { _, err := DecodeArgs(OpPing, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpExec, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpStat, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpList, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpReadFile, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpWriteFile, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpTarOut, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpTarIn, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpSync, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpFreeze, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpThaw, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpSetTime, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpPoweroff, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpDial, r); return err },
	func(r *Request) error { _, err := DecodeArgs(OpRestored, r); return err },
}

func FuzzDecodeFrames(f *testing.F) {
	f.Add(append(Hello(Version), frame(FrameRequest, []byte(`{"op":"ping"}`))...))
	f.Add(append(Hello(Version), frame(FrameRequest, []byte(`{"op":"exec","args":{"argv":["ls"],"cwd":"/w","beneath":"/w","stdin":true}}`))...))
	f.Add(frame(FrameRequest, []byte(`{"op":"list","args":{"path":"/","recursive":true,"limit":3}}`)))
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
		// A frame's payload decodes as a Request, and its arguments as
		// every operation's, with only protocol errors.
		dec = NewDecoder(bytes.NewReader(in))
		for {
			ft, p, err := dec.ReadFrame()
			if err != nil {
				break
			}
			var r Request
			if err := DecodeJSON(ft, p, &r); err != nil {
				if !IsProtocol(err) {
					t.Fatalf("decoding a Request: %v", err)
				}
				continue
			}
			for _, d := range argDecoders {
				if err := d(&r); err != nil && !IsProtocol(err) {
					t.Fatalf("decoding %s arguments: %v", r.Op, err)
				}
			}
		}
	})
}

// Each Client method sends its operation's name and its own arguments
// object; Beneath goes to the arguments that are Confined, and only there.
func TestRequestWire(t *testing.T) {
	reqs := make(chan string, 1)
	c := fakeAgent(t, Version, func(req *Request, enc *Encoder) {
		b, _ := json.Marshal(req)
		reqs <- string(b)
		enc.WriteJSON(FrameError, Error{Code: "ENOENT", Message: "test"})
	})
	c.Beneath = "/w"
	ctx := context.Background()
	for _, tc := range []struct {
		call func()
		want string
	}{
		{func() { c.Ping(ctx) }, `{"op":"ping"}`},
		{func() {
			c.Exec(ctx, ExecRequest{Argv: []string{"ls", "-l"}, Env: map[string]string{"A": "1"}, Cwd: "/w/d", User: "u",
				Stdin: strings.NewReader(""), Timeout: 1500 * time.Microsecond, KillGrace: time.Second}, nil, nil)
		}, `{"op":"exec","args":{"argv":["ls","-l"],"env":{"A":"1"},"cwd":"/w/d","beneath":"/w","stdin":true,"timeout_ms":2,"kill_grace_ms":1000,"user":"u"}}`},
		{func() { c.Exec(ctx, ExecRequest{Shell: "true"}, nil, nil) }, `{"op":"exec","args":{"shell":"true","beneath":"/w"}}`},
		{func() { c.Stat(ctx, "/w/a") }, `{"op":"stat","args":{"path":"/w/a","beneath":"/w"}}`},
		{func() { c.List(ctx, "/w", true, 7) }, `{"op":"list","args":{"path":"/w","beneath":"/w","recursive":true,"limit":7}}`},
		{func() { c.ReadFile(ctx, "/w/a", 3, 4) }, `{"op":"read_file","args":{"path":"/w/a","beneath":"/w","offset":3,"max":4}}`},
		{func() { c.WriteFile(ctx, "/w/a", strings.NewReader("x"), 0o755|fs.ModeSetuid, true) },
			`{"op":"write_file","args":{"path":"/w/a","beneath":"/w","mode":2541,"mkdir_parents":true}}`},
		{func() {
			if r, err := c.TarOut(ctx, "/w/d"); err == nil {
				io.Copy(io.Discard, r)
				r.Close()
			}
		}, `{"op":"tar_out","args":{"path":"/w/d","beneath":"/w"}}`},
		{func() { c.TarIn(ctx, "/w/d", strings.NewReader("")) }, `{"op":"tar_in","args":{"path":"/w/d","beneath":"/w"}}`},
		{func() { c.Sync(ctx) }, `{"op":"sync"}`},
		{func() { c.Freeze(ctx, "/") }, `{"op":"freeze","args":{"mountpoint":"/"}}`},
		{func() { c.Thaw(ctx, "/") }, `{"op":"thaw","args":{"mountpoint":"/"}}`},
		{func() { c.SetTime(ctx, time.Unix(1, 5)) }, `{"op":"set_time","args":{"time_ns":1000000005}}`},
		{func() { c.Poweroff(ctx) }, `{"op":"poweroff"}`},
		{func() { c.DialPort(ctx, 8080) }, `{"op":"dial","args":{"port":8080}}`},
		{func() {
			c.Restored(ctx, RestoredArgs{TimeNs: 7, Entropy: bytes.Repeat([]byte{0xfb}, 32), Hostname: "ws", BootID: "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10"})
		}, `{"op":"restored","args":{"time_ns":7,"entropy":"` + strings.Repeat("+/v7", 10) + `+/s=","hostname":"ws","boot_id":"5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10"}}`},
	} {
		tc.call()
		select {
		case got := <-reqs:
			if got != tc.want {
				t.Errorf("sent %s\nwant %s", got, tc.want)
			}
		default:
			t.Errorf("no request for %s", tc.want)
		}
	}
}

// An agent that does not know an operation (built before it, speaking the
// same version) gets an error that says to rebuild the environment.
func TestUnknownOperationSaysRebuild(t *testing.T) {
	c := fakeAgent(t, Version, func(req *Request, enc *Encoder) {
		enc.WriteJSON(FrameError, Error{Code: CodeInvalid, Message: `unknown operation "` + req.Op + `" (this agent speaks protocol 3)`})
	})
	err := c.Sync(context.Background())
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeUnsupported || !strings.Contains(pe.Message, "sync operation") ||
		!strings.Contains(pe.Message, "pyro env build NAME") {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeArgs(t *testing.T) {
	for in, want := range map[string]ListArgs{
		`{"op":"list"}`:             {},
		`{"op":"list","args":null}`: {},
		`{"op":"list","args":{}}`:   {},
		`{"op":"list","args":{"path":"/a","beneath":"/","limit":3,"new":[1]}}`: {PathArgs: PathArgs{Path: "/a", Beneath: "/"}, Limit: 3},
	} {
		var r Request
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeArgs(OpList, &r)
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{`{"op":"list","args":[]}`, `{"op":"list","args":{"limit":"3"}}`, `{"op":"list","args":7}`} {
		var r Request
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeArgs(OpList, &r); !IsProtocol(err) {
			t.Errorf("%s: got %v, want a protocol error", in, err)
		}
	}
}
