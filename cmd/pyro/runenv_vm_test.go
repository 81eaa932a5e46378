package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// envCache returns the cache root holding the environments the harness
// copied in (PYRO_TEST_ENV_MINIMAL names CACHE/envs/minimal), and sets the
// variables that make the test binary, standing in for pyro, use them with
// the real pyro binary as the guest agent.
func envCache(t *testing.T) []string {
	t.Helper()
	dir := kvmtest.Path(t, "PYRO_TEST_ENV_MINIMAL")
	agent := kvmtest.Path(t, "PYRO_TEST_PYRO")
	return []string{
		"PYRO_CACHE_DIR=" + filepath.Dir(filepath.Dir(dir)),
		"PYRO_AGENT_BINARY=" + agent,
	}
}

// pyro run ENV -- CMD boots, runs, streams, exits with the command's code
// and leaves nothing behind.
func TestRunEnv(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	tmp := t.TempDir()
	env := append(envCache(t), "TMPDIR="+tmp)
	for _, c := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
		stderr string
	}{
		{"python", []string{"debian-12", "--", "python3", "-c", "print(6*7)"}, "", 0, "42\n", ""},
		{"exit code", []string{"minimal", "--", "sh", "-c", "echo out; echo err >&2; exit 7"}, "", 7, "out\n", "err\n"},
		{"signal", []string{"minimal", "--", "sh", "-c", "kill -TERM $$"}, "", 128 + 15, "", "killed by SIGTERM"},
		{"stdin", []string{"minimal", "--", "sh", "-c", "tr a-z A-Z"}, "piped in\n", 0, "PIPED IN\n", ""},
		{"env and workdir", []string{"minimal", "--env", "GREETING=hi", "-w", "/tmp", "--", "sh", "-c", "echo $GREETING; pwd"}, "", 0, "hi\n/tmp\n", ""},
		{"timeout", []string{"minimal", "--timeout", "3s", "--", "sh", "-c", "sleep 100 & sleep 100"}, "", exitRunTimeout, "", "--timeout 3s passed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runPyroIn(t, env, c.stdin, append([]string{"run", "-v"}, c.args...)...)
			t.Logf("stderr: %s", r.stderr)
			if r.code != c.code || r.stdout != c.stdout || !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("pyro run %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
					c.args, r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("pyro run left %d files in TMPDIR: %v", len(left), left[0].Name())
	}
}

// A damaged environment is never booted: the error names the fix.
func TestRunBrokenEnv(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	src := kvmtest.Path(t, "PYRO_TEST_ENV_MINIMAL")
	agent := kvmtest.Path(t, "PYRO_TEST_PYRO")
	for _, c := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"truncated rootfs", func(dir string) error { return os.Truncate(filepath.Join(dir, "rootfs.ext4"), 4096) }},
		{"missing kernel", func(dir string) error { return os.Remove(filepath.Join(dir, "vmlinuz")) }},
		{"absent", func(dir string) error { return os.RemoveAll(dir) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "envs", "minimal")
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			if err := c.damage(dir); err != nil {
				t.Fatal(err)
			}
			r := runPyroIn(t, []string{"PYRO_CACHE_DIR=" + root, "PYRO_AGENT_BINARY=" + agent}, "", "run", "minimal", "--", "true")
			if r.code != exitRunUnable || !strings.Contains(r.stderr, "pyro env build minimal") {
				t.Fatalf("exit %d, stderr %q; want %d and the build command", r.code, r.stderr, exitRunUnable)
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 0 {
				t.Errorf("%d lines of error, want one: %q", n+1, r.stderr)
			}
		})
	}
}
