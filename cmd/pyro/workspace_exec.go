package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Commands: exec streams a command's output as it runs and exits with its
// status; exec-status follows a background command.

func execCommands() []*wsCommand {
	return []*wsCommand{
		{name: "exec", args: "ID [flags] -- PROGRAM [ARG...] | ID --command 'SHELL LINE'", group: "Work inside",
			ops: []contract.Op{contract.OpExec}, ownSignals: true,
			summary: "run a command in a workspace, streaming its output; exits with its status",
			help: `Runs a command in a running workspace and streams its stdout and stderr
to this terminal's as it runs: all of it, not the excerpts a chat model
gets. Ctrl-C kills the command. The command is journaled as any other
exec, so the chat sees it in the workspace's logs and summary.

Exit status: the command's own; 124 when --timeout killed it; 128+N when
signal N did; 130 when Ctrl-C killed it; 125 when pyro could not run it
(the error says why); 2 for bad arguments.

Examples:
  pyro workspace exec fix-123 -- make test
  pyro workspace exec fix-123 --cwd /workspace/app --env CI=1 -- npm test
  pyro workspace exec fix-123 --command 'pytest -x 2>&1 | tail -50'
  pyro workspace exec fix-123 --stdin-file input.json -- python3 tool.py
  pyro workspace exec fix-123 --background -- make build   # prints its seq
  pyro workspace exec fix-123 --json -- go vet ./... | jq .ExitCode
`,
			run: wsExec},
		{name: "exec-status", args: "ID [SEQ] [flags]", group: "Work inside",
			ops: []contract.Op{contract.OpExecStatus}, ownSignals: true,
			summary: "follow a background command: state, exit code, output; or list them",
			help: `Without SEQ, lists the workspace's background commands (started with
exec --background, or by the chat with workspace_exec background:true).
With SEQ, shows that command's state and its output so far; --follow
streams the rest of its output until it ends and exits with its status,
--wait waits for its end, --kill ends it.

Examples:
  pyro workspace exec-status fix-123
  pyro workspace exec-status fix-123 7
  pyro workspace exec-status fix-123 7 --follow
  pyro workspace exec-status fix-123 --seq 7 --kill
`,
			run: wsExecStatus},
	}
}

// wsNotifySignals delivers the signals that end a streamed command to ch
// and returns the function that stops it; tests replace it.
var wsNotifySignals = func(ch chan<- os.Signal) (stop func()) {
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	return func() { signal.Stop(ch) }
}

// Poll waits while streaming: short while output flows, longer while the
// command is quiet. A poll returns as soon as the command ends.
const (
	pollWaitMin = 100 * time.Millisecond
	pollWaitMax = 500 * time.Millisecond
)

// exitExecUnable is exec's status when pyro could not run the command, as
// pyro run's: distinct from any status the command itself would have.
const exitExecUnable = exitRunUnable

