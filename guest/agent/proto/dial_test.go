package proto

import (
	"context"
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
				Message: `unknown operation "` + req.Op + `" (this agent speaks protocol 2)`})
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
