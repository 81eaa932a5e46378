package netstack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

var testGuestMAC = [6]byte{0x02, 0x50, 0x79, 0x52, 0x4f, 0x01}

// fakeNIC plays the virtio-net device in front of a Link: Deliver hands the
// frame to the guest stack's channel endpoint, as the real device hands it
// to the guest's driver.
type fakeNIC struct {
	mtu       int
	offl      vnet.GuestOffloads
	to        *channel.Endpoint
	delivered atomic.Uint64
	dataValid atomic.Uint64
}

func (f *fakeNIC) MTU() int { return f.mtu }

func (f *fakeNIC) GuestOffloads() (vnet.GuestOffloads, bool) { return f.offl, true }

func (f *fakeNIC) Deliver(h vnet.Header, frame [][]byte) error {
	f.delivered.Add(1)
	if h.DataValid {
		f.dataValid.Add(1)
	}
	if h.NeedsCsum || h.GSO != vnet.GSONone {
		return vnet.ErrOffload // the Link asks for none of these
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(bytes.Join(frame, nil))})
	f.to.InjectInbound(0, pkt)
	pkt.DecRef()
	return nil
}

// newLinkTestNet is newTestNet over a Link: the guest stack's frames go in
// through Link.Transmit as the device's worker would send them, flagged as
// carrying partial checksums (the guest stack leaves its transport checksums
// to the "hardware"), and the stack's frames come out through fakeNIC.
func newLinkTestNet(t testing.TB, mtu int) (*testNet, *Link, *fakeNIC) {
	t.Helper()
	guestEP := channel.New(256, uint32(mtu+header.EthernetMinimumSize), tcpip.LinkAddress(testGuestMAC[:]))
	guestEP.LinkEPCapabilities |= stack.CapabilityTXChecksumOffload
	nic := &fakeNIC{mtu: mtu, offl: vnet.GuestOffloads{Checksum: true}, to: guestEP}
	link := NewLink()
	link.raw.setDevice(nic)
	d := &testDialer{}
	n, err := New(Config{Link: link.Endpoint(), Dialer: d, Resolver: fakeResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	g := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := g.CreateNIC(1, ethernet.New(guestEP)); err != nil {
		t.Fatal(err)
	}
	if err := g.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpAddr(GuestAddr), PrefixLen: 24}}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	g.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpAddr(GatewayAddr), NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			pkt := guestEP.ReadContext(ctx)
			if pkt == nil {
				return
			}
			h := vnet.Header{NeedsCsum: pkt.NetworkProtocolNumber == ipv4.ProtocolNumber}
			link.Transmit(h, pkt.AsSlices())
			pkt.DecRef()
		}
	}()
	t.Cleanup(func() {
		n.Close()
		g.Close()
		cancel()
		wg.Wait()
		g.Wait()
	})
	return &testNet{n: n, guest: g, dialer: d}, link, nic
}

// TestLinkCarriesGuestTrafficBothWays: ARP for the gateway, a TCP
// connection to a granted loopback listener with a large transfer, and a
// published port, all through the Link, with the guest's checksums left
// partial.
func TestLinkCarriesGuestTrafficBothWays(t *testing.T) {
	const mtu = 9000
	tn, link, nic := newLinkTestNet(t, mtu)
	if got := link.Endpoint().MTU(); got != mtu {
		t.Fatalf("stack's link MTU = %d, want the device's %d", got, mtu)
	}
	echo := echoServer(t)
	_, port, _ := net.SplitHostPort(echo)
	tn.dialer.route("tcp", echo, echo)
	tn.grant(t, HostServiceName+":"+port)
	var p uint16
	fmt.Sscan(port, &p)
	c, err := tn.dial(t, GatewayAddr, p)
	if err != nil {
		t.Fatalf("guest dial of a granted host service through the Link: %v", err)
	}
	defer c.Close()
	roundTrip(t, c, "through the link")
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB, many full frames
	go c.Write([]byte(big))
	got := make([]byte, len(big))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != big {
		t.Fatal("1 MiB echo through the link came back different")
	}

	tn.guestEcho(t, 8080)
	hp, err := tn.n.Publish(8080, 0)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", fmt.Sprint(hp)))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	roundTrip(t, hc, "published through the link")

	if nic.dataValid.Load() == 0 || nic.dataValid.Load() != nic.delivered.Load() {
		t.Errorf("%d of %d frames to a GUEST_CSUM guest marked DataValid; want all", nic.dataValid.Load(), nic.delivered.Load())
	}
	if s := link.Stats(); s.ToGuestDropped != 0 {
		t.Errorf("link dropped %d packets to the guest", s.ToGuestDropped)
	}
}

