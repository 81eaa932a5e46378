package workspace

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// TestProgressStages: create, start, reset and run report their stages to
// the caller's progress reporter, in order.
func TestProgressStages(t *testing.T) {
	h := newHarness(t)
	var got []string
	ctx := contract.WithProgress(context.Background(), func(stage string, _, _ float64) { got = append(got, stage) })
	take := func() string {
		s := strings.Join(got, " | ")
		got = nil
		return s
	}
	src := seedDir(t, map[string]string{"a.txt": "a", "b/c.txt": "c"})
	w, err := h.m.Create(ctx, contract.CreateRequest{TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: src}})
	if err != nil {
		t.Fatal(err)
	}
	want := "booting the " + w.Env + " microVM | guest agent ready | seeding /workspace from " + src + " | recording the baseline (2 files seeded)"
	if s := take(); s != want {
		t.Errorf("create reported %q, want %q", s, want)
	}
	if _, err := h.m.Stop(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	take()
	if _, err := h.m.Start(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if s := take(); s != "booting the "+w.Env+" microVM | guest agent ready" {
		t.Errorf("start reported %q", s)
	}
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: w.ID, Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Reset(ctx, w.ID, "s1"); err != nil {
		t.Fatal(err)
	}
	if s := take(); !strings.HasPrefix(s, "restoring snapshot s1 | booting the ") {
		t.Errorf("reset reported %q", s)
	}
	if _, err := h.m.Run(ctx, contract.RunRequest{Command: "true"}); err != nil {
		t.Fatal(err)
	}
	if stages := slices.Clone(got); len(stages) == 0 || stages[len(stages)-1] != "running the command" || !slices.Contains(stages, "guest agent ready") {
		t.Errorf("run reported %q", stages)
	}
}