// wsExec is pyro workspace exec.
func wsExec(c *wsCall) int {
	command := c.fs.StringP("command", "c", "", "a shell command line, run with sh -c (instead of -- PROGRAM ARGS)")
	cwd := c.fs.String("cwd", "", "working directory in the guest (default /workspace)")
	envs := c.fs.StringArray("env", nil, "environment variable `NAME=VALUE` (repeatable)")
	secretEnv := c.fs.StringArray("secret-env", nil, "set `VAR=SECRET`: variable VAR to the workspace's secret SECRET (repeatable)")
	stdinFile := c.fs.String("stdin-file", "", "feed this host file to the command's stdin (- for this stdin; default: empty)")
	var timeout int
	c.fs.Var(secondsValue{&timeout}, "timeout", "kill the command after this long, exit 124 (default 1h; up to 6h)")
	background := c.fs.Bool("background", false, "start it and return at once with its seq, for exec-status")
	if code := c.parse(); code >= 0 {
		return code
	}
	args := c.fs.Args()
	if len(args) == 0 {
		return c.usageError("name the workspace, then the command after --")
	}
	ref, argv := args[0], args[1:]
	if dash := c.fs.ArgsLenAtDash(); dash > 1 {
		return c.usageError("unexpected argument %q before --: the command goes after --", args[1])
	}
	if *command != "" && len(argv) > 0 {
		return c.usageError("give the command after -- or with --command, not both")
	}
	if *command == "" && len(argv) == 0 {
		return c.usageError("no command: pyro workspace exec %s -- PROGRAM [ARG...], or --command 'SHELL LINE'", ref)
	}
	vars, err := keyValues("env", *envs)
	if err != nil {
		return c.usageError("%v", err)
	}
	secrets, err := keyValues("secret-env", *secretEnv)
	if err != nil {
		return c.usageError("%v", err)
	}
	var stdin []byte
	if *stdinFile != "" {
		if stdin, err = readInput("--stdin-file", *stdinFile, contract.MaxStdinBytes); err != nil {
			fmt.Fprintf(c.stderr, "pyro workspace exec: %v\n", err)
			return exitUsage
		}
	}
	spec := contract.CommandSpec{Command: *command, Argv: argv, Cwd: *cwd, EnvVars: vars, Stdin: string(stdin)}
	if err := contract.ValidateCommand(&spec); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidateSecretEnv(secrets, spec.EnvVars); err != nil {
		return c.badArg(err)
	}
	if timeout == 0 {
		timeout = contract.DefaultBackgroundTimeout
	}
	req := contract.ExecRequest{Command: spec.Command, Argv: spec.Argv, Cwd: spec.Cwd, EnvVars: spec.EnvVars,
		Stdin: spec.Stdin, SecretEnv: secrets, TimeoutSeconds: timeout}

	// Ctrl-C before the command starts only cancels; once it runs, it
	// kills it (follow).
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
		return exitExecUnable
	}
	bb, hasBG := b.(contract.BackgroundBackend)
	if !hasBG {
		started()
		if *background {
			c.fail(contract.Invalid("this backend runs no commands in the background: run it without --background"))
			return exitExecUnable
		}
		return c.execForeground(b, ref, req)
	}
	if timeout > contract.MaxBackgroundTimeoutSeconds {
		return c.usageError("--timeout must be at most %v", time.Duration(contract.MaxBackgroundTimeoutSeconds)*time.Second)
	}
	var (
		v  contract.BackgroundExec
		ws string
	)
	err = c.onWorkspace(ref, func(id string) (err error) {
		ws, req.ID = id, id
		v, err = bb.ExecStart(c.ctx, req)
		return err
	})
	started()
	if err != nil {
		if c.fail(err) == exitRunSignal {
			return exitRunSignal
		}
		return exitExecUnable
	}
	if *background {
		if c.asJSON {
			return c.printJSON(bgJSON(v))
		}
		fmt.Fprintf(c.stdout, "started seq %d in %s (timeout %v)\n", v.Seq, ws, time.Duration(v.TimeoutSeconds)*time.Second)
		fmt.Fprintf(c.stdout, "Follow it: pyro workspace exec-status %s %d --follow\n", ref, v.Seq)
		return exitOK
	}
	c.ctx = context.WithoutCancel(c.ctx) // from here Ctrl-C kills the command (follow)
	return c.streamToEnd(bb, ws, v.Seq, 0, 0, sigs)
}

// streamToEnd follows a background command to its end, from the given
// offsets, writing its output to stdout and stderr as it comes (or, with
// --json, gathering it into the result it prints at the end), and
// returns the exit status the command's end calls for.
func (c *wsCall) streamToEnd(bb contract.BackgroundBackend, id string, seq, outOff, errOff int64, sigs <-chan os.Signal) int {
	out, errw := c.stdout, c.stderr
	var outBuf, errBuf bytes.Buffer
	if c.asJSON {
		out, errw = &outBuf, &errBuf
	}
	v, killed, err := c.follow(bb, id, seq, outOff, errOff, out, errw, sigs)
	if err != nil {
		if c.fail(err) == exitRunSignal || killed {
			return exitRunSignal
		}
		return exitExecUnable
	}
	code := c.endStatus(v, killed)
	if c.asJSON {
		r := v.Result
		r.Stdout, r.Stderr = outBuf.Bytes(), errBuf.Bytes()
		c.printJSON(execJSON(r))
	}
	return code
}

