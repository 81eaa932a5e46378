package mcp_test

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// listTools returns a live session's tools by name and the size in bytes
// of its tools/list result: what a host pays for every turn.
func listTools(t *testing.T, s *session) (map[string]*sdk.Tool, int) {
	t.Helper()
	res, err := s.cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*sdk.Tool)
	for _, tool := range res.Tools {
		out[tool.Name] = tool
	}
	return out, len(b)
}

func schemaProps(t *testing.T, tool *sdk.Tool) map[string]any {
	t.Helper()
	b, _ := json.Marshal(tool.InputSchema)
	var m struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: schema %s", tool.Name, b)
	}
	return m.Properties
}

// mentions reports whether text names tool as a word of its own.
func mentions(text, tool string) bool {
	return regexp.MustCompile(`(^|[^a-z_])` + tool + `($|[^a-z_])`).MatchString(text)
}

func TestModes(t *testing.T) {
	full, _ := mcp.ToolNames(mcp.ProfileFull)
	fullTools, _ := listTools(t, connect(t, mcptest.New(), mcp.Options{Profile: mcp.ProfileFull}))
	_, coreSize := listTools(t, connect(t, mcptest.New(), mcp.Options{}))
	t.Logf("profile %s: %d bytes of tools/list", mcp.DefaultProfile, coreSize)

	var names []string
	for _, m := range mcp.Modes() {
		names = append(names, m.Name)
	}
	if want := []string{mcp.ModeReproFix, mcp.ModeInspect, mcp.ModeColdStart, mcp.ModeReviewEval}; !slices.Equal(names, want) {
		t.Fatalf("modes %v, want %v", names, want)
	}
	// What each mode's initialize instructions must say of its workflow.
	instr := map[string][]string{
		mcp.ModeReproFix:   {"reproduce and fix", "patch_apply", "workspace_export"},
		mcp.ModeInspect:    {"must not trust", "cannot write to the host", "network_status"},
		mcp.ModeColdStart:  {"installs and passes its tests", "network_grant", "workspace_summary"},
		mcp.ModeReviewEval: {"review or evaluate", "snapshot_create", "workspace_reset to the snapshot"},
	}
	seen := map[string]string{"": mcp.DefaultInstructions}
	for _, info := range mcp.Modes() {
		t.Run(info.Name, func(t *testing.T) {
			tools, err := mcp.ModeToolNames(info.Name)
			if err != nil || !slices.Equal(tools, info.Tools) {
				t.Fatalf("ModeToolNames = %v, %v; Modes() says %v", tools, err, info.Tools)
			}
			describe, withhold, raw := mcp.ModeOverrides(info.Name)
			// Every tool the mode names exists, once.
			if len(tools) != len(raw) {
				t.Errorf("the mode names %v; of those these exist: %v", raw, tools)
			}
			for _, n := range tools {
				if !slices.Contains(full, n) {
					t.Errorf("%s is not a tool", n)
				}
			}
			if len(tools) > 20 || len(tools) >= len(full) {
				t.Errorf("%d tools: want at most 20 and fewer than workspace-full's %d", len(tools), len(full))
			}

			b := mcptest.New()
			s := connect(t, b, mcp.Options{Mode: info.Name})
			got, size := listTools(t, s)
			var gotNames []string
			for n := range got {
				gotNames = append(gotNames, n)
			}
			slices.Sort(gotNames)
			want := slices.Sorted(slices.Values(tools))
			if !slices.Equal(gotNames, want) {
				t.Errorf("tools/list %v, want %v", gotNames, want)
			}
			if size >= coreSize {
				t.Errorf("tools/list is %d bytes, not smaller than the default profile's %d", size, coreSize)
			}
			t.Logf("mode %s: %d tools, %d bytes of tools/list (default profile %d: %.0f%%)", info.Name, len(got), size, coreSize, 100*float64(size)/float64(coreSize))

			// Overridden descriptions are served; the others are the
			// tools' own.
			for n, tool := range got {
				d := tool.Description
				if d == "" || len(d) >= 300 {
					t.Errorf("%s: description is %d chars", n, len(d))
				}
				if o, ok := describe[n]; ok {
					if d != o || d == fullTools[n].Description {
						t.Errorf("%s: description %q, want the mode's %q", n, d, o)
					}
				} else if d != fullTools[n].Description {
					t.Errorf("%s: description changed without an override: %q", n, d)
				}
				// A description never sends the model to a tool the
				// mode does not have.
				for _, other := range full {
					if mentions(d, other) && got[other] == nil {
						t.Errorf("%s's description names %s, which mode %s lacks", n, other, info.Name)
					}
				}
			}
			for n := range describe {
				if got[n] == nil {
					t.Errorf("override for %s, which the mode lacks", n)
				}
			}
			if len(describe) < 5 {
				t.Errorf("only %d descriptions tuned for the mode", len(describe))
			}

			// Withheld arguments exist in the tool's own schema and are
			// gone here.
			for n, props := range withhold {
				for _, p := range props {
					if _, ok := schemaProps(t, fullTools[n])[p]; !ok {
						t.Errorf("%s has no argument %s to withhold", n, p)
					}
					if _, ok := schemaProps(t, got[n])[p]; ok {
						t.Errorf("%s still offers %s", n, p)
					}
				}
			}

			// Instructions: the mode's own, naming only its tools.
			text := s.cs.InitializeResult().Instructions
			for name, other := range seen {
				if text == other {
					t.Errorf("instructions are the same as mode %q's", name)
				}
			}
			seen[info.Name] = text
			for _, w := range instr[info.Name] {
				if !strings.Contains(text, w) {
					t.Errorf("instructions lack %q: %s", w, text)
				}
			}
			for _, other := range full {
				if mentions(text, other) && got[other] == nil {
					t.Errorf("instructions name %s, which the mode lacks", other)
				}
			}
			if calls := b.Calls(); len(calls) != 0 {
				t.Errorf("initialize/list touched the backend: %v", calls)
			}
		})
	}
}

