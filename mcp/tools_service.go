package mcp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Service tools: service_start, service_status, service_logs,
// service_stop and service_restart. A service is a long-running process
// in a workspace (a dev server, a database) that keeps running between
// tool calls, with a readiness check and bounded logs outside /workspace.

type readinessIn struct {
	Kind           string `json:"kind" jsonschema:"file, tcp, http or command"`
	Path           string `json:"path,omitempty" jsonschema:"file: a guest path that appears when ready (relative to cwd)"`
	Port           int    `json:"port,omitempty" jsonschema:"tcp: a guest port that accepts connections on 127.0.0.1 or ::1"`
	URL            string `json:"url,omitempty" jsonschema:"http: a guest URL whose GET answers 2xx/3xx, e.g. http://127.0.0.1:8000/"`
	Command        string `json:"command,omitempty" jsonschema:"command: a shell command that exits 0 when ready"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"fail (and kill it) if not ready within this (default 60)"`
	IntervalMs     int    `json:"interval_ms,omitempty" jsonschema:"check every this many ms (default 200)"`
}

type serviceStartIn struct {
	ID          string            `json:"id" jsonschema:"workspace id (or name)"`
	Name        string            `json:"name" jsonschema:"service name: lower-case letters, digits, _ . - (e.g. web, db)"`
	Command     string            `json:"command,omitempty" jsonschema:"shell command line, run with sh -c; run the server in the foreground (no &)"`
	Argv        []string          `json:"argv,omitempty" jsonschema:"program and arguments, run without a shell; instead of command"`
	Cwd         string            `json:"cwd,omitempty" jsonschema:"working directory (default /workspace)"`
	EnvVars     map[string]string `json:"env_vars,omitempty" jsonschema:"extra environment variables"`
	SecretEnv   map[string]string `json:"secret_env,omitempty" jsonschema:"environment variables set to the workspace's secrets, e.g. {\"DB_PASSWORD\": \"db\"} (variable: secret name); values are redacted from its logs and status"`
	User        string            `json:"user,omitempty" jsonschema:"guest user name or uid[:gid] (default root)"`
	Readiness   *readinessIn      `json:"readiness,omitempty" jsonschema:"when it counts as ready (default: as soon as it started)"`
	Restart     string            `json:"restart,omitempty" jsonschema:"no (default) or on-failure: restart after a failing exit, up to max_restarts times"`
	MaxRestarts int               `json:"max_restarts,omitempty" jsonschema:"restarts allowed with on-failure (default 3, max 100)"`
	WaitSeconds int               `json:"wait_seconds,omitempty" jsonschema:"wait up to this long for ready (default 30, max 50); past it state is starting: follow with service_status"`
}

type serviceNameIn struct {
	ID   string `json:"id" jsonschema:"workspace id (or name)"`
	Name string `json:"name" jsonschema:"service name"`
}

type serviceStatusIn struct {
	ID   string `json:"id" jsonschema:"workspace id (or name)"`
	Name string `json:"name,omitempty" jsonschema:"service name (default: list every service)"`
}

type serviceStopIn struct {
	ID           string `json:"id" jsonschema:"workspace id (or name)"`
	Name         string `json:"name" jsonschema:"service name"`
	GraceSeconds int    `json:"grace_seconds,omitempty" jsonschema:"SIGTERM, then SIGKILL after this many seconds (default 5, max 60)"`
}

type serviceRestartIn struct {
	ID          string `json:"id" jsonschema:"workspace id (or name)"`
	Name        string `json:"name" jsonschema:"service name"`
	WaitSeconds int    `json:"wait_seconds,omitempty" jsonschema:"wait up to this long for ready (default 30, max 50)"`
}

type serviceLogsIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	Name      string `json:"name" jsonschema:"service name"`
	Stream    string `json:"stream,omitempty" jsonschema:"stdout, stderr or both (default)"`
	TailLines int    `json:"tail_lines,omitempty" jsonschema:"the last N lines of each stream (default 50); ignored with cursor"`
	Cursor    string `json:"cursor,omitempty" jsonschema:"next_cursor of an earlier call: return what was written since"`
}

