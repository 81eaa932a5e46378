// Package hostcfg registers pyro mcp serve with the chat hosts that start
// it (Claude Code, Codex, OpenCode), in each host's own configuration
// format, and checks such registrations. It sits before the data path:
// it only writes the files, or runs the host CLI, that make a host launch
// pyro mcp serve over stdio.
//
// Every edit touches pyro's own entry and nothing else (other servers,
// keys, comments and layout are kept byte for byte), is idempotent, and is
// atomic (a temporary file renamed over the old one, with its permissions).
// A file the host's parser would reject is reported with its line and
// never written.
package hostcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The hosts, by the names the pyro host commands take.
const (
	ClaudeCode = "claude-code"
	Codex      = "codex"
	OpenCode   = "opencode"
)

// Hosts lists the hosts pyro can register with.
var Hosts = []string{ClaudeCode, Codex, OpenCode}

// clis are the hosts' command-line programs and the npm packages that
// install them.
var clis = map[string]struct{ command, npm string }{
	ClaudeCode: {"claude", "@anthropic-ai/claude-code"},
	Codex:      {"codex", "@openai/codex"},
	OpenCode:   {"opencode", "opencode-ai"},
}

// CLI returns the name of host's command-line program and the command
// that installs it.
func CLI(host string) (command, install string) {
	c := clis[host]
	return c.command, "npm install -g " + c.npm
}

// ServerName is the name pyro is registered under in every host.
const ServerName = "pyro"

// CodexToolTimeoutSec is the tool_timeout_sec written for Codex: long
// enough for a workspace create or reset on a cold cache and for calls that
// wait 50 s on a command (Codex's default is 60 s).
const CodexToolTimeoutSec = 600

// codexStartupTimeoutSec is written with a new Codex table: pyro answers
// initialize at once, so Codex's default is plenty; it is spelled out so
// the file says it.
const codexStartupTimeoutSec = 10

// Server is the command a host should run: the absolute path of pyro and
// its arguments (mcp serve [--profile P]).
type Server struct {
	Command string
	Args    []string
	// KeepArgs makes an entry whose arguments start with "mcp serve"
	// current whatever flags follow (a --profile chosen at connect), and
	// keeps them when the command is rewritten: doctor and repair without
	// --profile.
	KeepArgs bool
}

// resolve returns want with the entry's own arguments when KeepArgs is
// set and l's entry runs mcp serve.
func resolve(l location, want Server) Server {
	if !want.KeepArgs {
		return want
	}
	want.KeepArgs = false
	b, err := os.ReadFile(l.path)
	if err != nil {
		return want
	}
	var args []string
	if l.host == Codex {
		args = codexArgs(b)
	} else {
		args = jsonArgs(b, l)
	}
	if len(args) >= 2 && args[0] == "mcp" && args[1] == "serve" {
		want.Args = args
	}
	return want
}

func (s Server) argv() []string { return append([]string{s.Command}, s.Args...) }

// Env is where the hosts' configuration lives and how to reach their CLIs;
// tests fake all of it.
type Env struct {
	// Home is the user's home directory.
	Home string
	// Project is the project directory (absolute): the working directory
	// unless --project named one.
	Project string
	// ProjectScope is set when --project was given: register for that
	// project only, where the host has a per-project file.
	ProjectScope bool
	// Getenv reads an environment variable ($CODEX_HOME,
	// $CLAUDE_CONFIG_DIR, $XDG_CONFIG_HOME).
	Getenv func(string) string
	// LookPath finds a host CLI (claude) on PATH.
	LookPath func(string) (string, error)
	// Run runs a host CLI in dir and returns its combined output.
	Run func(dir, name string, args ...string) ([]byte, error)
}

func (e Env) getenv(k string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(k)
}

// cli returns the path of host's command-line program, or "" when it is
// not on PATH.
func (e Env) cli(host string) string {
	c, ok := clis[host]
	if e.LookPath == nil || !ok {
		return ""
	}
	p, err := e.LookPath(c.command)
	if err != nil {
		return ""
	}
	return p
}

// claudeCLI returns the claude command's path, or "" when it is not on PATH.
func (e Env) claudeCLI() string { return e.cli(ClaudeCode) }

