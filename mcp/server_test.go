package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// session is a real MCP client connected over in-memory transports.
type session struct {
	t      *testing.T
	cs     *sdk.ClientSession
	budget int
	// schemas are the tools' declared output schemas, resolved, by name;
	// read from tools/list at the first call.
	schemas map[string]*jsonschema.Resolved
}

func connect(t *testing.T, b contract.Backend, opts mcp.Options) *session {
	t.Helper()
	return connectWith(t, b, opts, nil, nil)
}

// connectWith connects a client with copts (nil: the defaults) and
// sopts, which may pin the protocol version.
func connectWith(t *testing.T, b contract.Backend, opts mcp.Options, copts *sdk.ClientOptions, sopts *sdk.ClientSessionOptions) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := mcp.NewServer(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	st, ct := sdk.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, copts).Connect(ctx, ct, sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	budget := opts.MaxResultBytes
	if budget == 0 {
		budget = mcp.DefaultMaxResultBytes
	}
	return &session{t: t, cs: cs, budget: budget}
}

// result is a decoded tool result.
type result struct {
	isErr bool
	text  string
	m     map[string]any
}

func (r result) str(key string) string {
	s, _ := r.m[key].(string)
	return s
}

func (r result) num(key string) float64 {
	f, _ := r.m[key].(float64)
	return f
}

// call invokes a tool and checks the invariants every result must hold:
// exactly one text block, structuredContent equal to it, valid UTF-8, and
// within the budget.
func (s *session) call(name string, args map[string]any) result {
	s.t.Helper()
	return s.callParams(&sdk.CallToolParams{Name: name, Arguments: args})
}

// callParams is call with the request's params as given (a progress token
// in _meta, say).
func (s *session) callParams(p *sdk.CallToolParams) result {
	s.t.Helper()
	name := p.Name
	res, err := s.cs.CallTool(context.Background(), p)
	if err != nil {
		s.t.Fatalf("%s: protocol error: %v", name, err)
	}
	if len(res.Content) != 1 {
		s.t.Fatalf("%s: %d content blocks", name, len(res.Content))
	}
	tc, ok := res.Content[0].(*sdk.TextContent)
	if !ok {
		s.t.Fatalf("%s: content is %T", name, res.Content[0])
	}
	r := result{isErr: res.IsError, text: tc.Text}
	if !utf8.ValidString(tc.Text) {
		s.t.Fatalf("%s: text is not UTF-8", name)
	}
	if res.StructuredContent == nil {
		// Only the SDK's own argument-schema errors come without structure.
		if !res.IsError || !strings.Contains(tc.Text, "validating") {
			s.t.Fatalf("%s: no structuredContent: %s", name, tc.Text)
		}
		return r
	}
	if err := json.Unmarshal([]byte(tc.Text), &r.m); err != nil {
		s.t.Fatalf("%s: text block is not JSON: %v\n%s", name, err, tc.Text)
	}
	if !reflect.DeepEqual(any(r.m), res.StructuredContent) {
		s.t.Fatalf("%s: structuredContent differs from the text block:\n%v\n%s", name, res.StructuredContent, tc.Text)
	}
	if len(tc.Text) > s.budget {
		s.t.Fatalf("%s: result is %d bytes, budget %d", name, len(tc.Text), s.budget)
	}
	s.checkSchema(name, r)
	return r
}

// checkSchema validates a result against the tool's declared outputSchema,
// as a strict client does, and then against the precise schema of its kind:
// an error's against errorView's, a success's against one of the tool's
// result shapes (which, unlike the declared schema, require their fields).
func (s *session) checkSchema(name string, r result) {
	s.t.Helper()
	if s.schemas == nil {
		s.schemas = declaredSchemas(s.t, s.cs)
	}
	declared, ok := s.schemas[name]
	if !ok {
		s.t.Fatalf("%s: no outputSchema declared", name)
	}
	if err := declared.Validate(r.m); err != nil {
		s.t.Fatalf("%s: result does not validate against its outputSchema: %v\n%s", name, err, r.text)
	}
	if r.isErr && r.m["error"] != nil {
		if err := resolve(s.t, mcp.ErrorSchema()).Validate(r.m); err != nil {
			s.t.Fatalf("%s: error result is no errorView: %v\n%s", name, err, r.text)
		}
		return
	}
	shapes, err := mcp.ResultShapes(name)
	if err != nil {
		s.t.Fatal(err)
	}
	var errs []error
	for _, sh := range shapes {
		if err := resolve(s.t, sh).Validate(r.m); err == nil {
			return
		} else {
			errs = append(errs, err)
		}
	}
	s.t.Fatalf("%s: result matches none of its shapes: %v\n%s", name, errs, r.text)
}

// declaredSchemas lists the session's tools and resolves each one's
// outputSchema.
func declaredSchemas(t *testing.T, cs *sdk.ClientSession) map[string]*jsonschema.Resolved {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*jsonschema.Resolved{}
	for _, tool := range res.Tools {
		if tool.OutputSchema == nil {
			continue
		}
		data, err := json.Marshal(tool.OutputSchema)
		if err != nil {
			t.Fatal(err)
		}
		var sch jsonschema.Schema
		if err := json.Unmarshal(data, &sch); err != nil {
			t.Fatalf("%s: outputSchema: %v", tool.Name, err)
		}
		out[tool.Name] = resolve(t, &sch)
	}
	return out
}

func resolve(t *testing.T, s *jsonschema.Schema) *jsonschema.Resolved {
	t.Helper()
	r, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("resolving %s: %v", s, err)
	}
	return r
}

func (s *session) ok(name string, args map[string]any) result {
	s.t.Helper()
	r := s.call(name, args)
	if r.isErr {
		s.t.Fatalf("%s(%v) failed: %s", name, args, r.text)
	}
	return r
}

