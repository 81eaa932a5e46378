package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Interactive shells (shell_open, shell_read, shell_write, shell_signal,
// shell_resize, shell_close, shell_list).
//
// A shell is a program on a pseudo-terminal: the agent opens /dev/ptmx,
// starts the program in a new session with the terminal's other end as
// its controlling terminal (stdin, stdout and stderr), and keeps the
// master. The shell outlives the stream that opened it; later streams
// name it by id. One goroutine per shell reads the master into an
// append-only ring (shellRing) of proto.ShellBuffer bytes, so a shell that
// writes without end costs a bounded amount of guest memory, and a reader
// that falls behind is told how many bytes it missed.
//
// A shell runs as a user command: in its own cgroup under the limits on
// user commands, like an exec (cgroup.go). Its cgroup stays active while
// the shell runs, so the sweep of earlier execs' leftovers never kills
// it; once the shell has exited, what it left running is a leftover like
// an exec's.

// shellReadChunk is what the reading goroutine takes from the master at
// once.
const shellReadChunk = 32 << 10

// shellWriteTimeout bounds a write to a terminal whose program does not
// read its input (the terminal's input buffer is full).
const shellWriteTimeout = 5 * time.Second

// shells is a Server's table of shells.
type shells struct {
	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	next int
	// Guarded by mu.
	byID map[int]*shell
}

// shell is one pseudo-terminal and the program on it.
type shell struct {
	id      int
	argv    []string
	pid     int
	ptm     *os.File // the master; closed by close
	started time.Time
	cg      *execCgroup
	done    chan struct{} // closed when the program has exited and its output is drained

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	out shellRing
	// Guarded by mu.
	lastOut time.Time
	// Guarded by mu.
	changed chan struct{} // closed and replaced when output arrives or the state changes
	// Guarded by mu.
	cols, rows int
	// Guarded by mu.
	exited bool
	// Guarded by mu.
	exitCode int
	// Guarded by mu.
	signal string
	// Guarded by mu.
	drained bool // the reader stopped: nothing more will arrive
}

// shellRing keeps the last max bytes of a stream. end counts every byte
// ever written; the byte at absolute offset o (start() <= o < end) is at
// b[o % max]: b grows by appending until it holds max bytes, at which
// point end == max, and after that it is written round.
type shellRing struct {
	b   []byte
	max int
	end int64
}

func (r *shellRing) start() int64 { return r.end - int64(len(r.b)) }

func (r *shellRing) write(p []byte) {
	if len(p) > r.max {
		r.end += int64(len(p) - r.max)
		p = p[len(p)-r.max:]
		if len(r.b) < r.max {
			// Too much at once to grow by appending: go round from here.
			r.b = append(r.b, make([]byte, r.max-len(r.b))...)
		}
	}
	for len(p) > 0 {
		if len(r.b) < r.max && r.end == int64(len(r.b)) {
			n := min(len(p), r.max-len(r.b))
			r.b = append(r.b, p[:n]...)
			r.end += int64(n)
			p = p[n:]
			continue
		}
		pos := int(r.end % int64(r.max))
		n := copy(r.b[pos:], p)
		r.end += int64(n)
		p = p[n:]
	}
}

// read copies the bytes from offset off (start() <= off <= end) into dst
// and returns how many.
func (r *shellRing) read(off int64, dst []byte) int {
	n := 0
	for n < len(dst) && off < r.end {
		pos := int(off % int64(r.max))
		k := copy(dst[n:], r.b[pos:min(len(r.b), pos+int(r.end-off))])
		n += k
		off += int64(k)
	}
	return n
}

// notify wakes the readers waiting for a change. The caller holds sh.mu.
func (sh *shell) notify() {
	close(sh.changed)
	sh.changed = make(chan struct{})
}

func (sh *shell) info() proto.ShellInfo {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return proto.ShellInfo{ID: sh.id, Argv: sh.argv, PID: sh.pid, Cols: sh.cols, Rows: sh.rows, Started: sh.started,
		Exited: sh.exited, ExitCode: sh.exitCode, Signal: sh.signal, Start: sh.out.start(), End: sh.out.end}
}

// get returns shell id.
func (t *shells) get(id int) (*shell, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sh := t.byID[id]; sh != nil {
		return sh, nil
	}
	return nil, &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("no shell %d (it was closed, or the guest restarted); shell_list shows the open ones", id)}
}

