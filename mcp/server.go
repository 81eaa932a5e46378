package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Profile names.
const (
	ProfileCore    = "workspace-core" // the everyday loop; the default
	ProfileFull    = "workspace-full" // every tool
	DefaultProfile = ProfileCore
)

// Result budget bounds.
const (
	DefaultMaxResultBytes = 10 << 10 // fits Codex's ~10 KiB cap; Claude Code and OpenCode allow more
	MinMaxResultBytes     = 2 << 10  // below this the fixed fields of some results would not fit
)

// Options configures NewServer.
type Options struct {
	// Profile selects the tool set: ProfileCore (default when "") or ProfileFull.
	Profile string
	// Mode, instead of Profile, selects a workflow's tool set, descriptions
	// and instructions (see modes.go); setting both is an error.
	Mode string
	// MaxResultBytes caps each tool result's JSON (the structured content; the
	// text block mirrors it). 0 means DefaultMaxResultBytes; smaller values
	// are raised to MinMaxResultBytes.
	MaxResultBytes int
	// Logger receives one record per tool call and the SDK's own logs. nil
	// discards. It must not write to stdout, which carries the protocol.
	Logger *slog.Logger
	// Version is reported to clients in initialize; "" means "dev".
	Version string
}

// ProfileInfo describes a tool profile, for CLI help and the README.
type ProfileInfo struct {
	Name        string
	Description string
	Tools       []string // in registration order
}

// Profiles lists the profiles, default first.
func Profiles() []ProfileInfo {
	var core, full []string
	for _, t := range toolSpecs() {
		if t.core {
			core = append(core, t.name)
		}
		full = append(full, t.name)
	}
	return []ProfileInfo{
		{Name: ProfileCore, Description: "the everyday loop: workspaces, exec (also in the background), files, diff/export, snapshots and reset, network grants and published ports, service_start", Tools: core},
		{Name: ProfileFull, Description: "everything in workspace-core plus stop, update, logs, snapshot_list, snapshot_delete, workspace_fork, network_revoke, network_status, port_unpublish, secrets (secret_*), the other service tools, interactive shells (shell_*), one-shot vm_run and env_list", Tools: full},
	}
}

// ToolNames returns the tools a profile exposes; "" means DefaultProfile.
func ToolNames(profile string) ([]string, error) {
	if profile == "" {
		profile = DefaultProfile
	}
	var names []string
	for _, p := range Profiles() {
		names = append(names, p.Name)
		if p.Name == profile {
			return slices.Clone(p.Tools), nil
		}
	}
	return nil, fmt.Errorf("unknown MCP profile %q: choose one of %s", profile, strings.Join(names, ", "))
}

// instructions are sent to clients in initialize; hosts that support them
// show them to the model once per session.
const instructions = `pyro gives you disposable Linux microVM workspaces. Loop: workspace_create (optionally seeded from a host dir, archive or git checkout), workspace_exec and file_* to work (a command that may run past a minute: workspace_exec background:true, then exec_status), workspace_diff to review, workspace_export to copy results to the host, workspace_reset to retry, workspace_delete when done. Guest paths are relative to /workspace unless absolute. Long output is cut to head+tail; the full text stays in host files whose paths are returned. A workspace reaches no network until network_grant (or workspace_create's network) allows a destination; a failing command's hint names the grant it lacked; port_publish opens a guest port on the host's 127.0.0.1; service_start keeps a dev server or database running between calls.`

