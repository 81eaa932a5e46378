package netstack

import (
	"sync/atomic"
	"time"
)

// Status is a snapshot of one workspace's network, for the workspace's status
// (grants, counters, published ports, refusals).
type Status struct {
	GuestAddr   string // the guest's address and prefix, e.g. 10.0.2.15/24
	Gateway     string // the gateway, DNS server and host.pyro.internal
	Connections int    // live connections now
	Limits      Limits
	Grants      []GrantStatus
	Published   []PublishedStatus
	// Denials are the last refused attempts, oldest first, at most
	// Limits.MaxDenials; DeniedTotal counts all of them.
	Denials     []Denial
	DeniedTotal uint64
	// LimitHits counts attempts refused because a bound was reached.
	LimitHits uint64
	// HandshakeDrops counts guest SYNs dropped because TCPMaxInFlight
	// handshakes were already being dialled (the guest retransmits them).
	HandshakeDrops uint64
}

// GrantStatus is one grant and what went through it.
type GrantStatus struct {
	Grant            string // canonical spelling, as Revoke and ParseGrant take it
	Kind             string
	Added            time.Time
	Connections      int    // live now
	TotalConnections uint64 // since granted
	BytesOut         uint64 // guest to outside
	BytesIn          uint64 // outside to guest
}

// PublishedStatus is one published port.
type PublishedStatus struct {
	GuestPort        uint16
	HostPort         uint16
	HostAddrs        []string // e.g. 127.0.0.1:8080 and [::1]:8080
	Connections      int
	TotalConnections uint64
	BytesOut         uint64 // guest to host client
	BytesIn          uint64 // host client to guest
}

// Denial is one refused attempt.
type Denial struct {
	Time     time.Time
	Protocol string // tcp, udp or dns
	Addr     string // destination address ("" for a DNS query)
	Port     uint16
	Name     string // the name the guest resolved or asked for, if any
	Reason   string // why, and what would fix it
	Count    int    // attempts folded into this one (the same, back to back); Time is the last
}

// counters are what a grant or a published port carries; the byte counts
// are updated by relays without the stack's lock.
type counters struct {
	live  int    // guarded by Stack.mu
	total uint64 // guarded by Stack.mu
	out   atomic.Uint64
	in    atomic.Uint64
}

// denialRing keeps the last cap denials; a denial equal to the newest one
// but for its time is folded into it, so a guest retrying in a loop takes one
// slot, not all of them.
type denialRing struct {
	buf   []Denial
	next  int
	total uint64
}

func (r *denialRing) add(d Denial, limit int) {
	r.total++
	d.Count = 1
	if len(r.buf) > 0 {
		last := &r.buf[(r.next+len(r.buf)-1)%len(r.buf)]
		if last.Protocol == d.Protocol && last.Addr == d.Addr && last.Port == d.Port && last.Name == d.Name && last.Reason == d.Reason {
			last.Count++
			last.Time = d.Time
			return
		}
	}
	if len(r.buf) < limit {
		r.buf = append(r.buf, d)
		return
	}
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
}

func (r *denialRing) list() []Denial {
	out := make([]Denial, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
