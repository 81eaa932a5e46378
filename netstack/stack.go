package netstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// The guest network, the same plan as QEMU's user-mode networking so guests
// and people find what they expect. The guest agent configures GuestAddr with
// GatewayAddr as default route and DNS server.
var (
	// GuestAddr is the guest's address on its one interface.
	GuestAddr = netip.MustParseAddr("10.0.2.15")
	// GatewayAddr is the stack's own address: the guest's default gateway,
	// its DNS server (UDP port 53), and what host.pyro.internal resolves to.
	GatewayAddr = netip.MustParseAddr("10.0.2.2")
	// GuestPrefix is the guest's subnet.
	GuestPrefix = netip.PrefixFrom(GatewayAddr, 24).Masked()
)

// DNSPort is where the stack answers DNS, at GatewayAddr.
const DNSPort = 53

const nicID tcpip.NICID = 1

// Dialer opens host connections for allowed guest flows. *net.Dialer
// satisfies it; tests pass one that only reaches listeners they started.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config configures one workspace's stack.
type Config struct {
	// Link is the guest-facing NIC: the virtio-net device's endpoint,
	// wrapped in link/ethernet when it carries Ethernet frames (the stack
	// answers ARP for GatewayAddr); in tests a bare link/channel carrying
	// IP packets. The stack takes it over; Close detaches and closes it.
	Link stack.LinkEndpoint
	// Dialer reaches the outside for allowed flows; nil means a net.Dialer
	// with DialTimeout.
	Dialer Dialer
	// Resolver resolves granted names; nil means net.DefaultResolver.
	Resolver Resolver
	Limits   Limits
}

// Stack is the network of one workspace: a gVisor stack acting as the
// guest's gateway and DNS server, whose forwarders dial the outside only
// when a grant allows it. Its methods are safe for concurrent use.
type Stack struct {
	s        *stack.Stack
	dialer   Dialer
	limits   Limits
	dns      dnsServer
	dnsConn  *gonet.UDPConn
	dnsSlots chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// mu guards the fields below it, and counters.live/total.
	mu        sync.Mutex
	grants    Grants
	state     map[Grant]*grantState
	names     nameCache
	denials   denialRing
	conns     int
	limitHits uint64
	published map[uint16]*published // by host port
	flows     map[*flow]struct{}    // every live relayed connection
	closed    bool

	// publishDialer is SetPublishDialer's (guarded by mu); nil: published
	// connections are dialled through the stack.
	publishDialer PublishDialer
}

type grantState struct {
	grant Grant
	added time.Time
	counters
	flows map[*flow]struct{} // guarded by Stack.mu
}

// New builds the stack on cfg.Link and starts its DNS server.
func New(cfg Config) (*Stack, error) {
	if cfg.Link == nil {
		return nil, errors.New("netstack: no link endpoint")
	}
	n := &Stack{
		dialer:    cfg.Dialer,
		limits:    cfg.Limits.withDefaults(),
		dnsSlots:  make(chan struct{}, MaxDNSInFlight),
		state:     make(map[Grant]*grantState),
		published: make(map[uint16]*published),
		flows:     make(map[*flow]struct{}),
	}
	if n.dialer == nil {
		n.dialer = &net.Dialer{Timeout: DialTimeout}
	}
	resolver := cfg.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		HandleLocal:        false,
	})
	if err := n.setup(cfg.Link); err != nil {
		n.s.Close()
		n.s.Wait()
		return nil, err
	}
	n.dns = dnsServer{
		gateway:  GatewayAddr,
		covers:   n.coversName,
		resolver: resolver,
		remember: n.rememberNames,
		deny:     n.recordDenial,
	}
	conn, err := gonet.DialUDP(n.s, &tcpip.FullAddress{NIC: nicID, Addr: tcpAddr(GatewayAddr), Port: DNSPort}, nil, ipv4.ProtocolNumber)
	if err != nil {
		n.s.Close()
		n.s.Wait()
		return nil, fmt.Errorf("netstack: DNS server: %w", err)
	}
	n.dnsConn = conn
	n.wg.Add(1)
	go n.serveDNS()
	return n, nil
}

