package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
)

// guestNets plays the guest's side of every workspace network a test
// boots: for each new link a second gVisor stack at netstack.GuestAddr,
// joined to the workspace stack by two link/channel endpoints and pumps,
// as netstack's own tests do. Tests reach only loopback listeners they
// started (the workspace stack's dialer is a plain net.Dialer) and resolve
// nothing.
type guestNets struct {
	t      *testing.T
	mu     sync.Mutex
	stacks []*stack.Stack
}

const guestMTU = 1500

func withGuestNets(g *guestNets) func(*Options) {
	return func(o *Options) {
		o.hooks.newLink = g.newLink
		o.hooks.netDialer = &net.Dialer{Timeout: 5 * time.Second}
		o.hooks.netResolver = noResolver{}
	}
}

// noResolver resolves nothing and touches no network.
type noResolver struct{}

func (noResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (g *guestNets) newLink() (stack.LinkEndpoint, vnet.Backend) {
	hostEP := channel.New(256, guestMTU, "")
	guestEP := channel.New(256, guestMTU, "")
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.CreateNIC(1, guestEP); err != nil {
		g.t.Fatal(err)
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(netstack.GuestAddr.As4()), PrefixLen: 24}}, stack.AddressProperties{}); err != nil {
		g.t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(netstack.GatewayAddr.As4()), NIC: 1}})
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
	g.t.Cleanup(func() {
		cancel()
		wg.Wait()
		s.Close()
		s.Wait()
	})
	g.mu.Lock()
	g.stacks = append(g.stacks, s)
	g.mu.Unlock()
	return hostEP, nil
}

// latest is the guest side of the newest boot's network.
func (g *guestNets) latest() *stack.Stack {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stacks) == 0 {
		g.t.Fatal("no workspace network was made")
	}
	return g.stacks[len(g.stacks)-1]
}

// dial connects from the guest to addr:port through the workspace network.
func guestDial(s *stack.Stack, addr netip.Addr, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(addr.As4()), Port: port}, ipv4.ProtocolNumber)
}

func newNetHarness(t *testing.T) (*harness, *guestNets) {
	g := &guestNets{t: t}
	return newHarness(t, withGuestNets(g)), g
}

// liveGrants is what the running workspace's stack holds.
func (h *harness) liveGrants(id string) []string {
	h.t.Helper()
	w, err := h.m.get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	n := w.liveNet()
	if n == nil {
		h.t.Fatalf("workspace %s has no live network", id)
	}
	var out []string
	for _, g := range n.stack.Grants() {
		out = append(out, g.String())
	}
	return out
}

func grantList(st contract.NetworkStatus) []string {
	var out []string
	for _, g := range st.Grants {
		out = append(out, g.Grant)
	}
	return out
}

