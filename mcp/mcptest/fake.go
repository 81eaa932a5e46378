// Package mcptest provides an in-memory mcp.Backend for tests of the MCP tool
// layer and of anything built on it (the CLI). It boots nothing: workspaces
// are maps of guest paths to bytes, commands are answered by ExecFunc.
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

	"github.com/pyro-mcp/pyro/mcp"
)

// Backend is a fake mcp.Backend. The zero value is not usable; call New.
type Backend struct {
	// ExecFunc answers Exec and Run; nil answers every command with exit 0
	// and stdout "ran: COMMAND\n". Set it before use. It is called with the
	// fake's lock held, so it must not call back into the Backend.
	ExecFunc func(req mcp.ExecRequest) (mcp.ExecResult, error)
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
	envs []mcp.Environment
	// Guarded by mu.
	exported map[string]bool
	// Guarded by mu.
	now time.Time
}

type workspace struct {
	w        mcp.Workspace
	files    map[string][]byte
	baseline map[string][]byte
	snaps    []snap
	journal  []mcp.LogEntry
	since    time.Time
	resetTo  string
	exports  []mcp.ExportResult
	net      mcp.NetworkStatus // grants, published ports and denials (network.go)
	// secrets by name (secrets.go)
	secrets map[string]mcp.SecretSource
	bg      []*bgCmd                // background commands, oldest first (background.go)
	svcs    map[string]*fakeService // services by name (service.go)
	shells  []*fakeShell            // interactive shells (shell.go)
}

type snap struct {
	s     mcp.Snapshot
	files map[string][]byte
}

var _ mcp.Backend = (*Backend)(nil)

// New returns an empty fake with two environments: "debian-12" (built, the
// default) and "debian-12-build" (not built).
func New() *Backend {
	return &Backend{
		ws:       make(map[string]*workspace),
		errs:     make(map[string]error),
		exported: make(map[string]bool),
		now:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		envs: []mcp.Environment{
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
func (b *Backend) SetState(id string, s mcp.State) {
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
		return nil, mcp.NotFound(mcp.ResourceWorkspace, id)
	}
	if running && w.w.State != mcp.StateRunning {
		return nil, mcp.Stopped(id, w.w.State)
	}
	w.w.LastActiveAt = b.now
	if w.w.TTLSeconds > 0 {
		w.w.ExpiresAt = b.now.Add(time.Duration(w.w.TTLSeconds) * time.Second)
	}
	return w, nil
}

func (w *workspace) log(now time.Time, kind mcp.LogKind, cmd string, exit *int, detail string) int64 {
	seq := int64(len(w.journal) + 1)
	w.journal = append(w.journal, mcp.LogEntry{Seq: seq, Time: now, Kind: kind, Command: cmd, ExitCode: exit, Duration: 5 * time.Millisecond, Detail: detail})
	w.w.LastSeq = seq
	return seq
}

func (w *workspace) snapshot() mcp.Workspace {
	c := w.w
	c.Labels = maps.Clone(w.w.Labels)
	c.Snapshots = len(w.snaps)
	if st := w.netStatus(); len(st.Grants)+len(st.Published)+len(st.Denials) > 0 {
		c.Network = &st
	}
	c.Secrets = w.secretInfos()
	c.Background = w.runningBg()
	if c.State == mcp.StateRunning && len(w.svcs) > 0 {
		c.Services = w.services()
	}
	return c
}

// Create implements mcp.Backend.
func (b *Backend) Create(ctx context.Context, req mcp.CreateRequest) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Create"); err != nil {
		return mcp.Workspace{}, err
	}
	return b.create(req)
}