func (s *session) fail(name string, args map[string]any, code, hintPart string) result {
	s.t.Helper()
	r := s.call(name, args)
	if !r.isErr {
		s.t.Fatalf("%s(%v) succeeded, want error %s: %s", name, args, code, r.text)
	}
	if code != "" && r.str("error") != code {
		s.t.Fatalf("%s: error %q, want %q: %s", name, r.str("error"), code, r.text)
	}
	if hintPart != "" && !strings.Contains(r.text, hintPart) {
		s.t.Fatalf("%s: result does not mention %q: %s", name, hintPart, r.text)
	}
	return r
}

func (s *session) create(args map[string]any) string {
	s.t.Helper()
	r := s.ok("workspace_create", args)
	return r.m["workspace"].(map[string]any)["id"].(string)
}

func TestProfiles(t *testing.T) {
	core, err := mcp.ToolNames("")
	if err != nil {
		t.Fatal(err)
	}
	full, _ := mcp.ToolNames(mcp.ProfileFull)
	// Tool definitions cost tokens every turn: the default stays at 20
	// tools or fewer.
	if len(core) < 12 || len(core) > 20 {
		t.Errorf("core profile has %d tools, want 12 to 20: %v", len(core), core)
	}
	for _, n := range core {
		if !slices.Contains(full, n) {
			t.Errorf("%s is in core but not full", n)
		}
	}
	for _, n := range []string{"workspace_update", "workspace_stop", "workspace_logs", "snapshot_delete", "port_unpublish", "vm_run", "env_list"} {
		if slices.Contains(core, n) || !slices.Contains(full, n) {
			t.Errorf("%s should be full-only", n)
		}
	}
	if _, err := mcp.ToolNames("nope"); err == nil || !strings.Contains(err.Error(), mcp.ProfileCore) {
		t.Errorf("unknown profile: %v", err)
	}
	if _, err := mcp.NewServer(mcptest.New(), mcp.Options{Profile: "nope"}); err == nil || !strings.Contains(err.Error(), mcp.ProfileFull) {
		t.Errorf("NewServer unknown profile: %v", err)
	}
	if ps := mcp.Profiles(); len(ps) != 2 || ps[0].Name != mcp.DefaultProfile {
		t.Errorf("Profiles() = %+v", ps)
	}
}

func TestListToolsAndInitialize(t *testing.T) {
	for _, profile := range []string{"", mcp.ProfileCore, mcp.ProfileFull} {
		t.Run("profile="+profile, func(t *testing.T) {
			b := mcptest.New()
			start := time.Now()
			s := connect(t, b, mcp.Options{Profile: profile, Version: "1.2.3"})
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("initialize took %v", d)
			}
			if v := s.cs.InitializeResult().ServerInfo.Version; v != "1.2.3" {
				t.Errorf("server version %q", v)
			}
			res, err := s.cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			total, outTotal := 0, 0
			for _, tool := range res.Tools {
				got = append(got, tool.Name)
				if tool.Description == "" || len(tool.Description) >= 300 {
					t.Errorf("%s: description is %d chars", tool.Name, len(tool.Description))
				}
				schema, _ := json.Marshal(tool.InputSchema)
				var m map[string]any
				if err := json.Unmarshal(schema, &m); err != nil || m["type"] != "object" {
					t.Errorf("%s: input schema %s", tool.Name, schema)
				}
				props, _ := m["properties"].(map[string]any)
				for p, v := range props {
					if d, _ := v.(map[string]any)["description"].(string); d == "" {
						t.Errorf("%s.%s: no description", tool.Name, p)
					}
				}
				out, _ := json.Marshal(tool.OutputSchema)
				var om map[string]any
				if err := json.Unmarshal(out, &om); err != nil || om["type"] != "object" || om["properties"] == nil {
					t.Errorf("%s: output schema %s", tool.Name, out)
				}
				// Error results validate too: only what every result has is required.
				if req, _ := om["required"].([]any); len(req) != 0 {
					t.Errorf("%s: output schema requires %v, which error results lack", tool.Name, req)
				}
				// What a model reads: hosts pass name, description and
				// inputSchema on, not outputSchema.
				seen := *tool
				seen.OutputSchema = nil
				def, _ := json.Marshal(&seen)
				total += len(def)
				outTotal += len(out)
			}
			want, _ := mcp.ToolNames(profile)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("tools %v, want %v", got, want)
			}
			t.Logf("profile %q: %d tools, %d bytes of definitions, %d more of output schemas", profile, len(got), total, outTotal)
			if calls := b.Calls(); len(calls) != 0 {
				t.Errorf("initialize/list touched the backend: %v", calls)
			}
		})
	}
}

