package mcp

import (
	"context"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Host-crossing and review tools: workspace_diff, workspace_export,
// workspace_sync_push. Anything that crosses the host boundary is an explicit
// call with explicit paths.

type diffIn struct {
	ID   string `json:"id" jsonschema:"workspace id (or name)"`
	Path string `json:"path,omitempty" jsonschema:"limit the diff to this file or directory under /workspace"`
}

type diffOut struct {
	Stats        statsView    `json:"stats"`
	Files        []changeView `json:"files"`
	FilesTotal   int          `json:"files_total"`
	Patch        string       `json:"patch,omitempty"`
	PatchInline  bool         `json:"patch_inline"`
	PatchBytes   int          `json:"patch_bytes"`
	PatchPath    string       `json:"patch_path,omitempty"`
	PatchBinary  bool         `json:"patch_binary,omitempty"`
	FilesShownOf string       `json:"files_shown,omitempty"`
	Hint         string       `json:"hint,omitempty"`
}

type exportIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	GuestPath string `json:"guest_path,omitempty" jsonschema:"file or directory to export (default /workspace)"`
	HostPath  string `json:"host_path" jsonschema:"destination on the host, absolute or relative to the server's directory"`
	Format    string `json:"format,omitempty" jsonschema:"auto (default: tar if host_path ends in .tar/.tar.gz/.tgz), tree or tar"`
	Overwrite bool   `json:"overwrite,omitempty" jsonschema:"replace an existing host_path, moving the old one to a dated backup beside it (default false)"`
}

type syncIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	HostPath  string `json:"host_path" jsonschema:"host file or directory to copy in"`
	GuestDest string `json:"guest_dest,omitempty" jsonschema:"guest directory to copy into (default /workspace)"`
}

type syncOut struct {
	HostPath     string        `json:"host_path"`
	GuestDest    string        `json:"guest_dest"`
	Files        int           `json:"files"`
	Bytes        int64         `json:"bytes"`
	SkippedTotal int           `json:"skipped_total"`
	Skipped      []skippedView `json:"skipped,omitempty"`
	Hint         string        `json:"hint,omitempty"`
}

func hostTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "workspace_diff", group: "host", core: true, readOnly: true,
			summary:     "Changes under /workspace since the baseline: per-file status and line counts, the unified patch inline when small, else its host file path.",
			description: "Show what changed under /workspace since the baseline (create or seed): per-file status and +/- counts, plus the unified patch inline when small, else its host file (patch_path). Pass path to narrow it to one file or directory.",
		}, toolDiff),
		defTool(toolDef{
			name: "workspace_export", group: "host", core: true,
			summary:     "Copy a guest file or directory out to a host path, as a tree or a tar archive.",
			description: "Copy a guest file or directory (default /workspace) to host_path on the host, as a tree or tar (format auto: by extension). An existing host path is replaced only with overwrite=true, and then kept as a dated backup beside it (backup). host_path must be under a directory the server allows.",
			tune: func(s *jsonschema.Schema) {
				enum(s, "format", string(contract.ExportAuto), string(contract.ExportTree), string(contract.ExportTar))
			},
		}, toolExport),
		defTool(toolDef{
			name: "workspace_sync_push", group: "host", core: true, destructive: true,
			summary:     "Copy a host file or directory into the workspace; reports skipped entries.",
			description: "Copy a host file or directory into the workspace (guest_dest, default /workspace), overwriting same-named files. Does not change the diff baseline. Reports entries it skipped (special files, links leaving the tree). host_path must be under a directory the server allows.",
		}, toolSyncPush),
	}
}

