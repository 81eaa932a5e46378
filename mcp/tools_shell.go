package mcp

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Shell tools: shell_open, shell_write, shell_read, shell_signal,
// shell_resize, shell_close and shell_list. A shell is a program on a
// terminal in the workspace that lives between calls; shell_write types
// into it and, by default, waits for the output it caused and returns it,
// so one call is one interaction.

// shellWaitIn are the wait arguments every shell call that reads takes.
type shellWaitIn struct {
	WaitIdleMs     *int   `json:"wait_idle_ms,omitempty" jsonschema:"return once output has paused this long (default 500; 0: return at once)"`
	WaitFor        string `json:"wait_for,omitempty" jsonschema:"instead wait until the plain output since the last read matches this regular expression (RE2), e.g. \"\\\\$ $\" or \">>> $\""`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"wait at most this long (default 10, max 50)"`
	Raw            bool   `json:"raw,omitempty" jsonschema:"return the bytes as written, escape sequences kept, with byte cursors (default: plain text as the screen shows it)"`
}

type shellOpenIn struct {
	ID        string            `json:"id" jsonschema:"workspace id (or name)"`
	Argv      []string          `json:"argv,omitempty" jsonschema:"program and arguments, e.g. [\"python3\"] (default: bash -l)"`
	Command   string            `json:"command,omitempty" jsonschema:"a sh -c command line instead of argv"`
	Cwd       string            `json:"cwd,omitempty" jsonschema:"working directory (default /workspace)"`
	EnvVars   map[string]string `json:"env_vars,omitempty" jsonschema:"extra environment variables"`
	SecretEnv map[string]string `json:"secret_env,omitempty" jsonschema:"environment variables set to the workspace's secrets (variable: secret name); values are redacted from the shell's output"`
	Cols      int               `json:"cols,omitempty" jsonschema:"terminal columns (default 120)"`
	Rows      int               `json:"rows,omitempty" jsonschema:"terminal rows (default 40)"`
	shellWaitIn
}

type shellWriteIn struct {
	ID      string   `json:"id" jsonschema:"workspace id (or name)"`
	Shell   int      `json:"shell" jsonschema:"shell number, from shell_open"`
	Text    string   `json:"text,omitempty" jsonschema:"text to type"`
	Keys    []string `json:"keys,omitempty" jsonschema:"keys to press after the text, e.g. [\"C-c\"], [\"Up\",\"Enter\"], [\"Escape\"]; C-x is Ctrl-x"`
	Newline *bool    `json:"newline,omitempty" jsonschema:"press Enter at the end (default: true when text is given without keys)"`
	shellWaitIn
}

type shellReadIn struct {
	ID     string `json:"id" jsonschema:"workspace id (or name)"`
	Shell  int    `json:"shell" jsonschema:"shell number"`
	Cursor *int64 `json:"cursor,omitempty" jsonschema:"with raw: re-read from this byte cursor (default: what is new since the last read)"`
	shellWaitIn
}

type shellSignalIn struct {
	ID     string `json:"id" jsonschema:"workspace id (or name)"`
	Shell  int    `json:"shell" jsonschema:"shell number"`
	Signal string `json:"signal" jsonschema:"INT, TERM, KILL, HUP, QUIT, TSTP or CONT"`
	shellWaitIn
}

type shellResizeIn struct {
	ID    string `json:"id" jsonschema:"workspace id (or name)"`
	Shell int    `json:"shell" jsonschema:"shell number"`
	Cols  int    `json:"cols" jsonschema:"columns"`
	Rows  int    `json:"rows" jsonschema:"rows"`
}

type shellRefIn struct {
	ID    string `json:"id" jsonschema:"workspace id (or name)"`
	Shell int    `json:"shell" jsonschema:"shell number"`
}

type shellListIn struct {
	ID string `json:"id" jsonschema:"workspace id (or name)"`
}

// shellView is a shell in a list or status.
type shellView struct {
	Shell    int      `json:"shell"`
	Argv     []string `json:"argv,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Size     string   `json:"size,omitempty"` // COLSxROWS
	Started  string   `json:"started,omitempty"`
	Exited   bool     `json:"exited,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Signal   string   `json:"signal,omitempty"`
	Cursor   int64    `json:"cursor"`       // bytes the shell has written
	Unread   int64    `json:"unread_bytes"` // beyond what was read
}

func viewShell(s contract.ShellInfo) shellView {
	argv := slices.Clone(s.Argv)
	for i := range argv {
		argv[i] = clip(argv[i], 100)
	}
	v := shellView{Shell: s.Shell, Argv: argv, PID: s.PID, Started: timeString(s.Started), Exited: s.Exited,
		Signal: s.Signal, Cursor: s.Cursor, Unread: max(0, s.Cursor-s.Read)}
	if s.Cols > 0 {
		v.Size = strconv.Itoa(s.Cols) + "x" + strconv.Itoa(s.Rows)
	}
	if s.Exited {
		code := s.ExitCode
		v.ExitCode = &code
	}
	return v
}

func viewShells(ss []contract.ShellInfo) []shellView {
	var out []shellView
	for _, s := range ss {
		out = append(out, viewShell(s))
	}
	return out
}

// shellOut is the result of a call that read a shell's output.
type shellOut struct {
	Workspace string `json:"id"`
	Shell     int    `json:"shell"`
	// Output is plain (what changed on the screen) or raw.
	Output          string `json:"output"`
	Mode            string `json:"mode"`
	OutputTruncated bool   `json:"output_truncated,omitempty"`
	Cursor          int64  `json:"cursor"`      // raw: where output begins
	NextCursor      int64  `json:"next_cursor"` // where this read ended
	DroppedBytes    int64  `json:"dropped_bytes,omitempty"`
	LostLines       int    `json:"lost_lines,omitempty"`
	Written         int    `json:"written,omitempty"`
	Matched         *bool  `json:"matched,omitempty"`
	TimedOut        bool   `json:"timed_out,omitempty"`
	FullScreen      bool   `json:"full_screen,omitempty"`
	Exited          bool   `json:"exited,omitempty"`
	ExitCode        *int   `json:"exit_code,omitempty"`
	Signal          string `json:"signal,omitempty"`
	Hint            string `json:"hint,omitempty"`
}

func tuneShellWait(s *jsonschema.Schema) {
	bounds(s, "timeout_seconds", 0, contract.MaxShellTimeout.Seconds())
	bounds(s, "wait_idle_ms", 0, contract.MaxShellTimeout.Seconds()*1000)
	if p := prop(s, "wait_for"); p != nil {
		n := contract.MaxShellPattern
		p.MaxLength = &n
	}
}

func tuneShellSize(s *jsonschema.Schema) {
	bounds(s, "cols", 0, maxShellCols)
	bounds(s, "rows", 0, maxShellRows)
}

// The terminal size bounds (the guest's, proto.MaxShellCols).
const (
	maxShellCols = contract.MaxShellCols
	maxShellRows = contract.MaxShellRows
)

func shellTools() []toolSpec {
	return shellOnly(
		defTool(toolDef{
			name: "shell_open", group: "shell", destructive: true,
			summary:     "Start an interactive shell (bash, or any program such as python3) on a terminal in a workspace; it lives between calls.",
			description: "Start a program on a terminal in the workspace (default bash -l in /workspace, 120x40) that stays running between calls; returns its shell number and first output. Use for REPLs, prompts and full-screen programs; workspace_exec for one-off commands.",
			tune:        func(s *jsonschema.Schema) { tuneShellWait(s); tuneShellSize(s) },
		}, toolShellOpen),
		defTool(toolDef{
			name: "shell_write", group: "shell", destructive: true,
			summary:     "Type text and keys (Enter, C-c, arrows, ...) into a shell, wait for the output it causes and return it.",
			description: "Type into a shell: text, then keys (C-c, C-d, Up, Enter, Escape, ...), then Enter (default when only text). Waits until output pauses (wait_idle_ms, default 500) or matches wait_for, at most timeout_seconds, and returns the new output as plain text.",
			tune:        tuneShellWait,
		}, toolShellWrite),
		defTool(toolDef{
			name: "shell_read", group: "shell", readOnly: true,
			summary:     "Read a shell's new output (plain text as the screen shows it, or raw bytes with cursors), optionally waiting for a pattern.",
			description: "Return a shell's output since the last read, as plain text (escape sequences applied; a full-screen program's whole screen) or raw. Waits like shell_write: for a pause, for wait_for to match, at most timeout_seconds. Poll long-running commands with it.",
			tune:        tuneShellWait,
		}, toolShellRead),
		defTool(toolDef{
			name: "shell_signal", group: "shell", destructive: true,
			summary:     "Send a signal (INT, TERM, KILL, HUP, QUIT, TSTP, CONT) to the program in a shell's foreground and return the output that follows.",
			description: "Send INT, TERM, KILL, HUP, QUIT, TSTP or CONT to the shell's foreground program (what Ctrl-C reaches), then return the output that follows, waiting like shell_write.",
			tune: func(s *jsonschema.Schema) {
				tuneShellWait(s)
				enum(s, "signal", "INT", "TERM", "KILL", "HUP", "QUIT", "TSTP", "CONT")
			},
		}, toolShellSignal),
		defTool(toolDef{
			name: "shell_resize", group: "shell", idempotent: true,
			summary:     "Change a shell's terminal size; the program is told (SIGWINCH).",
			description: "Change a shell's terminal size (columns, rows); the program is told (SIGWINCH) and redraws.",
			tune:        tuneShellSize,
		}, toolShellResize),
		defTool(toolDef{
			name: "shell_close", group: "shell", destructive: true, idempotent: true,
			summary:     "End a shell (hang up, then kill) and forget it.",
			description: "End a shell: hang up its terminal (SIGHUP), kill what is left after 2 s, and forget it. Returns its exit status.",
		}, toolShellClose),
		defTool(toolDef{
			name: "shell_list", group: "shell", readOnly: true,
			summary:     "List a workspace's shells: program, size, running or exit status, unread output.",
			description: "List the workspace's shells with program, terminal size, running or exit status, and bytes of output not read yet. Shells end when the workspace is reset, stopped or deleted.",
		}, toolShellList),
	)
}

// shellOnly makes specs register only on a Backend that has shells.
func shellOnly(specs ...toolSpec) []toolSpec {
	for i := range specs {
		add := specs[i].add
		specs[i].add = func(s *sdk.Server, h *handler) {
			if _, ok := h.b.(contract.ShellBackend); ok {
				add(s, h)
			}
		}
	}
	return specs
}

func (h *handler) shellBackend() (contract.ShellBackend, error) {
	sb, ok := h.b.(contract.ShellBackend)
	if !ok {
		return nil, contract.Invalid("this pyro server has no interactive shells").WithHint("Use workspace_exec.")
	}
	return sb, nil
}

// shellWait checks the wait arguments.
func shellWait(in shellWaitIn) (contract.ShellWait, error) {
	var idle *time.Duration
	if in.WaitIdleMs != nil {
		d := time.Duration(min(max(*in.WaitIdleMs, -1<<32), 1<<32)) * time.Millisecond
		idle = &d
	}
	return contract.NewShellWait(seconds(in.TimeoutSeconds), idle, in.WaitFor)
}

func validateShell(n int) error { return contract.ValidateShellNumber(n) }

// shellResult shapes a ShellOutput for the model, within the result
// budget: plain text cut to head and tail.
func (h *handler) shellResult(ws string, in shellWaitIn, o contract.ShellOutput) (shellOut, error) {
	out := shellOut{Workspace: ws, Shell: o.Info.Shell, Mode: "plain", Cursor: o.Start, NextCursor: o.End,
		DroppedBytes: o.Dropped, LostLines: o.LostLines, Written: o.Written, TimedOut: o.TimedOut,
		FullScreen: o.Alt, Exited: o.Info.Exited, Signal: o.Info.Signal}
	if in.Raw {
		out.Mode = "raw"
	}
	if in.WaitFor != "" {
		m := o.Matched
		out.Matched = &m
	}
	if o.Info.Exited {
		code := o.Info.ExitCode
		out.ExitCode = &code
	}
	switch {
	case o.Info.Exited:
		out.Hint = "The program has exited; shell_close forgets it, shell_open starts another."
	case in.WaitFor != "" && !o.Matched:
		out.Hint = "wait_for did not match before the timeout; shell_read waits again, shell_signal INT interrupts."
	case o.TimedOut:
		out.Hint = "Output was still arriving at the timeout; shell_read returns what follows."
	case o.Dropped > 0:
		out.Hint = "The program wrote faster than it was read and the oldest output was dropped; redirect big output to a file and read that."
	}
	text := []byte(o.Text)
	data, _, err := fit(h, len(text), func(n int) shellOut {
		e := MakeExcerpt(text, n)
		v := out
		v.Output, v.OutputTruncated = e.Text, e.Truncated
		if e.Truncated && in.Raw {
			v.Hint = strings.TrimSpace(v.Hint + " Output was cut; shell_read with raw and cursor pages through it.")
		}
		return v
	})
	if err != nil {
		return shellOut{}, err
	}
	return data, nil
}

// shellCall runs call, a shell operation that waits as wi says, on the
// workspace id and shapes its output as a tool result.
func (h *handler) shellCall(ctx context.Context, id string, wi shellWaitIn, call func(sb contract.ShellBackend, id string, wait contract.ShellWait) (contract.ShellOutput, error)) (shellOut, error) {
	wait, err := shellWait(wi)
	if err != nil {
		return shellOut{}, err
	}
	sb, err := h.shellBackend()
	if err != nil {
		return shellOut{}, err
	}
	var o contract.ShellOutput
	var ws string
	err = h.onWorkspace(ctx, id, func(id string) (err error) {
		ws = id
		o, err = call(sb, id, wait)
		return err
	})
	if err != nil {
		return shellOut{}, err
	}
	return h.shellResult(ws, wi, o)
}

func toolShellOpen(ctx context.Context, h *handler, in shellOpenIn) (shellOut, error) {
	req := contract.ShellOpenRequest{Argv: in.Argv, Command: in.Command, Cwd: in.Cwd, EnvVars: in.EnvVars,
		SecretEnv: in.SecretEnv, Cols: in.Cols, Rows: in.Rows, Raw: in.Raw}
	if err := contract.ValidateShellOpen(&req); err != nil { // the wait is checked by shellCall
		return shellOut{}, err
	}
	return h.shellCall(ctx, in.ID, in.shellWaitIn, func(sb contract.ShellBackend, id string, wait contract.ShellWait) (contract.ShellOutput, error) {
		req.ID, req.Wait = id, wait
		return sb.ShellOpen(ctx, req)
	})
}

func toolShellWrite(ctx context.Context, h *handler, in shellWriteIn) (shellOut, error) {
	if err := validateShell(in.Shell); err != nil {
		return shellOut{}, err
	}
	newline := in.Text != "" && len(in.Keys) == 0
	if in.Newline != nil {
		newline = *in.Newline
	}
	input, err := shellInput(in.Text, in.Keys, newline)
	if err != nil {
		return shellOut{}, err
	}

	return h.shellCall(ctx, in.ID, in.shellWaitIn, func(sb contract.ShellBackend, id string, wait contract.ShellWait) (contract.ShellOutput, error) {
		return sb.ShellWrite(ctx, contract.ShellWriteRequest{ID: id, Shell: in.Shell, Input: input, Raw: in.Raw, Wait: wait})
	})
}

func toolShellRead(ctx context.Context, h *handler, in shellReadIn) (shellOut, error) {
	if err := validateShell(in.Shell); err != nil {
		return shellOut{}, err
	}
	if err := contract.ValidateShellCursor(in.Raw, in.Cursor); err != nil {
		return shellOut{}, err
	}
	return h.shellCall(ctx, in.ID, in.shellWaitIn, func(sb contract.ShellBackend, id string, wait contract.ShellWait) (contract.ShellOutput, error) {
		return sb.ShellRead(ctx, contract.ShellReadRequest{ID: id, Shell: in.Shell, Raw: in.Raw, Cursor: in.Cursor, Wait: wait})
	})
}

func toolShellSignal(ctx context.Context, h *handler, in shellSignalIn) (shellOut, error) {
	if err := validateShell(in.Shell); err != nil {
		return shellOut{}, err
	}
	sig, err := contract.ParseShellSignal(in.Signal)
	if err != nil {
		return shellOut{}, err
	}
	return h.shellCall(ctx, in.ID, in.shellWaitIn, func(sb contract.ShellBackend, id string, wait contract.ShellWait) (contract.ShellOutput, error) {
		return sb.ShellSignal(ctx, contract.ShellSignalRequest{ID: id, Shell: in.Shell, Signal: sig, Raw: in.Raw, Wait: wait})
	})
}

type shellInfoOut struct {
	Workspace string    `json:"id"`
	Shell     shellView `json:"shell"`
}

func toolShellResize(ctx context.Context, h *handler, in shellResizeIn) (shellInfoOut, error) {
	if err := validateShell(in.Shell); err != nil {
		return shellInfoOut{}, err
	}
	if err := contract.ValidateShellSize(in.Cols, in.Rows, false); err != nil {
		return shellInfoOut{}, err
	}
	sb, err := h.shellBackend()
	if err != nil {
		return shellInfoOut{}, err
	}
	var si contract.ShellInfo
	var ws string
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		si, err = sb.ShellResize(ctx, id, in.Shell, in.Cols, in.Rows)
		return err
	})
	if err != nil {
		return shellInfoOut{}, err
	}
	return shellInfoOut{Workspace: ws, Shell: viewShell(si)}, nil
}

func toolShellClose(ctx context.Context, h *handler, in shellRefIn) (shellInfoOut, error) {
	if err := validateShell(in.Shell); err != nil {
		return shellInfoOut{}, err
	}
	sb, err := h.shellBackend()
	if err != nil {
		return shellInfoOut{}, err
	}
	var si contract.ShellInfo
	var ws string
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		si, err = sb.ShellClose(ctx, id, in.Shell)
		return err
	})
	if err != nil {
		return shellInfoOut{}, err
	}
	return shellInfoOut{Workspace: ws, Shell: viewShell(si)}, nil
}

type shellListOut struct {
	Workspace string      `json:"id"`
	Shells    []shellView `json:"shells"`
}

func toolShellList(ctx context.Context, h *handler, in shellListIn) (shellListOut, error) {
	sb, err := h.shellBackend()
	if err != nil {
		return shellListOut{}, err
	}
	var list []contract.ShellInfo
	var ws string
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		list, err = sb.ShellList(ctx, id)
		return err
	})
	if err != nil {
		return shellListOut{}, err
	}
	out := shellListOut{Workspace: ws, Shells: viewShells(list)}
	if out.Shells == nil {
		out.Shells = []shellView{}
	}
	return out, nil
}
