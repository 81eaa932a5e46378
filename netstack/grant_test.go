package netstack

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseGrant(t *testing.T) {
	for _, tc := range []struct {
		in, canon string
		kind      Kind
	}{
		{"all-egress", "all-egress", KindAllEgress},
		{" ALL-EGRESS ", "all-egress", KindAllEgress},
		{"host.pyro.internal:5432", "host.pyro.internal:5432", KindHostService},
		{"Host.Pyro.Internal.:80/tcp", "host.pyro.internal:80", KindHostService},
		{"203.0.113.7:443", "203.0.113.7:443", KindAddr},
		{"[2001:db8::1]:443", "[2001:db8::1]:443", KindAddr},
		{"[::ffff:203.0.113.7]:443", "203.0.113.7:443", KindAddr},
		{"10.20.3.4/16:8000-8099", "10.20.0.0/16:8000-8099", KindCIDR},
		{"[fd00::/8]:80/udp", "[fd00::/8]:80/udp", KindCIDR},
		{"index.example.org:443", "index.example.org:443", KindName},
		{"Index.Example.ORG.:443", "index.example.org:443", KindName},
		{"*.example.com:443", "*.example.com:443", KindName},
		{"ntp.example.com:123/UDP", "ntp.example.com:123/udp", KindName},
		{"a.example.com:1-65535", "a.example.com:1-65535", KindName},
	} {
		g, err := ParseGrant(tc.in)
		if err != nil {
			t.Errorf("ParseGrant(%q): %v", tc.in, err)
			continue
		}
		if g.String() != tc.canon || g.Kind != tc.kind {
			t.Errorf("ParseGrant(%q) = %s (%v), want %s (%v)", tc.in, g, g.Kind, tc.canon, tc.kind)
		}
		if again, err := ParseGrant(g.String()); err != nil || again != g {
			t.Errorf("canonical %q does not round-trip: %v %v", g, again, err)
		}
	}
}

func TestParseGrantErrors(t *testing.T) {
	for _, in := range []string{
		"", "example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:80-70",
		"example.com:http", ":80", "[203.0.113.7]:80", "2001:db8::1:80", "[2001:db8::1:80",
		"10.0.0.0/33:80", "*.com:443", "a.*.example.com:443", "*example.com:443", "exa mple.com:80",
		"host.pyro.internal:80-81", "x.host.pyro.internal:80", "[example.com]:80",
		"a..b:80", "-:80/sctp", "0.0.0.0.:1", "1.2.3:80", "*.10:80",
	} {
		if g, err := ParseGrant(in); err == nil {
			t.Errorf("ParseGrant(%q) = %s, want an error", in, g)
		} else if !errors.Is(err, ErrBadGrant) {
			t.Errorf("ParseGrant(%q) error %v does not wrap ErrBadGrant", in, err)
		}
	}
}

