package netstack

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// With a publish dialer (the guest agent's relay in a workspace), a
// published port's connections go through it, and are still counted.
func TestPublishedPortThroughDialer(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	echo := echoServer(t)
	dialled := make(chan uint16, 1)
	tn.n.SetPublishDialer(func(ctx context.Context, guestPort uint16) (net.Conn, error) {
		dialled <- guestPort
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo)
	})
	port, err := tn.n.Publish(8001, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "through the dialer")
	if gp := <-dialled; gp != 8001 {
		t.Fatalf("dialer got guest port %d, want 8001", gp)
	}
	if st := tn.n.Status(); len(st.Published) != 1 || st.Published[0].TotalConnections != 1 || st.Published[0].BytesIn == 0 {
		t.Fatalf("published status %+v", st.Published)
	}
	c.Close()
}

// A dialer that answers ErrDialViaStack hands the connection back to the
// stack, which dials the guest's interface address.
func TestPublishDialerFallsBackToStack(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	l, err := gonet.ListenTCP(tn.guest, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(GuestAddr), Port: 8002}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	tn.n.SetPublishDialer(func(context.Context, uint16) (net.Conn, error) {
		return nil, fmt.Errorf("old agent: %w", ErrDialViaStack)
	})
	port, err := tn.n.Publish(8002, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "via the stack")
}
