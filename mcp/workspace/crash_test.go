package workspace

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// The crash test: a child process (this test binary, running
// TestCrashHelper) opens a Manager on a state directory prepared here and
// performs one operation; at a named step (crashPoint) it says so on
// stdout and waits, and the parent kills it with SIGKILL. The parent then
// opens a fresh Manager on the same state directory and checks that the
// records, journals and disk layers agree, that no orphaned layer and no
// temporary file is left, and that every workspace still works.

// crashSpecEnv carries the child's crashSpec, as JSON.
const crashSpecEnv = "PYRO_TEST_CRASH_SPEC"

// crashSaid prefixes the child's "I am at the point" line.
const crashSaid = "pyro-crash-at "

type crashSpec struct {
	Root   string // the harness's root: state/, rootfs.ext4, cache/
	Op     string // create, snapshot, snapshot-delete, reset, export, export-tar, delete
	Point  string // the crashPoint name to stop at
	ID     string // the workspace the op works on
	Start  bool   // start the workspace before the op
	Target string // export's host path
}

// crashCase is one operation and the points it is killed at.
type crashCase struct {
	op     string
	start  bool
	points []string
	// setup prepares the state directory with h's Manager (open, then
	// closed by the caller) and returns the workspace the op works on.
	setup func(t *testing.T, h *harness) string
	// check, if set, checks the workspace after the restart.
	check func(t *testing.T, h *harness, id string)
}

// crashOptions are the harness's Options for root, booting with boot.
func crashOptions(root string, boot bootFunc) Options {
	base := filepath.Join(root, "rootfs.ext4")
	return Options{
		StateDir:     filepath.Join(root, "state"),
		CacheRoot:    filepath.Join(root, "cache"),
		ReapInterval: time.Hour,
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			return &env.Env{Name: name, Rootfs: base}, nil
		},
		hooks: hooks{boot: boot},
	}
}

