package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Services: service start/status/logs/stop/restart.

func serviceCommands() []*wsCommand {
	return []*wsCommand{
		{name: "service start", args: "ID NAME [flags] -- PROGRAM [ARG...] | ID NAME --command 'SHELL LINE'", group: "Services",
			ops:     []contract.Op{contract.OpServiceStart},
			summary: "start a long-running process (dev server, database) and wait until it is ready",
			help: `Starts a service: a long-running process (a dev server, a database) that
keeps running between commands, with its logs kept outside /workspace.
It waits (up to --wait) until the readiness check passes: a file appears,
a TCP port accepts, an HTTP URL answers 2xx/3xx, or a command exits 0;
without one it is ready once started. A service that fails shows its
last output lines, and the exit status is 1.

Examples:
  pyro workspace service start fix-123 web --ready-http http://127.0.0.1:8000/ -- python3 -m http.server 8000
  pyro workspace service start fix-123 db --ready-tcp 5432 --restart on-failure -- postgres -D /var/lib/pg
  pyro workspace service start fix-123 worker --command 'celery -A app worker' --env LOG=debug
`,
			run: wsServiceStart},
		{name: "service status", args: "ID [NAME] [flags]", group: "Services", ops: []contract.Op{contract.OpServiceStatus},
			summary: "one service's state, pid, exit and readiness; or every service",
			help: `Shows one service: its state (starting, ready, failed, exited, stopped),
pid, readiness check, exit code and why it ended, with its last output
lines if it failed. Without NAME, lists every service of the workspace.

Examples:
  pyro workspace service status fix-123
  pyro workspace service status fix-123 web
`,
			run: wsServiceStatus},
		{name: "service logs", args: "ID NAME [flags]", group: "Services", ops: []contract.Op{contract.OpServiceLogs},
			summary: "a service's stdout and stderr: the last lines, or follow them",
			help: `Prints a service's stdout (to stdout) and stderr (to stderr): the last
--tail lines of each, and with --follow what it writes next, until it
ends or Ctrl-C.

Examples:
  pyro workspace service logs fix-123 web
  pyro workspace service logs fix-123 web --tail 200 --stream stderr
  pyro workspace service logs fix-123 web --follow
`,
			run: wsServiceLogs},
		{name: "service stop", args: "ID NAME [flags]", group: "Services", ops: []contract.Op{contract.OpServiceStop},
			summary: "stop a service: SIGTERM, then SIGKILL after a grace period",
			help: `Stops a service: SIGTERM to its process group, then SIGKILL to every
process it started after --grace. Its logs stay readable.

Examples:
  pyro workspace service stop fix-123 web
  pyro workspace service stop fix-123 db --grace 30s
`,
			run: wsServiceStop},
		{name: "service restart", args: "ID NAME [flags]", group: "Services", ops: []contract.Op{contract.OpServiceRestart},
			summary: "restart a service with the command and readiness check it started with",
			help: `Stops the service if it runs and starts it again with the command,
environment and readiness check it was started with, waiting as start
does.

Examples:
  pyro workspace service restart fix-123 web
`,
			run: wsServiceRestart},
	}
}

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

func validateServiceName(name string) error {
	if !serviceNameRe.MatchString(name) {
		return contract.Invalid("service name %.80q must be 1-64 lower-case letters, digits, _ . - starting with a letter or digit (e.g. web)", name)
	}
	return nil
}

// svcBackend returns b's services, or fails.
func (c *wsCall) svcBackend(b contract.Backend) (contract.ServiceBackend, bool) {
	sb, ok := b.(contract.ServiceBackend)
	if !ok {
		c.fail(contract.Invalid("this backend runs no services"))
	}
	return sb, ok
}

// serviceWait is a --wait flag's value as the backend takes it.
func serviceWait(c *wsCall, secs int) (time.Duration, bool) {
	w, err := contract.LimitOrDefault("--wait", secs, contract.DefaultServiceWaitSeconds, contract.MaxServiceWaitSeconds)
	if err != nil {
		c.usageError("--wait must be between 1s and %ds", contract.MaxServiceWaitSeconds)
		return 0, false
	}
	return time.Duration(w) * time.Second, true
}