func (n *Stack) setup(link stack.LinkEndpoint) error {
	sack := tcpip.TCPSACKEnabled(true)
	timeWait := tcpip.TCPTimeWaitTimeoutOption(TCPTimeWait)
	for _, o := range []struct {
		what string
		opt  tcpip.SettableTransportProtocolOption
	}{
		{"SACK", &sack},
		{"TIME_WAIT", &timeWait},
		{"receive buffer", &tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: TCPBufferDefault, Max: TCPBufferMax}},
		{"send buffer", &tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: TCPBufferDefault, Max: TCPBufferMax}},
	} {
		if err := n.s.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); err != nil {
			return tcpipError("set TCP "+o.what, err)
		}
	}
	if err := n.s.CreateNIC(nicID, link); err != nil {
		return tcpipError("create NIC", err)
	}
	// Promiscuous: accept packets for any destination, not only the
	// gateway. Spoofing: reply from those destinations. Together they let
	// the forwarders stand in for every outside address.
	if err := n.s.SetPromiscuousMode(nicID, true); err != nil {
		return tcpipError("promiscuous mode", err)
	}
	if err := n.s.SetSpoofing(nicID, true); err != nil {
		return tcpipError("spoofing", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(GatewayAddr), PrefixLen: GuestPrefix.Bits()},
	}
	if err := n.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return tcpipError("add gateway address", err)
	}
	n.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	tf := tcp.NewForwarder(n.s, 0, TCPMaxInFlight, n.handleTCP)
	n.s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(n.s, n.handleUDP)
	n.s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	return nil
}

// tcpipError turns a gVisor error into a Go error at the package edge.
func tcpipError(op string, err tcpip.Error) error {
	return fmt.Errorf("netstack: %s: %s", op, err)
}

func tcpAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

func netipAddr(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip.Unmap()
}

// Close stops the stack: it closes published listeners, every live
// connection and the link endpoint, and waits for its goroutines. The
// workspace manager calls it when the workspace stops or is deleted; the
// guest may not see its connections' FINs, since the link closes too.
func (n *Stack) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	pubs := make([]*published, 0, len(n.published))
	for _, p := range n.published {
		pubs = append(pubs, p)
	}
	flows := make([]*flow, 0, len(n.flows))
	for f := range n.flows {
		flows = append(flows, f)
	}
	n.mu.Unlock()
	n.cancel()
	for _, p := range pubs {
		p.closeListeners()
	}
	for _, f := range flows {
		f.close()
	}
	n.dnsConn.Close()
	n.s.Close()
	n.wg.Wait()
	n.s.Wait() // also removes the NIC, closing the link endpoint
	return nil
}

// Grant adds a grant, effective for the next connection and DNS query. It
// reports false if the same grant was already there.
func (n *Stack) Grant(g Grant) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false, ErrClosed
	}
	if !n.grants.Add(g) {
		return false, nil
	}
	n.state[g] = &grantState{grant: g, added: time.Now(), flows: make(map[*flow]struct{})}
	return true, nil
}

// ErrClosed is returned by calls on a closed Stack.
var ErrClosed = errors.New("netstack: workspace network is closed")

// ErrNoSuchGrant is returned by Revoke for a grant that was never given.
var ErrNoSuchGrant = errors.New("netstack: no such grant; revoke takes a grant as the workspace status lists it")

// Revoke removes a grant. Live connections charged to it move to another
// grant that still allows them, or are closed. It returns how many it closed.
func (n *Stack) Revoke(g Grant) (closed int, err error) {
	n.mu.Lock()
	if !n.grants.Revoke(g) {
		n.mu.Unlock()
		return 0, ErrNoSuchGrant
	}
	st := n.state[g]
	delete(n.state, g)
	var doomed []*flow
	for f := range st.flows {
		if other, ok := n.grants.Match(f.flow); ok && f.grantable {
			ost := n.state[other]
			ost.flows[f] = struct{}{}
			ost.live++
			f.charge.Store(&ost.counters)
			f.gs = ost
			continue
		}
		doomed = append(doomed, f)
	}
	st.flows = nil
	n.mu.Unlock()
	for _, f := range doomed {
		f.close()
	}
	return len(doomed), nil
}

