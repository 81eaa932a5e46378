package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// evalSnapshot is the checkpoint review-eval returns to.
const evalSnapshot = "before-eval"

// reviewEval checkpoints a workspace, runs an evaluation that writes a
// report, reads the summary, takes the report home and returns to the
// checkpoint, which has no report.
func reviewEval(ctx context.Context, r *run) error {
	seed := r.path("allowed", "seed", "eval")
	if err := writeTree(seed, evalProject()); err != nil {
		return err
	}
	w, err := r.create(ctx, createArgs{Seed: &seedArg{Kind: "dir", Path: seed}})
	if err != nil {
		return err
	}
	sn, err := call[snapshotResult](ctx, r.s, "snapshot_create", snapshotArgs{ID: w.ID, Name: evalSnapshot})
	if err != nil {
		return err
	}
	if sn.Snapshot.Name != evalSnapshot || sn.ID != w.ID {
		return fmt.Errorf("snapshot_create: %+v, want %s of %s", sn, evalSnapshot, w.ID)
	}
	if _, err := r.execOK(ctx, w.ID, "python3 eval.py", 120, map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}); err != nil {
		return err
	}

	sum, err := call[summaryResult](ctx, r.s, "workspace_summary", idArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if sum.CommandsTotal != 1 || sum.CommandsFailed != 0 || len(sum.Commands) != 1 ||
		!strings.Contains(sum.Commands[0].Command, "eval.py") || sum.Commands[0].ExitCode == nil || *sum.Commands[0].ExitCode != 0 {
		return fmt.Errorf("summary commands: %d (%d failed): %+v, want eval.py exiting 0", sum.CommandsTotal, sum.CommandsFailed, sum.Commands)
	}
	if len(sum.Changes) != 1 || sum.Changes[0].Path != evalReport || sum.Changes[0].Status != "added" {
		return fmt.Errorf("summary changes: %+v, want %s added", sum.Changes, evalReport)
	}
	if len(sum.Snapshots) != 1 || sum.Snapshots[0].Name != evalSnapshot {
		return fmt.Errorf("summary snapshots: %+v, want %s", sum.Snapshots, evalSnapshot)
	}

	host := filepath.Join(r.allowed, "out", "eval.json")
	e, err := call[exportResult](ctx, r.s, "workspace_export", exportArgs{ID: w.ID, GuestPath: "/workspace/" + evalReport, HostPath: host})
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("the exported report: %w", err)
	}
	if e.Files != 1 || e.Bytes != int64(len(raw)) {
		return fmt.Errorf("workspace_export: %+v, but the host file has %d bytes", e, len(raw))
	}
	var report struct {
		Total    int `json:"total"`
		Passed   int `json:"passed"`
		Failures []struct {
			Input int `json:"input"`
		} `json:"failures"`
	}
	if err := json.Unmarshal(raw, &report); err != nil {
		return fmt.Errorf("the exported report is not JSON: %w", err)
	}
	if report.Total != 5 || report.Passed != 4 || len(report.Failures) != 1 || report.Failures[0].Input != 10 {
		return fmt.Errorf("the report says %+v, want 4 of 5 passed, case 10 failed", report)
	}
	sum, err = call[summaryResult](ctx, r.s, "workspace_summary", idArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if len(sum.Exports) != 1 || sum.Exports[0].HostPath != host {
		return fmt.Errorf("summary exports: %+v, want %s", sum.Exports, host)
	}

	rr, err := call[resetResult](ctx, r.s, "workspace_reset", resetArgs{ID: w.ID, Snapshot: evalSnapshot})
	if err != nil {
		return err
	}
	if rr.ResetTo != "snapshot "+evalSnapshot || rr.Workspace.State != "running" {
		return fmt.Errorf("workspace_reset: reset_to %q, state %q", rr.ResetTo, rr.Workspace.State)
	}
	if _, err := call[fileReadResult](ctx, r.s, "file_read", pathArgs{ID: w.ID, Path: evalReport}); errorCode(err) != "not_found" {
		return fmt.Errorf("after the reset, file_read %s: %v, want not_found", evalReport, err)
	}
	d, err := call[diffResult](ctx, r.s, "workspace_diff", pathArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if err := wantOnlyChanges(d); err != nil {
		return fmt.Errorf("after the reset: %w", err)
	}
	// The host copy outlives the reset.
	if again, err := os.ReadFile(host); err != nil || string(again) != string(raw) {
		return fmt.Errorf("the exported report changed after the reset: %v", err)
	}
	return nil
}