// follow polls a background command to its end, writing its output from
// the offsets; a signal on sigs kills it (killed reports that).
func (c *wsCall) follow(bb contract.BackgroundBackend, id string, seq, outOff, errOff int64, out, errw io.Writer, sigs <-chan os.Signal) (v contract.BackgroundExec, killed bool, err error) {
	// A second signal gives up on the backend too.
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	wait := pollWaitMin
	kill := false
	for {
		v, err = bb.ExecPoll(ctx, contract.PollRequest{ID: id, Seq: seq, StdoutOffset: outOff, StderrOffset: errOff, Wait: wait, Kill: kill})
		if err != nil {
			return v, killed, err
		}
		kill = false
		r := v.Result
		writeWindow(out, r.Stdout, outOff, v.StdoutNext, r.StdoutPath)
		writeWindow(errw, r.Stderr, errOff, v.StderrNext, r.StderrPath)
		moved := v.StdoutNext > outOff || v.StderrNext > errOff
		outOff, errOff = max(outOff, v.StdoutNext), max(errOff, v.StderrNext)
		if v.State.Ended() && (!moved || (outOff >= r.StdoutSize && errOff >= r.StderrSize)) {
			return v, killed, nil
		}
		if moved {
			wait = pollWaitMin
		} else {
			wait = min(2*wait, pollWaitMax)
		}
		select {
		case <-sigs:
			if killed {
				cancel()
				return v, killed, context.Canceled
			}
			kill, killed = true, true
			go func() {
				<-sigs
				cancel()
			}()
		default:
		}
		if kill {
			wait = 0
		}
	}
}

// writeWindow writes one poll's output of a stream: chunk covers
// [off, next). A poll cuts a long stretch to head and tail around a
// marker (and marks bytes not kept); when the chunk does not hold the
// stretch byte for byte, the host file that keeps the whole output (path,
// on this machine) gives it, if it holds it.
func writeWindow(w io.Writer, chunk []byte, off, next int64, path string) {
	if next <= off {
		return
	}
	if int64(len(chunk)) != next-off && path != "" {
		if f, err := os.Open(path); err == nil {
			defer f.Close()
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() >= next {
				if _, err := io.Copy(w, io.NewSectionReader(f, off, next-off)); err == nil {
					return
				}
			}
		}
	}
	w.Write(chunk)
}

// endStatus returns the exit status for a background command's end and
// says on stderr what a person needs to know about it.
func (c *wsCall) endStatus(v contract.BackgroundExec, killed bool) int {
	r := v.Result
	note := func(format string, a ...any) {
		fmt.Fprintf(c.stderr, "pyro workspace %s: %s\n", c.cmd.name, fmt.Sprintf(format, a...))
	}
	code := r.ExitCode
	switch v.State {
	case contract.ExecTimedOut:
		note("timed out after %v and was killed (--timeout)", time.Duration(v.TimeoutSeconds)*time.Second)
		code = exitRunTimeout
	case contract.ExecKilled:
		if killed {
			code = exitRunSignal
		} else {
			note("killed: %s", clean(cliWord(v.Reason)))
			if code <= 0 {
				code = 128 + int(syscall.SIGKILL)
			}
		}
	case contract.ExecLost, contract.ExecFailed:
		note("%s: %s", v.State, clean(cliWord(v.Reason)))
		code = exitExecUnable
	}
	if r.Limited != "" {
		note("%s", clean(cliWord(r.Limited)))
	}
	if r.Network != "" {
		note("%s", clean(cliWord(r.Network)))
	}
	if r.OutputTruncated {
		note("the output went past what pyro keeps (%s stdout, %s stderr in all); the middle is missing", humanBytes(r.StdoutSize), humanBytes(r.StderrSize))
	}
	if code < 0 || code > 255 {
		code = exitExecUnable
	}
	return code
}

