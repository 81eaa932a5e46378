package netstack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func ipv4Packet(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: proto,
		SrcAddr: tcpAddr(src), DstAddr: tcpAddr(dst)})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func tcpSYN(src, dst netip.Addr, sport, dport uint16) []byte {
	t := header.TCP(make([]byte, header.TCPMinimumSize))
	t.Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn, WindowSize: 65535})
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpAddr(src), tcpAddr(dst), uint16(len(t)))
	t.SetChecksum(^t.CalculateChecksum(x))
	return ipv4Packet(src, dst, uint8(header.TCPProtocolNumber), t)
}

func udpDatagram(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := header.UDP(make([]byte, header.UDPMinimumSize+len(payload)))
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	return ipv4Packet(src, dst, uint8(header.UDPProtocolNumber), u) // checksum 0: none, valid for IPv4
}

// FuzzGuestPacket injects arbitrary IPv4 packets from the guest's side of the
// wire into one workspace stack. Whatever arrives, nothing panics, the host
// dialer is asked only for what the grants allow, and the bounds hold.
func FuzzGuestPacket(f *testing.F) {
	gw := GatewayAddr
	f.Add(tcpSYN(GuestAddr, outside, 40000, 80))
	f.Add(tcpSYN(GuestAddr, outside, 40001, 443))
	f.Add(tcpSYN(GuestAddr, gw, 40002, 5432))
	f.Add(tcpSYN(GuestAddr, netip.MustParseAddr("127.0.0.1"), 40003, 80))
	f.Add(udpDatagram(GuestAddr, gw, 40004, DNSPort, dnsQuery(1, "index.example.org", dnsTypeA)))
	f.Add(udpDatagram(GuestAddr, gw, 40005, DNSPort, dnsQuery(2, "other.example.org", dnsTypeA)))
	f.Add(udpDatagram(GuestAddr, outside, 40006, 123, []byte("ntp?")))
	f.Add(udpDatagram(GuestAddr, netip.MustParseAddr("224.0.0.251"), 5353, 5353, []byte("mdns")))
	f.Add([]byte{0x45})

	tn := newTestNet(f, Limits{MaxConns: 4, MaxDenials: 8}, fakeResolver{"index.example.org": {outside}})
	tn.grant(f, "192.0.2.10:80")
	tn.grant(f, "192.0.2.10:123/udp")
	tn.grant(f, "index.example.org:443")
	allowed := map[string]bool{"tcp 192.0.2.10:80": true, "udp 192.0.2.10:123": true, "tcp 192.0.2.10:443": true}
	check := func(t testing.TB) {
		for _, a := range tn.dialer.requests() {
			if !allowed[a] {
				t.Fatalf("host dialer asked for %s, which no grant allows", a)
			}
		}
		st := tn.n.Status()
		if len(st.Denials) > 8 || st.Connections > 4 {
			t.Fatalf("bounds broken: %d denials kept, %d connections", len(st.Denials), st.Connections)
		}
	}
	f.Cleanup(func() { check(f) })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > testMTU {
			return
		}
		p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		tn.hostEP.InjectInbound(ipv4.ProtocolNumber, p)
		p.DecRef()
		check(t)
	})
}
