package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
)

// Services (contract.ServiceBackend): the guest agent supervises them (see
// proto's service operations); the manager passes calls through, journals
// starts, stops and restarts, and ends a workspace's services cleanly
// (SIGTERM, grace, SIGKILL) before a stop, reset or delete takes its VM
// away. Their logs live in the guest's tmpfs (proto.ServiceLogDir), never
// on the disk, so no snapshot, diff or export holds them.
//
// Everything a service says on its way out to the model passes through
// scrubService and scrubLogs: the one place to redact a workspace's
// secrets from service output and status.

var _ contract.ServiceBackend = (*Manager)(nil)

// serviceGuest is the agent's service operations; *proto.Client has them.
// A guest without them (the tests' fake) has no services.
type serviceGuest interface {
	ServiceStart(ctx context.Context, args proto.ServiceStartArgs) (proto.ServiceStatus, error)
	ServiceStatus(ctx context.Context, name string) (proto.ServiceStatus, error)
	ServiceList(ctx context.Context) ([]proto.ServiceStatus, error)
	ServiceLogs(ctx context.Context, args proto.ServiceLogsArgs) (proto.ServiceLogs, error)
	ServiceStop(ctx context.Context, name string, grace time.Duration) (proto.ServiceStatus, error)
	ServiceRestart(ctx context.Context, name string, grace, wait time.Duration) (proto.ServiceStatus, error)
	ServiceStopAll(ctx context.Context, grace time.Duration) ([]proto.ServiceStatus, error)
}

var _ serviceGuest = (*proto.Client)(nil)

// serviceSlack is how much longer than the wait or grace it gives the
// agent a service call may take before the guest counts as not answering.
const serviceSlack = 15 * time.Second

// serviceListTimeout bounds the service listing in workspace_status and
// workspace_summary.
const serviceListTimeout = 5 * time.Second

// services returns the call's VM's service operations.
func (c *call) services() (serviceGuest, error) {
	sg, ok := c.h.Agent.(serviceGuest)
	if !ok {
		return nil, contract.Invalid("this workspace's guest has no services")
	}
	return sg, nil
}

// enterServices enters a call on a running workspace with its services,
// cut off after limit.
func (m *Manager) enterServices(ctx context.Context, id string, limit time.Duration) (*call, serviceGuest, error) {
	w, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	c, err := w.enterLimit(ctx, limit)
	if err != nil {
		return nil, nil, err
	}
	sg, err := c.services()
	if err != nil {
		c.end()
		return nil, nil, err
	}
	return c, sg, nil
}

// ServiceStart implements contract.ServiceBackend.
func (m *Manager) ServiceStart(ctx context.Context, req contract.ServiceStartRequest) (contract.ServiceStatus, error) {
	wait := req.Wait
	if wait <= 0 {
		wait = contract.DefaultServiceWaitSeconds * time.Second
	}
	c, sg, err := m.enterServices(ctx, req.ID, wait+serviceSlack)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	defer c.end()
	cwd := req.Cwd
	if cwd == "" {
		cwd = hostio.Workspace
	}
	if !strings.HasPrefix(cwd, "/") {
		cwd = filepath.Join(hostio.Workspace, cwd)
	}
	env, err := c.w.secretEnv(req.EnvVars, req.SecretEnv)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	r := req.Readiness
	args := proto.ServiceStartArgs{Name: req.Name, Argv: req.Argv, Shell: req.Command, Cwd: cwd,
		Env: env, User: req.User,
		Readiness: proto.Readiness{Kind: r.Kind, Path: r.Path, Port: r.Port, URL: r.URL, Command: r.Command,
			TimeoutMs: int64(r.TimeoutSeconds) * 1000, IntervalMs: int64(r.IntervalMs)},
		Restart: req.Restart, MaxRestarts: req.MaxRestarts, WaitMs: wait.Milliseconds()}
	start := m.now()
	c.h.services.Store(true) // from now on, stop, reset and delete end services first
	st, err := sg.ServiceStart(c.ctx, args)
	if err != nil {
		return contract.ServiceStatus{}, c.serviceErr("starting service "+req.Name, err)
	}
	c.w.logService("start", req.Name, fmt.Sprintf("%s (%s): %s", st.State, st.Readiness, st.Command), start)
	return c.w.scrubService(st), nil
}

