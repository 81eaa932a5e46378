// Package mcptest provides an in-memory contract.Backend for tests of the MCP tool
// layer and of anything built on it (the CLI). It boots nothing: workspaces
// are maps of guest paths to bytes, commands are answered by ExecFunc.
// Create, Start, Reset and Fork report stages through contract.Progress as the
// manager does.
package mcptest

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Backend is a fake contract.Backend. The zero value is not usable; call New.
type Backend struct {
	// ExecFunc answers Exec and Run; nil answers every command with exit 0
	// and stdout "ran: COMMAND\n". Set it before use. It is called with the
	// fake's lock held, so it must not call back into the Backend.
	ExecFunc func(req contract.ExecRequest) (contract.ExecResult, error)
	// MaxRunning limits running workspaces (Create returns CodeLimit
	// beyond it); 0 means no limit. Set it before use.
	MaxRunning int

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	seq int
	// Guarded by mu.
	ws map[string]*workspace
	// Guarded by mu.
	calls []string
	// Guarded by mu.
	errs map[string]error
	// Guarded by mu.
	envs []contract.Environment
	// Guarded by mu.
	exported map[string]bool
	// Guarded by mu.
	now time.Time
}

type workspace struct {
	w        contract.Workspace
	files    map[string][]byte
	baseline map[string][]byte
	snaps    []snap
	journal  []contract.LogEntry
	since    time.Time
	resetTo  string
	exports  []contract.ExportResult
	net      contract.NetworkStatus // grants, published ports and denials (network.go)
	// secrets by name (secrets.go)
	secrets map[string]contract.SecretSource
	bg      []*bgCmd                // background commands, oldest first (background.go)
	svcs    map[string]*fakeService // services by name (service.go)
	shells  []*fakeShell            // interactive shells (shell.go)
}

type snap struct {
	s     contract.Snapshot
	files map[string][]byte
}

var _ contract.Backend = (*Backend)(nil)

// New returns an empty fake with two environments: "debian-12" (built, the
// default) and "debian-12-build" (not built).
func New() *Backend {
	return &Backend{
		ws:       make(map[string]*workspace),
		errs:     make(map[string]error),
		exported: make(map[string]bool),
		now:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		envs: []contract.Environment{
			{Name: "debian-12", Description: "Debian 12 with git", Built: true, Default: true, BuildCommand: "pyro env build debian-12"},
			{Name: "debian-12-build", Description: "Debian 12 with build tools", BuildCommand: "pyro env build debian-12-build"},
		},
	}
}

// Calls returns the names of the Backend methods called so far, in order.
func (b *Backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// SetError makes every later call of method (e.g. "Exec") return err; nil
// clears it.
func (b *Backend) SetError(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.errs, method)
	} else {
		b.errs[method] = err
	}
}

// SetFile writes a guest file directly, bypassing the journal.
func (b *Backend) SetFile(id, p string, content []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		w.files[abs(p)] = slices.Clone(content)
	}
}

// SetState forces a workspace's state.
func (b *Backend) SetState(id string, s contract.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		w.w.State = s
	}
}

// begin records a call and returns the injected error, if any. Called with mu held.
func (b *Backend) begin(method string) error {
	b.calls = append(b.calls, method)
	b.now = b.now.Add(time.Second)
	return b.errs[method]
}

func abs(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/workspace/" + p
	}
	return path.Clean(p)
}

// get returns a workspace; running requires StateRunning. Called with mu held.
func (b *Backend) get(id string, running bool) (*workspace, error) {
	w := b.ws[id]
	if w == nil {
		return nil, contract.NotFound(contract.ResourceWorkspace, id)
	}
	if running && w.w.State != contract.StateRunning {
		return nil, contract.Stopped(id, w.w.State)
	}
	w.w.LastActiveAt = b.now
	if w.w.TTLSeconds > 0 {
		w.w.ExpiresAt = b.now.Add(time.Duration(w.w.TTLSeconds) * time.Second)
	}
	return w, nil
}