func (b *Backend) create(req mcp.CreateRequest) (mcp.Workspace, error) {
	env, err := b.env(req.Env)
	if err != nil {
		return mcp.Workspace{}, err
	}
	if req.Name != "" {
		for _, w := range b.ws {
			if w.w.Name == req.Name {
				return mcp.Workspace{}, mcp.Exists(mcp.ResourceWorkspace, req.Name)
			}
		}
	}
	if b.MaxRunning > 0 {
		n := 0
		for _, w := range b.ws {
			if w.w.State == mcp.StateRunning {
				n++
			}
		}
		if n >= b.MaxRunning {
			return mcp.Workspace{}, mcp.LimitReached("%d workspaces are running, the host limit", n)
		}
	}
	b.seq++
	id := fmt.Sprintf("ws-%d", b.seq)
	files := map[string][]byte{}
	seed := mcp.SeedReport{Kind: req.Seed.Kind, Source: req.Seed.Path}
	if req.Seed.Kind != mcp.SeedNone && req.Seed.Kind != "" {
		files["/workspace/README.md"] = []byte("seeded from " + req.Seed.Path + "\n")
		seed.Files, seed.Bytes = 1, int64(len(files["/workspace/README.md"]))
	}
	w := &workspace{
		w: mcp.Workspace{ID: id, Name: req.Name, Labels: maps.Clone(req.Labels), Env: env, State: mcp.StateRunning,
			CreatedAt: b.now, LastActiveAt: b.now, ExpiresAt: b.now.Add(time.Duration(req.TTLSeconds) * time.Second),
			TTLSeconds: req.TTLSeconds, VCPUs: or(req.VCPUs, 2), MemMiB: or(req.MemMiB, 1024), Seed: seed},
		files:    files,
		secrets:  maps.Clone(req.Secrets),
		baseline: maps.Clone(files),
		since:    b.now,
	}
	for _, g := range req.Network {
		w.net.Grants = append(w.net.Grants, mcp.GrantStatus{Grant: g})
	}
	w.log(b.now, mcp.LogLife, "create", nil, "")
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
				return "", mcp.EnvMissing(e.Name)
			}
			return e.Name, nil
		}
	}
	return "", mcp.NotFound(mcp.ResourceEnv, name)
}

// List implements mcp.Backend.
func (b *Backend) List(ctx context.Context) ([]mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("List"); err != nil {
		return nil, err
	}
	out := make([]mcp.Workspace, 0, len(b.ws))
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

// Status implements mcp.Backend.
func (b *Backend) Status(ctx context.Context, id string) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Status"); err != nil {
		return mcp.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Workspace{}, err
	}
	return w.snapshot(), nil
}