// serviceView is one service for the model.
type serviceView struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	PID         int    `json:"pid,omitempty"`
	Command     string `json:"command,omitempty"`
	Readiness   string `json:"readiness,omitempty"`
	StartedAt   string `json:"started_at,omitempty"`
	ReadyAt     string `json:"ready_at,omitempty"`
	EndedAt     string `json:"ended_at,omitempty"`
	ExitCode    *int   `json:"exit_code,omitempty"`
	Signal      string `json:"signal,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Message     string `json:"message,omitempty"`
	Restarts    int    `json:"restarts,omitempty"`
	StdoutTail  string `json:"stdout_tail,omitempty"`
	StderrTail  string `json:"stderr_tail,omitempty"`
	StdoutBytes int64  `json:"stdout_bytes"`
	StderrBytes int64  `json:"stderr_bytes"`
}

// serviceBrief is a service in a list (service_status without a name,
// workspace_status, workspace_summary).
type serviceBrief struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type serviceOut struct {
	ID      string      `json:"id"`
	Service serviceView `json:"service"`
	Hint    string      `json:"hint,omitempty"`
}

type serviceListOut struct {
	ID       string         `json:"id"`
	Services []serviceBrief `json:"services"`
	Hint     string         `json:"hint,omitempty"`
}

// serviceStatusOut is service_status's result: one service, or without a
// name the list of them.
type serviceStatusOut = either[serviceOut, serviceListOut]

type serviceLogsOut struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Stdout          string `json:"stdout,omitempty"`
	Stderr          string `json:"stderr,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	NextCursor      string `json:"next_cursor"`
	Hint            string `json:"hint,omitempty"`
}

func serviceTools() []toolSpec {
	return svcTools(
		defTool(toolDef{
			name: "service_start", group: "service", core: true,
			summary:     "Start a long-running service in a workspace (a dev server, a database) that keeps running between calls, waiting until a readiness check (file, tcp port, http URL or command) passes; a service that fails comes back with its last output lines.",
			description: "Start a long-running process (dev server, database) that keeps running between calls, and wait until ready: readiness file, tcp (port), http (url, 2xx/3xx) or command (exits 0). State ready, starting (follow with workspace_status or service_status) or failed (with its last output lines).",
			tune:        tuneService,
		}, toolServiceStart),
		defTool(toolDef{
			name: "service_status", group: "service", readOnly: true,
			summary:     "One service's state (starting, ready, failed, exited, stopped), pid, exit code, when it became ready and why it stopped; or every service of the workspace.",
			description: "Show a service: state (starting, ready, failed, exited, stopped), pid, exit code, ready_at, and why it ended (reason, message), with its last output lines if it failed. Without name, list every service of the workspace.",
		}, toolServiceStatus),
		defTool(toolDef{
			name: "service_logs", group: "service", readOnly: true,
			summary:     "A service's stdout and stderr: the last lines, or what came since a cursor.",
			description: "Read a service's stdout and stderr: the last tail_lines lines (default 50), or with cursor (next_cursor of an earlier call) what was written since. Long output is cut to fit; the cursor then continues after what was shown.",
			tune: func(s *jsonschema.Schema) {
				enum(s, "stream", "stdout", "stderr", "both")
				bounds(s, "tail_lines", 1, contract.MaxServiceTailLines)
			},
		}, toolServiceLogs),
		defTool(toolDef{
			name: "service_stop", group: "service", destructive: true, idempotent: true,
			summary:     "Stop a service: SIGTERM to its process group, SIGKILL to all its processes after a grace period.",
			description: "Stop a service: SIGTERM to its process group, then SIGKILL to every process it started after grace_seconds (default 5). Returns its final status (reason stopped or killed_after_grace). Its logs stay readable.",
			tune:        func(s *jsonschema.Schema) { bounds(s, "grace_seconds", 1, contract.MaxServiceGraceSeconds) },
		}, toolServiceStop),
		defTool(toolDef{
			name: "service_restart", group: "service", destructive: true,
			summary:     "Restart a service with the command, environment and readiness check it was started with.",
			description: "Stop a service (if running) and start it again with the spec it was started with, waiting for readiness like service_start. Its logs continue.",
			tune:        func(s *jsonschema.Schema) { bounds(s, "wait_seconds", 1, contract.MaxServiceWaitSeconds) },
		}, toolServiceRestart),
	)
}

