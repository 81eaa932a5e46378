package mcp

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Workspace lifecycle tools: create, list, status, update, stop, start,
// delete, summary and logs.

type refIn struct {
	ID string `json:"id" jsonschema:"workspace id (or name)"`
}

type createIn struct {
	Env        string              `json:"env,omitempty" jsonschema:"environment, e.g. debian-12 (default: the host's default)"`
	Name       string              `json:"name,omitempty" jsonschema:"optional unique name, 1-64 of [A-Za-z0-9._-]; usable wherever an id is"`
	Labels     map[string]string   `json:"labels,omitempty" jsonschema:"optional tags for workspace_list, e.g. {\"task\":\"fix-123\"}"`
	Seed       *contract.SeedInput `json:"seed,omitempty" jsonschema:"host content to copy into /workspace; it becomes the baseline for diff and reset"`
	TTLSeconds int                 `json:"ttl_seconds,omitempty" jsonschema:"reclaim after this many idle seconds (default 600)"`
	VCPUs      int                 `json:"vcpus,omitempty" jsonschema:"virtual CPUs (default: host default)"`
	MemMiB     int                 `json:"mem_mib,omitempty" jsonschema:"memory in MiB (default: host default)"`
	Network    []string            `json:"network,omitempty" jsonschema:"network grants, e.g. [\"pypi.org:443\", \"host.pyro.internal:5432\"] (default: none, the workspace reaches nothing outside); see network_grant"`
	DiskMiB    int                 `json:"disk_mib,omitempty" jsonschema:"disk size in MiB; the root file system grows to it (default 8192, sparse: only written blocks cost host disk)"`
	// Secrets: see tools_secrets.go.
	Secrets map[string]secretInput `json:"secrets,omitempty" jsonschema:"secrets by name, e.g. {\"npm\": {\"file\": \"/home/me/.npm-token\"}}; kept off the workspace disk, used by workspace_exec secret_env, redacted from all output"`
}

type workspaceOut struct {
	Workspace workspaceView `json:"workspace"`
	Hint      string        `json:"hint,omitempty"`
}

type listIn struct {
	Labels map[string]string `json:"labels,omitempty" jsonschema:"only workspaces carrying all these labels"`
}

type listOut struct {
	Workspaces []workspaceItem `json:"workspaces"`
	Total      int             `json:"total"`
	Truncated  bool            `json:"truncated,omitempty"`
	Hint       string          `json:"hint,omitempty"`
}

type updateIn struct {
	ID           string            `json:"id" jsonschema:"workspace id (or name)"`
	Name         *string           `json:"name,omitempty" jsonschema:"new name; empty string clears it"`
	Labels       map[string]string `json:"labels,omitempty" jsonschema:"labels to add or overwrite"`
	RemoveLabels []string          `json:"remove_labels,omitempty" jsonschema:"label keys to remove"`
}

type deleteOut struct {
	Deleted string `json:"deleted"`
}

type summaryOut struct {
	Workspace      workspaceItem  `json:"workspace"`
	Since          string         `json:"since,omitempty"`
	ResetFrom      string         `json:"reset_from,omitempty"`
	CommandsTotal  int            `json:"commands_total"`
	CommandsFailed int            `json:"commands_failed"`
	Commands       []logView      `json:"commands"`
	CommandsShown  string         `json:"commands_shown,omitempty"`
	Stats          statsView      `json:"stats"`
	Changes        []changeView   `json:"changes"`
	Snapshots      []snapshotView `json:"snapshots,omitempty"`
	Exports        []exportView   `json:"exports,omitempty"`
	Services       []serviceBrief `json:"services,omitempty"`
	Truncated      bool           `json:"truncated,omitempty"`
	Hint           string         `json:"hint,omitempty"`
}

type logsIn struct {
	ID     string `json:"id" jsonschema:"workspace id (or name)"`
	Cursor string `json:"cursor,omitempty" jsonschema:"next_cursor from the previous page (default: from the start)"`
	Limit  int    `json:"limit,omitempty" jsonschema:"max entries (default 50, max 500)"`
}

type logsOut struct {
	Entries    []logView `json:"entries"`
	NextCursor string    `json:"next_cursor,omitempty"`
	Hint       string    `json:"hint,omitempty"`
}

func workspaceTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "workspace_create", group: "workspace", core: true,
			summary:     "Boot a disposable microVM workspace, optionally seeded from a host directory, archive or git checkout (the diff/reset baseline).",
			description: "Boot a new disposable Linux microVM workspace and return its id. /workspace starts empty or seeded from a host dir, .tar/.tgz or git checkout; that content is the baseline for workspace_diff and workspace_reset. Reclaimed after ttl_seconds idle (default 600).",
			tune: func(s *jsonschema.Schema) {
				bounds(s, "ttl_seconds", contract.MinTTLSeconds, contract.MaxTTLSeconds)
				bounds(s, "vcpus", 1, contract.MaxVCPUs)
				bounds(s, "mem_mib", contract.MinMemMiB, contract.MaxMemMiB)
				bounds(s, "disk_mib", 1, contract.MaxDiskMiB)
				enum(s, "seed.kind", string(contract.SeedDir), string(contract.SeedArchive), string(contract.SeedGit))
			},
		}, toolCreate),
		defTool(toolDef{
			name: "workspace_list", group: "workspace", core: true, readOnly: true,
			summary:     "List workspaces, most recently active first, optionally filtered by labels.",
			description: "List workspaces (id, name, state, labels, expiry), most recently active first. Optional labels filter.",
		}, toolList),
		defTool(toolDef{
			name: "workspace_status", group: "workspace", core: true, readOnly: true,
			summary:     "Show one workspace: state, environment, resources, seed, expiry, snapshots.",
			description: "Show one workspace: state, env, resources, seed report, expiry, snapshot count, last journal seq.",
		}, toolStatus),
		defTool(toolDef{
			name: "workspace_update", group: "workspace", idempotent: true,
			summary:     "Rename a workspace or edit its labels.",
			description: "Rename a workspace or add/remove labels. Does not touch the VM.",
		}, toolUpdate),
		defTool(toolDef{
			name: "workspace_stop", group: "workspace", idempotent: true,
			summary:     "Shut a workspace's VM down, keeping its disk and snapshots.",
			description: "Shut the workspace VM down; its disk, baseline and snapshots are kept. Running processes are killed. workspace_start boots it again.",
		}, toolStop),
		defTool(toolDef{
			name: "workspace_start", group: "workspace", core: true, idempotent: true,
			summary:     "Boot a stopped workspace again from its disk.",
			description: "Boot a stopped workspace again from its disk (files kept, processes not). No-op if it is running.",
		}, toolStart),
		defTool(toolDef{
			name: "workspace_delete", group: "workspace", core: true, destructive: true, idempotent: true,
			summary:     "Destroy a workspace with its disk, snapshots and journal.",
			description: "Destroy a workspace: VM, disk, snapshots and journal. Export what you need first. Files already exported to the host stay.",
		}, toolDelete),
		defTool(toolDef{
			name: "workspace_summary", group: "workspace", core: true, readOnly: true,
			summary:     "What happened since the last reset: commands and exit codes, changed files, snapshots, exports.",
			description: "Summarize the workspace since its last reset (or create): commands with exit codes, files changed vs the baseline with line counts, snapshots, exports.",
		}, toolSummary),
		defTool(toolDef{
			name: "workspace_logs", group: "workspace", readOnly: true,
			summary:     "Page through the workspace journal: every exec, write, snapshot, reset and export.",
			description: "Page through the workspace journal (exec, write, snapshot, reset, export entries with seq, exit code, duration). Pass next_cursor to continue.",
			tune:        func(s *jsonschema.Schema) { bounds(s, "limit", 1, contract.MaxLogsLimit) },
		}, toolLogs),
	}
}

