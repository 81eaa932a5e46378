package mcp_test

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// exerciseShellTools calls every shell tool on workspace id (for
// TestEveryTool).
func exerciseShellTools(t *testing.T, ok func(string, map[string]any) result, id string) {
	t.Helper()
	r := ok("shell_open", map[string]any{"id": id, "argv": []any{"python3"}})
	if r.num("shell") != 1 || r.str("mode") != "plain" || r.str("output") != "$" && r.str("output") != "$ " {
		t.Errorf("shell_open: %s", r.text)
	}
	r = ok("shell_write", map[string]any{"id": id, "shell": 1, "text": "6*7", "wait_for": `\$ $`})
	if !strings.Contains(r.str("output"), "ran: 6*7") || r.num("written") != 4 || r.m["matched"] != true {
		t.Errorf("shell_write: %s", r.text)
	}
	r = ok("shell_write", map[string]any{"id": id, "shell": 1, "keys": []any{"C-c"}, "raw": true})
	if r.str("output") != "\x03" || r.str("mode") != "raw" {
		t.Errorf("shell_write keys: %s", r.text)
	}
	if r := ok("shell_read", map[string]any{"id": id, "shell": 1, "raw": true, "cursor": 0}); !strings.HasPrefix(r.str("output"), "$ 6*7\r\nran: 6*7\r\n") {
		t.Errorf("shell_read: %s", r.text)
	}
	if r := ok("shell_signal", map[string]any{"id": id, "shell": 1, "signal": "INT"}); !strings.Contains(r.str("output"), "^C") {
		t.Errorf("shell_signal: %s", r.text)
	}
	if r := ok("shell_resize", map[string]any{"id": id, "shell": 1, "cols": 100, "rows": 30}); r.m["shell"].(map[string]any)["size"] != "100x30" {
		t.Errorf("shell_resize: %s", r.text)
	}
	if r := ok("shell_list", map[string]any{"id": id}); len(r.m["shells"].([]any)) != 1 {
		t.Errorf("shell_list: %s", r.text)
	}
	if r := ok("shell_close", map[string]any{"id": id, "shell": 1}); r.m["shell"].(map[string]any)["exited"] != true {
		t.Errorf("shell_close: %s", r.text)
	}
}

func TestShellToolErrors(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{Profile: mcp.ProfileFull})
	id := s.create(nil)
	s.ok("shell_open", map[string]any{"id": id})
	for _, c := range []struct {
		tool string
		args map[string]any
		hint string
	}{
		{"shell_open", map[string]any{"id": id, "argv": []any{"sh"}, "command": "true"}, ""},
		{"shell_write", map[string]any{"id": id, "shell": 0, "text": "x"}, "shell_list"},
		{"shell_write", map[string]any{"id": id, "shell": 1}, "shell_read"},
		{"shell_write", map[string]any{"id": id, "shell": 1, "keys": []any{"Hyper-q"}}, "C-c"},
		{"shell_write", map[string]any{"id": id, "shell": 1, "text": "x", "wait_for": "("}, "Escape"},
		{"shell_read", map[string]any{"id": id, "shell": 1, "cursor": 3}, ""},
		{"shell_signal", map[string]any{"id": id, "shell": 1, "signal": "USR1"}, ""},
		{"shell_resize", map[string]any{"id": id, "shell": 1, "cols": 0, "rows": 10}, ""},
		{"shell_read", map[string]any{"id": id, "shell": 7}, ""},
	} {
		r := s.call(c.tool, c.args)
		if !r.isErr || !strings.Contains(r.str("hint"), c.hint) {
			t.Errorf("%s %v: %s", c.tool, c.args, r.text)
		}
	}
}
