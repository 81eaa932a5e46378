package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Background commands: workspace_exec with background:true starts one
// (tools_exec.go) and returns its seq; exec_status follows it: state,
// exit code, output since an offset, a bounded wait for its end, a kill,
// and without seq the list of a workspace's background commands.
//
// exec_status is in workspace-core: without it a background command could
// be started but never read, and the default profile is the one that
// meets hosts' tool-call timeouts (60 s for most, 300 s for Codex).

type execStatusIn struct {
	ID           string `json:"id" jsonschema:"workspace id (or name)"`
	Seq          int64  `json:"seq,omitempty" jsonschema:"the command's seq from workspace_exec; omit to list the workspace's background commands"`
	WaitSeconds  int    `json:"wait_seconds,omitempty" jsonschema:"wait up to this many seconds for the command to end, returning as soon as it does (default 0, max 30)"`
	StdoutOffset int64  `json:"stdout_offset,omitempty" jsonschema:"stdout bytes already seen: the last result's stdout_next_offset, to get only new output (default 0)"`
	StderrOffset int64  `json:"stderr_offset,omitempty" jsonschema:"stderr bytes already seen: the last result's stderr_next_offset (default 0)"`
	Kill         bool   `json:"kill,omitempty" jsonschema:"end the command: its process group is killed"`
}

func bgTools() []toolSpec {
	return []toolSpec{onBackground(defTool(toolDef{
		name: "exec_status", group: "exec", core: true,
		summary:     "Follow a command started with workspace_exec background:true: state, exit code and new output since an offset; waits up to 30 s for its end, or kills it; without seq, lists the background commands.",
		description: "Follow a workspace_exec background:true command by seq: state (running, exited, timed_out, killed, lost, failed), exit code, output. wait_seconds (max 30) returns once it ends; pass stdout_offset/stderr_offset from the last result for new output only; kill:true ends it. No seq: list them.",
		tune: func(s *jsonschema.Schema) {
			bounds(s, "wait_seconds", 0, contract.MaxPollWaitSeconds)
			bounds(s, "seq", 0, 1<<53)
			bounds(s, "stdout_offset", 0, 1<<53)
			bounds(s, "stderr_offset", 0, 1<<53)
		},
	}, toolExecStatus))}
}

// onBackground makes a spec register only on a Backend that runs
// background commands.
func onBackground(spec toolSpec) toolSpec {
	add := spec.add
	spec.add = func(s *sdk.Server, h *handler) {
		if _, ok := h.b.(contract.BackgroundBackend); ok {
			add(s, h)
		}
	}
	return spec
}

// bgBackend returns the Backend's background commands, or an error
// saying it has none.
func (h *handler) bgBackend() (contract.BackgroundBackend, error) {
	bb, ok := h.b.(contract.BackgroundBackend)
	if !ok {
		return nil, contract.Invalid("this pyro server does not run commands in the background").
			WithHint("Run the command in the foreground, with output redirected (nohup CMD > /tmp/job.log 2>&1 &) if it is long, and read the log.")
	}
	return bb, nil
}

// execBackground starts req (validated) in the background: the result
// of workspace_exec with background:true.
func (h *handler) execBackground(ctx context.Context, ref string, req contract.ExecRequest) (bgView, error) {
	bb, err := h.bgBackend()
	if err != nil {
		return bgView{}, err
	}

	var (
		v  contract.BackgroundExec
		ws string
	)
	err = h.onWorkspace(ctx, ref, func(id string) (err error) {
		ws, req.ID = id, id
		v, err = bb.ExecStart(ctx, req)
		return err
	})
	if err != nil {
		return bgView{}, err
	}
	return h.bgResult(ws, v, 0, 0, true)
}

func toolExecStatus(ctx context.Context, h *handler, in execStatusIn) (execStatusOut, error) {
	bb, err := h.bgBackend()
	if err != nil {
		return execStatusOut{}, err
	}
	poll := contract.PollRequest{Seq: in.Seq, StdoutOffset: in.StdoutOffset, StderrOffset: in.StderrOffset,
		Wait: seconds(in.WaitSeconds), Kill: in.Kill}
	if err := contract.ValidatePoll(poll); err != nil {
		return execStatusOut{}, err
	}
	if in.Seq == 0 && (in.Kill || in.WaitSeconds > 0) {
		return execStatusOut{}, contract.Invalid("kill and wait_seconds need seq: the command's seq from workspace_exec")
	}
	if in.Seq == 0 {
		var (
			list []contract.BackgroundExec
			ws   string
		)
		err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
			ws = id
			list, err = bb.ExecList(ctx, id)
			return err
		})
		if err != nil {
			return execStatusOut{}, err
		}
		l, err := h.bgListResult(ws, list)
		if err != nil {
			return execStatusOut{}, err
		}
		return eitherB[bgView](l), nil
	}
	var (
		v  contract.BackgroundExec
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		poll.ID = id
		v, err = bb.ExecPoll(ctx, poll)
		return err
	})
	if err != nil {
		return execStatusOut{}, err
	}
	o, err := h.bgResult(ws, v, in.StdoutOffset, in.StderrOffset, false)
	if err != nil {
		return execStatusOut{}, err
	}
	return eitherA[bgView, bgListOut](o), nil
}

