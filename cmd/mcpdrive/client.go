package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// serverConfig says how to start `pyro mcp serve`.
type serverConfig struct {
	Pyro      string   // the pyro binary
	Profile   string   // --profile; "" leaves pyro's default
	StateDir  string   // --state-dir: a fresh one per run keeps runs apart
	AllowHost []string // --allow-host-path, each
	LogFile   string   // --log-file: pyro's own log, shown when a scenario fails
	Dir       string   // the server's working directory (never a git checkout: an unseeded create would copy it)
	Env       []string // extra environment variables for the server
}

// args returns the command line of `pyro mcp serve` for c.
func (c serverConfig) args() []string {
	a := []string{"mcp", "serve"}
	if c.Profile != "" {
		a = append(a, "--profile", c.Profile)
	}
	if c.StateDir != "" {
		a = append(a, "--state-dir", c.StateDir)
	}
	for _, p := range c.AllowHost {
		a = append(a, "--allow-host-path", p)
	}
	if c.LogFile != "" {
		a = append(a, "--log-file", c.LogFile)
	}
	return a
}

// session is one MCP client session with a pyro server. Its calls may run
// concurrently.
type session struct {
	cs *sdk.ClientSession
	// trace, when set, is told of every call as it ends.
	trace func(tool string, d time.Duration, isError bool, err error)

	// mu guards outputs.
	mu sync.Mutex
	// outputs holds the text of every result, for checks that something
	// (a canary secret) never reached the client.
	outputs []string
}

// startServer launches `pyro mcp serve` as a chat host does, over stdio,
// and completes the MCP handshake.
func startServer(ctx context.Context, c serverConfig) (*session, error) {
	cmd := exec.Command(c.Pyro, c.args()...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stderr = os.Stderr // pyro logs to --log-file; anything else (a crash) shows
	// Closing stdin ends the server, which stops its VMs first: give it
	// time for that before the SDK sends SIGTERM.
	t := &sdk.CommandTransport{Command: cmd, TerminateDuration: time.Minute}
	client := sdk.NewClient(&sdk.Implementation{Name: "mcpdrive", Version: "1"}, nil)
	cs, err := client.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("starting %s %s: %w", c.Pyro, strings.Join(c.args(), " "), err)
	}
	return &session{cs: cs}, nil
}

// newSession wraps a connected client session (tests connect one to an
// in-memory server).
func newSession(cs *sdk.ClientSession) *session { return &session{cs: cs} }

// Close ends the session; the server exits when its stdin closes.
func (s *session) Close() error { return s.cs.Close() }

// serverInfo returns the server's name, version and the protocol version
// the handshake settled on.
func (s *session) serverInfo() (name, version, protocol string) {
	r := s.cs.InitializeResult()
	if r == nil {
		return "", "", ""
	}
	if r.ServerInfo != nil {
		name, version = r.ServerInfo.Name, r.ServerInfo.Version
	}
	return name, version, r.ProtocolVersion
}

// requireTools fails unless the server offers every tool in names (a
// profile that lacks one would otherwise fail later, less clearly).
func (s *session) requireTools(ctx context.Context, names ...string) error {
	have := map[string]bool{}
	for t, err := range s.cs.Tools(ctx, nil) {
		if err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		have[t.Name] = true
	}
	var missing []string
	for _, n := range names {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the server does not offer %s (wrong --profile?)", strings.Join(missing, ", "))
	}
	return nil
}

// sawText reports whether any result so far contained sub.
func (s *session) sawText(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.outputs, func(o string) bool { return strings.Contains(o, sub) })
}

// ToolError is a result with isError set. pyro's expected failures carry
// an error code, a message and a hint; a few (a patch that does not
// apply) carry the tool's own result instead, kept in Raw.
type ToolError struct {
	Tool    string
	Code    string `json:"error"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
	Raw     json.RawMessage
}

func (e *ToolError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s failed: %.300s", e.Tool, e.Raw)
	}
	return fmt.Sprintf("%s failed (%s): %s", e.Tool, e.Code, e.Message)
}

// errorCode returns err's tool error code, or "" when err is no tool error.
func errorCode(err error) string {
	var te *ToolError
	if errors.As(err, &te) {
		return te.Code
	}
	return ""
}

// call invokes a tool and decodes its structured result into Out.
func call[Out any](ctx context.Context, s *session, tool string, args any) (Out, error) {
	var out Out
	raw, err := s.callRaw(ctx, tool, args)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("%s: decoding its structuredContent: %w", tool, err)
	}
	return out, nil
}

// callRaw invokes a tool and returns its structured result as JSON, or a
// *ToolError when the result has isError set.
func (s *session) callRaw(ctx context.Context, tool string, args any) (json.RawMessage, error) {
	start := time.Now()
	res, err := s.cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		err = fmt.Errorf("%s: %w", tool, err)
		if s.trace != nil {
			s.trace(tool, time.Since(start), false, err)
		}
		return nil, err
	}
	raw, text, derr := structured(res)
	s.mu.Lock()
	s.outputs = append(s.outputs, text)
	s.mu.Unlock()
	if s.trace != nil {
		s.trace(tool, time.Since(start), res.IsError, derr)
	}
	if derr != nil {
		return nil, fmt.Errorf("%s: %w", tool, derr)
	}
	if res.IsError {
		te := &ToolError{Tool: tool, Raw: raw}
		_ = json.Unmarshal(raw, te) // a result without the error fields keeps Code ""
		return nil, te
	}
	return raw, nil
}

// structured checks that a result is what a host can rely on, reading
// either half: one text block whose JSON is the structuredContent, value
// for value. It returns the structured content as JSON, and all the text
// the result carried.
func structured(res *sdk.CallToolResult) (json.RawMessage, string, error) {
	var texts []string
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			texts = append(texts, t.Text)
		}
	}
	all := strings.Join(texts, "\n")
	if res.StructuredContent == nil {
		return nil, all, fmt.Errorf("the result has no structuredContent (content: %.200q)", all)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil, all, fmt.Errorf("re-encoding structuredContent: %w", err)
	}
	if len(res.Content) != 1 || len(texts) != 1 {
		return raw, all, fmt.Errorf("content has %d blocks (%d of them text), want one text block mirroring structuredContent", len(res.Content), len(texts))
	}
	same, err := sameJSON([]byte(texts[0]), raw)
	if err != nil {
		return raw, all, fmt.Errorf("the text content is not JSON: %w (%.200q)", err, texts[0])
	}
	if !same {
		return raw, all, fmt.Errorf("the text content differs from structuredContent:\n text:       %.300s\n structured: %.300s", texts[0], raw)
	}
	return raw, all, nil
}

// sameJSON reports whether a and b encode the same JSON value (object key
// order and spacing aside; numbers compared exactly as written).
func sameJSON(a, b []byte) (bool, error) {
	va, err := decodeAny(a)
	if err != nil {
		return false, err
	}
	vb, err := decodeAny(b)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(normalizeNumbers(va), normalizeNumbers(vb)), nil
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// normalizeNumbers rewrites json.Numbers to a canonical text, so that 1e3
// and 1000 (which a re-encoding may produce) compare equal.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return fmt.Sprint(i)
		}
		if f, err := x.Float64(); err == nil {
			return fmt.Sprint(f)
		}
		return x.String()
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
	}
	return v
}
