package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/control"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/mcp/workspace"
	"github.com/pyro-mcp/pyro/netstack"
)

const mcpHelp = `Usage: pyro mcp serve [--profile NAME | --mode MODE] [flags]
       pyro mcp tools [--profile NAME | --mode MODE]
       pyro mcp config claude-code|codex|opencode

pyro mcp serve is the MCP server a chat host (Claude Code, Codex, OpenCode)
launches over stdio. Its tools let a coding agent create disposable microVM
workspaces, run commands, read, write and patch files, diff against the
seed, snapshot, reset, export and delete. It answers initialize at once and
boots nothing until a tool asks; only the protocol is written to stdout
(logs go to stderr, or --log-file).

Workspaces live in ~/.local/state/pyro/workspaces/ (or $PYRO_STATE_DIR, or
--state-dir) and survive a server restart: they come back stopped, and
workspace_start boots them from their disks. A workspace idle past its TTL
is stopped; its disk is kept for --retention (7 days) and then deleted.
VMs of every server on the state directory share the host's memory: a
create or start that would promise more than the host has is refused.
Started inside a git checkout, a workspace created without a seed gets the
checkout's tracked and non-ignored files in /workspace.

A create resumes its environment's warm memory snapshot rather than
booting (PYRO_WARM=0: always boot). The server also keeps one standby VM
restored from it, which the next create of that environment and VM shape
takes, rewound to the snapshot with a new identity (PYRO_STANDBY=0: none).

Host paths: workspace_export, workspace_sync_push and a seed path given to
workspace_create may only write or read host paths inside the directories
given with --allow-host-path DIR (repeatable; it replaces the default, which
is the directory the server starts in and the system temp directory).
Symlinks are resolved first, so a link that leads outside is refused. An
export with overwrite never deletes: the old file or tree is moved to
NAME.pyro-backup-YYYYMMDDTHHMMSS (UTC) beside it.

A terminal on the same host sees and enters the workspaces of every
running server (pyro workspace --help): each server listens on a private
control socket, $XDG_RUNTIME_DIR/pyro/control/PID.sock (else control/ in
$PYRO_STATE_DIR or the default state directory), unless --no-control.

Connect a chat host (writes its config with this binary's absolute path;
pyro host --help for doctor and repair):
  pyro host connect claude-code|codex|opencode [--profile P | --mode M] [--project DIR]

Profiles:
%s
Modes (instead of a profile: one workflow's tools, with descriptions and
instructions worded for it, so the host spends fewer tokens on them):
%s
Flags:
`

func mcpUsage(w io.Writer) {
	var b strings.Builder
	for _, p := range mcp.Profiles() {
		fmt.Fprintf(&b, "  %-16s %d tools: %s\n", p.Name, len(p.Tools), p.Description)
	}
	var m strings.Builder
	for _, p := range mcp.Modes() {
		fmt.Fprintf(&m, "  %-16s %d tools: %s\n", p.Name, len(p.Tools), p.Description)
	}
	fmt.Fprintf(w, mcpHelp, b.String(), m.String())
}

func mcpMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mcpUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		mcpUsage(stdout)
		return exitOK
	case "serve":
		return mcpServeMain(args[1:], stdout, stderr)
	case "tools":
		return mcpToolsMain(args[1:], stdout, stderr)
	case "config":
		return mcpConfigMain(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "pyro mcp: unknown subcommand %q (use serve, tools or config)\n", args[0])
	return exitUsage
}

// stateDir is where workspaces live: $PYRO_STATE_DIR or the default.
func stateDir() string {
	if d := os.Getenv("PYRO_STATE_DIR"); d != "" {
		return d
	}
	return workspace.DefaultStateDir()
}

func mcpServeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mcp serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", mcp.ProfileCore, "tool profile: "+profileNames())
	mode := fs.String("mode", "", "workflow mode instead of a profile: "+mcp.ModeNames())
	state := fs.String("state-dir", stateDir(), "where workspaces live")
	maxRunning := fs.Int("max-running", workspace.DefaultMaxRunning, "most workspaces running at once")
	retention := fs.Duration("retention", workspace.DefaultRetention,
		"how long a workspace whose idle TTL expired keeps its disk before it is deleted (0: keep it until workspace_delete)")
	defEnv := fs.String("env", workspace.DefaultEnv, "environment of workspaces that name none")
	maxResult := fs.Int("max-result-bytes", 0, "cap on each tool result's size (default 10 KiB)")
	logFile := fs.String("log-file", "", "write logs here instead of stderr")
	debug := fs.Bool("debug", false, "log every tool call and more")
	allowHost := fs.StringArray("allow-host-path", nil, "let export, sync_push and seeds use host paths beneath `DIR` (repeatable; default: the working directory and "+os.TempDir()+")")
	resolver := fs.String("resolver", defaultResolverAddr(), resolverFlagHelp)
	noControl := fs.Bool("no-control", false, "do not listen on the control socket (pyro workspace then cannot reach this server's workspaces)")
	fs.Usage = func() { mcpUsage(stderr); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pyro mcp serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if code := checkProfileMode(fs, *profile, *mode, "pyro mcp serve", stderr); code >= 0 {
		return code
	}
	if *mode != "" {
		*profile = ""
	}
	if _, err := env.Lookup(*defEnv); err != nil {
		fmt.Fprintf(stderr, "pyro mcp serve: --env: %v\n", err)
		return exitUsage
	}
	if *retention < 0 {
		fmt.Fprintf(stderr, "pyro mcp serve: --retention must not be negative\n")
		return exitUsage
	}
	ret := *retention
	if ret == 0 {
		ret = -1 // Options: negative keeps disks; 0 would mean the default
	}
	res, err := hostResolver(*resolver)
	if err != nil {
		fmt.Fprintf(stderr, "pyro mcp serve: --resolver: %v\n", err)
		return exitUsage
	}
	allowed, err := allowHostPaths(*allowHost)
	if err != nil {
		fmt.Fprintf(stderr, "pyro mcp serve: --allow-host-path: %v\n", err)
		return exitUsage
	}
	logOut := stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "pyro mcp serve: --log-file: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		logOut = f
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	m, err := openManager(managerConfig{StateDir: *state, DefaultEnv: *defEnv, MaxRunning: *maxRunning, Retention: ret,
		AllowHostPaths: allowed, Resolver: res, Logger: logger, Standby: os.Getenv("PYRO_STANDBY") != "0"})
	if err != nil {
		fmt.Fprintf(stderr, "pyro mcp serve: %v\n", err)
		return exitFailure
	}
	// The chat's first create takes a standby VM too, when the default
	// environment has its warm snapshot.
	m.StandbyForDefault()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if len(allowed) == 0 {
		allowed = workspace.DefaultAllowHostPaths()
	}
	logger.Info("pyro mcp serve", "version", version, "profile", *profile, "mode", *mode, "state_dir", *state, "allow_host_paths", allowed)
	stopControl := func() {}
	if !*noControl {
		// The terminal companion (pyro workspace) drives this very
		// Manager through it, as the chat's tools do.
		stopControl = serveControl(ctx, m, *state, logger)
	}
	err = mcp.ServeStdio(ctx, m, mcp.Options{Profile: *profile, Mode: *mode, MaxResultBytes: *maxResult, Logger: logger, Version: version})
	// Whatever ended the session, stop the VMs cleanly: their disks are
	// kept, and the next server lists the workspaces as stopped.
	done := make(chan struct{})
	go func() { stopControl(); m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		logger.Warn("workspaces did not stop within 30 s; exiting anyway (their disks are consistent)")
	}
	if err != nil && ctx.Err() == nil && err != io.EOF {
		logger.Error("mcp session ended", "err", err)
		return exitFailure
	}
	return exitOK
}

// managerConfig is how pyro mcp serve (from its flags) and the terminal
// companion's fallback (the defaults) configure a workspace Manager.
type managerConfig struct {
	StateDir       string
	DefaultEnv     string
	MaxRunning     int
	Retention      time.Duration // as workspace.Options has it: negative keeps disks
	AllowHostPaths []string      // checked by allowHostPaths; nil: the defaults
	Resolver       netstack.Resolver
	Logger         *slog.Logger
	// Standby keeps a standby VM for the next create (the server's
	// own, unless PYRO_STANDBY=0).
	// A one-off companion has no next create.
	Standby bool
}

