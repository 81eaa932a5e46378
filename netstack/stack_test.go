package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// testMTU is the link MTU between the two stacks.
const testMTU = 1500

// testDialer reaches only loopback listeners the test started: every dial's
// requested address is looked up in routes (the request itself is kept, so a
// test can assert what the stack asked for) and nothing else is dialled.
type testDialer struct {
	mu     sync.Mutex
	routes map[string]string // requested address -> loopback listener
	asked  []string
}

func (d *testDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, network+" "+address)
	to, ok := d.routes[network+" "+address]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test dialer: no route for %s %s", network, address)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

func (d *testDialer) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

func (d *testDialer) route(network, asked, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes == nil {
		d.routes = make(map[string]string)
	}
	d.routes[network+" "+asked] = to
}

// fakeResolver answers from a map; everything else is not found. It never
// touches the network.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type testNet struct {
	n      *Stack
	guest  *stack.Stack
	dialer *testDialer
	hostEP *channel.Endpoint // the stack's side of the wire, for injecting raw guest packets
}

// newTestNet builds the workspace stack and a second gVisor stack playing
// the guest (GuestAddr/24, default route via GatewayAddr), joined by two
// link/channel endpoints and two pump goroutines.
func newTestNet(t testing.TB, limits Limits, res Resolver) *testNet {
	t.Helper()
	return newTestNetLink(t, limits, res, false)
}

// newTestNetLink is newTestNet with, when eth is set, both ends wrapped in
// link/ethernet as the virtio-net device will be, so the guest must ARP for
// the gateway.
func newTestNetLink(t testing.TB, limits Limits, res Resolver, eth bool) *testNet {
	t.Helper()
	hostEP := channel.New(256, testMTU, "\x02\x00\x00\x00\x00\x02")
	guestEP := channel.New(256, testMTU, "\x02\x00\x00\x00\x00\x0f")
	var hostLink, guestLink stack.LinkEndpoint = hostEP, guestEP
	if eth {
		hostLink, guestLink = ethernet.New(hostEP), ethernet.New(guestEP)
	}
	d := &testDialer{}
	if res == nil {
		res = fakeResolver{}
	}
	n, err := New(Config{Link: hostLink, Dialer: d, Resolver: res, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	g := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := g.CreateNIC(1, guestLink); err != nil {
		t.Fatal(err)
	}
	if err := g.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(GuestAddr), PrefixLen: 24}}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	g.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpAddr(GatewayAddr), NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	pump := func(from, to *channel.Endpoint) {
		defer wg.Done()
		for {
			pkt := from.ReadContext(ctx)
			if pkt == nil {
				return
			}
			buf := pkt.ToBuffer()
			proto := pkt.NetworkProtocolNumber
			pkt.DecRef()
			in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
			to.InjectInbound(proto, in)
			in.DecRef()
		}
	}
	wg.Add(2)
	go pump(hostEP, guestEP)
	go pump(guestEP, hostEP)
	t.Cleanup(func() {
		n.Close()
		g.Close()
		cancel()
		wg.Wait()
		g.Wait()
	})
	return &testNet{n: n, guest: g, dialer: d, hostEP: hostEP}
}

// echoServer starts a loopback TCP echo server and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func (tn *testNet) dial(t *testing.T, addr netip.Addr, port uint16) (*gonet.TCPConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, tn.guest, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(addr), Port: port}, ipv4.ProtocolNumber)
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// expectClosed fails unless the peer closes c (a timeout is not a close).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed by the stack: read error %v", err)
	}
}

func (tn *testNet) grant(t testing.TB, spec string) Grant {
	t.Helper()
	g := mustGrant(t, spec)
	if _, err := tn.n.Grant(g); err != nil {
		t.Fatal(err)
	}
	return g
}

func grantStatus(t *testing.T, st Status, spec string) GrantStatus {
	t.Helper()
	for _, g := range st.Grants {
		if g.Grant == spec {
			return g
		}
	}
	t.Fatalf("grant %s not in status %+v", spec, st.Grants)
	return GrantStatus{}
}

// waitFor polls cond; the stack settles counters asynchronously after a
// connection ends, and there is no event to wait on from outside.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var outside = netip.MustParseAddr("192.0.2.10") // TEST-NET-1, never dialled for real