// NewServer builds an MCP server exposing b through the tools of
// opts.Profile. It makes no Backend call, so initialize answers at once.
func NewServer(b contract.Backend, opts Options) (*sdk.Server, error) {
	if b == nil {
		return nil, fmt.Errorf("mcp: nil Backend")
	}
	names, err := serverToolNames(opts)
	if err != nil {
		return nil, err
	}
	if opts.MaxResultBytes == 0 {
		opts.MaxResultBytes = DefaultMaxResultBytes
	}
	opts.MaxResultBytes = max(opts.MaxResultBytes, MinMaxResultBytes)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	h := &handler{b: b, opts: opts, log: opts.Logger, tools: make(map[string]bool)}
	for _, n := range names {
		h.tools[n] = true
	}
	srv := sdk.NewServer(&sdk.Implementation{Name: "pyro", Title: "pyro microVM workspaces", Version: opts.Version},
		&sdk.ServerOptions{
			Instructions: serverInstructions(opts),
			Logger:       opts.Logger,
			Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}},
		})
	for _, t := range toolSpecs() {
		if h.tools[t.name] {
			t.add(srv, h)
		}
	}
	return srv, nil
}

// Serve runs the server on t until the client disconnects or ctx ends.
func Serve(ctx context.Context, b contract.Backend, opts Options, t sdk.Transport) error {
	srv, err := NewServer(b, opts)
	if err != nil {
		return err
	}
	return srv.Run(ctx, t)
}

// ServeStdio serves MCP on stdin/stdout, the way chat hosts launch
// `pyro mcp serve`. Nothing else may write to stdout while it runs.
func ServeStdio(ctx context.Context, b contract.Backend, opts Options) error {
	return Serve(ctx, b, opts, &sdk.StdioTransport{})
}

// toolSpec is one tool in the registry. Every tool is in ProfileFull; core
// marks those also in ProfileCore. New tool groups (shells, services, network
// grants) add a tools_GROUP.go file with their specs and append them in
// toolSpecs; a group whose backend methods are optional checks for its
// interface in add and registers nothing when b lacks it.
type toolSpec struct {
	name    string
	group   string // README grouping: workspace, exec, files, host, snapshot, network, oneshot, env
	core    bool
	summary string // one line for the README table
	add     func(*sdk.Server, *handler)
	// shapes are the schemas of the tool's successful results (one per
	// shape of its Out type); its declared outputSchema merges them with
	// errorView's (schema.go).
	shapes func() ([]*jsonschema.Schema, error)
}

// toolSpecs lists every tool in display order.
func toolSpecs() []toolSpec {
	var all []toolSpec
	all = append(all, workspaceTools()...)
	all = append(all, execTools()...)
	all = append(all, bgTools()...)
	all = append(all, fileTools()...)
	all = append(all, hostTools()...)
	all = append(all, snapshotTools()...)
	all = append(all, forkTools()...)
	all = append(all, networkTools()...)
	all = append(all, secretTools()...)
	all = append(all, serviceTools()...)
	all = append(all, shellTools()...)
	all = append(all, oneShotTools()...)
	return all
}

// toolDef is what a tools_*.go file says about a tool.
type toolDef struct {
	name        string
	group       string
	core        bool
	summary     string // README; may be longer than description
	description string // what the model reads every turn: short, defaults stated
	readOnly    bool
	destructive bool // may delete or overwrite data the agent cannot get back
	idempotent  bool
	tune        func(*jsonschema.Schema) // adjust the inferred input schema (bounds, enums)
}

// failed marks, for call, a tool output that is a failure but carries
// structured detail (errFailed): the result has IsError set.
type failed struct{ v any }

// errFailed, returned by a tool body with its result, makes that result a
// failure with structured detail (a patch that does not apply): it is
// returned as it is, of the tool's own type, with IsError set.
var errFailed = errors.New("the call failed; its result says how")