// Update implements mcp.Backend.
func (b *Backend) Update(ctx context.Context, id string, req mcp.UpdateRequest) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Update"); err != nil {
		return mcp.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Workspace{}, err
	}
	if req.Name != nil {
		for _, o := range b.ws {
			if o != w && *req.Name != "" && o.w.Name == *req.Name {
				return mcp.Workspace{}, mcp.Exists(mcp.ResourceWorkspace, *req.Name)
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

// Stop implements mcp.Backend.
func (b *Backend) Stop(ctx context.Context, id string) (mcp.Workspace, error) {
	return b.setRun(id, "Stop", mcp.StateStopped)
}

// Start implements mcp.Backend.
func (b *Backend) Start(ctx context.Context, id string) (mcp.Workspace, error) {
	return b.setRun(id, "Start", mcp.StateRunning)
}

func (b *Backend) setRun(id, method string, s mcp.State) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin(method); err != nil {
		return mcp.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Workspace{}, err
	}
	if s != mcp.StateRunning {
		w.endServices(b.now)
	}
	w.w.State = s
	w.log(b.now, mcp.LogLife, strings.ToLower(method), nil, "")
	return w.snapshot(), nil
}

// Delete implements mcp.Backend.
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

func (b *Backend) exec(req mcp.ExecRequest) (mcp.ExecResult, error) {
	if b.ExecFunc != nil {
		return b.ExecFunc(req)
	}
	cmd := req.Command
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	out := []byte("ran: " + cmd + "\n")
	return mcp.ExecResult{Stdout: out, StdoutSize: int64(len(out)), Duration: 12 * time.Millisecond}, nil
}

// Exec implements mcp.Backend.
func (b *Backend) Exec(ctx context.Context, req mcp.ExecRequest) (mcp.ExecResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Exec"); err != nil {
		return mcp.ExecResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.ExecResult{}, err
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
	r.Seq = w.log(b.now, mcp.LogExec, cmd, &exit, "")
	return r, nil
}

// ListFiles implements mcp.Backend.
func (b *Backend) ListFiles(ctx context.Context, req mcp.ListFilesRequest) (mcp.FileListing, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ListFiles"); err != nil {
		return mcp.FileListing{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.FileListing{}, err
	}
	root := abs(req.Path)
	entries := map[string]mcp.FileEntry{}
	found := false
	for p, c := range w.files {
		if p == root {
			return mcp.FileListing{Path: root, Entries: []mcp.FileEntry{{Path: p, Type: mcp.FileRegular, Size: int64(len(c)), Mode: 0o644}}}, nil
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
				entries[full] = mcp.FileEntry{Path: full, Type: mcp.FileRegular, Size: int64(len(c)), Mode: 0o644}
			} else {
				entries[full] = mcp.FileEntry{Path: full, Type: mcp.FileDir, Mode: 0o755}
			}
		}
	}
	if !found && root != "/workspace" {
		return mcp.FileListing{}, mcp.NotFound(mcp.ResourceFile, root)
	}
	keys := sortedKeys(entries)
	var page []mcp.FileEntry
	for i := req.Offset; i < len(keys) && len(page) < req.Limit; i++ {
		page = append(page, entries[keys[i]])
	}
	return mcp.FileListing{Path: root, Entries: page, More: req.Offset+len(page) < len(keys)}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ReadFile implements mcp.Backend.
func (b *Backend) ReadFile(ctx context.Context, req mcp.ReadFileRequest) (mcp.FileContent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ReadFile"); err != nil {
		return mcp.FileContent{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.FileContent{}, err
	}
	p := abs(req.Path)
	c, ok := w.files[p]
	if !ok {
		return mcp.FileContent{}, mcp.NotFound(mcp.ResourceFile, p)
	}
	start := min(req.Offset, int64(len(c)))
	end := min(start+int64(req.MaxBytes), int64(len(c)))
	return mcp.FileContent{Path: p, Size: int64(len(c)), Offset: start, Content: slices.Clone(c[start:end]), EOF: end == int64(len(c))}, nil
}

// WriteFile implements mcp.Backend.
func (b *Backend) WriteFile(ctx context.Context, req mcp.WriteFileRequest) (mcp.WriteResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("WriteFile"); err != nil {
		return mcp.WriteResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.WriteResult{}, err
	}
	p := abs(req.Path)
	_, existed := w.files[p]
	w.files[p] = slices.Clone(req.Content)
	w.log(b.now, mcp.LogWrite, "write "+p, nil, "")
	return mcp.WriteResult{Path: p, Bytes: int64(len(req.Content)), Created: !existed}, nil
}

// ApplyPatch implements mcp.Backend. It understands just enough of a unified
// diff for tests: each "+++ b/PATH" names a file; a patch containing the
// line "-MISMATCH" fails on that file; added lines replace nothing, they are
// appended.
func (b *Backend) ApplyPatch(ctx context.Context, id string, patch string) (mcp.PatchResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ApplyPatch"); err != nil {
		return mcp.PatchResult{}, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return mcp.PatchResult{}, err
	}
	var res mcp.PatchResult
	var cur *mcp.FilePatch
	adds := map[string][]string{}
	for _, line := range strings.Split(patch, "\n") {
		switch {
		case strings.HasPrefix(line, "+++ "):
			name := strings.TrimPrefix(strings.TrimPrefix(line, "+++ "), "b/")
			res.Files = append(res.Files, mcp.FilePatch{Path: name, Op: "modify", OK: true})
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
		return mcp.PatchResult{}, mcp.Invalid("patch has no file headers (+++ b/PATH)")
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
		w.log(b.now, mcp.LogWrite, "patch", nil, fmt.Sprintf("%d files", len(res.Files)))
	}
	return res, nil
}

func (w *workspace) changes(filter string) ([]mcp.FileChange, mcp.DiffStats, string) {
	var out []mcp.FileChange
	var patch strings.Builder
	var st mcp.DiffStats
	all := maps.Clone(w.baseline)
	maps.Copy(all, w.files)
	for _, p := range sortedKeys(all) {
		rel := strings.TrimPrefix(p, "/workspace/")
		if filter != "" && rel != strings.TrimPrefix(abs(filter), "/workspace/") && !strings.HasPrefix(p, abs(filter)+"/") {
			continue
		}
		old, inBase := w.baseline[p]
		cur, inCur := w.files[p]
		var c mcp.FileChange
		switch {
		case inBase && !inCur:
			c = mcp.FileChange{Path: rel, Status: "deleted", Deletions: lines(old)}
		case !inBase && inCur:
			c = mcp.FileChange{Path: rel, Status: "added", Additions: lines(cur)}
		case string(old) != string(cur):
			c = mcp.FileChange{Path: rel, Status: "modified", Additions: lines(cur), Deletions: lines(old)}
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

// Diff implements mcp.Backend. PatchPath is a made-up host path; nothing is written.
func (b *Backend) Diff(ctx context.Context, req mcp.DiffRequest) (mcp.DiffResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Diff"); err != nil {
		return mcp.DiffResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.DiffResult{}, err
	}
	files, st, patch := w.changes(req.Path)
	r := mcp.DiffResult{Files: files, Stats: st, Patch: patch}
	if patch != "" {
		r.PatchPath = "/tmp/pyro-fake/" + req.ID + ".patch"
	}
	return r, nil
}

// Export implements mcp.Backend. Nothing is written; a second export to the
// same host path without Overwrite returns CodeExists.
func (b *Backend) Export(ctx context.Context, req mcp.ExportRequest) (mcp.ExportResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Export"); err != nil {
		return mcp.ExportResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.ExportResult{}, err
	}
	if b.exported[req.HostPath] && !req.Overwrite {
		return mcp.ExportResult{}, mcp.Exists(mcp.ResourceHostPath, req.HostPath)
	}
	b.exported[req.HostPath] = true
	f := req.Format
	if f == mcp.ExportAuto {
		f = mcp.ExportTree
		if strings.HasSuffix(req.HostPath, ".tar") || strings.HasSuffix(req.HostPath, ".tgz") || strings.HasSuffix(req.HostPath, ".tar.gz") {
			f = mcp.ExportTar
		}
	}
	r := mcp.ExportResult{HostPath: req.HostPath, Format: f}
	for p, c := range w.files {
		if strings.HasPrefix(p, abs(req.GuestPath)) {
			r.Files++
			r.Bytes += int64(len(c))
		}
	}
	w.exports = append(w.exports, r)
	w.log(b.now, mcp.LogExport, "export "+req.GuestPath+" -> "+req.HostPath, nil, "")
	return r, nil
}

// SyncPush implements mcp.Backend: it writes one file, DEST/pushed.txt, and
// reports one skipped entry.
func (b *Backend) SyncPush(ctx context.Context, req mcp.SyncPushRequest) (mcp.SyncResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SyncPush"); err != nil {
		return mcp.SyncResult{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return mcp.SyncResult{}, err
	}
	dest := abs(req.GuestDest)
	w.files[path.Join(dest, "pushed.txt")] = []byte("pushed\n")
	w.log(b.now, mcp.LogSync, "sync "+req.HostPath+" -> "+dest, nil, "")
	return mcp.SyncResult{HostPath: req.HostPath, GuestDest: dest, Files: 1, Bytes: 7,
		Skipped: []mcp.SkippedEntry{{Path: "dev/null", Reason: "device file"}}}, nil
}

// SnapshotCreate implements mcp.Backend.
func (b *Backend) SnapshotCreate(ctx context.Context, id string, name string) (mcp.Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SnapshotCreate"); err != nil {
		return mcp.Snapshot{}, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return mcp.Snapshot{}, err
	}
	for _, s := range w.snaps {
		if s.s.Name == name {
			return mcp.Snapshot{}, mcp.Exists(mcp.ResourceSnapshot, name)
		}
	}
	s := mcp.Snapshot{Name: name, CreatedAt: b.now, Seq: w.log(b.now, mcp.LogSnapshot, "snapshot "+name, nil, "")}
	w.snaps = append(w.snaps, snap{s: s, files: maps.Clone(w.files)})
	return s, nil
}

// SnapshotList implements mcp.Backend.
func (b *Backend) SnapshotList(ctx context.Context, id string) ([]mcp.Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SnapshotList"); err != nil {
		return nil, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return nil, err
	}
	out := make([]mcp.Snapshot, len(w.snaps))
	for i, s := range w.snaps {
		out[i] = s.s
	}
	return out, nil
}

// SnapshotDelete implements mcp.Backend.
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
	return mcp.NotFound(mcp.ResourceSnapshot, name)
}

