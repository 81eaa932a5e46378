package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/guest/instance"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// exitRunUnable is pyro run's exit code when it could not run the command
// at all (as docker run and env use 125/126/127, so that it cannot be
// mistaken for the command's own).
const exitRunUnable = 125

// envRunFlags are the flags of the ENV form of pyro run.
type envRunFlags struct {
	vcpus, memMiB int
	diskMiB       int           // 0: runDefaultDiskMiB
	timeout       time.Duration // for the command; 0: none
	env           []string
	workdir       string
	console       bool
	quiet         bool
	verbose       bool
	network       []string // grants (--network)
	resolver      string   // --resolver: DNS server for granted names; "" the host's
}

// runEnvMain is pyro run ENV -- COMMAND: boot, exec, stream, tear down.
func runEnvMain(args []string, f envRunFlags, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "pyro run: "+format+"\n", a...)
		return exitRunUnable
	}
	name, argv := args[0], args[1:]
	if len(argv) == 0 {
		fmt.Fprintf(stderr, "pyro run: no command: pyro run %s -- COMMAND [ARG...]\n", name)
		return exitUsage
	}
	vars := map[string]string{}
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, "\x00") || strings.Contains(v, "\x00") {
			fmt.Fprintf(stderr, "pyro run: --env %q: want NAME=VALUE\n", kv)
			return exitUsage
		}
		vars[k] = v
	}
	if f.workdir != "" && !strings.HasPrefix(f.workdir, "/") {
		fmt.Fprintf(stderr, "pyro run: --workdir %q: give an absolute guest path\n", f.workdir)
		return exitUsage
	}
	grants, err := contract.ParseGrants(f.network)
	if err != nil {
		e, _ := contract.AsError(err)
		fmt.Fprintf(stderr, "pyro run: --network: %s\n%s\n", cliWord(e.Msg), cliWord(e.Hint))
		return exitUsage
	}
	resolver, err := hostResolver(f.resolver)
	if err != nil {
		fmt.Fprintf(stderr, "pyro run: --resolver: %v\n", err)
		return exitUsage
	}
	if _, err := env.Lookup(name); err != nil {
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
		return exitUsage
	}

	begin := time.Now()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	e, err := loadEnvForRun(ctx, name, f.quiet, stderr)
	if err != nil {
		return fail("%v", err)
	}

	// The VM's disk: a private copy-on-write layer over the environment's
	// read-only image, deleted with the VM.
	tmp, err := os.MkdirTemp("", "pyro-run-")
	if err != nil {
		return fail("creating the VM's scratch directory: %v", err)
	}
	defer os.RemoveAll(tmp)
	fi, err := os.Stat(e.Rootfs)
	if err != nil {
		return fail("%v", &env.NotBuiltError{Name: name, Reason: "its root filesystem is missing", Err: err})
	}
	size, err := runDiskBytes(f.diskMiB, fi.Size())
	if err != nil {
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
		return exitUsage
	}
	d, err := disk.Create(filepath.Join(tmp, "disk"), e.Rootfs, size)
	if err != nil {
		return fail("creating the VM's disk: %v", err)
	}
	defer d.Close()

	var console io.Writer
	if f.console {
		console = stderr
	}
	netStack, nb, err := runNetwork(grants, resolver)
	if err != nil {
		return fail("%v", err)
	}
	if netStack != nil {
		defer netStack.Close()
	}
	vm, err := instance.Start(ctx, instance.Config{
		Env: e, Disk: d, DiskID: "pyro-run", VCPUs: f.vcpus, MemMiB: f.memMiB,
		Hostname: name, Console: console, Net: nb,
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "pyro run: interrupted while booting")
			return exitRunSignal
		}
		return fail("booting %s: %v", name, err)
	}
	defer vm.Close()
	ready := time.Since(begin)

	req := proto.ExecRequest{Argv: argv, Env: vars, Cwd: f.workdir, Stdin: os.Stdin, Timeout: f.timeout}
	execCtx := ctx
	if f.timeout > 0 {
		// The guest enforces the timeout; this only guards against a
		// guest that stops answering altogether.
		var stop context.CancelFunc
		execCtx, stop = context.WithTimeout(ctx, f.timeout+proto.DefaultKillGrace+30*time.Second)
		defer stop()
	}
	execStart := time.Now()
	res, err := vm.Agent.Exec(execCtx, req, stdout, stderr)
	ran := time.Since(execStart)
	code := exitRunUnable
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "pyro run: interrupted; the command was killed")
		code = exitRunSignal
	case err != nil && execCtx.Err() != nil:
		fmt.Fprintf(stderr, "pyro run: the guest stopped answering after --timeout %v; killed the VM\n", f.timeout)
		code = exitRunTimeout
	case err != nil:
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
	case res.TimedOut:
		fmt.Fprintf(stderr, "pyro run: --timeout %v passed; the command and its children were killed\n", f.timeout)
		code = exitRunTimeout
	case res.Signal != "":
		code = 128 + int(unix.SignalNum(res.Signal))
		if !f.quiet {
			fmt.Fprintf(stderr, "pyro run: the command was killed by %s\n", res.Signal)
		}
	default:
		code = res.ExitCode
	}

	shut, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := vm.Shutdown(shut); err != nil && !f.quiet {
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
	}
	if f.verbose {
		fmt.Fprintf(stderr, "pyro run: %s ready in %v; command ran %v (exit %d); total %v\n",
			name, ready.Round(time.Millisecond), ran.Round(time.Millisecond), code,
			time.Since(begin).Round(time.Millisecond))
	}
	return code
}

// agentChecked holds the environments (directory and agent checksum)
// whose agent this binary was found to be.
var agentChecked sync.Map

// loadEnvForRun loads a built environment, refreshing its initramfs when
// this pyro binary is not the agent it holds (after an upgrade or a
// rebuild: it costs no download).
func loadEnvForRun(ctx context.Context, name string, quiet bool, stderr io.Writer) (*env.Env, error) {
	root := cacheRoot()
	e, err := env.Load(root, name)
	if err != nil {
		return nil, err
	}
	self, err := agentBinary()
	if err != nil {
		return nil, err
	}
	// pyro mcp serve boots on every create, start and reset: hash this
	// binary against an environment's agent once per process, not per boot.
	key := e.Dir + "\x00" + e.Manifest.Agent.SHA256
	if _, ok := agentChecked.Load(key); ok {
		return e, nil
	}
	same, err := e.AgentMatches(self)
	if err != nil {
		return nil, fmt.Errorf("comparing this pyro with %s's agent: %w", name, err)
	}
	if same {
		agentChecked.Store(key, true)
		return e, nil
	}
	var progress io.Writer
	if !quiet {
		fmt.Fprintf(stderr, "pyro run: %s was built by another pyro binary; putting this one in its initramfs (no download)\n", name)
		progress = stderr
	}
	e, err = env.RefreshInitrd(ctx, env.BuildOptions{CacheRoot: root, Name: name, AgentBinary: self, Progress: progress, PyroVersion: version})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, errors.New("interrupted")
		}
		return nil, err
	}
	return e, nil
}
