package netstack

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// HostServiceName is the stable name under which a guest reaches a
// host-service grant: "host.pyro.internal:5432" in the guest means the host's
// 127.0.0.1:5432, and only when a host-service grant for 5432 exists. The
// stack's DNS answers it with the gateway address.
const HostServiceName = "host.pyro.internal"

// AllEgress is the spelling of the grant that lets the guest reach any
// outside address and port, over TCP and UDP, and resolve any name.
const AllEgress = "all-egress"

// maxGrantSpec bounds the length of a grant as written; a DNS name is at most
// 253 bytes, so 300 leaves room for a port range and a protocol suffix.
const maxGrantSpec = 300

// Kind says what a grant lets the guest reach.
type Kind uint8

// Grant kinds, in the order the matcher prefers them (see Grants.Match).
const (
	// KindHostService: the host's loopback port, named host.pyro.internal:P.
	KindHostService Kind = iota + 1
	// KindAddr: one outside IP address and a port or port range.
	KindAddr
	// KindName: a DNS name, exact or "*.suffix", and a port or port range.
	KindName
	// KindCIDR: an outside network and a port or port range.
	KindCIDR
	// KindAllEgress: anything outside, any port.
	KindAllEgress
)

func (k Kind) String() string {
	switch k {
	case KindHostService:
		return "host-service"
	case KindAddr:
		return "address"
	case KindName:
		return "name"
	case KindCIDR:
		return "cidr"
	case KindAllEgress:
		return "all-egress"
	}
	return "unknown"
}

// Protocol is a transport protocol a grant covers.
type Protocol uint8

// Protocols. A grant written without a suffix covers TCP only; "/udp" makes it
// UDP only. all-egress covers both.
const (
	TCP Protocol = 1 << iota
	UDP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case TCP | UDP:
		return "tcp+udp"
	}
	return "none"
}

// Grant is one parsed permission. Its String form is canonical and is the
// grant's identity: granting the same thing twice is one grant, and revoke
// takes the same spelling.
type Grant struct {
	Kind     Kind
	Prefix   netip.Prefix // KindAddr (a /32 or /128) and KindCIDR
	Name     string       // KindName: lower case, no trailing dot; "*.x.y" for a wildcard
	PortLo   uint16       // first port covered (inclusive)
	PortHi   uint16       // last port covered (inclusive)
	Protocol Protocol
}

// String returns the canonical spelling, which ParseGrant accepts.
func (g Grant) String() string {
	var s string
	switch g.Kind {
	case KindAllEgress:
		return AllEgress
	case KindHostService:
		s = HostServiceName
	case KindAddr:
		a := g.Prefix.Addr()
		if a.Is6() {
			s = "[" + a.String() + "]"
		} else {
			s = a.String()
		}
	case KindCIDR:
		if g.Prefix.Addr().Is6() {
			s = "[" + g.Prefix.String() + "]"
		} else {
			s = g.Prefix.String()
		}
	case KindName:
		s = g.Name
	}
	s += ":" + strconv.Itoa(int(g.PortLo))
	if g.PortHi != g.PortLo {
		s += "-" + strconv.Itoa(int(g.PortHi))
	}
	if g.Protocol == UDP {
		s += "/udp"
	}
	return s
}

// ErrBadGrant is wrapped by every ParseGrant error.
var ErrBadGrant = errors.New("bad network grant")

func badGrant(spec, why string) error {
	return fmt.Errorf("%w %q: %s; write host:port, CIDR:port-range, name:port, *.domain:port, %s:PORT or %s (append /udp for UDP)",
		ErrBadGrant, spec, why, HostServiceName, AllEgress)
}

