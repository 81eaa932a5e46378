package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Options configure Serve.
type Options struct {
	// Hello is what op hello answers; PID, Protocol and Started are
	// filled in when zero.
	Hello Hello
	// Logger gets a record per failed call and per connection problem;
	// nil discards.
	Logger *slog.Logger
	// MaxRequestBytes bounds a request line (DefaultMaxRequestBytes when
	// 0); a longer one is answered with an error and skipped.
	MaxRequestBytes int
	// MaxInFlight bounds the calls one connection runs at once
	// (DefaultMaxInFlight when 0); past it the connection's next request
	// waits.
	MaxInFlight int
}

// Serve answers the control protocol on ln with b until ctx ends or ln
// fails, then closes ln, cancels the calls in flight and waits for them.
// Each connection may send any number of requests, which run
// concurrently; a connection that closes cancels its calls.
func Serve(ctx context.Context, ln net.Listener, b contract.Backend, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Hello.PID == 0 {
		opts.Hello.PID = os.Getpid()
	}
	if opts.Hello.Protocol == 0 {
		opts.Hello.Protocol = Protocol
	}
	if opts.Hello.Started.IsZero() {
		opts.Hello.Started = time.Now()
	}
	s := &server{b: b, opts: opts, log: opts.Logger}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, or a connection that went before it
			// was taken: the listener itself is fine.
			s.log.Warn("control: accepting a connection", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

type server struct {
	b    contract.Backend
	opts Options
	log  *slog.Logger
}

// serveConn reads requests until the client stops sending, runs each in
// its own goroutine, and writes each answer when it is ready.
func (s *server) serveConn(ctx context.Context, conn net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wmu   sync.Mutex // one answer at a time
		calls sync.WaitGroup
		sem   = make(chan struct{}, s.opts.MaxInFlight)
	)
	defer func() {
		calls.Wait()
		cancel()
		conn.Close()
	}()
	go func() { // the connection closes when the server stops
		<-ctx.Done()
		conn.SetReadDeadline(time.Now())
	}()
	write := func(r response) {
		line, err := marshal(r)
		if err != nil {
			line, _ = marshal(response{ID: r.ID, Error: toWire(contract.Internal("encoding the answer: "+err.Error(), err))})
		}
		wmu.Lock()
		defer wmu.Unlock()
		if _, err := conn.Write(append(line, '\n')); err != nil {
			s.log.Debug("control: writing an answer", "err", err)
		}
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		line, err := readLine(br, s.opts.MaxRequestBytes)
		if errors.Is(err, errTooLong) {
			write(response{Error: toWire(contract.Invalid("a request of more than %d bytes; the limit is %d", s.opts.MaxRequestBytes, s.opts.MaxRequestBytes))})
			continue
		}
		if err != nil {
			break
		}
		if len(line) == 0 {
			continue
		}
		var req request
		if err := unmarshal(line, &req, true); err != nil {
			write(response{Error: toWire(contract.Invalid("not a request (a JSON object with op and args on one line): %v", err))})
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			defer func() { <-sem }()
			result, err := s.call(ctx, req)
			if err != nil {
				write(response{ID: req.ID, Error: s.wireError(ctx, req.Op, err)})
				return
			}
			data, err := marshal(result)
			if err != nil {
				write(response{ID: req.ID, Error: toWire(contract.Internal("encoding the result: "+err.Error(), err))})
				return
			}
			write(response{ID: req.ID, Result: data})
		}()
	}
	// The client sent its last request. Calls still running go on while it
	// waits for their answers (it may have shut down only its write side),
	// and are cancelled when it hangs up.
	done := make(chan struct{})
	go func() {
		calls.Wait()
		close(done)
	}()
	if waitHangup(conn, done) {
		cancel()
	}
}

// waitHangup waits until the peer has closed conn (true) or done is
// closed (false).
func waitHangup(conn net.Conn, done <-chan struct{}) bool {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		<-done
		return false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		<-done
		return false
	}
	hung := false
	rc.Control(func(fd uintptr) {
		// With no events asked for, poll reports only a hang-up (the
		// peer closed both directions) or an error.
		pfd := []unix.PollFd{{Fd: int32(fd)}}
		for {
			select {
			case <-done:
				return
			default:
			}
			n, err := unix.Poll(pfd, 200)
			if err != nil && !errors.Is(err, unix.EINTR) {
				hung = true
				return
			}
			if n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				hung = true
				return
			}
		}
	})
	return hung
}