func tuneService(s *jsonschema.Schema) {
	bounds(s, "wait_seconds", 1, contract.MaxServiceWaitSeconds)
	bounds(s, "max_restarts", 0, 100)
	enum(s, "restart", "no", "on-failure")
	enum(s, "readiness.kind", contract.ReadyFile, contract.ReadyTCP, contract.ReadyHTTP, contract.ReadyCommand)
	if r := prop(s, "readiness"); r != nil {
		bounds(r, "port", 1, 65535)
		bounds(r, "timeout_seconds", 1, contract.MaxReadyTimeoutSeconds)
		bounds(r, "interval_ms", 10, 60000)
	}
}

// svcTools makes specs register only on a Backend that has services.
func svcTools(specs ...toolSpec) []toolSpec {
	for i := range specs {
		add := specs[i].add
		specs[i].add = func(s *sdk.Server, h *handler) {
			if _, ok := h.b.(contract.ServiceBackend); ok {
				add(s, h)
			}
		}
	}
	return specs
}

func (h *handler) svcBackend() (contract.ServiceBackend, error) {
	sb, ok := h.b.(contract.ServiceBackend)
	if !ok {
		return nil, contract.Invalid("this pyro server has no services").WithHint("Run the process with workspace_exec in the background (nohup CMD > /tmp/x.log 2>&1 &).")
	}
	return sb, nil
}

func validateServiceName(name string) error { return contract.ValidateServiceName(name) }

// waitArg is a wait_seconds argument as a duration.
func waitArg(s int) (time.Duration, error) { return contract.ServiceWait(seconds(s)) }

func serviceStartRequest(in serviceStartIn) (contract.ServiceStartRequest, error) {
	req := contract.ServiceStartRequest{Name: in.Name, Command: in.Command, Argv: in.Argv, Cwd: in.Cwd, EnvVars: in.EnvVars,
		SecretEnv: in.SecretEnv, User: in.User, Restart: in.Restart, MaxRestarts: in.MaxRestarts, Wait: seconds(in.WaitSeconds)}
	if r := in.Readiness; r != nil {
		req.Readiness = contract.Readiness{Kind: r.Kind, Path: r.Path, Port: r.Port, URL: r.URL, Command: r.Command,
			TimeoutSeconds: r.TimeoutSeconds, IntervalMs: r.IntervalMs}
	}
	if err := contract.ValidateServiceStart(&req); err != nil {
		return contract.ServiceStartRequest{}, err
	}
	return req, nil
}

func toolServiceStart(ctx context.Context, h *handler, in serviceStartIn) (serviceOut, error) {
	req, err := serviceStartRequest(in)
	if err != nil {
		return serviceOut{}, err
	}
	sb, err := h.svcBackend()
	if err != nil {
		return serviceOut{}, err
	}
	var (
		st contract.ServiceStatus
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws, req.ID = id, id
		st, err = sb.ServiceStart(ctx, req)
		return err
	})
	if err != nil {
		return serviceOut{}, err
	}
	return h.serviceResult(ws, st)
}

func toolServiceStatus(ctx context.Context, h *handler, in serviceStatusIn) (serviceStatusOut, error) {
	if in.Name != "" {
		if err := validateServiceName(in.Name); err != nil {
			return serviceStatusOut{}, err
		}
	}
	sb, err := h.svcBackend()
	if err != nil {
		return serviceStatusOut{}, err
	}
	var (
		list []contract.ServiceStatus
		ws   string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		list, err = sb.ServiceStatus(ctx, id, in.Name)
		return err
	})
	if err != nil {
		return serviceStatusOut{}, err
	}
	if in.Name != "" && len(list) == 1 {
		o, err := h.serviceResult(ws, list[0])
		if err != nil {
			return serviceStatusOut{}, err
		}
		return eitherA[serviceOut, serviceListOut](o), nil
	}
	out := serviceListOut{ID: ws, Services: briefServices(list)}
	if len(list) == 0 {
		out.Hint = "No services; service_start starts one."
	}
	return eitherB[serviceOut](out), nil
}

