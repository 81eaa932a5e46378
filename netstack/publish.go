package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// published is one published port: host listeners whose connections are
// relayed into the guest through the stack.
type published struct {
	guestPort uint16
	hostPort  uint16
	lns       []net.Listener
	counters
	once sync.Once
}

func (p *published) closeListeners() {
	p.once.Do(func() {
		for _, l := range p.lns {
			l.Close()
		}
	})
}

func (p *published) status() PublishedStatus {
	s := PublishedStatus{GuestPort: p.guestPort, HostPort: p.hostPort, Connections: p.live, TotalConnections: p.total,
		BytesOut: p.out.Load(), BytesIn: p.in.Load()}
	for _, l := range p.lns {
		s.HostAddrs = append(s.HostAddrs, l.Addr().String())
	}
	return s
}

// ErrPortInUse is returned by Publish when the host port is taken.
var ErrPortInUse = errors.New("netstack: host port already in use; pick another or pass 0 to let pyro choose")

// Publish makes the guest's TCP port guestPort reachable on the host at
// 127.0.0.1:hostPort and, where the host has IPv6 loopback, [::1]:hostPort.
// hostPort 0 picks a free port. Each host connection is dialled to
// GuestAddr:guestPort through the stack, so the guest service must listen on
// 0.0.0.0 or its interface address, unless SetPublishDialer gave a dialer
// (the guest agent's relay to the guest's loopback). It returns the host
// port.
func (n *Stack) Publish(guestPort, hostPort uint16) (uint16, error) {
	if guestPort == 0 {
		return 0, errors.New("netstack: publish needs a guest port from 1 to 65535")
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return 0, ErrClosed
	}
	if _, ok := n.published[hostPort]; ok && hostPort != 0 {
		n.mu.Unlock()
		return 0, ErrPortInUse
	}
	n.mu.Unlock()
	l4, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hostPort))))
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrPortInUse, err)
	}
	port := uint16(l4.Addr().(*net.TCPAddr).Port)
	p := &published{guestPort: guestPort, hostPort: port, lns: []net.Listener{l4}}
	// IPv6 loopback on the same port, when the host has one and it is free.
	if l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(int(port)))); err == nil {
		p.lns = append(p.lns, l6)
	}
	n.mu.Lock()
	if n.closed || n.published[port] != nil {
		n.mu.Unlock()
		p.closeListeners()
		if n.closed {
			return 0, ErrClosed
		}
		return 0, ErrPortInUse
	}
	n.published[port] = p
	for _, l := range p.lns {
		n.wg.Add(1)
		go n.acceptPublished(p, l)
	}
	n.mu.Unlock()
	return port, nil
}

// Unpublish closes the listeners of hostPort; connections already relayed
// keep running until either side closes them.
func (n *Stack) Unpublish(hostPort uint16) error {
	n.mu.Lock()
	p, ok := n.published[hostPort]
	delete(n.published, hostPort)
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("netstack: host port %d is not published", hostPort)
	}
	p.closeListeners()
	return nil
}

func (n *Stack) acceptPublished(p *published, l net.Listener) {
	defer n.wg.Done()
	for {
		hc, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		fl, ok := n.admitPublished(p)
		if !ok {
			hc.Close()
			continue
		}
		if !n.spawn(func() {
			ctx, cancel := context.WithTimeout(n.ctx, DialTimeout)
			gc, err := n.dialPublished(ctx, p.guestPort)
			cancel()
			if err != nil {
				hc.Close()
				n.release(fl)
				return
			}
			n.relay(fl, gc, hc)
		}) {
			hc.Close()
			n.release(fl)
		}
	}
}

// PublishDialer connects a published port's host connection to the guest
// service on guestPort, as the guest agent's dial does (to the guest's
// loopback, so services bound to 127.0.0.1 or ::1 are reached too).
// An error that wraps ErrDialViaStack makes the stack dial that connection
// itself, to the guest's interface address (an agent too old to relay).
type PublishDialer func(ctx context.Context, guestPort uint16) (net.Conn, error)

// ErrDialViaStack, wrapped in a PublishDialer's error, asks the stack to
// dial the connection itself.
var ErrDialViaStack = errors.New("netstack: dial through the stack")

// SetPublishDialer makes every published port's new connections go
// through d instead of the stack (nil: back to the stack). The stack
// still counts them, and its limits still apply.
func (n *Stack) SetPublishDialer(d PublishDialer) {
	n.mu.Lock()
	n.publishDialer = d
	n.mu.Unlock()
}

// dialPublished connects one published connection to the guest: through
// the publish dialer if one is set, else to GuestAddr through the stack.
func (n *Stack) dialPublished(ctx context.Context, guestPort uint16) (net.Conn, error) {
	n.mu.Lock()
	d := n.publishDialer
	n.mu.Unlock()
	if d != nil {
		c, err := d(ctx, guestPort)
		if !errors.Is(err, ErrDialViaStack) {
			return c, err
		}
	}
	return gonet.DialContextTCP(ctx, n.s,
		tcpip.FullAddress{NIC: nicID, Addr: tcpAddr(GuestAddr), Port: guestPort}, ipv4.ProtocolNumber)
}

func (n *Stack) admitPublished(p *published) (*flow, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, false
	}
	if n.conns >= n.limits.MaxConns {
		n.limitHits++
		n.denyLocked(Denial{Protocol: "tcp", Addr: GuestAddr.String(), Port: p.guestPort,
			Reason: fmt.Sprintf("limit: published port refused a host connection, the workspace already has %d open (MaxConns)", n.limits.MaxConns)})
		return nil, false
	}
	fl := &flow{flow: Flow{Addr: GuestAddr, Port: p.guestPort, Protocol: TCP}, pub: p}
	fl.charge.Store(&p.counters)
	n.conns++
	p.live++
	p.total++
	n.flows[fl] = struct{}{}
	return fl, true
}
