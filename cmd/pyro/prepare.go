package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/workspace"
)

const prepareHelp = `Usage: pyro prepare [ENV] [--json] [--verbose] [--mirror SOURCE]

Warms this machine for a chat host: checks that it can boot pyro's
microVMs, builds environment ENV (default debian-12, what workspaces get
when they name none) exactly as pyro env build does, then proves one
throwaway workspace end to end. Each step prints how long it took:

  kvm          can this host boot stock kernels? (pyro kvm-check explains)
  environment  pyro env build ENV: a checksum pass when it is current, the
               initramfs alone when this pyro binary is new (no download),
               a full build when it is missing or from an older recipe
  create       boot a workspace from ENV
  exec         run uname -sr in it
  reset        rebuild it from its baseline
  delete       remove it

The workspace lives in a state directory of its own (under the state
directory, beside the servers' workspaces, never among them), so no chat
session sees it, and it is deleted whatever happens: a failed step or
Ctrl-C still runs delete. Build progress goes to stderr; the steps to
stdout (--json: one JSON report for scripts).

Exits 0 when every step passed, 1 when one failed (saying what to do), 2
on bad arguments, 130 when interrupted.

Examples:
  pyro prepare                  # debian-12: about a minute the first time
  pyro prepare minimal          # busybox only: seconds
  pyro prepare --json | jq '.steps[] | [.name, .seconds]'

Flags:
`

// prepareWorkspaceName labels prepare's throwaway workspace wherever it
// shows (logs, a crash's leftovers).
const prepareWorkspaceName = "pyro-prepare"

// prepareStep is one step of prepare and how it went.
type prepareStep struct {
	Name    string  `json:"name"`
	OK      bool    `json:"ok"`
	Detail  string  `json:"detail"`
	Seconds float64 `json:"seconds"`
}

// prepareReport is what prepare did; --json prints it as is.
type prepareReport struct {
	OK    bool          `json:"ok"`
	Env   string        `json:"env"`
	Steps []prepareStep `json:"steps"`
	// ReadySeconds is create plus the first exec: how long a chat's
	// first command waits for a fresh workspace.
	ReadySeconds float64 `json:"ready_seconds,omitempty"`
	Seconds      float64 `json:"seconds"`
	Summary      string  `json:"summary"`
	// Error and Fix say what failed and what to do about it.
	Error       string `json:"error,omitempty"`
	Fix         string `json:"fix,omitempty"`
	Interrupted bool   `json:"interrupted,omitempty"`
}

// prepareBackend is the part of the workspace contract prepare drives.
type prepareBackend interface {
	Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error)
	Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error)
	Reset(ctx context.Context, id string, snapshot string) (contract.ResetResult, error)
	Delete(ctx context.Context, id string) error
}

// prepareDeps is what prepare reaches outside itself; tests replace it.
type prepareDeps struct {
	// host says whether this host can boot stock kernels, and if not,
	// the failing check.
	host func() (ok bool, c check)
	// build builds or checks environment name as pyro env build does and
	// says what it did; its progress goes to progress.
	build func(ctx context.Context, name string, progress io.Writer) (string, error)
	// open returns a workspace backend on a throwaway state directory
	// and the function that closes it and removes that directory.
	open func(name string) (prepareBackend, func(), error)
}

func prepareMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("prepare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON report instead of a line per step")
	verbose := fs.BoolP("verbose", "v", false, "also show the build tools' output and the workspace manager's log")
	mirrors := fs.StringArray("mirror", nil, "apt source for Debian environments, as for pyro env build (repeatable)")
	fs.Usage = func() { fmt.Fprint(stderr, prepareHelp); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	name, err := prepareArgs(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "pyro prepare: %v\n", err)
		return exitUsage
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var log io.Writer = io.Discard
	if *verbose {
		log = stderr
	}
	deps := prepareDeps{
		host: func() (bool, check) {
			return hostBootsVMs(probeHostChecks(kvm.DevicePath, "/sys", "/proc/cpuinfo"))
		},
		build: func(ctx context.Context, name string, progress io.Writer) (string, error) {
			return buildForPrepare(ctx, name, progress, *verbose, *mirrors)
		},
		open: func(string) (prepareBackend, func(), error) { return openThrowaway(log, stderr) },
	}
	var steps io.Writer = stdout
	if *asJSON {
		steps = nil
	}
	r := prepare(ctx, name, deps, steps, stderr)
	if *asJSON {
		printJSON(stdout, r)
	}
	switch {
	case r.Interrupted:
		return exitRunSignal
	case !r.OK:
		return exitFailure
	}
	return exitOK
}