// execStatusOut is exec_status's result: one command, or without seq the
// list of them.
type execStatusOut = either[bgView, bgListOut]

// bgView is a background command as exec_status (and workspace_exec with
// background:true) returns it.
type bgView struct {
	ID               string             `json:"id"`
	Seq              int64              `json:"seq"`
	Command          string             `json:"command,omitempty"`
	State            contract.ExecState `json:"state"`
	Reason           string             `json:"reason,omitempty"`     // why it was killed or lost
	ExitCode         *int               `json:"exit_code,omitempty"`  // once exited or timed out
	Signal           string             `json:"signal,omitempty"`     // the signal that killed it, if one did
	TimedOut         bool               `json:"timed_out,omitempty"`  // its timeout killed it
	StartedAt        string             `json:"started_at,omitempty"` // RFC 3339
	DurationMs       int64              `json:"duration_ms"`          // so far, while it runs
	TimeoutSeconds   int                `json:"timeout_seconds,omitempty"`
	Stdout           string             `json:"stdout"`
	Stderr           string             `json:"stderr"`
	StdoutOffset     int64              `json:"stdout_offset,omitempty"` // where stdout starts in the whole output
	StderrOffset     int64              `json:"stderr_offset,omitempty"`
	StdoutNextOffset int64              `json:"stdout_next_offset"` // pass as stdout_offset to get only what follows
	StderrNextOffset int64              `json:"stderr_next_offset"`
	StdoutTruncated  bool               `json:"stdout_truncated"`
	StderrTruncated  bool               `json:"stderr_truncated"`
	StdoutTotalBytes int64              `json:"stdout_total_bytes"` // so far
	StderrTotalBytes int64              `json:"stderr_total_bytes"`
	StdoutPath       string             `json:"stdout_path,omitempty"` // host file with the whole stdout
	StderrPath       string             `json:"stderr_path,omitempty"`
	StdoutBinary     bool               `json:"stdout_binary,omitempty"`
	StderrBinary     bool               `json:"stderr_binary,omitempty"`
	Limited          string             `json:"limited,omitempty"`
	Hint             string             `json:"hint,omitempty"`
}

// bgResult shapes v into the budget the way execResult does: stdout and
// stderr share what the fixed fields leave, each cut to head+tail. started
// marks the answer to a start.
func (h *handler) bgResult(id string, v contract.BackgroundExec, outOff, errOff int64, started bool) (bgView, error) {
	r := v.Result
	outOff, errOff = min(outOff, v.StdoutNext), min(errOff, v.StderrNext)
	// The backend cut the middle out of a long window already.
	outCut := int64(len(r.Stdout)) < v.StdoutNext-outOff
	errCut := int64(len(r.Stderr)) < v.StderrNext-errOff
	build := func(allow int) bgView {
		a, b := splitAllowance(allow, len(r.Stdout), len(r.Stderr))
		so, se := MakeExcerpt(r.Stdout, a), MakeExcerpt(r.Stderr, b)
		o := bgView{ID: id, Seq: v.Seq, Command: clip(v.Command, maxLoggedCommand), State: v.State, Reason: clip(h.word(v.Reason), 500),
			Signal: r.Signal, TimedOut: r.TimedOut, StartedAt: timeString(v.StartedAt), DurationMs: r.Duration.Milliseconds(),
			TimeoutSeconds: v.TimeoutSeconds, Stdout: so.Text, Stderr: se.Text, StdoutOffset: outOff, StderrOffset: errOff,
			StdoutNextOffset: v.StdoutNext, StderrNextOffset: v.StderrNext,
			StdoutTruncated: so.Truncated || outCut, StderrTruncated: se.Truncated || errCut,
			StdoutTotalBytes: r.StdoutSize, StderrTotalBytes: r.StderrSize, StdoutPath: r.StdoutPath, StderrPath: r.StderrPath,
			StdoutBinary: so.Binary, StderrBinary: se.Binary, Limited: r.Limited}
		if v.State == contract.ExecExited || v.State == contract.ExecTimedOut {
			code := r.ExitCode
			o.ExitCode = &code
		}
		o.Hint = bgHint(o, r, started)
		return o
	}
	o, _, err := fit(h, min(len(r.Stdout)+len(r.Stderr), h.budget()), build)
	return o, err
}

