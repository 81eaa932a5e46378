package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/workspace"
)

// TestWorkspaceCompanionVM drives pyro workspace against a real manager
// with the minimal environment: exec streams and exits with the
// command's status (also past a poll's window, read from the host file),
// files and diff, and an interactive shell on a fake terminal.
func TestWorkspaceCompanionVM(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_MINIMAL")
	t.Setenv("PYRO_CACHE_DIR", filepath.Dir(filepath.Dir(envDir)))
	t.Setenv("PYRO_AGENT_BINARY", kvmtest.Path(t, "PYRO_TEST_PYRO"))
	m, err := workspace.Open(workspace.Options{StateDir: t.TempDir(), CacheRoot: cacheRoot(), DefaultEnv: "minimal", DefaultDiskMiB: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			return loadEnvForRun(ctx, name, true, io.Discard)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	old := openWorkspaceBackend
	openWorkspaceBackend = func(context.Context, io.Writer) (contract.Backend, func(), error) { return m, func() {}, nil }
	t.Cleanup(func() { openWorkspaceBackend = old })

	r := runWS("", "create", "--name", "vmt", "--id-only")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ws") {
		t.Fatalf("create: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)

	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"status", []string{"--", "sh", "-c", "echo out; echo err >&2; exit 7"}, 7, "out\n", "err\n"},
		{"over polls", []string{"--", "sh", "-c", "echo a; sleep 1; echo b >&2; sleep 1; echo c"}, 0, "a\nc\n", "b\n"},
		{"shell line", []string{"--cwd", "/tmp", "--env", "X=y", "--command", "echo $X; pwd"}, 0, "y\n/tmp\n", ""},
		{"signal", []string{"--", "sh", "-c", "kill -TERM $$"}, 128 + 15, "", ""},
		{"timeout", []string{"--timeout", "2s", "--", "sleep", "30"}, exitRunTimeout, "", "timed out after 2s"},
	} {
		r := runWS("", append([]string{"exec", "vmt"}, tc.args...)...)
		if r.code != tc.code || r.stdout != tc.stdout || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("exec %s: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.name, r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
	// 3 MB in one go outgrows a poll's window: the host file fills it.
	r = runWS("", "exec", "vmt", "--", "sh", "-c", "yes 0123456789abcde | head -c 3000000")
	if want := strings.Repeat("0123456789abcde\n", 3000000/16)[:3000000]; r.code != 0 || r.stdout != want {
		t.Errorf("big output: exit %d, %d bytes (want %d), stderr %q", r.code, len(r.stdout), len(want), r.stderr)
	}

	if r := runWS("hello\n", "file", "write", "vmt", "notes/a.txt", "--text-file", "-"); r.code != 0 {
		t.Errorf("file write: %+v", r)
	}
	if r := runWS("", "file", "read", id, "notes/a.txt"); r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("file read: %+v", r)
	}
	if r := runWS("", "diff", "vmt"); r.code != 0 || !strings.Contains(r.stdout, "+hello") {
		t.Errorf("diff: %+v", r)
	}

	s := startShell(t, "shell", "vmt", "--", "sh")
	s.sessionStarted(t)
	io.WriteString(s.keys, "echo $((6*7))\r")
	waitFor(t, "the shell's answer", func() bool { return strings.Contains(s.out.String(), "42\r\n") })
	io.WriteString(s.keys, "exit 3\r")
	if code := s.wait(t); code != 3 {
		t.Errorf("shell: exit %d, want 3; stderr %q", code, s.err.String())
	}
	if raw, restored := s.term.state(); raw || restored != 1 {
		t.Errorf("terminal raw %v, restored %d times", raw, restored)
	}
	if list, err := m.ShellList(context.Background(), id); err != nil || len(list) != 0 {
		t.Errorf("shells left: %+v, %v", list, err)
	}

	if r := runWS("", "delete", "vmt"); r.code != 0 {
		t.Errorf("delete: %+v", r)
	}
}
