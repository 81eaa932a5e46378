// Package agent is pyro's guest agent: the program that runs as PID 1
// inside every workspace VM and serves the host's requests.
//
// Data path: the host's workspace manager calls a proto.Client, which
// dials a virtio-vsock stream into the guest; the guest kernel hands it to
// the agent's listener, and Server.ServeConn answers it (exec, files, tar,
// sync/freeze, clock, poweroff, restored: a guest restored from a memory
// snapshot made its own (restored.go), and dial: the relay of a published port to
// a service on the guest's loopback, dial.go) with real Linux system calls. The wire
// format is in package proto; each operation is one row of the dispatch
// table (handlers), which ties its proto.Op to the method serving it.
//
// There is no separate agent binary: the pyro binary is the guest's /init,
// and cmd/pyro calls Main when it finds itself running as PID 1. Main does
// init's duties (mounts, kernel modules, switching to the root disk,
// reaping orphans), sets up the limits on user commands (cgroup.go) and
// then serves vsock (see init_linux.go). Serve works on any net.Listener
// without privileges, which is how the tests run it on the host.
// Importing the package does nothing.
package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Version is the pyro version the agent reports in Ping. cmd/pyro sets it
// before calling Main.
var Version = "dev"

// DefaultMaxStreams bounds the streams a Server serves at once.
const DefaultMaxStreams = 64

// handshakeTimeout bounds the wait for a new stream's hello and request.
const handshakeTimeout = 30 * time.Second

// Server serves agent requests. The zero value is ready to use and safe
// outside a guest: whole-guest operations (freeze, thaw, set_time,
// restored, poweroff) answer CodeUnsupported unless System provides them.
type Server struct {
	// MaxStreams bounds the streams served at once (DefaultMaxStreams
	// if 0); more get a CodeBusy error.
	MaxStreams int
	// System performs the whole-guest operations; nil means HostSystem.
	System System
	// Logf receives the agent's rare diagnostics; nil discards them.
	Logf func(format string, args ...any)
	// MaxDials bounds the dials (published-port connections) relayed at
	// once (DefaultMaxDials if 0); more get a CodeBusy error.
	MaxDials int

	dialMu sync.Mutex
	dials  int // dials being relayed
	// dialEnded, for tests, runs when a dial has given back its slot.
	dialEnded func()

	services services // long-running processes the agent supervises (service.go)
	shells   shells   // interactive shells (shell.go)

	// reaper, when set, starts and waits for exec'd processes (PID 1
	// mode: one loop reaps every child, see reaper.go).
	reaper *reaper
	// cgroups, when set, puts each exec in its own cgroup under the
	// limits on user commands (PID 1 mode, see cgroup.go).
	cgroups *cgroups
	// root, for tests and fuzzing, confines request paths: each path
	// is resolved under root (lexically) instead of /.
	root string
	// execArgv, for fuzzing, replaces every exec's command.
	execArgv []string
	// checked, for tests, runs after dispatch has checked a confined
	// request's paths and before the operation (a guest process racing
	// the check).
	checked func()
	// maxTarEntry, for fuzzing, bounds the size of each file tar_in
	// extracts (a few bytes of sparse header can describe terabytes).
	maxTarEntry int64
}

// Serve serves agent requests on l with a zero Server.
func Serve(l net.Listener) error { return (&Server{}).Serve(l) }

// Serve accepts streams from l and serves each in its own goroutine, at
// most MaxStreams at once. It returns only when l fails permanently (it
// is closed); transient accept errors are retried.
func (s *Server) Serve(l net.Listener) error {
	limit := s.MaxStreams
	if limit <= 0 {
		limit = DefaultMaxStreams
	}
	slots := make(chan struct{}, limit)
	rejecters := make(chan struct{}, 8)
	backoff := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logf("accept: %v (retrying in %v)", err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				s.ServeConn(c)
			}()
		default:
			select {
			case rejecters <- struct{}{}:
				go func() {
					defer func() { <-rejecters }()
					s.reject(c, limit)
				}()
			default:
				c.Close()
			}
		}
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// reject answers a stream over the limit with CodeBusy.
func (s *Server) reject(c net.Conn, max int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if v, err := proto.ReadHello(c); err != nil || v != proto.Version {
		c.Write(proto.Hello(proto.Version))
		return
	}
	c.Write(proto.Hello(proto.Version))
	proto.NewEncoder(c).WriteJSON(proto.FrameError, &proto.Error{Code: proto.CodeBusy,
		Message: fmt.Sprintf("the agent is already serving %d streams; wait for some requests to finish", max)})
}