// wireError shapes err for the client, logging what is not an *Error.
func (s *server) wireError(ctx context.Context, op contract.Op, err error) *wireError {
	if e, ok := contract.AsError(err); ok {
		if e.Code == contract.CodeInternal {
			s.log.Error("control call failed", "op", op, "err", err)
		}
		return toWire(e)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return toWire(contract.Conflict("the call was cancelled: the pyro server is stopping").WithHint("Run it again once a server runs."))
	case errors.Is(err, context.DeadlineExceeded):
		return toWire(contract.Timeout("the operation did not finish in time"))
	}
	s.log.Error("control call failed", "op", op, "err", err)
	return toWire(contract.Internal("unexpected error: "+err.Error(), err))
}

// call runs one request.
func (s *server) call(ctx context.Context, req request) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("control call panicked", "op", req.Op, "panic", r, "stack", string(debug.Stack()))
			result, err = nil, contract.Internal(fmt.Sprintf("pyro crashed while running %s: %v", req.Op, r), nil)
		}
	}()
	h, ok := handlers[req.Op]
	if !ok {
		return nil, contract.Invalid("unknown op %.60q", req.Op)
	}
	return h(ctx, s, req.Args)
}

// handler runs one op with its raw arguments.
type handler func(ctx context.Context, s *server, args json.RawMessage) (any, error)

// op binds a handler taking decoded arguments of type A.
func op[A any](fn func(ctx context.Context, s *server, a *A) (any, error)) handler {
	return func(ctx context.Context, s *server, raw json.RawMessage) (any, error) {
		var a A
		if err := unmarshal(raw, &a, true); err != nil {
			var e *contract.Error
			if errors.As(err, &e) {
				return nil, e
			}
			return nil, contract.Invalid("bad arguments: %v", err)
		}
		return fn(ctx, s, &a)
	}
}

// on runs fn on the workspace ref names, by ID or name.
func (s *server) on(ctx context.Context, ref string, fn func(id string) error) error {
	return contract.OnWorkspace(ctx, s.b, ref, fn)
}

// optional returns the backend's optional interface I, or the error a
// face gives when the server lacks it.
func optional[I any](b contract.Backend, what string) (I, error) {
	i, ok := b.(I)
	if !ok {
		return i, contract.Invalid("this pyro server has no %s", what)
	}
	return i, nil
}

// Argument types of the calls whose methods take more than a request.
type (
	noArgs     struct{}
	refArgs    struct{ ID string }
	updateArgs struct {
		ID string
		contract.UpdateRequest
	}
	patchArgs struct{ ID, Patch string }
	nameArgs  struct{ ID, Name string }
	resetArgs struct{ ID, Snapshot string }
	grantArgs struct {
		ID     string
		Grants []string
	}
	unpublishArgs struct {
		ID        string
		GuestPort int
	}
	secretSetArgs struct {
		ID, Name string
		Source   contract.SecretSource
	}
	serviceStopArgs struct {
		ID, Name string
		Grace    time.Duration
	}
	serviceRestartArgs struct {
		ID, Name string
		Wait     time.Duration
	}
	shellArgs struct {
		ID    string
		Shell int
	}
	shellResizeArgs struct {
		ID                string
		Shell, Cols, Rows int
	}
)

// reqOp is a call whose arguments q (of type Q) name a workspace at
// *ref(q): validate checks q (nil: nothing to check), then fn runs with
// the workspace's reference resolved to its ID.
func reqOp[Q, R any](validate func(*Q) error, ref func(*Q) *string, fn func(b contract.Backend, ctx context.Context, q Q) (R, error)) handler {
	return op(func(ctx context.Context, s *server, q *Q) (any, error) {
		if validate != nil {
			if err := validate(q); err != nil {
				return nil, err
			}
		}
		var r R
		id := ref(q)
		err := s.on(ctx, *id, func(ws string) (err error) {
			*id = ws
			r, err = fn(s.b, ctx, *q)
			return err
		})
		return r, err
	})
}

// optOp is reqOp for a method of the optional interface I, which the
// backend must have.
func optOp[I, Q, R any](what string, validate func(*Q) error, ref func(*Q) *string, fn func(i I, ctx context.Context, q Q) (R, error)) handler {
	h := reqOp(validate, ref, func(b contract.Backend, ctx context.Context, q Q) (R, error) {
		return fn(b.(I), ctx, q)
	})
	return func(ctx context.Context, s *server, raw json.RawMessage) (any, error) {
		if _, err := optional[I](s.b, what); err != nil {
			return nil, err
		}
		return h(ctx, s, raw)
	}
}