func toolDiff(ctx context.Context, h *handler, in diffIn) (diffOut, error) {
	if err := contract.ValidatePath("path", in.Path, false); err != nil {
		return diffOut{}, err
	}
	var d contract.DiffResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		d, err = h.b.Diff(ctx, contract.DiffRequest{ID: id, Path: in.Path})
		return err
	})
	if err != nil {
		return diffOut{}, err
	}
	files := viewChanges(d.Files)
	patch := SafeText([]byte(d.Patch))
	base := diffOut{Stats: viewStats(d.Stats), Files: files, FilesTotal: len(files),
		PatchBytes: len(d.Patch), PatchPath: d.PatchPath, PatchBinary: patch.Binary}
	if len(files) == 0 && d.Patch == "" {
		base.Files = []changeView{}
		base.Hint = "No changes since the baseline."
		return base, nil
	}

	// Inline the whole patch when it fits with every file.
	inline := base
	inline.Patch, inline.PatchInline = patch.S, true
	if data, err := encodeJSON(inline); err != nil {
		return diffOut{}, err
	} else if len(data) <= h.budget() {
		return inline, nil
	}

	// Otherwise: the per-file summary, as many files as fit, and the host file.
	build := func(n int) diffOut {
		o := base
		o.Files = firstN(files, n)
		var hint string
		if d.PatchPath != "" {
			hint = fmt.Sprintf("The patch (%s) is too big to inline: read %s with your own file tools", humanBytes(int64(len(d.Patch))), d.PatchPath)
		} else {
			hint = fmt.Sprintf("The patch (%s) is too big to inline", humanBytes(int64(len(d.Patch))))
		}
		hint += ", or call workspace_diff with path=FILE for one file's patch."
		if n < len(files) {
			o.FilesShownOf = fmt.Sprintf("first %d of %d", n, len(files))
			hint += " File list cut to fit; narrow it with path=DIR."
		}
		o.Hint = hint
		return o
	}
	data, _, err := fit(h, len(files), build)
	return data, err
}

func toolExport(ctx context.Context, h *handler, in exportIn) (exportView, error) {
	guest := in.GuestPath
	if guest == "" {
		guest = contract.DefaultWorkdir
	}
	if err := contract.ValidatePath("guest_path", guest, true); err != nil {
		return exportView{}, err
	}
	if err := contract.ValidatePath("host_path", in.HostPath, true); err != nil {
		return exportView{}, err
	}
	format, err := contract.ParseExportFormat(in.Format)
	if err != nil {
		return exportView{}, err
	}
	var r contract.ExportResult
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		r, err = h.b.Export(ctx, contract.ExportRequest{ID: id, GuestPath: guest, HostPath: in.HostPath, Format: format, Overwrite: in.Overwrite})
		return err
	})
	if err != nil {
		return exportView{}, err
	}
	return viewExport(r), nil
}

func toolSyncPush(ctx context.Context, h *handler, in syncIn) (syncOut, error) {
	if err := contract.ValidatePath("host_path", in.HostPath, true); err != nil {
		return syncOut{}, err
	}
	dest := in.GuestDest
	if dest == "" {
		dest = contract.DefaultWorkdir
	}
	if err := contract.ValidatePath("guest_dest", dest, true); err != nil {
		return syncOut{}, err
	}
	var r contract.SyncResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		r, err = h.b.SyncPush(ctx, contract.SyncPushRequest{ID: id, HostPath: in.HostPath, GuestDest: dest})
		return err
	})
	if err != nil {
		return syncOut{}, err
	}
	skipped := viewSkipped(r.Skipped, len(r.Skipped))
	build := func(n int) syncOut {
		o := syncOut{HostPath: r.HostPath, GuestDest: r.GuestDest, Files: r.Files, Bytes: r.Bytes,
			SkippedTotal: len(skipped), Skipped: firstN(skipped, n)}
		if len(o.Skipped) == 0 {
			o.Skipped = nil
		}
		if n < len(skipped) {
			o.Hint = fmt.Sprintf("Showing %d of %d skipped entries.", n, len(skipped))
		}
		return o
	}
	data, _, err := fit(h, len(skipped), build)
	return data, err
}
