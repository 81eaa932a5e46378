package agent

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// DefaultPath is the PATH of exec'd commands unless the request sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Starting a command when the process limit is used up: after killing
// what finished commands left running, the start is retried every
// startRetryWait, startRetries times (a second in all: killed processes
// are reaped in milliseconds).
const (
	startRetries   = 20
	startRetryWait = 50 * time.Millisecond
)

// Output draining after the process exits: background children may keep
// its stdout open, so reading stops once the pipes are idle for
// drainIdle, or drainMax after the exit at the latest.
const (
	drainIdle = 250 * time.Millisecond
	drainMax  = 5 * time.Second
)

// exec runs a command: its own process group, stdout and stderr streamed
// as frames, stdin from Data frames, killed (SIGTERM, SIGKILL after the
// grace) on timeout or when the host goes away. Background processes the
// command leaves behind keep running unless the group was killed.
func (s *Server) exec(st *stream, req *proto.ExecArgs) (*proto.ExecResult, error) {
	argv := req.Argv
	if req.Shell != "" {
		if len(argv) > 0 {
			return nil, invalidf("exec takes argv or shell, not both")
		}
		argv = []string{"/bin/sh", "-c", req.Shell}
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, invalidf("exec needs argv (a program and its arguments) or shell (a /bin/sh script)")
	}
	if s.execArgv != nil {
		argv = s.execArgv
	}
	if req.TimeoutMs < 0 || req.KillGraceMs < 0 {
		return nil, invalidf("exec timeout_ms and kill_grace_ms must not be negative")
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	cwd, err := s.path(cwd)
	if err != nil {
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

	var files []*os.File // parent ends, closed on return
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			files = append(files, r, w)
		}
		return
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{Path: prog, Args: argv, Env: env, Dir: cwd, Stdout: outW, Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: cred}}
	if req.Beneath != "" && req.Cwd != "" {
		// Confined: the directory resolved beneath now, held open, and
		// entered through its descriptor (the child's chdir follows the
		// fd it inherits, before exec closes it), not by name again.
		t, rel, err := s.tree(req.Beneath, req.Cwd)
		if err != nil {
			return nil, err
		}
		fd, err := t.open(rel, req.Cwd, unix.O_PATH|unix.O_DIRECTORY)
		t.close()
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		cmd.Dir = "/proc/self/fd/" + strconv.Itoa(fd)
	}
	left := s.cgroups.sweep(false)
	cg, err := s.cgroups.start()
	if err != nil {
		return nil, err
	}
	defer cg.done() // on the error paths; a second call is harmless
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.fd.Fd())
	}
	var inW *os.File
	if req.Stdin {
		var inR *os.File
		if inR, inW, err = pipe(); err != nil {
			return nil, err
		}
		cmd.Stdin = inR
	}
	start := time.Now()
	pid, waitc, err := s.reaper.start(cmd)
	if errors.Is(err, syscall.EAGAIN) && cg != nil {
		// No room under the process limit, not even for a kill command:
		// what finished commands left running goes, and this one starts.
		more := s.cgroups.sweep(true)
		left.Running, left.Killed = 0, left.Killed+more.Killed
		left.PidsLimited, left.OOMKills = left.PidsLimited+more.PidsLimited, left.OOMKills+more.OOMKills
		// The killed processes free their slots once reaped (by the
		// reaper, or the test's parent): retry a little.
		for i := 0; i < startRetries && errors.Is(err, syscall.EAGAIN); i++ {
			time.Sleep(startRetryWait)
			cmd = &exec.Cmd{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir, Stdin: cmd.Stdin,
				Stdout: cmd.Stdout, Stderr: cmd.Stderr, SysProcAttr: cmd.SysProcAttr} // a Cmd starts once
			pid, waitc, err = s.reaper.start(cmd)
		}
		if errors.Is(err, syscall.EAGAIN) {
			return nil, &proto.Error{Code: "EAGAIN", Message: fmt.Sprintf("starting %s: %v: the guest's limit on user processes (%s/pids.max) is used up by commands still running; wait for them or cancel them, then run again", prog, err, s.cgroups.user)}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", prog, err)
	}
	cg.unprotect(pid)
	if pid <= 1 {
		// kill(-pid) below must never reach kill(-1): every process.
		return nil, &proto.Error{Code: proto.CodeInternal, Message: fmt.Sprintf("agent bug: started %s with pid %d", prog, pid)}
	}
	// The child has its ends; close ours so EOF arrives when it exits.
	outW.Close()
	errW.Close()
	if cmd.Stdin != nil {
		cmd.Stdin.(*os.File).Close()
	}

	hostGone := make(chan struct{})
	var goneOnce sync.Once
	cancel := func() { goneOnce.Do(func() { close(hostGone) }) }

	var exitedAt atomic.Int64 // UnixNano of the exit, 0 while running
	var pumps sync.WaitGroup
	for _, o := range []struct {
		r *os.File
		t proto.FrameType
	}{{outR, proto.FrameStdout}, {errR, proto.FrameStderr}} {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			if err := pumpOutput(st.enc, o.t, o.r, &exitedAt, cancel); err != nil {
				s.logf("exec %q: sending output to the host failed, so the command is stopped: %v", argv[0], err)
			}
		}()
	}
	go pumpInput(st.dec, inW, cancel)

	var timeout, graceC <-chan time.Time
	if req.TimeoutMs > 0 {
		t := time.NewTimer(msDuration(req.TimeoutMs))
		defer t.Stop()
		timeout = t.C
	}
	grace := proto.DefaultKillGrace
	if req.KillGraceMs > 0 {
		grace = msDuration(req.KillGraceMs)
	}
	var ws syscall.WaitStatus
	timedOut, killing := false, false
	kill := func() {
		if !killing {
			killing = true
			syscall.Kill(-pid, syscall.SIGTERM)
			graceC = time.After(grace)
		}
	}
	gone := (<-chan struct{})(hostGone)
