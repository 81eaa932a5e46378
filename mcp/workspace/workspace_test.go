package workspace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/instance"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

var bg = context.Background()

func wantCode(t *testing.T, err error, code contract.ErrorCode) *contract.Error {
	t.Helper()
	e, ok := contract.AsError(err)
	if !ok || e.Code != code {
		t.Fatalf("error %v (%T): want code %s", err, err, code)
	}
	return e
}

func seedDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (h *harness) create(req contract.CreateRequest) contract.Workspace {
	h.t.Helper()
	if req.TTLSeconds == 0 {
		req.TTLSeconds = 600
	}
	if req.Seed.Kind == "" {
		req.Seed.Kind = contract.SeedNone
	}
	w, err := h.m.Create(bg, req)
	if err != nil {
		h.t.Fatalf("create: %v", err)
	}
	return w
}

func (h *harness) read(id, p string) string {
	h.t.Helper()
	fc, err := h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: p, MaxBytes: 1 << 20})
	if err != nil {
		h.t.Fatalf("read %s: %v", p, err)
	}
	return string(fc.Content)
}

func (h *harness) write(id, p, content string) {
	h.t.Helper()
	if _, err := h.m.WriteFile(bg, contract.WriteFileRequest{ID: id, Path: p, Content: []byte(content)}); err != nil {
		h.t.Fatalf("write %s: %v", p, err)
	}
}