// execForeground runs req with the plain Exec, for a backend without
// background commands: output comes at the end.
func (c *wsCall) execForeground(b contract.Backend, ref string, req contract.ExecRequest) int {
	if req.TimeoutSeconds > contract.MaxTimeoutSeconds {
		return c.usageError("--timeout must be at most %v here", time.Duration(contract.MaxTimeoutSeconds)*time.Second)
	}
	var r contract.ExecResult
	err := c.onWorkspace(ref, func(id string) (err error) {
		req.ID = id
		r, err = b.Exec(c.ctx, req)
		return err
	})
	if err != nil {
		if c.fail(err) == exitRunSignal {
			return exitRunSignal
		}
		return exitExecUnable
	}
	if c.asJSON {
		c.printJSON(execJSON(r))
	} else {
		c.stdout.Write(r.Stdout)
		c.stderr.Write(r.Stderr)
	}
	v := contract.BackgroundExec{State: contract.ExecExited, Result: r, TimeoutSeconds: req.TimeoutSeconds}
	if r.TimedOut {
		v.State = contract.ExecTimedOut
	}
	return c.endStatus(v, false)
}

// execResultJSON is an ExecResult in JSON with its output as text.
type execResultJSON struct {
	contract.ExecResult
	Stdout jsonText
	Stderr jsonText
}

func execJSON(r contract.ExecResult) execResultJSON {
	return execResultJSON{ExecResult: r, Stdout: r.Stdout, Stderr: r.Stderr}
}

// bgExecJSON is a BackgroundExec in JSON with its output as text.
type bgExecJSON struct {
	contract.BackgroundExec
	Result execResultJSON
}

func bgJSON(v contract.BackgroundExec) bgExecJSON {
	return bgExecJSON{BackgroundExec: v, Result: execJSON(v.Result)}
}

