package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/workspace"
	"github.com/pyro-mcp/pyro/vmm"
)

// Exit codes of pyro run.
const (
	exitRunCrash   = 3   // triple fault, unhandled exit, KVM error
	exitRunReboot  = 4   // the guest rebooted (with panic=-1, also a kernel panic)
	exitRunTimeout = 124 // --timeout passed
	exitRunSignal  = 130 // interrupted (Ctrl-C, SIGTERM)
)

const runHelp = `Usage: pyro run ENV [flags] -- COMMAND [ARG...]
       pyro run --kernel PATH [--initrd PATH] [flags]

The first form boots a throwaway microVM of environment ENV (see pyro env
list), runs COMMAND in it through the guest agent with this terminal's stdin,
streams its stdout and stderr, and exits with its exit code. The VM and its
disk are gone when pyro exits: the environment's image is never written.

The second form is the VMM's debugging entry: it boots a Linux kernel (a
bzImage) with an optional initramfs and waits for the guest to power off; no
disk, no agent, the serial console is the only output.

Examples:
  pyro run debian-12 -- python3 -c 'print(6*7)'
  pyro run minimal --timeout 10s -- sh -c 'sleep 60'          # exits 124
  pyro run debian-12 --env GREETING=hi --workdir /tmp -- sh -c 'echo $GREETING; pwd'
  pyro run debian-12 --network host.pyro.internal:8000 -- curl -s http://host.pyro.internal:8000/
  tar -c src | pyro run debian-12 -- tar -t                   # stdin passes through
  pyro run --kernel ~/.cache/pyro/kernel/vmlinuz --initrd init.cpio --console

Exit status, ENV form: the command's; 128+N when signal N killed it; 124
when --timeout passed (the command and its children are killed); 125 pyro
could not run it (a line says why); 130 interrupted.
Exit status, kernel form: 0 the guest powered off; 1 bad input (a line says
what to fix); 2 bad flags; 3 the guest crashed (triple fault, unhandled exit:
a diagnostic names the exit and the vCPU registers); 4 the guest rebooted (a
kernel panic reboots with panic=-1); 124 --timeout passed; 130 interrupted.

Flags:
`

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg vmm.Config
	fs.StringVar(&cfg.Kernel, "kernel", "", "guest kernel, a bzImage (default: "+defaultKernel()+")")
	fs.StringVar(&cfg.Initrd, "initrd", "", "initramfs to boot with")
	fs.StringVar(&cfg.Cmdline, "cmdline", vmm.DefaultCmdline, "kernel command line")
	fs.IntVar(&cfg.VCPUs, "vcpus", 1, "number of vCPUs (ENV form: default 2, at most the host's CPUs)")
	fs.IntVar(&cfg.MemMiB, "mem-mib", 512, "guest memory in MiB, paid only as the guest touches it (ENV form: default 2048, at most half the host's RAM)")
	diskMiB := fs.Int("disk-mib", 0, "ENV form: disk size in MiB; sparse, and the guest's root file system grows to it (default 8192, or the image's size if larger)")
	console := fs.Bool("console", false, "stream the guest's serial console (to stdout in the kernel form, stderr in the ENV form)")
	timeout := fs.Duration("timeout", 5*time.Minute, "kernel form: stop the guest after this long; ENV form: kill the command after this long (default: no limit); 0: never")
	quiet := fs.BoolP("quiet", "q", false, "print nothing of pyro's own on success")
	var ef envRunFlags
	fs.StringArrayVarP(&ef.env, "env", "e", nil, "set an environment variable for the command, K=V (repeatable; ENV form)")
	fs.StringVarP(&ef.workdir, "workdir", "w", "", "run the command in this guest directory (ENV form; default /)")
	fs.BoolVarP(&ef.verbose, "verbose", "v", false, "say how long the boot and the command took (ENV form)")
	fs.StringArrayVar(&ef.network, "network", nil, "let the command reach GRANT (repeatable; ENV form): NAME:PORT, *.DOMAIN:PORT, ADDR:PORT, CIDR:PORT-RANGE, host.pyro.internal:PORT (this host's 127.0.0.1:PORT) or all-egress; default: no network")
	fs.StringVar(&ef.resolver, "resolver", defaultResolverAddr(), "ENV form: "+resolverFlagHelp)
	fs.Usage = func() { fmt.Fprint(stderr, runHelp); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	kernelForm := fs.Changed("kernel") || fs.Changed("initrd") || fs.Changed("cmdline")
	if fs.NArg() > 0 && !kernelForm {
		if fs.ArgsLenAtDash() == 0 {
			fmt.Fprintln(stderr, "pyro run: name the environment before --: pyro run ENV -- COMMAND (pyro env list shows them)")
			return exitUsage
		}
		ef.vcpus, ef.memMiB, ef.console, ef.quiet = cfg.VCPUs, cfg.MemMiB, *console, *quiet
		if !fs.Changed("vcpus") {
			ef.vcpus = workspace.VCPUsFor(runtime.NumCPU())
		}
		if !fs.Changed("mem-mib") {
			ef.memMiB = runDefaultMem(hostRAMMiB())
		}
		ef.diskMiB = *diskMiB
		if fs.Changed("timeout") {
			ef.timeout = *timeout
		}
		return runEnvMain(fs.Args(), ef, stdout, stderr)
	}
	if fs.Changed("env") || fs.Changed("workdir") || fs.Changed("network") || fs.Changed("disk-mib") || fs.Changed("resolver") {
		fmt.Fprintln(stderr, "pyro run: --env, --workdir, --network, --disk-mib and --resolver need an environment: pyro run ENV [flags] -- COMMAND")
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pyro run: unexpected argument %q (the kernel/initrd form takes only flags)\n", fs.Arg(0))
		return exitUsage
	}
	if cfg.Kernel == "" {
		cfg.Kernel = defaultKernel()
	}
	if *timeout < 0 {
		fmt.Fprintln(stderr, "pyro run: --timeout must be positive, or 0 for none")
		return exitUsage
	}
	if *console {
		cfg.Console = stdout
	}

	start := time.Now()
	m, err := vmm.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
		return exitFailure
	}
	defer m.Close()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, *timeout, errTimeout)
		defer stop()
	}
	res, err := m.Run(ctx)
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		fmt.Fprintf(stderr, "pyro run: %v\n", err)
		return exitFailure
	}
	return reportRun(stderr, res, elapsed, *console, *quiet, ctx)
}