// workspaceDirs lists what is left under StateDir/workspaces.
func (h *harness) workspaceDirs() []string {
	h.t.Helper()
	des, err := os.ReadDir(filepath.Join(h.state, "workspaces"))
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

const fixAppPatch = `--- a/app.py
+++ b/app.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
`

// The whole loop on fake VMs: seed, files, patch, diff, export, snapshot,
// reset both ways, delete.
func TestLoop(t *testing.T) {
	h := newHarness(t)
	src := seedDir(t, map[string]string{"app.py": "def add(a, b):\n    return a - b\n", "tests/test_app.py": "assert add(1, 2) == 3\n"})
	ws := h.create(contract.CreateRequest{Name: "loop", Labels: map[string]string{"task": "t1"}, Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: src}})
	if ws.State != contract.StateRunning || ws.Seed.Files != 2 || ws.Seed.Source != src || ws.Env != "debian-12" {
		t.Fatalf("created: %+v", ws)
	}
	id := ws.ID

	l, err := h.m.ListFiles(bg, contract.ListFilesRequest{ID: id, Path: "/workspace", Recursive: true, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range l.Entries {
		paths = append(paths, e.Path)
	}
	if got := strings.Join(paths, " "); got != "/workspace/app.py /workspace/tests /workspace/tests/test_app.py" || l.More {
		t.Fatalf("listing: %s more=%v", got, l.More)
	}
	l, _ = h.m.ListFiles(bg, contract.ListFilesRequest{ID: id, Path: "/workspace", Recursive: true, Offset: 1, Limit: 1})
	if len(l.Entries) != 1 || l.Entries[0].Path != "/workspace/tests" || !l.More {
		t.Fatalf("page 2: %+v", l)
	}

	r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "pytest", TimeoutSeconds: 30})
	if err != nil || r.ExitCode != 0 || string(r.Stdout) != "ran: pytest\n" || r.Seq == 0 {
		t.Fatalf("exec: %+v %v", r, err)
	}
	if b, err := os.ReadFile(r.StdoutPath); err != nil || string(b) != "ran: pytest\n" {
		t.Fatalf("stdout file %q: %q %v", r.StdoutPath, b, err)
	}

	pr, err := h.m.ApplyPatch(bg, id, fixAppPatch)
	if err != nil || !pr.Applied || len(pr.Files) != 1 || pr.Files[0].Additions != 1 || pr.Files[0].Deletions != 1 || pr.Files[0].Op != "modify" {
		t.Fatalf("patch: %+v %v", pr, err)
	}
	if got := h.read(id, "app.py"); got != "def add(a, b):\n    return a + b\n" {
		t.Fatalf("patched: %q", got)
	}
	d, err := h.m.Diff(bg, contract.DiffRequest{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Files) != 1 || d.Files[0].Path != "app.py" || d.Files[0].Status != "modified" || d.Stats != (contract.DiffStats{Files: 1, Additions: 1, Deletions: 1}) {
		t.Fatalf("diff: %+v", d)
	}
	if !strings.Contains(d.Patch, "-    return a - b\n+    return a + b\n") || d.PatchPath == "" {
		t.Fatalf("diff patch: %q at %q", d.Patch, d.PatchPath)
	}
	if b, _ := os.ReadFile(d.PatchPath); string(b) != d.Patch {
		t.Fatalf("patch file differs")
	}

	out := filepath.Join(t.TempDir(), "app.py")
	ex, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "app.py", HostPath: out, Format: contract.ExportAuto})
	if err != nil || ex.Files != 1 || ex.Format != contract.ExportTree {
		t.Fatalf("export: %+v %v", ex, err)
	}
	if b, _ := os.ReadFile(out); string(b) != "def add(a, b):\n    return a + b\n" {
		t.Fatalf("exported %q", b)
	}
	_, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "app.py", HostPath: out, Format: contract.ExportAuto})
	wantCode(t, err, contract.CodeExists)
	tree := filepath.Join(t.TempDir(), "tree")
	if _, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: tree, Format: contract.ExportAuto}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "tests", "test_app.py")); string(b) != "assert add(1, 2) == 3\n" {
		t.Fatalf("exported tree: %q", b)
	}
	tarOut := filepath.Join(t.TempDir(), "ws.tar")
	if ex, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: tarOut, Format: contract.ExportAuto}); err != nil || ex.Format != contract.ExportTar {
		t.Fatalf("tar export: %+v %v", ex, err)
	}
	tgz := filepath.Join(t.TempDir(), "ws.tgz")
	if ex, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "tests", HostPath: tgz, Format: contract.ExportAuto}); err != nil || ex.Format != contract.ExportTar || ex.Files != 1 {
		t.Fatalf("tgz export: %+v %v", ex, err)
	}
	if names := tgzNames(t, tgz); names != "test_app.py" {
		t.Fatalf("tgz holds %q", names)
	}

	snap, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "fixed"})
	if err != nil || snap.Name != "fixed" {
		t.Fatalf("snapshot: %+v %v", snap, err)
	}
	_, err = h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "fixed"})
	wantCode(t, err, contract.CodeExists)
	h.write(id, "app.py", "broken\n")
	h.write(id, "new/file.txt", "x")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "broken"}); err != nil {
		t.Fatal(err)
	}

	rr, err := h.m.Reset(bg, id, "fixed")
	if err != nil || rr.Workspace.State != contract.StateRunning || rr.Snapshot != "fixed" {
		t.Fatalf("reset: %+v %v", rr, err)
	}
	if got := h.read(id, "app.py"); got != "def add(a, b):\n    return a + b\n" {
		t.Fatalf("after reset to fixed: %q", got)
	}
	_, err = h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: "new/file.txt", MaxBytes: 10})
	wantCode(t, err, contract.CodeNotFound)
	snaps, _ := h.m.SnapshotList(bg, id)
	if len(snaps) != 2 || snaps[0].Name != "fixed" || snaps[1].Name != "broken" || len(rr.DroppedSnapshots) != 0 {
		t.Fatalf("snapshots after reset (broken is newer, kept): %+v %+v", snaps, rr)
	}

	if _, err := h.m.Reset(bg, id, ""); err != nil {
		t.Fatal(err)
	}
	if got := h.read(id, "app.py"); got != "def add(a, b):\n    return a - b\n" {
		t.Fatalf("after reset to baseline: %q", got)
	}
	if d, _ := h.m.Diff(bg, contract.DiffRequest{ID: id}); len(d.Files) != 0 || d.Patch != "" {
		t.Fatalf("diff after baseline reset: %+v", d)
	}
	_, err = h.m.Reset(bg, id, "nope")
	wantCode(t, err, contract.CodeNotFound)

	sum, err := h.m.Summary(bg, id)
	if err != nil || sum.ResetFrom != "" || len(sum.Commands) != 0 || sum.Since.IsZero() {
		t.Fatalf("summary after reset: %+v %v", sum, err)
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	var kinds []string
	for _, e := range logs.Entries {
		kinds = append(kinds, string(e.Kind))
	}
	if got := strings.Join(kinds, ","); got != "lifecycle,exec,write,export,export,export,export,snapshot,write,write,snapshot,reset,reset" {
		t.Fatalf("journal kinds: %s", got)
	}
	if last, prev := logs.Entries[len(logs.Entries)-1], logs.Entries[len(logs.Entries)-2]; !strings.HasPrefix(prev.Detail, "snapshot fixed; disk layer checked out") || !strings.HasPrefix(last.Detail, "baseline;") {
		t.Fatalf("reset entries: %+v", logs.Entries[len(logs.Entries)-2:])
	}

	if err := h.m.Delete(bg, id); err != nil {
		t.Fatal(err)
	}
	if dirs := h.workspaceDirs(); len(dirs) != 0 {
		t.Fatalf("left behind: %v", dirs)
	}
	_, err = h.m.Status(bg, id)
	wantCode(t, err, contract.CodeNotFound)
}

// layerFiles lists workspace id's disk layer data files.
func (h *harness) layerFiles(id string) []string {
	h.t.Helper()
	w, err := h.m.get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	names, err := filepath.Glob(filepath.Join(w.dir, diskDir, "*.data"))
	if err != nil {
		h.t.Fatal(err)
	}
	for i, n := range names {
		names[i] = strings.TrimSuffix(filepath.Base(n), ".data")
	}
	return names
}

// snapLayer is the disk layer of workspace id's snapshot name.
func (h *harness) snapLayer(id, name string) string {
	h.t.Helper()
	w, err := h.m.get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.rec.Snapshots {
		if s.Name == name {
			return s.Layer
		}
	}
	h.t.Fatalf("no snapshot %s", name)
	return ""
}