func TestEveryTool(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	called := map[string]bool{}
	ok := func(name string, args map[string]any) result {
		called[name] = true
		return s.ok(name, args)
	}

	r := ok("workspace_create", map[string]any{"name": "fix-1", "labels": map[string]any{"task": "t1"},
		"seed": map[string]any{"path": "/src/repo"}, "ttl_seconds": 900})
	ws := r.m["workspace"].(map[string]any)
	id := ws["id"].(string)
	if ws["state"] != "running" || ws["ttl_seconds"] != 900.0 || ws["seed"].(map[string]any)["kind"] != "dir" {
		t.Errorf("create: %s", r.text)
	}
	if r := ok("workspace_list", nil); len(r.m["workspaces"].([]any)) != 1 {
		t.Errorf("list: %s", r.text)
	}
	if r := ok("workspace_list", map[string]any{"labels": map[string]any{"task": "other"}}); len(r.m["workspaces"].([]any)) != 0 {
		t.Errorf("list filter: %s", r.text)
	}
	ok("workspace_status", map[string]any{"id": id})
	// A name works wherever an id does.
	if r := ok("workspace_status", map[string]any{"id": "fix-1"}); r.m["workspace"].(map[string]any)["id"] != id {
		t.Errorf("status by name: %s", r.text)
	}
	if r := ok("workspace_update", map[string]any{"id": id, "name": "fix-2", "labels": map[string]any{"x": "y"}, "remove_labels": []any{"task"}}); !strings.Contains(r.text, `"fix-2"`) || strings.Contains(r.text, "task") {
		t.Errorf("update: %s", r.text)
	}
	r = ok("workspace_exec", map[string]any{"id": "fix-2", "command": "make test"})
	if r.str("stdout") != "ran: make test\n" || r.num("exit_code") != 0 || r.m["stdout_truncated"] != false || r.str("id") != id {
		t.Errorf("exec: %s", r.text)
	}
	ok("workspace_exec", map[string]any{"id": id, "argv": []any{"ls", "-l"}})
	ok("file_write", map[string]any{"id": id, "path": "src/a.txt", "content": "hello\n", "mode": "0644"})
	if r := ok("file_read", map[string]any{"id": id, "path": "/workspace/src/a.txt"}); r.str("content") != "hello\n" || r.m["eof"] != true {
		t.Errorf("read: %s", r.text)
	}
	if r := ok("file_list", map[string]any{"id": id, "recursive": true}); !strings.Contains(r.text, "/workspace/src/a.txt") {
		t.Errorf("list files: %s", r.text)
	}
	if r := ok("patch_apply", map[string]any{"id": id, "patch": "--- a/b.txt\n+++ b/b.txt\n@@ -0,0 +1 @@\n+new\n"}); r.m["applied"] != true {
		t.Errorf("patch: %s", r.text)
	}
	if r := ok("workspace_diff", map[string]any{"id": id}); r.m["patch_inline"] != true || !strings.Contains(r.str("patch"), "+new") {
		t.Errorf("diff: %s", r.text)
	}
	if r := ok("workspace_export", map[string]any{"id": id, "host_path": "out.tgz"}); r.str("format") != "tar" {
		t.Errorf("export: %s", r.text)
	}
	if r := ok("workspace_sync_push", map[string]any{"id": id, "host_path": "/host/dir"}); r.num("skipped_total") != 1 {
		t.Errorf("sync: %s", r.text)
	}
	ok("snapshot_create", map[string]any{"id": id, "name": "before"})
	if r := ok("workspace_fork", map[string]any{"id": "fix-2", "names": []any{"fix-2a", "fix-2b"}, "labels": map[string]any{"try": "b"}}); r.str("source") != id ||
		len(r.m["forks"].([]any)) != 2 || r.m["resumed"] != true || r.m["forks"].([]any)[1].(map[string]any)["name"] != "fix-2b" {
		t.Errorf("fork: %s", r.text)
	}
	if r := ok("snapshot_list", map[string]any{"id": id}); !strings.Contains(r.text, `"before"`) {
		t.Errorf("snapshots: %s", r.text)
	}
	if r := ok("workspace_summary", map[string]any{"id": id}); r.num("commands_total") != 2 || len(r.m["changes"].([]any)) == 0 || len(r.m["exports"].([]any)) != 1 {
		t.Errorf("summary: %s", r.text)
	}
	if r := ok("workspace_logs", map[string]any{"id": id, "limit": 3}); len(r.m["entries"].([]any)) != 3 || r.str("next_cursor") != "3" {
		t.Errorf("logs: %s", r.text)
	} else if r2 := ok("workspace_logs", map[string]any{"id": id, "cursor": "3"}); r2.m["entries"].([]any)[0].(map[string]any)["seq"] != 4.0 {
		t.Errorf("logs page 2: %s", r2.text)
	}
	if r := ok("workspace_reset", map[string]any{"id": id, "snapshot": "before"}); r.str("reset_to") != "snapshot before" {
		t.Errorf("reset: %s", r.text)
	}
	ok("workspace_reset", map[string]any{"id": id})
	ok("snapshot_delete", map[string]any{"id": id, "name": "before"})
	if r := ok("network_grant", map[string]any{"id": id, "grants": []any{"PyPI.org:443", "host.pyro.internal:5432"}}); !strings.Contains(r.text, `"grant":"pypi.org:443"`) {
		t.Errorf("network_grant: %s", r.text)
	}
	if r := ok("network_status", map[string]any{"id": id}); len(r.m["network"].(map[string]any)["grants"].([]any)) != 2 {
		t.Errorf("network_status: %s", r.text)
	}
	if r := ok("network_revoke", map[string]any{"id": id, "grants": []any{"host.pyro.internal:5432"}}); r.m["closed_connections"] != 0.0 || len(r.m["network"].(map[string]any)["grants"].([]any)) != 1 {
		t.Errorf("network_revoke: %s", r.text)
	}
	if r := ok("port_publish", map[string]any{"id": id, "guest_port": 8000}); r.m["published"].(map[string]any)["host_port"] == 0.0 {
		t.Errorf("port_publish: %s", r.text)
	}
	if r := ok("workspace_status", map[string]any{"id": id}); !strings.Contains(r.text, `"8000 -> 127.0.0.1:`) || !strings.Contains(r.text, `"pypi.org:443"`) {
		t.Errorf("status has no network section: %s", r.text)
	}
	ok("port_unpublish", map[string]any{"id": id, "guest_port": 8000})
	if r := ok("secret_set", map[string]any{"id": id, "name": "npm", "value": "s3cr3t-token"}); !strings.Contains(r.text, `"name":"npm"`) || strings.Contains(r.text, "s3cr3t") {
		t.Errorf("secret_set: %s", r.text)
	}
	if r := ok("workspace_exec", map[string]any{"id": id, "command": "npm publish", "secret_env": map[string]any{"NPM_TOKEN": "npm"}}); r.num("exit_code") != 0 {
		t.Errorf("exec with secret_env: %s", r.text)
	}
	if r := ok("workspace_status", map[string]any{"id": id}); !strings.Contains(r.text, `"secrets":[{"name":"npm","source":"value"}]`) {
		t.Errorf("status has no secrets: %s", r.text)
	}
	if r := ok("secret_delete", map[string]any{"id": id, "name": "npm"}); r.text != `{"id":"`+id+`","secrets":[]}` {
		t.Errorf("secret_delete: %s", r.text)
	}
	if r := ok("workspace_exec", map[string]any{"id": id, "command": "make", "background": true}); r.str("state") != "running" {
		t.Errorf("background exec: %s", r.text)
	} else if r := ok("exec_status", map[string]any{"id": id, "seq": r.num("seq"), "kill": true}); r.str("state") != "killed" {
		t.Errorf("exec_status: %s", r.text)
	}
	if r := ok("service_start", map[string]any{"id": id, "name": "web", "command": "python3 -m http.server 8000",
		"readiness": map[string]any{"kind": "http", "url": "http://127.0.0.1:8000/"}}); r.m["service"].(map[string]any)["state"] != "ready" {
		t.Errorf("service_start: %s", r.text)
	}
	ok("service_status", map[string]any{"id": id})
	ok("service_logs", map[string]any{"id": id, "name": "web"})
	ok("service_restart", map[string]any{"id": id, "name": "web"})
	ok("service_stop", map[string]any{"id": id, "name": "web"})
	exerciseShellTools(t, ok, id)
	ok("workspace_stop", map[string]any{"id": id})
	ok("workspace_start", map[string]any{"id": id})
	if r := ok("vm_run", map[string]any{"command": "uname -a"}); r.str("stdout") != "ran: uname -a\n" || r.str("id") != "" {
		t.Errorf("vm_run: %s", r.text)
	}
	if r := ok("env_list", nil); !strings.Contains(r.text, "pyro env build debian-12-build") {
		t.Errorf("env_list: %s", r.text)
	}
	if r := ok("workspace_delete", map[string]any{"id": id}); r.str("deleted") != id {
		t.Errorf("delete: %s", r.text)
	}

	all, _ := mcp.ToolNames(mcp.ProfileFull)
	for _, n := range all {
		if !called[n] {
			t.Errorf("tool %s not exercised", n)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	id := s.create(nil)
	before := len(b.Calls())
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"workspace_create", map[string]any{"name": "bad name"}, "may only use"},
		{"workspace_create", map[string]any{"labels": map[string]any{"bad key": "v"}}, "label key"},
		{"workspace_create", map[string]any{"seed": map[string]any{"kind": "archive"}}, "needs seed.path"},
		{"workspace_exec", map[string]any{"id": id}, "pass command"},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "argv": []any{"ls"}}, "exactly one"},
		{"workspace_exec", map[string]any{"id": id, "command": " "}, "blank"},
		{"workspace_exec", map[string]any{"id": "", "command": "ls"}, "id must not be empty"},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "secret_env": map[string]any{"A": "../x"}}, "secret name"},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "secret_env": map[string]any{"1A": "npm"}}, "secret_env key"},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "env_vars": map[string]any{"A": "x"}, "secret_env": map[string]any{"A": "npm"}}, "both env_vars and secret_env"},
		{"workspace_create", map[string]any{"secrets": map[string]any{"npm": map[string]any{}}}, "give value"},
		{"workspace_create", map[string]any{"secrets": map[string]any{"npm": map[string]any{"value": "x", "file": "/y"}}}, "not both"},
		{"workspace_create", map[string]any{"secrets": map[string]any{"a/b": map[string]any{"value": "xxxx"}}}, "secret name"},
		{"secret_set", map[string]any{"id": id, "name": "..", "value": "xxxx"}, "secret name"},
		{"file_read", map[string]any{"id": id, "path": ""}, "path must not be empty"},
		{"file_write", map[string]any{"id": id, "path": "a", "content": "x", "mode": "rwx"}, "octal"},
		{"file_write", map[string]any{"id": id, "path": "a", "content": strings.Repeat("x", contract.MaxWriteBytes+1)}, "limit"},
		{"file_list", map[string]any{"id": id, "cursor": "abc"}, "next_cursor"},
		{"file_list", map[string]any{"id": id, "cursor": "9223372036854775807"}, "past the first 100000 entries"},
		{"patch_apply", map[string]any{"id": id, "patch": "  "}, "patch is empty"},
		{"snapshot_create", map[string]any{"id": id, "name": "a b"}, "may only use"},
		{"workspace_update", map[string]any{"id": id}, "nothing to update"},
		{"workspace_logs", map[string]any{"id": id, "cursor": "x"}, "cursor"},
		{"workspace_export", map[string]any{"id": id, "host_path": ""}, "host_path must not be empty"},
		{"workspace_create", map[string]any{"network": []any{"pypi.org"}}, "NAME:PORT"},
		{"vm_run", map[string]any{"command": "ls", "network": []any{"pypi.org:https"}}, "all-egress"},
		{"network_grant", map[string]any{"id": id, "grants": []any{"*:443"}}, "host.pyro.internal:PORT"},
		{"network_revoke", map[string]any{"id": id, "grants": []any{"10.0.0.0/33:80"}}, "CIDR:PORT-RANGE"},
	} {
		r := s.fail(tc.tool, tc.args, "invalid", tc.want)
		if r.str("hint") == "" {
			t.Errorf("%s: no hint", tc.tool)
		}
	}
	// Schema-level errors are caught by the SDK, still as tool errors.
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "timeout_seconds": 0.5}},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "timeout_seconds": 3601}},
		{"workspace_exec", map[string]any{"id": id, "command": "ls", "bogus": 1}},
		{"workspace_status", map[string]any{}},
		{"workspace_export", map[string]any{"id": id, "host_path": "x", "format": "zip"}},
		{"file_list", map[string]any{"id": id, "limit": 5000}},
		{"network_grant", map[string]any{"id": id, "grants": []any{}}},
		{"network_grant", map[string]any{"id": id}},
		{"port_publish", map[string]any{"id": id, "guest_port": 70000}},
		{"port_unpublish", map[string]any{"id": id, "guest_port": 0}},
		{"port_publish", map[string]any{"id": id, "guest_port": 80, "host_port": -1}},
		{"workspace_create", map[string]any{"disk_mib": contract.MaxDiskMiB + 1}},
		{"workspace_create", map[string]any{"disk_mib": -1}},
	} {
		if r := s.call(tc.tool, tc.args); !r.isErr {
			t.Errorf("%s(%v) accepted", tc.tool, tc.args)
		}
	}
	if calls := b.Calls()[before:]; len(calls) != 0 {
		t.Errorf("invalid arguments reached the backend: %v", calls)
	}
}