// defTool binds a typed handler to a toolDef: In is its arguments, Out its
// result, whose schema the tool declares as its outputSchema.
func defTool[In, Out any](d toolDef, fn func(ctx context.Context, h *handler, in In) (Out, error)) toolSpec {
	return toolSpec{
		name: d.name, group: d.group, core: d.core, summary: d.summary,
		shapes: resultVariants[Out],
		add: func(s *sdk.Server, h *handler) {
			schema, err := jsonschema.For[In](nil)
			if err != nil {
				panic(fmt.Sprintf("mcp: tool %s: input schema: %v", d.name, err))
			}
			simplify(schema)
			if d.tune != nil {
				d.tune(schema)
			}
			shapes, err := resultVariants[Out]()
			if err != nil {
				panic(fmt.Sprintf("mcp: tool %s: output schema: %v", d.name, err))
			}
			destructive := d.destructive
			t := &sdk.Tool{
				Name:         d.name,
				Description:  d.description,
				InputSchema:  schema,
				OutputSchema: declaredSchema(shapes),
				Annotations: &sdk.ToolAnnotations{
					ReadOnlyHint:    d.readOnly,
					DestructiveHint: &destructive,
					IdempotentHint:  d.idempotent || d.readOnly,
				},
			}
			h.shape(t)
			// The SDK sees an untyped result: call encodes it itself, so
			// that structuredContent and the text block are the same bytes.
			sdk.AddTool(s, t, func(ctx context.Context, req *sdk.CallToolRequest, in In) (*sdk.CallToolResult, any, error) {
				ctx, done := h.progress(ctx, req) // progress.go
				defer done()
				return h.call(ctx, d.name, func(ctx context.Context) (any, error) {
					out, err := fn(ctx, h, in)
					switch {
					case errors.Is(err, errFailed):
						return failed{out}, nil
					case err != nil:
						return nil, err
					}
					return out, nil
				}), nil, nil
			})
		},
	}
}

// handler holds what every tool call needs.
type handler struct {
	b     contract.Backend
	opts  Options
	log   *slog.Logger
	tools map[string]bool // tools of the active profile, for hints
}

// call runs one tool body and shapes its outcome: the JSON goes into
// StructuredContent and, identical, into a single text block.
func (h *handler) call(ctx context.Context, name string, fn func(context.Context) (any, error)) (res *sdk.CallToolResult) {
	start := time.Now()
	var (
		out   any
		err   error
		isErr bool
	)
	func() {
		defer func() {
			if r := recover(); r != nil {
				h.log.Error("tool panic", "tool", name, "panic", r, "stack", string(debug.Stack()))
				out, err = nil, contract.Internal(fmt.Sprintf("pyro crashed while running %s: %v", name, r), nil)
			}
		}()
		out, err = fn(ctx)
	}()
	if f, ok := out.(failed); ok && err == nil {
		out, isErr = f.v, true
	}
	if err != nil {
		out, isErr = h.errorView(ctx, err), true
	}
	data, encErr := encodeJSON(out)
	if encErr != nil {
		isErr = true
		data, _ = encodeJSON(errorView{Error: string(contract.CodeInternal),
			Message: "pyro could not encode the result of " + name + ": " + encErr.Error(), Hint: hintInternal})
	}
	attrs := []any{"tool", name, "ms", time.Since(start).Milliseconds(), "bytes", len(data)}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	if len(data) > h.opts.MaxResultBytes {
		h.log.Warn("tool result over budget", append(attrs, "budget", h.opts.MaxResultBytes)...)
	} else {
		h.log.Info("tool call", attrs...)
	}
	return &sdk.CallToolResult{
		Content:           []sdk.Content{&sdk.TextContent{Text: string(data)}},
		StructuredContent: json.RawMessage(data),
		IsError:           isErr,
	}
}

// budget is the byte limit of one result.
func (h *handler) budget() int { return h.opts.MaxResultBytes }

// fit returns build(n) for the largest n <= max whose JSON fits h's
// budget (FitJSON): a typed result whose lists or excerpts are cut to fit.
func fit[T any](h *handler, max int, build func(n int) T) (T, int, error) {
	_, n, _, err := FitJSON(h.budget(), max, func(n int) any { return build(n) })
	if err != nil {
		var z T
		return z, 0, err
	}
	return build(n), n, nil
}

// onWorkspace runs fn with the workspace reference ref; if the backend does
// not know ref as an ID, it retries once with the ID of the workspace named
// ref.
func (h *handler) onWorkspace(ctx context.Context, ref string, fn func(id string) error) error {
	return contract.OnWorkspace(ctx, h.b, ref, fn)
}