// add files sh under a new id, making room by forgetting the oldest
// exited shell if the table is full.
func (t *shells) add(sh *shell) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = map[int]*shell{}
	}
	if len(t.byID) >= proto.MaxShells {
		oldest := -1
		for id, o := range t.byID {
			o.mu.Lock()
			gone := o.exited && o.drained
			o.mu.Unlock()
			if gone && (oldest < 0 || id < oldest) {
				oldest = id
			}
		}
		if oldest < 0 {
			return &proto.Error{Code: proto.CodeBusy, Message: fmt.Sprintf("%d shells are open, the limit; close one first", proto.MaxShells)}
		}
		delete(t.byID, oldest)
	}
	t.next++
	sh.id = t.next
	t.byID[sh.id] = sh
	return nil
}

func (t *shells) remove(id int) {
	t.mu.Lock()
	delete(t.byID, id)
	t.mu.Unlock()
}

// loginShell is the program a shell_open without argv runs.
func loginShell(root string) []string {
	if fi, err := os.Stat(root + "/bin/bash"); err == nil && fi.Mode().IsRegular() {
		return []string{"/bin/bash", "-l"}
	}
	return []string{"/bin/sh", "-l"}
}

func shellSize(cols, rows int) (int, int, error) {
	if cols == 0 {
		cols = 80
	}
	if rows == 0 {
		rows = 24
	}
	if cols < 1 || rows < 1 || cols > proto.MaxShellCols || rows > proto.MaxShellRows {
		return 0, 0, invalidf("shell size %dx%d: columns and rows must be 1 to %d", cols, rows, proto.MaxShellCols)
	}
	return cols, rows, nil
}

// openPTY opens a new pseudo-terminal pair of the given size.
func openPTY(cols, rows int) (ptm, pts *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	fail := func(what string, err error) (*os.File, *os.File, error) {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return fail("unlocking the pseudo-terminal", err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}); err != nil {
		return fail("setting the terminal size", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		return fail("numbering the pseudo-terminal", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("opening "+name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), os.NewFile(uintptr(sfd), name), nil
}

// shellOpen starts a shell.
func (s *Server) shellOpen(st *stream, req *proto.ShellOpenArgs) (*proto.ShellInfo, error) {
	argv := req.Argv
	if req.Command != "" {
		if len(argv) > 0 {
			return nil, invalidf("shell_open takes argv or command, not both")
		}
		argv = []string{"/bin/sh", "-c", req.Command}
	}
	if len(argv) == 0 {
		argv = loginShell(s.root)
	}
	if s.execArgv != nil {
		// Fuzzing: a shell that exits at once, so none outlives its input.
		argv = []string{"true"}
	}
	if argv[0] == "" {
		return nil, invalidf("shell_open: the program name is empty")
	}
	cols, rows, err := shellSize(req.Cols, req.Rows)
	if err != nil {
		return nil, err
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if cwd, err = s.path(cwd); err != nil {
		return nil, err
	}
	cred, u, err := lookupUser(req.User)
	if err != nil {
		return nil, err
	}
	env, path, err := execEnv(req.Env, u)
	if err != nil {
		return nil, err
	}
	prog, err := lookPath(argv[0], path, cwd)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(cwd); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, &proto.Error{Code: "ENOTDIR", Message: fmt.Sprintf("shell_open: %s is not a directory", req.Cwd)}
	}
	ptm, pts, err := openPTY(cols, rows)
	if err != nil {
		return nil, err
	}
	defer pts.Close() // the child has it; the reader sees EOF once every holder is gone
	cmd := &exec.Cmd{Path: prog, Args: argv, Env: env, Dir: cwd, Stdin: pts, Stdout: pts, Stderr: pts,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: cred}}
	cg, err := s.cgroups.start()
	if err != nil {
		ptm.Close()
		return nil, err
	}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.fd.Fd())
	}
	sh := &shell{argv: argv, ptm: ptm, started: time.Now(), cg: cg, done: make(chan struct{}),
		out: shellRing{max: proto.ShellBuffer}, changed: make(chan struct{}), cols: cols, rows: rows}
	if err := s.shells.add(sh); err != nil {
		cg.done()
		ptm.Close()
		return nil, err
	}
	pid, waitc, err := s.reaper.start(cmd)
	if err != nil {
		s.shells.remove(sh.id)
		cg.done()
		ptm.Close()
		if errors.Is(err, syscall.EAGAIN) {
			return nil, &proto.Error{Code: "EAGAIN", Message: fmt.Sprintf("starting %s: %v: the guest's limit on user processes is used up; end some commands or shells first", prog, err)}
		}
		return nil, fmt.Errorf("starting %s: %w", prog, err)
	}
	cg.unprotect(pid)
	sh.pid = pid
	go sh.pump()
	go sh.wait(waitc)
	info := sh.info()
	return &info, nil
}