// State is what a check found for one registration.
type State string

const (
	Missing   State = "missing"   // no pyro entry
	Current   State = "current"   // the entry connect would write
	Stale     State = "stale"     // another binary path or other arguments
	Malformed State = "malformed" // the file does not parse: fix it by hand
)

// Status is one registration a check looked at.
type Status struct {
	Host string `json:"host"`
	// Scope is where in the host the entry lives: "user", "project",
	// "local" (Claude Code's per-project entry in ~/.claude.json).
	Scope string `json:"scope"`
	Path  string `json:"path"`
	State State  `json:"state"`
	// Detail says what differs, or the parse error.
	Detail string `json:"detail,omitempty"`
	// Line is the malformed file's line with the error.
	Line int `json:"line,omitempty"`
	// CLI is the path of the host's command-line program (claude, codex,
	// opencode) on PATH; "" when it is not installed.
	CLI string `json:"cli"`
}

// Result is what connect or repair did.
type Result struct {
	Host  string `json:"host"`
	Scope string `json:"scope"`
	Path  string `json:"path"`
	// Action is "added", "updated" or "unchanged".
	Action string `json:"action"`
	// Via is "file" (pyro edited Path) or the host CLI command it ran.
	Via string `json:"via"`
	// Note says what the host still asks of the user before it starts
	// pyro from this entry (trusting or approving a project's file).
	Note string `json:"note,omitempty"`
}

// location is one place a host keeps a pyro entry: a file, and the keys
// leading to the entry (JSON files) or the table (Codex).
type location struct {
	host, scope, path string
	keys              []string // JSON: member keys down to the servers object
	cliScope          string   // claude mcp add --scope, "" when pyro edits the file
}

// locations returns every place a check looks for host's entry, the one
// connect writes first.
func locations(host string, e Env) ([]location, error) {
	switch host {
	case ClaudeCode:
		dir := e.getenv("CLAUDE_CONFIG_DIR")
		claudeJSON := filepath.Join(e.Home, ".claude.json")
		if dir != "" {
			claudeJSON = filepath.Join(dir, ".claude.json")
		}
		project := location{host: host, scope: "project", path: filepath.Join(e.Project, ".mcp.json"), keys: []string{"mcpServers"}}
		user := location{host: host, scope: "user", path: claudeJSON, keys: []string{"mcpServers"}, cliScope: "user"}
		local := location{host: host, scope: "local", path: claudeJSON, keys: []string{"projects", e.Project, "mcpServers"}, cliScope: "local"}
		if e.claudeCLI() != "" {
			project.cliScope = "project"
			if !e.ProjectScope {
				return []location{user, project, local}, nil
			}
		}
		return []location{project, user, local}, nil
	case Codex:
		dir := e.getenv("CODEX_HOME")
		if dir == "" {
			dir = filepath.Join(e.Home, ".codex")
		}
		user := location{host: host, scope: "user", path: filepath.Join(dir, "config.toml")}
		// Codex reads a project's .codex/config.toml only once the
		// project is trusted.
		project := location{host: host, scope: "project", path: filepath.Join(e.Project, ".codex", "config.toml")}
		if e.ProjectScope {
			return []location{project, user}, nil
		}
		return []location{user, project}, nil
	case OpenCode:
		cfg := e.getenv("XDG_CONFIG_HOME")
		if cfg == "" {
			cfg = filepath.Join(e.Home, ".config")
		}
		global := location{host: host, scope: "user", path: opencodeFile(filepath.Join(cfg, "opencode")), keys: []string{"mcp"}}
		project := location{host: host, scope: "project", path: opencodeFile(e.Project), keys: []string{"mcp"}}
		if e.ProjectScope {
			return []location{project, global}, nil
		}
		return []location{global, project}, nil
	}
	return nil, fmt.Errorf("unknown chat host %q: %s", host, strings.Join(Hosts, ", "))
}

// opencodeFile is dir's opencode.json, or its opencode.jsonc when only
// that exists.
func opencodeFile(dir string) string {
	p := filepath.Join(dir, "opencode.json")
	if _, err := os.Stat(p); os.IsNotExist(err) {
		if _, err := os.Stat(p + "c"); err == nil {
			return p + "c"
		}
	}
	return p
}

