package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

type errResolver struct{}

func (errResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("resolver down")
}

// manyResolver returns more addresses than an answer may carry.
type manyResolver struct{}

func (manyResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i := range 3 * MaxDNSAnswers {
		out = append(out, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		out = append(out, netip.MustParseAddr("2001:db8::1"))
	}
	return out, nil
}

func testDNSServer(res Resolver) (*dnsServer, *[]Denial) {
	var denials []Denial
	var g Grants
	g.Add(Grant{Kind: KindName, Name: "*.example.org", PortLo: 443, PortHi: 443, Protocol: TCP})
	return &dnsServer{
		gateway:  GatewayAddr,
		covers:   g.CoversName,
		resolver: res,
		remember: func(string, []netip.Addr) {},
		deny:     func(d Denial) { denials = append(denials, d) },
	}, &denials
}

func TestDNSAnswerCases(t *testing.T) {
	srv, denials := testDNSServer(manyResolver{})
	q := dnsQuery(7, "a.example.org", dnsTypeA)
	rc, addrs := parseAnswer(t, q, srv.answer(context.Background(), q))
	if rc != dnsRcodeOK || len(addrs) != MaxDNSAnswers {
		t.Fatalf("rcode %d, %d answers; want %d IPv4 answers", rc, len(addrs), MaxDNSAnswers)
	}
	q = dnsQuery(8, "a.example.org", dnsTypeAAAA)
	if rc, addrs := parseAnswer(t, q, srv.answer(context.Background(), q)); rc != dnsRcodeOK || len(addrs) != 0 {
		t.Fatalf("AAAA: rcode %d, %v; want NODATA", rc, addrs)
	}
	q = dnsQuery(9, "example.org", dnsTypeA)
	if rc, _ := parseAnswer(t, q, srv.answer(context.Background(), q)); rc != dnsRcodeNX || len(*denials) != 1 {
		t.Fatalf("apex of a wildcard: rcode %d, denials %v", rc, *denials)
	}
	// A name with bytes no host name has is refused, and shown escaped.
	q = dnsQuery(10, "a\x00b.example.org", dnsTypeA)
	if rc, _ := parseAnswer(t, q, srv.answer(context.Background(), q)); rc != dnsRcodeNX || !strings.HasPrefix((*denials)[1].Name, "?") {
		t.Fatalf("odd name: rcode %d, denials %v", rc, *denials)
	}
	// A response is never answered; a compression pointer is FORMERR.
	resp := dnsQuery(11, "a.example.org", dnsTypeA)
	resp[2] |= 0x80
	if r := srv.answer(context.Background(), resp); r != nil {
		t.Fatalf("answered a response: % x", r)
	}
	ptr := append(dnsQuery(12, "x", dnsTypeA)[:dnsHeaderLen], 0xc0, 0x0c, 0, 1, 0, 1)
	if r := srv.answer(context.Background(), ptr); r == nil || r[3]&0xf != dnsRcodeForm {
		t.Fatalf("pointer in question: % x", r)
	}
	srv, _ = testDNSServer(errResolver{})
	q = dnsQuery(13, "a.example.org", dnsTypeA)
	if rc, _ := parseAnswer(t, q, srv.answer(context.Background(), q)); rc != dnsRcodeFail {
		t.Fatalf("resolver failure: rcode %d, want SERVFAIL", rc)
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add(dnsQuery(1, "a.example.org", dnsTypeA))
	f.Add(dnsQuery(2, HostServiceName, dnsTypeA))
	f.Add(dnsQuery(3, "evil.example.net", dnsTypeAAAA))
	f.Add(append(dnsQuery(4, "x", dnsTypeA)[:dnsHeaderLen], 0xc0, 0x0c, 0, 1, 0, 1))
	f.Add([]byte{})
	srv, _ := testDNSServer(manyResolver{})
	f.Fuzz(func(t *testing.T, q []byte) {
		r := srv.answer(context.Background(), q)
		if r == nil {
			return
		}
		if len(r) > dnsHeaderLen+len(q)+MaxDNSAnswers*16 || len(r) > 512 {
			t.Fatalf("answer of %d bytes to a %d-byte query", len(r), len(q))
		}
		if len(q) < 2 || r[0] != q[0] || r[1] != q[1] || r[2]&0x80 == 0 {
			t.Fatalf("answer % x does not answer % x", r, q)
		}
		if an := binary.BigEndian.Uint16(r[6:]); an > MaxDNSAnswers {
			t.Fatalf("%d answers", an)
		}
	})
}