func (w *workspace) log(now time.Time, kind contract.LogKind, cmd string, exit *int, detail string) int64 {
	seq := int64(len(w.journal) + 1)
	w.journal = append(w.journal, contract.LogEntry{Seq: seq, Time: now, Kind: kind, Command: cmd, ExitCode: exit, Duration: 5 * time.Millisecond, Detail: detail})
	w.w.LastSeq = seq
	return seq
}

func (w *workspace) snapshot() contract.Workspace {
	c := w.w
	c.Labels = maps.Clone(w.w.Labels)
	c.Snapshots = len(w.snaps)
	if st := w.netStatus(); len(st.Grants)+len(st.Published)+len(st.Denials) > 0 {
		c.Network = &st
	}
	c.Secrets = w.secretInfos()
	c.Background = w.runningBg()
	if c.State == contract.StateRunning && len(w.svcs) > 0 {
		c.Services = w.services()
	}
	return c
}

// Create implements contract.Backend.
func (b *Backend) Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Create"); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.create(req)
	if err == nil {
		reportBoot(ctx)
		if req.Seed.Kind != contract.SeedNone && req.Seed.Kind != "" {
			for i := range 4 {
				contract.Progress(ctx, "seeding /workspace", float64(i), 3)
			}
		}
		contract.Progress(ctx, "recording the baseline", 0, 0)
	}
	return w, err
}

// reportBoot reports the stages of a boot, as the manager does.
func reportBoot(ctx context.Context) {
	contract.Progress(ctx, "booting the microVM", 0, 0)
	contract.Progress(ctx, "guest agent ready", 0, 0)
}

func (b *Backend) create(req contract.CreateRequest) (contract.Workspace, error) {
	env, err := b.env(req.Env)
	if err != nil {
		return contract.Workspace{}, err
	}
	if req.Name != "" {
		for _, w := range b.ws {
			if w.w.Name == req.Name {
				return contract.Workspace{}, contract.Exists(contract.ResourceWorkspace, req.Name)
			}
		}
	}
	if b.MaxRunning > 0 {
		n := 0
		for _, w := range b.ws {
			if w.w.State == contract.StateRunning {
				n++
			}
		}
		if n >= b.MaxRunning {
			return contract.Workspace{}, contract.LimitReached("%d workspaces are running, the host limit", n)
		}
	}
	b.seq++
	id := fmt.Sprintf("ws-%d", b.seq)
	files := map[string][]byte{}
	seed := contract.SeedReport{Kind: req.Seed.Kind, Source: req.Seed.Path}
	if req.Seed.Kind != contract.SeedNone && req.Seed.Kind != "" {
		files["/workspace/README.md"] = []byte("seeded from " + req.Seed.Path + "\n")
		seed.Files, seed.Bytes = 1, int64(len(files["/workspace/README.md"]))
	}
	w := &workspace{
		w: contract.Workspace{ID: id, Name: req.Name, Labels: maps.Clone(req.Labels), Env: env, State: contract.StateRunning,
			CreatedAt: b.now, LastActiveAt: b.now, ExpiresAt: b.now.Add(time.Duration(req.TTLSeconds) * time.Second),
			TTLSeconds: req.TTLSeconds, VCPUs: or(req.VCPUs, 2), MemMiB: or(req.MemMiB, 1024), Seed: seed},
		files:    files,
		secrets:  maps.Clone(req.Secrets),
		baseline: maps.Clone(files),
		since:    b.now,
	}
	for _, g := range req.Network {
		w.net.Grants = append(w.net.Grants, contract.GrantStatus{Grant: g})
	}
	w.log(b.now, contract.LogLife, "create", nil, "")
	b.ws[id] = w
	return w.snapshot(), nil
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (b *Backend) env(name string) (string, error) {
	for _, e := range b.envs {
		if (name == "" && e.Default) || e.Name == name {
			if !e.Built {
				return "", contract.EnvMissing(e.Name)
			}
			return e.Name, nil
		}
	}
	return "", contract.NotFound(contract.ResourceEnv, name)
}

// List implements contract.Backend.
func (b *Backend) List(ctx context.Context) ([]contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("List"); err != nil {
		return nil, err
	}
	out := make([]contract.Workspace, 0, len(b.ws))
	for _, w := range b.ws {
		out = append(out, w.snapshot())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastActiveAt.Equal(out[j].LastActiveAt) {
			return out[i].LastActiveAt.After(out[j].LastActiveAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Status implements contract.Backend.
func (b *Backend) Status(ctx context.Context, id string) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Status"); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Workspace{}, err
	}
	return w.snapshot(), nil
}

// Update implements contract.Backend.
func (b *Backend) Update(ctx context.Context, id string, req contract.UpdateRequest) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Update"); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Workspace{}, err
	}
	if req.Name != nil {
		for _, o := range b.ws {
			if o != w && *req.Name != "" && o.w.Name == *req.Name {
				return contract.Workspace{}, contract.Exists(contract.ResourceWorkspace, *req.Name)
			}
		}
		w.w.Name = *req.Name
	}
	if w.w.Labels == nil {
		w.w.Labels = map[string]string{}
	}
	for _, k := range req.RemoveLabels {
		delete(w.w.Labels, k)
	}
	maps.Copy(w.w.Labels, req.Labels)
	return w.snapshot(), nil
}

// Stop implements contract.Backend.
func (b *Backend) Stop(ctx context.Context, id string) (contract.Workspace, error) {
	return b.setRun(id, "Stop", contract.StateStopped)
}

// Start implements contract.Backend.
func (b *Backend) Start(ctx context.Context, id string) (contract.Workspace, error) {
	w, err := b.setRun(id, "Start", contract.StateRunning)
	if err == nil {
		reportBoot(ctx)
	}
	return w, err
}

func (b *Backend) setRun(id, method string, s contract.State) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(method); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Workspace{}, err
	}
	if s != contract.StateRunning {
		w.endServices(b.now)
	}
	w.w.State = s
	w.log(b.now, contract.LogLife, strings.ToLower(method), nil, "")
	return w.snapshot(), nil
}