// errorView is the result of a failed call.
type errorView struct {
	Error      string           `json:"error"`   // error code
	Message    string           `json:"message"` // what happened
	Hint       string           `json:"hint"`    // what to do next
	Workspaces []workspaceBrief `json:"workspaces,omitempty"`
}

const (
	hintInternal = "This is a pyro failure, not a problem with your arguments. Retry once; if it fails again, stop and tell the user (details are in the pyro server log)."
	hintInvalid  = "Fix the argument and call again."
)

// errorView turns err into advice for the agent.
func (h *handler) errorView(ctx context.Context, err error) errorView {
	e, ok := contract.AsError(err)
	if !ok {
		switch {
		case ctx.Err() == context.Canceled || err == context.Canceled:
			return errorView{Error: "cancelled", Message: "the call was cancelled before it finished", Hint: "Call again if you still need the result."}
		case err == context.DeadlineExceeded:
			e = contract.Timeout("the operation did not finish in time")
		default:
			e = contract.Internal("unexpected error: "+err.Error(), err)
		}
	}
	v := errorView{Error: string(e.Code), Message: h.word(e.Msg), Hint: h.word(e.Hint)}
	if v.Message == "" {
		v.Message = string(e.Code)
	}
	if v.Hint == "" {
		v.Hint = h.defaultHint(e)
	}
	switch {
	case e.Code == contract.CodeNotFound && e.Resource == contract.ResourceWorkspace:
		v.Workspaces = h.briefs(ctx, false)
		if len(v.Workspaces) == 0 {
			v.Hint = "No workspaces exist now; call workspace_create to make one."
		} else {
			v.Hint += " Existing workspaces: " + briefLine(v.Workspaces) + "."
		}
	case e.Code == contract.CodeLimit:
		v.Workspaces = h.briefs(ctx, true)
		if len(v.Workspaces) > 0 {
			v.Hint += " Running now: " + briefLine(v.Workspaces) + "."
		}
	}
	return v
}

// defaultHint is the advice for an *Error that brought none.
func (h *handler) defaultHint(e *contract.Error) string {
	switch e.Code {
	case contract.CodeNotFound:
		switch e.Resource {
		case contract.ResourceWorkspace:
			return "Use a workspace id (or name) from workspace_list, or call workspace_create."
		case contract.ResourceSnapshot:
			if h.tools["snapshot_list"] {
				return "Call snapshot_list to see this workspace's snapshots; workspace_reset without a snapshot returns to the baseline."
			}
			return "workspace_summary lists this workspace's snapshots; workspace_reset without a snapshot returns to the baseline."
		case contract.ResourceFile:
			return "Check the path with file_list; relative paths are under /workspace."
		case contract.ResourceEnv:
			if h.tools["env_list"] {
				return "Call env_list to see the environments this host has."
			}
			return "Leave env empty for the default, or run `pyro env list` on the host to see the others."
		case contract.ResourceHostPath:
			return "Host paths are absolute or relative to the directory `pyro mcp serve` started in; check that it exists."
		}
		return "Check the name and call again."
	case contract.CodeStopped:
		return "Call workspace_start with this id, then retry; or call workspace_create for a fresh workspace."
	case contract.CodeEnvMissing:
		name := e.Name
		if name == "" {
			name = "NAME"
		}
		return fmt.Sprintf("Run `pyro env build %s` on the host (or ask the user to), then retry.", name)
	case contract.CodeInvalid:
		return hintInvalid
	case contract.CodeExists:
		switch e.Resource {
		case contract.ResourceWorkspace:
			return "Pick another name, or use the existing workspace (see workspace_list)."
		case contract.ResourceSnapshot:
			if h.tools["snapshot_delete"] {
				return "Pick another snapshot name, or call snapshot_delete first."
			}
			return "Pick another snapshot name."
		case contract.ResourceHostPath:
			return "Pass overwrite=true to replace it, or choose another host_path."
		}
		return "Pick another name."
	case contract.CodeConflict:
		return "The workspace is not in the state this call needs. Re-read it (workspace_status, file_read) and retry."
	case contract.CodeLimit:
		if h.tools["workspace_stop"] {
			return "Delete a workspace you no longer need with workspace_delete (or stop it with workspace_stop), then retry."
		}
		return "Delete a workspace you no longer need with workspace_delete, then retry."
	case contract.CodeTimeout:
		return "Retry once; if it keeps timing out, ask the user to check the host with `pyro doctor`."
	}
	return hintInternal
}

