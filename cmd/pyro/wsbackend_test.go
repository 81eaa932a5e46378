package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/control"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// companionEnv points this process (and the servers it starts) at a
// control directory and a state directory of the test's own, both short
// enough for socket paths.
func companionEnv(t *testing.T) (runtime, state string) {
	t.Helper()
	for _, p := range []*string{&runtime, &state} {
		d, err := os.MkdirTemp("", "pyro")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		*p = d
	}
	os.Chmod(runtime, 0o700)
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	t.Setenv("PYRO_STATE_DIR", state)
	t.Setenv("PYRO_CACHE_DIR", t.TempDir())
	return runtime, state
}

// pyro mcp serve listens on its control socket while the session lasts:
// pyro workspace finds it, talks to its Manager (an unbuilt environment
// is that Manager's answer), and the socket goes with the server.
func TestMCPServeControlSocket(t *testing.T) {
	runtime, state := companionEnv(t)
	cmd := exec.Command(os.Args[0], "mcp", "serve")
	cmd.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1")
	var stderr lockedText
	cmd.Stderr = &stderr
	client := sdk.NewClient(&sdk.Implementation{Name: "pyro-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr: %s", err, stderr.String())
	}
	b, closeB, err := workspaceBackend(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeB()
	r := b.(*control.Router)
	servers := r.Servers()
	if len(servers) != 1 || servers[0].PID != cmd.Process.Pid {
		t.Fatalf("servers %+v; want the one with pid %d\nstderr: %s", servers, cmd.Process.Pid, stderr.String())
	}
	sock := filepath.Join(runtime, "pyro", "control", strconv.Itoa(cmd.Process.Pid)+".sock")
	if servers[0].Path != sock || servers[0].StateDir != state || !strings.Contains(stderr.String(), sock) {
		t.Fatalf("server %+v: socket %s, state %s; the log should name the socket:\n%s", servers[0], sock, state, stderr.String())
	}
	_, err = b.Create(ctx, contract.CreateRequest{Env: "minimal", TTLSeconds: 600})
	if e, ok := contract.AsError(err); !ok || e.Code != contract.CodeEnvMissing || e.Name != "minimal" {
		t.Fatalf("create of an unbuilt environment through the server: %v", err)
	}
	if list, err := b.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list: %v %v", list, err)
	}
	s.Close()
	cmd.Wait()
	if _, err := os.Stat(servers[0].Path); !os.IsNotExist(err) {
		t.Fatalf("the socket outlived its server: %v", err)
	}
}

func TestMCPServeNoControl(t *testing.T) {
	runtime, _ := companionEnv(t)
	cmd := exec.Command(os.Args[0], "mcp", "serve", "--no-control")
	cmd.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1")
	client := sdk.NewClient(&sdk.Implementation{Name: "pyro-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if servers, err := control.Discover(filepath.Join(runtime, "pyro", "control")); err != nil || len(servers) != 0 {
		t.Fatalf("--no-control: servers %v %v", servers, err)
	}
}

// With no server, pyro workspace works on the state directory itself.
func TestWorkspaceBackendAlone(t *testing.T) {
	_, state := companionEnv(t)
	ctx := context.Background()
	b, closeB, err := workspaceBackend(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := b.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := b.Status(ctx, "nope"); !contract.IsCode(err, contract.CodeNotFound) {
		t.Fatalf("status of nothing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "workspaces")); err != nil {
		t.Fatalf("the fallback did not open the state directory: %v", err)
	}
	closeB()
	closeB() // twice is harmless
}

func TestDoctorControl(t *testing.T) {
	runtime, _ := companionEnv(t)
	dir := filepath.Join(runtime, "pyro", "control")
	var checks []check
	checkControl(func(c check) { checks = append(checks, c) })
	if len(checks) != 1 || !checks[0].OK || !strings.Contains(checks[0].Detail, "none running") {
		t.Fatalf("no server: %+v", checks)
	}

	f := mcptest.New()
	f.Create(context.Background(), contract.CreateRequest{TTLSeconds: 600})
	ln, path, err := control.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { control.Serve(ctx, ln, f, control.Options{Hello: control.Hello{Version: "v9"}}); close(done) }()
	defer func() { cancel(); <-done }()
	// A server that died and left its socket.
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Skip(err)
	}
	p.Wait()
	stale := filepath.Join(dir, strconv.Itoa(p.Pid)+".sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()

	checks = nil
	checkControl(func(c check) { checks = append(checks, c) })
	var text strings.Builder
	for _, c := range checks {
		if !c.OK || c.Warn {
			t.Errorf("a failed or warning check: %+v", c)
		}
		text.WriteString(c.Name + ": " + c.Detail + "\n")
	}
	for _, want := range []string{"pyro server " + strconv.Itoa(os.Getpid()), "1 workspaces (1 running)", path, "v9", "removed 1 stale socket", stale} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("doctor should say %q:\n%s", want, text.String())
		}
	}
}

// lockedText collects a process's output for a test to read meanwhile.
type lockedText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedText) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