func mustGrant(t testing.TB, spec string) Grant {
	t.Helper()
	g, err := ParseGrant(spec)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGrantsMatch(t *testing.T) {
	ip := netip.MustParseAddr
	gw := ip("10.0.2.2")
	for _, tc := range []struct {
		name   string
		grants []string
		flow   Flow
		want   string // "" = denied
	}{
		{"nothing granted", nil, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP}, ""},
		{"exact address", []string{"203.0.113.7:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP}, "203.0.113.7:443"},
		{"other port", []string{"203.0.113.7:443"}, Flow{Addr: ip("203.0.113.7"), Port: 80, Protocol: TCP}, ""},
		{"tcp grant, udp flow", []string{"203.0.113.7:53"}, Flow{Addr: ip("203.0.113.7"), Port: 53, Protocol: UDP}, ""},
		{"udp grant", []string{"203.0.113.7:53/udp"}, Flow{Addr: ip("203.0.113.7"), Port: 53, Protocol: UDP}, "203.0.113.7:53/udp"},
		{"cidr range", []string{"10.20.0.0/16:8000-8099"}, Flow{Addr: ip("10.20.9.9"), Port: 8050, Protocol: TCP}, "10.20.0.0/16:8000-8099"},
		{"cidr outside", []string{"10.20.0.0/16:8000-8099"}, Flow{Addr: ip("10.21.0.1"), Port: 8050, Protocol: TCP}, ""},
		{"ipv6 cidr", []string{"[2001:db8::/32]:443"}, Flow{Addr: ip("2001:db8::5"), Port: 443, Protocol: TCP}, "[2001:db8::/32]:443"},
		{"name needs resolution", []string{"index.example.org:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP}, ""},
		{"name resolved", []string{"index.example.org:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "index.example.org"}, "index.example.org:443"},
		{"wildcard below", []string{"*.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "a.b.example.com"}, "*.example.com:443"},
		{"wildcard not apex", []string{"*.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "example.com"}, ""},
		{"wildcard not lookalike", []string{"*.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "badexample.com"}, ""},
		{"all-egress", []string{"all-egress"}, Flow{Addr: ip("198.51.100.1"), Port: 22, Protocol: UDP}, "all-egress"},
		{"all-egress never opens the host", []string{"all-egress"}, Flow{Addr: gw, Port: 5432, Protocol: TCP, Name: HostServiceName}, ""},
		{"host service", []string{"host.pyro.internal:5432"}, Flow{Addr: gw, Port: 5432, Protocol: TCP, Name: HostServiceName}, "host.pyro.internal:5432"},
		{"host service other port", []string{"host.pyro.internal:5432"}, Flow{Addr: gw, Port: 5433, Protocol: TCP, Name: HostServiceName}, ""},
		{"host service only at the gateway", []string{"host.pyro.internal:5432"}, Flow{Addr: ip("203.0.113.7"), Port: 5432, Protocol: TCP}, ""},
		{"precedence: address over all", []string{"all-egress", "10.0.0.0/8:1-65535", "10.1.2.3:80"}, Flow{Addr: ip("10.1.2.3"), Port: 80, Protocol: TCP}, "10.1.2.3:80"},
		{"precedence: longer prefix", []string{"10.0.0.0/8:80", "10.1.0.0/16:80"}, Flow{Addr: ip("10.1.2.3"), Port: 80, Protocol: TCP}, "10.1.0.0/16:80"},
		{"precedence: exact name over wildcard", []string{"*.example.com:443", "a.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "a.example.com"}, "a.example.com:443"},
		{"precedence: longer wildcard", []string{"*.example.com:443", "*.a.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "b.a.example.com"}, "*.a.example.com:443"},
		{"precedence: name over cidr", []string{"203.0.113.0/24:443", "a.example.com:443"}, Flow{Addr: ip("203.0.113.7"), Port: 443, Protocol: TCP, Name: "a.example.com"}, "a.example.com:443"},
		{"precedence: narrower ports", []string{"10.0.0.0/8:1-1000", "10.0.0.0/8:80"}, Flow{Addr: ip("10.1.2.3"), Port: 80, Protocol: TCP}, "10.0.0.0/8:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Grants
			for _, g := range tc.grants {
				s.Add(mustGrant(t, g))
			}
			g, ok := s.Match(tc.flow)
			got := ""
			if ok {
				got = g.String()
			}
			if got != tc.want {
				t.Fatalf("Match(%+v) = %q, want %q", tc.flow, got, tc.want)
			}
		})
	}
}

func TestGrantsAddRevoke(t *testing.T) {
	var s Grants
	g := mustGrant(t, "index.example.org:443")
	if !s.Add(g) || s.Add(mustGrant(t, "INDEX.example.org.:443")) {
		t.Fatal("Add is not idempotent on the canonical grant")
	}
	f := Flow{Addr: netip.MustParseAddr("203.0.113.7"), Port: 443, Protocol: TCP, Name: "index.example.org"}
	if _, ok := s.Match(f); !ok || !s.CoversName("index.example.org") {
		t.Fatal("granted flow or name denied")
	}
	if !s.Revoke(g) || s.Revoke(g) {
		t.Fatal("Revoke should succeed once")
	}
	if _, ok := s.Match(f); ok || s.CoversName("index.example.org") || len(s.List()) != 0 {
		t.Fatal("revoked grant still matches")
	}
	s.Add(mustGrant(t, "*.example.org:443"))
	if !s.CoversName("pypi.example.org") || s.CoversName("example.org") || s.CoversName("example.net") {
		t.Fatal("CoversName wrong for a wildcard")
	}
}

func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"all-egress", "host.pyro.internal:5432", "203.0.113.7:443", "[2001:db8::1]:443",
		"10.20.0.0/16:8000-8099", "[fd00::/8]:80/udp", "*.example.com:443", "index.example.org:443/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		g, err := ParseGrant(spec)
		if err != nil {
			if !errors.Is(err, ErrBadGrant) {
				t.Fatalf("error does not wrap ErrBadGrant: %v", err)
			}
			return
		}
		again, err := ParseGrant(g.String())
		if err != nil || again != g {
			t.Fatalf("%q parsed to %s which re-parses to %v, %v", spec, g, again, err)
		}
		if g.PortLo == 0 || g.PortHi < g.PortLo || g.Protocol == 0 {
			t.Fatalf("%q parsed to bad ports or protocol: %+v", spec, g)
		}
	})
}