func bgHint(o bgView, r contract.ExecResult, started bool) string {
	var parts []string
	switch o.State {
	case contract.ExecRunning:
		if started {
			parts = append(parts, fmt.Sprintf("Started in the background as seq %d (timeout %d s). Follow it with exec_status {id, seq: %d, wait_seconds: %d}; each result's stdout_next_offset and stderr_next_offset, passed back as stdout_offset and stderr_offset, give only new output.",
				o.Seq, o.TimeoutSeconds, o.Seq, contract.MaxPollWaitSeconds))
		} else {
			parts = append(parts, fmt.Sprintf("Still running. Poll again with stdout_offset=%d, stderr_offset=%d for new output only, and wait_seconds (max %d) to wait for the end; kill=true ends it.",
				o.StdoutNextOffset, o.StderrNextOffset, contract.MaxPollWaitSeconds))
		}
	case contract.ExecTimedOut:
		parts = append(parts, fmt.Sprintf("Killed after its %d s timeout (exit 124); a background command may have up to %d s (timeout_seconds).", o.TimeoutSeconds, contract.MaxBackgroundTimeoutSeconds))
	case contract.ExecLost, contract.ExecFailed:
		parts = append(parts, "It did not run to its end: check workspace_status (start the workspace if it is stopped), then run it again.")
	}
	if r.Network != "" {
		parts = append(parts, clip(word(strings.ToUpper(r.Network[:1])+r.Network[1:]), 600)+".")
	}
	if o.StdoutTruncated || o.StderrTruncated {
		var paths []string
		for _, p := range []string{o.StdoutPath, o.StderrPath} {
			if p != "" {
				paths = append(paths, p)
			}
		}
		s := "Output cut to head+tail."
		if len(paths) > 0 {
			s += " Full text on the host: " + strings.Join(paths, ", ") + " (readable with your own file tools)."
		}
		parts = append(parts, s)
	}
	if o.StdoutBinary || o.StderrBinary {
		parts = append(parts, "Output is not UTF-8 text; invalid bytes show as U+FFFD.")
	}
	return strings.Join(parts, " ")
}

// bgItem is a background command in exec_status's list.
type bgItem struct {
	Seq              int64              `json:"seq"`
	Command          string             `json:"command"`
	State            contract.ExecState `json:"state"`
	Reason           string             `json:"reason,omitempty"`
	ExitCode         *int               `json:"exit_code,omitempty"`
	StartedAt        string             `json:"started_at,omitempty"`
	DurationMs       int64              `json:"duration_ms"`
	StdoutTotalBytes int64              `json:"stdout_total_bytes"`
	StderrTotalBytes int64              `json:"stderr_total_bytes"`
}

type bgListOut struct {
	ID        string   `json:"id"`
	Commands  []bgItem `json:"commands"`
	Truncated bool     `json:"truncated,omitempty"`
	Hint      string   `json:"hint,omitempty"`
}

func (h *handler) bgListResult(id string, list []contract.BackgroundExec) (bgListOut, error) {
	items := make([]bgItem, len(list))
	running := 0
	for i, v := range list {
		items[i] = bgItem{Seq: v.Seq, Command: clip(v.Command, 200), State: v.State, Reason: clip(word(v.Reason), 200),
			StartedAt: timeString(v.StartedAt), DurationMs: v.Result.Duration.Milliseconds(),
			StdoutTotalBytes: v.Result.StdoutSize, StderrTotalBytes: v.Result.StderrSize}
		if v.State == contract.ExecExited || v.State == contract.ExecTimedOut {
			code := v.Result.ExitCode
			items[i].ExitCode = &code
		}
		if v.State == contract.ExecRunning {
			running++
		}
	}
	build := func(n int) bgListOut {
		// The newest matter most: drop from the oldest.
		o := bgListOut{ID: id, Commands: items[len(items)-n:], Truncated: n < len(items)}
		switch {
		case len(items) == 0:
			o.Hint = "No background commands; workspace_exec with background:true starts one."
		case running > 0:
			o.Hint = fmt.Sprintf("%d running (at most %d at once). exec_status with a seq shows its output.", running, contract.MaxBackground)
		default:
			o.Hint = "exec_status with a seq shows its output."
		}
		return o
	}
	o, _, err := fit(h, len(items), build)
	return o, err
}

// seconds converts a count of seconds from a tool's arguments to a
// Duration, bounded so that no value wraps around into range.
func seconds(n int) time.Duration {
	return time.Duration(min(max(n, -1<<32), 1<<32)) * time.Second
}