// TestCrashHelper is the child of TestCrash; run by itself it skips.
func TestCrashHelper(t *testing.T) {
	js := os.Getenv(crashSpecEnv)
	if js == "" {
		t.Skip("the child process of TestCrash")
	}
	var sp crashSpec
	if err := json.Unmarshal([]byte(js), &sp); err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	crashPoint = func(name string) {
		if armed.Load() && name == sp.Point {
			fmt.Fprintln(os.Stdout, crashSaid+name)
			for {
				time.Sleep(time.Hour) // until the parent's SIGKILL
			}
		}
	}
	wd := &world{t: t}
	m, err := Open(crashOptions(sp.Root, wd.boot))
	if err != nil {
		t.Fatal(err)
	}
	if sp.Start {
		if _, err := m.Start(bg, sp.ID); err != nil {
			t.Fatal(err)
		}
	}
	armed.Store(true)
	switch sp.Op {
	case "create":
		_, err = m.Create(bg, contract.CreateRequest{Name: "crashed", Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	case "snapshot":
		_, err = m.SnapshotCreate(bg, contract.SnapshotRequest{ID: sp.ID, Name: "s2"})
	case "snapshot-delete":
		err = m.SnapshotDelete(bg, sp.ID, "s1")
	case "reset":
		_, err = m.Reset(bg, sp.ID, "")
	case "export", "export-tar":
		_, err = m.Export(bg, contract.ExportRequest{ID: sp.ID, GuestPath: "/workspace", HostPath: sp.Target, Overwrite: true})
	case "delete":
		err = m.Delete(bg, sp.ID)
	default:
		t.Fatalf("op %q", sp.Op)
	}
	t.Fatalf("%s finished (err %v) without reaching crash point %s", sp.Op, err, sp.Point)
}

// setupWorkspace makes a workspace with a file and snapshot s1, stopped.
func setupWorkspace(t *testing.T, h *harness) string {
	id := h.create(contract.CreateRequest{Name: "w"}).ID
	h.write(id, "/workspace/a.txt", "one\n")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	h.write(id, "/workspace/a.txt", "two\n")
	return id
}

// setupPendingLayer leaves a frozen layer that no name needs but the disk
// builds on (s1 deleted after the disk moved on from it): a reset frees it.
func setupPendingLayer(t *testing.T, h *harness) string {
	id := setupWorkspace(t, h)
	if err := h.m.SnapshotDelete(bg, id, "s1"); err != nil {
		t.Fatal(err)
	}
	if n := frozenLayers(t, h, id); n != 2 {
		t.Fatalf("setup: %d frozen layers, want the baseline and the deleted s1's", n)
	}
	return id
}

// setupLeafSnapshot leaves s1 a leaf layer (the disk was reset to the
// baseline): deleting s1 frees its layer.
func setupLeafSnapshot(t *testing.T, h *harness) string {
	id := setupWorkspace(t, h)
	if _, err := h.m.Reset(bg, id, ""); err != nil {
		t.Fatal(err)
	}
	return id
}

// checkResetAgrees checks that a reset the server was killed in either
// did not happen or happened and is recorded and journaled: the disk is
// back on the baseline exactly when the record and the journal say so.
func checkResetAgrees(t *testing.T, h *harness, id string) {
	t.Helper()
	dir := filepath.Join(h.state, "workspaces", id)
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ResetPending != nil {
		t.Errorf("the record still has a pending reset: %+v", rec.ResetPending)
	}
	st, err := disk.OpenReadOnly(filepath.Join(dir, diskDir))
	if err != nil {
		t.Fatal(err)
	}
	layers := st.Layers()
	st.Close()
	onBaseline := layers[len(layers)-1].Parent == rec.BaselineLayer
	j, err := loadJournal(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	journaled := slices.ContainsFunc(j.since(0), func(e entry) bool { return e.Kind == contract.LogReset && e.Seq == rec.ResetSeq })
	if onBaseline != (rec.ResetSeq > 0) || onBaseline != journaled {
		t.Errorf("disk reset %v, record says reset (seq %d) %v, journal says %v", onBaseline, rec.ResetSeq, rec.ResetSeq > 0, journaled)
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if got, ok := h.vm(id).file("/workspace/a.txt"); onBaseline == ok {
		t.Errorf("a.txt reads %q (exists %v), disk reset %v", got, ok, onBaseline)
	}
}

func frozenLayers(t *testing.T, h *harness, id string) int {
	t.Helper()
	w, err := h.m.get(id)
	if err != nil {
		t.Fatal(err)
	}
	st := w.handle().stack
	n := 0
	for _, l := range st.Layers() {
		if l.Frozen {
			n++
		}
	}
	return n
}

var crashCases = []crashCase{
	{op: "create", points: []string{"create:dir", "create:disk", "create:baseline-layer", "create:baseline-index",
		"atomic:record.json:tmp-written", "create:recorded"}},
	{op: "snapshot", start: true, setup: setupWorkspace,
		points: []string{"snapshot:frozen", "atomic:record.json:tmp-written", "snapshot:recorded"}},
	{op: "snapshot", setup: setupWorkspace, // stopped: the disk is frozen as it is
		points: []string{"snapshot:frozen", "atomic:record.json:tmp-written", "snapshot:recorded"}},
	{op: "snapshot-delete", setup: setupLeafSnapshot,
		points: []string{"atomic:record.json:tmp-written", "snapshot-delete:recorded"}},
	{op: "reset", start: true, setup: setupPendingLayer, check: checkResetAgrees,
		points: []string{"atomic:record.json:tmp-written", "reset:pending", "reset:checked-out", "reset:booted"}},
	{op: "reset", setup: setupPendingLayer, check: checkResetAgrees,
		points: []string{"atomic:record.json:tmp-written", "reset:pending", "reset:checked-out", "reset:booted"}},
	{op: "export", start: true, setup: setupWorkspace, points: []string{"export:writing", "export:written"}},
	{op: "export-tar", start: true, setup: setupWorkspace, points: []string{"export:writing", "export:written"}},
	{op: "delete", start: true, setup: setupWorkspace, points: []string{"delete:killed", "delete:renamed"}},
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process per crash point")
	}
	if os.Getenv("PYRO_KVM") == "1" {
		t.Skip("needs no KVM and ran in the unit tier; the VM tier spares its emulated CPU")
	}
	for _, c := range crashCases {
		for _, point := range c.points {
			name := c.op
			if c.start {
				name += "-running"
			}
			// Not parallel: a child forked while another subtest holds a
			// flock shares it until its exec, and that subtest's next
			// open of the same disk or workspace would find it taken.
			t.Run(name+"/"+point, func(t *testing.T) { crashOne(t, c, point) })
		}
	}
}

func crashOne(t *testing.T, c crashCase, point string) {
	h := newHarness(t)
	root := filepath.Dir(h.state)
	var id string
	if c.setup != nil {
		id = c.setup(t, h)
	}
	before := listWorkspaces(t, h)
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	h.m = nil
	sp := crashSpec{Root: root, Op: c.op, Point: point, ID: id, Start: c.start}
	exportDir := filepath.Join(root, "export")
	switch c.op {
	case "export":
		sp.Target = filepath.Join(exportDir, "tree")
	case "export-tar":
		sp.Target = filepath.Join(exportDir, "ws.tar.gz")
	}
	if sp.Target != "" {
		if err := os.Mkdir(exportDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	killAt(t, sp)
	tearAsAHostCrashMight(t, h)
	if sp.Target != "" {
		// The export was killed a while ago: what it left is no longer
		// what a running export might still be writing.
		des, err := os.ReadDir(exportDir)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		for _, de := range des {
			os.Chtimes(filepath.Join(exportDir, de.Name()), old, old)
		}
	}

	// Restart, as the next `pyro mcp serve` would.
	h.w = &world{t: t}
	h.opts.hooks.boot = h.w.boot
	h.open()
	checkState(t, h)
	after := listWorkspaces(t, h)
	// Recovery is done once: another restart adds nothing.
	journals := readJournals(t, h)
	h.m.Close()
	h.open()
	if again := readJournals(t, h); !maps.Equal(again, journals) {
		t.Fatalf("a second restart changed the journals:\n%v\nthen\n%v", journals, again)
	}
	switch c.op {
	case "create":
		if len(after) > 1 || len(after) == 1 && after[0].Name != "crashed" {
			t.Fatalf("after a crashed create: %+v", after)
		}
	case "delete":
		if len(after) != 0 && (len(after) != 1 || after[0].ID != id) {
			t.Fatalf("after a crashed delete: %+v", after)
		}
	default:
		if len(after) != len(before) || after[0].ID != id {
			t.Fatalf("workspaces %+v, want %+v", after, before)
		}
	}
	if c.check != nil {
		c.check(t, h, id)
	}
	for _, ws := range after {
		checkWorks(t, h, ws.ID)
	}
	if sp.Target != "" && len(after) == 1 {
		// The next export to the same place succeeds and leaves nothing
		// beside its target.
		if _, err := h.m.Start(bg, id); err != nil {
			t.Fatal(err)
		}
		r, err := h.m.Export(bg, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: sp.Target, Overwrite: true})
		if err != nil {
			t.Fatalf("export after the crash: %v", err)
		}
		if r.Files == 0 {
			t.Fatalf("export after the crash: %+v", r)
		}
		checkExportDir(t, exportDir, filepath.Base(sp.Target))
	}
}

func checkExportDir(t *testing.T, dir, base string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, de := range des {
		// An export's temporaries are ".NAME.pyro-KIND-..."; a backup of
		// an overwritten target (".pyro-backup-") is kept on purpose.
		if n := de.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".pyro-") && !strings.Contains(n, ".pyro-backup-") {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("left beside the export target %s after the next export: %v", base, left)
	}
}

// readJournals returns every workspace's journal file.
func readJournals(t *testing.T, h *harness) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, ws := range listWorkspaces(t, h) {
		b, err := os.ReadFile(filepath.Join(h.state, "workspaces", ws.ID, journalName))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		m[ws.ID] = string(b)
	}
	return m
}

// tearAsAHostCrashMight adds to every workspace what a crash of the host
// (not only of the server) can also leave, and a SIGKILL at a hook
// cannot: a torn last journal line, and the files of a disk update
// (a new layer, a manifest temporary) that never committed.
func tearAsAHostCrashMight(t *testing.T, h *harness) {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(h.state, "workspaces"))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		dir := filepath.Join(h.state, "workspaces", de.Name())
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, journalName)); err == nil {
			f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"seq":9999,"time":"2026-01-0`)
			f.Close()
		}
		if _, err := os.Stat(filepath.Join(dir, diskDir, "manifest.json")); err == nil {
			for _, n := range []string{"0123456789abcdef.data", "0123456789abcdef.map", "manifest.json.tmp"} {
				if err := os.WriteFile(filepath.Join(dir, diskDir, n), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// killAt runs the child and kills it with SIGKILL once it reports point.
func killAt(t *testing.T, sp crashSpec) {
	t.Helper()
	js, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 2*time.Minute) // a child that hangs elsewhere
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashSpecEnv+"="+string(js), "PYRO_KVM=0")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var said []string
	reached := false
	for sc.Scan() {
		said = append(said, sc.Text())
		if sc.Text() == crashSaid+sp.Point {
			reached = true
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	err = cmd.Wait()
	if !reached {
		t.Fatalf("the child never reached %s (%v):\n%s\n%s", sp.Point, err, strings.Join(said, "\n"), errOut.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended %v, not by SIGKILL", cmd.ProcessState)
	}
}

func listWorkspaces(t *testing.T, h *harness) []contract.Workspace {
	t.Helper()
	l, err := h.m.List(bg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkState checks the state directory after a restart: no temporaries
// or remains of a delete, and for every workspace a readable record, a
// parseable journal that agrees with it, and a disk whose layers are
// exactly those the record needs.
func checkState(t *testing.T, h *harness) {
	t.Helper()
	filepath.WalkDir(h.state, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walking the state directory: %v", err)
			return nil
		}
		n := de.Name()
		if strings.HasSuffix(n, ".tmp") || strings.Contains(n, ".tmp-") || strings.HasPrefix(n, ".deleting-") || strings.Contains(n, ".pyro-") {
			t.Errorf("left in the state directory after a restart: %s", p)
		}
		return nil
	})
	des, err := os.ReadDir(filepath.Join(h.state, "workspaces"))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		dir := filepath.Join(h.state, "workspaces", de.Name())
		rec, err := readRecord(dir)
		if err != nil {
			t.Errorf("workspace %s: %v", de.Name(), err)
			continue
		}
		if w := h.m.lookup(rec.ID); w == nil {
			t.Errorf("workspace %s is not listed", rec.ID)
		}
		checkJournal(t, dir, rec)
		checkLayers(t, dir, rec)
	}
}

func checkJournal(t *testing.T, dir string, rec *record) {
	t.Helper()
	j, err := loadJournal(filepath.Join(dir, journalName))
	if err != nil {
		t.Errorf("%s: journal: %v", rec.ID, err)
		return
	}
	ents := j.since(0)
	bySeq := map[int64]entry{}
	for _, e := range ents {
		bySeq[e.Seq] = e
	}
	recorded := map[int64]bool{}
	for _, s := range rec.Snapshots {
		recorded[s.Seq] = true
		if e, ok := bySeq[s.Seq]; !ok || e.Command != "snapshot "+s.Name {
			t.Errorf("%s: snapshot %s (seq %d) has no journal line: %+v", rec.ID, s.Name, s.Seq, e)
		}
	}
	for i, e := range ents {
		name, ok := strings.CutPrefix(e.Command, "snapshot ")
		if e.Kind != contract.LogSnapshot || !ok || strings.Contains(e.Command, "delete ") || strings.Contains(e.Command, "lost ") || recorded[e.Seq] {
			continue
		}
		if !slices.ContainsFunc(ents[i+1:], func(l entry) bool {
			return l.Command == "snapshot delete "+name || l.Command == "snapshot lost "+name
		}) {
			t.Errorf("%s: the journal has snapshot %s (seq %d), the record neither has it nor says it went", rec.ID, name, e.Seq)
		}
	}
}

func checkLayers(t *testing.T, dir string, rec *record) {
	t.Helper()
	st, err := disk.OpenReadOnly(filepath.Join(dir, diskDir))
	if err != nil {
		t.Errorf("%s: disk: %v", rec.ID, err)
		return
	}
	defer st.Close()
	layers := st.Layers()
	frozen := map[string]bool{}
	children := map[string]int{}
	for _, l := range layers {
		if l.Frozen {
			frozen[l.ID] = true
		}
		children[l.Parent]++
	}
	if !frozen[rec.BaselineLayer] {
		t.Errorf("%s: baseline layer %s is not on the disk", rec.ID, rec.BaselineLayer)
	}
	need := map[string]bool{rec.BaselineLayer: true}
	for _, s := range rec.Snapshots {
		need[s.Layer] = true
		if !frozen[s.Layer] {
			t.Errorf("%s: snapshot %s's layer %s is not on the disk", rec.ID, s.Name, s.Layer)
		}
	}
	for _, l := range layers {
		if l.Frozen && !need[l.ID] && children[l.ID] == 0 {
			t.Errorf("%s: orphaned disk layer %s (%s): no name needs it and nothing builds on it", rec.ID, l.ID, l.Name)
		}
	}
	names, err := os.ReadDir(filepath.Join(dir, diskDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range names {
		id, _, ok := strings.Cut(de.Name(), ".")
		if ok && de.Name() != "manifest.json" && !slices.ContainsFunc(layers, func(l disk.LayerInfo) bool { return l.ID == id }) {
			t.Errorf("%s: disk file %s belongs to no layer", rec.ID, de.Name())
		}
	}
}

// checkWorks starts the workspace and runs the loop on it: exec, write,
// snapshot, reset to it, delete the snapshot, stop.
func checkWorks(t *testing.T, h *harness, id string) {
	t.Helper()
	if ws, err := h.m.Start(bg, id); err != nil || ws.State != contract.StateRunning {
		t.Fatalf("start after the crash: %+v %v", ws, err)
	}
	if r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "true", TimeoutSeconds: 30}); err != nil || r.ExitCode != 0 {
		t.Fatalf("exec after the crash: %+v %v", r, err)
	}
	h.write(id, "/workspace/after.txt", "after\n")
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "after-crash"}); err != nil {
		t.Fatalf("snapshot after the crash: %v", err)
	}
	h.write(id, "/workspace/after.txt", "changed\n")
	if _, err := h.m.Reset(bg, id, "after-crash"); err != nil {
		t.Fatalf("reset after the crash: %v", err)
	}
	if got := h.read(id, "/workspace/after.txt"); got != "after\n" {
		t.Fatalf("after the reset: %q", got)
	}
	if err := h.m.SnapshotDelete(bg, id, "after-crash"); err != nil {
		t.Fatalf("snapshot delete after the crash: %v", err)
	}
	if _, err := h.m.Stop(bg, id); err != nil {
		t.Fatalf("stop after the crash: %v", err)
	}
	dir := filepath.Join(h.state, "workspaces", id)
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkJournal(t, dir, rec)
	checkLayers(t, dir, rec)
	// Every line whole: a torn one was cut before the next was appended.
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("the journal does not end with a whole line: %q", b[max(0, len(b)-80):])
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Seq <= 0 {
			t.Fatalf("journal line %d does not parse: %q: %v", i+1, line, err)
		}
	}
}

// Recovery writes a recorded snapshot's journal line only when the crash
// cut it (the newest seq): a journal whose older lines are gone (cut by
// rotation, or lost) is not refilled at every restart.
func TestRecoverLeavesOlderJournalAlone(t *testing.T) {
	h := newHarness(t)
	id := setupWorkspace(t, h)
	h.m.Close()
	h.m = nil
	p := filepath.Join(h.state, "workspaces", id, journalName)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if !strings.Contains(line, `"command":"snapshot s1"`) {
			kept = append(kept, line)
		}
	}
	cut := strings.Join(kept, "")
	if cut == string(b) {
		t.Fatal("setup: no snapshot line")
	}
	if err := os.WriteFile(p, []byte(cut), 0o600); err != nil {
		t.Fatal(err)
	}
	h.open()
	if got, err := os.ReadFile(p); err != nil || string(got) != cut {
		t.Fatalf("the journal changed at restart: %q %v", got, err)
	}
}

