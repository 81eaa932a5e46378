package main

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// TestCLIFaceNamesCommands checks that every contract operation is worded
// as a pyro command that exists, so that no hint sends a person to a
// command they cannot run.
func TestCLIFaceNamesCommands(t *testing.T) {
	offered := map[contract.Op]bool{}
	for _, c := range wsCommands {
		for _, op := range c.ops {
			offered[op] = true
		}
	}
	for _, op := range contract.Ops() {
		name := cliFace{}.OpName(op)
		words := strings.Fields(name)
		if len(words) < 2 || words[0] != "pyro" {
			t.Errorf("%s is worded %q, not as a pyro command", op, name)
			continue
		}
		if words[1] != "workspace" {
			if _, ok := commands[words[1]]; !ok || len(words) != 2 {
				t.Errorf("%s is worded %q: no such pyro command", op, name)
			}
			continue
		}
		c, n := findWSCommand(words[2:])
		if c == nil || n != len(words)-2 {
			t.Errorf("%s is worded %q: no such pyro workspace command", op, name)
			continue
		}
		if !offered[op] {
			t.Errorf("%s is worded %q, but no command says it offers it", op, name)
		}
	}
	for op := range offered {
		if !contractOp(op) {
			t.Errorf("a command offers %q, which is not a contract operation", op)
		}
	}
}

func contractOp(op contract.Op) bool {
	for _, o := range contract.Ops() {
		if o == op {
			return true
		}
	}
	return false
}

// TestCLIFaceNamesFlags checks that the arguments backends' hints name
// are worded as flags (or arguments) some command's help shows.
func TestCLIFaceNamesFlags(t *testing.T) {
	fakeWorkspaces(t, nil)
	var help strings.Builder
	for _, c := range wsCommands {
		help.WriteString(runWS("", append(strings.Fields(c.name), "--help")...).stdout)
	}
	for _, arg := range []string{"mem_mib", "seq", "kill", "wait_seconds", "host_port", "cwd", "timeout_seconds", "env_vars",
		"ttl_seconds", "vcpus", "disk_mib", "labels", "name", "network", "secret_env", "grace_seconds", "tail_lines", "patch",
		"content", "command", "overwrite", "format", "recursive", "offset", "max_bytes", "stdout_offset", "stderr_offset", "snapshot",
		"guest_port", "host_path", "guest_path", "count", "names"} {
		name := cliFace{}.ArgName(arg)
		if !strings.Contains(help.String(), name) {
			t.Errorf("argument %s is worded %q, which no command's help shows", arg, name)
		}
	}
	if got := cliWord("call {{stop}} or ask for less memory ({{-mem_mib}}); {{exec.status}} with {{-seq}}"); got !=
		"call pyro workspace stop or ask for less memory (--mem-mib); pyro workspace exec-status with --seq" {
		t.Errorf("worded %q", got)
	}
}
