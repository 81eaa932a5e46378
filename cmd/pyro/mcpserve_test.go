package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp"
)

// pyro mcp serve answers a real MCP client over stdio at once, without
// booting anything: initialize, tools/list and a tool that needs no VM.
func TestMCPServeStdio(t *testing.T) {
	state := t.TempDir()
	cmd := exec.Command(os.Args[0], "mcp", "serve")
	cmd.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1", "PYRO_STATE_DIR="+state, "PYRO_CACHE_DIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	client := sdk.NewClient(&sdk.Implementation{Name: "pyro-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr: %s", err, stderr.String())
	}
	t.Logf("initialize answered after %v", time.Since(start))
	tools, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tools.Tools); n < 12 || n > 22 {
		t.Errorf("the default profile has %d tools; want 12 to 22", n)
	}
	schemas := &outputSchemas{s: s}
	res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "workspace_list", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("workspace_list: %v %+v", err, res)
	}
	schemas.check(t, "workspace_list", res)
	res, err = s.CallTool(ctx, &sdk.CallToolParams{Name: "workspace_create", Arguments: map[string]any{"env": "minimal"}})
	if err != nil || !res.IsError {
		t.Fatalf("workspace_create of an unbuilt environment should be a tool error: %v %+v", err, res)
	}
	schemas.check(t, "workspace_create", res)
	if tc, ok := res.Content[0].(*sdk.TextContent); !ok || !strings.Contains(tc.Text, "pyro env build minimal") {
		t.Errorf("the error should name the build command: %+v", res.Content)
	}
	if err := s.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if ents, _ := os.ReadDir(state + "/workspaces"); len(ents) != 0 {
		t.Errorf("a failed create left %d entries in the state dir", len(ents))
	}
}

// Two chat sessions start two servers over one state directory: both
// come up and answer (each workspace then belongs to one of them; the
// workspace package's tests cover that).
func TestMCPServeTwoSessions(t *testing.T) {
	state, cache := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "mcp", "serve")
		cmd.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1", "PYRO_STATE_DIR="+state, "PYRO_CACHE_DIR="+cache)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		client := sdk.NewClient(&sdk.Implementation{Name: "pyro-test", Version: "1"}, nil)
		s, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatalf("session %d: connect: %v\nstderr: %s", i+1, err, stderr.String())
		}
		defer s.Close()
		res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "workspace_list", Arguments: map[string]any{}})
		if err != nil || res.IsError {
			t.Fatalf("session %d: workspace_list: %v %+v\nstderr: %s", i+1, err, res, stderr.String())
		}
	}
}

func TestMCPCommands(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"mcp", "tools"}, 0, "workspace_exec"},
		{[]string{"mcp", "tools", "--profile", "workspace-full"}, 0, "vm_run"},
		{[]string{"mcp", "tools", "--profile", "nope"}, exitUsage, "workspace-core"},
		{[]string{"mcp", "serve", "--profile", "nope"}, exitUsage, "workspace-core"},
		{[]string{"mcp", "serve", "--env", "nope"}, exitUsage, "nope"},
		{[]string{"mcp", "tools", "--mode", "nope"}, exitUsage, "choose one of repro-fix, inspect, cold-start, review-eval"},
		{[]string{"mcp", "serve", "--mode", "nope"}, exitUsage, "choose one of repro-fix, inspect, cold-start, review-eval"},
		{[]string{"mcp", "serve", "--mode", "inspect", "--profile", "workspace-full"}, exitUsage, "--mode and --profile exclude each other"},
		{[]string{"mcp", "tools", "--mode", "inspect", "--profile", "workspace-core"}, exitUsage, "--mode and --profile exclude each other"},
		{[]string{"mcp", "--help"}, exitOK, "review-eval "},
		{[]string{"mcp", "serve", "--resolver", "dns.example.org:53"}, exitUsage, "--resolver: resolver \"dns.example.org:53\" is not IP:PORT"},
		{[]string{"mcp", "serve", "--resolver", "127.0.0.1:0"}, exitUsage, "port 0"},
		{[]string{"mcp", "config", "codex"}, 0, "[mcp_servers.pyro]"},
		{[]string{"mcp", "config", "claude-code"}, 0, "claude mcp add --transport stdio pyro --"},
		{[]string{"mcp", "config", "opencode"}, 0, `"type": "local"`},
		{[]string{"mcp", "config", "vim"}, exitUsage, "claude-code, codex or opencode"},
		{[]string{"mcp", "frob"}, exitUsage, "unknown subcommand"},
	} {
		r := runPyro(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("pyro %q: exit %d, out %q err %q; want %d and %q", c.args, r.code, r.stdout, r.stderr, c.code, c.want)
		}
	}
}

// The README documents every tool in one table: the one the server
// generates, so the two cannot drift apart.
func TestREADMEToolTable(t *testing.T) {
	if os.Getenv("PYRO_VMTEST_L1") == "1" {
		t.Skip("inside the harness VM, where the source tree is absent; this test ran in the unit tier")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), mcp.ToolTable()) {
		t.Fatalf("README.md's tool table differs from mcp.ToolTable(); paste in the output of pyro mcp tools")
	}
}

// pyro mcp tools --mode prints exactly the mode's tools, one a line.
func TestMCPToolsMode(t *testing.T) {
	for _, m := range mcp.Modes() {
		r := runPyro(t, "mcp", "tools", "--mode", m.Name)
		if r.code != exitOK || r.stdout != strings.Join(m.Tools, "\n")+"\n" {
			t.Errorf("mcp tools --mode %s: exit %d, out %q err %q; want %v", m.Name, r.code, r.stdout, r.stderr, m.Tools)
		}
	}
	r := runPyro(t, "mcp", "tools", "--mode", mcp.ModeInspect)
	for _, n := range []string{"file_write", "patch_apply", "workspace_export", "workspace_sync_push", "network_grant"} {
		if strings.Contains(r.stdout, n+"\n") {
			t.Errorf("inspect lists %s", n)
		}
	}
}

// pyro mcp serve --mode serves the mode over stdio: its tools and its
// instructions.
func TestMCPServeMode(t *testing.T) {
	cmd := exec.Command(os.Args[0], "mcp", "serve", "--mode", mcp.ModeInspect)
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
	if in := s.InitializeResult().Instructions; !strings.Contains(in, "cannot write to the host") {
		t.Errorf("instructions: %s", in)
	}
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tool := range res.Tools {
		got = append(got, tool.Name)
	}
	want, _ := mcp.ModeToolNames(mcp.ModeInspect)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tools %v, want %v", got, want)
	}
}