func TestErrorHints(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(b *mcptest.Backend, id string)
		tool    string
		args    func(id string) map[string]any
		code    string
		hint    string
		profile string
	}{
		{name: "unknown workspace lists ids", tool: "workspace_exec",
			args: func(string) map[string]any { return map[string]any{"id": "ws-404", "command": "ls"} },
			code: "not_found", hint: "ws-1 (named-one, running)"},
		{name: "stopped", setup: func(b *mcptest.Backend, id string) { b.SetState(id, contract.StateStopped) }, tool: "workspace_exec",
			args: func(id string) map[string]any { return map[string]any{"id": id, "command": "ls"} },
			code: "stopped", hint: "workspace_start"},
		{name: "env missing", tool: "workspace_create",
			args: func(string) map[string]any { return map[string]any{"env": "debian-12-build"} },
			code: "env_missing", hint: "pyro env build debian-12-build"},
		{name: "env unknown core", tool: "workspace_create",
			args: func(string) map[string]any { return map[string]any{"env": "arch"} },
			code: "not_found", hint: "pyro env list"},
		{name: "env unknown full", tool: "workspace_create", profile: mcp.ProfileFull,
			args: func(string) map[string]any { return map[string]any{"env": "arch"} },
			code: "not_found", hint: "env_list"},
		{name: "exists name", tool: "workspace_create",
			args: func(string) map[string]any { return map[string]any{"name": "named-one"} },
			code: "exists", hint: "Pick another name"},
		{name: "exists host path", setup: func(b *mcptest.Backend, id string) {
			b.Export(context.Background(), contract.ExportRequest{ID: id, HostPath: "out", Format: contract.ExportAuto})
		}, tool: "workspace_export",
			args: func(id string) map[string]any { return map[string]any{"id": id, "host_path": "out"} },
			code: "exists", hint: "overwrite=true"},
		{name: "limit lists running", setup: func(b *mcptest.Backend, _ string) { b.MaxRunning = 1 }, tool: "workspace_create",
			args: func(string) map[string]any { return map[string]any{} },
			code: "limit", hint: "Running now: ws-1"},
		{name: "snapshot not found", tool: "workspace_reset",
			args: func(id string) map[string]any { return map[string]any{"id": id, "snapshot": "nope"} },
			code: "not_found", hint: "workspace_summary"},
		{name: "file not found", tool: "file_read",
			args: func(id string) map[string]any { return map[string]any{"id": id, "path": "nope.txt"} },
			code: "not_found", hint: "file_list"},
		{name: "conflict", setup: func(b *mcptest.Backend, _ string) {
			b.SetError("Reset", contract.Conflict("a reset is already running"))
		},
			tool: "workspace_reset", args: func(id string) map[string]any { return map[string]any{"id": id} },
			code: "conflict", hint: "Re-read"},
		{name: "timeout", setup: func(b *mcptest.Backend, _ string) {
			b.SetError("SnapshotCreate", contract.Timeout("snapshot took too long"))
		},
			tool: "snapshot_create", args: func(id string) map[string]any { return map[string]any{"id": id, "name": "s"} },
			code: "timeout", hint: "pyro doctor"},
		{name: "invalid from backend", setup: func(b *mcptest.Backend, _ string) {},
			tool: "patch_apply", args: func(id string) map[string]any { return map[string]any{"id": id, "patch": "garbage"} },
			code: "invalid", hint: "file headers"},
		{name: "internal", setup: func(b *mcptest.Backend, _ string) {
			b.SetError("Diff", contract.Internal("diff failed", fmt.Errorf("EIO")))
		},
			tool: "workspace_diff", args: func(id string) map[string]any { return map[string]any{"id": id} },
			code: "internal", hint: "not a problem with your arguments"},
		{name: "backend hint wins", setup: func(b *mcptest.Backend, _ string) {
			b.SetError("Exec", contract.Conflict("guest agent busy").WithHint("Wait a second and retry."))
		}, tool: "workspace_exec", args: func(id string) map[string]any { return map[string]any{"id": id, "command": "ls"} },
			code: "conflict", hint: "Wait a second"},
		{name: "plain error", setup: func(b *mcptest.Backend, _ string) { b.SetError("Status", fmt.Errorf("disk on fire")) },
			tool: "workspace_status", args: func(id string) map[string]any { return map[string]any{"id": id} },
			code: "internal", hint: "disk on fire"},
		{name: "patch does not apply", tool: "patch_apply",
			args: func(id string) map[string]any {
				return map[string]any{"id": id, "patch": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-MISMATCH\n+y\n"}
			},
			hint: "Nothing was written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mcptest.New()
			s := connect(t, b, mcp.Options{Profile: tc.profile})
			id := s.create(map[string]any{"name": "named-one"})
			if tc.setup != nil {
				tc.setup(b, id)
			}
			r := s.fail(tc.tool, tc.args(id), tc.code, tc.hint)
			if tc.code != "" && (r.str("message") == "" || r.str("hint") == "") {
				t.Errorf("message or hint missing: %s", r.text)
			}
		})
	}
}

