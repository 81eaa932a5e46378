package workspace

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
)

// wantRefused checks that err refuses a host path and names the flag
// that would allow it.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	e, ok := contract.AsError(err)
	if !ok || e.Code != contract.CodeInvalid || !strings.Contains(e.Msg, "outside the host directories") ||
		!strings.Contains(e.Hint, "--allow-host-path DIR") {
		t.Errorf("%s: %v (hint %q), want a refusal naming --allow-host-path", what, err, func() string {
			if ok {
				return e.Hint
			}
			return ""
		}())
	}
}

// Host paths a client names are refused outside the allowed
// directories, symlinks resolved first; inside them they work.
func TestAllowHostPath(t *testing.T) {
	allowed, outside := t.TempDir(), t.TempDir()
	// The state directory's parent is allowed too, so that only the
	// state directory's own rule refuses an export into it.
	h := newHarness(t, func(o *Options) { o.AllowHostPaths = []string{allowed, filepath.Dir(o.StateDir)} })
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "out.txt", "from the guest\n")

	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustDo(t, os.Symlink(secret, filepath.Join(allowed, "to-secret")))
	mustDo(t, os.Symlink(outside, filepath.Join(allowed, "to-outside")))
	mustDo(t, os.Symlink("/nowhere/at/all", filepath.Join(allowed, "dangling")))
	mustDo(t, os.Mkdir(filepath.Join(allowed, "real"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(allowed, "real", "ok.txt"), []byte("fine\n"), 0o644))
	mustDo(t, os.Symlink("real", filepath.Join(allowed, "inner"))) // stays inside

	// sync_push: refused outside, directly or through a symlink.
	for _, p := range []string{secret, outside, filepath.Join(allowed, "to-secret"), filepath.Join(allowed, "to-outside", "secret"),
		filepath.Join(allowed, "to-outside"), filepath.Join(allowed, "..", filepath.Base(outside), "secret"), "/etc/passwd", "~/.ssh/id_rsa"} {
		_, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: p, GuestDest: "/workspace"})
		wantRefused(t, "sync_push "+p, err)
	}
	if _, ok := h.vm(id).file("/workspace/secret"); ok {
		t.Fatal("a refused push reached the guest")
	}
	_, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: filepath.Join(allowed, "dangling", "x"), GuestDest: "/workspace"})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, "points to nothing") {
		t.Errorf("dangling symlink: %v", err)
	}
	// Inside, through a symlink that stays inside, it works.
	r, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: filepath.Join(allowed, "inner", "ok.txt"), GuestDest: "/workspace"})
	if err != nil || r.Files != 1 || h.read(id, "ok.txt") != "fine\n" {
		t.Fatalf("push inside: %+v %v", r, err)
	}

	// export: refused outside and through a symlink out; the allowed
	// directory itself is never replaced.
	for _, p := range []string{filepath.Join(outside, "out.txt"), filepath.Join(allowed, "to-outside", "out.txt"),
		filepath.Join(allowed, "to-outside", "new", "out.txt")} {
		_, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "out.txt", HostPath: p, Format: contract.ExportAuto, Overwrite: true})
		wantRefused(t, "export "+p, err)
	}
	_, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: allowed, Format: contract.ExportTree, Overwrite: true})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, "allowed host directory itself") {
		t.Errorf("export onto the allowed dir: %v", err)
	}
	_, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "out.txt", HostPath: filepath.Join(h.state, "workspaces", id, "disk"), Overwrite: true})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, "inside pyro's state directory") {
		t.Errorf("export into the state dir: %v", err)
	}
	if got := dirNames(t, outside); !slices.Equal(got, []string{"secret"}) {
		t.Fatalf("a refused export wrote outside: %q", got)
	}
	// Inside it works, and a symlink named as the destination is
	// replaced (kept as the backup), not followed.
	ex, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "out.txt", HostPath: filepath.Join(allowed, "inner", "new", "out.txt"), Format: contract.ExportAuto})
	if err != nil || ex.HostPath != filepath.Join(allowed, "real", "new", "out.txt") {
		t.Fatalf("export inside: %+v %v", ex, err)
	}
	ex, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "out.txt", HostPath: filepath.Join(allowed, "to-secret"), Format: contract.ExportAuto, Overwrite: true})
	if err != nil || ex.Backup == "" {
		t.Fatalf("export over a symlink: %+v %v", ex, err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
		t.Fatalf("the export wrote through the symlink: %q", b)
	}
	if target, err := os.Readlink(ex.Backup); err != nil || target != secret {
		t.Errorf("backup %s: %q %v, want the old symlink", ex.Backup, target, err)
	}

	// Seeds a request names: dir, archive, git.
	tarPath := filepath.Join(outside, "seed.tar")
	mustDo(t, os.WriteFile(tarPath, nil, 0o644))
	for _, s := range []contract.SeedSpec{{Kind: contract.SeedDir, Path: outside}, {Kind: contract.SeedArchive, Path: tarPath},
		{Kind: contract.SeedGit, Path: outside}, {Kind: contract.SeedDir, Path: filepath.Join(allowed, "to-outside")}} {
		_, err := h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: s})
		wantRefused(t, fmt.Sprintf("seed %s %s", s.Kind, s.Path), err)
	}
	ws := h.create(contract.CreateRequest{Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: filepath.Join(allowed, "inner")}})
	if ws.Seed.Files != 2 || ws.Seed.Source != filepath.Join(allowed, "real") {
		t.Errorf("seed inside: %+v", ws.Seed)
	}
}