// stream is one request being served.
type stream struct {
	conn net.Conn
	enc  *proto.Encoder
	dec  *proto.Decoder
	// after, if the handler sets it, runs once the Result is sent and the
	// stream closed (poweroff).
	after func()
}

// ServeConn serves one stream: hello, one request, its answer. It closes c.
func (s *Server) ServeConn(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	dec := proto.NewDecoder(c)
	v, err := proto.ReadHello(dec.Reader())
	if err != nil {
		return // not a pyro client, or gone: nothing useful to say
	}
	hello := proto.Hello(proto.Version)
	if v != proto.Version {
		c.Write(hello) // the client sees the mismatch and reports both versions
		return
	}
	var req proto.Request
	rerr := dec.ReadJSON(proto.FrameRequest, &req)
	if _, err := c.Write(hello); err != nil {
		return
	}
	st := &stream{conn: c, enc: proto.NewEncoder(c), dec: dec}
	if rerr != nil {
		st.fail(rerr)
		return
	}
	c.SetReadDeadline(time.Time{})
	res, err := s.dispatch(st, &req)
	if err != nil {
		st.fail(err)
		return
	}
	if err := st.enc.WriteJSON(proto.FrameResult, res); err != nil {
		// The host sees the stream end without an answer; say why here.
		s.logf("%s: sending the result to the host failed: %v", req.Op, err)
		return
	}
	if st.after != nil {
		c.Close()
		st.after()
	}
}

// fail sends err as the stream's Error frame.
func (st *stream) fail(err error) { st.enc.WriteJSON(proto.FrameError, toProtoError(err)) }

// handlers is the dispatch table: one row per operation, tying its
// proto.Op (name, argument and answer types) to the method that serves it.
var handlers = table(
	handle(proto.OpPing, (*Server).ping),
	handle(proto.OpExec, (*Server).exec),
	handle(proto.OpStat, (*Server).stat),
	handle(proto.OpList, (*Server).list),
	handle(proto.OpReadFile, (*Server).readFile),
	handle(proto.OpWriteFile, (*Server).writeFile),
	handle(proto.OpTarOut, (*Server).tarOut),
	handle(proto.OpTarIn, (*Server).tarIn),
	handle(proto.OpSync, (*Server).sync),
	handle(proto.OpFreeze, (*Server).freeze),
	handle(proto.OpThaw, (*Server).thaw),
	handle(proto.OpSetTime, (*Server).setTime),
	handle(proto.OpRestored, (*Server).restored),
	handle(proto.OpPoweroff, (*Server).poweroff),
	handle(proto.OpDial, (*Server).dial),
	handle(proto.OpServiceStart, (*Server).serviceStart),
	handle(proto.OpServiceStatus, (*Server).serviceStatus),
	handle(proto.OpServiceList, (*Server).serviceList),
	handle(proto.OpServiceLogs, (*Server).serviceLogs),
	handle(proto.OpServiceStop, (*Server).serviceStop),
	handle(proto.OpServiceRestart, (*Server).serviceRestart),
	handle(proto.OpServiceStopAll, (*Server).serviceStopAll),
	handle(proto.OpShellOpen, (*Server).shellOpen),
	handle(proto.OpShellRead, (*Server).shellRead),
	handle(proto.OpShellWrite, (*Server).shellWrite),
	handle(proto.OpShellSignal, (*Server).shellSignal),
	handle(proto.OpShellResize, (*Server).shellResize),
	handle(proto.OpShellClose, (*Server).shellClose),
	handle(proto.OpShellList, (*Server).shellList),
)

// handler serves one request: it decodes the arguments, checks the path
// they confine, and runs the operation, returning its Result payload.
type handler func(s *Server, st *stream, req *proto.Request) (any, error)

type row struct {
	op string
	h  handler
}

// handle makes op's row: f serves op's arguments and gives op's answer
// (nil with an error).
func handle[A, R any](op proto.Op[A, R], f func(s *Server, st *stream, args *A) (*R, error)) row {
	return row{op.Name, func(s *Server, st *stream, req *proto.Request) (any, error) {
		args, err := proto.DecodeArgs(op, req)
		if err != nil {
			return nil, err
		}
		if c, ok := any(&args).(proto.Confined); ok {
			if dir, p, follow := c.Confinement(); dir != "" && p != "" {
				if err := s.beneath(dir, p, follow); err != nil {
					return nil, err
				}
			}
		}
		if s.checked != nil {
			s.checked()
		}
		res, err := f(s, st, &args)
		if err != nil {
			return nil, err
		}
		return res, nil
	}}
}