// inspect runs untrusted code: nothing it offers writes the workspace's
// files other than by running a command inside the guest, and nothing
// writes the host, opens the network or hands over secrets.
func TestModeInspectWritesNothing(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Mode: mcp.ModeInspect})
	tools, _ := listTools(t, s)
	deny := []string{"file_write", "patch_apply", "workspace_export", "workspace_sync_push", "network_grant", "network_revoke",
		"port_publish", "port_unpublish", "secret_set", "secret_delete", "service_start", "service_restart", "service_stop",
		"shell_open", "shell_write", "shell_signal", "workspace_update", "snapshot_create", "snapshot_delete", "vm_run",
		"workspace_fork"}
	for _, n := range deny {
		if tools[n] != nil {
			t.Errorf("inspect offers %s", n)
		}
	}
	// The tools that are not read-only change only the disposable guest:
	// its lifecycle, and commands run inside it.
	guestOnly := []string{"workspace_create", "workspace_start", "workspace_delete", "workspace_exec", "exec_status", "workspace_reset"}
	for n, tool := range tools {
		a := tool.Annotations
		if a == nil {
			t.Errorf("%s: no annotations", n)
			continue
		}
		if !a.ReadOnlyHint && !slices.Contains(guestOnly, n) {
			t.Errorf("%s is not read-only and not one of the guest-only tools", n)
		}
		if a.DestructiveHint != nil && *a.DestructiveHint && !slices.Contains(guestOnly, n) {
			t.Errorf("%s is destructive", n)
		}
	}
	if tools["workspace_exec"] == nil {
		t.Fatal("inspect has no workspace_exec: untrusted code could not be run in the guest")
	}
	if d := tools["workspace_exec"].Description; !strings.Contains(d, "inside the disposable guest") || !strings.Contains(d, "host files are out of reach") {
		t.Errorf("workspace_exec does not say where it runs: %s", d)
	}
	if len(tools) < 10 {
		t.Errorf("only %d tools", len(tools))
	}

	// Calls: a tool outside the mode is unknown; arguments that would open
	// the network or bring in secrets are refused before the backend.
	if res, err := s.cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "file_write",
		Arguments: map[string]any{"id": "w", "path": "a", "content": "x"}}); err == nil && !res.IsError {
		t.Errorf("file_write was served in inspect mode")
	}
	id := s.create(nil)
	before := len(b.Calls())
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"workspace_create", map[string]any{"network": []any{"evil.example:443"}}},
		{"workspace_create", map[string]any{"network": []any{"all-egress"}}},
		{"workspace_create", map[string]any{"secrets": map[string]any{"k": map[string]any{"file": "/root/.ssh/id_ed25519"}}}},
		{"workspace_exec", map[string]any{"id": id, "command": "env", "secret_env": map[string]any{"K": "k"}}},
	} {
		if r := s.call(tc.tool, tc.args); !r.isErr {
			t.Errorf("%s(%v) accepted in inspect mode", tc.tool, tc.args)
		}
	}
	if calls := b.Calls()[before:]; len(calls) != 0 {
		t.Errorf("withheld arguments reached the backend: %v", calls)
	}
	s.ok("workspace_exec", map[string]any{"id": id, "command": "./untrusted.sh"})
	s.ok("workspace_reset", map[string]any{"id": id})
}

func TestModeErrors(t *testing.T) {
	all := []string{mcp.ModeReproFix, mcp.ModeInspect, mcp.ModeColdStart, mcp.ModeReviewEval}
	_, err := mcp.ModeToolNames("nope")
	_, err2 := mcp.NewServer(mcptest.New(), mcp.Options{Mode: "nope"})
	for _, e := range []error{err, err2} {
		if e == nil {
			t.Fatal("unknown mode accepted")
		}
		for _, m := range all {
			if !strings.Contains(e.Error(), m) {
				t.Errorf("error %q does not list %s", e, m)
			}
		}
	}
	if _, err := mcp.NewServer(mcptest.New(), mcp.Options{Mode: mcp.ModeInspect, Profile: mcp.ProfileFull}); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("mode and profile together: %v", err)
	}
	if _, err := mcp.ModeToolNames(""); err == nil {
		t.Error("the empty mode is not a mode")
	}
}

// A backend's hint that names a tool the server's mode does not offer
// says so, rather than send the model to a tool it cannot call; tools the
// mode offers are named plainly, and the full profile offers them all.
func TestHintsNameOnlyOfferedTools(t *testing.T) {
	hint := "Delete workspaces or snapshots you no longer need ({{delete}}, {{snapshot.delete}}), then retry."
	for _, tc := range []struct {
		opts mcp.Options
		want string
	}{
		{mcp.Options{Mode: mcp.ModeInspect}, "(workspace_delete, snapshot_delete (which this server does not offer))"},
		{mcp.Options{Profile: mcp.ProfileFull}, "(workspace_delete, snapshot_delete)"},
	} {
		b := mcptest.New()
		b.SetError("Create", contract.LimitReached("no room").WithHint(hint))
		s := connect(t, b, tc.opts)
		r := s.call("workspace_create", map[string]any{})
		if !r.isErr || !strings.Contains(r.str("hint"), tc.want) {
			t.Errorf("%+v: hint %q, want it to contain %q", tc.opts, r.str("hint"), tc.want)
		}
	}
}