var errTimeout = errors.New("--timeout passed")

// Defaults of the ENV form, sized for a real test suite or a package
// install (the kernel form keeps 1 vCPU and 512 MiB: it boots a bare
// kernel).
const (
	runDefaultMemMiB  = 2048
	runDefaultDiskMiB = 8 << 10 // sparse: only written clusters cost host disk
	// runMaxDiskMiB bounds --disk-mib as workspace_create's disk_mib.
	runMaxDiskMiB = contract.MaxDiskMiB
)

// hostRAMMiB is the host's RAM in MiB, 0 when unknown.
func hostRAMMiB() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit) >> 20
}

// runDefaultMem is runDefaultMemMiB, or on a host with less than twice
// that, half its RAM in 128 MiB steps (at least 256 MiB), so that the
// default never asks for more than the host has.
func runDefaultMem(hostMiB uint64) int {
	if hostMiB == 0 {
		return runDefaultMemMiB
	}
	return max(256, min(runDefaultMemMiB, int(hostMiB/2)&^127))
}

// runDiskBytes picks the ENV form's disk size in bytes: --disk-mib (0: the
// default), never less than the environment's image.
func runDiskBytes(reqMiB int, imageBytes int64) (int64, error) {
	imageMiB := int((imageBytes + 1<<20 - 1) >> 20)
	switch {
	case reqMiB == 0:
		return int64(min(runMaxDiskMiB, max(runDefaultDiskMiB, imageMiB))) << 20, nil
	case reqMiB < imageMiB || reqMiB > runMaxDiskMiB:
		return 0, fmt.Errorf("--disk-mib %d: the environment's image is %d MiB, so give %d to %d (or leave it out for %d)",
			reqMiB, imageMiB, imageMiB, runMaxDiskMiB, max(runDefaultDiskMiB, imageMiB))
	}
	return int64(reqMiB) << 20, nil
}

// reportRun says how the guest ended and picks the exit code.
func reportRun(stderr io.Writer, res vmm.Result, elapsed time.Duration, console, quiet bool, ctx context.Context) int {
	tail := func() {
		if console || len(res.ConsoleTail) == 0 {
			return // the user saw the console already
		}
		fmt.Fprintln(stderr, "pyro run: last console lines:")
		for _, l := range res.ConsoleTail {
			fmt.Fprintf(stderr, "  | %s\n", l)
		}
	}
	switch res.Reason {
	case vmm.StopPoweroff:
		if !quiet {
			fmt.Fprintf(stderr, "pyro run: guest powered off after %v\n", elapsed)
		}
		return exitOK
	case vmm.StopReboot:
		why := "the guest rebooted"
		if panicked(res.ConsoleTail) {
			why = "the guest kernel panicked (and rebooted, as panic=-1 asks)"
		}
		fmt.Fprintf(stderr, "pyro run: %s after %v\n", why, elapsed)
		tail()
		return exitRunReboot
	case vmm.StopCrash:
		fmt.Fprintf(stderr, "pyro run: guest crashed after %v: %s\n", elapsed, res.Detail)
		tail()
		return exitRunCrash
	case vmm.StopCanceled:
		if errors.Is(context.Cause(ctx), errTimeout) {
			fmt.Fprintf(stderr, "pyro run: the guest was still running when --timeout passed (%v); stopped it\n", elapsed)
			tail()
			return exitRunTimeout
		}
		fmt.Fprintf(stderr, "pyro run: interrupted after %v; stopped the guest\n", elapsed)
		return exitRunSignal
	}
	fmt.Fprintf(stderr, "pyro run: guest stopped (%v) after %v\n", res.Reason, elapsed)
	return exitFailure
}

func panicked(tail []string) bool {
	for _, l := range tail {
		if strings.Contains(l, "Kernel panic") {
			return true
		}
	}
	return false
}
