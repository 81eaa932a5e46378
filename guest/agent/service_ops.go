package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// The service operations (one handler each in the dispatch table) and the
// services table they work on; the supervisor is in service.go.

// serviceStart starts a service and waits for it to settle (WaitMs).
func (s *Server) serviceStart(_ *stream, a *proto.ServiceStartArgs) (*proto.ServiceStatus, error) {
	sv, err := s.newService(a)
	if err != nil {
		return nil, err
	}
	if err := s.services.add(sv, nil); err != nil {
		return nil, err
	}
	sv.waitStarted(msOr(a.WaitMs, proto.DefaultServiceWait))
	st := sv.status(true)
	return &st, nil
}

// waitStarted waits until the service is ready or has ended, at most d,
// but in any case until its process has started (or failed to), so the
// answer has its pid.
func (sv *service) waitStarted(d time.Duration) {
	t0 := time.Now()
	sv.wait(spawnWait, func(st *proto.ServiceStatus) bool { return st.PID != 0 || settled(st) })
	sv.wait(d-time.Since(t0), settled)
}

// spawnWait bounds the wait for a service's process to start.
const spawnWait = 10 * time.Second

// add puts sv in the table and starts its supervisor. A service of that
// name that still runs is EEXIST; one that ended gives its place (and its
// logs, unless keep carries them over: a restart). A full table makes
// room by forgetting the service that ended first.
func (t *services) add(sv *service, keep *service) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*service{}
	}
	name := sv.spec.Name
	if old, ok := t.m[name]; ok && old != keep {
		if st := old.status(false); st.Running() {
			return &proto.Error{Code: "EEXIST", Message: fmt.Sprintf(
				"service %s is already running (pid %d, %s); stop or restart it, or pick another name", name, st.PID, st.State)}
		}
		delete(t.m, name)
	}
	if _, ok := t.m[name]; !ok && len(t.m) >= proto.MaxServices {
		var oldest *service
		var at time.Time
		for _, o := range t.m {
			if st := o.status(false); !st.Running() && (oldest == nil || st.EndedAt.Before(at)) {
				oldest, at = o, st.EndedAt
			}
		}
		if oldest == nil {
			return &proto.Error{Code: proto.CodeBusy, Message: fmt.Sprintf(
				"%d services are running, the most one workspace keeps; stop one first", proto.MaxServices)}
		}
		delete(t.m, oldest.spec.Name)
		removeLogs(oldest.logs)
	}
	sv.logs = filepath.Join(t.logDir(), name)
	if keep != nil {
		sv.out, sv.err = keep.out, keep.err
		sv.st.Restarts = 0
	} else {
		if err := os.MkdirAll(sv.logs, 0o755); err != nil {
			return fmt.Errorf("creating the service's log directory: %w", err)
		}
		var err error
		if sv.out, err = openLog(filepath.Join(sv.logs, proto.StreamStdout)); err != nil {
			return fmt.Errorf("opening the service's log: %w", err)
		}
		if sv.err, err = openLog(filepath.Join(sv.logs, proto.StreamStderr)); err != nil {
			sv.out.close()
			return fmt.Errorf("opening the service's log: %w", err)
		}
	}
	t.m[name] = sv
	go sv.supervise()
	return nil
}

func (t *services) get(name string) (*service, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sv, ok := t.m[name]
	if !ok {
		return nil, &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("no service named %q; service_list shows the services", name)}
	}
	return sv, nil
}

