package workspace

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// A workspace's network through the manager, on a real guest: a host
// service is refused until granted (and the failing exec says which grant
// would fix it), reached once granted, refused again after the revoke;
// a guest server published on a host port answers on the host's
// loopback. The only host server is this test's, on 127.0.0.1.
func TestWorkspaceVMNetwork(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := vmManager(t, "PYRO_TEST_ENV_MINIMAL", 256)
	ctx := t.Context()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from the host\n")
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	grant := "host.pyro.internal:" + u.Port()
	fetch := "wget -O- http://" + grant + "/"

	ws, err := m.Create(ctx, contract.CreateRequest{Env: "minimal", TTLSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	exec := func(cmd string) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: ws.ID, Command: cmd, TimeoutSeconds: 60})
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		t.Logf("%q: exit %d in %v; network %q; stdout %.200q; stderr %.200q", cmd, r.ExitCode, r.Duration, r.Network, r.Stdout, r.Stderr)
		return r
	}
	refused := func(when string) {
		t.Helper()
		r := exec(fetch)
		if r.ExitCode == 0 {
			t.Fatalf("%s: the guest reached %s", when, grant)
		}
		if !strings.Contains(r.Network, grant) || !strings.Contains(r.Network, "{{network.grant}}") {
			t.Errorf("%s: the failing exec's network note %q does not name %s and {{network.grant}}", when, r.Network, grant)
		}
	}

	t.Run("refused without a grant", func(t *testing.T) { refused("before the grant") })
	t.Run("granted", func(t *testing.T) {
		if _, err := m.NetworkGrant(ctx, ws.ID, []string{grant}); err != nil {
			t.Fatal(err)
		}
		if r := exec(fetch); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "hello from the host") {
			t.Fatalf("with %s granted: exit %d, stdout %q", grant, r.ExitCode, r.Stdout)
		}
		st, err := m.NetworkStatus(ctx, ws.ID)
		if err != nil || len(st.Grants) != 1 || st.Grants[0].Grant != grant || st.Grants[0].TotalConnections == 0 {
			t.Errorf("status after the fetch: %+v, %v", st, err)
		}
	})
	t.Run("refused after the revoke", func(t *testing.T) {
		if _, err := m.NetworkRevoke(ctx, ws.ID, []string{grant}); err != nil {
			t.Fatal(err)
		}
		refused("after the revoke")
	})
	t.Run("published port", func(t *testing.T) {
		// One server on every address, one on the guest's loopback only
		// (the dev-server case the agent's relay exists for).
		if r := exec("mkdir -p /tmp/www && echo hello from the guest > /tmp/www/index.html && " +
			"busybox httpd -p 0.0.0.0:8080 -h /tmp/www && busybox httpd -p 127.0.0.1:8081 -h /tmp/www"); r.ExitCode != 0 {
			t.Fatalf("starting httpd: %q", r.Stderr)
		}
		for _, gp := range []int{8080, 8081} {
			p, err := m.PortPublish(ctx, contract.PublishRequest{ID: ws.ID, GuestPort: gp})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.HostAddrs) == 0 {
				t.Fatalf("published port %+v listens nowhere", p)
			}
			c := http.Client{Timeout: 60 * time.Second}
			for _, addr := range p.HostAddrs {
				resp, err := c.Get(fmt.Sprintf("http://%s/", addr))
				if err != nil {
					if strings.HasPrefix(addr, "[") {
						t.Logf("%s: %v (no IPv6 loopback here?)", addr, err)
						continue
					}
					t.Fatalf("GET %s (guest port %d): %v", addr, gp, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(body), "hello from the guest") {
					t.Errorf("GET %s (guest port %d): %q", addr, gp, body)
				}
			}
		}
	})
}

// vmManager opens a Manager on a fresh state directory for a VM test,
// with the environments of envVar's cache and memMiB per workspace, and
// closes it when the test ends. Disks stay image-sized (any default below
// the image is raised to it): filling a sparse default disk would fill
// the harness's host.
func vmManager(t *testing.T, envVar string, memMiB int) *Manager {
	t.Helper()
	envDir := kvmtest.Path(t, envVar)
	m, err := Open(Options{StateDir: t.TempDir(), CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: memMiB,
		DefaultDiskMiB: 1, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