func toolServiceStop(ctx context.Context, h *handler, in serviceStopIn) (serviceOut, error) {
	if err := validateServiceName(in.Name); err != nil {
		return serviceOut{}, err
	}
	grace, err := contract.ServiceGrace(seconds(in.GraceSeconds))
	if err != nil {
		return serviceOut{}, err
	}
	sb, err := h.svcBackend()
	if err != nil {
		return serviceOut{}, err
	}
	var (
		st contract.ServiceStatus
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		st, err = sb.ServiceStop(ctx, id, in.Name, grace)
		return err
	})
	if err != nil {
		return serviceOut{}, err
	}
	return h.serviceResult(ws, st)
}

func toolServiceRestart(ctx context.Context, h *handler, in serviceRestartIn) (serviceOut, error) {
	if err := validateServiceName(in.Name); err != nil {
		return serviceOut{}, err
	}
	wait, err := waitArg(in.WaitSeconds)
	if err != nil {
		return serviceOut{}, err
	}
	sb, err := h.svcBackend()
	if err != nil {
		return serviceOut{}, err
	}
	var (
		st contract.ServiceStatus
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		st, err = sb.ServiceRestart(ctx, id, in.Name, wait)
		return err
	})
	if err != nil {
		return serviceOut{}, err
	}
	return h.serviceResult(ws, st)
}

// parseServiceCursor reads a service_logs cursor: "STDOUT.STDERR" offsets.
func parseServiceCursor(c string) (int64, int64, error) {
	a, b, ok := strings.Cut(c, ".")
	o, err1 := strconv.ParseInt(a, 10, 64)
	e, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || o < 0 || e < 0 {
		return 0, 0, contract.Invalid("cursor %.40q is not a next_cursor from service_logs", c)
	}
	return o, e, nil
}

func toolServiceLogs(ctx context.Context, h *handler, in serviceLogsIn) (serviceLogsOut, error) {
	if err := validateServiceName(in.Name); err != nil {
		return serviceLogsOut{}, err
	}
	if err := contract.ValidateServiceStream(in.Stream); err != nil {
		return serviceLogsOut{}, err
	}
	req := contract.ServiceLogsRequest{Name: in.Name, Stream: in.Stream}
	if in.Cursor != "" {
		o, e, err := parseServiceCursor(in.Cursor)
		if err != nil {
			return serviceLogsOut{}, err
		}
		// What fits the result; the cursor then moves past what was shown.
		req.StdoutOffset, req.StderrOffset, req.MaxBytes = o, e, min(h.budget(), 256<<10)
	} else {
		n, err := contract.LimitOrDefault("tail_lines", in.TailLines, contract.DefaultServiceTailLines, contract.MaxServiceTailLines)
		if err != nil {
			return serviceLogsOut{}, err
		}
		req.TailLines, req.MaxBytes = n, 64<<10
	}
	sb, err := h.svcBackend()
	if err != nil {
		return serviceLogsOut{}, err
	}
	var (
		l  contract.ServiceLogs
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws, req.ID = id, id
		l, err = sb.ServiceLogs(ctx, req)
		return err
	})
	if err != nil {
		return serviceLogsOut{}, err
	}
	return h.serviceLogsResult(ws, in.Name, l, in.Cursor != "")
}