func TestGrantedTCPConnectionCountsBytes(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.dialer.route("tcp", "192.0.2.10:80", echoServer(t))
	tn.grant(t, "192.0.2.10:80")
	c, err := tn.dial(t, outside, 80)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "hello through the stack")
	st := tn.n.Status()
	gs := grantStatus(t, st, "192.0.2.10:80")
	if gs.Connections != 1 || gs.TotalConnections != 1 || st.Connections != 1 {
		t.Fatalf("live connections: grant %+v, workspace %d", gs, st.Connections)
	}
	if gs.BytesOut != 23 || gs.BytesIn != 23 {
		t.Fatalf("bytes out/in = %d/%d, want 23/23", gs.BytesOut, gs.BytesIn)
	}
	c.Close()
	waitFor(t, "the connection to be released", func() bool { return tn.n.Status().Connections == 0 })
}

func TestDeniedTCPConnectionIsRefusedAndRecorded(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.grant(t, "192.0.2.10:443") // another port: must not open 80
	_, err := tn.dial(t, outside, 80)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial = %v, want connection refused", err)
	}
	if asked := tn.dialer.requests(); len(asked) != 0 {
		t.Fatalf("denied flow reached the host dialer: %v", asked)
	}
	st := tn.n.Status()
	if len(st.Denials) != 1 || st.DeniedTotal != 1 {
		t.Fatalf("denials = %+v", st.Denials)
	}
	d := st.Denials[0]
	if d.Protocol != "tcp" || d.Addr != "192.0.2.10" || d.Port != 80 || d.Time.IsZero() || !strings.Contains(d.Reason, "192.0.2.10:80") {
		t.Fatalf("denial = %+v", d)
	}
}

func TestDeniedUDPNeverLeaves(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	c, err := gonet.DialUDP(tn.guest, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(outside), Port: 123}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ntp?")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the UDP denial", func() bool { return tn.n.Status().DeniedTotal == 1 })
	d := tn.n.Status().Denials[0]
	if asked := tn.dialer.requests(); d.Protocol != "udp" || d.Port != 123 || len(asked) != 0 {
		t.Fatalf("denial %+v, dialer asked %v", d, asked)
	}
}

func TestGrantedUDPRelay(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(bytes.ToUpper(buf[:m]), from)
		}
	}()
	tn.dialer.route("udp", "192.0.2.10:123", pc.LocalAddr().String())
	tn.grant(t, "192.0.2.10:123/udp")
	c, err := gonet.DialUDP(tn.guest, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(outside), Port: 123}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 16)
	m, err := c.Read(buf)
	if err != nil || string(buf[:m]) != "PING" {
		t.Fatalf("read %q, %v", buf[:m], err)
	}
	gs := grantStatus(t, tn.n.Status(), "192.0.2.10:123/udp")
	if gs.BytesOut != 4 || gs.BytesIn != 4 {
		t.Fatalf("udp counters %+v", gs)
	}
}

func TestRevokeClosesLiveConnection(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.dialer.route("tcp", "192.0.2.10:80", echoServer(t))
	g := tn.grant(t, "192.0.2.10:80")
	c, err := tn.dial(t, outside, 80)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "before")
	closed, err := tn.n.Revoke(g)
	if err != nil || closed != 1 {
		t.Fatalf("Revoke = %d, %v; want 1 closed", closed, err)
	}
	expectClosed(t, c)
	if _, err := tn.dial(t, outside, 80); !refused(err) {
		t.Fatal("new connection allowed after revoke")
	}
	if _, err := tn.n.Revoke(g); !errors.Is(err, ErrNoSuchGrant) {
		t.Fatalf("second revoke = %v", err)
	}
	waitFor(t, "the connection to be released", func() bool { return tn.n.Status().Connections == 0 })
}

func TestRevokeKeepsConnectionAnotherGrantAllows(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.dialer.route("tcp", "192.0.2.10:80", echoServer(t))
	tn.grant(t, "192.0.2.0/24:80")
	g := tn.grant(t, "192.0.2.10:80")
	c, err := tn.dial(t, outside, 80)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "a")
	if closed, err := tn.n.Revoke(g); err != nil || closed != 0 {
		t.Fatalf("Revoke = %d, %v; want 0 closed", closed, err)
	}
	roundTrip(t, c, "still here")
	gs := grantStatus(t, tn.n.Status(), "192.0.2.0/24:80")
	if gs.Connections != 1 || gs.BytesOut != 10 {
		t.Fatalf("connection not moved to the remaining grant: %+v", gs)
	}
}

// dnsQuery builds a standard query for name and type.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	q := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, qtype)
	return binary.BigEndian.AppendUint16(q, dnsClassIN)
}

