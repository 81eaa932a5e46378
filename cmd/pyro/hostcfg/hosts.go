package hostcfg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// This file holds each host's entry: what it looks like, how it is told
// apart from a stale one, and the edit that writes it.

// field is one member of an ordered JSON object.
type field struct {
	k string
	v any
}

// object is a JSON object that keeps its members' order.
type object []field

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonEntry is pyro's entry in host's JSON file, member by member.
func jsonEntry(host string, want Server) object {
	if host == OpenCode {
		return object{{"type", "local"}, {"command", want.argv()}, {"enabled", true}}
	}
	args := want.Args
	if args == nil {
		args = []string{}
	}
	return object{{"type", "stdio"}, {"command", want.Command}, {"args", args}}
}

// jsonServers walks l.keys down from the top-level object; nil when a key
// is absent.
func jsonServers(root *jsonNode, l location) (*jsonNode, error) {
	n := root
	for _, k := range l.keys {
		n = n.member(k)
		if n == nil {
			return nil, nil
		}
		if n.kind != jsonObject {
			return nil, fmt.Errorf("%q is not an object", k)
		}
	}
	return n, nil
}

// jsonArgs returns the arguments of pyro's entry in a JSON host file, or
// nil.
func jsonArgs(b []byte, l location) []string {
	root, err := parseJSON(b)
	if err != nil {
		return nil
	}
	servers, _ := jsonServers(root, l)
	e := servers.member(ServerName)
	if l.host == OpenCode {
		argv, _ := e.member("command").strings()
		if len(argv) > 0 {
			return argv[1:]
		}
		return nil
	}
	args, _ := e.member("args").strings()
	return args
}

// jsonDiff finds pyro's entry in a JSON host file and says how it differs
// from the one connect writes ("" when it is that one).
func jsonDiff(b []byte, l location, want Server) (found bool, diff string, err error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return false, "", nil
	}
	root, err := parseJSON(b)
	if err != nil {
		return false, "", err
	}
	servers, err := jsonServers(root, l)
	if err != nil || servers == nil {
		return false, "", err
	}
	e := servers.member(ServerName)
	if e == nil {
		return false, "", nil
	}
	if e.kind != jsonObject {
		return true, "the entry is not an object", nil
	}
	if l.host == OpenCode {
		if t := e.member("type"); t == nil || t.str != "local" {
			return true, `type is not "local"`, nil
		}
		argv, ok := e.member("command").strings()
		if !ok || len(argv) == 0 {
			return true, "command is not an array of strings", nil
		}
		if d := entryDiff(argv[0], argv[1:], want); d != "" {
			return true, d, nil
		}
		if en := e.member("enabled"); en != nil && en.str != "true" {
			return true, "the entry is disabled", nil
		}
		return true, "", nil
	}
	if t := e.member("type"); t != nil && t.str != "stdio" {
		return true, `type is not "stdio"`, nil
	}
	c := e.member("command")
	if c == nil || c.kind != jsonString {
		return true, "command is not a string", nil
	}
	var args []string
	if a := e.member("args"); a != nil {
		var ok bool
		if args, ok = a.strings(); !ok {
			return true, "args is not an array of strings", nil
		}
	}
	args = nilIfEmpty(args)
	want.Args = nilIfEmpty(want.Args)
	return true, entryDiff(c.str, args, want), nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// jsonEdit returns b with pyro's entry written under l.keys: the members
