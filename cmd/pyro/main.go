// Command pyro gives chat-based coding agents disposable Linux workspaces,
// each a microVM run by pyro's own VMM on /dev/kvm.
//
// This file dispatches subcommands; each lives in its own file.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pyro-mcp/pyro/guest/agent"
)

// command is one pyro subcommand.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"doctor":    {"check everything pyro mcp serve needs, and say what to fix", doctorMain},
	"env":       {"build and list the environments workspaces boot", envMain},
	"host":      {"register pyro with a chat host (Claude Code, Codex, OpenCode), check and repair it", hostMain},
	"kvm-check": {"check that this host can boot pyro VMs", kvmCheckMain},
	"mcp":       {"serve the workspace tools to a chat host over MCP (stdio)", mcpMain},
	"prepare":   {"warm this machine: build an environment, prove a throwaway workspace, with timings", prepareMain},
	"run":       {"boot a kernel and initrd (VMM debugging entry)", runMain},
	"version":   {"print pyro's version", versionMain},
	"workspace": {"work in the chat's workspaces from a terminal: list, exec, shell, diff, ...", workspaceMain},
}

// version is set at link time by the Makefile.
var version = "dev"

const usageHeader = `pyro gives coding agents disposable Linux workspaces: microVMs booted by
pyro's own VMM on /dev/kvm, in this one binary.

Usage:
  pyro COMMAND [flags]

Start here:
  pyro kvm-check          can this host boot pyro VMs? (says what to fix if not)
  pyro doctor             is everything pyro mcp serve needs in place?
  pyro prepare            build debian-12 and prove one throwaway workspace, with timings
  pyro host connect claude-code  register pyro with a chat host (or codex, opencode)
  pyro workspace list     the chat's workspaces, from a terminal (pyro workspace --help)
  pyro run debian-12 -- python3 -c 'print(6*7)'

Commands:
`

func usage(w io.Writer) {
	fmt.Fprint(w, usageHeader)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, "\nRun pyro COMMAND --help for a command's flags and examples.\n")
}

// pyroMain runs pyro with args (without the program name) and returns the
// process exit code.
func pyroMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "--version":
		return versionMain(nil, stdout, stderr)
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "pyro: unknown command %q%s\nRun pyro --help for the list.\n", args[0], suggest(args[0]))
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

// suggest proposes the command a typo probably meant.
func suggest(name string) string {
	for n := range commands {
		if strings.HasPrefix(n, name) || strings.HasPrefix(name, n) {
			return fmt.Sprintf(" (did you mean %q?)", n)
		}
	}
	return ""
}

// Exit codes shared by the commands.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem
	exitUsage   = 2 // bad flags or arguments
)

func versionMain(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "pyro %s\n", version)
	return exitOK
}

func main() {
	// In a guest, this binary is /init: PID 1 is the agent.
	if os.Getpid() == 1 {
		agent.Version = version
		agent.Main()
	}
	os.Exit(pyroMain(os.Args[1:], os.Stdout, os.Stderr))
}
