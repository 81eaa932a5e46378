package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/control"
)

// The terminal companion's plumbing against the real server: a workspace
// an MCP client created is listed, and run in with full output and exit
// code, from another process's point of view (this one) through the
// server's control socket; and the chat sees that exec in its journal.
func TestControlCompanionSeesChatWorkspace(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	runtime, err := os.MkdirTemp("", "pyro") // short: a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runtime) })
	os.Chmod(runtime, 0o700)
	state := t.TempDir()
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_DEBIAN")
	// The server (startMCP passes the environment on) and this process's
	// fallback agree on where sockets and workspaces are.
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	t.Setenv("PYRO_STATE_DIR", state)
	t.Setenv("PYRO_CACHE_DIR", filepath.Dir(filepath.Dir(envDir)))
	m := startMCP(t, state)

	ws := m.ok("workspace_create", map[string]any{"name": "chat"})
	id := str(ws["workspace"].(map[string]any)["id"])

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lw := &testLogWriter{t: t}
	t.Cleanup(lw.stop)
	b, closeB, err := workspaceBackend(ctx, lw)
	if err != nil {
		t.Fatal(err)
	}
	defer closeB()
	r := b.(*control.Router)
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].Name != "chat" || list[0].State != contract.StateRunning {
		t.Fatalf("the companion should list the chat's running workspace %s: %+v", id, list)
	}
	if s, ok := r.Owner(id); !ok || s.PID != m.cmd.Process.Pid {
		t.Fatalf("the workspace's owner: %+v %v; want the server, pid %d", s, ok, m.cmd.Process.Pid)
	}

	// Far more output than a tool result carries, and a failing exit.
	cmd := `head -c 300000 /dev/zero | tr '\0' x; echo; echo oops >&2; exit 3`
	start := time.Now()
	res, err := r.Exec(ctx, contract.ExecRequest{ID: "chat", Command: cmd, TimeoutSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exec through the control socket took %v", time.Since(start))
	want := append(bytes.Repeat([]byte("x"), 300000), '\n')
	if res.ExitCode != 3 || !bytes.Equal(res.Stdout, want) || string(res.Stderr) != "oops\n" ||
		res.StdoutSize != int64(len(want)) || res.OutputTruncated {
		t.Fatalf("exec: exit %d, %d bytes of stdout (size %d, truncated %v), stderr %q",
			res.ExitCode, len(res.Stdout), res.StdoutSize, res.OutputTruncated, res.Stderr)
	}

	// The same from a second terminal: the pyro binary itself, as a
	// person types it, sees the chat's workspace and runs in it with its
	// full output on stdout and the command's exit code as its own.
	pyro := kvmtest.Path(t, "PYRO_TEST_PYRO")
	var lout, lerr bytes.Buffer
	ls := exec.Command(pyro, "workspace", "list", "--id-only")
	ls.Stdout, ls.Stderr = &lout, &lerr
	if err := ls.Run(); err != nil || lout.String() != id+"\n" {
		t.Fatalf("pyro workspace list --id-only: %v: stdout %q, stderr %q; want the chat's %s", err, lout.String(), lerr.String(), id)
	}
	var xout, xerr bytes.Buffer
	x := exec.Command(pyro, "workspace", "exec", "chat", "--", "sh", "-c", `head -c 200000 /dev/zero | tr '\0' y; echo; echo late >&2; exit 5`)
	x.Stdout, x.Stderr = &xout, &xerr
	err = x.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 5 {
		t.Fatalf("pyro workspace exec: %v (want exit status 5); stderr %q", err, xerr.String())
	}
	if want := append(bytes.Repeat([]byte("y"), 200000), '\n'); !bytes.Equal(xout.Bytes(), want) || !strings.Contains(xerr.String(), "late") {
		t.Fatalf("pyro workspace exec: %d bytes of stdout, want %d; stderr %q", xout.Len(), len(want), xerr.String())
	}

	// The chat's server ran it: its journal has it.
	logs := m.ok("workspace_logs", map[string]any{"id": id})
	found := false
	for _, e := range logs["entries"].([]any) {
		e := e.(map[string]any)
		if int64(num(e["seq"])) == res.Seq && str(e["kind"]) == "exec" && strings.Contains(str(e["command"]), "head -c 300000") {
			if e["exit_code"] == nil || num(e["exit_code"]) != 3 {
				t.Fatalf("the journal's entry has the wrong exit code: %v", e)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("workspace_logs does not show the companion's exec (seq %d): %v", res.Seq, logs)
	}
	m.ok("workspace_delete", map[string]any{"id": id})
	if list, err := r.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after the chat deleted it: %+v %v", list, err)
	}
}
