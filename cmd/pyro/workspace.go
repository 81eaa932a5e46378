package main

// pyro workspace: the terminal companion. Each subcommand is one
// operation of the workspace contract (package mcp/contract), offered to
// a person at a terminal: the same backend the chat host's tools drive
// (workspaceBackend), human output by default, the contract's results as
// JSON with --json, and hints worded with this face's command and flag
// names (cliFace).
//
// This file holds the dispatcher, the help, the face and what every
// subcommand shares; the subcommands live in workspace_*.go by group.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	flag "github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// openWorkspaceBackend is how every pyro workspace command gets its
// backend; tests replace it with a fake.
var openWorkspaceBackend = workspaceBackend

// wsStdin is what --text-file -, --patch-file -, --stdin-file - and
// --value-stdin read; tests replace it.
var wsStdin io.Reader = os.Stdin

// wsNow is the clock relative times are shown against; tests fix it.
var wsNow = time.Now

// wsCommand is one pyro workspace subcommand.
type wsCommand struct {
	name    string        // the words after "pyro workspace", e.g. "file list"
	args    string        // its positional arguments, e.g. "ID PATH"
	group   string        // heading in pyro workspace --help
	summary string        // one line for the list
	help    string        // what it does, its exit status and examples
	ops     []contract.Op // the contract operations it offers
	// ownSignals: the command handles SIGINT and SIGTERM itself (exec,
	// shell); the others get a context that they cancel.
	ownSignals bool
	noJSON     bool // no --json (the interactive shell)
	run        func(c *wsCall) int
}

// wsCall is one run of a subcommand.
type wsCall struct {
	cmd            *wsCommand
	args           []string
	fs             *flag.FlagSet
	stdout, stderr io.Writer
	asJSON         bool
	ctx            context.Context

	b       contract.Backend // once open
	closeFn func()
	// printOnlyFlags: run only declares the flags, and parse prints them
	// (pyro workspace help COMMAND).
	printOnlyFlags bool
}

// wsGroups orders the headings of pyro workspace --help.
var wsGroups = []string{"Lifecycle", "Work inside", "Review and cross the host boundary", "Checkpoints",
	"Network and secrets", "Services", "Environments"}

// wsCommands is every subcommand, in the order the help lists them
// (set in init: the commands word their hints through cliFace, which
// reads this table).
var wsCommands []*wsCommand

func init() {
	wsCommands = append(wsCommands, lifeCommands()...)
	wsCommands = append(wsCommands, execCommands()...)
	wsCommands = append(wsCommands, shellCommand())
	wsCommands = append(wsCommands, fileCommands()...)
	wsCommands = append(wsCommands, reviewCommands()...)
	wsCommands = append(wsCommands, hostCommands()...)
	wsCommands = append(wsCommands, snapshotCommands()...)
	wsCommands = append(wsCommands, netCommands()...)
	wsCommands = append(wsCommands, serviceCommands()...)
}

const workspaceHelpHead = `Usage: pyro workspace COMMAND [ID] [ARGS] [flags]

The terminal companion: every operation the chat host's tools offer on
disposable workspaces, from a terminal. It works on the same workspaces
your chat host uses (the ones pyro mcp serve created), so a person can
watch, check and step into what the agent is doing; with no server
running it works on the state directory itself, booting VMs as needed.

A workspace is named by its id or by its name, wherever ID appears.
Every command prints for a person by default and takes --json for the
contract's result as JSON; errors say what to do next and exit 1 (2 for
bad arguments).
`

const workspaceHelpTail = `
Examples:
  id=$(pyro workspace create --seed . --name fix-123 --id-only)
  pyro workspace exec fix-123 -- make test        # streams; exits with make's status
  pyro workspace file write fix-123 notes.txt --text-file ./notes.txt
  pyro workspace diff fix-123
  pyro workspace export fix-123 ./out.tar.gz
  pyro workspace shell fix-123
  pyro workspace delete fix-123

Run pyro workspace COMMAND --help for a command's arguments, flags and examples.
`

func workspaceUsage(w io.Writer) {
	fmt.Fprint(w, workspaceHelpHead)
	for _, g := range wsGroups {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, c := range wsCommands {
			if c.group == g {
				fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
			}
		}
	}
	fmt.Fprint(w, workspaceHelpTail)
}

// findWSCommand finds the subcommand args start with; n is the number of
// words its name took.
func findWSCommand(args []string) (c *wsCommand, n int) {
	if len(args) >= 2 {
		two := args[0] + " " + args[1]
		for _, c := range wsCommands {
			if c.name == two {
				return c, 2
			}
		}
	}
	if len(args) >= 1 {
		for _, c := range wsCommands {
			if c.name == args[0] {
				return c, 1
			}
		}
	}
	return nil, 0
}