func table(rows ...row) map[string]handler {
	m := make(map[string]handler, len(rows))
	for _, r := range rows {
		if _, dup := m[r.op]; dup {
			panic("agent: two handlers for " + r.op)
		}
		m[r.op] = r.h
	}
	return m
}

// dispatch runs one request and returns its Result payload.
func (s *Server) dispatch(st *stream, req *proto.Request) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logf("panic serving %q: %v\n%s", req.Op, r, debug.Stack())
			err = &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("agent bug: panic serving %s: %v", req.Op, r)}
		}
	}()
	h, ok := handlers[req.Op]
	if !ok {
		return nil, invalidf("unknown operation %q (this agent speaks protocol %d)", req.Op, proto.Version)
	}
	return h(s, st, req)
}

func (s *Server) ping(*stream, *proto.Empty) (*proto.PingResult, error) {
	r := &proto.PingResult{Version: Version, Protocol: proto.Version, PID: os.Getpid()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		r.Uptime = time.Duration(ts.Nano())
	}
	return r, nil
}

// path checks a request path and maps it to the file system.
func (s *Server) path(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", invalidf("path %q must be absolute", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", invalidf("path %q contains a NUL byte", p)
	}
	if s.root != "" {
		return filepath.Join(s.root, filepath.Clean(p)), nil
	}
	return p, nil
}

// beneath checks that path resolves inside dir: through "..", symlinks
// (followed for the last component only when follow is set) and the
// nearest existing ancestor for a path that does not exist yet (a file
// about to be written). It is how a workspace's paths stay in /workspace.
func (s *Server) beneath(dir, path string, follow bool) error {
	d, err := s.path(dir)
	if err != nil {
		return err
	}
	p, err := s.path(path)
	if err != nil {
		return err
	}
	outside := &proto.Error{Code: "EXDEV", Message: fmt.Sprintf(
		"%s is outside %s (it leads out through .. or a symlink); use a path inside %s", path, dir, dir)}
	rel, err := filepath.Rel(d, filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return outside
	}
	root, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(root)
	flags := uint64(unix.O_PATH | unix.O_CLOEXEC)
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for r, races := rel, 0; ; r = filepath.Dir(r) {
		fd, err := unix.Openat2(root, r, &unix.OpenHow{Flags: flags,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
		switch err {
		case nil:
			unix.Close(fd)
			return nil
		case unix.EXDEV, unix.ELOOP:
			return outside
		case unix.ENOENT, unix.ENOTDIR:
			if r == "." {
				return &fs.PathError{Op: "open", Path: dir, Err: err}
			}
			// Does not exist (yet): what matters is where its parent is.
			flags = unix.O_PATH | unix.O_CLOEXEC
			continue
		case unix.EAGAIN:
			if races++; races < 10 {
				r = filepath.Join(r, "x") // a rename raced the lookup: retry this one
				continue
			}
		case unix.ENOSYS:
			return &proto.Error{Code: proto.CodeUnsupported, Message: "this guest kernel lacks openat2 (Linux 5.6+), needed to confine paths"}
		}
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
}

func invalidf(format string, args ...any) *proto.Error {
	return &proto.Error{Code: proto.CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

// toProtoError gives err a code: its own, its errno's name, or internal.
func toProtoError(err error) *proto.Error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe
	}
	code := proto.CodeInternal
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if code = unix.ErrnoName(errno); code == "" {
			code = fmt.Sprintf("errno %d", int(errno))
		}
	}
	return &proto.Error{Code: code, Message: err.Error()}
}

// uploadReader reads the Data frames of an upload until End. The host
// closing the stream before End is errCancelled.
type uploadReader struct {
	dec *proto.Decoder
	buf []byte
	err error
}

var errCancelled = errors.New("the host closed the stream before the end of the upload (request cancelled)")

func (r *uploadReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		t, b, err := r.dec.ReadFrame()
		switch {
		case err == io.EOF:
			r.err = errCancelled
		case err != nil:
			r.err = err
		case t == proto.FrameData:
			r.buf = b
		case t == proto.FrameEnd:
			r.err = io.EOF
		default:
			r.err = &proto.Error{Code: proto.CodeProtocol, Message: fmt.Sprintf("unexpected %v frame in an upload", t)}
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// frameWriter writes bytes as frames of type t, at most ChunkSize each.
type frameWriter struct {
	enc *proto.Encoder
	t   proto.FrameType
}

func (w frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), proto.ChunkSize)
		if err := w.enc.WriteFrame(w.t, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}
