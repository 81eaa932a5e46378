package instance

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/netstack"
)

// noResolver refuses every name: the VM test resolves nothing outside (the
// stack answers host.pyro.internal itself).
type noResolver struct{}

func (noResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "the test resolves no names", Name: host, IsNotFound: true}
}

// transferBytes is the size of the throughput subtest's transfers: enough
// to outlast connection setup (the vsock figure in the README uses the
// same size), small enough for the guest's tmpfs and the harness.
const transferBytes = 16 << 20

// netTools are the guest commands the network test uses in an env.
type netTools struct {
	fetch string // prints a URL's body on stdout
	// refused is what fetch's stderr says when the connection is refused
	// (busybox wget names it; curl's exit 7 says only "Couldn't connect").
	refused string
	// serve starts a daemon serving /tmp/www on 0.0.0.0:8080 and returns
	// once it answers.
	serve string
}

var netToolsByEnv = map[string]netTools{
	// Plain -O-: this busybox's wget crashes with -q -T.
	"minimal": {fetch: "wget -O- ", refused: "Connection refused", serve: "busybox httpd -p 0.0.0.0:8080 -h /tmp/www"},
	"debian-12": {fetch: "curl -sS ", refused: "curl: (7) Failed to connect",
		serve: "cd /tmp/www && (setsid python3 -m http.server 8080 >/tmp/http.log 2>&1 &) && " +
			"for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; cat /tmp/http.log; exit 1"},
}

// TestNetworkEndToEnd boots each env with a NIC whose other end is a
// netstack.Stack, and checks, in one VM per env: the agent configured eth0 and
// resolv.conf; a host service on the test's own loopback listener is
// refused at once without a grant (and the refusal is in Status), and
// reached by name with one; a published port reaches a guest listener.
func TestNetworkEndToEnd(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	for _, te := range testEnvs {
		t.Run(te.name, func(t *testing.T) { testNetwork(t, loadEnv(t, te.name, te.variable), netToolsByEnv[te.name]) })
	}
}

func testNetwork(t *testing.T, e *env.Env, tools netTools) {
	const body = "hello from the host's loopback\n"
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", fmt.Sprint(transferBytes))
			io.CopyN(w, zeroReader{}, transferBytes)
			return
		}
		io.WriteString(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	link := netstack.NewLink()
	st, err := netstack.New(netstack.Config{Link: link.Endpoint(), Resolver: noResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	console := new(countingBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Env: e, Disk: newDisk(t, e), MemMiB: 384, Console: console, Logger: testLogger(t), Net: link})
	if err != nil {
		t.Fatalf("starting: %v\nconsole:\n%s", err, console.String())
	}
	consoles.Store(vm, console)
	t.Cleanup(func() {
		consoles.Delete(vm)
		vm.Close()
		ns, _ := vm.NetStats()
		t.Logf("NIC stats %+v; link %+v", ns, link.Stats())
	})
	t.Logf("agent ready after %v", vm.Ready)

	url := fmt.Sprintf("http://%s:%d/", netstack.HostServiceName, port)
	fetch := tools.fetch + url

	t.Run("configured", func(t *testing.T) {
		out := mustSh(t, vm, "cat /sys/class/net/eth0/mtu /etc/resolv.conf; ip -4 addr show eth0; ip route")
		for _, want := range []string{"65520\n", "nameserver 10.0.2.2\n", "inet 10.0.2.15/24", "default via 10.0.2.2 dev eth0"} {
			if !strings.Contains(out, want) {
				t.Errorf("guest network lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("host-service-denied", func(t *testing.T) {
		begin := time.Now()
		r := sh(t, vm, fetch)
		took := time.Since(begin)
		if r.ExitCode == 0 || strings.Contains(r.stdout, body) {
			t.Fatalf("ungranted host service reached: exit %d, %q", r.ExitCode, r.stdout)
		}
		if !strings.Contains(r.stderr, tools.refused) {
			t.Errorf("ungranted host service: %q after %v, want connection refused", r.stderr, took)
		}
		found := false
		for _, d := range st.Status().Denials {
			found = found || d.Port == uint16(port) && d.Protocol == "tcp"
		}
		if !found {
			t.Errorf("no tcp denial for port %d in status %+v", port, st.Status().Denials)
		}
	})

	t.Run("host-service-granted", func(t *testing.T) {
		g, err := netstack.ParseGrant(fmt.Sprintf("%s:%d", netstack.HostServiceName, port))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Grant(g); err != nil {
			t.Fatal(err)
		}
		if out := mustSh(t, vm, fetch); out != body {
			t.Fatalf("granted host service: got %q, want %q", out, body)
		}
	})

	t.Run("published", func(t *testing.T) {
		mustSh(t, vm, "mkdir -p /tmp/www && echo 'served by the guest' >/tmp/www/index.html && "+tools.serve)
		hp, err := st.Publish(8080, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
		if err != nil {
			t.Fatalf("published port: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "served by the guest\n" {
			t.Fatalf("published port: %s %q", resp.Status, b)
		}
	})

	// Figures only (no assertion of speed): a host-service download into
	// the guest and a published-port download out of it.
	t.Run("throughput", func(t *testing.T) {
		begin := time.Now()
		r := mustSh(t, vm, tools.fetch+url+"big | wc -c")
		in := time.Since(begin)
		if strings.TrimSpace(r) != fmt.Sprint(transferBytes) {
			t.Fatalf("guest received %q bytes, want %d", r, transferBytes)
		}
		mustSh(t, vm, fmt.Sprintf("dd if=/dev/zero of=/tmp/www/big bs=1M count=%d 2>/dev/null", transferBytes>>20))
		hp, err := st.Publish(8080, 0)
		if err != nil {
			t.Fatal(err)
		}
		begin = time.Now()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/big", hp))
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out := time.Since(begin)
		if err != nil || n != transferBytes {
			t.Fatalf("published download: %d bytes, %v", n, err)
		}
		t.Logf("host service -> guest: %d MiB in %v (%.0f MiB/s, including the exec); published guest -> host: %.0f MiB/s",
			transferBytes>>20, in.Round(time.Millisecond), mibPerSec(transferBytes, in), mibPerSec(transferBytes, out))
		ns, _ := vm.NetStats()
		t.Logf("NIC %+v; link %+v", ns, link.Stats())
	})
}