// prepareArgs checks prepare's arguments and returns the environment.
func prepareArgs(args []string) (string, error) {
	switch len(args) {
	case 0:
		return workspace.DefaultEnv, nil
	case 1:
		if _, err := env.Lookup(args[0]); err != nil {
			return "", err
		}
		return args[0], nil
	}
	return "", fmt.Errorf("name one environment at most, not %d (pyro env list shows them)", len(args))
}

// hostBootsVMs reduces doctor's host checks to one answer: the
// virtualization line when it passes or fails (the kind of KVM decides
// everything), else the first failing check.
func hostBootsVMs(checks []check) (bool, check) {
	var virt, failed *check
	for i, c := range checks {
		if c.Name == "virtualization" {
			virt = &checks[i]
		}
		if !c.OK && failed == nil {
			failed = &checks[i]
		}
	}
	switch {
	case virt != nil && !virt.OK:
		return false, *virt
	case failed != nil:
		return false, *failed
	case virt != nil:
		return true, *virt
	}
	return true, check{Name: "virtualization", OK: true}
}

// prepare runs the steps, printing each to steps as it ends (nil: print
// nothing), and returns the report. The workspace it creates is deleted
// whatever happens after the create, interruption included.
func prepare(ctx context.Context, name string, deps prepareDeps, steps, progress io.Writer) (r prepareReport) {
	r.Env = name
	begin := time.Now()
	if steps != nil {
		fmt.Fprintf(steps, "pyro prepare %s\n", name)
	}
	step := func(s string, t0 time.Time, ok bool, detail string) {
		st := prepareStep{Name: s, OK: ok, Detail: detail, Seconds: time.Since(t0).Seconds()}
		r.Steps = append(r.Steps, st)
		if steps != nil {
			fmt.Fprintln(steps, formatStep(st))
		}
	}
	fail := func(err, fix string) {
		r.Error, r.Fix = err, fix
		if ctx.Err() != nil {
			r.Interrupted = true
		}
	}
	defer func() {
		r.Seconds = time.Since(begin).Seconds()
		r.Summary = prepareSummary(r)
		if steps != nil {
			fmt.Fprintln(steps, r.Summary)
			if r.Fix != "" {
				fmt.Fprintf(steps, "fix: %s\n", r.Fix)
			}
		}
	}()

	t0 := time.Now()
	ok, c := deps.host()
	if !ok {
		step("kvm", t0, false, c.Name+": "+c.Detail)
		fail("this host cannot boot pyro's microVMs: "+c.Name+": "+c.Detail, kvmFix(name, c))
		return r
	}
	step("kvm", t0, true, c.Detail)

	t0 = time.Now()
	did, err := deps.build(ctx, name, progress)
	if err != nil {
		step("environment", t0, false, err.Error())
		fail(fmt.Sprintf("building %s: %v", name, err),
			fmt.Sprintf("pyro env build -v %s shows the build tools' own output; pyro doctor checks the rest", name))
		return r
	}
	step("environment", t0, true, did)
	if ctx.Err() != nil {
		fail("interrupted", "")
		return r
	}

	t0 = time.Now()
	b, closeBackend, err := deps.open(name)
	if err != nil {
		step("create", t0, false, err.Error())
		fail("opening a throwaway state directory: "+err.Error(), "pyro doctor checks the state directory")
		return r
	}
	defer closeBackend()
	ws, err := b.Create(ctx, contract.CreateRequest{
		Env: name, Name: prepareWorkspaceName, Labels: map[string]string{"pyro": "prepare"},
		TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone},
	})
	if err != nil {
		msg, hint := wordedError(err)
		step("create", t0, false, msg)
		fail("creating a workspace: "+msg, firstNonEmpty(hint, "pyro doctor checks what pyro mcp serve needs"))
		return r
	}
	create := time.Since(t0)
	step("create", t0, true, createDetail(ws))
	// From here on the workspace exists: delete it whatever happens,
	// with a context of its own when ctx was cancelled.
	defer func() {
		dctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer stop()
		t0 := time.Now()
		if err := b.Delete(dctx, ws.ID); err != nil {
			msg, _ := wordedError(err)
			step("delete", t0, false, msg)
			r.OK = false
			if r.Error == "" {
				fail("deleting the workspace: "+msg, "nothing is left behind: its state directory is removed all the same")
			}
			return
		}
		step("delete", t0, true, "removed")
	}()

	t0 = time.Now()
	res, err := b.Exec(ctx, contract.ExecRequest{ID: ws.ID, Argv: []string{"uname", "-sr"}, Cwd: "/workspace", TimeoutSeconds: 60})
	switch {
	case err != nil:
		msg, hint := wordedError(err)
		step("exec", t0, false, msg)
		fail("running a command in the workspace: "+msg, firstNonEmpty(hint, "pyro doctor checks what pyro mcp serve needs"))
		return r
	case res.ExitCode != 0:
		out := strings.TrimSpace(string(res.Stderr) + string(res.Stdout))
		step("exec", t0, false, fmt.Sprintf("uname -sr exited %d: %s", res.ExitCode, out))
		fail(fmt.Sprintf("uname -sr failed in the workspace (exit %d): %s", res.ExitCode, out),
			fmt.Sprintf("the environment may be damaged: pyro env build --force %s", name))
		return r
	}
	r.ReadySeconds = (create + time.Since(t0)).Seconds()
	step("exec", t0, true, fmt.Sprintf("uname -sr: %s (exit 0)", strings.TrimSpace(string(res.Stdout))))

	t0 = time.Now()
	rr, err := b.Reset(ctx, ws.ID, "")
	switch {
	case err != nil:
		msg, hint := wordedError(err)
		step("reset", t0, false, msg)
		fail("resetting the workspace: "+msg, firstNonEmpty(hint, "pyro doctor checks what pyro mcp serve needs"))
		return r
	case rr.Workspace.State != contract.StateRunning:
		step("reset", t0, false, fmt.Sprintf("the workspace is %s after the reset: %s", rr.Workspace.State, rr.Workspace.Error))
		fail("the workspace did not come back from its reset: "+rr.Workspace.Error, "pyro doctor checks what pyro mcp serve needs")
		return r
	}
	step("reset", t0, true, resetDetail(rr))
	r.OK = true
	return r
}

