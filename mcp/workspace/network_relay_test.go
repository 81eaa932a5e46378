package workspace

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// DialPort is the fake agent's relay to the guest's loopback.
func (g *fakeGuest) DialPort(ctx context.Context, port uint16) (net.Conn, error) {
	g.vm.w.mu.Lock()
	d := g.vm.w.dialPort
	g.vm.w.mu.Unlock()
	if d == nil {
		return nil, &proto.Error{Code: proto.CodeUnsupported, Message: "rebuild the environment"}
	}
	return d(ctx, port)
}

// A published port's connections go through the guest agent's relay
// (which reaches services bound to the guest's loopback), and the
// workspace's network still counts them.
func TestPortPublishRelaysThroughAgent(t *testing.T) {
	h, _ := newNetHarness(t)
	// The guest's service, bound to "its loopback": here a host listener
	// the fake agent's DialPort connects to.
	svc, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	dialled := make(chan uint16, 4)
	h.w.mu.Lock()
	h.w.dialPort = func(ctx context.Context, port uint16) (net.Conn, error) {
		dialled <- port
		var d net.Dialer
		return d.DialContext(ctx, "tcp4", svc.Addr().String())
	}
	h.w.mu.Unlock()
	ws := h.create(contract.CreateRequest{})
	p, err := h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 5173})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", p.HostPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo through the relay: %q, %v", b, err)
	}
	if port := <-dialled; port != 5173 {
		t.Fatalf("agent dialled guest port %d, want 5173", port)
	}
	st, err := h.m.NetworkStatus(bg, ws.ID)
	if err != nil || len(st.Published) != 1 || st.Published[0].Connections != 1 {
		t.Fatalf("status while connected: %+v, %v", st.Published, err)
	}
}
