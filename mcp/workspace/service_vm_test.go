package workspace

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Services in a debian-12 workspace, one workspace for every subtest:
// python3's http.server with http readiness answers curl from three
// later execs, and an exec's timeout (which kills its own cgroup) leaves
// it running; a service that crashes on start reports failed with its
// output in the same result; one that ignores SIGTERM is killed after
// the grace; ten services run at once, all listed; the logs live on a
// tmpfs outside /workspace (the diff sees none); and a reset ends every
// service (none listed after it, the port closed).
func TestWorkspaceVMServices(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := vmManager(t, "PYRO_TEST_ENV_DEBIAN", 512)
	ctx := t.Context()
	ws, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", TTLSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.ID
	exec := func(cmd string, timeout int) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, TimeoutSeconds: timeout})
		if err != nil {
			t.Fatalf("exec %q: %v", cmd, err)
		}
		return r
	}
	start := func(req contract.ServiceStartRequest) contract.ServiceStatus {
		t.Helper()
		req.ID, req.Wait = id, contract.MaxServiceWaitSeconds*time.Second
		st, err := m.ServiceStart(ctx, req)
		if err != nil {
			t.Fatalf("service_start %s: %v", req.Name, err)
		}
		return st
	}
	const url = "http://127.0.0.1:8000/hello.txt"
	if r := exec("echo hello from a service > /workspace/hello.txt", 30); r.ExitCode != 0 {
		t.Fatalf("seeding: %+v", r)
	}

	t.Run("http", func(t *testing.T) {
		st := start(contract.ServiceStartRequest{Name: "web", Argv: []string{"python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"},
			Readiness: contract.Readiness{Kind: contract.ReadyHTTP, URL: url, TimeoutSeconds: 300, IntervalMs: 100}})
		if st.State != contract.ServiceReady || st.PID <= 1 || st.ReadyAt.IsZero() {
			t.Fatalf("start: %+v", st)
		}
		for i := range 3 {
			if r := exec("curl -fsS "+url, 60); r.ExitCode != 0 || string(r.Stdout) != "hello from a service\n" {
				t.Fatalf("curl %d: exit %d, %q %q", i, r.ExitCode, r.Stdout, r.Stderr)
			}
		}
		// It runs in a cgroup of its own, under the limits on user commands.
		if r := exec(fmt.Sprintf("grep -qx %d /sys/fs/cgroup/pyro-user/svc-web/cgroup.procs", st.PID), 30); r.ExitCode != 0 {
			t.Errorf("the service is not in pyro-user/svc-web: %q", r.Stderr)
		}
		// An exec that times out has its own cgroup killed: never the service's.
		if r := exec("sleep 100", 1); !r.TimedOut {
			t.Fatalf("sleep: %+v", r)
		}
		if r := exec("curl -fsS "+url, 60); r.ExitCode != 0 {
			t.Fatalf("curl after an exec's timeout: exit %d %q", r.ExitCode, r.Stderr)
		}
		l, err := m.ServiceLogs(ctx, contract.ServiceLogsRequest{ID: id, Name: "web", TailLines: 10, MaxBytes: 64 << 10})
		if err != nil || !strings.Contains(string(l.Stderr.Data), "GET /hello.txt") {
			t.Fatalf("logs: %v %+v", err, l.Stderr)
		}
		// The logs are on a tmpfs outside /workspace, and the diff sees only hello.txt.
		if r := exec("grep ' /run/pyro/services tmpfs ' /proc/mounts && ls /run/pyro/services/web", 30); r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "stderr") {
			t.Fatalf("log tmpfs: %q %q", r.Stdout, r.Stderr)
		}
		d, err := m.Diff(ctx, contract.DiffRequest{ID: id})
		if err != nil || len(d.Files) != 1 || d.Files[0].Path != "hello.txt" {
			t.Fatalf("diff: %v %+v", err, d.Files)
		}
		w, err := m.Status(ctx, id)
		if err != nil || len(w.Services) != 1 || w.Services[0].Name != "web" || w.Services[0].State != contract.ServiceReady {
			t.Fatalf("workspace status: %v %+v", err, w.Services)
		}
	})

	t.Run("crash", func(t *testing.T) {
		st := start(contract.ServiceStartRequest{Name: "crash", Command: "echo boom >&2; exit 3",
			Readiness: contract.Readiness{Kind: contract.ReadyTCP, Port: 8999, TimeoutSeconds: 300}})
		if st.State != contract.ServiceFailed || st.Reason != "exited_before_ready" || st.ExitCode == nil || *st.ExitCode != 3 ||
			!strings.Contains(string(st.StderrTail), "boom") {
			t.Fatalf("crash: %+v (stderr tail %q)", st, st.StderrTail)
		}
	})

	t.Run("ignores-term", func(t *testing.T) {
		st := start(contract.ServiceStartRequest{Name: "stubborn", Command: "trap '' TERM; touch /tmp/stubborn.up; while :; do sleep 1; done",
			Readiness: contract.Readiness{Kind: contract.ReadyFile, Path: "/tmp/stubborn.up", TimeoutSeconds: 300, IntervalMs: 50}})
		if st.State != contract.ServiceReady {
			t.Fatalf("start: %+v", st)
		}
		pid := st.PID
		st, err := m.ServiceStop(ctx, id, "stubborn", 2*time.Second)
		if err != nil || st.State != contract.ServiceStopped || st.Reason != "killed_after_grace" || st.Signal != "SIGKILL" {
			t.Fatalf("stop: %v %+v", err, st)
		}
		if r := exec(fmt.Sprintf("test -e /proc/%d", pid), 30); r.ExitCode == 0 {
			t.Errorf("pid %d is still there after the stop", pid)
		}
		// Nothing of it is left: no sleep runs but in the services below.
		if r := exec(`for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 1 $'`, 30); strings.TrimSpace(string(r.Stdout)) != "0" {
			t.Errorf("sleeps left after the stop: %q", r.Stdout)
		}
	})

	t.Run("ten", func(t *testing.T) {
		for i := range 10 {
			name := fmt.Sprintf("loop%d", i)
			st := start(contract.ServiceStartRequest{Name: name, Command: fmt.Sprintf("touch /tmp/%s.ready; exec sleep 100000", name),
				Readiness: contract.Readiness{Kind: contract.ReadyFile, Path: "/tmp/" + name + ".ready", TimeoutSeconds: 300, IntervalMs: 50}})
			if st.State != contract.ServiceReady {
				t.Fatalf("%s: %+v", name, st)
			}
		}
		list, err := m.ServiceStatus(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, s := range list {
			if s.State == contract.ServiceReady {
				ready++
			}
		}
		if ready != 11 { // web and the ten
			t.Errorf("%d services ready, want 11: %+v", ready, list)
		}
	})

	t.Run("reset", func(t *testing.T) {
		if _, err := m.Reset(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		list, err := m.ServiceStatus(ctx, id, "")
		if err != nil || len(list) != 0 {
			t.Fatalf("after reset: %v %+v", err, list)
		}
		if r := exec("curl -sS --max-time 10 http://127.0.0.1:8000/", 60); r.ExitCode == 0 {
			t.Errorf("port 8000 answers after the reset: %q", r.Stdout)
		}
	})
}