// ServiceStatus implements contract.ServiceBackend.
func (m *Manager) ServiceStatus(ctx context.Context, id, name string) ([]contract.ServiceStatus, error) {
	c, sg, err := m.enterServices(ctx, id, serviceSlack)
	if err != nil {
		return nil, err
	}
	defer c.end()
	if name != "" {
		st, err := sg.ServiceStatus(c.ctx, name)
		if err != nil {
			return nil, c.serviceErr("reading service "+name, err)
		}
		return []contract.ServiceStatus{c.w.scrubService(st)}, nil
	}
	list, err := sg.ServiceList(c.ctx)
	if err != nil {
		return nil, c.serviceErr("listing services", err)
	}
	out := make([]contract.ServiceStatus, len(list))
	for i, st := range list {
		out[i] = c.w.scrubService(st)
	}
	return out, nil
}

// ServiceLogs implements contract.ServiceBackend.
func (m *Manager) ServiceLogs(ctx context.Context, req contract.ServiceLogsRequest) (contract.ServiceLogs, error) {
	c, sg, err := m.enterServices(ctx, req.ID, serviceSlack)
	if err != nil {
		return contract.ServiceLogs{}, err
	}
	defer c.end()
	l, err := sg.ServiceLogs(c.ctx, proto.ServiceLogsArgs{Name: req.Name, Stream: req.Stream, TailLines: req.TailLines,
		StdoutOffset: req.StdoutOffset, StderrOffset: req.StderrOffset, MaxBytes: int64(req.MaxBytes)})
	if err != nil {
		return contract.ServiceLogs{}, c.serviceErr("reading the logs of service "+req.Name, err)
	}
	return contract.ServiceLogs{Stdout: c.w.scrubLogs(l.Stdout), Stderr: c.w.scrubLogs(l.Stderr)}, nil
}

// ServiceStop implements contract.ServiceBackend.
func (m *Manager) ServiceStop(ctx context.Context, id, name string, grace time.Duration) (contract.ServiceStatus, error) {
	c, sg, err := m.enterServices(ctx, id, grace+serviceSlack)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	defer c.end()
	start := m.now()
	st, err := sg.ServiceStop(c.ctx, name, grace)
	if err != nil {
		return contract.ServiceStatus{}, c.serviceErr("stopping service "+name, err)
	}
	c.w.logService("stop", name, st.Message, start)
	return c.w.scrubService(st), nil
}

// ServiceRestart implements contract.ServiceBackend.
func (m *Manager) ServiceRestart(ctx context.Context, id, name string, wait time.Duration) (contract.ServiceStatus, error) {
	if wait <= 0 {
		wait = contract.DefaultServiceWaitSeconds * time.Second
	}
	grace := contract.DefaultServiceGraceSeconds * time.Second
	c, sg, err := m.enterServices(ctx, id, grace+wait+serviceSlack)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	defer c.end()
	start := m.now()
	st, err := sg.ServiceRestart(c.ctx, name, grace, wait)
	if err != nil {
		return contract.ServiceStatus{}, c.serviceErr("restarting service "+name, err)
	}
	c.w.logService("restart", name, st.State, start)
	return c.w.scrubService(st), nil
}

// serviceErr turns an agent error into the *contract.Error for the model.
func (c *call) serviceErr(what string, err error) error {
	if l := c.lost(); l != nil {
		return l
	}
	var pe *proto.Error
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "EEXIST":
			return &contract.Error{Code: contract.CodeExists, Resource: contract.ResourceService, Msg: pe.Message,
				Hint: "{{service.status}} shows it; {{service.restart}} restarts it, or pick another name."}
		case pe.Code == "ENOENT" && strings.Contains(pe.Message, "no service named"):
			return &contract.Error{Code: contract.CodeNotFound, Resource: contract.ResourceService, Msg: pe.Message,
				Hint: "{{service.status}} without a name lists the workspace's services."}
		case pe.Code == proto.CodeBusy:
			return contract.LimitReached("%s", pe.Message).WithHint("Stop a service you no longer need with {{service.stop}}, then retry.")
		case pe.Code == proto.CodeInvalid:
			return contract.Invalid("%s", pe.Message)
		}
	}
	return c.guestErr(what, "", err)
}