// pump copies the master's output into the ring until the terminal hangs
// up (every process holding its other end is gone) or the shell is closed.
func (sh *shell) pump() {
	buf := make([]byte, shellReadChunk)
	for {
		n, err := sh.ptm.Read(buf)
		if n > 0 {
			sh.mu.Lock()
			sh.out.write(buf[:n])
			sh.lastOut = time.Now()
			sh.notify()
			sh.mu.Unlock()
		}
		if err != nil {
			break // EIO: hung up; or closed
		}
	}
	sh.mu.Lock()
	sh.drained = true
	sh.notify()
	sh.mu.Unlock()
}

// wait records the program's exit, once its output is drained or
// drainIdle after the exit (background jobs may hold the terminal), so a
// reader that sees the shell exited has its last words. It gives the
// cgroup up once the output is drained, or drainMax later.
func (sh *shell) wait(waitc <-chan syscall.WaitStatus) {
	ws := <-waitc
	sh.waitDrained(drainIdle)
	sh.mu.Lock()
	sh.exited = true
	switch {
	case ws.Exited():
		sh.exitCode = ws.ExitStatus()
	case ws.Signaled():
		sh.exitCode, sh.signal = -1, unix.SignalName(ws.Signal())
		if sh.signal == "" {
			sh.signal = "signal " + strconv.Itoa(int(ws.Signal()))
		}
	}
	sh.notify()
	sh.mu.Unlock()
	sh.waitDrained(drainMax)
	sh.cg.done()
	close(sh.done)
}

