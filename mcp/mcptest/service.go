package mcptest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

var _ contract.ServiceBackend = (*Backend)(nil)

// fakeService is one service of a fake workspace: its status and logs.
type fakeService struct {
	st       contract.ServiceStatus
	req      contract.ServiceStartRequest
	out, err []byte
}

// ServiceStatusOf returns a service's status as the fake keeps it.
func (b *Backend) ServiceStatusOf(id, name string) (contract.ServiceStatus, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		if s := w.svcs[name]; s != nil {
			return s.st, true
		}
	}
	return contract.ServiceStatus{}, false
}

// AppendServiceLog adds output to a service's logs, as if it wrote it.
func (b *Backend) AppendServiceLog(id, name string, stdout, stderr []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		if s := w.svcs[name]; s != nil {
			s.out, s.err = append(s.out, stdout...), append(s.err, stderr...)
			s.st.StdoutBytes, s.st.StderrBytes = int64(len(s.out)), int64(len(s.err))
		}
	}
}

// endServices marks a workspace's running services stopped (its VM stops,
// resets or goes). Called with mu held.
func (w *workspace) endServices(now time.Time) {
	for _, s := range w.svcs {
		if s.st.Running() {
			s.st.State, s.st.Reason, s.st.PID, s.st.EndedAt = contract.ServiceStopped, "stopped", 0, now
			s.st.Message = "stopped with its workspace"
		}
	}
}

// services lists a workspace's services by name. Called with mu held.
func (w *workspace) services() []contract.ServiceStatus {
	var out []contract.ServiceStatus
	for _, s := range w.svcs {
		out = append(out, s.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ServiceStart implements contract.ServiceBackend: a command whose line
// contains "crash" fails before ready, exiting 3 with "boom" on stderr;
// any other is ready at once.
func (b *Backend) ServiceStart(ctx context.Context, req contract.ServiceStartRequest) (contract.ServiceStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ServiceStart"); err != nil {
		return contract.ServiceStatus{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	if w.svcs == nil {
		w.svcs = map[string]*fakeService{}
	}
	if s := w.svcs[req.Name]; s != nil && s.st.Running() {
		return contract.ServiceStatus{}, contract.Exists(contract.ResourceService, req.Name).WithHint("service_status shows it; service_restart restarts it, or pick another name.")
	}
	if len(w.svcs) >= contract.MaxServicesPerWorkspace {
		return contract.ServiceStatus{}, contract.LimitReached("%d services", len(w.svcs))
	}
	cmd := req.Command
	if cmd == "" {
		cmd = strings.Join(req.Argv, " ")
	}
	b.seq++
	s := &fakeService{req: req, st: contract.ServiceStatus{Name: req.Name, State: contract.ServiceReady, PID: 1000 + b.seq, Command: cmd,
		Readiness: req.Readiness.Kind, StartedAt: b.now, ReadyAt: b.now}}
	s.out = []byte("started " + req.Name + "\n")
	if strings.Contains(cmd, "crash") {
		code := 3
		s.err = []byte("boom\n")
		s.st.State, s.st.PID, s.st.ReadyAt, s.st.EndedAt, s.st.ExitCode = contract.ServiceFailed, 0, time.Time{}, b.now, &code
		s.st.Reason, s.st.Message = "exited_before_ready", "exited before it was ready (exit code 3)"
		s.st.StdoutTail, s.st.StderrTail = s.out, s.err
	}
	s.st.StdoutBytes, s.st.StderrBytes = int64(len(s.out)), int64(len(s.err))
	w.svcs[req.Name] = s
	w.log(b.now, contract.LogService, "start "+req.Name, nil, s.st.State)
	return s.st, nil
}

func (w *workspace) service(name string) (*fakeService, error) {
	s := w.svcs[name]
	if s == nil {
		return nil, &contract.Error{Code: contract.CodeNotFound, Resource: contract.ResourceService, Name: name, Msg: fmt.Sprintf("no service named %q", name)}
	}
	return s, nil
}

// ServiceStatus implements contract.ServiceBackend.
func (b *Backend) ServiceStatus(ctx context.Context, id, name string) ([]contract.ServiceStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ServiceStatus"); err != nil {
		return nil, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return w.services(), nil
	}
	s, err := w.service(name)
	if err != nil {
		return nil, err
	}
	return []contract.ServiceStatus{s.st}, nil
}

// ServiceLogs implements contract.ServiceBackend.
func (b *Backend) ServiceLogs(ctx context.Context, req contract.ServiceLogsRequest) (contract.ServiceLogs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ServiceLogs"); err != nil {
		return contract.ServiceLogs{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.ServiceLogs{}, err
	}
	s, err := w.service(req.Name)
	if err != nil {
		return contract.ServiceLogs{}, err
	}
	chunk := func(b []byte, off int64) *contract.LogChunk {
		if req.TailLines > 0 {
			lines := strings.SplitAfter(string(b), "\n")
			if lines[len(lines)-1] == "" {
				lines = lines[:len(lines)-1]
			}
			t := strings.Join(lines[max(0, len(lines)-req.TailLines):], "")
			if len(t) > req.MaxBytes {
				t = t[len(t)-req.MaxBytes:]
			}
			return &contract.LogChunk{Data: []byte(t), Offset: int64(len(b) - len(t)), Next: int64(len(b)), Total: int64(len(b))}
		}
		off = min(off, int64(len(b)))
		end := min(int64(len(b)), off+int64(req.MaxBytes))
		return &contract.LogChunk{Data: slices.Clone(b[off:end]), Offset: off, Next: end, Total: int64(len(b))}
	}
	var l contract.ServiceLogs
	if req.Stream != "stderr" {
		l.Stdout = chunk(s.out, req.StdoutOffset)
	}
	if req.Stream != "stdout" {
		l.Stderr = chunk(s.err, req.StderrOffset)
	}
	return l, nil
}

// ServiceStop implements contract.ServiceBackend.
func (b *Backend) ServiceStop(ctx context.Context, id, name string, grace time.Duration) (contract.ServiceStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ServiceStop"); err != nil {
		return contract.ServiceStatus{}, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	s, err := w.service(name)
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	if s.st.Running() {
		s.st.State, s.st.Reason, s.st.PID, s.st.EndedAt = contract.ServiceStopped, "stopped", 0, b.now
		s.st.Message = fmt.Sprintf("stopped (SIGTERM, grace %v)", grace)
		w.log(b.now, contract.LogService, "stop "+name, nil, s.st.Message)
	}
	return s.st, nil
}

// ServiceRestart implements contract.ServiceBackend.
func (b *Backend) ServiceRestart(ctx context.Context, id, name string, wait time.Duration) (contract.ServiceStatus, error) {
	b.mu.Lock()
	w, err := b.get(id, true)
	var req contract.ServiceStartRequest
	if err == nil {
		var s *fakeService
		if s, err = w.service(name); err == nil {
			w.endServices(b.now)
			req = s.req
			delete(w.svcs, name)
		}
	}
	b.mu.Unlock()
	if err != nil {
		return contract.ServiceStatus{}, err
	}
	req.Wait = wait
	return b.ServiceStart(ctx, req)
}