func TestNoWorkspacesHint(t *testing.T) {
	s := connect(t, mcptest.New(), mcp.Options{})
	s.fail("workspace_status", map[string]any{"id": "ws-9"}, "not_found", "call workspace_create")
}

func TestExecTruncation(t *testing.T) {
	b := mcptest.New()
	var out bytes.Buffer
	for i := 0; out.Len() < 1<<20; i++ {
		fmt.Fprintf(&out, "line %d: <ok> & \"fine\" 日本\n", i)
	}
	stdout := out.Bytes()
	stderr := append(bytes.Repeat([]byte("warn\n"), 10000), 0xff, 0xfe, '\n')
	b.ExecFunc = func(req contract.ExecRequest) (contract.ExecResult, error) {
		if req.TimeoutSeconds != 30 || req.Cwd != "/workspace" {
			return contract.ExecResult{}, fmt.Errorf("defaults not applied: %+v", req)
		}
		return contract.ExecResult{ExitCode: 1, Duration: time.Second, Stdout: stdout, Stderr: stderr,
			StdoutSize: int64(len(stdout)) + 500, StderrSize: int64(len(stderr)),
			StdoutPath: "/host/out/1.stdout", StderrPath: "/host/out/1.stderr", OutputTruncated: true}, nil
	}
	for _, budget := range []int{0, 4096, 32 << 10} {
		t.Run(fmt.Sprint("budget=", budget), func(t *testing.T) {
			s := connect(t, b, mcp.Options{MaxResultBytes: budget})
			id := s.create(nil)
			r := s.ok("workspace_exec", map[string]any{"id": id, "command": "make test"})
			if r.m["stdout_truncated"] != true || r.m["stderr_truncated"] != true {
				t.Errorf("flags: %s", r.text)
			}
			if r.num("stdout_total_bytes") != float64(len(stdout)+500) || r.num("stderr_total_bytes") != float64(len(stderr)) {
				t.Errorf("totals: %v %v", r.m["stdout_total_bytes"], r.m["stderr_total_bytes"])
			}
			if r.str("stdout_path") != "/host/out/1.stdout" || r.str("stderr_path") != "/host/out/1.stderr" {
				t.Errorf("paths: %s", r.text)
			}
			if r.m["stderr_binary"] != true || r.m["stdout_binary"] != nil {
				t.Errorf("binary flags: %v %v", r.m["stdout_binary"], r.m["stderr_binary"])
			}
			if !strings.Contains(r.str("hint"), "/host/out/1.stdout") || !strings.Contains(r.str("hint"), "file_read") {
				t.Errorf("hint: %s", r.str("hint"))
			}
			so := r.str("stdout")
			if !strings.HasPrefix(so, "line 0: <ok>") || !strings.Contains(so, "bytes omitted") || !strings.HasSuffix(so, "日本\n") {
				t.Errorf("stdout excerpt: %.200q ... %.200q", so, so[max(0, len(so)-200):])
			}
			// The budget is used, not wasted: at least 70% of it.
			if want := s.budget * 7 / 10; len(r.text) < want {
				t.Errorf("result %d bytes, want at least %d", len(r.text), want)
			}
			t.Logf("budget %d: result %d bytes, stdout excerpt %d, stderr excerpt %d", s.budget, len(r.text), len(so), len(r.str("stderr")))
		})
	}
}