// connect owns set (others in the entry kept), missing objects added.
func jsonEdit(b []byte, l location, want Server) ([]byte, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}\n")
		if l.host == OpenCode {
			b = []byte("{\n  \"$schema\": \"https://opencode.ai/config.json\"\n}\n")
		}
	}
	entry := jsonEntry(l.host, want)
	for range 8 { // one member per round; an entry has at most three
		found, diff, err := jsonDiff(b, l, want)
		if err != nil {
			return nil, err
		}
		if found && diff == "" {
			return b, nil
		}
		root, _ := parseJSON(b)
		n := root
		var missing []string
		for i, k := range l.keys {
			c := n.member(k)
			if c == nil {
				missing = l.keys[i:]
				break
			}
			n = c
		}
		if missing != nil {
			var v any = object{{ServerName, entry}}
			for i := len(missing) - 1; i > 0; i-- {
				v = object{{missing[i], v}}
			}
			b = setMember(b, n, missing[0], v)
			continue
		}
		e := n.member(ServerName)
		if e == nil || e.kind != jsonObject {
			b = setMember(b, n, ServerName, entry)
			continue
		}
		// Set the first member that differs; the next round sees the rest.
		for _, f := range entry {
			if m := e.member(f.k); m == nil || !sameJSON(b[m.start:m.end], f.v) {
				if f.k == "type" && l.host == ClaudeCode && m == nil {
					continue // optional for Claude Code
				}
				b = setMember(b, e, f.k, f.v)
				break
			}
		}
	}
	return nil, fmt.Errorf("could not write pyro's entry (please report this)")
}

