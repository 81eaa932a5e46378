package mcp

import (
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Keys a model can press in a shell, by name: what an xterm sends for
// each (normal cursor-key mode, which is what shells and REPLs use;
// full-screen programs that switch to application mode accept these too).
var shellKeys = map[string]string{
	"enter": "\r", "return": "\r", "tab": "\t", "escape": "\x1b", "esc": "\x1b", "backspace": "\x7f", "space": " ",
	"up": "\x1b[A", "down": "\x1b[B", "right": "\x1b[C", "left": "\x1b[D",
	"home": "\x1b[H", "end": "\x1b[F", "insert": "\x1b[2~", "delete": "\x1b[3~",
	"pageup": "\x1b[5~", "pagedown": "\x1b[6~",
	"f1": "\x1bOP", "f2": "\x1bOQ", "f3": "\x1bOR", "f4": "\x1bOS",
	"f5": "\x1b[15~", "f6": "\x1b[17~", "f7": "\x1b[18~", "f8": "\x1b[19~",
	"f9": "\x1b[20~", "f10": "\x1b[21~", "f11": "\x1b[23~", "f12": "\x1b[24~",
}

// ShellKeyNames is the hint for a key name that is not one.
const ShellKeyNames = "Keys are Enter, Tab, Escape, Backspace, Space, Up, Down, Left, Right, Home, End, Insert, Delete, PageUp, PageDown, F1-F12, " +
	"and Ctrl with a letter or one of @[\\]^_ written C-c, Ctrl-C or ^C (C-c interrupts, C-d ends input, C-z suspends, C-[ is Escape)."

// ShellKey returns the bytes a terminal sends for the named key: a name
// of shellKeys (any case), or a control character: C-x, Ctrl-x, Ctrl+x or
// ^x, with x a letter or one of @[\]^_ (and Space, ? for DEL).
func ShellKey(name string) (string, error) {
	k := strings.ToLower(strings.TrimSpace(name))
	if s, ok := shellKeys[k]; ok {
		return s, nil
	}
	rest, ok := "", false
	for _, p := range []string{"c-", "ctrl-", "ctrl+", "control-", "^"} {
		if rest, ok = strings.CutPrefix(k, p); ok {
			break
		}
	}
	if ok {
		switch {
		case len(rest) == 1 && rest[0] >= 'a' && rest[0] <= 'z':
			return string(rune(rest[0] - 'a' + 1)), nil
		case len(rest) == 1 && strings.IndexByte("@[\\]^_", rest[0]) >= 0:
			return string(rune(rest[0] - '@')), nil
		case rest == "space" || rest == " " || rest == "2":
			return "\x00", nil
		case rest == "?":
			return "\x7f", nil
		}
	}
	return "", contract.Invalid("unknown key %q", name).WithHint(ShellKeyNames)
}

// shellInput is what a shell_write types: text, then keys, then a
// newline (Enter) if asked.
func shellInput(text string, keys []string, newline bool) ([]byte, error) {
	var b strings.Builder
	b.WriteString(text)
	for _, k := range keys {
		s, err := ShellKey(k)
		if err != nil {
			return nil, err
		}
		b.WriteString(s)
	}
	if newline {
		b.WriteString("\r")
	}
	if err := contract.ValidateShellInput(b.Len()); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