// serviceLogsResult fits a service's logs into the budget. From a cursor
// each stream shows its first bytes and the cursor moves past them; a
// tail shows each stream's last bytes and the cursor is at the end.
func (h *handler) serviceLogsResult(ws, name string, l contract.ServiceLogs, fromCursor bool) (serviceLogsOut, error) {
	var out, errb []byte
	var outNext, errNext int64
	if l.Stdout != nil {
		out, outNext = l.Stdout.Data, l.Stdout.Next
	}
	if l.Stderr != nil {
		errb, errNext = l.Stderr.Data, l.Stderr.Next
	}
	cut := func(b []byte, n int, next int64) ([]byte, int64, bool) {
		if len(b) <= n {
			return b, next, false
		}
		if fromCursor {
			b2 := trimPartialRune(b[:n])
			return b2, next - int64(len(b)-len(b2)), true
		}
		start := len(b) - n
		for start < len(b) && b[start]&0xC0 == 0x80 {
			start++
		}
		return b[start:], next, true
	}
	build := func(allow int) serviceLogsOut {
		a, b := splitAllowance(allow, len(out), len(errb))
		so, on, ot := cut(out, a, outNext)
		se, en, et := cut(errb, b, errNext)
		v := serviceLogsOut{ID: ws, Name: name, Stdout: SafeText(so).S, Stderr: SafeText(se).S,
			StdoutTruncated: ot, StderrTruncated: et, NextCursor: fmt.Sprintf("%d.%d", on, en)}
		var hints []string
		for _, c := range []struct {
			name string
			ch   *contract.LogChunk
		}{{"stdout", l.Stdout}, {"stderr", l.Stderr}} {
			if c.ch == nil {
				continue
			}
			if c.ch.Skipped > 0 {
				hints = append(hints, fmt.Sprintf("%d bytes of %s before this rotated away (each stream keeps its last few MiB).", c.ch.Skipped, c.name))
			}
			if c.ch.Lost > 0 {
				hints = append(hints, fmt.Sprintf("%d bytes of %s were lost: the guest's log space was full.", c.ch.Lost, c.name))
			}
		}
		if ot || et {
			if fromCursor {
				hints = append(hints, "Cut to fit: call again with cursor=next_cursor for the rest.")
			} else {
				hints = append(hints, "Cut to fit (newest kept); use a smaller tail_lines, or the log files under /run/pyro/services/"+name+"/ with workspace_exec (grep, tail).")
			}
		} else {
			hints = append(hints, "Call again with cursor=next_cursor for what it writes next.")
		}
		v.Hint = strings.Join(hints, " ")
		return v
	}
	data, _, err := fit(h, min(len(out)+len(errb), h.budget()), build)
	return data, err
}

func viewService(s contract.ServiceStatus, tailAllow int) serviceView {
	a, b := splitAllowance(tailAllow, len(s.StdoutTail), len(s.StderrTail))
	v := serviceView{Name: s.Name, State: s.State, PID: s.PID, Command: clip(s.Command, 300), Readiness: clip(s.Readiness, 300),
		StartedAt: timeString(s.StartedAt), ReadyAt: timeString(s.ReadyAt), EndedAt: timeString(s.EndedAt),
		ExitCode: s.ExitCode, Signal: s.Signal, Reason: s.Reason, Message: clip(word(s.Message), 1000), Restarts: s.Restarts,
		StdoutTail: lastBytes(s.StdoutTail, a), StderrTail: lastBytes(s.StderrTail, b),
		StdoutBytes: s.StdoutBytes, StderrBytes: s.StderrBytes}
	return v
}

// lastBytes is the last n bytes of b as text, starting on a character.
func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		for len(b) > 0 && b[0]&0xC0 == 0x80 {
			b = b[1:]
		}
	}
	return SafeText(b).S
}

func briefServices(list []contract.ServiceStatus) []serviceBrief {
	out := make([]serviceBrief, len(list))
	for i, s := range list {
		out[i] = serviceBrief{Name: s.Name, State: s.State, PID: s.PID, ExitCode: s.ExitCode, Reason: s.Reason}
	}
	return out
}

// serviceResult shapes one service's status into the budget, with a hint
// for what to do next.
func (h *handler) serviceResult(ws string, s contract.ServiceStatus) (serviceOut, error) {
	var hint string
	switch s.State {
	case contract.ServiceReady:
		hint = "Running in the background until stopped; reach it from workspace_exec (e.g. curl)"
		if h.tools["port_publish"] {
			hint += ", or from the host with port_publish"
		}
		hint += ". service_logs shows its output."
	case contract.ServiceStarting:
		hint = "Not ready yet: call service_status with this name to follow it, or service_logs to see its output."
	case contract.ServiceFailed:
		hint = "It failed (reason, message, and its last output lines in stdout_tail/stderr_tail). Fix the cause and service_start it again; service_logs shows more."
	case contract.ServiceExited:
		hint = "It exited by itself. service_logs shows its output; service_restart runs it again."
	}
	build := func(allow int) serviceOut {
		return serviceOut{ID: ws, Service: viewService(s, allow), Hint: hint}
	}
	data, _, err := fit(h, len(s.StdoutTail)+len(s.StderrTail), build)
	return data, err
}
