package mcp

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// workspace_fork: new workspaces cloned from a running one, or from one
// of its snapshots, to try alternatives side by side. Only on a Backend
// that forks (contract.Forker); in workspace-full, not in core.

type forkIn struct {
	ID       string            `json:"id" jsonschema:"workspace id (or name) to fork; it must be running"`
	Count    int               `json:"count,omitempty" jsonschema:"how many forks, 1-8 (default 1, or one per name)"`
	Names    []string          `json:"names,omitempty" jsonschema:"optional names, one per fork, each unique among workspaces, 1-64 of [A-Za-z0-9._-]"`
	Labels   map[string]string `json:"labels,omitempty" jsonschema:"labels for the forks, added to the source's (and overriding them), e.g. {\"try\":\"b\"}"`
	Snapshot string            `json:"snapshot,omitempty" jsonschema:"fork from this snapshot of the workspace instead of its current state"`
}

type forkOut struct {
	Source   string          `json:"source"`
	Snapshot string          `json:"snapshot,omitempty"`
	Forks    []workspaceView `json:"forks"`
	// Resumed: the forks resumed from memory, their processes as they
	// were; false: they booted from the disk (Note says why).
	Resumed    bool   `json:"resumed"`
	Note       string `json:"note,omitempty"`
	DurationMs int64  `json:"duration_ms"`
	Hint       string `json:"hint,omitempty"`
}

func forkTools() []toolSpec {
	return []toolSpec{onForker(defTool(toolDef{
		name: "workspace_fork", group: "snapshot",
		summary:     "N new workspaces from a running one (or one of its snapshots): each gets its own copy-on-write disk and memory, processes as they were; a fork's changes never reach its parent or siblings.",
		description: "Fork a running workspace into count (1-8) new running workspaces, to try alternatives side by side: each gets its own copy-on-write disk and memory, processes as they were; a fork's changes never reach its parent or siblings. snapshot: fork one of its snapshots instead.",
		tune: func(s *jsonschema.Schema) {
			bounds(s, "count", 1, contract.MaxForks)
			if p := prop(s, "names"); p != nil {
				one, most := 1, contract.MaxForks
				p.MinItems, p.MaxItems, p.UniqueItems = &one, &most, true
			}
		},
	}, toolFork))}
}

// onForker makes a spec register only on a Backend that forks.
func onForker(spec toolSpec) toolSpec {
	add := spec.add
	spec.add = func(s *sdk.Server, h *handler) {
		if _, ok := h.b.(contract.Forker); ok {
			add(s, h)
		}
	}
	return spec
}

func toolFork(ctx context.Context, h *handler, in forkIn) (forkOut, error) {
	fb, ok := h.b.(contract.Forker)
	if !ok {
		return forkOut{}, contract.Invalid("this pyro server does not fork workspaces").
			WithHint("Create another workspace with workspace_create instead.")
	}
	req := contract.ForkRequest{Count: in.Count, Names: in.Names, Labels: maps.Clone(in.Labels), Snapshot: in.Snapshot}
	if req.Count == 0 && len(req.Names) > 0 {
		req.Count = len(req.Names) // one per name
	}
	if err := contract.ValidateFork(&req); err != nil {
		return forkOut{}, err
	}
	var r contract.ForkResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		req.ID = id
		r, err = fb.Fork(ctx, req)
		return err
	})
	if err != nil {
		return forkOut{}, err
	}
	full := make([]workspaceView, len(r.Forks))
	for i, w := range r.Forks {
		full[i] = viewWorkspace(w)
	}
	hint := "Each fork is a workspace of its own: use its id with workspace_exec and the other tools. Changes in one never reach the source or the other forks; workspace_delete each when done."
	if r.Memory {
		hint = "Each fork is a workspace of its own, its processes (services included) running as they were in the source: use its id with workspace_exec and the other tools. Changes in one never reach the source or the other forks; workspace_delete each when done."
	} else if len(r.Forks) > 0 {
		hint += " They booted from the disk: processes of the source did not carry over."
	}
	build := func(n int) forkOut {
		forks := slices.Clone(full)
		for i := n; i < len(forks); i++ {
			w := forks[i]
			forks[i] = workspaceView{ID: w.ID, Name: w.Name, State: w.State, Snapshots: w.Snapshots, LastSeq: w.LastSeq}
		}
		o := forkOut{Source: r.Source, Snapshot: r.Snapshot, Forks: forks, Resumed: r.Memory, Note: h.word(r.Note),
			DurationMs: r.Duration.Milliseconds(), Hint: hint}
		if o.Forks == nil {
			o.Forks = []workspaceView{}
		}
		if n < len(full) {
			o.Hint = fmt.Sprintf("Forks after the first %d are shown by id, name and state only (workspace_status shows each). %s", n, hint)
		}
		return o
	}
	data, _, err := fit(h, len(full), build)
	return data, err
}
