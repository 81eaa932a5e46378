package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Services: processes the agent starts and supervises across requests
// (proto's service operations). Each service has a supervisor goroutine
// that owns its process: it starts it in its own process group and its
// own cgroup (pyro-user/svc-NAME, under the limits on user commands but
// never swept or killed by an exec: the exec sweep only touches exec-*
// cgroups, and an exec's timeout only its own group and cgroup), pumps
// its stdout and stderr into the service's log (service_log.go), runs
// the readiness check (service_ready.go), and ends it when asked: SIGTERM
// to the group, and after the grace SIGKILL to the group and cgroup.kill
// for whatever left it. When the group leader exits, what is left of the
// service is killed with it: a service is one process tree.
//
// The services table keeps at most proto.MaxServices, ended ones
// included; an ended one stays listed (with why it ended) until a new
// service needs its place or a start reuses its name.

// servicePrefix names a service's cgroup under pyro-user.
const servicePrefix = "svc-"

// Restart backoff after a failure (restart "on-failure"): restartBackoff
// times the restarts so far, at most maxRestartBackoff.
const (
	restartBackoff    = 500 * time.Millisecond
	maxRestartBackoff = 5 * time.Second
)

// stopSlack is how long a stop waits past its grace for the service's
// supervisor to finish (reaping, draining the pipes).
const stopSlack = 10 * time.Second

// services is a Server's service table. The zero value is ready.
type services struct {
	// dir holds the services' logs ("" means proto.ServiceLogDir);
	// tests set a temporary directory.
	dir string

	mu sync.Mutex // guards m
	// Guarded by mu.
	m map[string]*service
}

func (t *services) logDir() string {
	if t.dir != "" {
		return t.dir
	}
	return proto.ServiceLogDir
}

// service is one service: its spec, its logs and its supervisor's state.
type service struct {
	s    *Server
	spec proto.ServiceStartArgs
	// Resolved at start: the program, its arguments, environment,
	// credentials and working directory.
	prog string
	argv []string
	env  []string
	cred *syscall.Credential
	cwd  string

	logs     string // the service's log directory
	out, err *logStream

	stopc    chan struct{} // closed by stop: end the service for good
	stopOnce sync.Once
	done     chan struct{} // closed when the supervisor has returned

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	st proto.ServiceStatus
	// Guarded by mu.
	changed chan struct{} // closed (and replaced) at every change of st
	// Guarded by mu.
	grace time.Duration // the stop's grace, set before stopc closes
}

// status returns the service's status; a failed one carries the last
// lines of its logs when withTail is set.
func (sv *service) status(withTail bool) proto.ServiceStatus {
	sv.mu.Lock()
	st := sv.st
	sv.mu.Unlock()
	st.StdoutBytes, st.StderrBytes = sv.out.size(), sv.err.size()
	if withTail && st.State == proto.ServiceFailed {
		st.Tail = &proto.ServiceTail{
			Stdout: sv.out.tail(proto.ServiceTailLines, proto.ServiceTailBytes).Data,
			Stderr: sv.err.tail(proto.ServiceTailLines, proto.ServiceTailBytes).Data,
		}
	}
	return st
}

// update changes the status and wakes its waiters.
func (sv *service) update(f func(st *proto.ServiceStatus)) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	f(&sv.st)
	close(sv.changed)
	sv.changed = make(chan struct{})
}

