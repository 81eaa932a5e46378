package mcp

import (
	"testing"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

func TestShellKeys(t *testing.T) {
	for name, want := range map[string]string{
		"Enter": "\r", "tab": "\t", "Escape": "\x1b", "Backspace": "\x7f", "Up": "\x1b[A", "Down": "\x1b[B",
		"Right": "\x1b[C", "Left": "\x1b[D", "Home": "\x1b[H", "End": "\x1b[F", "PageUp": "\x1b[5~",
		"PageDown": "\x1b[6~", "Delete": "\x1b[3~", "F1": "\x1bOP", "F5": "\x1b[15~", "F12": "\x1b[24~",
		"C-c": "\x03", "Ctrl-C": "\x03", "^c": "\x03", "ctrl+d": "\x04", "C-a": "\x01", "C-z": "\x1a",
		"C-[": "\x1b", `C-\`: "\x1c", "C-]": "\x1d", "C-^": "\x1e", "C-_": "\x1f", "C-@": "\x00", "C-Space": "\x00",
	} {
		if got, err := ShellKey(name); err != nil || got != want {
			t.Errorf("ShellKey(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "C-", "C-cc", "F13", "Ctrl-1", "Hyper-x", "a"} {
		if got, err := ShellKey(bad); err == nil {
			t.Errorf("ShellKey(%q) = %q, want an error", bad, got)
		}
	}
	in, err := shellInput("ls", []string{"Tab"}, true)
	if err != nil || string(in) != "ls\t\r" {
		t.Errorf("shellInput: %q %v", in, err)
	}
	if _, err := shellInput(string(make([]byte, contract.MaxShellInput)), nil, true); err == nil {
		t.Error("input over the bound")
	}
}