// workspaceBrief is one line of a workspace list inside an error.
type workspaceBrief struct {
	ID    string         `json:"id"`
	Name  string         `json:"name,omitempty"`
	State contract.State `json:"state"`
}

// maxBriefs bounds the workspaces listed in an error.
const maxBriefs = 20

func (h *handler) briefs(ctx context.Context, runningOnly bool) []workspaceBrief {
	if ctx.Err() != nil {
		return nil
	}
	list, err := h.b.List(ctx)
	if err != nil {
		h.log.Warn("listing workspaces for an error hint", "err", err)
		return nil
	}
	var out []workspaceBrief
	for _, w := range list {
		if runningOnly && w.State != contract.StateRunning {
			continue
		}
		out = append(out, workspaceBrief{ID: w.ID, Name: w.Name, State: w.State})
		if len(out) == maxBriefs {
			break
		}
	}
	return out
}

func briefLine(ws []workspaceBrief) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		if w.Name != "" {
			parts[i] = fmt.Sprintf("%s (%s, %s)", w.ID, w.Name, w.State)
		} else {
			parts[i] = fmt.Sprintf("%s (%s)", w.ID, w.State)
		}
	}
	return strings.Join(parts, ", ")
}

// Schema tuning helpers for toolDef.tune.

// simplify rewrites the nullable types jsonschema infers for slices, maps and
// pointers (["null","array"]) to the plain type: every such field is
// optional anyway, and some model APIs reject type unions.
func simplify(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if len(s.Types) == 2 && s.Types[0] == "null" {
		s.Type, s.Types = s.Types[1], nil
	}
	for _, p := range s.Properties {
		simplify(p)
	}
	simplify(s.Items)
	simplify(s.AdditionalProperties)
}

func prop(s *jsonschema.Schema, path ...string) *jsonschema.Schema {
	for _, p := range path {
		if s == nil {
			return nil
		}
		s = s.Properties[p]
	}
	return s
}

func bounds(s *jsonschema.Schema, field string, lo, hi float64) {
	if p := prop(s, field); p != nil {
		p.Minimum, p.Maximum = &lo, &hi
	}
}

func enum(s *jsonschema.Schema, field string, values ...string) {
	if p := prop(s, strings.Split(field, ".")...); p != nil {
		p.Enum = nil
		for _, v := range values {
			p.Enum = append(p.Enum, v)
		}
	}
}

// ToolInfo describes one tool for documentation.
type ToolInfo struct {
	Name    string
	Group   string
	Profile string // the smallest profile that has it
	Summary string
}

// Tools lists every tool in display order.
func Tools() []ToolInfo {
	var out []ToolInfo
	for _, t := range toolSpecs() {
		p := ProfileFull
		if t.core {
			p = ProfileCore
		}
		out = append(out, ToolInfo{Name: t.name, Group: t.group, Profile: p, Summary: t.summary})
	}
	return out
}

// ToolTable returns a Markdown table of the tools (name | profile | what it
// does) for the README.
func ToolTable() string {
	var b strings.Builder
	b.WriteString("| Tool | Profile | What it does |\n|---|---|---|\n")
	for _, t := range Tools() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", t.Name, t.Profile, t.Summary)
	}
	return b.String()
}
