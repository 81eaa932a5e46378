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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
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

// refOp is a call on one workspace with no other arguments.
func refOp[R any](fn func(b contract.Backend, ctx context.Context, id string) (R, error)) handler {
	return op(func(ctx context.Context, s *server, a *refArgs) (any, error) {
		var r R
		err := s.on(ctx, a.ID, func(id string) (err error) {
			r, err = fn(s.b, ctx, id)
			return err
		})
		return r, err
	})
}

// optRefOp is refOp for a method of the optional interface I.
func optRefOp[I any, R any](what string, fn func(i I, ctx context.Context, id string) (R, error)) handler {
	return op(func(ctx context.Context, s *server, a *refArgs) (any, error) {
		i, err := optional[I](s.b, what)
		if err != nil {
			return nil, err
		}
		var r R
		err = s.on(ctx, a.ID, func(id string) (err error) {
			r, err = fn(i, ctx, id)
			return err
		})
		return r, err
	})
}

// The names optional interfaces go by in errors.
const (
	whatBackground = "background commands"
	whatNetwork    = "workspace network"
	whatSecrets    = "secrets"
	whatServices   = "services"
	whatShells     = "interactive shells"
)

var handlers map[contract.Op]handler

func init() {
	handlers = map[contract.Op]handler{
		OpHello: op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.opts.Hello, nil }),

		contract.OpCreate: op(func(ctx context.Context, s *server, a *contract.CreateRequest) (any, error) {
			if err := contract.ValidateCreate(a); err != nil {
				return nil, err
			}
			if len(a.Network) > 0 {
				if _, err := optional[contract.NetworkBackend](s.b, whatNetwork); err != nil {
					return nil, err
				}
			}
			if len(a.Secrets) > 0 {
				if _, err := optional[contract.SecretBackend](s.b, whatSecrets); err != nil {
					return nil, err
				}
			}
			return s.b.Create(ctx, *a)
		}),
		contract.OpList:   op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.b.List(ctx) }),
		contract.OpStatus: refOp(contract.Backend.Status),
		contract.OpUpdate: op(func(ctx context.Context, s *server, a *updateArgs) (any, error) {
			if err := contract.ValidateUpdate(a.UpdateRequest); err != nil {
				return nil, err
			}
			var w contract.Workspace
			err := s.on(ctx, a.ID, func(id string) (err error) {
				w, err = s.b.Update(ctx, id, a.UpdateRequest)
				return err
			})
			return w, err
		}),
		contract.OpStop:  refOp(contract.Backend.Stop),
		contract.OpStart: refOp(contract.Backend.Start),
		contract.OpDelete: refOp(func(b contract.Backend, ctx context.Context, id string) (any, error) {
			return nil, b.Delete(ctx, id)
		}),
		contract.OpSummary: refOp(contract.Backend.Summary),
		contract.OpLogs: op(func(ctx context.Context, s *server, a *contract.LogsRequest) (any, error) {
			if err := contract.ValidateLogs(a); err != nil {
				return nil, err
			}
			var p contract.LogPage
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				p, err = s.b.Logs(ctx, *a)
				return err
			})
			return p, err
		}),

		contract.OpExec: op(func(ctx context.Context, s *server, a *contract.ExecRequest) (any, error) {
			if err := contract.ValidateExec(a, false); err != nil {
				return nil, err
			}
			var r contract.ExecResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				r, err = s.b.Exec(ctx, *a)
				return err
			})
			return r, err
		}),
		OpExecStart: op(func(ctx context.Context, s *server, a *contract.ExecRequest) (any, error) {
			bb, err := optional[contract.BackgroundBackend](s.b, whatBackground)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateExec(a, true); err != nil {
				return nil, err
			}
			var v contract.BackgroundExec
			err = s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				v, err = bb.ExecStart(ctx, *a)
				return err
			})
			return v, err
		}),
		contract.OpExecStatus: op(func(ctx context.Context, s *server, a *contract.PollRequest) (any, error) {
			bb, err := optional[contract.BackgroundBackend](s.b, whatBackground)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidatePoll(*a); err != nil {
				return nil, err
			}
			var v contract.BackgroundExec
			err = s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				v, err = bb.ExecPoll(ctx, *a)
				return err
			})
			return v, err
		}),
		OpExecList: optRefOp(whatBackground, contract.BackgroundBackend.ExecList),

		contract.OpFileList: op(func(ctx context.Context, s *server, a *contract.ListFilesRequest) (any, error) {
			if err := contract.ValidateListFiles(a); err != nil {
				return nil, err
			}
			var l contract.FileListing
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				l, err = s.b.ListFiles(ctx, *a)
				return err
			})
			return l, err
		}),
		contract.OpFileRead: op(func(ctx context.Context, s *server, a *contract.ReadFileRequest) (any, error) {
			if err := contract.ValidateReadFile(a); err != nil {
				return nil, err
			}
			var c contract.FileContent
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				c, err = s.b.ReadFile(ctx, *a)
				return err
			})
			return c, err
		}),
		contract.OpFileWrite: op(func(ctx context.Context, s *server, a *contract.WriteFileRequest) (any, error) {
			if err := contract.ValidateWriteFile(a); err != nil {
				return nil, err
			}
			var r contract.WriteResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				r, err = s.b.WriteFile(ctx, *a)
				return err
			})
			return r, err
		}),
		contract.OpPatchApply: op(func(ctx context.Context, s *server, a *patchArgs) (any, error) {
			if err := contract.ValidatePatch(a.Patch); err != nil {
				return nil, err
			}
			var r contract.PatchResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				r, err = s.b.ApplyPatch(ctx, id, a.Patch)
				return err
			})
			return r, err
		}),
		contract.OpDiff: op(func(ctx context.Context, s *server, a *contract.DiffRequest) (any, error) {
			if err := contract.ValidateDiff(a); err != nil {
				return nil, err
			}
			var d contract.DiffResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				d, err = s.b.Diff(ctx, *a)
				return err
			})
			return d, err
		}),
		contract.OpExport: op(func(ctx context.Context, s *server, a *contract.ExportRequest) (any, error) {
			if err := contract.ValidateExport(a); err != nil {
				return nil, err
			}
			var r contract.ExportResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				r, err = s.b.Export(ctx, *a)
				return err
			})
			return r, err
		}),
		contract.OpSyncPush: op(func(ctx context.Context, s *server, a *contract.SyncPushRequest) (any, error) {
			if err := contract.ValidateSyncPush(a); err != nil {
				return nil, err
			}
			var r contract.SyncResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				r, err = s.b.SyncPush(ctx, *a)
				return err
			})
			return r, err
		}),

		contract.OpSnapshotCreate: op(func(ctx context.Context, s *server, a *nameArgs) (any, error) {
			if err := contract.ValidateName("name", a.Name); err != nil {
				return nil, err
			}
			var sn contract.Snapshot
			err := s.on(ctx, a.ID, func(id string) (err error) {
				sn, err = s.b.SnapshotCreate(ctx, id, a.Name)
				return err
			})
			return sn, err
		}),
		contract.OpSnapshotList: refOp(contract.Backend.SnapshotList),
		contract.OpSnapshotDelete: op(func(ctx context.Context, s *server, a *nameArgs) (any, error) {
			if err := contract.ValidateName("name", a.Name); err != nil {
				return nil, err
			}
			return nil, s.on(ctx, a.ID, func(id string) error { return s.b.SnapshotDelete(ctx, id, a.Name) })
		}),
		contract.OpReset: op(func(ctx context.Context, s *server, a *resetArgs) (any, error) {
			if a.Snapshot != "" {
				if err := contract.ValidateName("snapshot", a.Snapshot); err != nil {
					return nil, err
				}
			}
			var r contract.ResetResult
			err := s.on(ctx, a.ID, func(id string) (err error) {
				r, err = s.b.Reset(ctx, id, a.Snapshot)
				return err
			})
			return r, err
		}),

		contract.OpRun: op(func(ctx context.Context, s *server, a *contract.RunRequest) (any, error) {
			if err := contract.ValidateRun(a); err != nil {
				return nil, err
			}
			if len(a.Network) > 0 {
				if _, err := optional[contract.NetworkBackend](s.b, whatNetwork); err != nil {
					return nil, err
				}
			}
			return s.b.Run(ctx, *a)
		}),
		contract.OpEnvList: op(func(ctx context.Context, s *server, _ *noArgs) (any, error) { return s.b.Envs(ctx) }),

		contract.OpNetworkGrant: op(func(ctx context.Context, s *server, a *grantArgs) (any, error) {
			return grantOp(ctx, s, a, contract.NetworkBackend.NetworkGrant)
		}),
		contract.OpNetworkRevoke: op(func(ctx context.Context, s *server, a *grantArgs) (any, error) {
			return grantOp(ctx, s, a, contract.NetworkBackend.NetworkRevoke)
		}),
		contract.OpNetworkStatus: optRefOp(whatNetwork, contract.NetworkBackend.NetworkStatus),
		contract.OpPortPublish: op(func(ctx context.Context, s *server, a *contract.PublishRequest) (any, error) {
			nb, err := optional[contract.NetworkBackend](s.b, whatNetwork)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidatePublish(*a); err != nil {
				return nil, err
			}
			var p contract.PublishedPort
			err = s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				p, err = nb.PortPublish(ctx, *a)
				return err
			})
			return p, err
		}),
		contract.OpPortUnpublish: op(func(ctx context.Context, s *server, a *unpublishArgs) (any, error) {
			nb, err := optional[contract.NetworkBackend](s.b, whatNetwork)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateGuestPort(a.GuestPort); err != nil {
				return nil, err
			}
			return nil, s.on(ctx, a.ID, func(id string) error { return nb.PortUnpublish(ctx, id, a.GuestPort) })
		}),

		contract.OpSecretSet: op(func(ctx context.Context, s *server, a *secretSetArgs) (any, error) {
			sb, err := optional[contract.SecretBackend](s.b, whatSecrets)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateSecretName(a.Name); err != nil {
				return nil, err
			}
			if err := contract.ValidateSecretSource(a.Name, a.Source); err != nil {
				return nil, err
			}
			var w contract.Workspace
			err = s.on(ctx, a.ID, func(id string) (err error) {
				w, err = sb.SecretSet(ctx, id, a.Name, a.Source)
				return err
			})
			return w, err
		}),
		contract.OpSecretDelete: op(func(ctx context.Context, s *server, a *nameArgs) (any, error) {
			sb, err := optional[contract.SecretBackend](s.b, whatSecrets)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateSecretName(a.Name); err != nil {
				return nil, err
			}
			var w contract.Workspace
			err = s.on(ctx, a.ID, func(id string) (err error) {
				w, err = sb.SecretDelete(ctx, id, a.Name)
				return err
			})
			return w, err
		}),

		contract.OpServiceStart: op(func(ctx context.Context, s *server, a *contract.ServiceStartRequest) (any, error) {
			sb, err := optional[contract.ServiceBackend](s.b, whatServices)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateServiceStart(a); err != nil {
				return nil, err
			}
			var st contract.ServiceStatus
			err = s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				st, err = sb.ServiceStart(ctx, *a)
				return err
			})
			return st, err
		}),
		contract.OpServiceStatus: op(func(ctx context.Context, s *server, a *nameArgs) (any, error) {
			sb, err := optional[contract.ServiceBackend](s.b, whatServices)
			if err != nil {
				return nil, err
			}
			if a.Name != "" {
				if err := contract.ValidateServiceName(a.Name); err != nil {
					return nil, err
				}
			}
			var list []contract.ServiceStatus
			err = s.on(ctx, a.ID, func(id string) (err error) {
				list, err = sb.ServiceStatus(ctx, id, a.Name)
				return err
			})
			return list, err
		}),
		contract.OpServiceLogs: op(func(ctx context.Context, s *server, a *contract.ServiceLogsRequest) (any, error) {
			sb, err := optional[contract.ServiceBackend](s.b, whatServices)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateServiceLogs(a); err != nil {
				return nil, err
			}
			var l contract.ServiceLogs
			err = s.on(ctx, a.ID, func(id string) (err error) {
				a.ID = id
				l, err = sb.ServiceLogs(ctx, *a)
				return err
			})
			return l, err
		}),
		contract.OpServiceStop: op(func(ctx context.Context, s *server, a *serviceStopArgs) (any, error) {
			sb, err := optional[contract.ServiceBackend](s.b, whatServices)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateServiceName(a.Name); err != nil {
				return nil, err
			}
			grace, err := contract.ServiceGrace(a.Grace)
			if err != nil {
				return nil, err
			}
			var st contract.ServiceStatus
			err = s.on(ctx, a.ID, func(id string) (err error) {
				st, err = sb.ServiceStop(ctx, id, a.Name, grace)
				return err
			})
			return st, err
		}),
		contract.OpServiceRestart: op(func(ctx context.Context, s *server, a *serviceRestartArgs) (any, error) {
			sb, err := optional[contract.ServiceBackend](s.b, whatServices)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateServiceName(a.Name); err != nil {
				return nil, err
			}
			wait, err := contract.ServiceWait(a.Wait)
			if err != nil {
				return nil, err
			}
			var st contract.ServiceStatus
			err = s.on(ctx, a.ID, func(id string) (err error) {
				st, err = sb.ServiceRestart(ctx, id, a.Name, wait)
				return err
			})
			return st, err
		}),

		contract.OpShellOpen: op(func(ctx context.Context, s *server, a *contract.ShellOpenRequest) (any, error) {
			return shellOp(ctx, s, &a.ID, func() error { return contract.ValidateShellOpen(a) },
				func(sb contract.ShellBackend) (contract.ShellOutput, error) { return sb.ShellOpen(ctx, *a) })
		}),
		contract.OpShellRead: op(func(ctx context.Context, s *server, a *contract.ShellReadRequest) (any, error) {
			return shellOp(ctx, s, &a.ID, func() error { return contract.ValidateShellRead(a) },
				func(sb contract.ShellBackend) (contract.ShellOutput, error) { return sb.ShellRead(ctx, *a) })
		}),
		contract.OpShellWrite: op(func(ctx context.Context, s *server, a *contract.ShellWriteRequest) (any, error) {
			return shellOp(ctx, s, &a.ID, func() error { return contract.ValidateShellWrite(a) },
				func(sb contract.ShellBackend) (contract.ShellOutput, error) { return sb.ShellWrite(ctx, *a) })
		}),
		contract.OpShellSignal: op(func(ctx context.Context, s *server, a *contract.ShellSignalRequest) (any, error) {
			return shellOp(ctx, s, &a.ID, func() error { return contract.ValidateShellSignal(a) },
				func(sb contract.ShellBackend) (contract.ShellOutput, error) { return sb.ShellSignal(ctx, *a) })
		}),
		contract.OpShellResize: op(func(ctx context.Context, s *server, a *shellResizeArgs) (any, error) {
			sb, err := optional[contract.ShellBackend](s.b, whatShells)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateShellNumber(a.Shell); err != nil {
				return nil, err
			}
			if err := contract.ValidateShellSize(a.Cols, a.Rows, false); err != nil {
				return nil, err
			}
			var si contract.ShellInfo
			err = s.on(ctx, a.ID, func(id string) (err error) {
				si, err = sb.ShellResize(ctx, id, a.Shell, a.Cols, a.Rows)
				return err
			})
			return si, err
		}),
		contract.OpShellClose: op(func(ctx context.Context, s *server, a *shellArgs) (any, error) {
			sb, err := optional[contract.ShellBackend](s.b, whatShells)
			if err != nil {
				return nil, err
			}
			if err := contract.ValidateShellNumber(a.Shell); err != nil {
				return nil, err
			}
			var si contract.ShellInfo
			err = s.on(ctx, a.ID, func(id string) (err error) {
				si, err = sb.ShellClose(ctx, id, a.Shell)
				return err
			})
			return si, err
		}),
		contract.OpShellList: optRefOp(whatShells, contract.ShellBackend.ShellList),
	}
}

func grantOp[R any](ctx context.Context, s *server, a *grantArgs, fn func(nb contract.NetworkBackend, ctx context.Context, id string, grants []string) (R, error)) (any, error) {
	nb, err := optional[contract.NetworkBackend](s.b, whatNetwork)
	if err != nil {
		return nil, err
	}
	grants, err := contract.CanonicalGrants(a.Grants)
	if err != nil {
		return nil, err
	}
	var r R
	err = s.on(ctx, a.ID, func(id string) (err error) {
		r, err = fn(nb, ctx, id, grants)
		return err
	})
	return r, err
}

// shellOp runs a shell call whose request holds its workspace at *id.
func shellOp(ctx context.Context, s *server, id *string, validate func() error, fn func(contract.ShellBackend) (contract.ShellOutput, error)) (any, error) {
	sb, err := optional[contract.ShellBackend](s.b, whatShells)
	if err != nil {
		return nil, err
	}
	if err := validate(); err != nil {
		return nil, err
	}
	var o contract.ShellOutput
	err = s.on(ctx, *id, func(ref string) (err error) {
		*id = ref
		o, err = fn(sb)
		return err
	})
	return o, err
}
