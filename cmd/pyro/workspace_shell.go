package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// pyro workspace shell: an interactive terminal into a workspace through
// the contract's ShellBackend. The local terminal goes raw; keystrokes go
// to ShellWrite as typed; output comes from ShellRead in raw mode, read
// from a byte cursor this side keeps (so output another call consumed is
// read again, and nothing is lost or doubled); SIGWINCH resizes the
// remote terminal. The terminal is restored and the shell closed however
// the session ends.

func shellCommand() *wsCommand {
	return &wsCommand{name: "shell", args: "ID [flags] [-- PROGRAM [ARG...]]", group: "Work inside",
		ops: []contract.Op{contract.OpShellOpen, contract.OpShellWrite, contract.OpShellRead, contract.OpShellSignal,
			contract.OpShellResize, contract.OpShellClose},
		ownSignals: true, noJSON: true,
		summary: "an interactive terminal in a workspace (bash -l, or a program)",
		help: `Opens an interactive terminal in a running workspace: a login shell
(bash -l), or PROGRAM. This terminal goes raw, so every key (Ctrl-C,
Ctrl-Z, arrows) reaches the program in the workspace; a window resize
follows. The session ends when the program exits (exit, or Ctrl-D at a
prompt), and the exit status is its status. The shell is the same kind
the chat opens with shell_open; it is closed when the session ends.

Stdin must be a terminal; for scripts use pyro workspace exec.

Examples:
  pyro workspace shell fix-123
  pyro workspace shell fix-123 -- python3
  pyro workspace shell fix-123 --cwd /workspace/app --env TERM=xterm-256color
`,
		run: wsShell}
}

// Reads while the shell is busy return quickly; while it is quiet they
// wait longer, so an idle session costs a few calls a second. A keystroke
// waits at most for the read in flight.
const (
	shellIdleFast = 20 * time.Millisecond
	shellIdleSlow = 100 * time.Millisecond
	shellReadMax  = 250 * time.Millisecond
	shellInputBuf = 4096
)

