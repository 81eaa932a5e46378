package netstack

// The stack's DNS server: a minimal RFC 1035 responder for the one question a
// stub resolver asks. It parses the query at fixed offsets (header, then one
// question whose name must be uncompressed labels), answers A questions for
// granted names through the host resolver, answers host.pyro.internal itself,
// and gives every other name NXDOMAIN, which it records as a denial. Names it
// cannot read get FORMERR; it never follows compression pointers, so a query
// costs at most its own length to parse.

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DNS wire constants (RFC 1035 section 4.1).
const (
	dnsHeaderLen  = 12
	dnsTypeA      = 1
	dnsTypeAAAA   = 28
	dnsClassIN    = 1
	dnsRcodeOK    = 0
	dnsRcodeForm  = 1
	dnsRcodeFail  = 2
	dnsRcodeNX    = 3
	dnsRcodeNoImp = 4
	dnsMaxName    = 255
	// dnsMaxQuery is the largest query read; a stub resolver's query with
	// EDNS is far smaller.
	dnsMaxQuery = 1232
)

// Resolver looks names up on the host. *net.Resolver satisfies it; tests
// pass a fake or a resolver pointed at a DNS server they started.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// dnsServer answers queries. Its functions are supplied by the Stack (and by
// the fuzz test), which keeps the parsing free of locks and sockets.
type dnsServer struct {
	gateway  netip.Addr
	covers   func(name string) bool
	resolver Resolver
	remember func(name string, addrs []netip.Addr)
	deny     func(Denial)
}

type dnsQuestion struct {
	id    uint16
	flags uint16
	name  string // normalized, "" if not a valid host name
	raw   []byte // the question as sent (name, type, class)
	qtype uint16
	class uint16
}

var errDNSDrop = errors.New("not a query")

// parseDNSQuery reads the header and the single question.
func parseDNSQuery(q []byte) (dnsQuestion, uint8, error) {
	var d dnsQuestion
	if len(q) < dnsHeaderLen || len(q) > dnsMaxQuery {
		return d, 0, errDNSDrop
	}
	d.id = binary.BigEndian.Uint16(q[0:])
	d.flags = binary.BigEndian.Uint16(q[2:])
	if d.flags&0x8000 != 0 { // QR: a response, never answer it
		return d, 0, errDNSDrop
	}
	if (d.flags>>11)&0xf != 0 { // OPCODE other than QUERY
		return d, dnsRcodeNoImp, nil
	}
	if binary.BigEndian.Uint16(q[4:]) != 1 {
		return d, dnsRcodeForm, nil
	}
	off := dnsHeaderLen
	var b strings.Builder
	valid := true
	for {
		if off >= len(q) {
			return d, dnsRcodeForm, nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) || b.Len()+l+1 > dnsMaxName {
			return d, dnsRcodeForm, nil
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range q[off : off+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				valid, c = false, '?'
			}
			b.WriteByte(c)
		}
		off += l
	}
	if off+4 > len(q) {
		return d, dnsRcodeForm, nil
	}
	d.qtype = binary.BigEndian.Uint16(q[off:])
	d.class = binary.BigEndian.Uint16(q[off+2:])
	d.raw = q[dnsHeaderLen : off+4]
	d.name = b.String()
	if !valid || d.name == "" {
		d.name = "?" + d.name // never matches a grant, still readable in a denial
	}
	return d, dnsRcodeOK, nil
}

// answer returns the response to q, or nil to drop it. The response is at
// most len(question)+12+MaxDNSAnswers*28 bytes.
func (s *dnsServer) answer(ctx context.Context, q []byte) []byte {
	d, rcode, err := parseDNSQuery(q)
	if err != nil {
		return nil
	}
	if rcode != dnsRcodeOK {
		return dnsResponse(d, rcode, nil, false)
	}
	if d.class != dnsClassIN {
		return dnsResponse(d, dnsRcodeNoImp, nil, true)
	}
	name := d.name
	if name == HostServiceName {
		var addrs []netip.Addr
		if d.qtype == dnsTypeA {
			addrs = []netip.Addr{s.gateway}
		}
		return dnsResponse(d, dnsRcodeOK, addrs, true)
	}
	if name[0] == '?' || !s.covers(name) {
		s.deny(Denial{Time: time.Now(), Protocol: "dns", Name: name,
			Reason: "no grant covers this name; grant it as NAME:PORT or *.DOMAIN:PORT"})
		return dnsResponse(d, dnsRcodeNX, nil, true)
	}
	if d.qtype != dnsTypeA {
		// The guest network is IPv4 only: answer AAAA and other types with
		// no records (NODATA) so resolvers fall back to A at once.
		return dnsResponse(d, dnsRcodeOK, nil, true)
	}
	ctx, cancel := context.WithTimeout(ctx, DNSResolveTimeout)
	defer cancel()
	addrs, err := s.resolver.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return dnsResponse(d, dnsRcodeNX, nil, true)
		}
		return dnsResponse(d, dnsRcodeFail, nil, true)
	}
	v4 := addrs[:0:0]
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && len(v4) < MaxDNSAnswers {
			v4 = append(v4, a)
		}
	}
	s.remember(name, v4)
	return dnsResponse(d, dnsRcodeOK, v4, true)
}

// dnsResponse builds a response echoing the question when withQuestion.
func dnsResponse(d dnsQuestion, rcode uint8, addrs []netip.Addr, withQuestion bool) []byte {
	if !withQuestion {
		d.raw = nil
	}
	out := make([]byte, dnsHeaderLen, dnsHeaderLen+len(d.raw)+len(addrs)*16)
	binary.BigEndian.PutUint16(out[0:], d.id)
	// QR=1, keep OPCODE and RD, RA=1, RCODE.
	flags := uint16(0x8000) | d.flags&0x7900 | 0x0080 | uint16(rcode&0xf)
	binary.BigEndian.PutUint16(out[2:], flags)
	if len(d.raw) > 0 {
		binary.BigEndian.PutUint16(out[4:], 1)
	}
	binary.BigEndian.PutUint16(out[6:], uint16(len(addrs)))
	out = append(out, d.raw...)
	for _, a := range addrs {
		a4 := a.As4()
		out = append(out, 0xc0, dnsHeaderLen) // name: pointer to the question
		out = binary.BigEndian.AppendUint16(out, dnsTypeA)
		out = binary.BigEndian.AppendUint16(out, dnsClassIN)
		out = binary.BigEndian.AppendUint32(out, DNSTTL)
		out = binary.BigEndian.AppendUint16(out, 4)
		out = append(out, a4[:]...)
	}
	return out
}
