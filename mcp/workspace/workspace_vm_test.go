package workspace

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// The end-to-end tier: the repro-fix loop on a real debian-12 workspace
// (PYRO_TEST_ENV_DEBIAN names CACHE/envs/debian-12, built by make envs).

const (
	vmCalcBroken = "def add(a, b):\n    return a - b\n"
	vmCalcFixed  = "def add(a, b):\n    return a + b\n"
	vmTest       = "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
	vmFixPatch   = "--- a/calc/__init__.py\n+++ b/calc/__init__.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)

func TestWorkspaceVMLoop(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_DEBIAN")
	state := t.TempDir()
	m, err := Open(Options{StateDir: state, CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: 384,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := t.Context()

	src := seedDir(t, map[string]string{"calc/__init__.py": vmCalcBroken, "tests/__init__.py": "", "tests/test_calc.py": vmTest})
	t0 := time.Now()
	ws, err := m.Create(ctx, contract.CreateRequest{Env: "debian-12", Name: "repro", TTLSeconds: 3600,
		Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: src}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Logf("FIGURE create->ready (boot, seed, baseline): %v", time.Since(t0))
	if ws.Seed.Files != 3 || ws.State != contract.StateRunning {
		t.Fatalf("created: %+v", ws)
	}
	id := ws.ID

	unittest := func(wantOK bool) {
		t.Helper()
		t0 := time.Now()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: "python3 -m unittest -q", TimeoutSeconds: 300,
			EnvVars: map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}})
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		t.Logf("unittest: exit %d in %v (round trip %v)", r.ExitCode, r.Duration, time.Since(t0))
		if ok := r.ExitCode == 0; ok != wantOK {
			t.Fatalf("unittest exit %d, want ok=%v\nstdout: %s\nstderr: %s", r.ExitCode, wantOK, r.Stdout, r.Stderr)
		}
		if !wantOK && !bytes.Contains(r.Stderr, []byte("FAILED")) {
			t.Fatalf("failing run says: %s", r.Stderr)
		}
	}
	read := func(p string) string {
		t.Helper()
		fc, err := m.ReadFile(ctx, contract.ReadFileRequest{ID: id, Path: p, MaxBytes: 1 << 16})
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(fc.Content)
	}
	sh := func(cmd string) string {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, TimeoutSeconds: 120})
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("%q: %+v %v", cmd, r, err)
		}
		return string(r.Stdout)
	}

	// The root file system has grown to the default disk: room to install
	// into, whatever the image's size (about 600 MiB).
	rootKiB := func(when string) {
		t.Helper()
		out := sh("df -k / | tail -n 1")
		f := strings.Fields(out)
		kib, err := strconv.ParseInt(f[min(1, len(f)-1)], 10, 64)
		if err != nil || kib < DefaultDiskMiB<<10*85/100 {
			t.Fatalf("%s: df / says %q: not grown to the %d MiB disk", when, out, DefaultDiskMiB)
		}
		t.Logf("%s: df /: %s", when, strings.TrimSpace(out))
	}
	rootKiB("create")

	unittest(false)
	if got := read("calc/__init__.py"); got != vmCalcBroken {
		t.Fatalf("read: %q", got)
	}
	pr, err := m.ApplyPatch(ctx, id, vmFixPatch)
	if err != nil || !pr.Applied {
		t.Fatalf("patch: %+v %v", pr, err)
	}
	unittest(true)

	t0 = time.Now()
	d, err := m.Diff(ctx, contract.DiffRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE diff (3-file workspace): %v", time.Since(t0))
	if len(d.Files) != 1 || d.Files[0].Path != "calc/__init__.py" || d.Stats != (contract.DiffStats{Files: 1, Additions: 1, Deletions: 1}) {
		t.Fatalf("diff: %+v\n%s", d.Files, d.Patch)
	}
	if !strings.Contains(d.Patch, "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n") {
		t.Fatalf("diff patch:\n%s", d.Patch)
	}

	host := filepath.Join(t.TempDir(), "calc.py")
	if _, err := m.Export(ctx, contract.ExportRequest{ID: id, GuestPath: "calc/__init__.py", HostPath: host, Format: contract.ExportAuto}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(host); string(b) != vmCalcFixed {
		t.Fatalf("exported %q", b)
	}

	// Confinement: a symlink leading out of /workspace is refused.
	sh("ln -s /etc /workspace/etc-link")
	if _, err := m.ReadFile(ctx, contract.ReadFileRequest{ID: id, Path: "etc-link/hostname", MaxBytes: 100}); !contract.IsCode(err, contract.CodeInvalid) {
		t.Errorf("read through a symlink to /etc: %v; want an invalid-path error (an agent without Beneath support?)", err)
	}
	sh("rm /workspace/etc-link")

	t0 = time.Now()
	if _, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "green"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE snapshot create: %v", time.Since(t0))

	// Break it, inside and outside /workspace.
	sh("printf 'def add(a, b):\\n    return 0\\n' > calc/__init__.py && touch /root/outside-marker")
	unittest(false)

	rr, err := m.Reset(ctx, id, "green")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE reset to snapshot (kill, cut back, boot): %v", rr.Duration)
	rootKiB("reset")
	if got := read("calc/__init__.py"); got != vmCalcFixed {
		t.Fatalf("after reset to green: %q", got)
	}
	if out := sh("ls /root"); strings.Contains(out, "outside-marker") {
		t.Fatal("reset kept a file outside /workspace")
	}
	unittest(true)

	rr, err = m.Reset(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE reset to baseline: %v", rr.Duration)
	if got := read("calc/__init__.py"); got != vmCalcBroken {
		t.Fatalf("after reset to baseline: %q", got)
	}
	unittest(false)
	if d, err := m.Diff(ctx, contract.DiffRequest{ID: id}); err != nil || len(d.Files) != 0 {
		t.Fatalf("diff after baseline reset: %+v %v", d, err)
	}
	// Reset keeps every snapshot: the disk layers form a tree, so going back
	// to the baseline must leave "green" there to go forward to again.
	snaps, _ := m.SnapshotList(ctx, id)
	if len(snaps) != 1 || snaps[0].Name != "green" {
		t.Fatalf("after a baseline reset the snapshots must be kept: %+v", snaps)
	}

	// Stop and start keep the disk.
	sh("echo kept > /workspace/kept.txt")
	if _, err := m.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if _, err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE start (boot from disk): %v", time.Since(t0))
	if got := read("kept.txt"); got != "kept\n" {
		t.Fatalf("after stop/start: %q", got)
	}

	if err := m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(filepath.Join(state, "workspaces"))
	if err != nil || len(des) != 0 {
		t.Fatalf("state dir after delete: %v %v", des, err)
	}
}

// tWriter sends the manager's log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