// parseAnswer returns the rcode and the A records of a response to q.
func parseAnswer(t *testing.T, q, r []byte) (rcode int, addrs []netip.Addr) {
	t.Helper()
	if len(r) < len(q) || r[0] != q[0] || r[1] != q[1] || r[2]&0x80 == 0 {
		t.Fatalf("bad response % x to % x", r, q)
	}
	rcode = int(r[3] & 0xf)
	an := int(binary.BigEndian.Uint16(r[6:]))
	off := len(q)
	for range an {
		if off+16 > len(r) {
			t.Fatalf("short answer % x", r)
		}
		addrs = append(addrs, netip.AddrFrom4([4]byte(r[off+12:off+16])))
		off += 16
	}
	return rcode, addrs
}

func (tn *testNet) lookup(t *testing.T, name string) (int, []netip.Addr) {
	t.Helper()
	c, err := gonet.DialUDP(tn.guest, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpAddr(GatewayAddr), Port: DNSPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnsQuery(0x1234, name, dnsTypeA)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	m, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return parseAnswer(t, q, buf[:m])
}

func TestDNSAnswersOnlyGrantedNames(t *testing.T) {
	res := fakeResolver{
		"index.example.org": {netip.MustParseAddr("192.0.2.10")},
		"other.example.org": {netip.MustParseAddr("192.0.2.11")},
	}
	tn := newTestNet(t, Limits{}, res)
	tn.dialer.route("tcp", "192.0.2.10:443", echoServer(t))
	tn.grant(t, "index.example.org:443")

	if rc, _ := tn.lookup(t, "other.example.org"); rc != dnsRcodeNX {
		t.Fatalf("ungranted name rcode %d, want NXDOMAIN", rc)
	}
	st := tn.n.Status()
	if len(st.Denials) != 1 || st.Denials[0].Protocol != "dns" || st.Denials[0].Name != "other.example.org" {
		t.Fatalf("denials %+v", st.Denials)
	}
	// Before resolving, the address alone is not granted.
	if _, err := tn.dial(t, outside, 443); !refused(err) {
		t.Fatal("name grant opened an address the guest never resolved")
	}
	rc, addrs := tn.lookup(t, "Index.Example.Org")
	if rc != dnsRcodeOK || len(addrs) != 1 || addrs[0] != outside {
		t.Fatalf("granted name: rcode %d addrs %v", rc, addrs)
	}
	c, err := tn.dial(t, outside, 443)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "GET /simple/")
	if gs := grantStatus(t, tn.n.Status(), "index.example.org:443"); gs.TotalConnections != 1 {
		t.Fatalf("name grant not charged: %+v", gs)
	}
}

func TestHostServiceByName(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	echo := echoServer(t)
	_, port, _ := net.SplitHostPort(echo)
	tn.dialer.route("tcp", echo, echo) // the stack must ask for 127.0.0.1:P itself
	rc, addrs := tn.lookup(t, HostServiceName)
	if rc != dnsRcodeOK || len(addrs) != 1 || addrs[0] != GatewayAddr {
		t.Fatalf("%s resolves to %v (rcode %d)", HostServiceName, addrs, rc)
	}
	var p uint16
	fmt.Sscan(port, &p)
	if _, err := tn.dial(t, GatewayAddr, p); !refused(err) {
		t.Fatal("host service reachable without a grant")
	}
	tn.grant(t, "all-egress") // must not open the host
	if _, err := tn.dial(t, GatewayAddr, p); !refused(err) {
		t.Fatal("all-egress opened the host's loopback")
	}
	tn.grant(t, HostServiceName+":"+port)
	c, err := tn.dial(t, GatewayAddr, p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "SELECT 1")
	tn.dialer.mu.Lock()
	last := tn.dialer.asked[len(tn.dialer.asked)-1]
	tn.dialer.mu.Unlock()
	if last != "tcp "+echo {
		t.Fatalf("host service dialled %q, want tcp %s", last, echo)
	}
}

func TestPublishedPortRoundTrip(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	l, err := gonet.ListenTCP(tn.guest, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(GuestAddr), Port: 8000}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	port, err := tn.n.Publish(8000, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := tn.n.Status()
	if len(st.Published) != 1 || st.Published[0].GuestPort != 8000 {
		t.Fatalf("published %+v", st.Published)
	}
	for _, addr := range st.Published[0].HostAddrs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "GET / HTTP/1.0 via "+addr)
		c.Close()
	}
	if err := tn.n.Unpublish(port); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(port))); err == nil {
		c.Close()
		t.Fatal("listener still open after Unpublish")
	}
}