func wsShell(c *wsCall) int {
	command := c.fs.StringP("command", "c", "", "a shell command line to run on the terminal, with sh -c")
	cwd := c.fs.String("cwd", "", "working directory in the guest (default /workspace)")
	envs := c.fs.StringArray("env", nil, "environment variable `NAME=VALUE` (repeatable)")
	secretEnv := c.fs.StringArray("secret-env", nil, "set `VAR=SECRET`: variable VAR to the workspace's secret SECRET (repeatable)")
	if code := c.parse(); code >= 0 {
		return code
	}
	args := c.fs.Args()
	if len(args) == 0 {
		return c.usageError("name the workspace")
	}
	if dash := c.fs.ArgsLenAtDash(); dash > 1 || (dash < 0 && len(args) > 1) {
		return c.usageError("unexpected argument %q: a program goes after --", args[1])
	}
	ref, argv := args[0], args[1:]
	if *command != "" && len(argv) > 0 {
		return c.usageError("give the program after -- or with --command, not both")
	}
	vars, err := keyValues("env", *envs)
	if err != nil {
		return c.usageError("%v", err)
	}
	secrets, err := keyValues("secret-env", *secretEnv)
	if err != nil {
		return c.usageError("%v", err)
	}
	if *command != "" || len(argv) > 0 {
		spec := contract.CommandSpec{Command: *command, Argv: argv, Cwd: *cwd, EnvVars: vars}
		if err := contract.ValidateCommand(&spec); err != nil {
			return c.badArg(err)
		}
	}
	if err := contract.ValidateSecretEnv(secrets, vars); err != nil {
		return c.badArg(err)
	}
	term, err := openTerminal()
	if err != nil {
		fmt.Fprintf(c.stderr, "pyro workspace shell: %v: an interactive shell needs one.\nFor a script, run its commands with pyro workspace exec %s -- COMMAND.\n", err, ref)
		return exitFailure
	}

	sigs := make(chan os.Signal, 2)
	stopSigs := wsNotifySignals(sigs)
	defer stopSigs()
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.ctx = ctx
	started := watchStart(sigs, cancel)
	defer started()

	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	sb, ok := b.(contract.ShellBackend)
	if !ok {
		return c.fail(contract.Invalid("this backend has no interactive shells"))
	}
	cols, rows := term.Size()
	var (
		out contract.ShellOutput
		ws  string
	)
	err = c.onWorkspace(ref, func(id string) (err error) {
		ws = id
		out, err = sb.ShellOpen(c.ctx, contract.ShellOpenRequest{ID: id, Argv: argv, Command: *command, Cwd: *cwd,
			EnvVars: vars, SecretEnv: secrets, Cols: cols, Rows: rows, Raw: true})
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	started() // the session watches its own signals from here
	sess := &shellSession{c: c, sb: sb, ws: ws, shell: out.Info.Shell, term: term, sigs: sigs}
	sess.ctx, sess.cancel = context.WithCancel(context.WithoutCancel(c.ctx))
	defer sess.cancel()
	fmt.Fprintf(c.stderr, "pyro: shell %d in %s; it ends when the program exits\r\n", sess.shell, ws)
	code := sess.run(out)
	return code
}

// shellSession is one interactive session.
type shellSession struct {
	c      *wsCall
	sb     contract.ShellBackend
	ws     string
	shell  int
	term   wsTerminal
	sigs   chan os.Signal
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce  sync.Once
	printed    int64        // output cursor: bytes written to the terminal
	lastInput  atomic.Int64 // unix nanos of the last keystroke sent
	writeErr   chan error   // the input pump's failure
	inputEnded chan struct{}
}

// run pumps the session until the program exits, the input ends, a
// signal comes or the backend fails, and returns the exit status.
func (s *shellSession) run(first contract.ShellOutput) (code int) {
	c := s.c
	restore, err := s.term.Raw()
	if err != nil {
		fmt.Fprintf(c.stderr, "pyro workspace shell: cannot make the terminal raw: %v\n", err)
		s.close()
		return exitFailure
	}
	defer func() {
		restore()
		s.close()
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	resize := make(chan os.Signal, 1)
	stopResize := wsNotifyResize(resize)
	defer stopResize()

	s.writeErr = make(chan error, 1)
	s.inputEnded = make(chan struct{})
	go s.pumpInput(restore)

	s.emit(first)
	if first.Info.Exited && s.printed >= first.Info.Cursor {
		return s.exitStatus(first.Info)
	}
	idle := shellIdleFast
	for {
		select {
		case sig := <-s.sigs:
			fmt.Fprintf(c.stderr, "\r\npyro workspace shell: %v: closing the shell\r\n", sig)
			if n, ok := sig.(syscall.Signal); ok {
				return 128 + int(n)
			}
			return exitRunSignal
		case err := <-s.writeErr:
			return s.failed(err)
		case <-s.inputEnded:
			// Stdin closed (not a real terminal's way): detach.
			return exitOK
		case <-resize:
			if cols, rows := s.term.Size(); cols > 0 && rows > 0 {
				if _, err := s.sb.ShellResize(s.ctx, s.ws, s.shell, cols, rows); err != nil {
					return s.failed(err)
				}
			}
		default:
		}
		if time.Since(time.Unix(0, s.lastInput.Load())) < time.Second {
			idle = shellIdleFast
		}
		cur := s.printed
		out, err := s.sb.ShellRead(s.ctx, contract.ShellReadRequest{ID: s.ws, Shell: s.shell, Raw: true, Cursor: &cur,
			Wait: contract.ShellWait{Idle: idle, Timeout: shellReadMax}})
		if err != nil {
			return s.failed(err)
		}
		if s.emit(out) {
			idle = shellIdleFast
		} else {
			idle = min(2*idle, shellIdleSlow)
		}
		if out.Info.Exited && s.printed >= out.Info.Cursor {
			return s.exitStatus(out.Info)
		}
	}
}

// emit writes what a read returned to the terminal and reports whether
// there was any.
func (s *shellSession) emit(out contract.ShellOutput) bool {
	if out.End <= s.printed || out.Text == "" {
		s.printed = max(s.printed, out.End)
		return false
	}
	fmt.Fprint(s.c.stdout, out.Text)
	s.printed = out.End
	return true
}

// pumpInput sends keystrokes as they come, as raw bytes; it ends when
// the input does.
func (s *shellSession) pumpInput(restore func()) {
	defer func() {
		if r := recover(); r != nil {
			restore() // a panic here would skip run's defers
			panic(r)
		}
	}()
	buf := make([]byte, shellInputBuf)
	for {
		n, err := s.term.Read(buf)
		if n > 0 {
			s.lastInput.Store(time.Now().UnixNano())
			if _, werr := s.sb.ShellWrite(s.ctx, contract.ShellWriteRequest{ID: s.ws, Shell: s.shell, Input: buf[:n], Raw: true}); werr != nil {
				if s.ctx.Err() == nil {
					s.writeErr <- werr
				}
				return
			}
		}
		if err != nil {
			close(s.inputEnded)
			return
		}
	}
}

// exitStatus is the session's status for the program's end.
func (s *shellSession) exitStatus(info contract.ShellInfo) int {
	code := info.ExitCode
	if info.Signal != "" || code < 0 {
		fmt.Fprintf(s.c.stderr, "\r\npyro workspace shell: the program was killed by %s\r\n", orDash(info.Signal))
		if code <= 0 || code > 255 {
			code = 128 + int(syscall.SIGKILL)
			if sig := signalNumber(info.Signal); sig > 0 {
				code = 128 + sig
			}
		}
	}
	return code
}

// signalNumber is the number of a signal named like "SIGTERM"; 0 if
// unknown.
func signalNumber(name string) int {
	for n := syscall.Signal(1); n < 32; n++ {
		if unix.SignalName(n) == name {
			return int(n)
		}
	}
	return 0
}

// failed reports a backend failure in the middle of the session.
func (s *shellSession) failed(err error) int {
	if errors.Is(err, context.Canceled) {
		return exitRunSignal
	}
	msg, hint := s.c.explain(err)
	fmt.Fprintf(s.c.stderr, "\r\npyro workspace shell: %s\r\n", msg)
	if hint != "" {
		fmt.Fprintf(s.c.stderr, "%s\r\n", hint)
	}
	return exitFailure
}

// close ends the shell in the workspace (once); what it failed to do is
// the server's to clean up when the workspace stops.
func (s *shellSession) close() {
	s.closeOnce.Do(func() {
		s.cancel() // the input pump's calls end
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
		defer cancel()
		s.sb.ShellClose(ctx, s.ws, s.shell)
	})
}