// Check reports host's pyro entries: every place that has one, or the
// place connect would write as Missing when none has.
func Check(host string, e Env, want Server) ([]Status, error) {
	locs, err := locations(host, e)
	if err != nil {
		return nil, err
	}
	var out []Status
	seen := map[string]bool{}
	cli := e.cli(host)
	for _, l := range locs {
		// A project that is the home directory has the user's file as
		// its own (Codex's ~/.codex/config.toml): check it once.
		k := l.path + "\x00" + strings.Join(l.keys, "\x00")
		if seen[k] {
			continue
		}
		seen[k] = true
		s := check(l, want)
		s.CLI = cli
		if s.State != Missing {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = append(out, Status{Host: host, Scope: locs[0].scope, Path: locs[0].path, State: Missing, Detail: "pyro is not registered", CLI: cli})
	}
	return out, nil
}

func check(l location, want Server) Status {
	want = resolve(l, want)
	s := Status{Host: l.host, Scope: l.scope, Path: l.path, State: Missing}
	b, err := os.ReadFile(l.path)
	if os.IsNotExist(err) {
		return s
	}
	if err != nil {
		s.State, s.Detail = Malformed, err.Error()
		return s
	}
	var diff string
	var found bool
	if l.host == Codex {
		found, diff, err = codexDiff(b, want)
	} else {
		found, diff, err = jsonDiff(b, l, want)
	}
	switch {
	case err != nil:
		s.State, s.Detail = Malformed, err.Error()
		if se, ok := err.(*SyntaxError); ok {
			s.Line = se.Line
		}
	case !found:
	case diff != "":
		s.State, s.Detail = Stale, diff
	default:
		s.State = Current
	}
	return s
}

// Connect registers pyro with host where Check looks first, or leaves it
// as is when that entry is current.
func Connect(host string, e Env, want Server) (Result, error) {
	locs, err := locations(host, e)
	if err != nil {
		return Result{}, err
	}
	return connectAt(locs[0], e, want)
}

// Repair rewrites every stale entry of host, and registers pyro when it
// has none; a malformed file is an error, left as it is. It returns
// nothing to do when every entry is current.
func Repair(host string, e Env, want Server) ([]Result, error) {
	locs, err := locations(host, e)
	if err != nil {
		return nil, err
	}
	var results []Result
	missing := true
	seen := map[string]bool{}
	for _, l := range locs {
		k := l.path + "\x00" + strings.Join(l.keys, "\x00")
		if seen[k] {
			continue
		}
		seen[k] = true
		s := check(l, want)
		switch s.State {
		case Malformed:
			return results, fmt.Errorf("%s: %s: fix it by hand (pyro never writes over a file it cannot parse)", l.path, s.Detail)
		case Stale:
			r, err := connectAt(l, e, want)
			if err != nil {
				return results, err
			}
			results = append(results, r)
			missing = false
		case Current:
			missing = false
		}
	}
	if missing {
		r, err := connectAt(locs[0], e, want)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

func connectAt(l location, e Env, want Server) (Result, error) {
	want = resolve(l, want)
	r := Result{Host: l.host, Scope: l.scope, Path: l.path, Via: "file", Note: projectNote(l, e)}
	s := check(l, want)
	switch s.State {
	case Malformed:
		return r, fmt.Errorf("%s: %s: fix it by hand (pyro never writes over a file it cannot parse)", l.path, s.Detail)
	case Current:
		r.Action = "unchanged"
		return r, nil
	case Stale:
		r.Action = "updated"
	default:
		r.Action = "added"
	}
	if l.cliScope != "" {
		return r, claudeAdd(l, e, want, s.State == Stale, &r)
	}
	if l.host == ClaudeCode && l.scope != "project" {
		return r, fmt.Errorf("%s: the claude command is not on PATH: run %s", l.path, claudeAddLine(l.scope, want))
	}
	old, err := os.ReadFile(l.path)
	if err != nil && !os.IsNotExist(err) {
		return r, err
	}
	var b []byte
	if l.host == Codex {
		b, err = codexEdit(old, want)
	} else {
		b, err = jsonEdit(old, l, want)
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w", l.path, err)
	}
	return r, writeAtomic(l.path, b)
}

// projectNote is what a host asks of the user before it reads a
// project's file: Codex reads .codex/config.toml only in a project the user
// trusts, and Claude Code starts a .mcp.json server only once the user
// approves it. Both ask when the host first runs in the project.
func projectNote(l location, e Env) string {
	if l.scope != "project" {
		return ""
	}
	switch l.host {
	case Codex:
		return fmt.Sprintf("Codex reads this file only in a project you trust: it asks the first time you run codex in %s "+
			"(or add [projects.%s] trust_level = \"trusted\" to ~/.codex/config.toml)", e.Project, tomlString(e.Project))
	case ClaudeCode:
		return "Claude Code asks you to approve the project's servers the first time you run claude in " + e.Project +
			"; until then claude mcp list shows pyro as pending approval"
	}
	return ""
}

// claudeAdd registers pyro through Claude Code's own CLI, which owns
// ~/.claude.json (it rewrites that file while it runs): remove the stale
// entry first, since claude mcp add refuses a name it already has.
func claudeAdd(l location, e Env, want Server, stale bool, r *Result) error {
	if e.Run == nil {
		return fmt.Errorf("no way to run the claude command")
	}
	cli := e.claudeCLI()
	if cli == "" {
		return fmt.Errorf("%s: the claude command is not on PATH: run %s", l.path, claudeAddLine(l.cliScope, want))
	}
	if stale {
		if out, err := e.Run(e.Project, cli, "mcp", "remove", "--scope", l.cliScope, ServerName); err != nil {
			return fmt.Errorf("claude mcp remove --scope %s %s: %v: %s", l.cliScope, ServerName, err, strings.TrimSpace(string(out)))
		}
	}
	args := append([]string{"mcp", "add", "--transport", "stdio", "--scope", l.cliScope, ServerName, "--"}, want.argv()...)
	r.Via = "claude " + strings.Join(args, " ")
	if out, err := e.Run(e.Project, cli, args...); err != nil {
		return fmt.Errorf("claude mcp add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// claudeAddLine is the claude mcp add command line for scope, to paste
// into a shell.
func claudeAddLine(scope string, want Server) string {
	q := make([]string, 0, len(want.Args)+1)
	for _, a := range want.argv() {
		q = append(q, shellQuote(a))
	}
	return fmt.Sprintf("claude mcp add --transport stdio --scope %s %s -- %s", scope, ServerName, strings.Join(q, " "))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Snippet is what connect would register, for a person to paste: the
// command to run or the block to put in the file it names.
func Snippet(host string, e Env, want Server) (string, error) {
	locs, err := locations(host, e)
	if err != nil {
		return "", err
	}
	l := locs[0]
	switch host {
	case ClaudeCode:
		b, _ := jsonEdit(nil, location{host: host, keys: []string{"mcpServers"}}, want)
		scope := "user"
		if e.ProjectScope {
			scope = "project"
		}
		return fmt.Sprintf("# run this:\n%s\n# or, without the claude command, put this in the project's .mcp.json:\n%s",
			claudeAddLine(scope, want), b), nil
	case Codex:
		b, _ := codexEdit(nil, want)
		return fmt.Sprintf("# %s\n%s", l.path, b), nil
	}
	b, _ := jsonEdit(nil, l, want)
	return fmt.Sprintf("// %s\n%s", l.path, b), nil
}

// writeAtomic replaces path with b through a temporary file in the same
// directory, keeping the old file's permissions (0644 for a new file, 0600
// in a directory only its owner may read). A symlink is followed, so a
// managed dotfile stays a link.
func writeAtomic(path string, b []byte) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	} else if fi, err := os.Stat(filepath.Dir(path)); err == nil && fi.Mode().Perm()&0o077 == 0 {
		mode = 0o600
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".pyro-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// entryDiff says how an entry's command line differs from want's.
func entryDiff(command string, args []string, want Server) string {
	switch {
	case command != want.Command:
		return fmt.Sprintf("runs %s, not this pyro (%s)", command, want.Command)
	case !slices.Equal(args, want.Args):
		return fmt.Sprintf("arguments %q, not %q", args, want.Args)
	}
	return ""
}