// wsExecStatus is pyro workspace exec-status.
func wsExecStatus(c *wsCall) int {
	seqFlag := c.fs.Int64("seq", 0, "the command's seq (or give it as the second argument)")
	follow := c.fs.BoolP("follow", "f", false, "stream its output until it ends, and exit with its status")
	var wait int
	c.fs.Var(secondsValue{&wait}, "wait", "wait up to this long for it to end")
	kill := c.fs.Bool("kill", false, "end it (its process group is killed)")
	stdoutOff := c.fs.Int64("stdout-offset", 0, "stdout bytes already seen: show only what follows")
	stderrOff := c.fs.Int64("stderr-offset", 0, "stderr bytes already seen")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 2)
	if !ok {
		return exitUsage
	}
	seq := *seqFlag
	if len(a) == 2 {
		n, err := strconv.ParseInt(a[1], 10, 64)
		if err != nil || n <= 0 {
			return c.usageError("SEQ %q is not a command's seq", a[1])
		}
		if c.fs.Changed("seq") && n != seq {
			return c.usageError("two different seqs given")
		}
		seq = n
	}
	switch {
	case seq < 0 || *stdoutOff < 0 || *stderrOff < 0:
		return c.usageError("--seq and the offsets must not be negative")
	case seq == 0 && (*follow || *kill || wait > 0 || *stdoutOff > 0 || *stderrOff > 0):
		return c.usageError("--follow, --kill, --wait and the offsets need the command's seq")
	case *follow && *kill:
		return c.usageError("--follow and --kill exclude each other")
	}
	sigs := make(chan os.Signal, 2)
	if *follow {
		stop := wsNotifySignals(sigs)
		defer stop()
	} else {
		var stop context.CancelFunc
		c.ctx, stop = signal.NotifyContext(c.ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	bb, hasBG := b.(contract.BackgroundBackend)
	if !hasBG {
		return c.fail(contract.Invalid("this backend runs no commands in the background"))
	}
	if seq == 0 {
		var (
			list []contract.BackgroundExec
			ws   string
		)
		err := c.onWorkspace(a[0], func(id string) (err error) {
			ws = id
			list, err = bb.ExecList(c.ctx, id)
			return err
		})
		if err != nil {
			return c.fail(err)
		}
		if c.asJSON {
			if list == nil {
				list = []contract.BackgroundExec{}
			}
			return c.printJSON(list)
		}
		if len(list) == 0 {
			fmt.Fprintf(c.stdout, "No background commands in %s; pyro workspace exec %s --background -- COMMAND starts one.\n", ws, a[0])
			return exitOK
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tSTATE\tEXIT\tSTARTED\tDURATION\tOUTPUT\tCOMMAND")
		for _, v := range list {
			exit := "-"
			if v.State == contract.ExecExited || v.State == contract.ExecTimedOut {
				exit = strconv.Itoa(v.Result.ExitCode)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Seq, v.State, exit, ago(v.StartedAt), fmtDuration(v.Result.Duration),
				humanBytes(v.Result.StdoutSize+v.Result.StderrSize), clean(clip(v.Command, 80)))
		}
		tw.Flush()
		return exitOK
	}
	var ws string
	if *follow {
		// Resolve the name first: follow polls by id.
		err := c.onWorkspace(a[0], func(id string) (err error) {
			ws = id
			_, err = bb.ExecPoll(c.ctx, contract.PollRequest{ID: id, Seq: seq, StdoutOffset: 1 << 62, StderrOffset: 1 << 62})
			return err
		})
		if err != nil {
			return c.fail(err)
		}
		return c.streamToEnd(bb, ws, seq, *stdoutOff, *stderrOff, sigs)
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	var v contract.BackgroundExec
	err := c.onWorkspace(a[0], func(id string) (err error) {
		ws = id
		req := contract.PollRequest{ID: id, Seq: seq, StdoutOffset: *stdoutOff, StderrOffset: *stderrOff, Kill: *kill}
		for {
			req.Wait = min(time.Until(deadline), contract.MaxPollWaitSeconds*time.Second)
			req.Wait = max(req.Wait, 0)
			if v, err = bb.ExecPoll(c.ctx, req); err != nil || v.State.Ended() || req.Wait <= 0 || !time.Now().Before(deadline) {
				return err
			}
			req.Kill = false
		}
	})
	if err != nil {
		return c.fail(err)
	}
	r := v.Result
	if c.asJSON {
		var outBuf, errBuf bytes.Buffer
		writeWindow(&outBuf, r.Stdout, *stdoutOff, v.StdoutNext, r.StdoutPath)
		writeWindow(&errBuf, r.Stderr, *stderrOff, v.StderrNext, r.StderrPath)
		v.Result.Stdout, v.Result.Stderr = outBuf.Bytes(), errBuf.Bytes()
		return c.printJSON(bgJSON(v))
	}
	state := string(v.State)
	switch v.State {
	case contract.ExecExited, contract.ExecTimedOut:
		state += fmt.Sprintf(" %d", r.ExitCode)
	case contract.ExecKilled, contract.ExecLost, contract.ExecFailed:
		state += ": " + clean(cliWord(v.Reason))
	}
	fmt.Fprintf(c.stderr, "seq %d in %s: %s after %s: %s\n", v.Seq, ws, state, fmtDuration(r.Duration), clean(clip(v.Command, 100)))
	writeWindow(c.stdout, r.Stdout, *stdoutOff, v.StdoutNext, r.StdoutPath)
	writeWindow(c.stderr, r.Stderr, *stderrOff, v.StderrNext, r.StderrPath)
	if !v.State.Ended() {
		fmt.Fprintf(c.stderr, "Still running. Follow it: pyro workspace exec-status %s %d --follow --stdout-offset %d --stderr-offset %d\n",
			a[0], seq, v.StdoutNext, v.StderrNext)
	}
	for _, n := range []string{r.Limited, r.Network} {
		if n != "" {
			fmt.Fprintf(c.stderr, "%s\n", clean(cliWord(strings.TrimSpace(n))))
		}
	}
	return exitOK
}