// wait waits until done(status) holds or d passes.
func (sv *service) wait(d time.Duration, done func(st *proto.ServiceStatus) bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		sv.mu.Lock()
		ok, ch := done(&sv.st), sv.changed
		sv.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// settled is true once a start has an answer: ready, or ended for good
// (a failure the restart policy retries still counts as starting).
func settled(st *proto.ServiceStatus) bool { return st.State != proto.ServiceStarting }

// stop asks the supervisor to end the service (once; a later grace is
// ignored) and waits until it has, at most the grace and stopSlack.
func (sv *service) stop(grace time.Duration) {
	sv.stopOnce.Do(func() {
		sv.mu.Lock()
		sv.grace = grace
		sv.mu.Unlock()
		close(sv.stopc)
	})
	sv.mu.Lock()
	grace = sv.grace
	sv.mu.Unlock()
	select {
	case <-sv.done:
	case <-time.After(grace + stopSlack):
	}
}

func msOr(ms int64, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return msDuration(ms)
}

// checkSpec checks a service's spec and resolves its program, user,
// environment and working directory, so that a bad spec is an error of
// the start, not a failed service.
func (s *Server) newService(a *proto.ServiceStartArgs) (*service, error) {
	if !proto.ServiceNamePattern.MatchString(a.Name) {
		return nil, invalidf("service name %q must match %s (lower case letters, digits, _ . -; up to 64)", a.Name, proto.ServiceNamePattern)
	}
	argv := a.Argv
	if a.Shell != "" {
		if len(argv) > 0 {
			return nil, invalidf("a service takes argv or shell, not both")
		}
		argv = []string{"/bin/sh", "-c", a.Shell}
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, invalidf("a service needs argv (a program and its arguments) or shell (a /bin/sh script)")
	}
	switch a.Restart {
	case "", proto.RestartNo, proto.RestartOnFailure:
	default:
		return nil, invalidf("restart %q: use %q or %q", a.Restart, proto.RestartNo, proto.RestartOnFailure)
	}
	if a.MaxRestarts < 0 || a.MaxRestarts > proto.MaxServiceRestarts {
		return nil, invalidf("max_restarts %d: 0 to %d", a.MaxRestarts, proto.MaxServiceRestarts)
	}
	if a.WaitMs < 0 || msDuration(a.WaitMs) > proto.MaxServiceWait {
		return nil, invalidf("wait_ms %d: 0 to %d", a.WaitMs, proto.MaxServiceWait.Milliseconds())
	}
	if err := checkReadiness(&a.Readiness); err != nil {
		return nil, err
	}
	cwd := a.Cwd
	if cwd == "" {
		cwd = "/workspace"
	}
	cwd, err := s.path(cwd)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(cwd); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, &proto.Error{Code: "ENOTDIR", Message: fmt.Sprintf("service cwd %s is not a directory", a.Cwd)}
	}
	cred, u, err := lookupUser(a.User)
	if err != nil {
		return nil, err
	}
	env, path, err := execEnv(a.Env, u)
	if err != nil {
		return nil, err
	}
	if s.execArgv != nil {
		argv = s.execArgv
	}
	prog, err := lookPath(argv[0], path, cwd)
	if err != nil {
		return nil, err
	}
	return &service{s: s, spec: *a, prog: prog, argv: argv, env: env, cred: cred, cwd: cwd,
		stopc: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}),
		st: proto.ServiceStatus{Name: a.Name, State: proto.ServiceStarting, Command: commandString(a),
			Readiness: readinessString(&a.Readiness)}}, nil
}