// createDetail says how prepare's workspace started: booted, or resumed
// from the environment's warm snapshot (which the next creates resume).
func createDetail(ws contract.Workspace) string {
	how := "booted"
	if ws.Boot == contract.BootWarm {
		how = "resumed the environment's warm snapshot"
	}
	s := fmt.Sprintf("workspace %s %s (%d vCPUs, %d MiB)", ws.ID, how, ws.VCPUs, ws.MemMiB)
	if ws.BootNote != "" {
		s += "; " + ws.BootNote
	}
	return s
}

// resetDetail says how prepare's reset brought the workspace back.
func resetDetail(rr contract.ResetResult) string {
	s := "rebuilt from its baseline (booted), running"
	if rr.Memory {
		s = "resumed its baseline's memory image, running"
	}
	if rr.Note != "" {
		s += "; " + rr.Note
	}
	return s
}

// kvmFix says what to do on a host that cannot boot stock kernels.
func kvmFix(name string, c check) string {
	fix := "pyro kvm-check explains what to fix"
	if c.Fix != "" {
		fix = "pyro kvm-check explains; in short: " + c.Fix
	}
	return fix + ". Without hardware virtualization (Intel VT-x or AMD-V) pyro's VMs boot only inside its " +
		"nested-KVM test harness, which is for testing pyro, not for serving a chat host. " +
		"pyro env build " + name + " still builds the environment."
}