func TestExecTimeoutHint(t *testing.T) {
	b := mcptest.New()
	b.ExecFunc = func(req contract.ExecRequest) (contract.ExecResult, error) {
		return contract.ExecResult{ExitCode: 124, TimedOut: true, Signal: "SIGKILL", Duration: 5 * time.Second}, nil
	}
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)
	r := s.ok("workspace_exec", map[string]any{"id": id, "command": "sleep 99", "timeout_seconds": 5})
	if r.num("exit_code") != 124 || r.m["timed_out"] != true || !strings.Contains(r.str("hint"), "5 s timeout") {
		t.Errorf("%s", r.text)
	}
}

func TestFileReadPaging(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{MaxResultBytes: 3000})
	id := s.create(nil)
	var want strings.Builder
	for i := 0; want.Len() < 50_000; i++ {
		fmt.Fprintf(&want, "%d\t\"é日本\" <tag> \\ \n", i)
	}
	b.SetFile(id, "big.txt", []byte(want.String()))
	var got strings.Builder
	offset := 0.0
	for pages := 0; ; pages++ {
		if pages > 200 {
			t.Fatal("too many pages")
		}
		r := s.ok("file_read", map[string]any{"id": id, "path": "big.txt", "offset": offset})
		got.WriteString(r.str("content"))
		if r.m["binary"] != nil {
			t.Fatal("text flagged binary")
		}
		if r.m["eof"] == true {
			if r.m["next_offset"] != nil {
				t.Fatal("next_offset at eof")
			}
			break
		}
		next := r.num("next_offset")
		if next <= offset {
			t.Fatalf("next_offset %v did not advance from %v", next, offset)
		}
		offset = next
	}
	if got.String() != want.String() {
		t.Fatalf("paged content differs: got %d bytes, want %d", got.Len(), want.Len())
	}
	// max_bytes smaller than the budget is honoured, and a page never
	// ends inside a character: "0\t\"é日本" has 本 at bytes 8-10.
	if r := s.ok("file_read", map[string]any{"id": id, "path": "big.txt", "max_bytes": 10}); r.num("bytes") != 8 || r.num("next_offset") != 8 || r.str("encoding") != "utf-8" {
		t.Errorf("max_bytes: %s", r.text)
	}
	// Tiny pages through multi-byte text: text, whole characters, no U+FFFD.
	got.Reset()
	for offset := 0.0; offset < 200; {
		r := s.ok("file_read", map[string]any{"id": id, "path": "big.txt", "offset": offset, "max_bytes": 5})
		if r.str("encoding") != "utf-8" || strings.ContainsRune(r.str("content"), utf8.RuneError) {
			t.Fatalf("page at %v: %s", offset, r.text)
		}
		got.WriteString(r.str("content"))
		offset = r.num("next_offset")
	}
	if !strings.HasPrefix(want.String(), got.String()) {
		t.Errorf("small pages differ: %q", got.String())
	}
}