// Delete implements contract.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Delete"); err != nil {
		return err
	}
	if _, err := b.get(id, false); err != nil {
		return err
	}
	delete(b.ws, id)
	return nil
}

func (b *Backend) exec(req contract.ExecRequest) (contract.ExecResult, error) {
	if b.ExecFunc != nil {
		return b.ExecFunc(req)
	}
	cmd := req.Command
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	out := []byte("ran: " + cmd + "\n")
	return contract.ExecResult{Stdout: out, StdoutSize: int64(len(out)), Duration: 12 * time.Millisecond}, nil
}

// Exec implements contract.Backend.
func (b *Backend) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Exec"); err != nil {
		return contract.ExecResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.ExecResult{}, err
	}
	r, err := b.exec(req)
	if err != nil {
		return r, err
	}
	cmd := req.Command
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	exit := r.ExitCode
	r.Seq = w.log(b.now, contract.LogExec, cmd, &exit, "")
	return r, nil
}

// ListFiles implements contract.Backend.
func (b *Backend) ListFiles(ctx context.Context, req contract.ListFilesRequest) (contract.FileListing, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ListFiles"); err != nil {
		return contract.FileListing{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.FileListing{}, err
	}
	root := abs(req.Path)
	entries := map[string]contract.FileEntry{}
	found := false
	for p, c := range w.files {
		if p == root {
			return contract.FileListing{Path: root, Entries: []contract.FileEntry{{Path: p, Type: contract.FileRegular, Size: int64(len(c)), Mode: 0o644}}}, nil
		}
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(root, "/")+"/")
		if !ok {
			continue
		}
		found = true
		parts := strings.Split(rel, "/")
		if !req.Recursive {
			parts = parts[:1]
		}
		for i := range parts {
			full := path.Join(root, strings.Join(parts[:i+1], "/"))
			if full == p {
				entries[full] = contract.FileEntry{Path: full, Type: contract.FileRegular, Size: int64(len(c)), Mode: 0o644}
			} else {
				entries[full] = contract.FileEntry{Path: full, Type: contract.FileDir, Mode: 0o755}
			}
		}
	}
	if !found && root != "/workspace" {
		return contract.FileListing{}, contract.NotFound(contract.ResourceFile, root)
	}
	keys := sortedKeys(entries)
	var page []contract.FileEntry
	for i := req.Offset; i < len(keys) && len(page) < req.Limit; i++ {
		page = append(page, entries[keys[i]])
	}
	return contract.FileListing{Path: root, Entries: page, More: req.Offset+len(page) < len(keys)}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ReadFile implements contract.Backend.
