package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func textResult(text string, structured any, isError bool) *sdk.CallToolResult {
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}, StructuredContent: structured, IsError: isError}
}

func TestStructured(t *testing.T) {
	for _, c := range []struct {
		name    string
		res     *sdk.CallToolResult
		wantErr string // "" for none
	}{
		{"mirror", textResult(`{"a":1,"b":[true,"x"]}`, json.RawMessage(`{"b":[true,"x"],"a":1}`), false), ""},
		{"spacing and number spelling", textResult("{ \"n\": 1000 }\n", map[string]any{"n": 1e3}, false), ""},
		{"decoded map", textResult(`{"exit_code":0,"stdout":"ok\n"}`, map[string]any{"exit_code": float64(0), "stdout": "ok\n"}, false), ""},
		{"differs", textResult(`{"a":1}`, map[string]any{"a": 2.0}, false), "differs"},
		{"extra field", textResult(`{"a":1,"b":2}`, map[string]any{"a": 1.0}, false), "differs"},
		{"text not JSON", textResult(`exit 0`, map[string]any{"a": 1.0}, false), "not JSON"},
		{"trailing text", textResult(`{"a":1} and more`, map[string]any{"a": 1.0}, false), "not JSON"},
		{"no structured content", textResult(`{"a":1}`, nil, false), "no structuredContent"},
		{"two blocks", &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: `{}`}, &sdk.TextContent{Text: `{}`}},
			StructuredContent: map[string]any{}}, "2 blocks"},
		{"an image block", &sdk.CallToolResult{Content: []sdk.Content{&sdk.ImageContent{Data: []byte{1}, MIMEType: "image/png"}},
			StructuredContent: map[string]any{}}, "0 of them text"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, _, err := structured(c.res)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, c.wantErr)
			case c.wantErr == "":
				if same, _ := sameJSON(raw, []byte(c.res.Content[0].(*sdk.TextContent).Text)); !same {
					t.Errorf("returned %s, not the structured content", raw)
				}
			}
		})
	}
}

// fakeServer is an in-memory MCP server (the go-sdk's own, nothing of
// pyro) whose tools answer with the result each test names.
func fakeServer(t *testing.T, results map[string]*sdk.CallToolResult) *session {
	t.Helper()
	srv := sdk.NewServer(&sdk.Implementation{Name: "fake", Version: "0"}, nil)
	for name, res := range results {
		srv.AddTool(&sdk.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) { return res, nil })
	}
	st, ct := sdk.NewInMemoryTransports()
	ctx := t.Context()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(cs)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCall(t *testing.T) {
	exec := `{"id":"w1","exit_code":1,"timed_out":false,"duration_ms":12,"stdout":"","stderr":"boom\n","new_field":{"x":1}}`
	notFound := `{"error":"not_found","message":"no file /workspace/x","hint":"Check the path with file_list."}`
	patchFailed := `{"applied":false,"files":[{"path":"a.py","op":"modify","ok":false,"error":"hunk 1 does not match"}],"files_total":1}`
	s := fakeServer(t, map[string]*sdk.CallToolResult{
		"workspace_exec": textResult(exec, json.RawMessage(exec), false),
		"file_read":      textResult(notFound, json.RawMessage(notFound), true),
		"patch_apply":    textResult(patchFailed, json.RawMessage(patchFailed), true),
		"workspace_diff": textResult(`{"stats":{"files":1}}`, json.RawMessage(`{"stats":{"files":2}}`), false),
	})
	ctx := t.Context()
	if err := s.requireTools(ctx, "workspace_exec", "file_read"); err != nil {
		t.Errorf("requireTools: %v", err)
	}
	if err := s.requireTools(ctx, "workspace_exec", "shell_open"); err == nil || !strings.Contains(err.Error(), "shell_open") {
		t.Errorf("requireTools with a missing tool: %v", err)
	}

	r, err := call[execResult](ctx, s, "workspace_exec", execArgs{ID: "w1", Command: "false"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "w1" || r.ExitCode != 1 || r.DurationMs != 12 || r.Stderr != "boom\n" {
		t.Errorf("decoded %+v", r)
	}

	_, err = call[fileReadResult](ctx, s, "file_read", pathArgs{ID: "w1", Path: "x"})
	if errorCode(err) != "not_found" || !strings.Contains(err.Error(), "no file /workspace/x") {
		t.Errorf("file_read error %v (code %q), want not_found", err, errorCode(err))
	}

	// A failure carrying the tool's own result: no code, the result kept.
	_, err = call[patchResult](ctx, s, "patch_apply", patchArgs{ID: "w1", Patch: "x"})
	te, ok := err.(*ToolError)
	if !ok || te.Code != "" {
		t.Fatalf("patch_apply error %#v", err)
	}
	var p patchResult
	if err := json.Unmarshal(te.Raw, &p); err != nil || p.Applied || len(p.Files) != 1 || p.Files[0].Error == "" {
		t.Errorf("the failed patch's result: %+v (%v)", p, err)
	}

	if _, err := call[diffResult](ctx, s, "workspace_diff", pathArgs{ID: "w1"}); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("a result whose text differs from its structured content: %v", err)
	}
	if _, err := call[diffResult](ctx, s, "no_such_tool", nil); err == nil {
		t.Error("calling an unknown tool succeeded")
	}

	if !s.sawText("boom") || s.sawText("never said") {
		t.Error("sawText does not track the results' text")
	}
}

func TestErrorCode(t *testing.T) {
	if errorCode(nil) != "" || errorCode(context.Canceled) != "" {
		t.Error("a non-tool error has a code")
	}
	if got := errorCode(&ToolError{Code: "limit"}); got != "limit" {
		t.Errorf("errorCode %q", got)
	}
}

func TestServerArgs(t *testing.T) {
	got := strings.Join(serverConfig{Profile: "workspace-full", StateDir: "/s", AllowHost: []string{"/a", "/b"}, LogFile: "/l"}.args(), " ")
	want := "mcp serve --profile workspace-full --state-dir /s --allow-host-path /a --allow-host-path /b --log-file /l"
	if got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if got := strings.Join(serverConfig{}.args(), " "); got != "mcp serve" {
		t.Errorf("default args %q", got)
	}
}