func TestFileListPaging(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)
	for i := range 700 {
		b.SetFile(id, fmt.Sprintf("src/pkg%02d/file_with_a_longish_name_%04d.go", i%10, i), []byte("x"))
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("too many pages")
		}
		args := map[string]any{"id": id, "path": "/workspace/src", "recursive": true, "limit": 1000}
		if cursor != "" {
			args["cursor"] = cursor
		}
		r := s.ok("file_list", args)
		for _, e := range r.m["entries"].([]any) {
			p := e.(map[string]any)["path"].(string)
			if seen[p] {
				t.Fatalf("%s listed twice", p)
			}
			seen[p] = true
		}
		cursor = r.str("next_cursor")
		if cursor == "" {
			break
		}
		if pages == 0 && !strings.Contains(r.str("hint"), "next_cursor") {
			t.Errorf("no paging hint: %s", r.str("hint"))
		}
	}
	if len(seen) != 710 { // 700 files + 10 directories
		t.Errorf("listed %d entries, want 710", len(seen))
	}
}

func TestDiffLargePatch(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)
	for i := range 300 {
		b.SetFile(id, fmt.Sprintf("gen/file%03d.txt", i), bytes.Repeat([]byte("generated line\n"), 20))
	}
	r := s.ok("workspace_diff", map[string]any{"id": id})
	if r.m["patch_inline"] != false || r.m["patch"] != nil || r.str("patch_path") == "" {
		t.Errorf("large patch inlined or no path: %.300s", r.text)
	}
	if r.num("files_total") != 300 || len(r.m["files"].([]any)) == 0 || len(r.m["files"].([]any)) == 300 {
		t.Errorf("files: total %v shown %d", r.m["files_total"], len(r.m["files"].([]any)))
	}
	if st := r.m["stats"].(map[string]any); st["files"] != 300.0 || st["additions"] != 6000.0 {
		t.Errorf("stats: %v", st)
	}
	if !strings.Contains(r.str("hint"), r.str("patch_path")) || !strings.Contains(r.str("hint"), "path=") {
		t.Errorf("hint: %s", r.str("hint"))
	}
	// Narrowed to one file, the patch is inline again.
	if r := s.ok("workspace_diff", map[string]any{"id": id, "path": "gen/file007.txt"}); r.m["patch_inline"] != true || r.num("files_total") != 1 {
		t.Errorf("narrowed: %.300s", r.text)
	}
	if r := s.ok("workspace_diff", map[string]any{"id": id, "path": "nothing/here"}); !strings.Contains(r.str("hint"), "No changes") {
		t.Errorf("empty diff: %s", r.text)
	}
}

func TestListFitsBudget(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{MaxResultBytes: 2048})
	for i := range 60 {
		s.create(map[string]any{"name": fmt.Sprintf("workspace-number-%02d", i), "labels": map[string]any{"task": "a-fairly-long-label-value"}})
	}
	r := s.ok("workspace_list", nil)
	if r.m["truncated"] != true || r.num("total") != 60 || len(r.m["workspaces"].([]any)) >= 60 {
		t.Errorf("list: %s", r.text)
	}
	for i := range 40 {
		s.ok("workspace_exec", map[string]any{"id": "ws-1", "command": fmt.Sprintf("echo %d %s", i, strings.Repeat("long ", 100))})
	}
	if r := s.ok("workspace_summary", map[string]any{"id": "ws-1"}); r.m["truncated"] != true || r.num("commands_total") != 40 {
		t.Errorf("summary: %s", r.text)
	}
}

func TestLoggerNotStdout(t *testing.T) {
	var logs bytes.Buffer
	s := connect(t, mcptest.New(), mcp.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.create(nil)
	if !strings.Contains(logs.String(), "tool=workspace_create") {
		t.Errorf("no tool log: %s", logs.String())
	}
}

func TestToolTable(t *testing.T) {
	table := mcp.ToolTable()
	full, _ := mcp.ToolNames(mcp.ProfileFull)
	for _, n := range full {
		if !strings.Contains(table, "| `"+n+"` |") {
			t.Errorf("table lacks %s", n)
		}
	}
	if testing.Verbose() {
		t.Log("\n" + table)
	}
}

func TestServeAndPanicRecovery(t *testing.T) {
	b := mcptest.New()
	b.ExecFunc = func(contract.ExecRequest) (contract.ExecResult, error) { panic("boom") }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, ct := sdk.NewInMemoryTransports()
	done := make(chan error, 1)
	go func() { done <- mcp.Serve(ctx, b, mcp.Options{}, st) }()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, cs: cs, budget: mcp.DefaultMaxResultBytes}
	id := s.create(nil)
	s.fail("workspace_exec", map[string]any{"id": id, "command": "ls"}, "internal", "boom")
	// The server survived the panic.
	s.ok("workspace_status", map[string]any{"id": id})
	cs.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the client closed")
	}
}

