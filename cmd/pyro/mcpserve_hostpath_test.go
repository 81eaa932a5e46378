package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// --allow-host-path is documented, checked, and bounds the host paths
// tools may name: outside it they are refused before anything else,
// with a hint naming the flag.
func TestMCPServeAllowHostPath(t *testing.T) {
	r := runPyro(t, "mcp", "serve", "--help")
	if r.code != 0 || !strings.Contains(r.stderr, "--allow-host-path") || !strings.Contains(r.stderr, "pyro-backup") {
		t.Fatalf("mcp serve --help: %+v", r)
	}
	r = runPyroIn(t, []string{"PYRO_STATE_DIR=" + t.TempDir()}, "", "mcp", "serve", "--allow-host-path", filepath.Join(t.TempDir(), "missing"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "--allow-host-path") {
		t.Fatalf("a missing --allow-host-path dir: %+v", r)
	}

	allowed := t.TempDir()
	cmd := exec.Command(os.Args[0], "mcp", "serve", "--allow-host-path", allowed)
	cmd.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1", "PYRO_STATE_DIR="+t.TempDir(), "PYRO_CACHE_DIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sdk.NewClient(&sdk.Implementation{Name: "pyro-test", Version: "1"}, nil).Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr: %s", err, stderr.String())
	}
	defer s.Close()
	call := func(tool string, args map[string]any) string {
		t.Helper()
		res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
		if err != nil || !res.IsError {
			t.Fatalf("%s %v: want a tool error: %v %+v", tool, args, err, res)
		}
		return res.Content[0].(*sdk.TextContent).Text
	}
	// Outside (the temp dir is no longer allowed once the flag is given).
	for _, p := range []string{"/etc/passwd", t.TempDir()} {
		if msg := call("workspace_sync_push", map[string]any{"id": "ws-none", "host_path": p}); !strings.Contains(msg, "--allow-host-path DIR") {
			t.Errorf("sync_push %s: %s", p, msg)
		}
	}
	if msg := call("workspace_export", map[string]any{"id": "ws-none", "host_path": filepath.Join(t.TempDir(), "out")}); !strings.Contains(msg, "--allow-host-path DIR") {
		t.Errorf("export outside: %s", msg)
	}
	// Inside, the call goes on to find no such workspace.
	if msg := call("workspace_export", map[string]any{"id": "ws-none", "host_path": filepath.Join(allowed, "out")}); !strings.Contains(msg, "not_found") {
		t.Errorf("export inside: %s", msg)
	}
}
