package netstack

// The host resolver the stack asks for granted names: the system's by
// default, or one DNS server named by address (pyro's --resolver and
// $PYRO_RESOLVER), which is how tests point name grants at a server they
// started on loopback.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// ResolvConfPath is the host file whose nameservers the default resolver
// uses.
const ResolvConfPath = "/etc/resolv.conf"

// maxResolvConfLines bounds how much of a resolv.conf HostNameservers
// reads: real ones are a few lines; the C library reads at most three
// nameservers anyway.
const maxResolvConfLines = 1000

// ParseResolverAddr reads a DNS server address: IP:PORT, [IPv6]:PORT, or a
// bare IP meaning port 53. The host must be an address: a name would need
// a resolver to find the resolver.
func ParseResolverAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("resolver %q: port 0; give the DNS server's port, as 127.0.0.1:53", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("resolver %q is not IP:PORT (a DNS server's address, as 127.0.0.1:53 or [::1]:5353)", s)
}

// NewResolver returns a resolver that sends every query to the DNS server
// at addr (see ParseResolverAddr): over UDP, and over TCP when an answer
// comes back truncated. It uses Go's own resolver, so the host's
// resolv.conf nameservers are never asked.
func NewResolver(addr string) (*net.Resolver, error) {
	ap, err := ParseResolverAddr(addr)
	if err != nil {
		return nil, err
	}
	server := ap.String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}, nil
}

// HostNameservers returns the nameserver addresses of the resolv.conf at
// path, in order; none (and a nil error) when it lists none.
func HostNameservers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < maxResolvConfLines; n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if _, err := netip.ParseAddr(fields[1]); err == nil {
			out = append(out, fields[1])
		}
	}
	return out, sc.Err()
}