// prepareSummary is the final line.
func prepareSummary(r prepareReport) string {
	switch {
	case r.OK:
		return fmt.Sprintf("ready: %s is warm; a new workspace ran its first command after %s (total %s)",
			r.Env, formatSeconds(r.ReadySeconds), formatSeconds(r.Seconds))
	case r.Interrupted:
		return fmt.Sprintf("interrupted after %s; nothing was left behind", formatSeconds(r.Seconds))
	}
	return "FAIL: " + r.Error
}

// formatStep is one step's line: mark, name, detail, duration.
func formatStep(s prepareStep) string {
	mark := "ok  "
	if !s.OK {
		mark = "FAIL"
	}
	return fmt.Sprintf("  [%s] %-12s %7s  %s", mark, s.Name, formatSeconds(s.Seconds), s.Detail)
}

// formatSeconds prints a duration to the precision it deserves.
func formatSeconds(s float64) string {
	switch {
	case s < 10:
		return fmt.Sprintf("%.2fs", s)
	case s < 60:
		return fmt.Sprintf("%.1fs", s)
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// wordedError returns a workspace error's message and hint, worded for
// the command line.
func wordedError(err error) (msg, hint string) {
	if e, ok := contract.AsError(err); ok {
		e = e.Worded(cliFace{})
		return e.Msg, e.Hint
	}
	return err.Error(), ""
}

// buildForPrepare is pyro env build NAME, and says what it did: nothing
// (current), a new initramfs, or a build.
func buildForPrepare(ctx context.Context, name string, progress io.Writer, verbose bool, mirrors []string) (string, error) {
	self, err := agentBinary()
	if err != nil {
		return "", err
	}
	root := cacheRoot()
	before, _ := env.Load(root, name)
	e, err := env.Build(ctx, env.BuildOptions{
		CacheRoot: root, Name: name, AgentBinary: self, Progress: progress,
		Verbose: verbose, Mirrors: mirrors, PyroVersion: version,
	})
	if err != nil {
		return "", err
	}
	m := e.Manifest
	switch {
	case before == nil || !before.Manifest.BuiltAt.Equal(m.BuiltAt):
		return fmt.Sprintf("built (kernel %s): %s", m.Kernel.Version, e.Dir), nil
	case !before.Manifest.InitrdBuiltAt.Equal(m.InitrdBuiltAt):
		return fmt.Sprintf("initramfs rebuilt with this pyro as its agent (no download): %s", e.Dir), nil
	}
	return fmt.Sprintf("current, checksums verified (kernel %s): %s", m.Kernel.Version, e.Dir), nil
}

// openThrowaway opens a workspace manager on a state directory of its
// own, made beside the servers' workspaces (so on the same file system)
// but never among them. The returned function stops its VMs and removes
// the directory.
func openThrowaway(log, stderr io.Writer) (prepareBackend, func(), error) {
	parent := stateDir()
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(parent, ".prepare-")
	if err != nil {
		return nil, nil, err
	}
	m, err := workspace.Open(workspace.Options{
		StateDir:   dir,
		CacheRoot:  cacheRoot(),
		MaxRunning: 1,
		// Its create leaves the environment's warm snapshot in the
		// cache, so the chat's first create resumes it.
		WarmSnapshots: os.Getenv("PYRO_WARM") != "0",
		Logger:        slog.New(slog.NewTextHandler(log, nil)),
		GitSeedDir:    dir,
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			return loadEnvForRun(ctx, name, true, io.Discard)
		},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return m, func() {
		m.Close()
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "pyro prepare: removing %s: %v\n", dir, err)
		}
	}, nil
}
