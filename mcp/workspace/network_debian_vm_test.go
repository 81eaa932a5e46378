package workspace

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
)

// floodScript opens TCP connections to host.pyro.internal:PORT in a tight
// loop, holding every one that connects, until /tmp/flood.stop exists or
// SECONDS have passed, and prints "connected refused other". At the
// connection limit the stack refuses at once (a reset), so the loop keeps
// hammering it until the end.
const floodScript = `import os, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
held, refused, other = [], 0, 0
end = time.time() + secs
while time.time() < end and not os.path.exists("/tmp/flood.stop"):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect(("host.pyro.internal", port))
        held.append(s)
    except ConnectionRefusedError:
        refused += 1
        s.close()
    except OSError as e:
        other += 1
        s.close()
print(len(held), refused, other)
`

// The network of debian-12 workspaces, with its own tools (python3, curl).
//
// A guest that opens connections in a tight loop meets its grant's
// connection limit, which is refused at the stack and recorded in its
// status, while a second workspace's download from the host carries on
// and arrives whole; once the flooding process exits its connections are
// gone and the workspace connects again. Then, in the second workspace:
// curl to an ungranted host service fails at once and the failing exec
// names the grant that would fix it; granted it succeeds, revoked it fails
// again; and python3's http.server bound to the guest's 127.0.0.1 and
// published is fetched from the host on 127.0.0.1 and ::1.
func TestWorkspaceVMNetworkDebian(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := vmManager(t, "PYRO_TEST_ENV_DEBIAN", 256)
	ctx := t.Context()

	// The flood's target accepts and holds every connection.
	hold, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var heldConns sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			heldConns.Add(1)
			// A guest that closes gets its close back.
			go func() { defer heldConns.Done(); io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	defer func() {
		hold.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		heldConns.Wait()
	}()
	// The bystander's download.
	const size = 16 << 20
	web, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hello" {
			io.WriteString(w, "hello from the host\n")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 1<<20)
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})}
	go srv.Serve(web)
	defer srv.Close()
	hello, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	helloSrv := &http.Server{Handler: srv.Handler}
	go helloSrv.Serve(hello)
	defer helloSrv.Close()
	helloGrant := fmt.Sprintf("%s:%d", netstack.HostServiceName, hello.Addr().(*net.TCPAddr).Port)
	holdGrant := fmt.Sprintf("%s:%d", netstack.HostServiceName, hold.Addr().(*net.TCPAddr).Port)
	webGrant := fmt.Sprintf("%s:%d", netstack.HostServiceName, web.Addr().(*net.TCPAddr).Port)

	create := func(name, grant string) string {
		ws, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", Name: name, TTLSeconds: 3600, Network: []string{grant}})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return ws.ID
	}
	flooder, bystander := create("flooder", holdGrant), create("bystander", webGrant)
	exec := func(id, cmd string, timeout int) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, TimeoutSeconds: timeout})
		if err != nil {
			t.Errorf("%q: %v", cmd, err)
			return contract.ExecResult{ExitCode: -1}
		}
		t.Logf("%.80q: exit %d in %v; network %q; stdout %.300q; stderr %.300q", cmd, r.ExitCode, r.Duration, r.Network, r.Stdout, r.Stderr)
		return r
	}
	if r := exec(flooder, "cat > /tmp/flood.py <<'EOF'\n"+floodScript+"EOF", 60); r.ExitCode != 0 {
		t.Fatal("writing the flood script failed")
	}

	// The flood runs until the download is over (at most floodSeconds).
	const floodSeconds = 240
	floodDone := make(chan contract.ExecResult, 1)
	go func() {
		floodDone <- exec(flooder, fmt.Sprintf("python3 /tmp/flood.py %d %d", hold.Addr().(*net.TCPAddr).Port, floodSeconds), floodSeconds+120)
	}()
	// Start the download once the flood has met the limit.
	deadline := time.Now().Add(floodSeconds * time.Second)
	for {
		st, err := m.NetworkStatus(ctx, flooder)
		if err != nil {
			t.Fatal(err)
		}
		if st.LimitHits > 0 {
			t.Logf("the flood met the limit: %d connections live, %d refusals by a limit", st.Connections, st.LimitHits)
			break
		}
		select {
		case fr := <-floodDone:
			t.Fatalf("the flood ended before it met a limit: exit %d, stdout %q, stderr %q; status %+v", fr.ExitCode, fr.Stdout, fr.Stderr, st)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood never met a limit: status %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := exec(bystander, fmt.Sprintf("curl -sS http://%s/ | wc -c", webGrant), 300)
	if r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != strconv.Itoa(size) {
		t.Errorf("the bystander's download during the flood: exit %d, %q bytes, want %d", r.ExitCode, r.Stdout, size)
	}
	st, err := m.NetworkStatus(ctx, flooder)
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != netstack.DefaultMaxConnsPerGrant {
		t.Errorf("during the flood the flooder holds %d connections, want the per-grant limit %d", st.Connections, netstack.DefaultMaxConnsPerGrant)
	}

	exec(flooder, "touch /tmp/flood.stop", 60)
	fr := <-floodDone
	var held, refused, other int
	if _, err := fmt.Sscan(string(fr.Stdout), &held, &refused, &other); err != nil || fr.ExitCode != 0 {
		t.Fatalf("the flood: exit %d, stdout %q, stderr %q", fr.ExitCode, fr.Stdout, fr.Stderr)
	}
	if held != netstack.DefaultMaxConnsPerGrant || refused == 0 {
		t.Errorf("the flood held %d connections and was refused %d times (%d other errors); want %d held and refusals",
			held, refused, other, netstack.DefaultMaxConnsPerGrant)
	}
	if n := accepted.Load(); n != netstack.DefaultMaxConnsPerGrant {
		t.Errorf("the host accepted %d of the flood's connections, want %d", n, netstack.DefaultMaxConnsPerGrant)
	}
	st, err = m.NetworkStatus(ctx, flooder)
	if err != nil {
		t.Fatal(err)
	}
	limitDenial := false
	for _, d := range st.Denials {
		limitDenial = limitDenial || strings.Contains(d.Reason, "MaxConnsPerGrant")
	}
	if st.LimitHits == 0 || !limitDenial {
		t.Errorf("the flooder's status does not record the limit: %d limit hits, denials %+v", st.LimitHits, st.Denials)
	}
	bst, err := m.NetworkStatus(ctx, bystander)
	if err != nil {
		t.Fatal(err)
	}
	if bst.LimitHits != 0 || len(bst.Grants) != 1 || bst.Grants[0].BytesIn < size {
		t.Errorf("the bystander's status: %d limit hits, grants %+v; want none and %d bytes in", bst.LimitHits, bst.Grants, size)
	}
	// The flood's process is gone and its connections with it: the
	// workspace connects again.
	if r := exec(flooder, fmt.Sprintf("rm /tmp/flood.stop && python3 /tmp/flood.py %d 0.5", hold.Addr().(*net.TCPAddr).Port), 120); r.ExitCode != 0 ||
		strings.HasPrefix(string(r.Stdout), "0 ") {
		t.Errorf("after the flood the flooder cannot connect: exit %d, stdout %q", r.ExitCode, r.Stdout)
	}

	t.Run("grant and revoke", func(t *testing.T) {
		fetch := fmt.Sprintf("curl -sS --max-time 60 http://%s/hello", helloGrant)
		refused := func(when string) {
			t.Helper()
			begin := time.Now()
			r := exec(bystander, fetch, 120)
			if r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Failed to connect") {
				t.Errorf("%s: curl to %s: exit %d, stderr %q; want a refused connection", when, helloGrant, r.ExitCode, r.Stderr)
			}
			if !strings.Contains(r.Network, helloGrant) || !strings.Contains(r.Network, "{{network.grant}}") {
				t.Errorf("%s: the failing exec's network note %q does not name %s and {{network.grant}}", when, r.Network, helloGrant)
			}
			t.Logf("%s: refused in %v", when, time.Since(begin))
		}
		refused("before the grant")
		st, err := m.NetworkStatus(ctx, bystander)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range st.Denials {
			found = found || d.Protocol == "tcp" && int(d.Port) == hello.Addr().(*net.TCPAddr).Port
		}
		if !found {
			t.Errorf("no tcp denial for %s in status %+v", helloGrant, st.Denials)
		}
		if _, err := m.NetworkGrant(ctx, bystander, []string{helloGrant}); err != nil {
			t.Fatal(err)
		}
		if r := exec(bystander, fetch, 120); r.ExitCode != 0 || string(r.Stdout) != "hello from the host\n" {
			t.Errorf("with %s granted: exit %d, stdout %q", helloGrant, r.ExitCode, r.Stdout)
		}
		if _, err := m.NetworkRevoke(ctx, bystander, []string{helloGrant}); err != nil {
			t.Fatal(err)
		}
		refused("after the revoke")
	})

	t.Run("published loopback server", func(t *testing.T) {
		const page = "served by python on the guest loopback\n"
		if r := exec(bystander, "mkdir -p /tmp/www && printf '%s' '"+page+"' > /tmp/www/index.html && "+
			"cd /tmp/www && (setsid python3 -m http.server 8000 --bind 127.0.0.1 >/tmp/http.log 2>&1 &) && "+
			"for i in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.2; done; cat /tmp/http.log; exit 1", 180); r.ExitCode != 0 {
			t.Fatalf("starting python3 -m http.server: exit %d", r.ExitCode)
		}
		p, err := m.PortPublish(ctx, contract.PublishRequest{ID: bystander, GuestPort: 8000})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("published: %+v", p)
		var v4, v6 bool
		c := http.Client{Timeout: 60 * time.Second}
		for _, addr := range p.HostAddrs {
			v4 = v4 || strings.HasPrefix(addr, "127.0.0.1:")
			v6 = v6 || strings.HasPrefix(addr, "[::1]:")
			resp, err := c.Get(fmt.Sprintf("http://%s/", addr))
			if err != nil {
				t.Errorf("GET %s: %v", addr, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != page {
				t.Errorf("GET %s: %s %q, want %q", addr, resp.Status, body, page)
			}
		}
		if !v4 {
			t.Errorf("published port listens on %v, not on 127.0.0.1", p.HostAddrs)
		}
		if !v6 {
			// A host without IPv6 loopback gets 127.0.0.1 alone.
			if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
				l.Close()
				t.Errorf("published port listens on %v, not on ::1, which this host has", p.HostAddrs)
			}
		}
	})

	// The loop a newcomer runs: a package index granted, pip installs from
	// it (a mirror on the host's loopback, started here), the code runs.
	t.Run("pip install from a granted index", func(t *testing.T) {
		index, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		isrv := &http.Server{Handler: pypiMirror(t)}
		go isrv.Serve(index)
		defer isrv.Close()
		grant := fmt.Sprintf("%s:%d", netstack.HostServiceName, index.Addr().(*net.TCPAddr).Port)
		if _, err := m.NetworkGrant(ctx, bystander, []string{grant}); err != nil {
			t.Fatal(err)
		}
		r := exec(bystander, "pip install --disable-pip-version-check --no-cache-dir --break-system-packages --target /tmp/site "+
			"--trusted-host "+netstack.HostServiceName+" "+
			"--index-url http://"+grant+"/simple/ pyro-hello && PYTHONPATH=/tmp/site python3 -c 'import pyro_hello; print(pyro_hello.GREETING)'", 300)
		if r.ExitCode != 0 || !strings.HasSuffix(string(r.Stdout), "hello from the mirror\n") {
			t.Errorf("pip install from the granted mirror: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})
}

// pypiMirror serves a PEP 503 simple index with one pure-Python wheel,
// pyro-hello 1.0, whose module pyro_hello has GREETING.
func pypiMirror(t *testing.T) http.Handler {
	t.Helper()
	const name = "pyro_hello-1.0-py3-none-any.whl"
	files := map[string]string{
		"pyro_hello/__init__.py":                 "GREETING = 'hello from the mirror'\n",
		"pyro_hello-1.0.dist-info/METADATA":      "Metadata-Version: 2.1\nName: pyro-hello\nVersion: 1.0\n",
		"pyro_hello-1.0.dist-info/WHEEL":         "Wheel-Version: 1.0\nGenerator: pyro-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
		"pyro_hello-1.0.dist-info/top_level.txt": "pyro_hello\n",
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, p := range slices.Sorted(maps.Keys(files)) {
		w, err := zw.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, files[p])
		sum := sha256.Sum256([]byte(files[p]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", p, base64.RawURLEncoding.EncodeToString(sum[:]), len(files[p]))
	}
	record.WriteString("pyro_hello-1.0.dist-info/RECORD,,\n")
	w, err := zw.Create("pyro_hello-1.0.dist-info/RECORD")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, record.String())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	wheel := buf.Bytes()
	sum := sha256.Sum256(wheel)
	mux := http.NewServeMux()
	mux.HandleFunc("/simple/pyro-hello/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<!DOCTYPE html><html><body><a href=\"/files/%s#sha256=%s\">%s</a></body></html>\n", name, hex.EncodeToString(sum[:]), name)
	})
	mux.HandleFunc("/files/"+name, func(w http.ResponseWriter, _ *http.Request) { w.Write(wheel) })
	return mux
}