// wsGroupCommands lists the subcommands whose name starts with word
// (file: file list, file read, file write).
func wsGroupCommands(word string) []*wsCommand {
	var out []*wsCommand
	for _, c := range wsCommands {
		if strings.HasPrefix(c.name, word+" ") {
			out = append(out, c)
		}
	}
	return out
}

func workspaceMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		workspaceUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		if len(args) > 1 {
			if c, _ := findWSCommand(args[1:]); c != nil {
				c.usage(stdout, nil)
				return exitOK
			}
		}
		workspaceUsage(stdout)
		return exitOK
	}
	cmd, n := findWSCommand(args)
	if cmd == nil {
		if sub := wsGroupCommands(args[0]); len(sub) > 0 {
			var names []string
			for _, c := range sub {
				names = append(names, strings.TrimPrefix(c.name, args[0]+" "))
			}
			what := "name one"
			if len(args) > 1 {
				what = fmt.Sprintf("unknown subcommand %q", args[1])
			}
			fmt.Fprintf(stderr, "pyro workspace %s: %s: %s\n", args[0], what, strings.Join(names, ", "))
			return exitUsage
		}
		fmt.Fprintf(stderr, "pyro workspace: unknown command %q%s\nRun pyro workspace --help for the list.\n", args[0], wsSuggest(args[0]))
		return exitUsage
	}
	c := &wsCall{cmd: cmd, args: args[n:], stdout: stdout, stderr: stderr, ctx: context.Background()}
	c.fs = flag.NewFlagSet("workspace "+cmd.name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	c.fs.SortFlags = false
	if !cmd.noJSON {
		c.fs.BoolVar(&c.asJSON, "json", false, "print the result as JSON (the workspace contract's types)")
	}
	if !cmd.ownSignals {
		var stop context.CancelFunc
		c.ctx, stop = signal.NotifyContext(c.ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	defer func() {
		if c.closeFn != nil {
			c.closeFn()
		}
	}()
	return cmd.run(c)
}

// wsSuggest proposes the command a typo probably meant.
func wsSuggest(name string) string {
	for _, c := range wsCommands {
		first, _, _ := strings.Cut(c.name, " ")
		if name != "" && (strings.HasPrefix(first, name) || strings.HasPrefix(name, first)) {
			return fmt.Sprintf(" (did you mean %q?)", first)
		}
	}
	return ""
}

// usage prints the command's help, with its flags when fs is given.
func (cmd *wsCommand) usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: pyro workspace %s %s\n\n%s", cmd.name, cmd.args, strings.TrimLeft(cmd.help, "\n"))
	if fs == nil {
		fs = flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		// The flags are declared by run: show them by running it for help.
		c := &wsCall{cmd: cmd, args: []string{"--help"}, stdout: w, stderr: io.Discard, ctx: context.Background(), fs: fs}
		fs.SetOutput(io.Discard)
		fs.Usage = func() {}
		fs.SortFlags = false
		if !cmd.noJSON {
			fs.BoolVar(&c.asJSON, "json", false, "print the result as JSON (the workspace contract's types)")
		}
		c.printOnlyFlags = true
		cmd.run(c)
		return
	}
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
}

// parse parses the command's flags (declared on c.fs before the call)
// and returns -1 to go on, or the exit code to return: exitOK after
// --help, exitUsage after a bad flag.
func (c *wsCall) parse() int {
	if c.printOnlyFlags {
		if c.fs.HasFlags() {
			fmt.Fprintf(c.stdout, "\nFlags:\n%s", c.fs.FlagUsages())
		}
		return exitOK
	}
	err := c.fs.Parse(c.args)
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		c.cmd.usage(c.stdout, c.fs)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "pyro workspace %s: %v\n", c.cmd.name, err)
	if strings.Contains(c.cmd.args, "-- PROGRAM") {
		fmt.Fprintf(c.stderr, "The command and its own flags go after --: pyro workspace %s ID -- PROGRAM [ARG...]\n", c.cmd.name)
	}
	fmt.Fprintf(c.stderr, "Run pyro workspace %s --help for its arguments and flags.\n", c.cmd.name)
	return exitUsage
}

// usageError reports bad arguments and returns exitUsage.
func (c *wsCall) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "pyro workspace %s: %s\nUsage: pyro workspace %s %s\n", c.cmd.name, fmt.Sprintf(format, a...), c.cmd.name, c.cmd.args)
	return exitUsage
}