// Grants given at create are in the record: the stack of every boot
// (start, reset, a new server) gets them, and status lists them also while
// the workspace is stopped.
func TestNetworkGrantsPersist(t *testing.T) {
	h, _ := newNetHarness(t)
	want := []string{"host.pyro.internal:5432", "pypi.org:443", "*.example.com:443"}
	ws := h.create(contract.CreateRequest{Network: []string{"host.pyro.internal:5432", "PyPI.org:443", "*.example.com:443", "pypi.org:443/tcp"}})
	if got := h.liveGrants(ws.ID); !slices.Equal(got, want) {
		t.Fatalf("live grants after create %v, want %v", got, want)
	}
	if ws.Network == nil || !slices.Equal(grantList(*ws.Network), want) || !ws.Network.Live {
		t.Fatalf("create's view: network %+v", ws.Network)
	}
	if _, err := h.m.Stop(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	st, err := h.m.NetworkStatus(bg, ws.ID)
	if err != nil || st.Live || !slices.Equal(grantList(st), want) {
		t.Fatalf("stopped status %+v, %v", st, err)
	}
	// A grant given while stopped is recorded and applies at the next boot.
	if st, err := h.m.NetworkGrant(bg, ws.ID, []string{"host.pyro.internal:6000"}); err != nil || st.Live {
		t.Fatalf("grant while stopped: %+v, %v", st, err)
	}
	want = append(want, "host.pyro.internal:6000")
	if _, err := h.m.Start(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	if got := h.liveGrants(ws.ID); !slices.Equal(got, want) {
		t.Fatalf("live grants after start %v", got)
	}
	if _, err := h.m.Reset(bg, ws.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := h.liveGrants(ws.ID); !slices.Equal(got, want) {
		t.Fatalf("live grants after reset %v", got)
	}
	h.m.Close()
	h.open()
	if _, err := h.m.Start(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	if got := h.liveGrants(ws.ID); !slices.Equal(got, want) {
		t.Fatalf("live grants after a new server %v", got)
	}
}

func TestNetworkBadGrants(t *testing.T) {
	h, _ := newNetHarness(t)
	_, err := h.m.Create(bg, contract.CreateRequest{TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone}, Network: []string{"pypi.org"}})
	e := wantCode(t, err, contract.CodeInvalid)
	if !strings.Contains(e.Msg, "pypi.org") || !strings.Contains(e.Hint, "NAME:PORT") || !strings.Contains(e.Hint, "all-egress") {
		t.Errorf("bad grant at create: %v (hint %q)", e, e.Hint)
	}
	if dirs := h.workspaceDirs(); len(dirs) != 0 {
		t.Errorf("a refused create left %v", dirs)
	}
	ws := h.create(contract.CreateRequest{})
	for _, bad := range [][]string{nil, {"host.pyro.internal"}, {"10.0.0.0/8:99999"}, {"*:443"}} {
		_, err := h.m.NetworkGrant(bg, ws.ID, bad)
		wantCode(t, err, contract.CodeInvalid)
	}
	_, err = h.m.NetworkRevoke(bg, ws.ID, []string{"pypi.org:443"})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Hint, "none") {
		t.Errorf("revoking a grant never given: %v (hint %q)", e, e.Hint)
	}
	if got := h.liveGrants(ws.ID); len(got) != 0 {
		t.Errorf("refused grants reached the stack: %v", got)
	}
}

// Grant and revoke change the running stack at once, and the record; a
// revoke closes the live connections that only the revoked grant allowed.
func TestNetworkGrantRevokeLive(t *testing.T) {
	h, g := newNetHarness(t)
	ws := h.create(contract.CreateRequest{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	grant := fmt.Sprintf("host.pyro.internal:%d", port)

	// No grant: the guest's connection is refused and never reaches the listener.
	if c, err := guestDial(g.latest(), netstack.GatewayAddr, port); err == nil {
		c.Close()
		t.Fatal("the guest reached a host service with no grant")
	}
	st, err := h.m.NetworkGrant(bg, ws.ID, []string{grant})
	if err != nil || !slices.Equal(grantList(st), []string{grant}) {
		t.Fatalf("grant: %+v, %v", st, err)
	}
	if got := h.liveGrants(ws.ID); !slices.Equal(got, []string{grant}) {
		t.Fatalf("live grants %v", got)
	}
	gc, err := guestDial(g.latest(), netstack.GatewayAddr, port)
	if err != nil {
		t.Fatalf("granted dial: %v", err)
	}
	defer gc.Close()
	hc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := gc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("relayed %q, %v", buf, err)
	}
	if st, _ := h.m.NetworkStatus(bg, ws.ID); st.Grants[0].Connections != 1 {
		t.Errorf("status while connected: %+v", st.Grants)
	}

	res, err := h.m.NetworkRevoke(bg, ws.ID, []string{grant})
	if err != nil || res.ClosedConns != 1 || len(res.Status.Grants) != 0 {
		t.Fatalf("revoke: %+v, %v", res, err)
	}
	if got := h.liveGrants(ws.ID); len(got) != 0 {
		t.Fatalf("live grants after revoke %v", got)
	}
	// The host end sees the relayed connection closed (EOF or a reset),
	// not a read that runs into its deadline.
	hc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(hc); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the revoked connection is still open on the host side")
	}
	if c, err := guestDial(g.latest(), netstack.GatewayAddr, port); err == nil {
		c.Close()
		t.Fatal("the guest reached the host service after the revoke")
	}
	w, _ := h.m.get(ws.ID)
	w.mu.Lock()
	rec := w.rec.clone()
	w.mu.Unlock()
	if len(rec.Network) != 0 {
		t.Errorf("record after revoke: %v", rec.Network)
	}
	// The refusals are listed with the grant that would fix them.
	st, _ = h.m.NetworkStatus(bg, ws.ID)
	if len(st.Denials) == 0 || st.Denials[len(st.Denials)-1].Fix != grant {
		t.Errorf("denials %+v", st.Denials)
	}
}

// A failing exec during which the network refused something says what and
// which grant would allow it; a passing one, or one with no refusal, does not.
func TestExecNetworkNote(t *testing.T) {
	h, g := newNetHarness(t)
	ws := h.create(contract.CreateRequest{})
	dial := false
	exit := 1
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		if dial {
			if c, err := guestDial(g.latest(), netstack.GatewayAddr, 5432); err == nil {
				c.Close()
				return proto.ExecResult{}, errors.New("the guest reached an ungranted host service")
			}
		}
		return proto.ExecResult{ExitCode: exit}, nil
	}
	r, err := h.m.Exec(bg, contract.ExecRequest{ID: ws.ID, Command: "false", TimeoutSeconds: 10})
	if err != nil || r.Network != "" {
		t.Fatalf("no refusal: note %q, %v", r.Network, err)
	}
	dial = true
	r, err = h.m.Exec(bg, contract.ExecRequest{ID: ws.ID, Command: "psql -h host.pyro.internal", TimeoutSeconds: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := `the workspace's network refused host.pyro.internal:5432 (no grant); {{network.grant}} with "host.pyro.internal:5432" would allow it`
	if r.Network != want {
		t.Fatalf("note %q\nwant %q", r.Network, want)
	}
	exit = 0
	r, err = h.m.Exec(bg, contract.ExecRequest{ID: ws.ID, Command: "psql -h host.pyro.internal || true", TimeoutSeconds: 10})
	if err != nil || r.Network != "" {
		t.Fatalf("passing exec: note %q, %v", r.Network, err)
	}
	// The refusal stays in the status, with its fix, for later.
	st, _ := h.m.Status(bg, ws.ID)
	if st.Network == nil || len(st.Network.Denials) == 0 || st.Network.Denials[0].Fix != "host.pyro.internal:5432" {
		t.Errorf("workspace status network %+v", st.Network)
	}
}

func TestNetworkNoteWording(t *testing.T) {
	for _, tc := range []struct {
		d    netstack.Denial
		want string
	}{
		{netstack.Denial{Protocol: "dns", Name: "pypi.org", Reason: "no grant covers this name; grant it as NAME:PORT or *.DOMAIN:PORT"},
			`the workspace's network refused to resolve pypi.org (no grant covers the name); {{network.grant}} with "pypi.org:443" would allow it (or the port it connects to, if not HTTPS)`},
		{netstack.Denial{Protocol: "tcp", Addr: "151.101.0.223", Port: 443, Name: "pypi.org", Reason: "no grant; pypi.org:443 or 151.101.0.223:443 would allow it"},
			`the workspace's network refused pypi.org:443 (no grant); {{network.grant}} with "pypi.org:443" would allow it`},
		{netstack.Denial{Protocol: "udp", Addr: "192.0.2.1", Port: 123, Reason: "no grant; 192.0.2.1:123/udp would allow it"},
			`the workspace's network refused 192.0.2.1:123/udp (no grant); {{network.grant}} with "192.0.2.1:123/udp" would allow it`},
		{netstack.Denial{Protocol: "tcp", Addr: "192.0.2.1", Port: 80, Reason: "limit: the workspace already has 256 connections open (MaxConns); close some"},
			`the workspace's network refused 192.0.2.1:80: limit: the workspace already has 256 connections open (MaxConns); close some`},
	} {
		if got := noteFor([]netstack.Denial{tc.d}); got != tc.want {
			t.Errorf("note\n got %q\nwant %q", got, tc.want)
		}
	}
}

// Published ports are kept in the record and published again at every
// boot on the same host port; stop and delete close their listeners; a
// host port taken meanwhile is reported, not fatal.
func TestPortPublish(t *testing.T) {
	h, _ := newNetHarness(t)
	ws := h.create(contract.CreateRequest{})
	reachable := func(port int) bool {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	p, err := h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 8080})
	if err != nil || p.HostPort == 0 || p.GuestPort != 8080 || p.Error != "" || len(p.HostAddrs) == 0 {
		t.Fatalf("publish: %+v, %v", p, err)
	}
	if !reachable(p.HostPort) {
		t.Fatal("published port not listening")
	}
	// Again: the same port; on another host port: a conflict.
	if again, err := h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 8080}); err != nil || again.HostPort != p.HostPort {
		t.Errorf("publish again: %+v, %v", again, err)
	}
	_, err = h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 8080, HostPort: p.HostPort + 1})
	wantCode(t, err, contract.CodeConflict)
	// A host port another program holds.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busyPort := busy.Addr().(*net.TCPAddr).Port
	_, err = h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 9000, HostPort: busyPort})
	if e := wantCode(t, err, contract.CodeConflict); !strings.Contains(e.Hint, "0") {
		t.Errorf("taken host port: %v", e)
	}
	busy.Close()

	if _, err := h.m.Stop(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	if reachable(p.HostPort) {
		t.Fatal("a stopped workspace's port still listens")
	}
	_, err = h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 3000})
	wantCode(t, err, contract.CodeStopped)
	if st, _ := h.m.NetworkStatus(bg, ws.ID); len(st.Published) != 1 || st.Published[0].HostPort != p.HostPort || st.Published[0].Error == "" {
		t.Errorf("stopped status %+v", st.Published)
	}
	if _, err := h.m.Start(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	if !reachable(p.HostPort) {
		t.Fatal("the port was not published again at start")
	}
	// Taken while the workspace was stopped: it boots, and says so.
	if _, err := h.m.Stop(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	squat, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p.HostPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(bg, ws.ID); err != nil {
		t.Fatalf("start with a taken port: %v", err)
	}
	st, _ := h.m.NetworkStatus(bg, ws.ID)
	if len(st.Published) != 1 || !strings.Contains(st.Published[0].Error, "taken") {
		t.Errorf("status with a taken port %+v", st.Published)
	}
	squat.Close()
	if err := h.m.PortUnpublish(bg, ws.ID, 8080); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.m.PortUnpublish(bg, ws.ID, 8080), contract.CodeInvalid)
	p, err = h.m.PortPublish(bg, contract.PublishRequest{ID: ws.ID, GuestPort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	// Reset keeps it; delete closes it.
	if _, err := h.m.Reset(bg, ws.ID, ""); err != nil {
		t.Fatal(err)
	}
	if !reachable(p.HostPort) {
		t.Fatal("the port was not published again after reset")
	}
	if err := h.m.Delete(bg, ws.ID); err != nil {
		t.Fatal(err)
	}
	if reachable(p.HostPort) {
		t.Fatal("a deleted workspace's port still listens")
	}
}
