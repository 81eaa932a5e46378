package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// reproFix is the everyday loop: reproduce a failing test, patch the
// code, see the test pass, review the diff and take the fix home.
func reproFix(ctx context.Context, r *run) error {
	seed := r.path("allowed", "seed", "cart")
	if err := writeTree(seed, cartProject()); err != nil {
		return err
	}
	w, err := r.create(ctx, createArgs{Seed: &seedArg{Kind: "dir", Path: seed}})
	if err != nil {
		return err
	}
	res, err := r.exec(ctx, w.ID, cartTest, 120, nil)
	if err != nil {
		return err
	}
	if res.ExitCode == 0 || res.TimedOut {
		return fmt.Errorf("the buggy test run: exit %d (timed out: %v), want a failure", res.ExitCode, res.TimedOut)
	}

	p, err := call[patchResult](ctx, r.s, "patch_apply", patchArgs{ID: w.ID, Patch: cartFix})
	if err != nil {
		return err
	}
	if !p.Applied || len(p.Files) != 1 || p.Files[0].Path != "cart.py" || !p.Files[0].OK ||
		p.Files[0].Additions != 1 || p.Files[0].Deletions != 1 {
		return fmt.Errorf("patch_apply: %+v, want cart.py applied +1 -1", p)
	}
	if _, err := r.execOK(ctx, w.ID, cartTest, 120, nil); err != nil {
		return fmt.Errorf("after the fix: %w", err)
	}

	d, err := call[diffResult](ctx, r.s, "workspace_diff", pathArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if err := wantOnlyChanges(d, change{Path: "cart.py", Status: "modified", Additions: 1, Deletions: 1}); err != nil {
		return err
	}
	if !d.PatchInline || !hasLine(d.Patch, "+    return subtotal - subtotal * discount / 100") ||
		!hasLine(d.Patch, "-    return subtotal - subtotal * discount / 10") {
		return fmt.Errorf("workspace_diff's patch (inline %v) lacks the fix: %.400q", d.PatchInline, d.Patch)
	}

	host := filepath.Join(r.allowed, "out", "cart.py")
	e, err := call[exportResult](ctx, r.s, "workspace_export", exportArgs{ID: w.ID, GuestPath: "/workspace/cart.py", HostPath: host})
	if err != nil {
		return err
	}
	if e.Files != 1 || e.Bytes != int64(len(cartFixedPy)) {
		return fmt.Errorf("workspace_export: %+v, want 1 file of %d bytes", e, len(cartFixedPy))
	}
	got, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("the exported file: %w", err)
	}
	if string(got) != cartFixedPy {
		return fmt.Errorf("the exported cart.py is not the fixed one: %.300q", got)
	}
	return r.delete(ctx, w.ID)
}

// wantOnlyChanges fails unless the diff lists exactly the changes want
// (in any order), with its stats agreeing.
func wantOnlyChanges(d diffResult, want ...change) error {
	got := map[string]change{}
	for _, c := range d.Files {
		got[c.Path] = c
	}
	adds, dels := 0, 0
	for _, w := range want {
		if got[w.Path] != w {
			return fmt.Errorf("workspace_diff: %s is %+v, want %+v (all changes: %+v)", w.Path, got[w.Path], w, d.Files)
		}
		adds, dels = adds+w.Additions, dels+w.Deletions
	}
	if len(d.Files) != len(want) || d.FilesTotal != len(want) {
		return fmt.Errorf("workspace_diff lists %d files (files_total %d), want %d: %+v", len(d.Files), d.FilesTotal, len(want), d.Files)
	}
	if d.Stats != (diffStats{Files: len(want), Additions: adds, Deletions: dels}) {
		return fmt.Errorf("workspace_diff stats %+v, want %d files +%d -%d", d.Stats, len(want), adds, dels)
	}
	return nil
}

// hasLine reports whether text has line as one of its lines.
func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