// Grants lists the grants in force, in the order they were given.
func (n *Stack) Grants() []Grant {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.grants.List()
}

func (n *Stack) coversName(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.grants.CoversName(name)
}

func (n *Stack) rememberNames(name string, addrs []netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.names.put(a, name)
	}
}

func (n *Stack) recordDenial(d Denial) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.denyLocked(d)
}

func (n *Stack) denyLocked(d Denial) {
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	n.denials.add(d, n.limits.MaxDenials)
}

// Status returns a snapshot of grants, counters, published ports and the
// last denials.
func (n *Stack) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := Status{
		GuestAddr:   netip.PrefixFrom(GuestAddr, GuestPrefix.Bits()).String(),
		Gateway:     GatewayAddr.String(),
		Connections: n.conns,
		Limits:      n.limits,
		Denials:     n.denials.list(),
		DeniedTotal: n.denials.total,
		LimitHits:   n.limitHits,
		// The forwarder counts the SYNs it drops past TCPMaxInFlight.
		HandshakeDrops: n.s.Stats().TCP.ForwardMaxInFlightDrop.Value(),
	}
	for _, g := range n.grants.List() {
		s := n.state[g]
		st.Grants = append(st.Grants, GrantStatus{
			Grant: g.String(), Kind: g.Kind.String(), Added: s.added,
			Connections: s.live, TotalConnections: s.total,
			BytesOut: s.out.Load(), BytesIn: s.in.Load(),
		})
	}
	for _, p := range n.published {
		st.Published = append(st.Published, p.status())
	}
	slices.SortFunc(st.Published, func(a, b PublishedStatus) int { return cmp.Compare(a.HostPort, b.HostPort) })
	return st
}

// flowFor describes a guest attempt to dst:port, naming it from DNS.
func (n *Stack) flowFor(dst netip.Addr, port uint16, proto Protocol) Flow {
	f := Flow{Addr: dst, Port: port, Protocol: proto}
	if dst == GatewayAddr {
		f.Name = HostServiceName
		return f
	}
	n.mu.Lock()
	f.Name = n.names.get(dst)
	n.mu.Unlock()
	return f
}

// admit checks a guest flow against the grants and the limits. On success
// the flow is counted and registered (release it with n.release); target is
// the host address to dial.
func (n *Stack) admit(f Flow) (fl *flow, target string, ok bool) {
	proto := f.Protocol.String()
	d := Denial{Protocol: proto, Addr: f.Addr.String(), Port: f.Port, Name: f.Name}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, "", false
	}
	if why, record := unreachable(f.Addr); why != "" && f.Name != HostServiceName {
		if record {
			d.Reason = why
			n.denyLocked(d)
		}
		return nil, "", false
	}
	g, ok := n.grants.Match(f)
	if !ok {
		d.Reason = denyHint(f)
		n.denyLocked(d)
		return nil, "", false
	}
	st := n.state[g]
	if n.conns >= n.limits.MaxConns {
		n.limitHits++
		d.Reason = fmt.Sprintf("limit: the workspace already has %d connections open (MaxConns); close some", n.limits.MaxConns)
		n.denyLocked(d)
		return nil, "", false
	}
	if st.live >= n.limits.MaxConnsPerGrant {
		n.limitHits++
		d.Reason = fmt.Sprintf("limit: grant %s already has %d connections open (MaxConnsPerGrant); close some", g, n.limits.MaxConnsPerGrant)
		n.denyLocked(d)
		return nil, "", false
	}
	fl = &flow{flow: f, grantable: true, gs: st}
	fl.charge.Store(&st.counters)
	n.conns++
	st.live++
	st.total++
	st.flows[fl] = struct{}{}
	n.flows[fl] = struct{}{}
	if g.Kind == KindHostService {
		target = net.JoinHostPort("127.0.0.1", fmt.Sprint(f.Port))
	} else {
		target = net.JoinHostPort(f.Addr.String(), fmt.Sprint(f.Port))
	}
	return fl, target, true
}

