package workspace

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
	"github.com/pyro-mcp/pyro/netstack/dnstest"
)

// docAddr is what the test DNS server answers for the granted name: a
// documentation address (TEST-NET-1) that mapDialer sends to the test's
// own loopback server, so nothing is ever dialled outside.
var docAddr = netip.MustParseAddr("192.0.2.10")

// mapDialer dials the loopback address a test mapped a destination to and
// refuses every other destination.
type mapDialer struct{ to map[string]string }

func (d mapDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	to, ok := d.to[address]
	if !ok {
		return nil, fmt.Errorf("test dialer: %s %s is not a test listener", network, address)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

// guestLookup asks the workspace's DNS (the gateway, port 53) for name's
// A records from the guest stack; it returns the rcode and addresses.
func guestLookup(t *testing.T, s *stack.Stack, name string) (int, []netip.Addr) {
	t.Helper()
	c, err := gonet.DialUDP(s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(netstack.GatewayAddr.As4()), Port: netstack.DNSPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := []byte{0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0, 0, 1, 0, 1) // root, type A, class IN
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := buf[:n]
	if n < len(q) || r[0] != 0x42 || r[1] != 0x42 {
		t.Fatalf("bad DNS response % x", r)
	}
	var addrs []netip.Addr
	off := len(q)
	for i := 0; i < int(binary.BigEndian.Uint16(r[6:])); i++ {
		// pointer name (2), type, class, TTL, rdlength, then the address
		if off+16 > n || binary.BigEndian.Uint16(r[off+10:]) != 4 {
			t.Fatalf("bad answer in % x", r)
		}
		addrs = append(addrs, netip.AddrFrom4([4]byte(r[off+12:off+16])))
		off += 16
	}
	return int(r[3] & 0xf), addrs
}

// TestNameGrantUsesConfiguredResolver: with Options.Resolver pointed at a
// DNS server the test started, a workspace granted pkg.pyro-test.internal
// resolves that name through it and fetches from the test's HTTP server,
// while another name gets NXDOMAIN and never reaches the server.
func TestNameGrantUsesConfiguredResolver(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "index") }))
	defer web.Close()
	_, port, _ := net.SplitHostPort(web.Listener.Addr().String())
	srv := dnstest.Start(t, map[string]netip.Addr{"pkg.pyro-test.internal": docAddr})
	res, err := netstack.NewResolver(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &guestNets{t: t}
	h := newHarness(t, withGuestNets(g), func(o *Options) {
		o.hooks.netResolver = nil // the Options field, as pyro mcp serve sets it
		o.Resolver = res
		o.hooks.netDialer = mapDialer{to: map[string]string{net.JoinHostPort(docAddr.String(), port): web.Listener.Addr().String()}}
	})
	ws := h.create(contract.CreateRequest{Network: []string{"pkg.pyro-test.internal:" + port}})
	guest := g.latest()

	if rc, _ := guestLookup(t, guest, "other.pyro-test.internal"); rc != 3 {
		t.Fatalf("ungranted name: rcode %d, want NXDOMAIN", rc)
	}
	rc, addrs := guestLookup(t, guest, "pkg.pyro-test.internal")
	if rc != 0 || !slices.Equal(addrs, []netip.Addr{docAddr}) {
		t.Fatalf("granted name: rcode %d, addrs %v", rc, addrs)
	}
	if asked := srv.Asked(); !slices.Contains(asked, "pkg.pyro-test.internal") || slices.Contains(asked, "other.pyro-test.internal") {
		t.Fatalf("test DNS server asked %q", asked)
	}
	var p uint16
	fmt.Sscan(port, &p)
	c, err := guestDial(guest, docAddr, p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: pkg.pyro-test.internal\r\n\r\n")
	body, _ := io.ReadAll(c)
	if !strings.HasSuffix(string(body), "index") {
		t.Fatalf("response %q", body)
	}
	st, err := h.m.NetworkStatus(bg, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Grants) != 1 || st.Grants[0].TotalConnections != 1 {
		t.Fatalf("the name grant did not carry the connection: %+v", st.Grants)
	}
}