func toolCreate(ctx context.Context, h *handler, in createIn) (workspaceOut, error) {
	if in.Name != "" {
		if err := contract.ValidateName("name", in.Name); err != nil {
			return workspaceOut{}, err
		}
	}
	if err := contract.ValidateLabels(in.Labels); err != nil {
		return workspaceOut{}, err
	}
	ttl, err := contract.ValidateTTL(in.TTLSeconds)
	if err != nil {
		return workspaceOut{}, err
	}
	if err := contract.ValidateResources(in.VCPUs, in.MemMiB); err != nil {
		return workspaceOut{}, err
	}
	if err := contract.ValidateDisk(in.DiskMiB); err != nil {
		return workspaceOut{}, err
	}
	if err := contract.ValidateEnvName(in.Env); err != nil {
		return workspaceOut{}, err
	}
	seed, err := contract.ParseSeed(in.Seed)
	if err != nil {
		return workspaceOut{}, err
	}
	grants, err := h.networkArg(in.Network)
	if err != nil {
		return workspaceOut{}, err
	}
	secrets, err := h.secretsArg(in.Secrets)
	if err != nil {
		return workspaceOut{}, err
	}
	w, err := h.b.Create(ctx, contract.CreateRequest{Env: in.Env, Name: in.Name, Labels: in.Labels,
		VCPUs: in.VCPUs, MemMiB: in.MemMiB, DiskMiB: in.DiskMiB, TTLSeconds: ttl, Seed: seed, Network: grants, Secrets: secrets})
	if err != nil {
		return workspaceOut{}, err
	}
	out := workspaceOut{Workspace: viewWorkspace(w)}
	if n := len(w.Seed.Skipped); n > 0 {
		out.Hint = fmt.Sprintf("%d host entries were not copied (see seed.skipped).", n)
	}
	return out, nil
}

func toolList(ctx context.Context, h *handler, in listIn) (listOut, error) {
	list, err := h.b.List(ctx)
	if err != nil {
		return listOut{}, err
	}
	var items []workspaceItem
	for _, w := range list {
		if hasLabels(w.Labels, in.Labels) {
			items = append(items, itemWorkspace(w))
		}
	}
	build := func(n int) listOut {
		o := listOut{Workspaces: items[:n], Total: len(items)}
		if o.Workspaces == nil {
			o.Workspaces = []workspaceItem{}
		}
		if n < len(items) {
			o.Truncated = true
			o.Hint = fmt.Sprintf("Showing the %d most recently active of %d; filter with labels to see others.", n, len(items))
		}
		if len(items) == 0 {
			if len(in.Labels) > 0 {
				o.Hint = "No workspace carries these labels."
			} else {
				o.Hint = "No workspaces; call workspace_create."
			}
		}
		return o
	}
	data, _, err := fit(h, len(items), build)
	return data, err
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func toolStatus(ctx context.Context, h *handler, in refIn) (workspaceOut, error) {
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = h.b.Status(ctx, id)
		return err
	})
	if err != nil {
		return workspaceOut{}, err
	}
	out := workspaceOut{Workspace: viewWorkspace(w)}
	switch w.State {
	case contract.StateStopped, contract.StateExpired:
		out.Hint = "Not running: call workspace_start before exec or file calls."
	case contract.StateFailed:
		out.Hint = "The workspace failed (see failure); workspace_reset rebuilds it, or delete it and create a new one."
	}
	return out, nil
}

func toolUpdate(ctx context.Context, h *handler, in updateIn) (workspaceOut, error) {
	if err := contract.ValidateUpdate(contract.UpdateRequest{Name: in.Name, Labels: in.Labels, RemoveLabels: in.RemoveLabels}); err != nil {
		return workspaceOut{}, err
	}
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = h.b.Update(ctx, id, contract.UpdateRequest{Name: in.Name, Labels: maps.Clone(in.Labels), RemoveLabels: in.RemoveLabels})
		return err
	})
	if err != nil {
		return workspaceOut{}, err
	}
	return workspaceOut{Workspace: viewWorkspace(w)}, nil
}

func toolStop(ctx context.Context, h *handler, in refIn) (workspaceOut, error) {
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = h.b.Stop(ctx, id)
		return err
	})
	if err != nil {
		return workspaceOut{}, err
	}
	return workspaceOut{Workspace: viewWorkspace(w)}, nil
}

func toolStart(ctx context.Context, h *handler, in refIn) (workspaceOut, error) {
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = h.b.Start(ctx, id)
		return err
	})
	if err != nil {
		return workspaceOut{}, err
	}
	return workspaceOut{Workspace: viewWorkspace(w)}, nil
}

