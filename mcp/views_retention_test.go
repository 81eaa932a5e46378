package mcp

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// workspace_status says when an expired workspace's disk goes, and that
// it went.
func TestWorkspaceViewRetention(t *testing.T) {
	at := time.Date(2026, 1, 9, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		w         contract.Workspace
		key, note string
		noKey     string
	}{
		{contract.Workspace{ID: "a", State: contract.StateExpired, DiskDeleteAt: at}, `"disk_delete_at":"2026-01-09T00:00:00Z"`, "workspace_start", "disk_deleted_at"},
		{contract.Workspace{ID: "b", State: contract.StateExpired, DiskDeletedAt: at}, `"disk_deleted_at":"2026-01-09T00:00:00Z"`, "files are gone", "disk_delete_at"},
		{contract.Workspace{ID: "c", State: contract.StateRunning}, `"id":"c"`, "", "disk_delete"},
	} {
		b, err := json.Marshal(viewWorkspace(c.w))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if !strings.Contains(s, c.key) || strings.Contains(s, c.noKey+`"`) {
			t.Errorf("%s: %s", c.w.ID, s)
		}
		if v := viewWorkspace(c.w); !strings.Contains(v.Note, c.note) || (c.note == "") != (v.Note == "") {
			t.Errorf("%s: note %q", c.w.ID, v.Note)
		}
	}
}
