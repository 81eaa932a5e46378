package netstack

import "time"

// Bounds. Each one is a default for the matching Limits field (or a fixed
// bound where no caller needs another value). Together they cap what one
// workspace's network can hold in host memory: at most DefaultMaxConns
// connections, each holding two relay buffers of DefaultRelayBuffer bytes plus
// gVisor's send and receive buffers of at most TCPBufferMax bytes each, so
// about 256 * (2*64 KiB + 2*1 MiB) = 544 MiB in the worst case, and a guest
// that opens connections in a loop meets DefaultMaxConns, not the host's
// file-descriptor limit.
const (
	// DefaultMaxConns bounds live connections of one workspace: guest flows
	// of every grant plus published-port connections. A package manager
	// opens tens in parallel; 256 leaves room for that and a dev server.
	DefaultMaxConns = 256

	// DefaultMaxConnsPerGrant bounds live connections charged to one grant,
	// so a loop against one destination leaves room for the others.
	DefaultMaxConnsPerGrant = 128

	// DefaultRelayBuffer is the size of each of the two copy buffers of a
	// relayed connection (guest to host and back): large enough for a full
	// TCP window's worth of a read, small enough that 256 of them are cheap.
	DefaultRelayBuffer = 64 << 10

	// DefaultMaxDenials is how many of the last refused attempts status
	// keeps; older ones are counted but dropped.
	DefaultMaxDenials = 64

	// TCPMaxInFlight bounds handshakes the TCP forwarder handles at once
	// (SYNs whose host dial has not finished); more are dropped and the
	// guest retries, as after a lost SYN.
	TCPMaxInFlight = 64

	// TCPBufferMax caps gVisor's send and receive buffer per endpoint
	// (TCPBufferDefault is where they start).
	TCPBufferMax     = 1 << 20
	TCPBufferDefault = 256 << 10

	// TCPTimeWait is how long the stack's end of a connection the host
	// side closed first stays in TIME_WAIT. gVisor gives a SYN that hits a
	// TIME_WAIT endpoint only to a listening endpoint, never to a
	// forwarder, so while it lasts a guest reconnecting on the same
	// address and port pair is dropped, and the guest's connect hangs;
	// the default 60 s made that a minute. The link is a memory copy that
	// neither reorders nor delays segments, so TIME_WAIT's protection
	// against stray old segments is not needed for long.
	TCPTimeWait = time.Second

	// DialTimeout bounds a host dial made for a guest connection.
	DialTimeout = 10 * time.Second

	// UDPIdleTimeout ends a relayed UDP flow that carried nothing for this
	// long, freeing its slot under DefaultMaxConns.
	UDPIdleTimeout = 60 * time.Second

	// MaxUDPPayload is the relay buffer for one UDP datagram (the largest
	// an IPv4 datagram can carry).
	MaxUDPPayload = 65507

	// MaxDNSInFlight bounds DNS queries being resolved at once; further
	// queries are dropped (the guest's resolver retries).
	MaxDNSInFlight = 16

	// DNSResolveTimeout bounds one host-side lookup.
	DNSResolveTimeout = 5 * time.Second

	// MaxDNSAnswers bounds the records in one answer, which keeps every
	// response far below the 512 bytes plain DNS over UDP allows.
	MaxDNSAnswers = 8

	// DNSTTL is the TTL of answers, in seconds: short, so a revoked name
	// stops resolving soon in guests that cache.
	DNSTTL = 30

	// MaxNameCache bounds the remembered address-to-name pairs from DNS
	// answers, used to match name grants; the oldest is forgotten first.
	MaxNameCache = 4096
)

// Limits are the per-workspace bounds; a zero field takes its default.
type Limits struct {
	MaxConns         int // live connections in the workspace (DefaultMaxConns)
	MaxConnsPerGrant int // live connections per grant (DefaultMaxConnsPerGrant)
	RelayBuffer      int // bytes per copy buffer, two per connection (DefaultRelayBuffer)
	MaxDenials       int // denials kept for status (DefaultMaxDenials)
}

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxConnsPerGrant <= 0 {
		l.MaxConnsPerGrant = DefaultMaxConnsPerGrant
	}
	if l.RelayBuffer <= 0 {
		l.RelayBuffer = DefaultRelayBuffer
	}
	if l.MaxDenials <= 0 {
		l.MaxDenials = DefaultMaxDenials
	}
	return l
}