// Reset implements mcp.Backend.
func (b *Backend) Reset(ctx context.Context, id string, snapshot string) (mcp.ResetResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Reset"); err != nil {
		return mcp.ResetResult{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.ResetResult{}, err
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
			return mcp.ResetResult{}, mcp.NotFound(mcp.ResourceSnapshot, snapshot)
		}
	}
	w.files = maps.Clone(files)
	w.svcs = nil // the VM rebooted: no services
	w.w.State = mcp.StateRunning
	w.since, w.resetTo, w.exports = b.now, snapshot, nil
	w.log(b.now, mcp.LogReset, "reset", nil, snapshot)
	return mcp.ResetResult{Workspace: w.snapshot(), Snapshot: snapshot, Duration: 80 * time.Millisecond}, nil
}

// Logs implements mcp.Backend.
func (b *Backend) Logs(ctx context.Context, req mcp.LogsRequest) (mcp.LogPage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Logs"); err != nil {
		return mcp.LogPage{}, err
	}
	w, err := b.get(req.ID, false)
	if err != nil {
		return mcp.LogPage{}, err
	}
	var page mcp.LogPage
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

// Summary implements mcp.Backend.
func (b *Backend) Summary(ctx context.Context, id string) (mcp.Summary, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Summary"); err != nil {
		return mcp.Summary{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Summary{}, err
	}
	s := mcp.Summary{Workspace: w.snapshot(), Since: w.since, ResetFrom: w.resetTo, Exports: slices.Clone(w.exports)}
	for _, e := range w.journal {
		if e.Kind == mcp.LogExec && !e.Time.Before(w.since) {
			s.Commands = append(s.Commands, e)
		}
	}
	s.Changes, s.Stats, _ = w.changes("")
	for _, sn := range w.snaps {
		s.Snapshots = append(s.Snapshots, sn.s)
	}
	return s, nil
}

// Run implements mcp.Backend.
func (b *Backend) Run(ctx context.Context, req mcp.RunRequest) (mcp.ExecResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Run"); err != nil {
		return mcp.ExecResult{}, err
	}
	if _, err := b.env(req.Env); err != nil {
		return mcp.ExecResult{}, err
	}
	return b.exec(mcp.ExecRequest{Command: req.Command, Argv: req.Argv, Cwd: req.Cwd, EnvVars: req.EnvVars,
		TimeoutSeconds: req.TimeoutSeconds, Stdin: req.Stdin})
}

// Envs implements mcp.Backend.
func (b *Backend) Envs(ctx context.Context) ([]mcp.Environment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Envs"); err != nil {
		return nil, err
	}
	return slices.Clone(b.envs), nil
}
