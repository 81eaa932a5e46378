package mcp_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// forkIDs returns the ids of a workspace_fork result's forks.
func forkIDs(t *testing.T, r result) []string {
	t.Helper()
	var ids []string
	for _, f := range r.m["forks"].([]any) {
		ids = append(ids, f.(map[string]any)["id"].(string))
	}
	return ids
}

// readFile reads a guest file through file_read; "" and false when it is
// not there.
func (s *session) readFile(id, path string) (string, bool) {
	s.t.Helper()
	r := s.call("file_read", map[string]any{"id": id, "path": path})
	if r.isErr {
		if r.str("error") != "not_found" {
			s.t.Fatalf("file_read %s %s: %s", id, path, r.text)
		}
		return "", false
	}
	return r.str("content"), true
}

// A fork through the tool: named forks that resume the source as it is,
// with its labels under the fork's, each a workspace of its own whose
// writes reach neither the source nor its sibling; a fork of a snapshot
// gets the snapshot's files and says that it booted.
func TestForkTool(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	src := s.create(map[string]any{"name": "base", "labels": map[string]any{"task": "fix", "try": "a"}, "seed": map[string]any{"path": "/src"}})
	s.ok("file_write", map[string]any{"id": src, "path": "state.txt", "content": "one\n"})

	r := s.ok("workspace_fork", map[string]any{"id": "base", "names": []any{"try-b", "try-c"}, "labels": map[string]any{"try": "b"}})
	ids := forkIDs(t, r)
	if r.str("source") != src || len(ids) != 2 || r.m["resumed"] != true || r.str("note") != "" || r.m["snapshot"] != nil ||
		!strings.Contains(r.str("hint"), "as they were") || !strings.Contains(r.str("hint"), "never reach the source") {
		t.Fatalf("fork: %s", r.text)
	}
	for i, f := range r.m["forks"].([]any) {
		v := f.(map[string]any)
		labels := v["labels"].(map[string]any)
		if v["name"] != []string{"try-b", "try-c"}[i] || v["state"] != "running" || labels["task"] != "fix" || labels["try"] != "b" ||
			v["id"] == src || v["seed"] == nil {
			t.Errorf("fork %d: %v", i, v)
		}
	}
	// Each is a workspace of its own, by id and by name.
	for _, ref := range []string{ids[0], "try-b", "try-c"} {
		if got, _ := s.readFile(ref, "state.txt"); got != "one\n" {
			t.Errorf("%s: state.txt is %q, want the source's", ref, got)
		}
	}
	s.ok("file_write", map[string]any{"id": "try-b", "path": "state.txt", "content": "two\n"})
	s.ok("file_write", map[string]any{"id": "try-b", "path": "only-b.txt", "content": "b\n"})
	s.ok("file_write", map[string]any{"id": src, "path": "only-src.txt", "content": "s\n"})
	for _, c := range []struct {
		ref, path, want string
		there           bool
	}{
		{src, "state.txt", "one\n", true}, {"try-c", "state.txt", "one\n", true}, {"try-b", "state.txt", "two\n", true},
		{src, "only-b.txt", "", false}, {"try-c", "only-b.txt", "", false},
		{"try-b", "only-src.txt", "", false}, {"try-c", "only-src.txt", "", false},
	} {
		if got, there := s.readFile(c.ref, c.path); got != c.want || there != c.there {
			t.Errorf("%s:%s = %q (there %v), want %q (%v)", c.ref, c.path, got, there, c.want, c.there)
		}
	}
	if st := s.ok("workspace_status", map[string]any{"id": src}); st.m["workspace"].(map[string]any)["labels"].(map[string]any)["try"] != "a" {
		t.Errorf("the fork's labels reached the source: %s", st.text)
	}
	// The diff of a fork is against the source's baseline.
	if d := s.ok("workspace_diff", map[string]any{"id": "try-b"}); !strings.Contains(d.text, "only-b.txt") || !strings.Contains(d.text, "state.txt") {
		t.Errorf("diff of a fork: %s", d.text)
	}

	// Without count, one fork per name; without either, one.
	if r := s.ok("workspace_fork", map[string]any{"id": src, "names": []any{"x1", "x2", "x3"}}); len(forkIDs(t, r)) != 3 {
		t.Errorf("one per name: %s", r.text)
	}
	if r := s.ok("workspace_fork", map[string]any{"id": src}); len(forkIDs(t, r)) != 1 || r.m["forks"].([]any)[0].(map[string]any)["name"] != nil {
		t.Errorf("default count: %s", r.text)
	}

	// A fork of a snapshot starts from the snapshot's files; the fake's
	// snapshots hold no memory, so it boots, and says so.
	s.ok("snapshot_create", map[string]any{"id": src, "name": "early"})
	s.ok("file_write", map[string]any{"id": src, "path": "state.txt", "content": "later\n"})
	r = s.ok("workspace_fork", map[string]any{"id": src, "snapshot": "early", "count": 2})
	ids = forkIDs(t, r)
	if len(ids) != 2 || r.str("snapshot") != "early" || r.m["resumed"] != false || !strings.Contains(r.str("note"), "disk only") ||
		!strings.Contains(r.str("hint"), "booted from the disk") {
		t.Fatalf("fork of a snapshot: %s", r.text)
	}
	if got, _ := s.readFile(ids[1], "state.txt"); got != "one\n" {
		t.Errorf("a fork of snapshot early has state.txt %q", got)
	}
}

