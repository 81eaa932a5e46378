package mcp_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// A background command through the tools, in the default profile:
// workspace_exec background:true answers at once with a seq; exec_status
// shows it running with output from an offset, workspace_status lists it,
// a wait returns when it ends, and the end carries the exit code; long
// output is cut to the budget while the offsets page through it.
func TestBackgroundTools(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)

	r := s.ok("workspace_exec", map[string]any{"id": id, "command": "make test", "background": true, "timeout_seconds": 7200})
	seq := int64(r.num("seq"))
	if r.str("state") != "running" || seq == 0 || r.num("timeout_seconds") != 7200 || !strings.Contains(r.str("hint"), "exec_status") {
		t.Fatalf("start: %s", r.text)
	}
	b.BackgroundOutput(id, seq, "line 1\n", "")
	r = s.ok("exec_status", map[string]any{"id": id, "seq": seq})
	if r.str("state") != "running" || r.str("stdout") != "line 1\n" || r.num("stdout_next_offset") != 7 || r.m["exit_code"] != nil ||
		!strings.Contains(r.str("hint"), "stdout_offset=7") {
		t.Fatalf("running: %s", r.text)
	}
	if r := s.ok("workspace_status", map[string]any{"id": id}); !strings.Contains(r.text, `"background":[{"seq":`) || !strings.Contains(r.text, `"make test"`) {
		t.Fatalf("status does not list the running command: %s", r.text)
	}
	// A wait returns when the command ends, before wait_seconds.
	big := strings.Repeat("x", 64<<10) + "THE END\n"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(50 * time.Millisecond)
		b.BackgroundOutput(id, seq, big, "done\n")
		b.BackgroundEnd(id, seq, 3, false)
	}()
	r = s.ok("exec_status", map[string]any{"id": id, "seq": seq, "stdout_offset": 7, "wait_seconds": 30})
	wg.Wait()
	if r.str("state") != "exited" || r.num("exit_code") != 3 || r.str("stderr") != "done\n" || r.num("stdout_offset") != 7 ||
		r.num("stdout_next_offset") != float64(7+len(big)) || r.m["stdout_truncated"] != true ||
		!strings.HasSuffix(r.str("stdout"), "THE END\n") || !strings.Contains(r.str("hint"), "/state/out/make test.stdout") {
		t.Fatalf("ended: %.600s", r.text)
	}
	// Paging on from the end gives nothing new.
	r = s.ok("exec_status", map[string]any{"id": id, "seq": seq, "stdout_offset": r.num("stdout_next_offset"), "stderr_offset": 5})
	if r.str("stdout") != "" || r.str("stderr") != "" {
		t.Fatalf("after the end: %s", r.text)
	}
	// The list shows it with its exit code; a kill of a second one ends it.
	r = s.ok("workspace_exec", map[string]any{"id": id, "command": "serve", "background": true})
	seq2 := int64(r.num("seq"))
	if r.num("timeout_seconds") != contract.DefaultBackgroundTimeout {
		t.Fatalf("default background timeout: %s", r.text)
	}
	r = s.ok("exec_status", map[string]any{"id": id})
	cmds, _ := r.m["commands"].([]any)
	if len(cmds) != 2 || cmds[0].(map[string]any)["exit_code"] != 3.0 || cmds[1].(map[string]any)["state"] != "running" {
		t.Fatalf("list: %s", r.text)
	}
	if r := s.ok("exec_status", map[string]any{"id": id, "seq": seq2, "kill": true}); r.str("state") != "killed" || r.str("reason") == "" {
		t.Fatalf("kill: %s", r.text)
	}
}

func TestBackgroundToolErrors(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)
	s.fail("workspace_exec", map[string]any{"id": id, "command": "x", "timeout_seconds": 7200}, "invalid", "3600")
	s.fail("workspace_exec", map[string]any{"id": id, "command": "x", "background": true, "timeout_seconds": 30000}, "", "21600")
	s.fail("exec_status", map[string]any{"id": id, "kill": true}, "invalid", "seq")
	s.fail("exec_status", map[string]any{"id": id, "seq": 99}, "not_found", "")
	for i := 0; i < contract.MaxBackground; i++ {
		s.ok("workspace_exec", map[string]any{"id": id, "command": "sleep", "background": true})
	}
	s.fail("workspace_exec", map[string]any{"id": id, "command": "sleep", "background": true}, "limit", "")
}