func (b *Backend) ReadFile(ctx context.Context, req contract.ReadFileRequest) (contract.FileContent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ReadFile"); err != nil {
		return contract.FileContent{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.FileContent{}, err
	}
	p := abs(req.Path)
	c, ok := w.files[p]
	if !ok {
		return contract.FileContent{}, contract.NotFound(contract.ResourceFile, p)
	}
	start := min(req.Offset, int64(len(c)))
	end := min(start+int64(req.MaxBytes), int64(len(c)))
	return contract.FileContent{Path: p, Size: int64(len(c)), Offset: start, Content: slices.Clone(c[start:end]), EOF: end == int64(len(c))}, nil
}

// WriteFile implements contract.Backend.
func (b *Backend) WriteFile(ctx context.Context, req contract.WriteFileRequest) (contract.WriteResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("WriteFile"); err != nil {
		return contract.WriteResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.WriteResult{}, err
	}
	p := abs(req.Path)
	_, existed := w.files[p]
	w.files[p] = slices.Clone(req.Content)
	w.log(b.now, contract.LogWrite, "write "+p, nil, "")
	return contract.WriteResult{Path: p, Bytes: int64(len(req.Content)), Created: !existed}, nil
}

// ApplyPatch implements contract.Backend. It understands just enough of a unified
// diff for tests: each "+++ b/PATH" names a file; a patch containing the
// line "-MISMATCH" fails on that file; added lines replace nothing, they are
// appended.
func (b *Backend) ApplyPatch(ctx context.Context, id string, patch string) (contract.PatchResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ApplyPatch"); err != nil {
		return contract.PatchResult{}, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return contract.PatchResult{}, err
	}
	var res contract.PatchResult
	var cur *contract.FilePatch
	adds := map[string][]string{}
	for _, line := range strings.Split(patch, "\n") {
		switch {
		case strings.HasPrefix(line, "+++ "):
			name := strings.TrimPrefix(strings.TrimPrefix(line, "+++ "), "b/")
			res.Files = append(res.Files, contract.FilePatch{Path: name, Op: "modify", OK: true})
			cur = &res.Files[len(res.Files)-1]
			if _, ok := w.files[abs(name)]; !ok {
				cur.Op = "add"
			}
		case strings.HasPrefix(line, "--- "):
		case cur != nil && line == "-MISMATCH":
			cur.OK, cur.Error = false, "hunk 1 does not match at line 1"
		case cur != nil && strings.HasPrefix(line, "+"):
			cur.Additions++
			adds[cur.Path] = append(adds[cur.Path], line[1:])
		case cur != nil && strings.HasPrefix(line, "-"):
			cur.Deletions++
		}
	}
	if len(res.Files) == 0 {
		return contract.PatchResult{}, contract.Invalid("patch has no file headers (+++ b/PATH)")
	}
	res.Applied = true
	for _, f := range res.Files {
		res.Applied = res.Applied && f.OK
	}
	if res.Applied {
		for _, f := range res.Files {
			p := abs(f.Path)
			w.files[p] = append(w.files[p], []byte(strings.Join(adds[f.Path], "\n")+"\n")...)
		}
		w.log(b.now, contract.LogWrite, "patch", nil, fmt.Sprintf("%d files", len(res.Files)))
	}
	return res, nil
}