func toolDelete(ctx context.Context, h *handler, in refIn) (deleteOut, error) {
	var deleted string
	err := h.onWorkspace(ctx, in.ID, func(id string) error {
		deleted = id
		return h.b.Delete(ctx, id)
	})
	if err != nil {
		return deleteOut{}, err
	}
	return deleteOut{Deleted: deleted}, nil
}

func toolSummary(ctx context.Context, h *handler, in refIn) (summaryOut, error) {
	var s contract.Summary
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		s, err = h.b.Summary(ctx, id)
		return err
	})
	if err != nil {
		return summaryOut{}, err
	}
	failedN := 0
	for _, c := range s.Commands {
		if c.ExitCode != nil && *c.ExitCode != 0 {
			failedN++
		}
	}
	cmds := make([]logView, len(s.Commands))
	for i, c := range s.Commands {
		cmds[i] = viewLog(c)
		cmds[i].Time = "" // the order says enough; keep the summary short
	}
	changes := viewChanges(s.Changes)
	snaps := make([]snapshotView, len(s.Snapshots))
	for i, sn := range s.Snapshots {
		snaps[i] = viewSnapshot(sn)
	}
	exports := make([]exportView, len(s.Exports))
	for i, e := range s.Exports {
		exports[i] = viewExport(e)
	}
	longest := max(len(cmds), len(changes), len(snaps), len(exports))
	build := func(n int) summaryOut {
		o := summaryOut{
			Workspace: itemWorkspace(s.Workspace), Since: timeString(s.Since), ResetFrom: s.ResetFrom,
			CommandsTotal: len(cmds), CommandsFailed: failedN,
			Commands: lastN(cmds, n), Stats: viewStats(s.Stats), Changes: firstN(changes, n),
			Snapshots: lastN(snaps, n), Exports: lastN(exports, n),
			Services: briefServices(s.Workspace.Services), // at most MaxServicesPerWorkspace short entries
		}
		if n < len(cmds) {
			o.CommandsShown = fmt.Sprintf("last %d of %d", n, len(cmds))
		}
		if n < longest {
			o.Truncated = true
			o.Hint = "Lists cut to fit. workspace_diff pages changed files"
			if h.tools["workspace_logs"] {
				o.Hint += "; workspace_logs pages commands"
			}
			o.Hint += "."
		}
		return o
	}
	data, _, err := fit(h, longest, build)
	return data, err
}

func firstN[T any](s []T, n int) []T {
	if s == nil {
		return []T{}
	}
	return s[:min(n, len(s))]
}

func lastN[T any](s []T, n int) []T {
	if s == nil {
		return []T{}
	}
	return s[len(s)-min(n, len(s)):]
}

func toolLogs(ctx context.Context, h *handler, in logsIn) (logsOut, error) {
	limit, err := contract.LimitOrDefault("limit", in.Limit, contract.DefaultLogsLimit, contract.MaxLogsLimit)
	if err != nil {
		return logsOut{}, err
	}
	var after int64
	if in.Cursor != "" {
		after, err = strconv.ParseInt(in.Cursor, 10, 64)
		if err != nil || after < 0 {
			return logsOut{}, contract.Invalid("cursor %.40q is not a next_cursor from workspace_logs", in.Cursor)
		}
	}
	var page contract.LogPage
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		page, err = h.b.Logs(ctx, contract.LogsRequest{ID: id, AfterSeq: after, Limit: limit})
		return err
	})
	if err != nil {
		return logsOut{}, err
	}
	entries := make([]logView, len(page.Entries))
	for i, e := range page.Entries {
		entries[i] = viewLog(e)
	}
	build := func(n int) logsOut {
		o := logsOut{Entries: firstN(entries, n)}
		if n < len(entries) || page.More {
			next := after
			if n > 0 {
				next = entries[n-1].Seq
			}
			o.NextCursor = strconv.FormatInt(next, 10)
			o.Hint = "More entries: call again with cursor=next_cursor."
		}
		return o
	}
	data, n, err := fit(h, len(entries), build)
	if err == nil && n == 0 && len(entries) > 0 {
		// Not even one entry fits: impossible with clipped fields, but never loop.
		return logsOut{}, contract.Internal("a journal entry does not fit the result budget", nil)
	}
	return data, err
}
