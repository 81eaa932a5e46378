package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// The product end to end: the official go-sdk MCP client drives the real
// pyro binary's `pyro mcp serve` over stdio, on debian-12 workspaces.

// mcpServer is one running `pyro mcp serve` and a client session to it.
type mcpServer struct {
	t     testing.TB
	cmd   *exec.Cmd
	s     *sdk.ClientSession
	state string
	out   *outputSchemas // validates every result (mcpschema_test.go)

	mu sync.Mutex // guards the fields below
	// calls counts the calls made; each carries its number as its progress token.
	calls int
	// progress holds the progress messages received, by token.
	progress map[string][]string
}

func startMCP(t testing.TB, state string) *mcpServer {
	t.Helper()
	pyro := kvmtest.Path(t, "PYRO_TEST_PYRO")
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_DEBIAN")
	cmd := exec.Command(pyro, "mcp", "serve", "--profile", "workspace-full")
	cmd.Env = append(os.Environ(), "PYRO_STATE_DIR="+state, "PYRO_CACHE_DIR="+filepath.Dir(filepath.Dir(envDir)))
	logw := &testLogWriter{t: t}
	cmd.Stderr = logw
	t.Cleanup(logw.stop) // runs after the session's Close below
	m := &mcpServer{t: t, cmd: cmd, state: state, progress: map[string][]string{}}
	client := sdk.NewClient(&sdk.Implementation{Name: "pyro-e2e", Version: "1"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			m.mu.Lock()
			tok := fmt.Sprint(r.Params.ProgressToken)
			m.progress[tok] = append(m.progress[tok], r.Params.Message)
			m.mu.Unlock()
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connecting to pyro mcp serve: %v", err)
	}
	t.Logf("initialize answered after %v", time.Since(start))
	m.s, m.out = s, &outputSchemas{s: s}
	t.Cleanup(func() { s.Close() })
	return m
}

// workspaceDirs lists the entries of state's workspaces directory but a
// standby VM's: a directory with no record, which a server holds for its
// next create and removes when it closes (or the next one does).
func workspaceDirs(state string) []string {
	ents, _ := os.ReadDir(filepath.Join(state, "workspaces"))
	var out []string
	for _, e := range ents {
		_, err := os.Stat(filepath.Join(state, "workspaces", e.Name(), "record.json"))
		if e.IsDir() && strings.HasPrefix(e.Name(), "ws-") && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

// testLogWriter relays the server's stderr to the test log until the test
// ends (logging after that panics).
type testLogWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Logf("server: %s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// call calls a tool and returns its structured result and whether it is a
// tool error. The text block must mirror the structured content.
func (m *mcpServer) call(tool string, args map[string]any) (map[string]any, bool) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m.mu.Lock()
	m.calls++
	p := &sdk.CallToolParams{Name: tool, Arguments: args}
	p.SetProgressToken(fmt.Sprint(m.calls))
	m.mu.Unlock()
	res, err := m.s.CallTool(ctx, p)
	if err != nil {
		m.t.Fatalf("%s: protocol error: %v", tool, err)
	}
	m.out.check(m.t, tool, res)
	var out map[string]any
	if len(res.Content) == 1 {
		if tc, ok := res.Content[0].(*sdk.TextContent); ok {
			if err := json.Unmarshal([]byte(tc.Text), &out); err != nil {
				if res.IsError && res.StructuredContent == nil {
					// The SDK's own schema validation answers in plain text.
					return map[string]any{"error": "invalid_arguments", "message": tc.Text}, true
				}
				m.t.Fatalf("%s: text block is not JSON: %v: %q", tool, err, tc.Text)
			}
			if len(tc.Text) > 10<<10 {
				m.t.Errorf("%s: result of %d bytes exceeds 10 KiB", tool, len(tc.Text))
			}
		}
	}
	if out == nil {
		m.t.Fatalf("%s: no JSON text block: %+v", tool, res)
	}
	if res.StructuredContent != nil {
		a, _ := json.Marshal(res.StructuredContent)
		b, _ := json.Marshal(out)
		if string(a) != string(b) {
			m.t.Errorf("%s: structuredContent and text differ:\n%s\n%s", tool, a, b)
		}
	}
	return out, res.IsError
}

// lastProgress waits until one of the last call's progress messages
// starts with want (notifications may be handled after the result), and
// returns them.
func (m *mcpServer) lastProgress(want string) []string {
	m.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.mu.Lock()
		msgs := slices.Clone(m.progress[fmt.Sprint(m.calls)])
		m.mu.Unlock()
		found := slices.ContainsFunc(msgs, func(s string) bool { return strings.HasPrefix(s, want) })
		if found || time.Now().After(deadline) {
			if !found {
				m.t.Errorf("progress of call %d lacks %q: %q", m.calls, want, msgs)
			}
			return msgs
		}
	}
}

// ok calls a tool that must succeed.
func (m *mcpServer) ok(tool string, args map[string]any) map[string]any {
	m.t.Helper()
	out, isErr := m.call(tool, args)
	if isErr {
		m.t.Fatalf("%s %v: tool error: %v", tool, args, out)
	}
	return out
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func str(v any) string { s, _ := v.(string); return s }

// pythonFixture writes a tiny Python package whose test fails.
func pythonFixture(t testing.TB) string {
	dir := t.TempDir()
	files := map[string]string{
		"calc/__init__.py":   "def add(a, b):\n    return a - b\n",
		"tests/__init__.py":  "",
		"tests/test_calc.py": "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
		"README.md":          "calc: adds numbers\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const fixPatch = `--- a/calc/__init__.py
+++ b/calc/__init__.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
`

// unittest runs the fixture's tests without writing __pycache__, so the
// diff holds only what the agent changed.
var unittest = map[string]any{"command": "python3 -m unittest discover -s tests -t .",
	"env_vars": map[string]any{"PYTHONDONTWRITEBYTECODE": "1"}}

func withID(id string, m map[string]any) map[string]any {
	out := map[string]any{"id": id}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// The repro-fix loop of the issue, through a real MCP client.
func TestMCPReproFixLoop(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	state := t.TempDir()
	m := startMCP(t, state)
	fixture := pythonFixture(t)

	start := time.Now()
	ws := m.ok("workspace_create", map[string]any{"name": "repro", "seed": map[string]any{"kind": "dir", "path": fixture}})
	id := str(ws["workspace"].(map[string]any)["id"])
	t.Logf("workspace_create took %v: %v", time.Since(start), ws)
	msgs := m.lastProgress("recording the baseline (")
	// A create boots, or resumes the environment's warm snapshot.
	started := slices.Contains(msgs, "booting the debian-12 microVM") || slices.Contains(msgs, "resuming the debian-12 microVM from its memory image")
	if !started || !slices.Contains(msgs, "guest agent ready") {
		t.Errorf("workspace_create progress: %q", msgs)
	}
	t.Logf("workspace_create progress: %q", msgs)

	r := m.ok("workspace_exec", withID(id, unittest))
	if num(r["exit_code"]) != 1 || !strings.Contains(str(r["stderr"]), "FAILED") {
		t.Fatalf("the failing test should fail first: %v", r)
	}
	r = m.ok("file_read", map[string]any{"id": "repro", "path": "calc/__init__.py"})
	if !strings.Contains(str(r["content"]), "return a - b") {
		t.Fatalf("file_read by name: %v", r)
	}
	r = m.ok("patch_apply", map[string]any{"id": id, "patch": fixPatch})
	if r["applied"] != true {
		t.Fatalf("patch_apply: %v", r)
	}
	if r := m.ok("workspace_exec", withID(id, unittest)); num(r["exit_code"]) != 0 {
		t.Fatalf("the test should pass after the patch: %v", r)
	}
	d := m.ok("workspace_diff", map[string]any{"id": id})
	patch := str(d["patch"])
	files, _ := d["files"].([]any)
	if len(files) != 1 || str(files[0].(map[string]any)["path"]) != "calc/__init__.py" ||
		!strings.Contains(patch, "-    return a - b\n+    return a + b\n") {
		t.Fatalf("workspace_diff should show exactly the patch: %v", d)
	}

	out := filepath.Join(t.TempDir(), "exported.py")
	m.ok("workspace_export", map[string]any{"id": id, "guest_path": "calc/__init__.py", "host_path": out})
	if b, err := os.ReadFile(out); err != nil || string(b) != "def add(a, b):\n    return a + b\n" {
		t.Fatalf("exported file: %q %v", b, err)
	}
	if _, isErr := m.call("workspace_export", map[string]any{"id": id, "guest_path": "calc/__init__.py", "host_path": out}); !isErr {
		t.Fatal("export over an existing host file without overwrite should be refused")
	}

	start = time.Now()
	m.ok("snapshot_create", map[string]any{"id": id, "name": "fixed"})
	t.Logf("snapshot_create took %v", time.Since(start))
	m.ok("file_write", map[string]any{"id": id, "path": "calc/__init__.py", "content": "def add(a, b):\n    raise SystemExit(3)\n"})
	m.ok("workspace_exec", map[string]any{"id": id, "command": "pip_installed=1; echo junk > /root/outside-workspace"})
	if r := m.ok("workspace_exec", withID(id, unittest)); num(r["exit_code"]) == 0 {
		t.Fatalf("the broken package should fail: %v", r)
	}

	start = time.Now()
	m.ok("workspace_reset", map[string]any{"id": id, "snapshot": "fixed"})
	t.Logf("workspace_reset to a snapshot took %v", time.Since(start))
	if r := m.ok("workspace_exec", withID(id, unittest)); num(r["exit_code"]) != 0 {
		t.Fatalf("after reset to the snapshot the test should pass: %v", r)
	}
	if r := m.ok("workspace_exec", map[string]any{"id": id, "command": "test ! -e /root/outside-workspace"}); num(r["exit_code"]) != 0 {
		t.Fatalf("reset must restore the whole disk, not only /workspace: %v", r)
	}

	m.ok("workspace_reset", map[string]any{"id": id})
	if r := m.ok("file_read", map[string]any{"id": id, "path": "calc/__init__.py"}); str(r["content"]) != "def add(a, b):\n    return a - b\n" {
		t.Fatalf("after reset to the baseline the original should be back: %v", r)
	}
	if d := m.ok("workspace_diff", map[string]any{"id": id}); len(d["files"].([]any)) != 0 {
		t.Fatalf("after reset to the baseline the diff should be empty: %v", d)
	}
	// Snapshots survive a reset to an earlier state.
	m.ok("workspace_reset", map[string]any{"id": id, "snapshot": "fixed"})
	if r := m.ok("file_read", map[string]any{"id": id, "path": "calc/__init__.py"}); str(r["content"]) != "def add(a, b):\n    return a + b\n" {
		t.Fatalf("after reset to the baseline and back to the snapshot: %v", r)
	}
	s := m.ok("workspace_summary", map[string]any{"id": id})
	t.Logf("summary: %v", s)

	m.ok("workspace_delete", map[string]any{"id": id})
	if _, err := os.Stat(filepath.Join(state, "workspaces", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the deleted workspace's directory: %v", err)
	}
	if left := workspaceDirs(state); len(left) != 0 {
		t.Fatalf("delete left workspaces in the state dir: %v", left)
	}
}

// Bad input gets a clear tool error, never a protocol error, and changes
// nothing.
func TestMCPBadInput(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := startMCP(t, t.TempDir())
	ws := m.ok("workspace_create", map[string]any{"name": "bad-input"})
	id := str(ws["workspace"].(map[string]any)["id"])
	m.ok("workspace_exec", map[string]any{"id": id, "command": "mkdir -p /workspace/d && echo keep > /workspace/keep.txt && ln -s /etc /workspace/etc-link && ln -s ../../etc/passwd /workspace/d/pw"})
	host := t.TempDir()
	existing := filepath.Join(host, "exists.txt")
	os.WriteFile(existing, []byte("mine"), 0o644)
	big := strings.Repeat("x", 2<<20)
	cases := []struct {
		tool string
		args map[string]any
	}{
		{"workspace_status", map[string]any{"id": "nope"}},
		{"workspace_exec", map[string]any{"id": "nope", "command": "true"}},
		{"workspace_exec", map[string]any{"id": id}},
		{"workspace_exec", map[string]any{"id": id, "command": "true", "argv": []any{"true"}}},
		{"workspace_exec", map[string]any{"id": id, "command": "true", "timeout_seconds": 100000}},
		{"workspace_exec", map[string]any{"id": id, "command": "true", "cwd": "/workspace/no-such-dir"}},
		{"workspace_create", map[string]any{"name": "bad name!"}},
		{"workspace_create", map[string]any{"name": "bad-input"}},
		{"workspace_create", map[string]any{"env": "no-such-env"}},
		{"workspace_create", map[string]any{"seed": map[string]any{"kind": "dir", "path": filepath.Join(host, "missing")}}},
		{"workspace_create", map[string]any{"labels": map[string]any{"": "x"}}},
		{"file_read", map[string]any{"id": id, "path": "../etc/passwd"}},
		{"file_read", map[string]any{"id": id, "path": "/etc/passwd"}},
		{"file_read", map[string]any{"id": id, "path": "etc-link/passwd"}},
		{"file_read", map[string]any{"id": id, "path": "d/pw"}},
		{"file_read", map[string]any{"id": id, "path": "missing.txt"}},
		{"file_read", map[string]any{"id": id, "path": "d"}},
		{"file_write", map[string]any{"id": id, "path": "../x", "content": "x"}},
		{"file_write", map[string]any{"id": id, "path": "/root/x", "content": "x"}},
		{"file_write", map[string]any{"id": id, "path": "etc-link/evil", "content": "x"}},
		{"file_write", map[string]any{"id": id, "path": "big.txt", "content": big}},
		{"file_write", map[string]any{"id": id, "path": "d", "content": "x"}},
		{"file_list", map[string]any{"id": id, "path": "etc-link"}},
		{"file_list", map[string]any{"id": id, "path": "/"}},
		{"patch_apply", map[string]any{"id": id, "patch": "this is not a patch"}},
		{"patch_apply", map[string]any{"id": id, "patch": "--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n"}},
		{"patch_apply", map[string]any{"id": id, "patch": "--- a/keep.txt\n+++ b/keep.txt\n@@ -1 +1 @@\n-nope\n+x\n"}},
		{"workspace_export", map[string]any{"id": id, "guest_path": "keep.txt", "host_path": existing}},
		{"workspace_export", map[string]any{"id": id, "guest_path": "../etc", "host_path": filepath.Join(host, "etc")}},
		{"workspace_sync_push", map[string]any{"id": id, "host_path": filepath.Join(host, "missing")}},
		{"workspace_sync_push", map[string]any{"id": id, "host_path": host, "guest_dest": "/etc"}},
		{"snapshot_create", map[string]any{"id": id, "name": "no spaces allowed"}},
		{"snapshot_delete", map[string]any{"id": id, "name": "never-made"}},
		{"workspace_reset", map[string]any{"id": id, "snapshot": "never-made"}},
		{"workspace_update", map[string]any{"id": id, "name": "x/y"}},
	}
	for _, c := range cases {
		out, isErr := m.call(c.tool, c.args)
		msg := str(out["message"]) + " " + str(out["hint"])
		if !isErr || len(strings.TrimSpace(msg)) < 10 {
			t.Errorf("%s %v: want a clear tool error, got %v (error=%v)", c.tool, c.args, out, isErr)
		}
	}
	if len(cases) < 30 {
		t.Fatalf("only %d bad-input cases", len(cases))
	}
	if b, _ := os.ReadFile(existing); string(b) != "mine" {
		t.Fatal("a refused export changed the host file")
	}
	if r := m.ok("file_read", map[string]any{"id": id, "path": "keep.txt"}); str(r["content"]) != "keep\n" {
		t.Fatalf("bad input changed the workspace: %v", r)
	}
	m.ok("workspace_delete", map[string]any{"id": id})
}

// Two workspaces at once stay isolated; killing the server with SIGKILL
// loses no data: the next server lists the workspace stopped and starts it
// with its files, snapshots and baseline.
func TestMCPParallelAndCrash(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	state := t.TempDir()
	m := startMCP(t, state)
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, isErr := m.call("workspace_create", map[string]any{"name": []string{"left", "right"}[i]})
			if isErr {
				t.Errorf("create %d: %v", i, out)
				return
			}
			ids[i] = str(out["workspace"].(map[string]any)["id"])
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	m.ok("file_write", map[string]any{"id": ids[0], "path": "only-left.txt", "content": "left\n"})
	if _, isErr := m.call("file_read", map[string]any{"id": ids[1], "path": "only-left.txt"}); !isErr {
		t.Fatal("workspace right sees left's file")
	}
	m.ok("snapshot_create", map[string]any{"id": ids[0], "name": "s1"})
	m.ok("file_write", map[string]any{"id": ids[0], "path": "after-snap.txt", "content": "written\n"})
	m.ok("workspace_exec", map[string]any{"id": ids[0], "command": "sync"})

	// Kill the server while a write is in flight.
	go m.s.CallTool(context.Background(), &sdk.CallToolParams{Name: "file_write",
		Arguments: map[string]any{"id": ids[0], "path": "inflight.txt", "content": strings.Repeat("y", 512<<10)}})
	time.Sleep(50 * time.Millisecond)
	m.cmd.Process.Signal(syscall.SIGKILL)
	// The session reaps the server: its transport's Close is the one caller
	// of cmd.Wait. A second, concurrent Wait here raced it, and the loser
	// waited forever for the pipe copiers' one result (a CI hang).
	m.s.Close()
	if m.cmd.ProcessState == nil {
		t.Fatal("closing the session did not reap the killed server")
	}

	m2 := startMCP(t, state)
	l := m2.ok("workspace_list", nil)
	t.Logf("after restart: %v", l)
	for _, raw := range l["workspaces"].([]any) {
		w := raw.(map[string]any)
		if str(w["state"]) != "stopped" {
			t.Errorf("after a crash, %v should be stopped", w)
		}
	}
	m2.ok("workspace_start", map[string]any{"id": ids[0]})
	for path, want := range map[string]string{"only-left.txt": "left\n", "after-snap.txt": "written\n"} {
		if r := m2.ok("file_read", map[string]any{"id": ids[0], "path": path}); str(r["content"]) != want {
			t.Errorf("after restart %s reads %v", path, r)
		}
	}
	m2.ok("workspace_reset", map[string]any{"id": ids[0], "snapshot": "s1"})
	if _, isErr := m2.call("file_read", map[string]any{"id": ids[0], "path": "after-snap.txt"}); !isErr {
		t.Error("after reset to s1, after-snap.txt should be gone")
	}
	m2.ok("workspace_reset", map[string]any{"id": ids[0]})
	if _, isErr := m2.call("file_read", map[string]any{"id": ids[0], "path": "only-left.txt"}); !isErr {
		t.Error("after reset to the baseline, only-left.txt should be gone")
	}
	for _, id := range ids {
		m2.ok("workspace_delete", map[string]any{"id": id})
	}
	if left := workspaceDirs(state); len(left) != 0 {
		t.Fatalf("delete left workspaces in the state dir: %v", left)
	}
}