func (w *workspace) changes(filter string) ([]contract.FileChange, contract.DiffStats, string) {
	var out []contract.FileChange
	var patch strings.Builder
	var st contract.DiffStats
	all := maps.Clone(w.baseline)
	maps.Copy(all, w.files)
	for _, p := range sortedKeys(all) {
		rel := strings.TrimPrefix(p, "/workspace/")
		if filter != "" && rel != strings.TrimPrefix(abs(filter), "/workspace/") && !strings.HasPrefix(p, abs(filter)+"/") {
			continue
		}
		old, inBase := w.baseline[p]
		cur, inCur := w.files[p]
		var c contract.FileChange
		switch {
		case inBase && !inCur:
			c = contract.FileChange{Path: rel, Status: "deleted", Deletions: lines(old)}
		case !inBase && inCur:
			c = contract.FileChange{Path: rel, Status: "added", Additions: lines(cur)}
		case string(old) != string(cur):
			c = contract.FileChange{Path: rel, Status: "modified", Additions: lines(cur), Deletions: lines(old)}
		default:
			continue
		}
		out = append(out, c)
		st.Files++
		st.Additions += c.Additions
		st.Deletions += c.Deletions
		fmt.Fprintf(&patch, "--- a/%s\n+++ b/%s\n", rel, rel)
		for _, l := range strings.SplitAfter(string(cur), "\n") {
			if l != "" {
				patch.WriteString("+" + l)
			}
		}
	}
	return out, st, patch.String()
}

func lines(b []byte) int { return strings.Count(string(b), "\n") }

// Diff implements contract.Backend. PatchPath is a made-up host path; nothing is written.
func (b *Backend) Diff(ctx context.Context, req contract.DiffRequest) (contract.DiffResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Diff"); err != nil {
		return contract.DiffResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.DiffResult{}, err
	}
	files, st, patch := w.changes(req.Path)
	r := contract.DiffResult{Files: files, Stats: st, Patch: patch}
	if patch != "" {
		r.PatchPath = "/tmp/pyro-fake/" + req.ID + ".patch"
	}
	return r, nil
}

// Export implements contract.Backend. Nothing is written; a second export to the
// same host path without Overwrite returns CodeExists.
func (b *Backend) Export(ctx context.Context, req contract.ExportRequest) (contract.ExportResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Export"); err != nil {
		return contract.ExportResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.ExportResult{}, err
	}
	if b.exported[req.HostPath] && !req.Overwrite {
		return contract.ExportResult{}, contract.Exists(contract.ResourceHostPath, req.HostPath)
	}
	b.exported[req.HostPath] = true
	f := req.Format
	if f == contract.ExportAuto {
		f = contract.ExportTree
		if strings.HasSuffix(req.HostPath, ".tar") || strings.HasSuffix(req.HostPath, ".tgz") || strings.HasSuffix(req.HostPath, ".tar.gz") {
			f = contract.ExportTar
		}
	}
	r := contract.ExportResult{HostPath: req.HostPath, Format: f}
	for p, c := range w.files {
		if strings.HasPrefix(p, abs(req.GuestPath)) {
			r.Files++
			r.Bytes += int64(len(c))
		}
	}
	w.exports = append(w.exports, r)
	w.log(b.now, contract.LogExport, "export "+req.GuestPath+" -> "+req.HostPath, nil, "")
	return r, nil
}

// SyncPush implements contract.Backend: it writes one file, DEST/pushed.txt, and
// reports one skipped entry.
func (b *Backend) SyncPush(ctx context.Context, req contract.SyncPushRequest) (contract.SyncResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SyncPush"); err != nil {
		return contract.SyncResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.SyncResult{}, err
	}
	dest := abs(req.GuestDest)
	w.files[path.Join(dest, "pushed.txt")] = []byte("pushed\n")
	w.log(b.now, contract.LogSync, "sync "+req.HostPath+" -> "+dest, nil, "")
	return contract.SyncResult{HostPath: req.HostPath, GuestDest: dest, Files: 1, Bytes: 7,
		Skipped: []contract.SkippedEntry{{Path: "dev/null", Reason: "device file"}}}, nil
}

// SnapshotCreate implements contract.Backend.
func (b *Backend) SnapshotCreate(ctx context.Context, req contract.SnapshotRequest) (contract.Snapshot, error) {
	id, name := req.ID, req.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SnapshotCreate"); err != nil {
		return contract.Snapshot{}, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return contract.Snapshot{}, err
	}
	for _, s := range w.snaps {
		if s.s.Name == name {
			return contract.Snapshot{}, contract.Exists(contract.ResourceSnapshot, name)
		}
	}
	s := contract.Snapshot{Name: name, CreatedAt: b.now, Seq: w.log(b.now, contract.LogSnapshot, "snapshot "+name, nil, "")}
	w.snaps = append(w.snaps, snap{s: s, files: maps.Clone(w.files)})
	return s, nil
}