// waitDrained waits at most d for the reader to stop.
func (sh *shell) waitDrained(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		sh.mu.Lock()
		drained, ch := sh.drained, sh.changed
		sh.mu.Unlock()
		if drained {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}

// shellRead returns a shell's output from a cursor, waiting as asked.
func (s *Server) shellRead(st *stream, req *proto.ShellReadArgs) (*proto.ShellReadResult, error) {
	sh, err := s.shells.get(req.ID)
	if err != nil {
		return nil, err
	}
	limit := req.Max
	if limit <= 0 {
		limit = proto.DefaultShellRead
	}
	if limit > proto.ShellBuffer || req.Cursor < 0 || req.WaitMs < 0 || req.IdleMs < 0 {
		return nil, invalidf("shell_read wants 0 <= cursor, max <= %d and waits not negative", proto.ShellBuffer)
	}
	begin := time.Now()
	deadline := begin.Add(min(msDuration(req.WaitMs), proto.MaxShellWait))
	idle := msDuration(req.IdleMs)
	var gone chan struct{}
	if req.WaitMs > 0 {
		// The host closing the stream ends the wait.
		gone = make(chan struct{})
		go func() {
			st.dec.ReadFrame()
			close(gone)
		}()
	}
	for {
		sh.mu.Lock()
		end := sh.out.end
		if req.Cursor > end {
			sh.mu.Unlock()
			return nil, invalidf("shell_read cursor %d is beyond the %d bytes shell %d has written", req.Cursor, end, req.ID)
		}
		from := max64(req.Cursor, sh.out.start())
		avail := end - from
		now := time.Now()
		quiet := now.Sub(maxTime(begin, sh.lastOut))
		over := sh.exited || sh.drained || avail >= int64(limit) || !now.Before(deadline)
		if idle > 0 {
			over = over || quiet >= idle
		} else {
			over = over || avail > 0
		}
		if over || req.WaitMs == 0 {
			data := make([]byte, min(avail, int64(limit)))
			n := sh.out.read(from, data)
			res := &proto.ShellReadResult{Cursor: from, Next: from + int64(n), Dropped: from - req.Cursor, End: end,
				Exited: sh.exited, ExitCode: sh.exitCode, Signal: sh.signal}
			sh.mu.Unlock()
			if _, err := (frameWriter{st.enc, proto.FrameData}).Write(data[:n]); err != nil {
				return nil, err
			}
			return res, nil
		}
		ch := sh.changed
		sh.mu.Unlock()
		wake := deadline
		if idle > 0 {
			wake = minTime(wake, now.Add(idle-quiet))
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-ch:
		case <-t.C:
		case <-gone:
			t.Stop()
			return nil, errCancelled
		}
		t.Stop()
	}
}

// shellWrite sends bytes to a shell's terminal.
func (s *Server) shellWrite(st *stream, req *proto.ShellWriteArgs) (*proto.ShellWriteResult, error) {
	sh, err := s.shells.get(req.ID)
	if err != nil {
		return nil, err
	}
	if len(req.Data) > proto.MaxShellWrite {
		return nil, invalidf("shell_write takes at most %d bytes at once, not %d", proto.MaxShellWrite, len(req.Data))
	}
	sh.mu.Lock()
	exited := sh.exited
	sh.mu.Unlock()
	if exited {
		return nil, &proto.Error{Code: "EPIPE", Message: fmt.Sprintf("shell %d has exited; read its last output, then close it or open another", req.ID)}
	}
	sh.ptm.SetWriteDeadline(time.Now().Add(shellWriteTimeout))
	n, err := sh.ptm.Write(req.Data)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("writing to shell %d's terminal: %w", req.ID, err)
	}
	return &proto.ShellWriteResult{N: n}, nil
}

// shellSignals maps shell_signal's names to signals.
var shellSignals = map[string]syscall.Signal{
	"INT": unix.SIGINT, "TERM": unix.SIGTERM, "KILL": unix.SIGKILL, "HUP": unix.SIGHUP,
	"QUIT": unix.SIGQUIT, "TSTP": unix.SIGTSTP, "CONT": unix.SIGCONT,
}

