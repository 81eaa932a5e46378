package mcp

import (
	"context"
	"fmt"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Checkpoint tools: snapshot_create, snapshot_list, snapshot_delete and
// workspace_reset. Reset over repair: a reset rebuilds the whole sandbox.

type snapshotIn struct {
	ID   string `json:"id" jsonschema:"workspace id (or name)"`
	Name string `json:"name" jsonschema:"snapshot name, 1-64 of [A-Za-z0-9._-]"`
	// Memory is a pointer so that absent means the default (true).
	Memory *bool `json:"memory,omitempty" jsonschema:"keep the running guest's memory too (default true), so a reset resumes its processes in milliseconds; false: disk only, a reset reboots"`
}

type resetIn struct {
	ID       string `json:"id" jsonschema:"workspace id (or name)"`
	Snapshot string `json:"snapshot,omitempty" jsonschema:"snapshot to return to (default: the baseline from create)"`
}

type snapshotOut struct {
	Workspace string       `json:"id"`
	Snapshot  snapshotView `json:"snapshot"`
}

type snapshotListOut struct {
	Workspace string         `json:"id"`
	Snapshots []snapshotView `json:"snapshots"`
	Total     int            `json:"total"`
	Hint      string         `json:"hint,omitempty"`
}

type snapshotDeleteOut struct {
	Workspace string `json:"id"`
	Deleted   string `json:"deleted"`
}

type resetOut struct {
	Workspace  workspaceView `json:"workspace"`
	ResetTo    string        `json:"reset_to"`
	DurationMs int64         `json:"duration_ms"`
	// Resumed: the guest resumed from the snapshot's memory image, its
	// processes as they were; false: it booted from the disk.
	Resumed bool   `json:"resumed"`
	Note    string `json:"note,omitempty"`
	// DroppedSnapshots is unused: a reset keeps every snapshot.
	DroppedSnapshots []string `json:"dropped_snapshots,omitempty"`
	Hint             string   `json:"hint,omitempty"`
}

func snapshotTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "snapshot_create", group: "snapshot", core: true,
			summary:     "Checkpoint the whole workspace under a name, to reset to later: its disk, and a running workspace's memory (processes included) unless `memory: false`.",
			description: "Checkpoint the whole workspace under a name unique in this workspace, so workspace_reset can return to it later. A running workspace's snapshot keeps its memory too (memory: false for disk only): the reset then resumes its processes as they were, in milliseconds.",
		}, toolSnapshotCreate),
		defTool(toolDef{
			// Not in core, which holds 20 tools at most: workspace_summary
			// lists the snapshots too, and exec_status needed the room.
			name: "snapshot_list", group: "snapshot", readOnly: true,
			summary:     "List a workspace's snapshots, oldest first.",
			description: "List the workspace's snapshots, oldest first, with the journal seq at which each was taken.",
		}, toolSnapshotList),
		defTool(toolDef{
			name: "snapshot_delete", group: "snapshot", destructive: true, idempotent: true,
			summary:     "Delete one snapshot of a workspace.",
			description: "Delete one snapshot of the workspace. The workspace itself and other snapshots are untouched.",
		}, toolSnapshotDelete),
		defTool(toolDef{
			name: "workspace_reset", group: "snapshot", core: true, destructive: true, idempotent: true,
			summary:     "Rebuild the workspace from its baseline or a named snapshot (resuming its memory, processes as they were, when it has one); keeps id, baseline and snapshots.",
			description: "Rebuild the workspace from its baseline (default) or a named snapshot, discarding every change and process since. Keeps id, name, labels, baseline and every snapshot, older or newer, so you can reset to any of them again.",
		}, toolReset),
	}
}

func toolSnapshotCreate(ctx context.Context, h *handler, in snapshotIn) (snapshotOut, error) {
	if err := contract.ValidateName("name", in.Name); err != nil {
		return snapshotOut{}, err
	}
	var (
		s  contract.Snapshot
		ws string
	)
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		s, err = h.b.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: in.Name, DiskOnly: in.Memory != nil && !*in.Memory})
		return err
	})
	if err != nil {
		return snapshotOut{}, err
	}
	return snapshotOut{Workspace: ws, Snapshot: viewSnapshot(s)}, nil
}

func toolSnapshotList(ctx context.Context, h *handler, in refIn) (snapshotListOut, error) {
	var (
		list []contract.Snapshot
		ws   string
	)
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		list, err = h.b.SnapshotList(ctx, id)
		return err
	})
	if err != nil {
		return snapshotListOut{}, err
	}
	views := make([]snapshotView, len(list))
	for i, s := range list {
		views[i] = viewSnapshot(s)
	}
	build := func(n int) snapshotListOut {
		o := snapshotListOut{Workspace: ws, Snapshots: lastN(views, n), Total: len(views)}
		if n < len(views) {
			o.Hint = fmt.Sprintf("Showing the newest %d of %d.", n, len(views))
		} else if len(views) == 0 {
			o.Hint = "No snapshots; workspace_reset without a snapshot returns to the baseline."
		}
		return o
	}
	data, _, err := fit(h, len(views), build)
	return data, err
}

func toolSnapshotDelete(ctx context.Context, h *handler, in snapshotIn) (snapshotDeleteOut, error) {
	if err := contract.ValidateName("name", in.Name); err != nil {
		return snapshotDeleteOut{}, err
	}
	var ws string
	err := h.onWorkspace(ctx, in.ID, func(id string) error {
		ws = id
		return h.b.SnapshotDelete(ctx, id, in.Name)
	})
	if err != nil {
		return snapshotDeleteOut{}, err
	}
	return snapshotDeleteOut{Workspace: ws, Deleted: in.Name}, nil
}

func toolReset(ctx context.Context, h *handler, in resetIn) (resetOut, error) {
	if in.Snapshot != "" {
		if err := contract.ValidateName("snapshot", in.Snapshot); err != nil {
			return resetOut{}, err
		}
	}
	var r contract.ResetResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		r, err = h.b.Reset(ctx, id, in.Snapshot)
		return err
	})
	if err != nil {
		return resetOut{}, err
	}
	to := "baseline"
	if r.Snapshot != "" {
		to = "snapshot " + r.Snapshot
	}
	hint := "Files are back to " + to + " and the guest booted afresh; shells, services and background jobs were stopped."
	if r.Memory {
		hint = "Files, memory and processes (services included) are back to " + to + "; shells and background jobs of the discarded state were stopped."
	}
	return resetOut{Workspace: viewWorkspace(r.Workspace), ResetTo: to, DurationMs: r.Duration.Milliseconds(), DroppedSnapshots: r.DroppedSnapshots,
		Resumed: r.Memory, Note: r.Note, Hint: hint}, nil
}