// ParseGrant parses one grant:
//
//	all-egress                  anything outside, TCP and UDP
//	host.pyro.internal:5432     the host's 127.0.0.1:5432 (host service)
//	203.0.113.7:443             one address and port ([2001:db8::1]:443 for IPv6)
//	10.20.0.0/16:8000-8099      a network and a port range ([fd00::/8]:80 for IPv6)
//	index.example.org:443       a name the guest resolves through the stack's DNS
//	*.example.com:443           any name below example.com (not example.com itself)
//
// Ports are 1-65535; "P-Q" is a range. A trailing "/udp" makes the grant cover
// UDP instead of TCP ("/tcp" is accepted and is the default).
func ParseGrant(spec string) (Grant, error) {
	if len(spec) > maxGrantSpec {
		return Grant{}, badGrant(spec[:32]+"...", fmt.Sprintf("longer than %d bytes", maxGrantSpec))
	}
	s := strings.TrimSpace(spec)
	if strings.EqualFold(s, AllEgress) {
		return Grant{Kind: KindAllEgress, PortLo: 1, PortHi: 65535, Protocol: TCP | UDP}, nil
	}
	g := Grant{Protocol: TCP}
	if rest, ok := cutSuffixFold(s, "/udp"); ok {
		s, g.Protocol = rest, UDP
	} else if rest, ok := cutSuffixFold(s, "/tcp"); ok {
		s = rest
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Grant{}, badGrant(spec, "no port")
	}
	host, ports := s[:i], s[i+1:]
	lo, hi, err := parsePorts(ports)
	if err != nil {
		return Grant{}, badGrant(spec, err.Error())
	}
	g.PortLo, g.PortHi = lo, hi
	if host == "" {
		return Grant{}, badGrant(spec, "no host before the port")
	}
	bracketed := false
	if host[0] == '[' {
		if host[len(host)-1] != ']' {
			return Grant{}, badGrant(spec, "unclosed [")
		}
		host, bracketed = host[1:len(host)-1], true
	}
	if strings.ContainsRune(host, '/') {
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return Grant{}, badGrant(spec, "bad CIDR")
		}
		if p.Addr().Is4() == bracketed || p.Addr().Zone() != "" {
			return Grant{}, badGrant(spec, "IPv6 networks go in brackets, IPv4 ones do not")
		}
		if p.Addr().Is4In6() {
			return Grant{}, badGrant(spec, "write IPv4-mapped networks as IPv4")
		}
		g.Kind, g.Prefix = KindCIDR, p.Masked()
		return g, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Is4() == bracketed || a.Zone() != "" {
			return Grant{}, badGrant(spec, "IPv6 addresses go in brackets, IPv4 ones do not")
		}
		if a.Is4In6() {
			a = a.Unmap()
		}
		g.Kind, g.Prefix = KindAddr, netip.PrefixFrom(a, a.BitLen())
		return g, nil
	}
	if bracketed {
		return Grant{}, badGrant(spec, "brackets hold an IPv6 address or network")
	}
	name, err := normalizeName(host, true)
	if err != nil {
		return Grant{}, badGrant(spec, err.Error())
	}
	if name == HostServiceName {
		if lo != hi {
			return Grant{}, badGrant(spec, "a host service is one port")
		}
		g.Kind, g.Name = KindHostService, ""
		return g, nil
	}
	if strings.HasSuffix(name, "."+HostServiceName) {
		return Grant{}, badGrant(spec, "names below "+HostServiceName+" are reserved")
	}
	g.Kind, g.Name = KindName, name
	return g, nil
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	h := l
	if isRange {
		if h, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if h < l {
			return 0, 0, fmt.Errorf("port range %d-%d runs backwards", l, h)
		}
	}
	return l, h, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// normalizeName lower-cases a DNS name, drops one trailing dot and checks it
// is a host name (letters, digits, '-' and '_', labels of 1-63 bytes, at most
// 253 bytes). With wildcard, a leading "*." is allowed and kept.
func normalizeName(s string, wildcard bool) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	body := s
	if wildcard && strings.HasPrefix(s, "*.") {
		body = s[2:]
	}
	if body == "" || len(s) > 253 {
		return "", errors.New("not a DNS name")
	}
	for _, label := range strings.Split(body, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("a DNS name label is empty or longer than 63 bytes")
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return "", errors.New(`a wildcard is only allowed as a leading "*."`)
				}
				return "", fmt.Errorf("%q is not allowed in a DNS name", c)
			}
		}
	}
	if last := body[strings.LastIndexByte(body, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		// No top-level domain is all digits (RFC 3696 section 2); such a
		// "name" is an address with a stray dot, which would not
		// round-trip through String.
		return "", errors.New("a name's last label cannot be all digits; write an address without a trailing dot")
	}
	if s != body && !strings.Contains(body, ".") {
		return "", errors.New("a wildcard needs a domain with at least two labels")
	}
	return s, nil
}