// refOp is a call on one workspace with no other arguments.
func refOp[R any](fn func(b contract.Backend, ctx context.Context, id string) (R, error)) handler {
	return reqOp(nil, refID, func(b contract.Backend, ctx context.Context, a refArgs) (R, error) { return fn(b, ctx, a.ID) })
}

// optRefOp is refOp for a method of the optional interface I.
func optRefOp[I, R any](what string, fn func(i I, ctx context.Context, id string) (R, error)) handler {
	return optOp(what, nil, refID, func(i I, ctx context.Context, a refArgs) (R, error) { return fn(i, ctx, a.ID) })
}

// none is the result of the calls that have none.
type none *struct{}

// The workspace reference of each argument type.
func refID(a *refArgs) *string               { return &a.ID }
func nameID(a *nameArgs) *string             { return &a.ID }
func grantID(a *grantArgs) *string           { return &a.ID }
func execID(q *contract.ExecRequest) *string { return &q.ID }

// The names optional interfaces go by in errors.
const (
	whatBackground = "background commands"
	whatNetwork    = "workspace network"
	whatSecrets    = "secrets"
	whatServices   = "services"
	whatShells     = "interactive shells"
	whatForks      = "workspace forks"
)

func validateName(a *nameArgs) error { return contract.ValidateName("name", a.Name) }

func validateGrants(a *grantArgs) (err error) {
	a.Grants, err = contract.CanonicalGrants(a.Grants)
	return err
}

// needs checks that b has the optional interface I when used is set.
func needs[I any](b contract.Backend, what string, used bool) error {
	if !used {
		return nil
	}
	_, err := optional[I](b, what)
	return err
}

var handlers map[contract.Op]handler

