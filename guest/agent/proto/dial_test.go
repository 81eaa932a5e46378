package proto

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// An agent built before dial answers it as an unknown operation; the host
// then says to rebuild the environment.
func TestDialOlderAgent(t *testing.T) {
	c := &Client{Dial: func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			dec := NewDecoder(b)
			if _, err := ReadHello(dec.Reader()); err != nil {
				return
			}
			var req Request
			if dec.ReadJSON(FrameRequest, &req) != nil {
				return
			}
			b.Write(Hello(Version))
			NewEncoder(b).WriteJSON(FrameError, &Error{Code: CodeInvalid,
				Message: `unknown operation "` + req.Op + `" (this agent speaks protocol 3)`})
		}()
		return a, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.DialPort(ctx, 8080)
	pe, ok := err.(*Error)
	if !ok || pe.Code != CodeUnsupported || !strings.Contains(pe.Message, "rebuild the environment") {
		t.Fatalf("dial to an older agent: %v", err)
	}
}

// dialAgent answers every stream's request with the given frames.
func dialAgent(frames ...[]byte) *Client {
	return &Client{Dial: func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			dec := NewDecoder(b)
			if _, err := ReadHello(dec.Reader()); err != nil {
				return
			}
			var req Request
			if dec.ReadJSON(FrameRequest, &req) != nil {
				return
			}
			out := Hello(Version)
			for _, f := range frames {
				out = append(out, f...)
			}
			b.Write(out)
			io.Copy(io.Discard, b)
		}()
		return a, nil
	}}
}

// A guest that breaks the dial's framing gets a protocol error, before
// Open from DialPort and after it from Read.
func TestDialHostileAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dialAgent(AppendFrame(nil, FrameData, []byte("early"))).DialPort(ctx, 80); !IsProtocol(err) {
		t.Errorf("Data before Open: %v", err)
	}
	c, err := dialAgent(AppendFrame(nil, FrameOpen, nil), AppendFrame(nil, FrameData, []byte("ok")),
		AppendFrame(nil, FrameEntries, []byte("[]"))).DialPort(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if string(got) != "ok" || !IsProtocol(err) {
		t.Errorf("Entries in a dial: read %q, %v", got, err)
	}
	// The guest's End is the connection's EOF.
	c2, err := dialAgent(AppendFrame(nil, FrameOpen, nil), AppendFrame(nil, FrameData, []byte("bye")),
		AppendFrame(nil, FrameEnd, nil)).DialPort(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := io.ReadAll(c2); string(got) != "bye" || err != nil {
		t.Errorf("End: read %q, %v", got, err)
	}
}
