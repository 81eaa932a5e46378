package workspace

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
	"github.com/pyro-mcp/pyro/netstack/dnstest"
)

// A name grant on a real guest: the guest's own resolver (busybox, through
// the resolv.conf the agent wrote) asks the workspace DNS, which resolves
// the granted name through Options.Resolver, a DNS server this test
// started on loopback; wget then fetches from the test's HTTP server. The
// name resolves to a documentation address that the test's dialer maps to
// that server, as a name grant never dials loopback. Another name gets
// NXDOMAIN, is recorded as denied, and never reaches the DNS server.
func TestWorkspaceVMNameGrant(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_MINIMAL")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from the index\n")
	}))
	defer web.Close()
	_, port, _ := net.SplitHostPort(web.Listener.Addr().String())
	dns := dnstest.Start(t, map[string]netip.Addr{"pkg.pyro-test.internal": docAddr})
	res, err := netstack.NewResolver(dns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Options{StateDir: t.TempDir(), CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: 256,
		DefaultDiskMiB: 1, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil)), Resolver: res,
		hooks: hooks{netDialer: mapDialer{to: map[string]string{net.JoinHostPort(docAddr.String(), port): web.Listener.Addr().String()}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := t.Context()
	grant := "pkg.pyro-test.internal:" + port
	ws, err := m.Create(ctx, contract.CreateRequest{Env: "minimal", TTLSeconds: 3600, Network: []string{grant}})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(cmd string) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: ws.ID, Command: cmd, TimeoutSeconds: 60})
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		t.Logf("%q: exit %d in %v; network %q; stdout %.300q; stderr %.300q", cmd, r.ExitCode, r.Duration, r.Network, r.Stdout, r.Stderr)
		return r
	}

	if r := exec("nslookup pkg.pyro-test.internal"); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), docAddr.String()) {
		t.Errorf("nslookup of the granted name: exit %d, stdout %q", r.ExitCode, r.Stdout)
	}
	if r := exec("wget -O- http://" + grant + "/"); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "hello from the index") {
		t.Errorf("wget of the granted name: exit %d, stdout %q", r.ExitCode, r.Stdout)
	}
	r := exec("nslookup other.pyro-test.internal")
	if out := string(r.Stdout) + string(r.Stderr); r.ExitCode == 0 || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nslookup of an ungranted name: exit %d, %q; want NXDOMAIN", r.ExitCode, out)
	}
	if !strings.Contains(r.Network, "other.pyro-test.internal") || !strings.Contains(r.Network, "{{network.grant}}") {
		t.Errorf("the failing exec's network note %q does not name the refused name and {{network.grant}}", r.Network)
	}
	st, err := m.NetworkStatus(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	denied := slices.ContainsFunc(st.Denials, func(d contract.Denial) bool {
		return d.Protocol == "dns" && d.Name == "other.pyro-test.internal"
	})
	if !denied {
		t.Errorf("the ungranted name is not among the denials: %+v", st.Denials)
	}
	if len(st.Grants) != 1 || st.Grants[0].TotalConnections == 0 {
		t.Errorf("the name grant carried no connection: %+v", st.Grants)
	}
	if asked := dns.Asked(); !slices.Contains(asked, "pkg.pyro-test.internal") || slices.Contains(asked, "other.pyro-test.internal") {
		t.Errorf("the test DNS server was asked %q", asked)
	}
}