func TestConnectionLimits(t *testing.T) {
	tn := newTestNet(t, Limits{MaxConns: 3, MaxConnsPerGrant: 2}, nil)
	echo := echoServer(t)
	tn.dialer.route("tcp", "192.0.2.10:80", echo)
	tn.dialer.route("tcp", "192.0.2.11:80", echo)
	tn.grant(t, "192.0.2.10:80")
	tn.grant(t, "192.0.2.11:80")
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range 2 {
		c, err := tn.dial(t, outside, 80)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := tn.dial(t, outside, 80); !refused(err) {
		t.Fatal("per-grant limit not enforced")
	}
	other := netip.MustParseAddr("192.0.2.11")
	c, err := tn.dial(t, other, 80)
	if err != nil {
		t.Fatalf("another grant blocked by the first grant's limit: %v", err)
	}
	open = append(open, c)
	if _, err := tn.dial(t, other, 80); !refused(err) {
		t.Fatal("workspace limit not enforced")
	}
	st := tn.n.Status()
	if st.LimitHits != 2 || st.Connections != 3 {
		t.Fatalf("limit hits %d, connections %d", st.LimitHits, st.Connections)
	}
	if r := st.Denials[len(st.Denials)-1].Reason; !strings.Contains(r, "MaxConns") {
		t.Fatalf("limit denial reason %q", r)
	}
	open[0].Close()
	waitFor(t, "a slot to free", func() bool { return tn.n.Status().Connections == 2 })
	c, err = tn.dial(t, outside, 80)
	if err != nil {
		t.Fatalf("slot not reused after close: %v", err)
	}
	open = append(open, c)
}

func TestDenialRingIsBounded(t *testing.T) {
	tn := newTestNet(t, Limits{MaxDenials: 3}, nil)
	for i := range 5 {
		if rc, _ := tn.lookup(t, fmt.Sprintf("n%d.example.org", i)); rc != dnsRcodeNX {
			t.Fatal("ungranted name answered")
		}
	}
	st := tn.n.Status()
	if st.DeniedTotal != 5 || len(st.Denials) != 3 || st.Denials[0].Name != "n2.example.org" || st.Denials[2].Name != "n4.example.org" {
		t.Fatalf("denials %d %+v", st.DeniedTotal, st.Denials)
	}
	// The same attempt back to back takes one slot.
	for range 4 {
		tn.lookup(t, "n4.example.org")
	}
	st = tn.n.Status()
	if st.DeniedTotal != 9 || len(st.Denials) != 3 || st.Denials[1].Name != "n3.example.org" || st.Denials[2].Count != 5 {
		t.Fatalf("repeated denial not folded: %d %+v", st.DeniedTotal, st.Denials)
	}
}

// guestEcho starts an echo service on the guest stack's port.
func (tn *testNet) guestEcho(t *testing.T, port uint16) {
	t.Helper()
	l, err := gonet.ListenTCP(tn.guest, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(GuestAddr), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

func TestPublishedPortConnectionLimit(t *testing.T) {
	tn := newTestNet(t, Limits{MaxConns: 1}, nil)
	tn.guestEcho(t, 8001)
	port, err := tn.n.Publish(8001, 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	c1, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	roundTrip(t, c1, "first")
	c2, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	expectClosed(t, c2)
	st := tn.n.Status()
	if st.LimitHits != 1 || st.Published[0].Connections != 1 || st.Published[0].BytesIn != 5 {
		t.Fatalf("status %+v", st)
	}
}

func TestCloseEndsListenersAndConnections(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hostClosed := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // returns when the stack closes its side
		close(hostClosed)
	}()
	tn.dialer.route("tcp", "192.0.2.10:80", l.Addr().String())
	tn.grant(t, "192.0.2.10:80")
	c, err := tn.dial(t, outside, 80)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "x")
	tn.guestEcho(t, 8002)
	port, err := tn.n.Publish(8002, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.n.Close(); err != nil {
		t.Fatal(err)
	}
	if hc, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(port))); err == nil {
		hc.Close()
		t.Fatal("published listener open after Close")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The guest may never see the FIN (the link closes with the stack, as
	// the VM stops), so check the host side: its connection was closed.
	select {
	case <-hostClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("host side of a relayed connection still open after Close")
	}
	if n := tn.n.Status().Connections; n != 0 {
		t.Fatalf("%d connections counted after Close", n)
	}
	if _, err := tn.n.Grant(mustGrant(t, "all-egress")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Grant after Close = %v", err)
	}
}

func TestAllEgressNeverReachesLoopbackOrTheWorkspaceSubnet(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.grant(t, "all-egress")
	if _, err := tn.dial(t, netip.MustParseAddr("10.0.2.77"), 80); !refused(err) {
		t.Fatal("all-egress opened an address on the workspace subnet")
	}
	for _, a := range []string{"127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255"} {
		f := Flow{Addr: netip.MustParseAddr(a), Port: 80, Protocol: TCP}
		if fl, _, ok := tn.n.admit(f); ok {
			tn.n.release(fl)
			t.Errorf("all-egress admitted %s", a)
		}
	}
	if asked := tn.dialer.requests(); len(asked) != 0 {
		t.Fatalf("host dialer asked for %v", asked)
	}
	// Multicast, broadcast and unspecified are dropped without a record.
	if st := tn.n.Status(); st.DeniedTotal != 2 || !strings.Contains(st.Denials[0].Reason, "workspace network") {
		t.Fatalf("denials %d %+v", st.DeniedTotal, st.Denials)
	}
}

func TestEthernetLinkResolvesGatewayAndConnects(t *testing.T) {
	tn := newTestNetLink(t, Limits{}, fakeResolver{"index.example.org": {outside}}, true)
	tn.dialer.route("tcp", "192.0.2.10:443", echoServer(t))
	tn.grant(t, "index.example.org:443")
	if rc, addrs := tn.lookup(t, "index.example.org"); rc != dnsRcodeOK || len(addrs) != 1 {
		t.Fatalf("lookup over ethernet: rcode %d, %v", rc, addrs)
	}
	c, err := tn.dial(t, outside, 443)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "over ethernet")
	tn.guestEcho(t, 8003)
	port, err := tn.n.Publish(8003, 0)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	roundTrip(t, hc, "published over ethernet")
}

func TestGrantedButHostRefusesIsExplained(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	tn.grant(t, "192.0.2.10:80") // the test dialer has no route: the host "refuses"
	if _, err := tn.dial(t, outside, 80); !refused(err) {
		t.Fatal("dial succeeded with nothing on the host side")
	}
	st := tn.n.Status()
	if len(st.Denials) != 1 || !strings.Contains(st.Denials[0].Reason, "granted, but the host could not connect") {
		t.Fatalf("denials %+v", st.Denials)
	}
	if gs := grantStatus(t, st, "192.0.2.10:80"); gs.Connections != 0 || st.Connections != 0 {
		t.Fatalf("failed dial left a connection counted: %+v, %d", gs, st.Connections)
	}
}

func TestPublishTakenPort(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	port, err := tn.n.Publish(8004, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.n.Publish(8005, port); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("second Publish on port %d = %v, want ErrPortInUse", port, err)
	}
	if err := tn.n.Unpublish(1); err == nil {
		t.Fatal("Unpublish of a port never published succeeded")
	}
}

func TestHostServiceOnIPv6LoopbackOnly(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback on this host:", err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	tn := newTestNet(t, Limits{}, nil)
	tn.dialer.route("tcp", l.Addr().String(), l.Addr().String()) // 127.0.0.1:P has no route: refused
	tn.grant(t, fmt.Sprintf("%s:%d", HostServiceName, port))
	c, err := tn.dial(t, GatewayAddr, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "via ::1")
}

// refused reports whether a guest dial was refused by a RST, as the stack
// refuses; a timeout would mean the SYN went unanswered.
func refused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "refused") // gVisor: "connection was refused"
}