// commandString is a service's command, for people.
func commandString(a *proto.ServiceStartArgs) string {
	if a.Shell != "" {
		return clipString(a.Shell, 1024)
	}
	parts := make([]string, len(a.Argv))
	for i, s := range a.Argv {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?") {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		parts[i] = s
	}
	return clipString(strings.Join(parts, " "), 1024)
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// supervise runs the service, again after a failure while its restart
// policy allows, until it ends for good.
func (sv *service) supervise() {
	defer close(sv.done)
	for restarts := 0; ; restarts++ {
		failed := sv.run()
		if !failed || sv.stopping() || sv.spec.Restart != proto.RestartOnFailure {
			return
		}
		if restarts >= sv.spec.MaxRestarts {
			if sv.spec.MaxRestarts > 0 {
				sv.update(func(st *proto.ServiceStatus) {
					st.Message = fmt.Sprintf("%s; gave up after %d restarts", st.Message, restarts)
					st.Reason = proto.ReasonRestartsExhausted
				})
			}
			return
		}
		wait := min(restartBackoff*time.Duration(restarts+1), maxRestartBackoff)
		sv.update(func(st *proto.ServiceStatus) {
			st.State, st.Restarts = proto.ServiceStarting, restarts+1
			st.Message = fmt.Sprintf("%s; restart %d of %d in %v", st.Message, restarts+1, sv.spec.MaxRestarts, wait)
		})
		select {
		case <-sv.stopc:
			sv.update(func(st *proto.ServiceStatus) {
				st.State, st.Reason, st.Message = proto.ServiceStopped, proto.ReasonStopped, "stopped while waiting to restart"
				st.EndedAt = time.Now()
			})
			return
		case <-time.After(wait):
		}
	}
}

func (sv *service) stopping() bool {
	select {
	case <-sv.stopc:
		return true
	default:
		return false
	}
}

// run runs the service's process once, to its end, and reports whether
// that was a failure its restart policy retries.
func (sv *service) run() (failed bool) {
	s := sv.s
	outR, outW, err := os.Pipe()
	if err != nil {
		return sv.startFailed(err)
	}
	defer outR.Close()
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		return sv.startFailed(err)
	}
	defer errR.Close()
	defer errW.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return sv.startFailed(err)
	}
	defer devnull.Close()
	cmd := &exec.Cmd{Path: sv.prog, Args: sv.argv, Env: sv.env, Dir: sv.cwd, Stdin: devnull, Stdout: outW, Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: sv.cred}}
	cg, err := s.cgroups.startService(sv.spec.Name)
	if err != nil {
		return sv.startFailed(err)
	}
	defer cg.remove()
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.fd.Fd())
	}
	pid, waitc, err := s.reaper.start(cmd)
	if err != nil {
		return sv.startFailed(fmt.Errorf("starting %s: %w", sv.prog, err))
	}
	cg.unprotect(pid)
	if pid <= 1 {
		return sv.startFailed(fmt.Errorf("agent bug: started %s with pid %d", sv.prog, pid))
	}
	outW.Close()
	errW.Close()
	var pumps sync.WaitGroup
	for _, p := range []struct {
		r *os.File
		l *logStream
	}{{outR, sv.out}, {errR, sv.err}} {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := p.r.Read(buf)
				if n > 0 {
					p.l.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	start := time.Now()
	r := &sv.spec.Readiness
	sv.update(func(st *proto.ServiceStatus) {
		st.State, st.PID, st.StartedAt = proto.ServiceStarting, pid, start
		st.ReadyAt, st.EndedAt, st.ExitCode, st.Signal, st.Reason, st.Message = time.Time{}, time.Time{}, nil, "", "", ""
		if r.Kind == "" {
			st.State, st.ReadyAt = proto.ServiceReady, start
		}
	})
	var readyc chan error // nil without a check
	stopReady := make(chan struct{})
	if r.Kind != "" {
		readyc = make(chan error, 1)
		go func() { readyc <- sv.waitReady(stopReady, cg) }()
	}
	var (
		ws                                syscall.WaitStatus
		graceC                            <-chan time.Time
		stopping, killed, timedOut, ready bool
		notReady                          string
	)
	ready = r.Kind == ""
	stopc := (<-chan struct{})(sv.stopc)
	term := func(grace time.Duration) {
		syscall.Kill(-pid, syscall.SIGTERM)
		graceC = time.After(grace)
	}
wait:
	for {
		select {
		case ws = <-waitc:
			break wait
		case err := <-readyc:
			readyc = nil
			if err == nil {
				ready = true
				sv.update(func(st *proto.ServiceStatus) { st.State, st.ReadyAt = proto.ServiceReady, time.Now() })
				continue
			}
			timedOut, notReady = true, err.Error()
			if !stopping {
				term(proto.DefaultKillGrace)
			}
		case <-stopc:
			stopc, stopping = nil, true
			sv.mu.Lock()
			grace := sv.grace
			sv.mu.Unlock()
			term(grace)
		case <-graceC:
			graceC, killed = nil, true
			syscall.Kill(-pid, syscall.SIGKILL)
			cg.kill()
		}
	}
	close(stopReady)
	// The leader is gone: what is left of the service goes with it.
	syscall.Kill(-pid, syscall.SIGKILL)
	cg.kill()
	now := time.Now()
	outR.SetReadDeadline(now.Add(drainIdle))
	errR.SetReadDeadline(now.Add(drainIdle))
	pumps.Wait()
	if readyc != nil {
		<-readyc
	}

	code, sig := -1, ""
	switch {
	case ws.Exited():
		code = ws.ExitStatus()
	case ws.Signaled():
		sig = unix.SignalName(ws.Signal())
		if sig == "" {
			sig = "signal " + strconv.Itoa(int(ws.Signal()))
		}
	}
	how := fmt.Sprintf("exit code %d", code)
	if sig != "" {
		how = "killed by " + sig
	}
	state, reason, msg := proto.ServiceExited, proto.ReasonExited, "exited by itself ("+how+")"
	switch {
	case stopping && killed:
		state, reason = proto.ServiceStopped, proto.ReasonKilled
		msg = "stopped: SIGTERM did not end it within the grace, so it was killed (SIGKILL to its process group and cgroup)"
	case stopping:
		state, reason, msg = proto.ServiceStopped, proto.ReasonStopped, "stopped ("+how+" after SIGTERM)"
	case timedOut:
		state, reason = proto.ServiceFailed, proto.ReasonReadyTimeout
		msg = "never became ready: " + notReady + "; the service was killed"
	case !ready:
		state, reason, msg = proto.ServiceFailed, proto.ReasonExitedBeforeReady, "exited before it was ready ("+how+")"
	}
	sv.update(func(st *proto.ServiceStatus) {
		st.State, st.Reason, st.Message, st.EndedAt, st.PID, st.Signal = state, reason, msg, now, 0, sig
		c := code
		st.ExitCode = &c
	})
	return !stopping && (timedOut || code != 0)
}

// startFailed ends a service whose process could not start.
func (sv *service) startFailed(err error) bool {
	sv.update(func(st *proto.ServiceStatus) {
		st.State, st.Reason, st.Message, st.EndedAt, st.PID = proto.ServiceFailed, proto.ReasonStartFailed, err.Error(), time.Now(), 0
	})
	return !errors.Is(err, syscall.ENOENT) // a missing program stays missing
}

// startService creates a service's cgroup, pyro-user/svc-NAME, replacing
// (killing) what a previous run may have left in it.
func (c *cgroups) startService(name string) (*execCgroup, error) {
	if c == nil {
		return nil, nil
	}
	x := &execCgroup{cg: c, name: servicePrefix + name, dir: filepath.Join(c.user, servicePrefix+name)}
	x.remove()
	if err := os.Mkdir(x.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the service's cgroup: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(c.user, "pids.max")); err == nil {
		writeCgroup(x.dir, "pids.max", strings.TrimSpace(string(b)))
	}
	writeCgroup(x.dir, "memory.oom.group", "1")
	fd, err := os.OpenFile(x.dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		unix.Rmdir(x.dir)
		return nil, fmt.Errorf("opening the service's cgroup: %w", err)
	}
	x.fd = fd
	return x, nil
}

// remove kills what is left in a service's cgroup and removes it.
func (x *execCgroup) remove() {
	if x == nil {
		return
	}
	if x.fd != nil {
		x.fd.Close()
		x.fd = nil
	}
	err := unix.Rmdir(x.dir)
	if err != unix.EBUSY {
		return
	}
	x.kill()
	deadline := time.Now().Add(leftoverKillWait)
	for err == unix.EBUSY && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		err = unix.Rmdir(x.dir)
	}
}

// serviceLogTmpfsSize bounds the tmpfs at proto.ServiceLogDir (a share
// of the guest's RAM): 32 services' logs could otherwise hold 512 MiB.
// Past it, what services write is counted as lost (LogChunk.Lost).
const serviceLogTmpfsSize = "12%"