// SnapshotList implements contract.Backend.
func (b *Backend) SnapshotList(ctx context.Context, id string) ([]contract.Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SnapshotList"); err != nil {
		return nil, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return nil, err
	}
	out := make([]contract.Snapshot, len(w.snaps))
	for i, s := range w.snaps {
		out[i] = s.s
	}
	return out, nil
}

// SnapshotDelete implements contract.Backend.
func (b *Backend) SnapshotDelete(ctx context.Context, id string, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SnapshotDelete"); err != nil {
		return err
	}
	w, err := b.get(id, false)
	if err != nil {
		return err
	}
	for i, s := range w.snaps {
		if s.s.Name == name {
			w.snaps = slices.Delete(w.snaps, i, i+1)
			return nil
		}
	}
	return contract.NotFound(contract.ResourceSnapshot, name)
}

// Reset implements contract.Backend.
func (b *Backend) Reset(ctx context.Context, id string, snapshot string) (contract.ResetResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Reset"); err != nil {
		return contract.ResetResult{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.ResetResult{}, err
	}
	files := w.baseline
	if snapshot != "" {
		files = nil
		for _, s := range w.snaps {
			if s.s.Name == snapshot {
				files = s.files
			}
		}
		if files == nil {
			return contract.ResetResult{}, contract.NotFound(contract.ResourceSnapshot, snapshot)
		}
	}
	if snapshot != "" {
		contract.Progress(ctx, "restoring snapshot "+snapshot, 0, 0)
	} else {
		contract.Progress(ctx, "restoring the baseline", 0, 0)
	}
	reportBoot(ctx)
	w.files = maps.Clone(files)
	w.svcs = nil // the VM rebooted: no services
	w.w.State = contract.StateRunning
	w.since, w.resetTo, w.exports = b.now, snapshot, nil
	w.log(b.now, contract.LogReset, "reset", nil, snapshot)
	return contract.ResetResult{Workspace: w.snapshot(), Snapshot: snapshot, Duration: 80 * time.Millisecond}, nil
}

// Logs implements contract.Backend.
func (b *Backend) Logs(ctx context.Context, req contract.LogsRequest) (contract.LogPage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Logs"); err != nil {
		return contract.LogPage{}, err
	}
	w, err := b.get(req.ID, false)
	if err != nil {
		return contract.LogPage{}, err
	}
	var page contract.LogPage
	for _, e := range w.journal {
		if e.Seq <= req.AfterSeq {
			continue
		}
		if len(page.Entries) == req.Limit {
			page.More = true
			break
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

// Summary implements contract.Backend.
func (b *Backend) Summary(ctx context.Context, id string) (contract.Summary, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Summary"); err != nil {
		return contract.Summary{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Summary{}, err
	}
	s := contract.Summary{Workspace: w.snapshot(), Since: w.since, ResetFrom: w.resetTo, Exports: slices.Clone(w.exports)}
	for _, e := range w.journal {
		if e.Kind == contract.LogExec && !e.Time.Before(w.since) {
			s.Commands = append(s.Commands, e)
		}
	}
	s.Changes, s.Stats, _ = w.changes("")
	for _, sn := range w.snaps {
		s.Snapshots = append(s.Snapshots, sn.s)
	}
	return s, nil
}

// Run implements contract.Backend.
func (b *Backend) Run(ctx context.Context, req contract.RunRequest) (contract.ExecResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Run"); err != nil {
		return contract.ExecResult{}, err
	}
	if _, err := b.env(req.Env); err != nil {
		return contract.ExecResult{}, err
	}
	return b.exec(contract.ExecRequest{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars,
		TimeoutSeconds: req.TimeoutSeconds, Stdin: req.Stdin})
}

// Envs implements contract.Backend.
func (b *Backend) Envs(ctx context.Context) ([]contract.Environment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Envs"); err != nil {
		return nil, err
	}
	return slices.Clone(b.envs), nil
}