// logService journals a service start, stop or restart.
func (w *workspace) logService(what, name, detail string, start time.Time) {
	if _, err := w.journal.append(entry{Time: start, Kind: contract.LogService, Command: what + " " + name,
		Detail: firstLine(detail), Duration: int64(w.m.now().Sub(start))}); err != nil {
		w.m.log.Warn("writing the journal", "id", w.id, "err", err)
	}
}

// scrubService converts a service's status for the model, with the
// workspace's secrets redacted from its command, message, readiness and
// output tails.
func (w *workspace) scrubService(st proto.ServiceStatus) contract.ServiceStatus {
	set := w.redactor()
	s := contract.ServiceStatus{Name: st.Name, State: st.State, PID: st.PID, Command: set.String(st.Command), Readiness: set.String(st.Readiness),
		StartedAt: st.StartedAt, ReadyAt: st.ReadyAt, EndedAt: st.EndedAt, ExitCode: st.ExitCode, Signal: st.Signal,
		Reason: st.Reason, Message: set.String(st.Message), Restarts: st.Restarts, StdoutBytes: st.StdoutBytes, StderrBytes: st.StderrBytes}
	if st.Tail != nil {
		s.StdoutTail, s.StderrTail = set.Bytes(st.Tail.Stdout), set.Bytes(st.Tail.Stderr)
	}
	return s
}

// scrubLogs converts a log chunk for the model with the workspace's
// secrets redacted. Bytes at the chunk's end that may be the start of a
// secret are held back: Next stops before them, so the next read, which
// starts there, sees the whole value and redacts it.
func (w *workspace) scrubLogs(c *proto.LogChunk) *contract.LogChunk {
	if c == nil {
		return nil
	}
	out := &contract.LogChunk{Data: c.Data, Offset: c.Offset, Next: c.Next, Total: c.Total, First: c.First, Skipped: c.Skipped, Lost: c.Lost}
	if set := w.redactor(); set.Len() > 0 {
		var b bytes.Buffer
		rw := set.Writer(&b)
		rw.Write(c.Data)
		out.Data, out.Next = b.Bytes(), c.Next-int64(rw.Held())
	}
	return out
}

// endServices stops the services of a VM about to go away (stop, reset,
// delete, server close): SIGTERM, ServiceGraceOnStop, SIGKILL, so they
// may flush and exit cleanly. Only a VM that ever had a service started
// pays for the call.
func (w *workspace) endServices(h *vmHandle) {
	if h == nil || !h.services.Load() {
		return
	}
	sg, ok := h.Agent.(serviceGuest)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), contract.ServiceGraceOnStop+serviceSlack)
	defer cancel()
	if _, err := sg.ServiceStopAll(ctx, contract.ServiceGraceOnStop); err != nil {
		w.m.log.Warn("stopping the workspace's services", "id", w.id, "err", err)
	}
}

// runningServices lists a running workspace's services for its status
// and summary: nil when it has none, or the guest does not answer soon.
func (w *workspace) runningServices(ctx context.Context) []contract.ServiceStatus {
	h := w.handle()
	if h == nil || !h.services.Load() {
		return nil
	}
	sg, ok := h.Agent.(serviceGuest)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, serviceListTimeout)
	defer cancel()
	list, err := sg.ServiceList(ctx)
	if err != nil {
		w.m.log.Warn("listing the workspace's services", "id", w.id, "err", err)
		return nil
	}
	out := make([]contract.ServiceStatus, len(list))
	for i, st := range list {
		out[i] = w.scrubService(st)
	}
	return out
}