// A reset whose VM does not boot has still reset the disk: the start
// that follows records it, so that a restart after the agent worked on
// the disk again does not reset it a second time.
func TestResetBootFailureThenRestart(t *testing.T) {
	h := newHarness(t)
	id := setupWorkspace(t, h)
	h.w.failBoot = errors.New("no boot today")
	if _, err := h.m.Reset(bg, id, "s1"); err == nil {
		t.Fatal("reset booted")
	}
	h.w.failBoot = nil
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if got := h.read(id, "/workspace/a.txt"); got != "one\n" {
		t.Fatalf("after the reset: %q", got)
	}
	h.write(id, "/workspace/a.txt", "kept\n")
	if _, err := h.m.Stop(bg, id); err != nil {
		t.Fatal(err)
	}
	h.m.Close()
	h.open()
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if got := h.read(id, "/workspace/a.txt"); got != "kept\n" {
		t.Fatalf("after a restart: %q, want what was written after the reset", got)
	}
	checkResetRecorded(t, h, id)
}

// checkResetRecorded checks that the record's last reset is journaled and
// no reset is pending.
func checkResetRecorded(t *testing.T, h *harness, id string) {
	t.Helper()
	dir := filepath.Join(h.state, "workspaces", id)
	rec, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	j, err := loadJournal(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if rec.ResetPending != nil || rec.ResetSeq == 0 || rec.ResetFrom != "s1" ||
		!slices.ContainsFunc(j.since(0), func(e entry) bool { return e.Kind == contract.LogReset && e.Seq == rec.ResetSeq }) {
		t.Fatalf("reset: pending %+v, seq %d from %q; journal %+v", rec.ResetPending, rec.ResetSeq, rec.ResetFrom, j.since(0))
	}
}