// positional returns the positional arguments after checking their
// number: at least min, at most max (-1: no limit).
func (c *wsCall) positional(min, max int) ([]string, bool) {
	a := c.fs.Args()
	switch {
	case len(a) < min:
		c.usageError("missing arguments")
		return nil, false
	case max >= 0 && len(a) > max:
		c.usageError("unexpected argument %q", a[max])
		return nil, false
	}
	return a, true
}

// open returns the backend, opening it on first use.
func (c *wsCall) open() (contract.Backend, bool) {
	if c.b != nil {
		return c.b, true
	}
	b, closeFn, err := openWorkspaceBackend(c.ctx, c.stderr)
	if err != nil {
		fmt.Fprintf(c.stderr, "pyro workspace %s: %v\n", c.cmd.name, err)
		return nil, false
	}
	c.b, c.closeFn = b, closeFn
	return b, true
}

// onWorkspace runs fn with the workspace reference ref; if the backend
// does not know ref as an ID, it retries once with the ID of the
// workspace named ref (as the MCP tool layer does).
func (c *wsCall) onWorkspace(ref string, fn func(id string) error) error {
	if err := contract.ValidateRef(ref); err != nil {
		return err
	}
	err := fn(ref)
	if e, ok := contract.AsError(err); ok && e.Code == contract.CodeNotFound && e.Resource == contract.ResourceWorkspace {
		list, lerr := c.b.List(c.ctx)
		if lerr != nil {
			return err
		}
		for _, w := range list {
			if w.Name == ref && w.ID != ref {
				return fn(w.ID)
			}
		}
	}
	return err
}

// fail prints err worded for a terminal, with what to do next, and
// returns the exit code: 1, or 130 when the command was interrupted.
func (c *wsCall) fail(err error) int {
	msg, hint := c.explain(err)
	fmt.Fprintf(c.stderr, "pyro workspace %s: %s\n", c.cmd.name, msg)
	if hint != "" {
		fmt.Fprintf(c.stderr, "%s\n", hint)
	}
	if errors.Is(err, context.Canceled) {
		return exitRunSignal
	}
	return exitFailure
}

// badArg prints an argument the contract refuses, as fail does, and
// returns exitUsage.
func (c *wsCall) badArg(err error) int {
	c.fail(err)
	return exitUsage
}

// explain returns what happened and what to do next.
func (c *wsCall) explain(err error) (msg, hint string) {
	e, ok := contract.AsError(err)
	if !ok {
		switch {
		case errors.Is(err, context.Canceled):
			return "interrupted", ""
		case errors.Is(err, context.DeadlineExceeded):
			return "timed out", "Retry; if it keeps timing out, check the host with pyro doctor."
		}
		return err.Error(), ""
	}
	e = e.Worded(cliFace{})
	msg, hint = e.Msg, e.Hint
	if msg == "" {
		msg = string(e.Code)
	}
	if e.Code == contract.CodeInternal && e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if hint == "" {
		hint = cliWord(defaultHint(e))
	}
	if e.Code == contract.CodeNotFound && e.Resource == contract.ResourceWorkspace && c.b != nil && c.ctx.Err() == nil {
		if list, err := c.b.List(c.ctx); err == nil {
			if len(list) == 0 {
				hint = cliWord("There are no workspaces; {{create}} makes one.")
			} else {
				hint += " Workspaces: " + briefWorkspaces(list, 10) + "."
			}
		}
	}
	return msg, hint
}

// defaultHint is the advice, with markers, for an *Error that brought none.
func defaultHint(e *contract.Error) string {
	switch e.Code {
	case contract.CodeNotFound:
		switch e.Resource {
		case contract.ResourceWorkspace:
			return "{{list}} shows the workspaces by id and name; {{create}} makes one."
		case contract.ResourceSnapshot:
			return "{{snapshot.list}} ID shows the workspace's snapshots; {{reset}} ID without one returns to the baseline."
		case contract.ResourceFile:
			return "{{file.list}} ID DIR shows what is there; relative guest paths are under /workspace."
		case contract.ResourceEnv:
			return "{{env.list}} shows the environments this host has."
		case contract.ResourceHostPath:
			return "Check that the host path exists."
		case contract.ResourceService:
			return "{{service.status}} ID lists the workspace's services."
		}
		return "Check the name and try again."
	case contract.CodeStopped:
		return "Start it with {{start}} ID, or make a new one with {{create}}."
	case contract.CodeEnvMissing:
		name := e.Name
		if name == "" {
			name = "NAME"
		}
		return "Build it with pyro env build " + name + ", then try again."
	case contract.CodeExists:
		switch e.Resource {
		case contract.ResourceWorkspace:
			return "Pick another name, or use that workspace ({{list}})."
		case contract.ResourceSnapshot:
			return "Pick another name, or delete that snapshot with {{snapshot.delete}} ID NAME."
		case contract.ResourceHostPath:
			return "Pass --overwrite to replace it (the old one is moved beside it), or choose another path."
		}
		return "Pick another name."
	case contract.CodeConflict:
		return "The workspace is not in the state this needs: check it with {{status}} ID and try again."
	case contract.CodeLimit:
		return "Stop or delete a workspace you no longer need ({{stop}} ID, {{delete}} ID), then try again."
	case contract.CodeTimeout:
		return "Retry; if it keeps timing out, check the host with pyro doctor."
	case contract.CodeInternal:
		return "This is a pyro failure, not a problem with the arguments: retry once, and report it if it persists."
	}
	return ""
}