// With no --allow-host-path, the working directory and the system
// temporary directory are allowed, and nothing else.
func TestAllowHostPathDefaults(t *testing.T) {
	if os.Getenv("PYRO_VMTEST_L1") == "1" {
		t.Skip("inside the harness VM, where the source tree is absent; this test ran in the unit tier")
	}
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "a.txt", "a\n")
	wd, err := os.Getwd()
	mustDo(t, err)
	if got := DefaultAllowHostPaths(); !slices.Equal(got, []string{wd, os.TempDir()}) {
		t.Errorf("defaults %q", got)
	}
	tmp := filepath.Join(t.TempDir(), "a.txt")
	if _, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "a.txt", HostPath: tmp}); err != nil {
		t.Fatalf("export to the temp dir: %v", err)
	}
	if _, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: tmp, GuestDest: "/workspace/in"}); err != nil {
		t.Fatalf("push from the temp dir: %v", err)
	}
	// A relative path is relative to the working directory: allowed.
	if _, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: "hostpath_test.go", GuestDest: "/workspace/in"}); err != nil {
		t.Fatalf("push from the working directory: %v", err)
	}
	for _, p := range []string{"/etc/hostname", "/", "..", "../../go.mod"} {
		_, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: p, GuestDest: "/workspace"})
		wantRefused(t, "default sync_push "+p, err)
	}
}

// Overwriting an export moves the old host tree to a dated backup
// beside it, says so in the result and the journal, and sweeps a killed
// export's temporaries.
func TestExportOverwriteKeepsBackup(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "src/main.go", "package main\n")
	parent := t.TempDir()
	dest := filepath.Join(parent, "tree")
	mustDo(t, os.MkdirAll(filepath.Join(dest, "mine"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(dest, "mine", "notes.txt"), []byte("the user's work\n"), 0o644))
	// A killed export's temporary, old and unlocked.
	stale := filepath.Join(parent, ".tree.pyro-tmp-killed")
	mustDo(t, os.MkdirAll(filepath.Join(stale, "half"), 0o755))
	old := time.Now().Add(-time.Hour)
	mustDo(t, os.Chtimes(stale, old, old))

	ex, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: dest, Format: contract.ExportTree, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ex.Backup, dest+hostio.BackupMarker) {
		t.Fatalf("result %+v: no backup named", ex)
	}
	if b, _ := os.ReadFile(filepath.Join(ex.Backup, "mine", "notes.txt")); string(b) != "the user's work\n" {
		t.Errorf("backup lost the old tree: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "src", "main.go")); string(b) != "package main\n" {
		t.Errorf("export: %q", b)
	}
	if got := dirNames(t, parent); !slices.Equal(got, []string{"tree", filepath.Base(ex.Backup)}) {
		t.Errorf("beside the export: %q", got)
	}
	j, err := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range j.Entries {
		found = found || (e.Kind == contract.LogExport && strings.Contains(e.Detail, "was moved to "+ex.Backup))
	}
	if !found {
		t.Errorf("the journal does not name the backup: %+v", j.Entries)
	}
	// A tar over the tree: the tree becomes the backup.
	ex2, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: dest, Format: contract.ExportTar, Overwrite: true})
	if err != nil || ex2.Backup == "" || ex2.Backup == ex.Backup {
		t.Fatalf("second overwrite: %+v %v", ex2, err)
	}
	if fi, err := os.Stat(ex2.Backup); err != nil || !fi.IsDir() {
		t.Errorf("second backup: %v %v", fi, err)
	}
}

// A git seed from a checkout whose config sets core.fsmonitor and
// hooks seeds the files and runs nothing.
func TestGitSeedRunsNothing(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "evil.sh")
	mustDo(t, os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+marker+"\n"), 0o755))
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	mustDo(t, os.WriteFile(filepath.Join(dir, "app.py"), []byte("print(1)\n"), 0o644))
	git("add", "app.py")
	git("config", "core.fsmonitor", script)
	git("config", "core.hooksPath", filepath.Dir(script))
	for _, hk := range []string{"post-index-change", "pre-commit"} {
		mustDo(t, os.WriteFile(filepath.Join(dir, ".git", "hooks", hk), []byte("#!/bin/sh\necho hook >> "+marker+"\n"), 0o755))
	}
	h := newHarness(t)
	ws := h.create(contract.CreateRequest{Seed: contract.SeedSpec{Kind: contract.SeedGit, Path: dir}})
	if ws.Seed.Files != 1 || h.read(ws.ID, "app.py") != "print(1)\n" {
		t.Errorf("seed: %+v", ws.Seed)
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("seeding ran the checkout's commands: %q", b)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

// A guest that lists a symlink and then a path through it gets neither
// a tree nor an archive out of it: the archive is checked as the tree
// is, and nothing is left on the host.
func TestExportRefusesPathThroughSymlink(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	vm := h.vm(id)
	vm.mu.Lock()
	vm.files["/workspace/a"] = &fakeFile{Type: proto.TypeSymlink, Target: "/etc", Mode: 0o777}
	vm.files["/workspace/a/x"] = &fakeFile{Type: proto.TypeFile, Data: []byte("owned"), Mode: 0o644}
	vm.mu.Unlock()
	parent := t.TempDir()
	for _, name := range []string{"ws.tar", "ws.tgz", "tree"} {
		_, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: filepath.Join(parent, name), Format: contract.ExportAuto})
		if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, `written through the symlink "a"`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := dirNames(t, parent); len(got) != 0 {
		t.Errorf("left %q", got)
	}
}
