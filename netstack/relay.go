package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// handleTCP runs, in its own goroutine, for each guest SYN no listener
// took. The host side is dialled before the guest's handshake completes, so a
// refused or unreachable destination reaches the guest as a RST, just as a
// denied one does.
func (n *Stack) handleTCP(r *tcp.ForwarderRequest) {
	// gVisor runs this in a goroutine of its own, which goes on to carry
	// the relay: Close waits for it, so no flow outlives Close.
	if !n.enter() {
		r.Complete(true)
		return
	}
	defer n.wg.Done()
	id := r.ID()
	f := n.flowFor(netipAddr(id.LocalAddress), id.LocalPort, TCP)
	fl, target, ok := n.admit(f)
	if !ok {
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, DialTimeout)
	hc, err := n.dialer.DialContext(ctx, "tcp", target)
	if err != nil && f.Name == HostServiceName {
		// A host service bound to "localhost" may listen on ::1 only.
		if c6, err6 := n.dialer.DialContext(ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(int(f.Port)))); err6 == nil {
			hc, err = c6, nil
		}
	}
	cancel()
	if err != nil {
		n.release(fl)
		n.recordDenial(Denial{Protocol: "tcp", Addr: f.Addr.String(), Port: f.Port, Name: f.Name,
			Reason: "granted, but the host could not connect: " + err.Error()})
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		hc.Close()
		n.release(fl)
		r.Complete(true)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	gc := gonet.NewTCPConn(&wq, ep)
	n.relay(fl, gc, hc)
}

// relay copies both ways between the guest side g and the host side h
// through two buffers of Limits.RelayBuffer bytes, counting bytes against the
// flow's grant, until both directions end or the flow is closed.
func (n *Stack) relay(fl *flow, g, h net.Conn) {
	defer n.release(fl)
	if !fl.attach(g) || !fl.attach(h) {
		g.Close()
		h.Close()
		return
	}
	done := make(chan struct{}, 1)
	if !n.spawn(func() {
		n.copy(h, g, fl, true)
		done <- struct{}{}
	}) {
		fl.close()
		return
	}
	n.copy(g, h, fl, false)
	<-done
	fl.close()
}

// spawn runs fn in a goroutine that Close waits for, unless the stack is
// closing: adding to the WaitGroup under mu, before Close sets closed, keeps
// Add from racing with Close's Wait.
func (n *Stack) spawn(fn func()) bool {
	if !n.enter() {
		return false
	}
	go func() {
		defer n.wg.Done()
		fn()
	}()
	return true
}

// enter counts a goroutine that Close must wait for, unless the stack is
// closing; the caller calls n.wg.Done when it ends.
func (n *Stack) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	return true
}

type closeWriter interface{ CloseWrite() error }

// copy moves src to dst; out says the guest is the source. At EOF it
// half-closes dst so the other direction can finish.
func (n *Stack) copy(dst, src net.Conn, fl *flow, out bool) {
	buf := make([]byte, n.limits.RelayBuffer)
	for {
		m, err := src.Read(buf)
		if m > 0 {
			c := fl.charge.Load()
			if out {
				c.out.Add(uint64(m))
			} else {
				c.in.Add(uint64(m))
			}
			if _, werr := dst.Write(buf[:m]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(closeWriter); ok {
					cw.CloseWrite()
					return
				}
			}
			dst.Close()
			return
		}
	}
}

// handleUDP runs in the stack's receive path for each guest datagram no
// endpoint took. A denied one is dropped and the guest gets ICMP port
// unreachable; an allowed one becomes an association relayed until it idles
// for UDPIdleTimeout.
func (n *Stack) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	f := n.flowFor(netipAddr(id.LocalAddress), id.LocalPort, UDP)
	fl, target, ok := n.admit(f)
	if !ok {
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		n.release(fl)
		return true
	}
	gc := gonet.NewUDPConn(&wq, ep)
	if !n.spawn(func() {
		ctx, cancel := context.WithTimeout(n.ctx, DialTimeout)
		hc, err := n.dialer.DialContext(ctx, "udp", target)
		cancel()
		if err != nil {
			gc.Close()
			n.release(fl)
			return
		}
		n.relayUDP(fl, gc, hc)
	}) {
		gc.Close()
		n.release(fl)
	}
	return true
}

func (n *Stack) relayUDP(fl *flow, g, h net.Conn) {
	defer n.release(fl)
	if !fl.attach(g) || !fl.attach(h) {
		g.Close()
		h.Close()
		return
	}
	done := make(chan struct{}, 1)
	if !n.spawn(func() {
		n.copyDatagrams(h, g, fl, true)
		done <- struct{}{}
	}) {
		fl.close()
		return
	}
	n.copyDatagrams(g, h, fl, false)
	fl.close()
	<-done
}

// copyDatagrams moves datagrams until UDPIdleTimeout passes with none, then
// closes the flow (which ends the other direction too).
func (n *Stack) copyDatagrams(dst, src net.Conn, fl *flow, out bool) {
	buf := make([]byte, MaxUDPPayload)
	for {
		src.SetReadDeadline(time.Now().Add(UDPIdleTimeout))
		m, err := src.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				fl.close()
			}
			return
		}
		c := fl.charge.Load()
		if out {
			c.out.Add(uint64(m))
		} else {
			c.in.Add(uint64(m))
		}
		if _, err := dst.Write(buf[:m]); err != nil {
			return
		}
	}
}
