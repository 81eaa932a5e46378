package hostcfg

import (
	"bytes"
	"testing"
)

// Whatever a config file holds, an edit either refuses it or yields a file
// that parses, holds the current entry, and a second edit leaves alone.

func FuzzCodexEdit(f *testing.F) {
	for _, c := range writerCases {
		if c.host == Codex {
			f.Add([]byte(c.before))
		}
	}
	f.Add([]byte("[mcp_servers.pyro]\nargs = \"\"\"\nmcp\"\"\"\n[[a.b]]\nc = {d = [1, {e = 'f'}]}\n"))
	f.Add([]byte("a = 1\r\n[mcp_servers.pyro] # x\r\ncommand = 'p'"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := codexEdit(b, want)
		if err != nil {
			return
		}
		if found, diff, err := codexDiff(out, want); err != nil || !found || diff != "" {
			t.Fatalf("after the edit: %v %v %q\n%s", found, err, diff, out)
		}
		again, err := codexEdit(out, want)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second edit changed the file: %v", err)
		}
	})
}

func FuzzJSONEdit(f *testing.F) {
	for _, c := range writerCases {
		if c.host != Codex {
			f.Add([]byte(c.before), c.host == OpenCode)
		}
	}
	f.Add([]byte(`{"mcpServers": {"pyro": 1}, /* c */ }`), false)
	f.Add([]byte("{\"mcp\":{\n\"pyro\":{\"type\":\"local\",\"command\":[],\n}}}"), true)
	f.Fuzz(func(t *testing.T, b []byte, opencode bool) {
		l := location{host: ClaudeCode, keys: []string{"mcpServers"}}
		if opencode {
			l = location{host: OpenCode, keys: []string{"mcp"}}
		}
		out, err := jsonEdit(b, l, want)
		if err != nil {
			return
		}
		if found, diff, err := jsonDiff(out, l, want); err != nil || !found || diff != "" {
			t.Fatalf("after the edit: %v %v %q\n%s", found, err, diff, out)
		}
		again, err := jsonEdit(out, l, want)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("a second edit changed the file: %v", err)
		}
	})
}
