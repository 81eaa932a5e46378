// Command mcpdrive drives `pyro mcp serve` as a chat host does: a real MCP
// client (the go-sdk's) over stdio, speaking nothing but the protocol to
// the pyro binary. It decodes each result's structuredContent into its own
// small types and checks that the text content mirrors it, since a host
// may read either.
//
// Usage:
//
//	mcpdrive smoke [--pyro PATH] [--only NAME[,NAME]] [--timeout D] [-v]
//	mcpdrive demo  [--pyro PATH] [--timeout D]
//
// `smoke` runs the smoke pack, one scenario per recipe (cold-start,
// repro-fix, parallel, untrusted, review-eval), each against a server of
// its own with a fresh state directory, and prints one line per scenario:
//
//	smoke NAME: ok (12.3s)
//	smoke NAME: FAIL (12.3s): reason
//
// It exits 1 if any failed. Each scenario deletes its workspaces, also when
// it fails; then pyro's log tail goes to stderr.
//
// `demo` tells a short repro-fix story and prints a transcript of the tool
// calls and their results (make demo runs it).
//
// Both need what `pyro mcp serve` needs: hardware KVM (or the nested-KVM
// harness: make smoke runs it there) and the debian-12 environment.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"
)

const usage = `Usage:
  mcpdrive smoke [--pyro PATH] [--only NAME[,NAME]] [--timeout D] [-v]
  mcpdrive demo  [--pyro PATH] [--timeout D]

smoke runs pyro's smoke pack through a real MCP client over stdio and prints
one line per scenario; demo prints a repro-fix transcript.
Scenarios: %s
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainArgs(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

func mainArgs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, strings.Join(scenarioNames(), ", "))
		return 2
	}
	fs := flag.NewFlagSet("mcpdrive "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	pyro := fs.String("pyro", "", "the pyro binary (default: pyro next to mcpdrive, else on PATH)")
	var only *string
	var verbose, showLog *bool
	timeout := fs.Duration("timeout", 10*time.Minute, "time limit of each scenario (or of the demo)")
	switch args[0] {
	case "smoke":
		only = fs.String("only", "", "run only these scenarios (comma-separated)")
		verbose = fs.BoolP("verbose", "v", false, "trace each tool call on stderr")
		showLog = fs.Bool("show-log", false, "copy each scenario's whole server log to stderr when it ends (on a failure its last lines show anyway)")
	case "demo":
	case "-h", "--help", "help":
		fmt.Fprintf(stdout, usage, strings.Join(scenarioNames(), ", "))
		return 0
	default:
		fmt.Fprintf(stderr, "mcpdrive: unknown subcommand %q\n"+usage, args[0], strings.Join(scenarioNames(), ", "))
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mcpdrive %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return 2
	}
	bin, err := findPyro(*pyro)
	if err != nil {
		fmt.Fprintf(stderr, "mcpdrive: %v\n", err)
		return 2
	}
	if args[0] == "demo" {
		if err := runDemo(ctx, demoOptions{Pyro: bin, Timeout: *timeout, Out: stdout, Log: stderr}); err != nil {
			fmt.Fprintf(stdout, "\ndemo FAILED: %s\n", oneLine(err.Error(), 600))
			return 1
		}
		return 0
	}
	sel, err := selectScenarios(*only)
	if err != nil {
		fmt.Fprintf(stderr, "mcpdrive smoke: %v\n", err)
		return 2
	}
	failed := runSmoke(ctx, smokeOptions{Pyro: bin, Only: sel, Timeout: *timeout, Verbose: *verbose, ShowLog: *showLog,
		Rerun: rerunsAllowed(), Out: stdout, Log: stderr})
	if failed > 0 {
		return 1
	}
	return 0
}

// selectScenarios parses --only: nil for every scenario.
func selectScenarios(only string) (map[string]bool, error) {
	if only == "" {
		return nil, nil
	}
	known := map[string]bool{}
	for _, n := range scenarioNames() {
		known[n] = true
	}
	sel := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		if !known[n] {
			return nil, fmt.Errorf("--only: no scenario %q (have %s)", n, strings.Join(scenarioNames(), ", "))
		}
		sel[n] = true
	}
	return sel, nil
}

// findPyro returns the pyro binary to drive: the flag's, else pyro next to
// this executable (build/), else pyro on PATH.
func findPyro(flagValue string) (string, error) {
	if flagValue != "" {
		p, err := filepath.Abs(flagValue)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("--pyro: %w", err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "pyro")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("pyro")
	if err != nil {
		return "", fmt.Errorf("no pyro binary: pass --pyro PATH (make build writes build/pyro)")
	}
	return filepath.Abs(p)
}