// A connection the host side closes first leaves the stack's endpoint in
// TIME_WAIT; a guest SYN on the same four-tuple must still get through
// soon (gVisor hands such a SYN only to a listening endpoint, never to a
// forwarder, so with the default 60 s TIME_WAIT it was dropped and the
// guest's connect hung for a minute).
func TestReconnectAfterHostClosedFirst(t *testing.T) {
	tn := newTestNet(t, Limits{}, nil)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "bye")
			c.Close()
		}
	}()
	tn.dialer.route("tcp", "192.0.2.10:80", l.Addr().String())
	tn.grant(t, "192.0.2.10:80")
	local := tcpip.FullAddress{NIC: 1, Addr: tcpAddr(GuestAddr), Port: 40000}
	for i := range 2 {
		var c *gonet.TCPConn
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for {
			// The guest stack frees its port once its side has closed.
			c, err = gonet.DialTCPWithBind(ctx, tn.guest, local, tcpip.FullAddress{NIC: 1, Addr: tcpAddr(outside), Port: 80}, ipv4.ProtocolNumber)
			if err == nil || !strings.Contains(err.Error(), "port is in use") || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err != nil {
			t.Fatalf("connect %d from port %d: %v", i+1, local.Port, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
			t.Fatalf("connect %d: read %q, %v", i+1, b, err)
		}
		c.Close()
	}
}