func TestForkToolErrors(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	id := s.create(map[string]any{"name": "base"})
	other := s.create(map[string]any{"name": "taken"})

	// Refused before the backend: by the schema, or by the contract.
	before := len(b.Calls())
	for _, args := range []map[string]any{
		{"id": id, "count": contract.MaxForks + 1},
		{"id": id, "count": 0},
		{"id": id, "names": []any{"a", "a"}},
		{"id": id, "names": []any{}},
	} {
		if r := s.call("workspace_fork", args); !r.isErr {
			t.Errorf("%v accepted: %s", args, r.text)
		}
	}
	s.fail("workspace_fork", map[string]any{"id": id, "count": 3, "names": []any{"a", "b"}}, "invalid", "2 names given for 3 forks")
	s.fail("workspace_fork", map[string]any{"id": id, "names": []any{"ok", "-bad"}}, "invalid", "names[1]")
	s.fail("workspace_fork", map[string]any{"id": id, "snapshot": "no/such"}, "invalid", "snapshot")
	s.fail("workspace_fork", map[string]any{"id": id, "labels": map[string]any{"-k": "v"}}, "invalid", "label key")
	if calls := b.Calls()[before:]; len(calls) != 0 {
		t.Errorf("invalid forks reached the backend: %v", calls)
	}

	// Refused by the backend, all or nothing.
	n := len(b.Calls())
	s.fail("workspace_fork", map[string]any{"id": id, "names": []any{"fresh", "taken"}}, "exists", "Pick another name")
	s.fail("workspace_fork", map[string]any{"id": id, "snapshot": "nope"}, "not_found", "snapshot")
	s.fail("workspace_fork", map[string]any{"id": "ghost"}, "not_found", "Existing workspaces")
	b.SetState(other, contract.StateStopped)
	s.fail("workspace_fork", map[string]any{"id": "taken"}, "stopped", "workspace_start")
	b.MaxRunning = 3
	s.fail("workspace_fork", map[string]any{"id": id, "count": 3}, "limit", "")
	if list, _ := b.List(context.Background()); len(list) != 2 {
		t.Errorf("a refused fork left workspaces behind: %d", len(list))
	}
	if !slices.Contains(b.Calls()[n:], "Fork") {
		t.Errorf("the backend saw no fork: %v", b.Calls()[n:])
	}
}

// Eight forks with large labels do not fit one result: the first ones
// come in full, the others by id, name and state, and every id is there.
func TestForkToolFitsBudget(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	labels := map[string]any{}
	for i := range contract.MaxLabels {
		labels[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 200)
	}
	id := s.create(map[string]any{"labels": labels})
	r := s.ok("workspace_fork", map[string]any{"id": id, "count": contract.MaxForks})
	forks := r.m["forks"].([]any)
	if len(forks) != contract.MaxForks || !strings.Contains(r.str("hint"), "shown by id, name and state only") {
		t.Fatalf("eight big forks: %d forks, hint %q", len(forks), r.str("hint"))
	}
	last := forks[len(forks)-1].(map[string]any)
	if last["id"] == "" || last["state"] != "running" || last["labels"] != nil {
		t.Errorf("the last fork: %v", last)
	}
	if forks[0].(map[string]any)["labels"] == nil {
		t.Errorf("the first fork is not in full: %v", forks[0])
	}
}

// noForker hides the fake's Fork.
type noForker struct{ contract.Backend }

// workspace_fork is a workspace-full tool, offered only by a backend that
// forks; it creates workspaces, so it is neither read-only nor
// destructive, and of the modes only those that write have it.
func TestForkToolOffered(t *testing.T) {
	core, _ := mcp.ToolNames(mcp.ProfileCore)
	full, _ := mcp.ToolNames(mcp.ProfileFull)
	if slices.Contains(core, "workspace_fork") || !slices.Contains(full, "workspace_fork") {
		t.Errorf("workspace_fork: in core %v, in full %v", slices.Contains(core, "workspace_fork"), slices.Contains(full, "workspace_fork"))
	}
	tools, _ := listTools(t, connect(t, mcptest.New(), mcp.Options{Profile: mcp.ProfileFull}))
	tool := tools["workspace_fork"]
	if tool == nil {
		t.Fatal("workspace_fork not listed for a backend that forks")
	}
	if a := tool.Annotations; a.ReadOnlyHint || a.DestructiveHint == nil || *a.DestructiveHint || a.IdempotentHint {
		t.Errorf("annotations %+v", a)
	}
	for _, p := range []string{"id", "count", "names", "labels", "snapshot"} {
		if schemaProps(t, tool)[p] == nil {
			t.Errorf("no argument %s", p)
		}
	}
	plain, _ := listTools(t, connect(t, noForker{mcptest.New()}, mcp.Options{Profile: mcp.ProfileFull}))
	if plain["workspace_fork"] != nil {
		t.Error("workspace_fork listed for a backend that does not fork")
	}
	for _, m := range mcp.Modes() {
		want := m.Name == mcp.ModeReproFix || m.Name == mcp.ModeReviewEval
		if got := slices.Contains(m.Tools, "workspace_fork"); got != want {
			t.Errorf("mode %s has workspace_fork: %v, want %v", m.Name, got, want)
		}
	}
}