wait:
	for {
		select {
		case ws = <-waitc:
			break wait
		case <-timeout:
			timeout, timedOut = nil, true
			kill()
		case <-gone:
			gone = nil
			kill()
		case <-graceC:
			graceC = nil
			syscall.Kill(-pid, syscall.SIGKILL)
			cg.kill() // and what left the group (setsid, daemons)
		}
	}
	res := proto.ExecResult{Duration: time.Since(start), TimedOut: timedOut}
	if killing {
		syscall.Kill(-pid, syscall.SIGKILL) // what is left of the group dies now
		cg.kill()
	}
	// Let the pumps drain what the process wrote, then stop them.
	now := time.Now()
	exitedAt.Store(now.UnixNano())
	outR.SetReadDeadline(now.Add(drainIdle))
	errR.SetReadDeadline(now.Add(drainIdle))
	pumps.Wait()
	if inW != nil {
		inW.Close() // unblocks pumpInput if it is writing; it ends when the stream closes
	}
	res.PidsLimited, res.OOMKills, res.LeftRunning = cg.done()
	res.PidsLimited += left.PidsLimited
	res.OOMKills += left.OOMKills
	res.EarlierRunning, res.EarlierKilled = left.Running, left.Killed
	if s.cgroups != nil {
		res.DiskFull = diskFull("/", cwd)
	}
	switch {
	case ws.Exited():
		res.ExitCode = ws.ExitStatus()
	case ws.Signaled():
		res.ExitCode, res.Signal = -1, unix.SignalName(ws.Signal())
		if res.Signal == "" {
			res.Signal = "signal " + strconv.Itoa(int(ws.Signal()))
		}
	}
	return &res, nil
}

// pumpOutput sends what the process writes to r as frames of type t.
// After the exit (exitedAt set) it stops once r is idle for drainIdle or
// drainMax has passed. A failed send means the host is gone: it cancels
// and returns the error.
func pumpOutput(enc *proto.Encoder, t proto.FrameType, r *os.File, exitedAt *atomic.Int64, cancel func()) error {
	buf := make([]byte, proto.ChunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := enc.WriteFrame(t, buf[:n]); werr != nil {
				cancel()
				return werr
			}
		}
		if err != nil {
			return nil // EOF: every writer is gone; or the drain deadline passed
		}
		if at := exitedAt.Load(); at != 0 {
			r.SetReadDeadline(minTime(time.Now().Add(drainIdle), time.Unix(0, at).Add(drainMax)))
		}
	}
}