// sameJSON reports whether the JSON text raw encodes v.
func sameJSON(raw []byte, v any) bool {
	var a, b any
	if json.Unmarshal(raw, &a) != nil {
		return false
	}
	enc, _ := json.Marshal(v)
	json.Unmarshal(enc, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// codexTable finds [mcp_servers.pyro] in Codex's config: the header and
// the statements of its body. A file that defines pyro's server twice, or
// outside such a table, is an error: Codex would reject the first, and
// pyro cannot edit the second without rewriting what a person wrote.
func codexTable(stmts []tomlStmt) (header *tomlStmt, body []tomlStmt, err error) {
	var table []string // the current table's key
	for i := range stmts {
		s := &stmts[i]
		if s.header {
			table = s.key
			if sameKey(s.key, "mcp_servers", ServerName) {
				if s.arrayTable {
					return nil, nil, &SyntaxError{s.line, "[[mcp_servers.pyro]] is an array of tables; Codex wants one [mcp_servers.pyro] table"}
				}
				if header != nil {
					return nil, nil, &SyntaxError{s.line, fmt.Sprintf("[mcp_servers.pyro] is defined twice (lines %d and %d)", header.line, s.line)}
				}
				header = s
			}
			continue
		}
		full := append(append([]string(nil), table...), s.key...)
		// Keys of [mcp_servers.pyro]'s sub-tables ([mcp_servers.pyro.env])
		// are pyro's table's own; keys above it that reach into it are not.
		if len(table) < 2 && len(full) >= 2 && sameKey(full[:2], "mcp_servers", ServerName) {
			return nil, nil, &SyntaxError{s.line, "pyro's server is defined by dotted keys or an inline table; move it into a [mcp_servers.pyro] table, or delete it"}
		}
		if header != nil && sameKey(table, "mcp_servers", ServerName) {
			for _, o := range body {
				if sameKey(o.key, s.key...) {
					return nil, nil, &SyntaxError{s.line, fmt.Sprintf("%v is set twice in [mcp_servers.pyro] (lines %d and %d)", s.key, o.line, s.line)}
				}
			}
			body = append(body, *s)
		}
	}
	return header, body, nil
}

// codexArgs returns the args of [mcp_servers.pyro], or nil.
func codexArgs(b []byte) []string {
	stmts, err := parseTOML(b)
	if err != nil {
		return nil
	}
	_, body, err := codexTable(stmts)
	a := bodyValue(body, "args")
	if err != nil || a == nil || a.kind != 'a' {
		return nil
	}
	var args []string
	for _, e := range a.elems {
		if e.kind != 's' {
			return nil
		}
		args = append(args, e.str)
	}
	return args
}

func bodyValue(body []tomlStmt, key string) *tomlValue {
	for _, s := range body {
		if sameKey(s.key, key) {
			return s.value
		}
	}
	return nil
}

// codexDiff finds [mcp_servers.pyro] and says how it differs from the one
// connect writes ("" when it is that one).
func codexDiff(b []byte, want Server) (found bool, diff string, err error) {
	stmts, err := parseTOML(b)
	if err != nil {
		return false, "", err
	}
	header, body, err := codexTable(stmts)
	if err != nil || header == nil {
		return false, "", err
	}
	c := bodyValue(body, "command")
	if c == nil || c.kind != 's' {
		return true, "command is not a string", nil
	}
	var args []string
	if a := bodyValue(body, "args"); a != nil {
		if a.kind != 'a' {
			return true, "args is not an array of strings", nil
		}
		for _, e := range a.elems {
			if e.kind != 's' {
				return true, "args is not an array of strings", nil
			}
			args = append(args, e.str)
		}
	}
	want.Args = nilIfEmpty(want.Args)
	if d := entryDiff(c.str, args, want); d != "" {
		return true, d, nil
	}
	if d := codexTimeoutDiff(bodyValue(body, "tool_timeout_sec")); d != "" {
		return true, d, nil
	}
	if en := bodyValue(body, "enabled"); en != nil && en.str != "true" {
		return true, "the server is disabled (enabled = false)", nil
	}
	return true, "", nil
}

func codexTimeoutDiff(v *tomlValue) string {
	if v == nil {
		return fmt.Sprintf("no tool_timeout_sec: Codex's default cuts long calls (workspace create, reset) short; want %d", CodexToolTimeoutSec)
	}
	f, err := strconv.ParseFloat(v.str, 64)
	if v.kind != 'x' || err != nil {
		return "tool_timeout_sec is not a number"
	}
	if f < CodexToolTimeoutSec {
		return fmt.Sprintf("tool_timeout_sec = %s cuts long calls (workspace create, reset) short; want %d", v.str, CodexToolTimeoutSec)
	}
	return ""
}

// codexEdit returns b with [mcp_servers.pyro] written: appended when
// absent, else its command, args and tool_timeout_sec set line by line
// (other keys and comments in it kept).
func codexEdit(b []byte, want Server) ([]byte, error) {
	for range 8 {
		found, diff, err := codexDiff(b, want)
		if err != nil {
			return nil, err
		}
		if found && diff == "" {
			return b, nil
		}
		if !found {
			var t bytes.Buffer
			t.Write(b)
			if len(b) > 0 {
				if b[len(b)-1] != '\n' {
					t.WriteByte('\n')
				}
				t.WriteByte('\n')
			}
			fmt.Fprintf(&t, "[mcp_servers.%s]\ncommand = %s\nargs = %s\nstartup_timeout_sec = %d\ntool_timeout_sec = %d\n",
				ServerName, tomlString(want.Command), tomlStrings(want.Args), codexStartupTimeoutSec, CodexToolTimeoutSec)
			b = t.Bytes()
			continue
		}
		stmts, _ := parseTOML(b)
		header, body, _ := codexTable(stmts)
		sets := []struct{ key, text string }{
			{"command", tomlString(want.Command)},
			{"args", tomlStrings(want.Args)},
		}
		if codexTimeoutDiff(bodyValue(body, "tool_timeout_sec")) != "" {
			sets = append(sets, struct{ key, text string }{"tool_timeout_sec", strconv.Itoa(CodexToolTimeoutSec)})
		}
		if en := bodyValue(body, "enabled"); en != nil && en.str != "true" {
			sets = append(sets, struct{ key, text string }{"enabled", "true"})
		}
		for _, s := range sets {
			line := s.key + " = " + s.text
			var old *tomlStmt
			for i := range body {
				if sameKey(body[i].key, s.key) {
					old = &body[i]
				}
			}
			if old != nil {
				now := bytes.TrimRight(b[old.start:old.end], "\r\n")
				ind := lineIndent(b, old.start)
				if string(now) == ind+line {
					continue
				}
				b = splice(b, old.start, old.start+len(now), []byte(ind+line))
				break
			}
			at := header.end
			if len(body) > 0 {
				at = body[len(body)-1].end
			}
			text := line + "\n"
			if at > 0 && b[at-1] != '\n' {
				text = "\n" + text
			}
			b = splice(b, at, at, []byte(text))
			break
		}
	}
	return nil, fmt.Errorf("could not write pyro's table (please report this)")
}