// openManager opens the workspace Manager of c, on this process's working
// directory and pyro's cache.
func openManager(c managerConfig) (*workspace.Manager, error) {
	cwd, _ := os.Getwd()
	return workspace.Open(workspace.Options{
		StateDir:       c.StateDir,
		CacheRoot:      cacheRoot(),
		DefaultEnv:     c.DefaultEnv,
		MaxRunning:     c.MaxRunning,
		Retention:      c.Retention,
		Logger:         c.Logger,
		GitSeedDir:     cwd,
		AllowHostPaths: c.AllowHostPaths,
		Resolver:       c.Resolver,
		// PYRO_WARM=0 turns warm snapshots off: every create boots.
		WarmSnapshots: os.Getenv("PYRO_WARM") != "0",
		Standby:       c.Standby,
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			return loadEnvForRun(ctx, name, true, io.Discard)
		},
	})
}

// controlDir is where this user's servers put their control sockets and
// pyro workspace looks for them: it depends on the environment only
// ($XDG_RUNTIME_DIR, else $PYRO_STATE_DIR or the default state
// directory), never on --state-dir, so that every server is found.
func controlDir() string { return control.Dir(stateDir()) }

// serveControl serves b on this process's control socket until ctx ends
// or the returned stop is called (which waits for the calls in flight,
// cancelled). A socket that cannot be made is a warning: the chat works
// without it.
func serveControl(ctx context.Context, b contract.Backend, state string, logger *slog.Logger) (stop func()) {
	ln, path, err := control.Listen(controlDir())
	if err != nil {
		logger.Warn("no control socket: pyro workspace will not reach this server's workspaces", "err", err)
		return func() {}
	}
	if abs, err := filepath.Abs(state); err == nil {
		state = abs
	}
	logger.Info("control socket", "path", path)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := control.Serve(ctx, ln, b, control.Options{Hello: control.Hello{Version: version, StateDir: state}, Logger: logger})
		if err != nil {
			logger.Warn("the control socket stopped", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// allowHostPaths checks the --allow-host-path values: each must name an
// existing directory. They are returned absolute ("~" expanded).
func allowHostPaths(dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		abs, err := hostio.HostPath(d)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", abs)
		}
		out = append(out, abs)
	}
	return out, nil
}

// checkProfileMode validates --profile and --mode, which exclude each
// other; it returns an exit code, or -1 when they are fine.
func checkProfileMode(fs *flag.FlagSet, profile, mode, cmd string, stderr io.Writer) int {
	var err error
	switch {
	case mode != "" && fs.Changed("profile"):
		err = fmt.Errorf("--mode and --profile exclude each other: a mode is a tool set of its own (modes: %s)", mcp.ModeNames())
	case mode != "":
		_, err = mcp.ModeToolNames(mode)
	default:
		_, err = mcp.ToolNames(profile)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitUsage
	}
	return -1
}

func profileNames() string {
	var n []string
	for _, p := range mcp.Profiles() {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

func mcpToolsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mcp tools", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "", "list only this profile's tools")
	mode := fs.String("mode", "", "list only this mode's tools: "+mcp.ModeNames())
	fs.Usage = func() { mcpUsage(stderr); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if *profile == "" && *mode == "" {
		fmt.Fprint(stdout, mcp.ToolTable())
		return exitOK
	}
	if code := checkProfileMode(fs, *profile, *mode, "pyro mcp tools", stderr); code >= 0 {
		return code
	}
	names, _ := mcp.ToolNames(*profile)
	if *mode != "" {
		names, _ = mcp.ModeToolNames(*mode)
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return exitOK
}

// mcpConfigMain prints how to register pyro with a chat host.
func mcpConfigMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "pyro mcp config: name a chat host: claude-code, codex or opencode")
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		self = "pyro"
	}
	switch args[0] {
	case "claude-code", "claude":
		fmt.Fprintf(stdout, "# run this (add --scope project to share it through .mcp.json):\nclaude mcp add --transport stdio pyro -- %s mcp serve\n", self)
	case "codex":
		fmt.Fprintf(stdout, "# ~/.codex/config.toml\n[mcp_servers.pyro]\ncommand = %q\nargs = [\"mcp\", \"serve\"]\nstartup_timeout_sec = 10\ntool_timeout_sec = 600\n", self)
	case "opencode":
		fmt.Fprintf(stdout, "{\n  \"mcp\": {\n    \"pyro\": {\n      \"type\": \"local\",\n      \"command\": [%q, \"mcp\", \"serve\"],\n      \"enabled\": true\n    }\n  }\n}\n", self)
	default:
		fmt.Fprintf(stderr, "pyro mcp config: unknown chat host %q: claude-code, codex or opencode\n", args[0])
		return exitUsage
	}
	return exitOK
}
