package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// pipeClient serves every stream of the returned client with srv over
// net.Pipe, as the guest would over vsock.
func pipeClient(srv *Server) *proto.Client {
	return &proto.Client{Dial: func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go srv.ServeConn(b)
		return a, nil
	}}
}

// listen starts a loopback listener whose connections go to serve.
func listen(t *testing.T, network, addr string, serve func(net.Conn)) uint16 {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// echoAll reads until EOF, then answers "got:" and what it read, and closes.
func echoAll(c net.Conn) {
	defer c.Close()
	b, _ := io.ReadAll(c)
	c.Write(append([]byte("got:"), b...))
}

// A dial carries bytes both ways, and a half-close each way: the service
// sees EOF after CloseWrite and still answers, and its close is the
// host's EOF.
func TestDialBothWaysWithHalfClose(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			port := listen(t, tc.network, tc.addr, echoAll)
			c, err := pipeClient(&Server{}).DialPort(ctxT(t), port)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			big := strings.Repeat("x", 3*proto.ChunkSize+7) // several frames
			if _, err := c.Write([]byte(big)); err != nil {
				t.Fatal(err)
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "got:"+big {
				t.Fatalf("answer: %d bytes, %v; want %d bytes", len(got), err, len(big)+4)
			}
		})
	}
}

// Closing the host's connection closes the agent's connection to the
// service.
func TestDialClosePropagates(t *testing.T) {
	seen := make(chan error, 1)
	port := listen(t, "tcp4", "127.0.0.1:0", func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("hi"))
		_, err := io.ReadAll(c) // returns when the agent closes its side
		seen <- err
	})
	c, err := pipeClient(&Server{}).DialPort(ctxT(t), port)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	c.Close()
	if err := <-seen; err != nil {
		t.Logf("service saw %v", err) // EOF or reset: either way it ended
	}
}

func TestDialNothingListening(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	_, err = pipeClient(&Server{}).DialPort(ctxT(t), port)
	if errCode(err) != "ECONNREFUSED" || !strings.Contains(err.Error(), "nothing accepts connections") {
		t.Fatalf("dial to a closed port: %v", err)
	}
}

// At most MaxDials dials are relayed at once; the next gets CodeBusy, and
// exec still works meanwhile.
func TestDialCap(t *testing.T) {
	port := listen(t, "tcp4", "127.0.0.1:0", echoAll)
	srv := &Server{MaxDials: 2}
	cl := pipeClient(srv)
	for range 2 {
		c, err := cl.DialPort(ctxT(t), port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	_, err := cl.DialPort(ctxT(t), port)
	if errCode(err) != proto.CodeBusy {
		t.Fatalf("third dial with MaxDials 2: %v", err)
	}
	if _, err := cl.Ping(ctxT(t)); err != nil {
		t.Fatalf("ping while dials are at the cap: %v", err)
	}
}

func TestDialPortZero(t *testing.T) {
	_, err := pipeClient(&Server{}).DialPort(ctxT(t), 0)
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != proto.CodeInvalid {
		t.Fatalf("dial port 0: %v", err)
	}
}

// A dial the host abandons (it closes the stream, after its End or
// without one) gives its slot back, so the cap is not used up for good.
func TestDialSlotReleased(t *testing.T) {
	quiet := make(chan struct{}) // the service never answers nor closes
	t.Cleanup(func() { close(quiet) })
	port := listen(t, "tcp4", "127.0.0.1:0", func(c net.Conn) { <-quiet; c.Close() })
	ended := make(chan struct{}, 4)
	srv := &Server{MaxDials: 1, dialEnded: func() { ended <- struct{}{} }}
	cl := pipeClient(srv)
	for _, halfClose := range []bool{false, true} {
		c, err := cl.DialPort(ctxT(t), port)
		if err != nil {
			t.Fatalf("dial (half-close %v): %v", halfClose, err)
		}
		if _, err := cl.DialPort(ctxT(t), port); errCode(err) != proto.CodeBusy {
			t.Fatalf("second dial with MaxDials 1: %v", err)
		}
		if halfClose {
			c.(interface{ CloseWrite() error }).CloseWrite()
		}
		c.Close()
		<-ended
	}
}