// control runs fn on the master's descriptor.
func (sh *shell) control(fn func(fd int) error) error {
	rc, err := sh.ptm.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// shellSignal signals the terminal's foreground process group (what a
// person's Ctrl-C reaches), or the shell's own group if the terminal has
// none.
func (s *Server) shellSignal(st *stream, req *proto.ShellSignalArgs) (*proto.ShellSignalResult, error) {
	sh, err := s.shells.get(req.ID)
	if err != nil {
		return nil, err
	}
	sig, ok := shellSignals[strings.TrimPrefix(strings.ToUpper(req.Signal), "SIG")]
	if !ok {
		return nil, invalidf("shell_signal: unknown signal %q; use one of %s", req.Signal, strings.Join(proto.ShellSignals, ", "))
	}
	sh.mu.Lock()
	exited := sh.exited
	sh.mu.Unlock()
	if exited {
		return nil, &proto.Error{Code: "ESRCH", Message: fmt.Sprintf("shell %d has exited", req.ID)}
	}
	pgid := sh.pid // the session leader's group
	sh.control(func(fd int) error {
		if g, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && g > 1 {
			pgid = g
		}
		return nil
	})
	if pgid <= 1 {
		return nil, &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("agent bug: shell %d has process group %d", req.ID, pgid)}
	}
	if err := unix.Kill(-pgid, sig); err != nil {
		return nil, fmt.Errorf("signalling process group %d: %w", pgid, err)
	}
	return &proto.ShellSignalResult{PGID: pgid}, nil
}

// shellResize sets a shell's window size; the kernel sends SIGWINCH to
// the terminal's foreground group.
func (s *Server) shellResize(st *stream, req *proto.ShellResizeArgs) (*proto.Empty, error) {
	sh, err := s.shells.get(req.ID)
	if err != nil {
		return nil, err
	}
	if req.Cols == 0 || req.Rows == 0 {
		return nil, invalidf("shell_resize needs cols and rows")
	}
	cols, rows, err := shellSize(req.Cols, req.Rows)
	if err != nil {
		return nil, err
	}
	if err := sh.control(func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)})
	}); err != nil {
		return nil, fmt.Errorf("resizing shell %d: %w", req.ID, err)
	}
	sh.mu.Lock()
	sh.cols, sh.rows = cols, rows
	sh.mu.Unlock()
	return &proto.Empty{}, nil
}

// shellClose ends a shell: SIGHUP to its session (a person closing the
// terminal), SIGKILL to it and its cgroup after the grace, and forgets it.
func (s *Server) shellClose(st *stream, req *proto.ShellCloseArgs) (*proto.ShellInfo, error) {
	sh, err := s.shells.get(req.ID)
	if err != nil {
		return nil, err
	}
	if req.GraceMs < 0 {
		return nil, invalidf("shell_close grace_ms must not be negative")
	}
	grace := proto.DefaultKillGrace
	if req.GraceMs > 0 {
		grace = min(msDuration(req.GraceMs), time.Minute)
	}
	s.shells.remove(req.ID)
	sh.close(grace)
	info := sh.info()
	return &info, nil
}

// close ends the shell and waits (at most grace, then SIGKILL) for it.
func (sh *shell) close(grace time.Duration) {
	sh.mu.Lock()
	exited := sh.exited
	sh.mu.Unlock()
	if !exited && sh.pid > 1 {
		unix.Kill(-sh.pid, unix.SIGHUP)
		unix.Kill(-sh.pid, unix.SIGCONT) // a stopped job hears the hangup
	}
	sh.ptm.Close() // hangs up the terminal; the reader stops
	select {
	case <-sh.done:
		return
	case <-time.After(grace):
	}
	if sh.pid > 1 {
		unix.Kill(-sh.pid, unix.SIGKILL)
	}
	sh.cg.kill()
	select {
	case <-sh.done:
	case <-time.After(leftoverKillWait):
	}
}

// shellList lists the shells, by id.
func (s *Server) shellList(*stream, *proto.Empty) (*proto.ShellListResult, error) {
	s.shells.mu.Lock()
	list := make([]*shell, 0, len(s.shells.byID))
	for _, sh := range s.shells.byID {
		list = append(list, sh)
	}
	s.shells.mu.Unlock()
	res := &proto.ShellListResult{Shells: make([]proto.ShellInfo, 0, len(list))}
	for _, sh := range list {
		res.Shells = append(res.Shells, sh.info())
	}
	sort.Slice(res.Shells, func(i, j int) bool { return res.Shells[i].ID < res.Shells[j].ID })
	return res, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
