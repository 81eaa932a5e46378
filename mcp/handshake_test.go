package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// The server answers both handshakes hosts use today: the 2025-11-25
// initialize, and the 2026-07-28 server/discover with the protocol version
// in each request's _meta. Each is driven twice: by the SDK's client
// pinned to the version, and as raw JSON-RPC lines, so that neither the
// client's fallback from one to the other nor its framing can hide a
// server that answers only one.

func TestHandshakesSDKClient(t *testing.T) {
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			s := connectWith(t, mcptest.New(), mcp.Options{Version: "9.9.9"}, nil, &sdk.ClientSessionOptions{ProtocolVersion: version})
			init := s.cs.InitializeResult()
			if init.ProtocolVersion != version {
				t.Fatalf("negotiated %s, want %s", init.ProtocolVersion, version)
			}
			if init.ServerInfo == nil || init.ServerInfo.Name != "pyro" || init.ServerInfo.Version != "9.9.9" || init.Instructions == "" {
				t.Errorf("server info %+v, instructions %d bytes", init.ServerInfo, len(init.Instructions))
			}
			res, err := s.cs.ListTools(context.Background(), nil)
			if err != nil || len(res.Tools) == 0 {
				t.Fatalf("tools/list: %v", err)
			}
			id := s.create(map[string]any{"name": "hs"})
			if r := s.ok("workspace_list", nil); r.num("total") != 1 || !slices.ContainsFunc(r.m["workspaces"].([]any), func(w any) bool { return w.(map[string]any)["id"] == id }) {
				t.Errorf("workspace_list: %s", r.text)
			}
		})
	}
}

// rawClient speaks JSON-RPC lines to a server on pipes.
type rawClient struct {
	t    *testing.T
	w    io.Writer
	r    *bufio.Scanner
	next int
}

func rawConnect(t *testing.T) *rawClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cr, sw := io.Pipe() // server to client
	sr, cw := io.Pipe() // client to server
	done := make(chan error, 1)
	go func() {
		done <- mcp.Serve(ctx, mcptest.New(), mcp.Options{Version: "9.9.9"}, &sdk.IOTransport{Reader: sr, Writer: sw})
	}()
	t.Cleanup(func() {
		cw.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	sc := bufio.NewScanner(cr)
	sc.Buffer(nil, 1<<20)
	return &rawClient{t: t, w: cw, r: sc}
}

// send writes one message; a request (id != 0) waits for its response,
// skipping notifications, and returns its result.
func (c *rawClient) send(method string, params any, request bool) map[string]any {
	c.t.Helper()
	msg := map[string]any{"jsonrpc": "2.0", "method": method, "params": params}
	if request {
		c.next++
		msg["id"] = c.next
	}
	line, _ := json.Marshal(msg)
	if _, err := fmt.Fprintf(c.w, "%s\n", line); err != nil {
		c.t.Fatal(err)
	}
	if !request {
		return nil
	}
	for c.r.Scan() {
		var resp struct {
			ID     *int            `json:"id"`
			Result map[string]any  `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(c.r.Bytes(), &resp); err != nil {
			c.t.Fatalf("%s: bad line %q: %v", method, c.r.Text(), err)
		}
		if resp.ID == nil {
			continue // a notification
		}
		if *resp.ID != c.next {
			c.t.Fatalf("%s: answer to id %d, want %d", method, *resp.ID, c.next)
		}
		if resp.Error != nil {
			c.t.Fatalf("%s: error %s", method, resp.Error)
		}
		return resp.Result
	}
	c.t.Fatalf("%s: no answer: %v", method, c.r.Err())
	return nil
}

// checkTools checks a tools/list result and a tools/call result.
func checkTools(t *testing.T, list, call map[string]any) {
	t.Helper()
	tools, _ := list["tools"].([]any)
	if len(tools) == 0 {
		t.Fatalf("tools/list: %v", list)
	}
	for _, tool := range tools {
		if tool.(map[string]any)["outputSchema"] == nil {
			t.Errorf("%v has no outputSchema", tool.(map[string]any)["name"])
		}
	}
	sc, _ := call["structuredContent"].(map[string]any)
	content, _ := call["content"].([]any)
	if call["isError"] == true || sc == nil || sc["workspace"] == nil || len(content) != 1 {
		t.Fatalf("tools/call: %v", call)
	}
	var text map[string]any
	json.Unmarshal([]byte(content[0].(map[string]any)["text"].(string)), &text)
	a, _ := json.Marshal(text)
	b, _ := json.Marshal(sc)
	if string(a) != string(b) {
		t.Errorf("content and structuredContent differ:\n%s\n%s", a, b)
	}
}

func TestHandshakeInitializeRaw(t *testing.T) {
	c := rawConnect(t)
	init := c.send("initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw", "version": "1"}}, true)
	if init["protocolVersion"] != "2025-11-25" || init["serverInfo"].(map[string]any)["name"] != "pyro" {
		t.Fatalf("initialize: %v", init)
	}
	c.send("notifications/initialized", map[string]any{}, false)
	list := c.send("tools/list", map[string]any{}, true)
	call := c.send("tools/call", map[string]any{"name": "workspace_create", "arguments": map[string]any{}}, true)
	checkTools(t, list, call)
}

func TestHandshakeDiscoverRaw(t *testing.T) {
	c := rawConnect(t)
	meta := map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw", "version": "1"},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}
	disc := c.send("server/discover", map[string]any{"_meta": meta}, true)
	versions, _ := disc["supportedVersions"].([]any)
	if !slices.Contains(versions, any("2026-07-28")) || !slices.Contains(versions, any("2025-11-25")) || disc["capabilities"] == nil {
		t.Fatalf("server/discover: %v", disc)
	}
	if info, _ := disc["_meta"].(map[string]any)["io.modelcontextprotocol/serverInfo"].(map[string]any); info["name"] != "pyro" || info["version"] != "9.9.9" {
		t.Errorf("server/discover server info: %v", disc["_meta"])
	}
	list := c.send("tools/list", map[string]any{"_meta": meta}, true)
	call := c.send("tools/call", map[string]any{"_meta": meta, "name": "workspace_create", "arguments": map[string]any{}}, true)
	checkTools(t, list, call)
}