func (t *services) all() []*service {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*service, 0, len(t.m))
	for _, sv := range t.m {
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

func (s *Server) serviceStatus(_ *stream, a *proto.ServiceNameArgs) (*proto.ServiceStatus, error) {
	sv, err := s.services.get(a.Name)
	if err != nil {
		return nil, err
	}
	st := sv.status(true)
	return &st, nil
}

func (s *Server) serviceList(*stream, *proto.Empty) (*proto.ServiceList, error) {
	l := &proto.ServiceList{Services: []proto.ServiceStatus{}}
	for _, sv := range s.services.all() {
		l.Services = append(l.Services, sv.status(false))
	}
	return l, nil
}

func graceOf(ms int64) (time.Duration, error) {
	g := msOr(ms, proto.DefaultServiceGrace)
	if ms < 0 || g > proto.MaxServiceGrace {
		return 0, invalidf("grace_ms %d: 0 to %d", ms, proto.MaxServiceGrace.Milliseconds())
	}
	return g, nil
}

func (s *Server) serviceStop(_ *stream, a *proto.ServiceStopArgs) (*proto.ServiceStatus, error) {
	grace, err := graceOf(a.GraceMs)
	if err != nil {
		return nil, err
	}
	sv, err := s.services.get(a.Name)
	if err != nil {
		return nil, err
	}
	sv.stop(grace)
	st := sv.status(false)
	return &st, nil
}

func (s *Server) serviceStopAll(_ *stream, a *proto.ServiceStopAllArgs) (*proto.ServiceList, error) {
	grace, err := graceOf(a.GraceMs)
	if err != nil {
		return nil, err
	}
	all := s.services.all()
	var wg sync.WaitGroup
	for _, sv := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sv.stop(grace)
		}()
	}
	wg.Wait()
	l := &proto.ServiceList{Services: []proto.ServiceStatus{}}
	for _, sv := range all {
		l.Services = append(l.Services, sv.status(false))
	}
	return l, nil
}

// serviceRestart stops the service if it runs and starts it again from
// its spec; its logs go on (a restart's output follows the last run's).
func (s *Server) serviceRestart(_ *stream, a *proto.ServiceRestartArgs) (*proto.ServiceStatus, error) {
	grace, err := graceOf(a.GraceMs)
	if err != nil {
		return nil, err
	}
	if a.WaitMs < 0 || msDuration(a.WaitMs) > proto.MaxServiceWait {
		return nil, invalidf("wait_ms %d: 0 to %d", a.WaitMs, proto.MaxServiceWait.Milliseconds())
	}
	old, err := s.services.get(a.Name)
	if err != nil {
		return nil, err
	}
	old.stop(grace)
	select {
	case <-old.done:
	default:
		return nil, &proto.Error{Code: proto.CodeBusy, Message: fmt.Sprintf("service %s did not end after SIGKILL; try again", a.Name)}
	}
	spec := old.spec
	spec.WaitMs = a.WaitMs
	sv, err := s.newService(&spec)
	if err != nil {
		return nil, err
	}
	if err := s.services.add(sv, old); err != nil {
		return nil, err
	}
	sv.waitStarted(msOr(a.WaitMs, proto.DefaultServiceWait))
	st := sv.status(true)
	return &st, nil
}

func (s *Server) serviceLogs(_ *stream, a *proto.ServiceLogsArgs) (*proto.ServiceLogs, error) {
	max := a.MaxBytes
	if max == 0 {
		max = proto.DefaultServiceLogRead
	}
	if max < 0 || max > proto.MaxServiceLogRead || a.TailLines < 0 || a.TailLines > proto.MaxServiceTailLines ||
		a.StdoutOffset < 0 || a.StderrOffset < 0 {
		return nil, invalidf("service_logs wants max_bytes up to %d, tail_lines 0 to %d and offsets >= 0",
			proto.MaxServiceLogRead, proto.MaxServiceTailLines)
	}
	sv, err := s.services.get(a.Name)
	if err != nil {
		return nil, err
	}
	read := func(l *logStream, off int64) *proto.LogChunk {
		var c proto.LogChunk
		if a.TailLines > 0 {
			c = l.tail(a.TailLines, max)
		} else {
			c = l.read(off, max)
		}
		return &c
	}
	var r proto.ServiceLogs
	switch a.Stream {
	case "", proto.StreamBoth:
		r.Stdout, r.Stderr = read(sv.out, a.StdoutOffset), read(sv.err, a.StderrOffset)
	case proto.StreamStdout:
		r.Stdout = read(sv.out, a.StdoutOffset)
	case proto.StreamStderr:
		r.Stderr = read(sv.err, a.StderrOffset)
	default:
		return nil, invalidf("stream %q: stdout, stderr or both", a.Stream)
	}
	return &r, nil
}