func wsServiceStart(c *wsCall) int {
	command := c.fs.StringP("command", "c", "", "a shell command line, run with sh -c (instead of -- PROGRAM ARGS); run the server in the foreground")
	cwd := c.fs.String("cwd", "", "working directory in the guest (default /workspace)")
	envs := c.fs.StringArray("env", nil, "environment variable `NAME=VALUE` (repeatable)")
	secretEnv := c.fs.StringArray("secret-env", nil, "set `VAR=SECRET`: variable VAR to the workspace's secret SECRET (repeatable)")
	user := c.fs.String("user", "", "guest user name or uid[:gid] (default root)")
	readyFile := c.fs.String("ready-file", "", "ready when this guest file exists (relative to --cwd)")
	readyTCP := c.fs.Int("ready-tcp", 0, "ready when this guest TCP port accepts connections")
	readyHTTP := c.fs.String("ready-http", "", "ready when a GET of this guest URL answers 2xx/3xx")
	readyCommand := c.fs.String("ready-command", "", "ready when this shell command exits 0")
	var readyTimeout, wait int
	c.fs.Var(secondsValue{&readyTimeout}, "ready-timeout", "fail (and stop it) if not ready within this (default 60s)")
	restart := c.fs.String("restart", "no", "no, or on-failure: restart it after a failing exit, up to --max-restarts times")
	maxRestarts := c.fs.Int("max-restarts", 0, "restarts allowed with --restart on-failure (default 3)")
	c.fs.Var(secondsValue{&wait}, "wait", "wait up to this long for ready (default 30s, max 50s); past it the service is starting")
	if code := c.parse(); code >= 0 {
		return code
	}
	args := c.fs.Args()
	if len(args) < 2 {
		return c.usageError("name the workspace and the service, then the command after --")
	}
	if dash := c.fs.ArgsLenAtDash(); dash > 2 {
		return c.usageError("unexpected argument %q before --: the command goes after --", args[2])
	}
	ref, name, argv := args[0], args[1], args[2:]
	if err := validateServiceName(name); err != nil {
		return c.badArg(err)
	}
	if *command != "" && len(argv) > 0 {
		return c.usageError("give the command after -- or with --command, not both")
	}
	vars, err := keyValues("env", *envs)
	if err != nil {
		return c.usageError("%v", err)
	}
	secrets, err := keyValues("secret-env", *secretEnv)
	if err != nil {
		return c.usageError("%v", err)
	}
	spec := contract.CommandSpec{Command: *command, Argv: argv, Cwd: *cwd, EnvVars: vars}
	if err := contract.ValidateCommand(&spec); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidateSecretEnv(secrets, spec.EnvVars); err != nil {
		return c.badArg(err)
	}
	w, ok := serviceWait(c, wait)
	if !ok {
		return exitUsage
	}
	req := contract.ServiceStartRequest{Name: name, Command: spec.Command, Argv: spec.Argv, Cwd: spec.Cwd, EnvVars: spec.EnvVars,
		SecretEnv: secrets, User: *user, Wait: w}
	switch *restart {
	case "no", "":
		if *maxRestarts != 0 {
			return c.usageError("--max-restarts needs --restart on-failure")
		}
	case "on-failure":
		req.Restart, req.MaxRestarts = "on-failure", *maxRestarts
		if req.MaxRestarts == 0 {
			req.MaxRestarts = 3
		}
		if req.MaxRestarts < 0 || req.MaxRestarts > 100 {
			return c.usageError("--max-restarts must be 1 to 100")
		}
	default:
		return c.usageError("--restart must be no or on-failure")
	}
	checks := 0
	rd := contract.Readiness{TimeoutSeconds: readyTimeout}
	if *readyFile != "" {
		checks++
		rd.Kind, rd.Path = contract.ReadyFile, *readyFile
	}
	if *readyTCP != 0 {
		checks++
		if *readyTCP < 1 || *readyTCP > 65535 {
			return c.usageError("--ready-tcp must be a port, 1-65535")
		}
		rd.Kind, rd.Port = contract.ReadyTCP, *readyTCP
	}
	if *readyHTTP != "" {
		checks++
		if !strings.HasPrefix(*readyHTTP, "http://") && !strings.HasPrefix(*readyHTTP, "https://") {
			return c.usageError("--ready-http must be an http:// URL inside the guest, e.g. http://127.0.0.1:8000/")
		}
		rd.Kind, rd.URL = contract.ReadyHTTP, *readyHTTP
	}
	if *readyCommand != "" {
		checks++
		rd.Kind, rd.Command = contract.ReadyCommand, *readyCommand
	}
	switch {
	case checks > 1:
		return c.usageError("give one readiness check: --ready-file, --ready-tcp, --ready-http or --ready-command")
	case checks == 0 && readyTimeout != 0:
		return c.usageError("--ready-timeout needs a readiness check")
	case readyTimeout > contract.MaxReadyTimeoutSeconds:
		return c.usageError("--ready-timeout must be at most %ds", contract.MaxReadyTimeoutSeconds)
	}
	if checks == 1 {
		req.Readiness = rd
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	sb, ok := c.svcBackend(b)
	if !ok {
		return exitFailure
	}
	var st contract.ServiceStatus
	err = c.onWorkspace(ref, func(id string) (err error) {
		req.ID = id
		st, err = sb.ServiceStart(c.ctx, req)
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	return c.serviceResult(ref, st)
}

// serviceStatusJSON is a ServiceStatus in JSON with its output tails as
// text.
type serviceStatusJSON struct {
	contract.ServiceStatus
	StdoutTail jsonText `json:",omitempty"`
	StderrTail jsonText `json:",omitempty"`
}

func serviceJSON(s contract.ServiceStatus) serviceStatusJSON {
	return serviceStatusJSON{ServiceStatus: s, StdoutTail: s.StdoutTail, StderrTail: s.StderrTail}
}

// serviceResult prints a service after start, stop or restart: exit 1
// when it failed.
func (c *wsCall) serviceResult(ref string, st contract.ServiceStatus) int {
	code := exitOK
	if st.State == contract.ServiceFailed {
		code = exitFailure
	}
	if c.asJSON {
		c.printJSON(serviceJSON(st))
		return code
	}
	printService(c, st)
	switch st.State {
	case contract.ServiceStarting:
		fmt.Fprintf(c.stdout, "Not ready yet: pyro workspace service status %s %s follows it.\n", ref, st.Name)
	case contract.ServiceReady:
		fmt.Fprintf(c.stdout, "Runs until stopped; pyro workspace service logs %s %s --follow shows its output.\n", ref, st.Name)
	}
	return code
}

// serviceLine is one line about a service.
func serviceLine(s contract.ServiceStatus) string {
	line := fmt.Sprintf("%s %s", clean(s.Name), s.State)
	if s.PID > 0 {
		line += fmt.Sprintf(" pid %d", s.PID)
	}
	if s.ExitCode != nil {
		line += fmt.Sprintf(" exit %d", *s.ExitCode)
	}
	if s.Signal != "" {
		line += " " + s.Signal
	}
	if s.Restarts > 0 {
		line += fmt.Sprintf(" (%d restarts)", s.Restarts)
	}
	if s.Command != "" {
		line += ": " + clean(clip(s.Command, 80))
	}
	return line
}

// printService prints one service in full.
func printService(c *wsCall, s contract.ServiceStatus) {
	fmt.Fprintln(c.stdout, serviceLine(s))
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	row("readiness", clean(s.Readiness))
	if !s.StartedAt.IsZero() {
		row("started", ago(s.StartedAt))
	}
	if !s.ReadyAt.IsZero() {
		row("ready", fmt.Sprintf("%s (after %s)", ago(s.ReadyAt), fmtDuration(s.ReadyAt.Sub(s.StartedAt))))
	}
	if !s.EndedAt.IsZero() {
		row("ended", ago(s.EndedAt))
	}
	reason := s.Reason
	if s.Message != "" {
		reason += ": " + cliWord(s.Message)
	}
	row("reason", clean(reason))
	row("output", fmt.Sprintf("%s stdout, %s stderr", humanBytes(s.StdoutBytes), humanBytes(s.StderrBytes)))
	tw.Flush()
	for _, t := range []struct {
		name string
		b    []byte
	}{{"stdout", s.StdoutTail}, {"stderr", s.StderrTail}} {
		if len(t.b) > 0 {
			fmt.Fprintf(c.stdout, "--- last lines of %s ---\n%s", t.name, t.b)
			if t.b[len(t.b)-1] != '\n' {
				fmt.Fprintln(c.stdout)
			}
		}
	}
}

func wsServiceStatus(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 2)
	if !ok {
		return exitUsage
	}
	var name string
	if len(a) == 2 {
		name = a[1]
		if err := validateServiceName(name); err != nil {
			return c.badArg(err)
		}
	}
	list, code := wsOn(c, a[0], func(sb contract.ServiceBackend, id string) ([]contract.ServiceStatus, error) {
		return sb.ServiceStatus(c.ctx, id, name)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		out := []serviceStatusJSON{}
		for _, s := range list {
			out = append(out, serviceJSON(s))
		}
		if name != "" && len(out) == 1 {
			return c.printJSON(out[0])
		}
		return c.printJSON(out)
	}
	if name != "" && len(list) == 1 {
		printService(c, list[0])
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintf(c.stdout, "No services. pyro workspace service start %s NAME -- COMMAND starts one.\n", a[0])
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tEXIT\tRESTARTS\tSTARTED\tCOMMAND")
	for _, s := range list {
		pid := "-"
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", clean(s.Name), s.State, pid, exitString(s.ExitCode), s.Restarts, ago(s.StartedAt), clean(clip(s.Command, 60)))
	}
	tw.Flush()
	return exitOK
}

// serviceLogsJSON is ServiceLogs in JSON with the data as text.
type serviceLogsJSON struct {
	Stdout *logChunkJSON `json:",omitempty"`
	Stderr *logChunkJSON `json:",omitempty"`
}

type logChunkJSON struct {
	contract.LogChunk
	Data jsonText
}

func chunkJSON(ch *contract.LogChunk) *logChunkJSON {
	if ch == nil {
		return nil
	}
	return &logChunkJSON{LogChunk: *ch, Data: ch.Data}
}

func wsServiceLogs(c *wsCall) int {
	tail := c.fs.Int("tail", contract.DefaultServiceTailLines, "the last this many lines of each stream")
	stream := c.fs.String("stream", "both", "stdout, stderr or both")
	follow := c.fs.BoolP("follow", "f", false, "keep printing what it writes, until it ends or Ctrl-C")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := validateServiceName(a[1]); err != nil {
		return c.badArg(err)
	}
	switch *stream {
	case "both", "stdout", "stderr":
	default:
		return c.usageError("--stream must be stdout, stderr or both")
	}
	if *tail < 1 || *tail > contract.MaxServiceTailLines {
		return c.usageError("--tail must be 1 to %d", contract.MaxServiceTailLines)
	}
	if *follow && c.asJSON {
		return c.usageError("--follow and --json exclude each other")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	sb, ok := c.svcBackend(b)
	if !ok {
		return exitFailure
	}
	var (
		l  contract.ServiceLogs
		ws string
	)
	err := c.onWorkspace(a[0], func(id string) (err error) {
		ws = id
		l, err = sb.ServiceLogs(c.ctx, contract.ServiceLogsRequest{ID: id, Name: a[1], Stream: *stream, TailLines: *tail, MaxBytes: 1 << 20})
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(serviceLogsJSON{Stdout: chunkJSON(l.Stdout), Stderr: chunkJSON(l.Stderr)})
	}
	writeChunk(c.stdout, c.stderr, l.Stdout)
	writeChunk(c.stderr, c.stderr, l.Stderr)
	if !*follow {
		return exitOK
	}
	// Follow from the cursors until the service ends (and its logs are
	// read) or Ctrl-C.
	var outOff, errOff int64
	if l.Stdout != nil {
		outOff = l.Stdout.Next
	}
	if l.Stderr != nil {
		errOff = l.Stderr.Next
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	ended := false
	for {
		l, err := sb.ServiceLogs(c.ctx, contract.ServiceLogsRequest{ID: ws, Name: a[1], Stream: *stream, StdoutOffset: outOff, StderrOffset: errOff, MaxBytes: 1 << 20})
		if err != nil {
			if c.ctx.Err() != nil {
				return exitOK // Ctrl-C ends a follow
			}
			return c.fail(err)
		}
		got := false
		if l.Stdout != nil {
			writeChunk(c.stdout, c.stderr, l.Stdout)
			got = got || l.Stdout.Next > outOff
			outOff = max(outOff, l.Stdout.Next)
		}
		if l.Stderr != nil {
			writeChunk(c.stderr, c.stderr, l.Stderr)
			got = got || l.Stderr.Next > errOff
			errOff = max(errOff, l.Stderr.Next)
		}
		if got {
			continue
		}
		if ended {
			return exitOK
		}
		if st, err := sb.ServiceStatus(c.ctx, ws, a[1]); err == nil && len(st) == 1 && !st[0].Running() {
			fmt.Fprintf(c.stderr, "pyro workspace service logs: %s\n", serviceLine(st[0]))
			ended = true // one more read for what it wrote last
			continue
		}
		select {
		case <-c.ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// writeChunk writes a log chunk's data to w, noting on notes what
// rotated away or was lost before it.
func writeChunk(w, notes io.Writer, ch *contract.LogChunk) {
	if ch == nil {
		return
	}
	if ch.Skipped > 0 {
		fmt.Fprintf(notes, "[... %s rotated away ...]\n", humanBytes(ch.Skipped))
	}
	w.Write(ch.Data)
	if ch.Lost > 0 {
		fmt.Fprintf(notes, "[... the log lost %s: its space was full ...]\n", humanBytes(ch.Lost))
	}
}

func wsServiceStop(c *wsCall) int {
	var grace int
	c.fs.Var(secondsValue{&grace}, "grace", "SIGTERM, then SIGKILL after this long (default 5s, max 60s)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := validateServiceName(a[1]); err != nil {
		return c.badArg(err)
	}
	g, err := contract.LimitOrDefault("--grace", grace, contract.DefaultServiceGraceSeconds, contract.MaxServiceGraceSeconds)
	if err != nil {
		return c.usageError("--grace must be between 1s and %ds", contract.MaxServiceGraceSeconds)
	}
	st, code := wsOn(c, a[0], func(sb contract.ServiceBackend, id string) (contract.ServiceStatus, error) {
		return sb.ServiceStop(c.ctx, id, a[1], time.Duration(g)*time.Second)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(serviceJSON(st))
	}
	printService(c, st)
	return exitOK
}

func wsServiceRestart(c *wsCall) int {
	var wait int
	c.fs.Var(secondsValue{&wait}, "wait", "wait up to this long for ready (default 30s, max 50s)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := validateServiceName(a[1]); err != nil {
		return c.badArg(err)
	}
	w, ok := serviceWait(c, wait)
	if !ok {
		return exitUsage
	}
	st, code := wsOn(c, a[0], func(sb contract.ServiceBackend, id string) (contract.ServiceStatus, error) {
		return sb.ServiceRestart(c.ctx, id, a[1], w)
	})
	if code >= 0 {
		return code
	}
	return c.serviceResult(a[0], st)
}