// matchesName reports whether name (normalized) is covered by the pattern.
func matchesName(pattern, name string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(name) > len(suffix) && strings.HasSuffix(name, suffix)
	}
	return pattern == name
}

// Flow is one guest attempt as the matcher sees it.
type Flow struct {
	Addr     netip.Addr // destination address the guest used
	Port     uint16
	Protocol Protocol // TCP or UDP
	// Name is the name the guest resolved, through the stack's DNS, to Addr
	// (empty if none). HostServiceName means the flow is to the gateway,
	// which only host-service grants can open.
	Name string
}

func (g Grant) coversPort(p uint16) bool { return p >= g.PortLo && p <= g.PortHi }

func (g Grant) matches(f Flow) bool {
	if g.Protocol&f.Protocol == 0 || !g.coversPort(f.Port) {
		return false
	}
	if f.Name == HostServiceName {
		return g.Kind == KindHostService
	}
	switch g.Kind {
	case KindAllEgress:
		return true
	case KindAddr, KindCIDR:
		return g.Prefix.Contains(f.Addr.Unmap())
	case KindName:
		return f.Name != "" && matchesName(g.Name, f.Name)
	}
	return false
}

// rank orders grants by specificity; lower is preferred. Within a kind a
// longer prefix or a longer (more specific) name pattern wins, then a
// narrower port range.
func (g Grant) rank() (kind Kind, breadth int, ports int) {
	switch g.Kind {
	case KindCIDR:
		breadth = 128 - g.Prefix.Bits()
	case KindName:
		if strings.HasPrefix(g.Name, "*") {
			breadth = 1000 - len(g.Name)
		}
	}
	return g.Kind, breadth, int(g.PortHi) - int(g.PortLo)
}

func (g Grant) preferredTo(o Grant) bool {
	k1, b1, p1 := g.rank()
	k2, b2, p2 := o.rank()
	if k1 != k2 {
		return k1 < k2
	}
	if b1 != b2 {
		return b1 < b2
	}
	if p1 != p2 {
		return p1 < p2
	}
	return g.String() < o.String()
}

// Grants is a set of grants with a matcher. The zero value is an empty set
// that allows nothing. It is not safe for concurrent use; the Stack guards
// its own set.
type Grants struct {
	list []Grant
}

// Add adds g; it reports false if an identical grant was already there.
func (s *Grants) Add(g Grant) bool {
	for _, h := range s.list {
		if h == g {
			return false
		}
	}
	s.list = append(s.list, g)
	return true
}

// Revoke removes g; it reports false if there was no such grant.
func (s *Grants) Revoke(g Grant) bool {
	for i, h := range s.list {
		if h == g {
			s.list = append(s.list[:i], s.list[i+1:]...)
			return true
		}
	}
	return false
}

// List returns the grants in the order they were added.
func (s *Grants) List() []Grant { return append([]Grant(nil), s.list...) }

// Match returns the grant that allows f, or false. When several do, the most
// specific one is charged: host service, then an exact address, then an exact
// name before a wildcard (a longer suffix first), then a CIDR (longer prefix
// first), then all-egress; ties go to the narrower port range. Flows to the
// gateway (Name == HostServiceName) are matched by host-service grants only,
// so all-egress never opens the host's loopback.
func (s *Grants) Match(f Flow) (Grant, bool) {
	var best Grant
	found := false
	for _, g := range s.list {
		if g.matches(f) && (!found || g.preferredTo(best)) {
			best, found = g, true
		}
	}
	return best, found
}

// CoversName reports whether some grant lets the guest resolve name: a name
// grant whose pattern matches it, or all-egress.
func (s *Grants) CoversName(name string) bool {
	for _, g := range s.list {
		if g.Kind == KindAllEgress || g.Kind == KindName && matchesName(g.Name, name) {
			return true
		}
	}
	return false
}