// A failing exec's network note leads its hint; network_status lists the
// refusals with their fixes, and workspace_status the last few.
func TestNetworkResults(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	id := s.create(map[string]any{"network": []any{"host.pyro.internal:5432"}})
	note := `the workspace's network refused pypi.org:443 (no grant); network_grant with "pypi.org:443" would allow it`
	b.ExecFunc = func(req contract.ExecRequest) (contract.ExecResult, error) {
		return contract.ExecResult{ExitCode: 1, Network: note}, nil
	}
	r := s.ok("workspace_exec", map[string]any{"id": id, "command": "pip install requests"})
	if !strings.HasPrefix(r.str("hint"), "The workspace's network refused pypi.org:443") || !strings.Contains(r.str("hint"), `network_grant with "pypi.org:443"`) {
		t.Errorf("exec hint: %s", r.text)
	}
	for i := range 40 {
		b.AddDenial(id, contract.Denial{Time: time.Date(2026, 1, 2, 3, 4, i, 0, time.UTC), Protocol: "tcp", Addr: "151.101.0.223", Port: 443,
			Name: fmt.Sprintf("host%d.example.org", i), Reason: "no grant; " + strings.Repeat("x", 150), Fix: fmt.Sprintf("host%d.example.org:443", i)})
	}
	r = s.ok("network_status", map[string]any{"id": id})
	ds := r.m["network"].(map[string]any)["denials"].([]any)
	last := ds[len(ds)-1].(map[string]any)
	if last["fix"] != "host39.example.org:443" || last["what"] != "tcp host39.example.org:443 (151.101.0.223)" || !strings.Contains(r.str("hint"), "newest") {
		t.Errorf("network_status: %s", r.text)
	}
	r = s.ok("workspace_status", map[string]any{"id": id})
	brief := r.m["workspace"].(map[string]any)["network"].(map[string]any)
	if g := brief["grants"].([]any); len(g) != 1 || g[0] != "host.pyro.internal:5432" || len(brief["last_denials"].([]any)) != 3 {
		t.Errorf("workspace_status network: %s", r.text)
	}
	// Without the network, the tools are not there and grants are refused.
	plain := connect(t, noNetwork{mcptest.New()}, mcp.Options{})
	res, err := plain.cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range res.Tools {
		if strings.HasPrefix(tool.Name, "network_") || strings.HasPrefix(tool.Name, "port_") {
			t.Errorf("%s listed for a backend without a network", tool.Name)
		}
	}
	plain.fail("workspace_create", map[string]any{"network": []any{"pypi.org:443"}}, "invalid", "no workspace network")
}

// noNetwork hides the fake's NetworkBackend methods.
type noNetwork struct{ contract.Backend }

// TestFaceNamesEveryOp: every contract operation the full profile offers
// is worded as one of its tools, so no hint names a tool that does not
// exist.
func TestFaceNamesEveryOp(t *testing.T) {
	tools := map[string]bool{}
	names, err := mcp.ToolNames(mcp.ProfileFull)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		tools[n] = true
	}
	for _, op := range contract.Ops() {
		got := contract.Word("{{"+string(op)+"}}", mcp.Face())
		if !tools[got] {
			t.Errorf("operation %s is worded %q, which is no tool", op, got)
		}
	}
}

// TestOutputSchemas: every tool of the full profile declares an output
// schema, and the schemas bite: they refuse what no result of the tool
// looks like, while admitting its errors.
func TestOutputSchemas(t *testing.T) {
	s := connect(t, mcptest.New(), mcp.Options{Profile: mcp.ProfileFull})
	declared := declaredSchemas(t, s.cs)
	names, _ := mcp.ToolNames(mcp.ProfileFull)
	for _, n := range names {
		if declared[n] == nil {
			t.Errorf("%s declares no outputSchema", n)
		}
	}
	errResult := map[string]any{"error": "not_found", "message": "no workspace ws-9", "hint": "Call workspace_create.",
		"workspaces": []any{map[string]any{"id": "ws-1", "state": "running"}}}
	for _, tc := range []struct {
		tool  string
		value map[string]any
		ok    bool
	}{
		{"workspace_list", map[string]any{"workspaces": []any{}, "total": 0}, true},
		{"workspace_list", errResult, true},
		{"workspace_status", errResult, true},
		{"workspace_list", map[string]any{"workspaces": nil, "total": 0}, false},
		{"workspace_list", map[string]any{"workspaces": []any{}, "total": "0"}, false},
		{"workspace_status", map[string]any{"bogus": 1}, false},
		{"workspace_exec", map[string]any{"exit_code": 0, "state": "running", "stdout_next_offset": 0}, true},
		{"workspace_exec", map[string]any{"exit_code": "0"}, false},
		{"workspace_list", map[string]any{"error": 5}, false},
	} {
		err := declared[tc.tool].Validate(tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("%s: validating %v: %v, want ok=%v", tc.tool, tc.value, err, tc.ok)
		}
	}
	// The precise shapes require what every success has.
	shapes, err := mcp.ResultShapes("workspace_status")
	if err != nil || len(shapes) != 1 {
		t.Fatalf("shapes: %v %v", shapes, err)
	}
	if err := resolve(t, shapes[0]).Validate(map[string]any{}); err == nil {
		t.Error("workspace_status's shape admits {}")
	}
	if shapes, _ := mcp.ResultShapes("workspace_exec"); len(shapes) != 2 {
		t.Errorf("workspace_exec has %d shapes, want 2 (foreground, background)", len(shapes))
	}
}
