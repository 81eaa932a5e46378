package main

import (
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// cliFace words the contract's operation and argument markers (see
// contract.Word) as pyro workspace's commands and flags, so that a hint a
// backend wrote as "{{stop}} it, or ask for less memory ({{-mem_mib}})"
// reads "pyro workspace stop it, or ask for less memory (--mem-mib)".
type cliFace struct{}

// OpName is the command that offers op: "pyro workspace " and the first
// subcommand that lists op; the one-shot run is pyro run.
func (cliFace) OpName(op contract.Op) string {
	if op == contract.OpRun {
		return "pyro run"
	}
	for _, c := range wsCommands {
		for _, o := range c.ops {
			if o == op {
				return "pyro workspace " + c.name
			}
		}
	}
	return "pyro workspace " + strings.ReplaceAll(string(op), ".", " ")
}

// cliArgNames are the arguments whose flag is not --NAME-WITH-DASHES.
var cliArgNames = map[string]string{
	"timeout_seconds": "--timeout",
	"wait_seconds":    "--wait",
	"ttl_seconds":     "--ttl",
	"env_vars":        "--env",
	"grace_seconds":   "--grace",
	"tail_lines":      "--tail",
	"labels":          "--label",
	"names":           "--name",
	"remove_labels":   "--remove-label",
	"grants":          "GRANT",
	"guest_port":      "GUEST_PORT",
	"id":              "ID",
	"path":            "PATH",
	"host_path":       "HOST_PATH",
	"guest_path":      "GUEST_PATH",
	"snapshot":        "SNAPSHOT",
	"patch":           "--patch-file",
	"content":         "--text-file",
	"command":         "--command",
	"argv":            "-- PROGRAM ARGS",
}

// ArgName is the flag (or positional argument) that takes arg.
func (cliFace) ArgName(arg string) string {
	if n, ok := cliArgNames[arg]; ok {
		return n
	}
	return "--" + strings.ReplaceAll(strings.ReplaceAll(arg, "_", "-"), ".", "-")
}

// cliWord words backend text for a terminal.
func cliWord(s string) string { return contract.Word(s, cliFace{}) }
