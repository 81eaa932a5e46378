package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/netstack/dnstest"
)

func TestParseResolverAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5353": "127.0.0.1:5353",
		"[::1]:53":       "[::1]:53",
		"10.0.0.1":       "10.0.0.1:53",
	} {
		got, err := ParseResolverAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseResolverAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "dns.example.org:53", "127.0.0.1:0", "127.0.0.1:x", "1.2.3.4:70000"} {
		if _, err := ParseResolverAddr(bad); err == nil {
			t.Errorf("ParseResolverAddr(%q) accepted", bad)
		}
	}
}

func TestHostNameservers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver   fe80::1%eth0\nnameserver not-an-ip\noptions ndots:2\nnameserver ::1\n"), 0o644)
	got, err := HostNameservers(p)
	if err != nil || !reflect.DeepEqual(got, []string{"192.0.2.53", "fe80::1%eth0", "::1"}) {
		t.Fatalf("HostNameservers = %q, %v", got, err)
	}
	os.WriteFile(p, []byte("search example.org\n"), 0o644)
	if got, err := HostNameservers(p); err != nil || len(got) != 0 {
		t.Fatalf("no nameserver: %q, %v", got, err)
	}
	if _, err := HostNameservers(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestNewResolverAsksOnlyItsServer resolves through NewResolver against a
// DNS server the test started: the name it knows resolves, another is not
// found, and both questions reached that server.
func TestNewResolverAsksOnlyItsServer(t *testing.T) {
	srv := dnstest.Start(t, map[string]netip.Addr{"pkg.pyro-test.internal": netip.MustParseAddr("192.0.2.10")})
	r, err := NewResolver(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", "pkg.pyro-test.internal.")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.10") {
		t.Fatalf("lookup = %v, %v", addrs, err)
	}
	_, err = r.LookupNetIP(ctx, "ip4", "other.pyro-test.internal.")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("unknown name: %v, want not found", err)
	}
	if asked := srv.Asked(); !slices.Contains(asked, "pkg.pyro-test.internal") || !slices.Contains(asked, "other.pyro-test.internal") {
		t.Fatalf("server asked %q", asked)
	}
}

// TestNameGrantResolvesThroughConfiguredServer is a name grant end to end
// in the stack: the guest asks the workspace DNS for a granted name, the
// stack resolves it through a resolver from NewResolver pointed at the
// test's DNS server, and the guest's connection to the answer is dialled.
// The answer is a documentation address (192.0.2.10), never a real host:
// the test dialer maps it to the test's loopback echo server, because the
// stack by design never dials loopback for a name grant. Another name
// gets NXDOMAIN without the stack asking the server.
func TestNameGrantResolvesThroughConfiguredServer(t *testing.T) {
	srv := dnstest.Start(t, map[string]netip.Addr{"pkg.pyro-test.internal": outside})
	r, err := NewResolver(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tn := newTestNet(t, Limits{}, r)
	tn.dialer.route("tcp", "192.0.2.10:8080", echoServer(t))
	tn.grant(t, "pkg.pyro-test.internal:8080")

	rc, addrs := tn.lookup(t, "pkg.pyro-test.internal")
	if rc != dnsRcodeOK || len(addrs) != 1 || addrs[0] != outside {
		t.Fatalf("granted name: rcode %d addrs %v", rc, addrs)
	}
	if rc, _ := tn.lookup(t, "other.pyro-test.internal"); rc != dnsRcodeNX {
		t.Fatalf("ungranted name: rcode %d, want NXDOMAIN", rc)
	}
	if asked := srv.Asked(); slices.Contains(asked, "other.pyro-test.internal") || !slices.Contains(asked, "pkg.pyro-test.internal") {
		t.Fatalf("server asked %q: only the granted name should reach it", asked)
	}
	c, err := tn.dial(t, outside, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "GET / HTTP/1.0\r\n\r\n")
}