// msDuration converts milliseconds to a Duration, saturating instead of
// overflowing (a huge timeout must not become a negative one).
func msDuration(ms int64) time.Duration {
	return time.Duration(min(ms, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// pumpInput reads the exec stream's frames from the host: Data goes to
// the process's stdin (w; nil if the request asked for none), End closes
// it. The stream ending (the host cancelled or went away) or any other
// frame cancels the command. It returns when the stream does.
func pumpInput(dec *proto.Decoder, w *os.File, cancel func()) {
	defer cancel()
	open := w != nil
	for {
		t, p, err := dec.ReadFrame()
		if err != nil || !open || (t != proto.FrameData && t != proto.FrameEnd) {
			return // nothing may follow End or a request without stdin
		}
		if t == proto.FrameEnd {
			w.Close()
			open = false
			continue
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				w = nil // the process closed stdin or exited: drop the rest
			}
		}
	}
}

// lookupUser resolves an exec's user: "" (root, the agent's own
// credentials), a name, or "uid[:gid]".
func lookupUser(name string) (*syscall.Credential, *user.User, error) {
	if name == "" {
		return nil, nil, nil
	}
	id, gid, hasGid := strings.Cut(name, ":")
	var u *user.User
	var err error
	if _, nerr := strconv.ParseUint(id, 10, 32); nerr == nil {
		if u, err = user.LookupId(id); err != nil {
			u = &user.User{Uid: id, Gid: id, HomeDir: "/"} // a uid without a passwd entry is fine
		}
	} else if u, err = user.Lookup(id); err != nil {
		return nil, nil, &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("exec: user %q: %v (give a name from the guest's /etc/passwd or a numeric uid[:gid])", name, err)}
	}
	if !hasGid {
		gid = u.Gid
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, nil, invalidf("exec: user %q: uid %q and gid %q must be numbers", name, u.Uid, gid)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(g), NoSetGroups: true}
	if groups, err := u.GroupIds(); err == nil && !hasGid {
		cred.NoSetGroups = false
		for _, s := range groups {
			if n, err := strconv.ParseUint(s, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, u, nil
}

// execEnv merges the request's environment over the defaults and returns
// it with the PATH the program is looked up in.
func execEnv(extra map[string]string, u *user.User) ([]string, string, error) {
	m := map[string]string{"PATH": DefaultPath, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm"}
	if u != nil {
		m["HOME"], m["USER"], m["LOGNAME"] = u.HomeDir, u.Username, u.Username
	}
	for k, v := range extra {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, "", invalidf("exec: bad environment variable %q (names must be non-empty without '=' or NUL; values without NUL)", k)
		}
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env, m["PATH"], nil
}

// lookPath finds a program the way execvp does, in the request's PATH
// rather than the agent's. Names with a slash are used as they are
// (relative to the working directory).
func lookPath(name, path, cwd string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", invalidf("exec: program name %q contains a NUL byte", name)
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("exec: %q: command not found in PATH=%s", name, path)}
}

// diskFull returns those of paths whose file system has no space left
// (for the users the reserved blocks are not for), one path each.
// diskFullBelow is the free space under which a file system counts as
// full: after a write failed with ENOSPC, ext4 may hand back a few blocks
// it had reserved for delayed allocation, so "no block left" is not what
// a filled disk always shows.
const diskFullBelow = 1 << 20

func diskFull(paths ...string) []string {
	var full []string
	seen := map[unix.Fsid]bool{}
	for _, p := range paths {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) != nil || seen[st.Fsid] || st.Blocks == 0 {
			continue
		}
		seen[st.Fsid] = true
		if st.Bavail*uint64(st.Bsize) < diskFullBelow {
			full = append(full, p)
		}
	}
	return full
}