// unreachable says why no grant, not even all-egress, may open a flow to a:
// the host's own loopback is reached only as a host service, the rest of the
// guest's subnet is not a place, and multicast, broadcast and unspecified
// addresses are not one destination. record is false for the last group:
// guests send those (mDNS, DHCP) on their own, and recording them would push
// the denials a user needs out of the ring.
func unreachable(a netip.Addr) (why string, record bool) {
	switch {
	case a.IsLoopback():
		return "loopback is the guest's own; reach the host's as " + HostServiceName + ":PORT with a host-service grant", true
	case a == netip.AddrFrom4([4]byte{10, 0, 2, 255}) || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "not a unicast destination", false
	case GuestPrefix.Contains(a):
		return "no other host lives on the workspace network " + GuestPrefix.String(), true
	}
	return "", true
}

func denyHint(f Flow) string {
	p := ""
	if f.Protocol == UDP {
		p = "/udp"
	}
	switch {
	case f.Name == HostServiceName:
		return fmt.Sprintf("no grant; the host service needs %s:%d", HostServiceName, f.Port)
	case f.Name != "":
		return fmt.Sprintf("no grant; %s:%d%s or %s:%d%s would allow it", f.Name, f.Port, p, f.Addr, f.Port, p)
	}
	return fmt.Sprintf("no grant; %s:%d%s would allow it (or a name grant, if the guest resolves the name through the workspace DNS)", f.Addr, f.Port, p)
}

// release undoes admit once the flow's connections are gone.
func (n *Stack) release(fl *flow) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.flows[fl]; !ok {
		return
	}
	delete(n.flows, fl)
	n.conns--
	if fl.gs != nil && fl.gs.flows != nil { // flows is nil once revoked
		delete(fl.gs.flows, fl)
		fl.gs.live--
	}
	if fl.pub != nil {
		fl.pub.live--
	}
}

// flow is one relayed connection (or UDP association) and what it is
// charged to.
type flow struct {
	flow      Flow
	grantable bool                     // false for published-port connections
	charge    atomic.Pointer[counters] // where bytes are counted
	gs        *grantState              // guarded by Stack.mu; nil for published ports
	pub       *published               // the published port, for its connections

	mu     sync.Mutex // guards closed and conns
	closed bool
	conns  []net.Conn
}

// attach adds a connection that close must close; if the flow is already
// closed it closes c at once and reports false.
func (f *flow) attach(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns = append(f.conns, c)
	return true
}

func (f *flow) close() {
	f.mu.Lock()
	f.closed = true
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// nameCache remembers which name the guest resolved to an address, for
// name grants; it holds at most MaxNameCache pairs, dropping the oldest.
type nameCache struct {
	m     map[netip.Addr]string
	order []netip.Addr // ring of insertion order
	next  int
}

func (c *nameCache) put(a netip.Addr, name string) {
	if c.m == nil {
		c.m = make(map[netip.Addr]string)
	}
	if _, ok := c.m[a]; ok {
		c.m[a] = name
		return
	}
	if len(c.order) < MaxNameCache {
		c.order = append(c.order, a)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = a
		c.next = (c.next + 1) % MaxNameCache
	}
	c.m[a] = name
}

func (c *nameCache) get(a netip.Addr) string { return c.m[a] }

// serveDNS answers queries to GatewayAddr:53, at most MaxDNSInFlight at once.
func (n *Stack) serveDNS() {
	defer n.wg.Done()
	buf := make([]byte, dnsMaxQuery+1)
	for {
		m, from, err := n.dnsConn.ReadFrom(buf)
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			continue
		}
		if m > dnsMaxQuery {
			continue
		}
		select {
		case n.dnsSlots <- struct{}{}:
		default:
			continue // full: drop, the guest retries
		}
		q := append([]byte(nil), buf[:m]...)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-n.dnsSlots }()
			if resp := n.dns.answer(n.ctx, q); resp != nil {
				n.dnsConn.WriteTo(resp, from)
			}
		}()
	}
}