// Reset goes anywhere in the snapshot tree and keeps every snapshot;
// SnapshotDelete frees a layer once nothing builds on it.
func TestResetKeepsSnapshots(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	absent := func(p string) {
		t.Helper()
		_, err := h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: p, MaxBytes: 10})
		wantCode(t, err, contract.CodeNotFound)
	}
	reset := func(to string) {
		t.Helper()
		rr, err := h.m.Reset(bg, id, to)
		if err != nil || len(rr.DroppedSnapshots) != 0 {
			t.Fatalf("reset to %q: %+v %v", to, rr, err)
		}
	}
	h.write(id, "a.txt", "A")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "A"}); err != nil {
		t.Fatal(err)
	}
	h.write(id, "b.txt", "B")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "B"}); err != nil {
		t.Fatal(err)
	}
	h.write(id, "c.txt", "C")

	reset("")
	absent("a.txt")
	absent("b.txt")
	reset("B")
	if a, b := h.read(id, "a.txt"), h.read(id, "b.txt"); a != "A" || b != "B" {
		t.Fatalf("after reset to B: a=%q b=%q", a, b)
	}
	absent("c.txt")
	reset("A")
	if a := h.read(id, "a.txt"); a != "A" {
		t.Fatalf("after reset to A: a=%q", a)
	}
	absent("b.txt")
	snaps, _ := h.m.SnapshotList(bg, id)
	if len(snaps) != 2 || snaps[0].Name != "A" || snaps[1].Name != "B" {
		t.Fatalf("snapshots: %+v", snaps)
	}

	// B is a leaf now (the disk builds on A): deleting it frees its layer.
	a, b := h.snapLayer(id, "A"), h.snapLayer(id, "B")
	if !slices.Contains(h.layerFiles(id), b) {
		t.Fatalf("B's layer %s is not on disk: %v", b, h.layerFiles(id))
	}
	if err := h.m.SnapshotDelete(bg, id, "B"); err != nil {
		t.Fatal(err)
	}
	if files := h.layerFiles(id); slices.Contains(files, b) || !slices.Contains(files, a) {
		t.Fatalf("after deleting B, layers %v (A %s, B %s)", files, a, b)
	}
	// A is in use (the disk builds on it): the name goes, the layer stays
	// until a reset elsewhere discards what built on it.
	if err := h.m.SnapshotDelete(bg, id, "A"); err != nil {
		t.Fatal(err)
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	if last := logs.Entries[len(logs.Entries)-1]; !strings.Contains(last.Detail, "freed when they go") {
		t.Fatalf("delete of a layer in use: %+v", last)
	}
	if !slices.Contains(h.layerFiles(id), a) {
		t.Fatalf("A's layer %s went while in use", a)
	}
	reset("")
	if files := h.layerFiles(id); slices.Contains(files, a) || len(files) != 2 {
		t.Fatalf("after reset to the baseline, layers %v (A %s): want the baseline and the top", files, a)
	}
	absent("a.txt")

	// The same with the workspace stopped.
	h.write(id, "d.txt", "D")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "D"}); err != nil {
		t.Fatal(err)
	}
	reset("")
	if _, err := h.m.Stop(bg, id); err != nil {
		t.Fatal(err)
	}
	d := h.snapLayer(id, "D")
	if err := h.m.SnapshotDelete(bg, id, "D"); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(h.layerFiles(id), d) {
		t.Fatalf("D's layer %s stayed after deleting it from a stopped workspace", d)
	}
}

func TestSummary(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		return proto.ExecResult{ExitCode: 1}, nil
	}
	h.m.Exec(bg, contract.ExecRequest{ID: id, Argv: []string{"false", "it's"}})
	h.write(id, "a.txt", "one\ntwo\n")
	h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "s1"})
	h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "a.txt", HostPath: filepath.Join(t.TempDir(), "a.txt")})
	s, err := h.m.Summary(bg, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Commands) != 1 || *s.Commands[0].ExitCode != 1 || s.Commands[0].Command != `false 'it'\''s'` {
		t.Fatalf("commands: %+v", s.Commands)
	}
	if len(s.Changes) != 1 || s.Changes[0].Status != "added" || s.Stats.Additions != 2 || len(s.Snapshots) != 1 || len(s.Exports) != 1 {
		t.Fatalf("summary: %+v", s)
	}
}

func TestExecResults(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	var res proto.ExecResult
	var out []byte
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		stdout.Write(out)
		io.WriteString(stderr, "err\n")
		return res, nil
	}
	res = proto.ExecResult{ExitCode: -1, Signal: "SIGKILL"}
	r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x", TimeoutSeconds: 5})
	if err != nil || r.ExitCode != 137 || r.Signal != "SIGKILL" || string(r.Stderr) != "err\n" {
		t.Fatalf("signal: %+v %v", r, err)
	}
	res = proto.ExecResult{ExitCode: -1, Signal: "SIGTERM", TimedOut: true}
	r, _ = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x", TimeoutSeconds: 5})
	if r.ExitCode != 124 || !r.TimedOut {
		t.Fatalf("timeout: %+v", r)
	}
	// 3 MiB of output: the result keeps head and tail, the file all.
	out = bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	out = append(out, "THE END\n"...)
	res = proto.ExecResult{}
	r, _ = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x", TimeoutSeconds: 5})
	if r.StdoutSize != int64(len(out)) || len(r.Stdout) > 1<<20+100 || !bytes.HasSuffix(r.Stdout, []byte("THE END\n")) ||
		!bytes.HasPrefix(r.Stdout, []byte("0123")) || !bytes.Contains(r.Stdout, []byte("bytes omitted")) || r.OutputTruncated {
		t.Fatalf("big output: size %d, kept %d, truncated %v", r.StdoutSize, len(r.Stdout), r.OutputTruncated)
	}
	if b, _ := os.ReadFile(r.StdoutPath); !bytes.Equal(b, out) {
		t.Fatalf("stdout file holds %d bytes, want %d", len(b), len(out))
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 10})
	if e := logs.Entries[1]; e.Kind != contract.LogExec || *e.ExitCode != 137 || e.Detail != "killed by SIGKILL" {
		t.Fatalf("journal: %+v", e)
	}
}