// TestLinkWithoutDeviceDrops: before SetDevice the stack's packets are
// dropped and counted, not delivered anywhere, and guest frames before the
// stack attaches go nowhere.
func TestLinkWithoutDeviceDrops(t *testing.T) {
	link := NewLink()
	if err := link.Transmit(vnet.Header{}, [][]byte{make([]byte, 60)}); err != nil {
		t.Fatal(err)
	}
	if s := link.Stats(); s.FromGuestDropped != 1 {
		t.Fatalf("frame before the stack attached: stats %+v", s)
	}
	n, err := New(Config{Link: link.Endpoint(), Dialer: &testDialer{}, Resolver: fakeResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// A broadcast ARP request from the guest for the gateway: the stack
	// answers, and with no device the answer is dropped.
	frame := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(testGuestMAC[:]), DstAddr: header.EthernetBroadcastAddress, Type: arp.ProtocolNumber})
	a := header.ARP(frame[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), testGuestMAC[:])
	ga, gw := GuestAddr.As4(), GatewayAddr.As4()
	copy(a.ProtocolAddressSender(), ga[:])
	copy(a.ProtocolAddressTarget(), gw[:])
	if err := link.Transmit(vnet.Header{}, [][]byte{frame[:20], frame[20:]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ARP reply to be dropped", func() bool { return link.Stats().ToGuestDropped == 1 })
}

// TestGuestNetworkPlanAgrees: the guest agent, which must not link gVisor,
// configures the addresses the host-guest contract (proto) declares.
func TestGuestNetworkPlanAgrees(t *testing.T) {
	if proto.GuestAddr != GuestAddr || proto.GatewayAddr != GatewayAddr || proto.GuestPrefixLen != GuestPrefix.Bits() {
		t.Fatalf("agent configures %s/%d via %s; netstack serves %s in %s via %s",
			proto.GuestAddr, proto.GuestPrefixLen, proto.GatewayAddr, GuestAddr, GuestPrefix, GatewayAddr)
	}
}

// ethFrame puts an IPv4 packet (or, with typ ARP, an ARP body) in an
// Ethernet frame from the guest to the gateway.
func ethFrame(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(testGuestMAC[:]), DstAddr: gatewayMAC, Type: typ})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

// FuzzLinkFrame sends arbitrary Ethernet frames through Link.Transmit, cut
// into two pieces of guest memory at a fuzzed point and flagged with a
// fuzzed header. The Link makes the stack trust the guest's checksums, so
// malformed packets reach its transport layer more easily than over a
// verifying link: whatever arrives, nothing panics and the host dialer is
// asked only for what the grants allow.
func FuzzLinkFrame(f *testing.F) {
	syn := tcpSYN(GuestAddr, outside, 40000, 80)
	f.Add(ethFrame(ipv4.ProtocolNumber, syn), uint16(20), true)
	noSum := append([]byte(nil), syn...)
	header.TCP(noSum[header.IPv4MinimumSize:]).SetChecksum(0) // partial, as a CSUM guest sends
	f.Add(ethFrame(ipv4.ProtocolNumber, noSum), uint16(14), true)
	f.Add(ethFrame(ipv4.ProtocolNumber, tcpSYN(GuestAddr, outside, 40001, 22)), uint16(0), false)
	f.Add(ethFrame(ipv4.ProtocolNumber, udpDatagram(GuestAddr, GatewayAddr, 40002, DNSPort, dnsQuery(1, "index.example.org", dnsTypeA))), uint16(40), false)
	arpReq := make([]byte, header.ARPSize)
	a := header.ARP(arpReq)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), testGuestMAC[:])
	ga, gw := GuestAddr.As4(), GatewayAddr.As4()
	copy(a.ProtocolAddressSender(), ga[:])
	copy(a.ProtocolAddressTarget(), gw[:])
	f.Add(ethFrame(arp.ProtocolNumber, arpReq), uint16(7), false)

	tn, link, _ := newLinkTestNet(f, 1500)
	tn.grant(f, "192.0.2.10:80")
	f.Fuzz(func(t *testing.T, frame []byte, split uint16, partial bool) {
		if len(frame) > 1500+header.EthernetMinimumSize {
			return // the device drops frames over the MTU before Transmit
		}
		cut := int(split) % (len(frame) + 1)
		if err := link.Transmit(vnet.Header{NeedsCsum: partial}, [][]byte{frame[:cut], frame[cut:]}); err != nil {
			t.Fatal(err)
		}
		for _, req := range tn.dialer.requests() {
			if req != "tcp 192.0.2.10:80" {
				t.Fatalf("host dialer asked for %s, which no grant allows", req)
			}
		}
	})
}

// TestLinkDetachedDeviceGetsNothing: once the VM stopped (SetDevice(nil)),
// the stack's answers are dropped and counted, not handed to the old
// device to queue for a guest that is gone.
func TestLinkDetachedDeviceGetsNothing(t *testing.T) {
	_, link, nic := newLinkTestNet(t, 1500)
	link.SetDevice(nil)
	before := nic.delivered.Load()
	arpReq := make([]byte, header.ARPSize)
	a := header.ARP(arpReq)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), testGuestMAC[:])
	ga, gw := GuestAddr.As4(), GatewayAddr.As4()
	copy(a.ProtocolAddressSender(), ga[:])
	copy(a.ProtocolAddressTarget(), gw[:])
	if err := link.Transmit(vnet.Header{}, [][]byte{ethFrame(arp.ProtocolNumber, arpReq)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ARP reply to be dropped", func() bool { return link.Stats().ToGuestDropped >= 1 })
	if n := nic.delivered.Load(); n != before {
		t.Fatalf("detached device got %d more frames", n-before)
	}
}
