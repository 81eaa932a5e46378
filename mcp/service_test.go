package mcp_test

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// The service tools against the fake: results, hints, cursors, bounds,
// and bad arguments answered before the backend sees them.
func TestServiceTools(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	id := s.create(nil)

	r := s.ok("service_start", map[string]any{"id": id, "name": "web", "argv": []any{"python3", "-m", "http.server"},
		"readiness": map[string]any{"kind": "tcp", "port": 8000}})
	sv := r.m["service"].(map[string]any)
	if sv["state"] != "ready" || sv["pid"] == nil || !strings.Contains(r.str("hint"), "workspace_exec") {
		t.Errorf("start: %s", r.text)
	}
	// A crash before ready: failed, with its output in the same result.
	r = s.ok("service_start", map[string]any{"id": id, "name": "bad", "command": "crash now"})
	sv = r.m["service"].(map[string]any)
	if sv["state"] != "failed" || sv["exit_code"] != 3.0 || sv["stderr_tail"] != "boom\n" || sv["reason"] != "exited_before_ready" {
		t.Errorf("crash: %s", r.text)
	}
	s.fail("service_start", map[string]any{"id": id, "name": "web", "command": "true"}, "exists", "service_restart")

	// Listed in service_status, workspace_status and workspace_summary.
	r = s.ok("service_status", map[string]any{"id": id})
	if l := r.m["services"].([]any); len(l) != 2 || l[0].(map[string]any)["name"] != "bad" {
		t.Errorf("list: %s", r.text)
	}
	for _, tool := range []string{"workspace_status", "workspace_summary"} {
		if r := s.ok(tool, map[string]any{"id": id}); !strings.Contains(r.text, `"services":[{"name":"bad","state":"failed"`) {
			t.Errorf("%s: %s", tool, r.text)
		}
	}

	// Logs: a tail, then the cursor returns only what came after it,
	// and long output is cut to the budget with the cursor after it.
	r = s.ok("service_logs", map[string]any{"id": id, "name": "web"})
	if r.str("stdout") != "started web\n" || r.str("next_cursor") != "12.0" {
		t.Errorf("tail: %s", r.text)
	}
	b.AppendServiceLog(id, "web", []byte("GET /\n"), nil)
	r = s.ok("service_logs", map[string]any{"id": id, "name": "web", "cursor": r.str("next_cursor")})
	if r.str("stdout") != "GET /\n" || r.str("next_cursor") != "18.0" {
		t.Errorf("cursor: %s", r.text)
	}
	b.AppendServiceLog(id, "web", []byte(strings.Repeat("line of access log\n", 2000)), nil)
	r = s.ok("service_logs", map[string]any{"id": id, "name": "web", "cursor": "18.0"})
	if r.m["stdout_truncated"] != true || r.str("next_cursor") == "18.0" || !strings.Contains(r.str("hint"), "cursor=next_cursor") {
		t.Errorf("long: %s", r.text[:300])
	}
	var got strings.Builder
	got.WriteString(r.str("stdout"))
	for cur := r.str("next_cursor"); ; {
		r = s.ok("service_logs", map[string]any{"id": id, "name": "web", "cursor": cur, "stream": "stdout"})
		if r.str("stdout") == "" {
			break
		}
		got.WriteString(r.str("stdout"))
		cur = r.str("next_cursor")
	}
	if got.String() != strings.Repeat("line of access log\n", 2000) {
		t.Errorf("paging by cursor lost or repeated bytes: %d bytes", got.Len())
	}

	r = s.ok("service_stop", map[string]any{"id": id, "name": "web", "grace_seconds": 2})
	if sv := r.m["service"].(map[string]any); sv["state"] != "stopped" || sv["reason"] != "stopped" {
		t.Errorf("stop: %s", r.text)
	}
	s.fail("service_status", map[string]any{"id": id, "name": "nope"}, "not_found", "")

	// Workspace stop ends services; reset forgets them.
	s.ok("service_start", map[string]any{"id": id, "name": "db", "command": "sleep 1000"})
	s.ok("workspace_stop", map[string]any{"id": id})
	if st, _ := b.ServiceStatusOf(id, "db"); st.State != contract.ServiceStopped {
		t.Errorf("after workspace_stop: %+v", st)
	}
	s.ok("workspace_start", map[string]any{"id": id})
	s.ok("workspace_reset", map[string]any{"id": id})
	if r := s.ok("service_status", map[string]any{"id": id}); len(r.m["services"].([]any)) != 0 {
		t.Errorf("after reset: %s", r.text)
	}

	for _, c := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"name": "Web", "command": "x"}, "lower-case"},
		{map[string]any{"name": "web"}, "command"},
		{map[string]any{"name": "web", "command": "x", "readiness": map[string]any{"kind": "http", "url": "ftp://x"}}, "http://"},
		{map[string]any{"name": "web", "command": "x", "readiness": map[string]any{"kind": "tcp"}}, "port"},
		{map[string]any{"name": "web", "command": "x", "restart": "always"}, "on-failure"},
		{map[string]any{"name": "web", "command": "x", "max_restarts": 2}, "on-failure"},
		{map[string]any{"name": "web", "command": "x", "wait_seconds": 500}, "wait_seconds"},
	} {
		c.args["id"] = id
		s.fail("service_start", c.args, "", c.want)
	}
	s.fail("service_logs", map[string]any{"id": id, "name": "web", "cursor": "x"}, "invalid", "next_cursor")
}

// Without services in the backend, the tools are not listed.
func TestServiceToolsNeedBackend(t *testing.T) {
	s := connect(t, noServices{mcptest.New()}, mcp.Options{Profile: mcp.ProfileFull})
	res, err := s.cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range res.Tools {
		if strings.HasPrefix(tool.Name, "service_") {
			t.Errorf("%s listed for a backend without services", tool.Name)
		}
	}
}

type noServices struct{ contract.Backend }