// Records survive a crash: the next Open lists every workspace stopped,
// with its files, snapshots and baseline; unfinished creates go.
func TestReloadAfterCrash(t *testing.T) {
	h := newHarness(t)
	a := h.create(contract.CreateRequest{Name: "a"})
	h.write(a.ID, "kept.txt", "kept\n")
	h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: a.ID, Name: "s1"})
	h.write(a.ID, "after.txt", "after\n")
	b := h.create(contract.CreateRequest{Name: "b", TTLSeconds: 120})
	h.m.Stop(bg, b.ID)
	// An unfinished create and an interrupted delete.
	root := filepath.Join(h.state, "workspaces")
	os.MkdirAll(filepath.Join(root, "ws-dead", "disk"), 0o700)
	os.MkdirAll(filepath.Join(root, ".deleting-ws-gone", "disk"), 0o700)
	// A torn journal line.
	f, _ := os.OpenFile(filepath.Join(root, a.ID, journalName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":99,"kind":"ex`)
	f.Close()

	h.crash()
	h.open()
	list, _ := h.m.List(bg)
	if len(list) != 2 {
		t.Fatalf("after restart: %+v", list)
	}
	for _, w := range list {
		if w.State != contract.StateStopped {
			t.Fatalf("%s is %s after restart, want stopped", w.ID, w.State)
		}
	}
	if dirs := strings.Join(h.workspaceDirs(), " "); strings.Contains(dirs, "dead") || strings.Contains(dirs, "gone") {
		t.Fatalf("leftovers kept: %s", dirs)
	}
	_, err := h.m.Exec(bg, contract.ExecRequest{ID: a.ID, Command: "x"})
	wantCode(t, err, contract.CodeStopped)

	if _, err := h.m.Start(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	if h.read(a.ID, "kept.txt") != "kept\n" || h.read(a.ID, "after.txt") != "after\n" {
		t.Fatal("files lost across the crash")
	}
	ws, _ := h.m.Status(bg, a.ID)
	if ws.Name != "a" || ws.Snapshots != 1 || ws.LastSeq == 0 {
		t.Fatalf("status after restart: %+v", ws)
	}
	// The journal continues after the torn line.
	h.write(a.ID, "more.txt", "x")
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: a.ID, Limit: 100})
	if n := len(logs.Entries); logs.Entries[n-1].Command != "write /workspace/more.txt" {
		t.Fatalf("journal after restart: %+v", logs.Entries)
	}
	if _, err := h.m.Reset(bg, a.ID, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.ReadFile(bg, contract.ReadFileRequest{ID: a.ID, Path: "after.txt", MaxBytes: 9}); !contract.IsCode(err, contract.CodeNotFound) {
		t.Fatalf("after.txt after reset to s1: %v", err)
	}
	if h.read(a.ID, "kept.txt") != "kept\n" {
		t.Fatal("kept.txt lost by reset")
	}
	// A clean Close, then Open: still there, stopped.
	h.m.Close()
	h.open()
	if ws, err := h.m.Status(bg, a.ID); err != nil || ws.State != contract.StateStopped {
		t.Fatalf("after close and open: %+v %v", ws, err)
	}
}

// Two servers (two chat sessions' pyro mcp serve) share a state
// directory: each works on its own workspaces, a call naming the other's
// gets a Conflict that says so, and when one server ends its workspaces
// pass to the other, stopped, with their files.
func TestSharedStateDir(t *testing.T) {
	h := newHarness(t)
	a := h.create(contract.CreateRequest{Name: "first"})
	h.write(a.ID, "/workspace/kept.txt", "from the first session\n")

	m2, err := Open(h.opts)
	if err != nil {
		t.Fatalf("a second server on the same state directory: %v", err)
	}
	defer m2.Close()
	if list, _ := m2.List(bg); len(list) != 0 {
		t.Fatalf("the second server lists the first one's workspaces: %+v", list)
	}
	_, err = m2.Status(bg, a.ID)
	if !contract.IsCode(err, contract.CodeConflict) || !strings.Contains(err.Error(), "another pyro server") {
		t.Fatalf("status of another server's workspace: %v", err)
	}
	if _, err := m2.Exec(bg, contract.ExecRequest{ID: a.ID, Command: "true"}); !contract.IsCode(err, contract.CodeConflict) {
		t.Fatalf("exec in another server's workspace: %v", err)
	}
	b, err := m2.Create(bg, contract.CreateRequest{Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := h.m.List(bg); len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("the first server's list: %+v", list)
	}
	if _, err := h.m.Status(bg, b.ID); !contract.IsCode(err, contract.CodeConflict) {
		t.Fatalf("status of the second server's workspace from the first: %v", err)
	}

	// The first session ends; its workspace is the second's now.
	h.m.Close()
	h.m = nil
	ws, err := m2.Status(bg, a.ID)
	if err != nil || ws.State != contract.StateStopped || ws.Name != "first" {
		t.Fatalf("adopted workspace: %+v, %v", ws, err)
	}
	if list, _ := m2.List(bg); len(list) != 2 {
		t.Fatalf("after adoption the second server lists %d workspaces, want 2", len(list))
	}
	if _, err := m2.Start(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	got, err := m2.ReadFile(bg, contract.ReadFileRequest{ID: a.ID, Path: "/workspace/kept.txt", MaxBytes: 1000})
	if err != nil || string(got.Content) != "from the first session\n" {
		t.Fatalf("the adopted workspace's file: %+v, %v", got, err)
	}
	for _, id := range []string{"ws-00000000", "../state", "..", ".deleting-" + a.ID, "a/b", ""} {
		if _, err := m2.Status(bg, id); !contract.IsCode(err, contract.CodeNotFound) {
			t.Errorf("status of %q: %v, want not found", id, err)
		}
	}
}

// A create in progress in one server is not taken for a crashed one by
// another server's scan.
func TestScanSparesCreateInProgress(t *testing.T) {
	h := newHarness(t)
	_, dir, owner, err := h.m.newDir()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("another server removed a create in progress: %v", err)
	}
	owner.Close() // the creating server died
	m2.rescan()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a crashed create's directory survived the next scan: %v", err)
	}
}

func TestTTLReaping(t *testing.T) {
	h := newHarness(t)
	a := h.create(contract.CreateRequest{TTLSeconds: 60})
	b := h.create(contract.CreateRequest{TTLSeconds: 600})
	if want := h.clock.now().Add(60 * time.Second); !a.ExpiresAt.Equal(want) {
		t.Fatalf("ExpiresAt %v, want %v", a.ExpiresAt, want)
	}
	h.clock.advance(50 * time.Second)
	h.m.Status(bg, a.ID) // activity pushes the expiry
	h.clock.advance(50 * time.Second)
	h.m.reap()
	if ws, _ := h.m.Status(bg, a.ID); ws.State != contract.StateRunning {
		t.Fatalf("a expired though it was used 50 s ago: %+v", ws)
	}

	// A command in flight keeps its workspace alive past the TTL.
	started, release := make(chan struct{}), make(chan struct{})
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		close(started)
		<-release
		return proto.ExecResult{}, nil
	}
	done := make(chan error)
	go func() {
		_, err := h.m.Exec(bg, contract.ExecRequest{ID: a.ID, Command: "sleep"})
		done <- err
	}()
	<-started
	h.clock.advance(120 * time.Second)
	h.m.reap()
	if ws, _ := h.m.Status(bg, a.ID); ws.State != contract.StateRunning {
		t.Fatalf("busy workspace expired: %+v", ws)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.clock.advance(61 * time.Second)
	h.m.reap()
	wa, _ := h.m.List(bg)
	states := map[string]contract.State{}
	for _, w := range wa {
		states[w.ID] = w.State
	}
	if states[a.ID] != contract.StateExpired || states[b.ID] != contract.StateRunning {
		t.Fatalf("states after reaping: %v", states)
	}
	_, err := h.m.Exec(bg, contract.ExecRequest{ID: a.ID, Command: "x"})
	wantCode(t, err, contract.CodeStopped)
	// Expired persists across a restart, and Start revives it.
	h.m.Close()
	h.open()
	if ws, _ := h.m.Status(bg, a.ID); ws.State != contract.StateExpired {
		t.Fatalf("after reopen: %+v", ws)
	}
	if ws, err := h.m.Start(bg, a.ID); err != nil || ws.State != contract.StateRunning {
		t.Fatalf("start expired: %+v %v", ws, err)
	}
}

func TestNamesAndLabels(t *testing.T) {
	h := newHarness(t)
	a := h.create(contract.CreateRequest{Name: "alpha"})
	_, err := h.m.Create(bg, contract.CreateRequest{Name: "alpha", TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	wantCode(t, err, contract.CodeExists)
	b := h.create(contract.CreateRequest{Name: "beta"})
	name := "alpha"
	_, err = h.m.Update(bg, b.ID, contract.UpdateRequest{Name: &name})
	wantCode(t, err, contract.CodeExists)
	empty := ""
	if ws, err := h.m.Update(bg, a.ID, contract.UpdateRequest{Name: &empty, Labels: map[string]string{"k": "v", "x": "y"}}); err != nil || ws.Name != "" || len(ws.Labels) != 2 {
		t.Fatalf("update: %+v %v", ws, err)
	}
	if ws, _ := h.m.Update(bg, b.ID, contract.UpdateRequest{Name: &name}); ws.Name != "alpha" {
		t.Fatalf("rename to a freed name: %+v", ws)
	}
	if ws, _ := h.m.Update(bg, a.ID, contract.UpdateRequest{RemoveLabels: []string{"x"}}); len(ws.Labels) != 1 || ws.Labels["k"] != "v" {
		t.Fatalf("remove label: %+v", ws)
	}
	// Most recently active first.
	h.clock.advance(time.Second)
	h.m.Status(bg, a.ID)
	list, _ := h.m.List(bg)
	if list[0].ID != a.ID {
		t.Fatalf("list order: %v then %v", list[0].ID, list[1].ID)
	}
	// Concurrent creates with one name: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.m.Create(bg, contract.CreateRequest{Name: "gamma", TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d creates took the name gamma", wins)
	}
}

func TestRunningLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxRunning = 1 })
	a := h.create(contract.CreateRequest{})
	_, err := h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	if e := wantCode(t, err, contract.CodeLimit); e.Hint == "" {
		t.Fatal("limit error without a hint")
	}
	if _, err := h.m.Stop(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	b := h.create(contract.CreateRequest{})
	_, err = h.m.Start(bg, a.ID)
	wantCode(t, err, contract.CodeLimit)
	_, err = h.m.Reset(bg, a.ID, "")
	wantCode(t, err, contract.CodeLimit)
	// Reset of the running one keeps its slot.
	if _, err := h.m.Reset(bg, b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Delete(bg, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(bg, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Run(bg, contract.RunRequest{Command: "x", TimeoutSeconds: 5}); !contract.IsCode(err, contract.CodeLimit) {
		t.Fatalf("run over the limit: %v", err)
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t)
	_, err := h.m.Status(bg, "ws-nope")
	wantCode(t, err, contract.CodeNotFound)
	_, err = h.m.Create(bg, contract.CreateRequest{Env: "minimal", TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	if e := wantCode(t, err, contract.CodeEnvMissing); !strings.Contains(e.Hint, "pyro env build minimal") {
		t.Fatalf("env missing hint: %q", e.Hint)
	}
	_, err = h.m.Create(bg, contract.CreateRequest{Env: "windows-11", TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	wantCode(t, err, contract.CodeNotFound)
	_, err = h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: filepath.Join(t.TempDir(), "nonexistent/dir")}})
	wantCode(t, err, contract.CodeNotFound)
	if h.w.bootCount() != 0 {
		t.Fatal("a failed create booted a VM")
	}
	h.w.failBoot = errors.New("kvm: no")
	_, err = h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	if e := wantCode(t, err, contract.CodeInternal); !strings.Contains(e.Hint, "pyro kvm-check") {
		t.Errorf("boot failure hint: %q", e.Hint)
	}
	if dirs := h.workspaceDirs(); len(dirs) != 0 {
		t.Fatalf("failed create left %v", dirs)
	}
	// A guest that crashed while it booted: the hint says to try again.
	h.w.failBoot = fmt.Errorf("%w before its agent was ready (crash: vCPU 0: triple fault)", instance.ErrStopped)
	_, err = h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	if e := wantCode(t, err, contract.CodeInternal); !strings.Contains(e.Msg, "triple fault") || !strings.Contains(e.Hint, "Create the workspace again") {
		t.Errorf("boot crash: %q, hint %q", e.Msg, e.Hint)
	}
	h.w.failBoot = nil

	id := h.create(contract.CreateRequest{Env: "debian:12"}).ID
	for _, p := range []string{"../etc/passwd", "/etc/passwd", "/workspace/../root"} {
		_, err = h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: p, MaxBytes: 10})
		wantCode(t, err, contract.CodeInvalid)
		_, err = h.m.WriteFile(bg, contract.WriteFileRequest{ID: id, Path: p, Content: []byte("x")})
		wantCode(t, err, contract.CodeInvalid)
	}
	// A symlink leading out: the (fake) agent refuses with EXDEV.
	h.vm(id).put("/workspace/out", &fakeFile{Type: proto.TypeSymlink, Target: "/etc"})
	_, err = h.m.WriteFile(bg, contract.WriteFileRequest{ID: id, Path: "out/passwd", Content: []byte("x")})
	wantCode(t, err, contract.CodeInvalid)
	_, err = h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: "missing.txt", MaxBytes: 10})
	wantCode(t, err, contract.CodeNotFound)
	_, err = h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: "/workspace", MaxBytes: 10})
	wantCode(t, err, contract.CodeInvalid)
	_, err = h.m.ApplyPatch(bg, id, "this is not a patch\n@@ -1 +1 @@\n")
	wantCode(t, err, contract.CodeInvalid)
	h.write(id, "a.txt", "one\n")
	pr, err := h.m.ApplyPatch(bg, id, "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+three\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new\n")
	if err != nil || pr.Applied || pr.Files[0].OK || pr.Files[0].Error == "" || len(pr.Files) != 2 {
		t.Fatalf("mismatching patch: %+v %v", pr, err)
	}
	if _, err := h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: "new.txt", MaxBytes: 10}); !contract.IsCode(err, contract.CodeNotFound) {
		t.Fatal("a failed patch wrote a file")
	}
	pr, err = h.m.ApplyPatch(bg, id, "--- a/a.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-one\n")
	if err != nil || !pr.Applied || pr.Files[0].Op != "delete" {
		t.Fatalf("delete patch: %+v %v", pr, err)
	}
	if _, ok := h.vm(id).file("/workspace/a.txt"); ok {
		t.Fatal("deleted file still there")
	}
	_, err = h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/etc", HostPath: filepath.Join(t.TempDir(), "x")})
	wantCode(t, err, contract.CodeInvalid)
	_, err = h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: ""})
	wantCode(t, err, contract.CodeInvalid)
	err = h.m.SnapshotDelete(bg, id, "nope")
	wantCode(t, err, contract.CodeNotFound)
	_, err = h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: filepath.Join(t.TempDir(), "nonexistent"), GuestDest: "/workspace"})
	wantCode(t, err, contract.CodeNotFound)
	_, err = h.m.Create(bg, contract.CreateRequest{TTLSeconds: 60, Seed: contract.SeedSpec{Kind: contract.SeedGit, Path: t.TempDir()}})
	wantCode(t, err, contract.CodeInvalid)
}

func TestSyncPush(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	src := seedDir(t, map[string]string{"lib/x.py": "x = 1\n"})
	r, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: src, GuestDest: "vendor"})
	if err != nil || r.Files != 1 || r.GuestDest != "/workspace/vendor" {
		t.Fatalf("push dir: %+v %v", r, err)
	}
	if h.read(id, "vendor/lib/x.py") != "x = 1\n" {
		t.Fatal("pushed file missing")
	}
	one := filepath.Join(src, "lib", "x.py")
	if r, err := h.m.SyncPush(bg, contract.SyncPushRequest{ID: id, HostPath: one, GuestDest: "/workspace"}); err != nil || r.Files != 1 {
		t.Fatalf("push file: %+v %v", r, err)
	}
	if h.read(id, "x.py") != "x = 1\n" {
		t.Fatal("pushed single file missing")
	}
}

// Stop, reset and delete interrupt a long command instead of waiting.
func TestInterrupt(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	started := make(chan struct{}, 1)
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		started <- struct{}{}
		<-ctx.Done()
		return proto.ExecResult{}, ctx.Err()
	}
	run := func() chan error {
		done := make(chan error, 1)
		go func() {
			_, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "sleep 1000", TimeoutSeconds: 3600})
			done <- err
		}()
		<-started
		return done
	}
	wait := func(op string, err error, done chan error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		select {
		case err := <-done:
			wantCode(t, err, contract.CodeConflict)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not interrupt the command", op)
		}
	}
	done := run()
	_, err := h.m.Stop(bg, id)
	wait("stop", err, done)
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	done = run()
	_, err = h.m.Reset(bg, id, "")
	wait("reset", err, done)
	done = run()
	wait("delete", h.m.Delete(bg, id), done)
}

// A guest that stops answering a file call costs a clear timeout error,
// not a call that never returns, and the workspace works again after a
// restart.
func TestGuestStopsAnswering(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	defer func(d time.Duration) { agentCallTimeout = d }(agentCallTimeout)
	agentCallTimeout = 100 * time.Millisecond
	h.w.mu.Lock()
	h.w.hangReads = true
	h.w.mu.Unlock()
	_, err := h.m.ReadFile(bg, contract.ReadFileRequest{ID: id, Path: "x", MaxBytes: 10})
	e := wantCode(t, err, contract.CodeTimeout)
	if !strings.Contains(e.Msg, "stopped answering while reading") || !strings.Contains(e.Hint, "{{start}}") {
		t.Errorf("message %q, hint %q", e.Msg, e.Hint)
	}
	// The caller's own cancellation is not a guest timeout.
	agentCallTimeout = time.Hour
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := h.m.ReadFile(ctx, contract.ReadFileRequest{ID: id, Path: "x", MaxBytes: 10}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("caller's deadline: %v", err)
	}
	h.w.mu.Lock()
	h.w.hangReads = false
	h.w.mu.Unlock()
	if _, err := h.m.Stop(bg, id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	h.write(id, "x", "back\n")
	if got := h.read(id, "x"); got != "back\n" {
		t.Fatalf("after restart: %q", got)
	}
}

// A guest that stops answering during a create fails the create with a
// timeout that names the step, and leaves no workspace behind.
func TestCreateGuestStopsAnswering(t *testing.T) {
	h := newHarness(t)
	defer func(d time.Duration) { agentCallTimeout = d }(agentCallTimeout)
	agentCallTimeout = 100 * time.Millisecond
	h.w.mu.Lock()
	h.w.hangSyncs = true
	h.w.mu.Unlock()
	_, err := h.m.Create(bg, contract.CreateRequest{Name: "stuck"})
	e := wantCode(t, err, contract.CodeTimeout)
	if !strings.Contains(e.Msg, "while recording the baseline") {
		t.Errorf("message %q", e.Msg)
	}
	if l, err := h.m.List(bg); err != nil || len(l) != 0 {
		t.Fatalf("a failed create left %+v (%v)", l, err)
	}
}

// A VM that stops by itself leaves its workspace stopped, with a reason.
func TestVMStopsByItself(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.vm(id).Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws, _ := h.m.Status(bg, id)
		if ws.State == contract.StateStopped {
			if ws.Error == "" {
				t.Fatal("no reason given")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s", ws.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	h := newHarness(t)
	r, err := h.m.Run(bg, contract.RunRequest{Command: "echo hi", TimeoutSeconds: 5})
	if err != nil || string(r.Stdout) != "ran: echo hi\n" || r.StdoutPath != "" {
		t.Fatalf("run: %+v %v", r, err)
	}
	if list, _ := h.m.List(bg); len(list) != 0 {
		t.Fatalf("run left %+v", list)
	}
	if dirs := h.workspaceDirs(); len(dirs) != 0 {
		t.Fatalf("run left %v", dirs)
	}
}

// Many calls at once on one workspace and on several: no race, no
// interleaved corruption.
func TestConcurrency(t *testing.T) {
	h := newHarness(t)
	ids := []string{h.create(contract.CreateRequest{}).ID, h.create(contract.CreateRequest{}).ID}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[i%2]
			switch i % 5 {
			case 0:
				h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x"})
			case 1:
				h.m.WriteFile(bg, contract.WriteFileRequest{ID: id, Path: fmt.Sprintf("f%d", i), Content: []byte("x")})
			case 2:
				h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: fmt.Sprintf("s%d", i)})
			case 3:
				h.m.Diff(bg, contract.DiffRequest{ID: id})
			case 4:
				h.m.List(bg)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 500})
		for i := 1; i < len(logs.Entries); i++ {
			if logs.Entries[i].Seq <= logs.Entries[i-1].Seq {
				t.Fatalf("journal out of order: %+v", logs.Entries)
			}
		}
		if len(logs.Entries) != 1+12 { // create, 4 execs, 4 writes, 4 snapshots
			t.Fatalf("%s: %d journal entries, want 13", id, len(logs.Entries))
		}
	}
}

func TestRecordAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws-12345678")
	os.Mkdir(dir, 0o700)
	r := &record{ID: "ws-12345678", Env: "debian-12", Snapshots: []snapRecord{{Name: "a", Layer: "00"}}}
	if err := writeRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	// A temporary file a crash left behind changes nothing.
	os.WriteFile(filepath.Join(dir, ".record.json.tmp-123"), []byte("{garbage"), 0o600)
	got, err := readRecord(dir)
	if err != nil || got.Env != "debian-12" || len(got.Snapshots) != 1 {
		t.Fatalf("read back: %+v %v", got, err)
	}
	other := filepath.Join(t.TempDir(), "ws-other")
	os.Mkdir(other, 0o700)
	b, _ := os.ReadFile(filepath.Join(dir, recordName))
	os.WriteFile(filepath.Join(other, recordName), b, 0o600)
	if _, err := readRecord(other); err == nil {
		t.Fatal("a record under another ID's directory was accepted")
	}
}

func TestJournalPaging(t *testing.T) {
	p := filepath.Join(t.TempDir(), journalName)
	j, _ := loadJournal(p)
	for i := range 5 {
		if _, err := j.append(entry{Kind: contract.LogExec, Command: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seq := j.reserve() // 6, appended after 7
	j.append(entry{Kind: contract.LogWrite})
	j.append(entry{Seq: seq, Kind: contract.LogExec, Command: "late"})
	page, more := j.page(0, 3)
	if len(page) != 3 || !more || page[2].Seq != 3 {
		t.Fatalf("page 1: %+v %v", page, more)
	}
	page, more = j.page(3, 10)
	if len(page) != 4 || more || page[2].Command != "late" || page[2].Seq != 6 || page[3].Seq != 7 {
		t.Fatalf("page 2: %+v %v", page, more)
	}
	j.close()
	// A torn last line is dropped, and the next append starts clean.
	f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":8,"kin`)
	f.Close()
	j, _ = loadJournal(p)
	if s, _ := j.last(); s != 7 {
		t.Fatalf("last after reload: %d", s)
	}
	if s, _ := j.append(entry{Kind: contract.LogExec}); s != 8 {
		t.Fatalf("next seq %d", s)
	}
	j.close()
	j, _ = loadJournal(p)
	if page, _ := j.page(7, 10); len(page) != 1 || page[0].Seq != 8 {
		t.Fatalf("after torn line: %+v", page)
	}
}

func tgzNames(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if des, _ := os.ReadDir(filepath.Dir(p)); len(des) != 1 {
		t.Fatalf("temporary files left next to %s: %v", p, des)
	}
	return strings.Join(names, " ")
}

func TestEnvs(t *testing.T) {
	h := newHarness(t)
	envs, err := h.m.Envs(bg)
	if err != nil || len(envs) == 0 {
		t.Fatalf("envs: %+v %v", envs, err)
	}
	defaults := 0
	for _, e := range envs {
		if e.Built || !strings.HasPrefix(e.BuildCommand, "pyro env build ") {
			t.Fatalf("env in an empty cache: %+v", e)
		}
		if e.Default {
			defaults++
			if e.Name != DefaultEnv {
				t.Fatalf("default is %s", e.Name)
			}
		}
	}
	if defaults != 1 {
		t.Fatalf("%d defaults", defaults)
	}
}