// briefWorkspaces lists up to n workspaces as "ID (NAME, STATE)".
func briefWorkspaces(list []contract.Workspace, n int) string {
	var parts []string
	for i, w := range list {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(list)-n))
			break
		}
		s := w.ID + " ("
		if w.Name != "" {
			s += clean(w.Name) + ", "
		}
		parts = append(parts, s+string(w.State)+")")
	}
	return strings.Join(parts, ", ")
}

// printJSON writes v as indented JSON.
func (c *wsCall) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "pyro workspace %s: %v\n", c.cmd.name, err)
		return exitFailure
	}
	return exitOK
}

// jsonText is output bytes in JSON: a string (bytes that are not UTF-8
// read as U+FFFD; the host files keep them as written).
type jsonText []byte

func (t jsonText) MarshalJSON() ([]byte, error) { return json.Marshal(string(t)) }

// readInput reads a host file, or stdin for "-", up to max bytes; what
// names the flag in errors.
func readInput(what, path string, max int) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = wsStdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s: more than %d bytes; the limit is %d", what, max, max)
	}
	return data, nil
}

// hostPath makes a host path absolute against this process's working
// directory: the server that receives it may run elsewhere.
func hostPath(p string) string {
	if p == "" || p == "-" {
		return p
	}
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// keyValues parses repeated K=V flags.
func keyValues(flagName string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flagName, kv)
		}
		m[k] = v
	}
	return m, nil
}

// clean makes guest-controlled text safe to print in a table or a line:
// control characters (escape sequences, newlines) show as '?'.
func clean(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// cleanText is clean for a line of text: tabs stay.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\t' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// ago says how long before now t was ("3m ago"); "-" for zero.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := wsNow().Sub(t)
	if d < 0 {
		return "in " + shortDuration(-d)
	}
	return shortDuration(d) + " ago"
}

// until says how long from now t is ("in 9m"); "never" for zero.
func until(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(wsNow())
	if d < 0 {
		return shortDuration(-d) + " ago"
	}
	return "in " + shortDuration(d)
}

// shortDuration is d in its largest unit: 45s, 12m, 3h, 2d.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// fmtDuration is a run time for a person: 12ms, 3.4s, 2m05s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// labelString is labels as k=v, sorted.
func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, clean(k)+"="+clean(l[k]))
	}
	return strings.Join(parts, ",")
}

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// wsOn opens the backend, finds in it the interface fn needs (Backend, or
// one of its optional parts), and runs fn on the workspace ref (an id or
// a name). code is -1 when fn ran and succeeded; else the failure has been
// reported and code is the command's exit status.
func wsOn[I any, R any](c *wsCall, ref string, fn func(b I, id string) (R, error)) (r R, code int) {
	b, ok := c.open()
	if !ok {
		return r, exitFailure
	}
	ib, ok := b.(I)
	if !ok {
		lacks := "lacks this operation"
		switch any((*I)(nil)).(type) {
		case *contract.NetworkBackend:
			lacks = "has no workspace network"
		case *contract.SecretBackend:
			lacks = "keeps no secrets"
		case *contract.ServiceBackend:
			lacks = "runs no services"
		case *contract.Forker:
			lacks = "does not fork workspaces"
		}
		return r, c.fail(contract.Invalid("this backend %s", lacks))
	}
	err := c.onWorkspace(ref, func(id string) (err error) {
		r, err = fn(ib, id)
		return err
	})
	if err != nil {
		return r, c.fail(err)
	}
	return r, -1
}

// watchStart guards the start of a command or a shell: a signal that
// comes before it has started cancels (cancel) and is handed back on
// sigs, so that what follows, should it start all the same, sees it too.
// started ends the watch and waits for it, so that no later signal is
// taken from the session; calling it again is harmless.
func watchStart(sigs chan os.Signal, cancel context.CancelFunc) (started func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case sig := <-sigs:
			cancel()
			select {
			case sigs <- sig:
			default:
			}
		case <-done:
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-ended }) }
}