func init() {
	type B = contract.Backend
	handlers = map[contract.Op]handler{
		OpHello: op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.opts.Hello, nil }),

		contract.OpCreate: op(func(ctx context.Context, s *server, a *contract.CreateRequest) (any, error) {
			if err := contract.ValidateCreate(a); err != nil {
				return nil, err
			}
			if err := needs[contract.NetworkBackend](s.b, whatNetwork, len(a.Network) > 0); err != nil {
				return nil, err
			}
			if err := needs[contract.SecretBackend](s.b, whatSecrets, len(a.Secrets) > 0); err != nil {
				return nil, err
			}
			return s.b.Create(ctx, *a)
		}),
		contract.OpList:   op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.b.List(ctx) }),
		contract.OpStatus: refOp(B.Status),
		contract.OpUpdate: reqOp(func(a *updateArgs) error { return contract.ValidateUpdate(a.UpdateRequest) },
			func(a *updateArgs) *string { return &a.ID },
			func(b B, ctx context.Context, a updateArgs) (contract.Workspace, error) {
				return b.Update(ctx, a.ID, a.UpdateRequest)
			}),
		contract.OpStop:  refOp(B.Stop),
		contract.OpStart: refOp(B.Start),
		contract.OpDelete: refOp(func(b B, ctx context.Context, id string) (none, error) {
			return nil, b.Delete(ctx, id)
		}),
		contract.OpSummary: refOp(B.Summary),
		contract.OpLogs:    reqOp(contract.ValidateLogs, func(q *contract.LogsRequest) *string { return &q.ID }, B.Logs),

		contract.OpExec: reqOp(func(q *contract.ExecRequest) error { return contract.ValidateExec(q, false) }, execID, B.Exec),
		OpExecStart: optOp(whatBackground, func(q *contract.ExecRequest) error { return contract.ValidateExec(q, true) }, execID,
			contract.BackgroundBackend.ExecStart),
		contract.OpExecStatus: optOp(whatBackground, func(q *contract.PollRequest) error { return contract.ValidatePoll(*q) },
			func(q *contract.PollRequest) *string { return &q.ID }, contract.BackgroundBackend.ExecPoll),
		OpExecList: optRefOp(whatBackground, contract.BackgroundBackend.ExecList),

		contract.OpFileList: reqOp(contract.ValidateListFiles, func(q *contract.ListFilesRequest) *string { return &q.ID }, B.ListFiles),
		contract.OpFileRead: reqOp(contract.ValidateReadFile, func(q *contract.ReadFileRequest) *string { return &q.ID }, B.ReadFile),
		contract.OpFileWrite: reqOp(contract.ValidateWriteFile, func(q *contract.WriteFileRequest) *string { return &q.ID },
			B.WriteFile),
		contract.OpPatchApply: reqOp(func(a *patchArgs) error { return contract.ValidatePatch(a.Patch) },
			func(a *patchArgs) *string { return &a.ID },
			func(b B, ctx context.Context, a patchArgs) (contract.PatchResult, error) {
				return b.ApplyPatch(ctx, a.ID, a.Patch)
			}),
		contract.OpDiff:     reqOp(contract.ValidateDiff, func(q *contract.DiffRequest) *string { return &q.ID }, B.Diff),
		contract.OpExport:   reqOp(contract.ValidateExport, func(q *contract.ExportRequest) *string { return &q.ID }, B.Export),
		contract.OpSyncPush: reqOp(contract.ValidateSyncPush, func(q *contract.SyncPushRequest) *string { return &q.ID }, B.SyncPush),

		contract.OpSnapshotCreate: reqOp(func(q *contract.SnapshotRequest) error { return contract.ValidateName("name", q.Name) },
			func(q *contract.SnapshotRequest) *string { return &q.ID }, B.SnapshotCreate),
		contract.OpSnapshotList: refOp(B.SnapshotList),
		contract.OpSnapshotDelete: reqOp(validateName, nameID,
			func(b B, ctx context.Context, a nameArgs) (none, error) {
				return nil, b.SnapshotDelete(ctx, a.ID, a.Name)
			}),
		contract.OpReset: reqOp(func(a *resetArgs) error {
			if a.Snapshot == "" {
				return nil
			}
			return contract.ValidateName("snapshot", a.Snapshot)
		}, func(a *resetArgs) *string { return &a.ID },
			func(b B, ctx context.Context, a resetArgs) (contract.ResetResult, error) {
				return b.Reset(ctx, a.ID, a.Snapshot)
			}),
		contract.OpFork: optOp(whatForks, contract.ValidateFork, func(q *contract.ForkRequest) *string { return &q.ID },
			contract.Forker.Fork),

		contract.OpRun: op(func(ctx context.Context, s *server, a *contract.RunRequest) (any, error) {
			if err := contract.ValidateRun(a); err != nil {
				return nil, err
			}
			if err := needs[contract.NetworkBackend](s.b, whatNetwork, len(a.Network) > 0); err != nil {
				return nil, err
			}
			return s.b.Run(ctx, *a)
		}),
		contract.OpEnvList: op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.b.Envs(ctx) }),

		contract.OpNetworkGrant: optOp(whatNetwork, validateGrants, grantID,
			func(nb contract.NetworkBackend, ctx context.Context, a grantArgs) (contract.NetworkStatus, error) {
				return nb.NetworkGrant(ctx, a.ID, a.Grants)
			}),
		contract.OpNetworkRevoke: optOp(whatNetwork, validateGrants, grantID,
			func(nb contract.NetworkBackend, ctx context.Context, a grantArgs) (contract.RevokeResult, error) {
				return nb.NetworkRevoke(ctx, a.ID, a.Grants)
			}),
		contract.OpNetworkStatus: optRefOp(whatNetwork, contract.NetworkBackend.NetworkStatus),
		contract.OpPortPublish: optOp(whatNetwork, func(q *contract.PublishRequest) error { return contract.ValidatePublish(*q) },
			func(q *contract.PublishRequest) *string { return &q.ID }, contract.NetworkBackend.PortPublish),
		contract.OpPortUnpublish: optOp(whatNetwork, func(a *unpublishArgs) error { return contract.ValidateGuestPort(a.GuestPort) },
			func(a *unpublishArgs) *string { return &a.ID },
			func(nb contract.NetworkBackend, ctx context.Context, a unpublishArgs) (none, error) {
				return nil, nb.PortUnpublish(ctx, a.ID, a.GuestPort)
			}),

		contract.OpSecretSet: optOp(whatSecrets, func(a *secretSetArgs) error {
			if err := contract.ValidateSecretName(a.Name); err != nil {
				return err
			}
			return contract.ValidateSecretSource(a.Name, a.Source)
		}, func(a *secretSetArgs) *string { return &a.ID },
			func(sb contract.SecretBackend, ctx context.Context, a secretSetArgs) (contract.Workspace, error) {
				return sb.SecretSet(ctx, a.ID, a.Name, a.Source)
			}),
		contract.OpSecretDelete: optOp(whatSecrets, func(a *nameArgs) error { return contract.ValidateSecretName(a.Name) }, nameID,
			func(sb contract.SecretBackend, ctx context.Context, a nameArgs) (contract.Workspace, error) {
				return sb.SecretDelete(ctx, a.ID, a.Name)
			}),

		contract.OpServiceStart: optOp(whatServices, contract.ValidateServiceStart,
			func(q *contract.ServiceStartRequest) *string { return &q.ID }, contract.ServiceBackend.ServiceStart),
		contract.OpServiceStatus: optOp(whatServices, func(a *nameArgs) error {
			if a.Name == "" {
				return nil // every service
			}
			return contract.ValidateServiceName(a.Name)
		}, nameID, func(sb contract.ServiceBackend, ctx context.Context, a nameArgs) ([]contract.ServiceStatus, error) {
			return sb.ServiceStatus(ctx, a.ID, a.Name)
		}),
		contract.OpServiceLogs: optOp(whatServices, contract.ValidateServiceLogs,
			func(q *contract.ServiceLogsRequest) *string { return &q.ID }, contract.ServiceBackend.ServiceLogs),
		contract.OpServiceStop: optOp(whatServices, func(a *serviceStopArgs) (err error) {
			if err := contract.ValidateServiceName(a.Name); err != nil {
				return err
			}
			a.Grace, err = contract.ServiceGrace(a.Grace)
			return err
		}, func(a *serviceStopArgs) *string { return &a.ID },
			func(sb contract.ServiceBackend, ctx context.Context, a serviceStopArgs) (contract.ServiceStatus, error) {
				return sb.ServiceStop(ctx, a.ID, a.Name, a.Grace)
			}),
		contract.OpServiceRestart: optOp(whatServices, func(a *serviceRestartArgs) (err error) {
			if err := contract.ValidateServiceName(a.Name); err != nil {
				return err
			}
			a.Wait, err = contract.ServiceWait(a.Wait)
			return err
		}, func(a *serviceRestartArgs) *string { return &a.ID },
			func(sb contract.ServiceBackend, ctx context.Context, a serviceRestartArgs) (contract.ServiceStatus, error) {
				return sb.ServiceRestart(ctx, a.ID, a.Name, a.Wait)
			}),

		contract.OpShellOpen:  optOp(whatShells, contract.ValidateShellOpen, func(q *contract.ShellOpenRequest) *string { return &q.ID }, contract.ShellBackend.ShellOpen),
		contract.OpShellRead:  optOp(whatShells, contract.ValidateShellRead, func(q *contract.ShellReadRequest) *string { return &q.ID }, contract.ShellBackend.ShellRead),
		contract.OpShellWrite: optOp(whatShells, contract.ValidateShellWrite, func(q *contract.ShellWriteRequest) *string { return &q.ID }, contract.ShellBackend.ShellWrite),
		contract.OpShellSignal: optOp(whatShells, contract.ValidateShellSignal,
			func(q *contract.ShellSignalRequest) *string { return &q.ID }, contract.ShellBackend.ShellSignal),
		contract.OpShellResize: optOp(whatShells, func(a *shellResizeArgs) error {
			if err := contract.ValidateShellNumber(a.Shell); err != nil {
				return err
			}
			return contract.ValidateShellSize(a.Cols, a.Rows, false)
		}, func(a *shellResizeArgs) *string { return &a.ID },
			func(sb contract.ShellBackend, ctx context.Context, a shellResizeArgs) (contract.ShellInfo, error) {
				return sb.ShellResize(ctx, a.ID, a.Shell, a.Cols, a.Rows)
			}),
		contract.OpShellClose: optOp(whatShells, func(a *shellArgs) error { return contract.ValidateShellNumber(a.Shell) }, func(q *shellArgs) *string { return &q.ID },
			func(sb contract.ShellBackend, ctx context.Context, a shellArgs) (contract.ShellInfo, error) {
				return sb.ShellClose(ctx, a.ID, a.Shell)
			}),
		contract.OpShellList: optRefOp(whatShells, contract.ShellBackend.ShellList),
	}
}
