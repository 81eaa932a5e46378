package hostcfg

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	want  = Server{Command: "/opt/pyro/bin/pyro", Args: []string{"mcp", "serve"}}
	older = Server{Command: "/home/me/old/pyro", Args: []string{"mcp", "serve"}}
)

// testEnv is a home and a project in a temporary directory, with no
// claude command on PATH.
func testEnv(t *testing.T) Env {
	t.Helper()
	tmp := t.TempDir()
	e := Env{Home: filepath.Join(tmp, "home"), Project: filepath.Join(tmp, "proj"),
		Getenv:   func(string) string { return "" },
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
	}
	for _, d := range []string{e.Home, e.Project} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func write(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func oneStatus(t *testing.T, host string, e Env, w Server) Status {
	t.Helper()
	ss, err := Check(host, e, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 {
		t.Fatalf("%s: want one status, got %+v", host, ss)
	}
	return ss[0]
}

// A file each writer meets: what it holds before, and exactly what connect
// must leave (other entries, comments and layout kept).
type writerCase struct {
	name        string
	host        string
	projectOnly bool // --project
	file        func(Env) string
	before      string
	after       string
}

var writerCases = []writerCase{
	{
		name: "codex appended after other servers and comments", host: Codex,
		file: func(e Env) string { return filepath.Join(e.Home, ".codex", "config.toml") },
		before: `# my codex setup
model = "o4"   # keep this comment

[mcp_servers.docs]
command = "docs-mcp"
args = [
  "--port", # multi-line array with a comment
  "1",
]
[profiles.fast]
model = 'mini'`,
		after: `# my codex setup
model = "o4"   # keep this comment

[mcp_servers.docs]
command = "docs-mcp"
args = [
  "--port", # multi-line array with a comment
  "1",
]
[profiles.fast]
model = 'mini'

[mcp_servers.pyro]
command = "/opt/pyro/bin/pyro"
args = ["mcp", "serve"]
startup_timeout_sec = 10
tool_timeout_sec = 600
`,
	},
	{
		name: "codex stale table edited in place", host: Codex,
		file:   func(e Env) string { return filepath.Join(e.Home, ".codex", "config.toml") },
		before: "[mcp_servers.pyro]  # pyro\ncommand = \"/home/me/old/pyro\"\n  args = [\"mcp\",\n    \"serve\"]\nenv = { A = \"1\" }\ntool_timeout_sec = 60\n\n[mcp_servers.pyro.env_extra]\nx = 1\n",
		after:  "[mcp_servers.pyro]  # pyro\ncommand = \"/opt/pyro/bin/pyro\"\n  args = [\"mcp\", \"serve\"]\nenv = { A = \"1\" }\ntool_timeout_sec = 600\n\n[mcp_servers.pyro.env_extra]\nx = 1\n",
	},
	{
		name: "codex table without timeout gets one", host: Codex,
		file:   func(e Env) string { return filepath.Join(e.Home, ".codex", "config.toml") },
		before: "[mcp_servers.pyro]\ncommand = '/opt/pyro/bin/pyro'\nargs = ['mcp', 'serve']\n[x]\ny = 2",
		after:  "[mcp_servers.pyro]\ncommand = \"/opt/pyro/bin/pyro\"\nargs = [\"mcp\", \"serve\"]\ntool_timeout_sec = 600\n[x]\ny = 2",
	},
	{
		name: "claude .mcp.json keeps other servers, order and tabs", host: ClaudeCode,
		file:   func(e Env) string { return filepath.Join(e.Project, ".mcp.json") },
		before: "{\n\t\"mcpServers\": {\n\t\t\"zeta\": {\"command\": \"z\"},\n\t\t\"alpha\": {\n\t\t\t\"command\": \"a\"\n\t\t}\n\t},\n\t\"other\": 1\n}\n",
		after: "{\n\t\"mcpServers\": {\n\t\t\"zeta\": {\"command\": \"z\"},\n\t\t\"alpha\": {\n\t\t\t\"command\": \"a\"\n\t\t},\n\t\t\"pyro\": {\n\t\t\t\"type\": \"stdio\",\n\t\t\t\"command\": \"/opt/pyro/bin/pyro\",\n" +
			"\t\t\t\"args\": [\n\t\t\t\t\"mcp\",\n\t\t\t\t\"serve\"\n\t\t\t]\n\t\t}\n\t},\n\t\"other\": 1\n}\n",
	},
	{
		name: "claude .mcp.json stale command replaced, env kept", host: ClaudeCode,
		file:   func(e Env) string { return filepath.Join(e.Project, ".mcp.json") },
		before: `{"mcpServers": {"pyro": {"command": "/home/me/old/pyro", "args": ["mcp", "serve"], "env": {"A": "1"}}}}`,
		after:  `{"mcpServers": {"pyro": {"command": "/opt/pyro/bin/pyro", "args": ["mcp", "serve"], "env": {"A": "1"}}}}`,
	},
	{
		name: "claude .mcp.json without mcpServers", host: ClaudeCode,
		file:   func(e Env) string { return filepath.Join(e.Project, ".mcp.json") },
		before: "{\n  \"x\": true\n}",
		after:  "{\n  \"x\": true,\n  \"mcpServers\": {\n    \"pyro\": {\n      \"type\": \"stdio\",\n      \"command\": \"/opt/pyro/bin/pyro\",\n      \"args\": [\n        \"mcp\",\n        \"serve\"\n      ]\n    }\n  }\n}",
	},
	{
		name: "claude .mcp.json line comment stays with its member", host: ClaudeCode,
		file:   func(e Env) string { return filepath.Join(e.Project, ".mcp.json") },
		before: "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"a\"} // first\n  }\n}\n",
		after: "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"a\"}, // first\n    \"pyro\": {\n      \"type\": \"stdio\",\n" +
			"      \"command\": \"/opt/pyro/bin/pyro\",\n      \"args\": [\n        \"mcp\",\n        \"serve\"\n      ]\n    }\n  }\n}\n",
	},
	{
		name: "claude .mcp.json on one line stays on one line", host: ClaudeCode,
		file:   func(e Env) string { return filepath.Join(e.Project, ".mcp.json") },
		before: `{"mcpServers": {"a": {"command": "a"}}}`,
		after:  `{"mcpServers": {"a": {"command": "a"}, "pyro": {"type": "stdio", "command": "/opt/pyro/bin/pyro", "args": ["mcp", "serve"]}}}`,
	},
	{
		name: "opencode project file with comments and a trailing comma", host: OpenCode, projectOnly: true,
		file:   func(e Env) string { return filepath.Join(e.Project, "opencode.json") },
		before: "{\n  // my settings\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"gh\": {\"type\": \"remote\", \"url\": \"https://example.org/mcp\"}, /* keep */\n  },\n}\n",
		after: "{\n  // my settings\n  \"theme\": \"dark\",\n  \"mcp\": {\n    \"gh\": {\"type\": \"remote\", \"url\": \"https://example.org/mcp\"}, /* keep */\n" +
			"    \"pyro\": {\n      \"type\": \"local\",\n      \"command\": [\n        \"/opt/pyro/bin/pyro\",\n        \"mcp\",\n        \"serve\"\n      ],\n      \"enabled\": true\n    },\n  },\n}\n",
	},
	{
		name: "opencode global stale and disabled", host: OpenCode,
		file:   func(e Env) string { return filepath.Join(e.Home, ".config", "opencode", "opencode.json") },
		before: `{"mcp": {"pyro": {"type": "local", "command": ["/home/me/old/pyro", "mcp", "serve"], "enabled": false, "environment": {"A": "1"}}}}`,
		after:  `{"mcp": {"pyro": {"type": "local", "command": ["/opt/pyro/bin/pyro", "mcp", "serve"], "enabled": true, "environment": {"A": "1"}}}}`,
	},
}

func TestConnectEditsExistingFiles(t *testing.T) {
	for _, c := range writerCases {
		t.Run(c.name, func(t *testing.T) {
			e := testEnv(t)
			e.ProjectScope = c.projectOnly
			path := c.file(e)
			write(t, path, c.before, 0o640)
			st := oneStatus(t, c.host, e, want)
			if st.Path != path || (st.State != Missing && st.State != Stale) {
				t.Fatalf("before connect: %+v", st)
			}
			r, err := Connect(c.host, e, want)
			if err != nil {
				t.Fatal(err)
			}
			if r.Path != path || r.Via != "file" || (r.Action != "added" && r.Action != "updated") {
				t.Errorf("result %+v", r)
			}
			if got := read(t, path); got != c.after {
				t.Errorf("after connect:\n%s\nwant:\n%s", got, c.after)
			}
			fi, _ := os.Stat(path)
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the old file's 0640", fi.Mode().Perm())
			}
			if st := oneStatus(t, c.host, e, want); st.State != Current {
				t.Errorf("after connect: %+v", st)
			}
			// Idempotent: a second connect changes no byte.
			r, err = Connect(c.host, e, want)
			if err != nil || r.Action != "unchanged" {
				t.Errorf("second connect: %+v, %v", r, err)
			}
			if got := read(t, path); got != c.after {
				t.Errorf("second connect changed the file:\n%s", got)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, d := range entries {
				if strings.Contains(d.Name(), ".pyro-") {
					t.Errorf("temporary file left: %s", d.Name())
				}
			}
		})
	}
}

// Stale entries are found, named, and repaired; repair then has nothing
// to do.
func TestStaleDetectedAndRepaired(t *testing.T) {
	for _, host := range Hosts {
		t.Run(host, func(t *testing.T) {
			e := testEnv(t)
			if _, err := Connect(host, e, older); err != nil {
				t.Fatal(err)
			}
			st := oneStatus(t, host, e, want)
			if st.State != Stale || !strings.Contains(st.Detail, older.Command) {
				t.Fatalf("stale entry: %+v", st)
			}
			rs, err := Repair(host, e, want)
			if err != nil || len(rs) != 1 || rs[0].Action != "updated" {
				t.Fatalf("repair: %+v, %v", rs, err)
			}
			if st := oneStatus(t, host, e, want); st.State != Current {
				t.Errorf("after repair: %+v", st)
			}
			rs, err = Repair(host, e, want)
			if err != nil || len(rs) != 0 {
				t.Errorf("second repair: %+v, %v", rs, err)
			}
			// Other arguments (another profile) are stale too.
			prof := Server{Command: want.Command, Args: []string{"mcp", "serve", "--profile", "workspace-full"}}
			if st := oneStatus(t, host, e, prof); st.State != Stale || !strings.Contains(st.Detail, "arguments") {
				t.Errorf("other profile: %+v", st)
			}
			// Without a profile of its own, doctor and repair take the
			// entry's flags as they are, and keep them when the binary
			// moved.
			if _, err := Connect(host, e, Server{Command: older.Command, Args: prof.Args}); err != nil {
				t.Fatal(err)
			}
			keep := Server{Command: want.Command, Args: want.Args, KeepArgs: true}
			if st := oneStatus(t, host, e, keep); st.State != Stale || strings.Contains(st.Detail, "arguments") {
				t.Errorf("kept flags, moved binary: %+v", st)
			}
			if _, err := Repair(host, e, keep); err != nil {
				t.Fatal(err)
			}
			if st := oneStatus(t, host, e, prof); st.State != Current {
				t.Errorf("repair lost the profile: %+v", st)
			}
			if st := oneStatus(t, host, e, keep); st.State != Current {
				t.Errorf("after repair with kept flags: %+v", st)
			}
		})
	}
}

func TestMissingIsRepairedByAdding(t *testing.T) {
	e := testEnv(t)
	if st := oneStatus(t, Codex, e, want); st.State != Missing {
		t.Fatalf("%+v", st)
	}
	rs, err := Repair(Codex, e, want)
	if err != nil || len(rs) != 1 || rs[0].Action != "added" {
		t.Fatalf("repair: %+v, %v", rs, err)
	}
	// A new file in a new directory is 0644.
	fi, err := os.Stat(filepath.Join(e.Home, ".codex", "config.toml"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("new file: %v, %v", fi, err)
	}
	e.Getenv = func(k string) string {
		if k == "CODEX_HOME" {
			return filepath.Join(e.Home, "codexhome")
		}
		return ""
	}
	if st := oneStatus(t, Codex, e, want); st.State != Missing || st.Path != filepath.Join(e.Home, "codexhome", "config.toml") {
		t.Errorf("$CODEX_HOME: %+v", st)
	}
	// A project that is the home directory: its file is checked once.
	home := e
	home.Project, home.Getenv = e.Home, func(string) string { return "" }
	if ss, err := Check(Codex, home, want); err != nil || len(ss) != 1 || ss[0].State != Current {
		t.Errorf("project = home: %+v, %v", ss, err)
	}
	// --project: the project's .codex/config.toml.
	e.ProjectScope = true
	if r, err := Connect(Codex, e, want); err != nil || r.Path != filepath.Join(e.Project, ".codex", "config.toml") || r.Scope != "project" {
		t.Errorf("codex --project: %+v, %v", r, err)
	}
}

// A project's entry says what the host asks before it reads it (Codex:
// trust the project; Claude Code: approve its servers); a user's entry
// needs nothing more, so it says nothing.
func TestProjectNotes(t *testing.T) {
	e := testEnv(t)
	for _, c := range []struct {
		host, note string
	}{
		{Codex, `[projects."` + e.Project + `"] trust_level = "trusted"`},
		{ClaudeCode, "approve"},
		{OpenCode, ""},
	} {
		r, err := Connect(c.host, e, want)
		if err != nil {
			t.Fatal(err)
		}
		if c.host != ClaudeCode && r.Note != "" { // Claude Code without its CLI writes the project's file
			t.Errorf("%s, user scope: note %q", c.host, r.Note)
		}
		p := e
		p.ProjectScope = true
		if r, err = Connect(c.host, p, want); err != nil {
			t.Fatal(err)
		}
		if c.note == "" && r.Note != "" || !strings.Contains(r.Note, c.note) {
			t.Errorf("%s, project scope: note %q, want %q in it", c.host, r.Note, c.note)
		}
	}
}

// A file the host would reject is reported with its line and never written.
func TestMalformedReportedNeverWritten(t *testing.T) {
	for _, c := range []struct {
		name, host, file, text string
		line                   int
	}{
		{"toml header not closed", Codex, "home/.codex/config.toml", "a = 1\n[mcp_servers.docs\ncommand = \"x\"\n", 2},
		{"toml pyro table twice", Codex, "home/.codex/config.toml", "[mcp_servers.pyro]\ncommand = \"a\"\n[mcp_servers.pyro]\ncommand = \"b\"\n", 3},
		{"toml unterminated string", Codex, "home/.codex/config.toml", "[a]\nb = \"c\n", 2},
		{"toml bad escape", Codex, "home/.codex/config.toml", "\n\nb = \"\\q\"\n", 3},
		{"toml inline pyro", Codex, "home/.codex/config.toml", "[mcp_servers]\npyro = { command = \"a\" }\n", 2},
		{"toml key set twice", Codex, "home/.codex/config.toml", "[mcp_servers.pyro]\ncommand = \"a\"\ncommand = \"b\"\n", 3},
		{"json missing comma", ClaudeCode, "proj/.mcp.json", "{\n  \"mcpServers\": {}\n  \"x\": 1\n}", 3},
		{"json mcpServers not an object", ClaudeCode, "proj/.mcp.json", `{"mcpServers": []}`, 0},
		{"json unterminated", OpenCode, "home/.config/opencode/opencode.json", "{\"mcp\": {", 1},
		{"json top level array", OpenCode, "home/.config/opencode/opencode.json", "[]", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := testEnv(t)
			path := filepath.Join(filepath.Dir(e.Home), c.file)
			write(t, path, c.text, 0o600)
			st := oneStatus(t, c.host, e, want)
			if st.State != Malformed || st.Line != c.line || st.Path != path {
				t.Errorf("check: %+v, want malformed at line %d", st, c.line)
			}
			if _, err := Connect(c.host, e, want); err == nil || !strings.Contains(err.Error(), "by hand") {
				t.Errorf("connect: %v", err)
			}
			if _, err := Repair(c.host, e, want); err == nil {
				t.Error("repair wrote over a malformed file")
			}
			if got := read(t, path); got != c.text {
				t.Errorf("the file changed: %q", got)
			}
		})
	}
}

// fakeClaude records the claude commands run and what they would write.
type fakeClaude struct {
	calls [][]string
	dirs  []string
	fail  error
}

func (f *fakeClaude) env(e Env) Env {
	e.LookPath = func(name string) (string, error) {
		if name == "claude" {
			return "/usr/local/bin/claude", nil
		}
		return "", exec.ErrNotFound
	}
	e.Run = func(dir, name string, args ...string) ([]byte, error) {
		f.calls = append(f.calls, append([]string{name}, args...))
		f.dirs = append(f.dirs, dir)
		if f.fail != nil {
			return []byte("MCP server pyro already exists"), f.fail
		}
		return nil, nil
	}
	return e
}

func TestClaudeCLI(t *testing.T) {
	e := testEnv(t)
	f := &fakeClaude{}
	e = f.env(e)
	r, err := Connect(ClaudeCode, e, want)
	if err != nil {
		t.Fatal(err)
	}
	wantCall := "/usr/local/bin/claude mcp add --transport stdio --scope user pyro -- /opt/pyro/bin/pyro mcp serve"
	if len(f.calls) != 1 || strings.Join(f.calls[0], " ") != wantCall || f.dirs[0] != e.Project {
		t.Fatalf("calls %q in %q", f.calls, f.dirs)
	}
	if r.Scope != "user" || r.Action != "added" || !strings.HasPrefix(r.Via, "claude mcp add") {
		t.Errorf("result %+v", r)
	}

	// What claude wrote: a stale user entry in ~/.claude.json. Connect
	// removes it first, since claude mcp add refuses a name it has.
	claudeJSON := filepath.Join(e.Home, ".claude.json")
	write(t, claudeJSON, `{"numStartups": 3, "mcpServers": {"pyro": {"type": "stdio", "command": "/home/me/old/pyro", "args": ["mcp", "serve"], "env": {}}}}`, 0o600)
	if st := oneStatus(t, ClaudeCode, e, want); st.State != Stale || st.Scope != "user" {
		t.Fatalf("%+v", st)
	}
	f.calls = nil
	if rs, err := Repair(ClaudeCode, e, want); err != nil || len(rs) != 1 {
		t.Fatalf("repair %+v %v", rs, err)
	}
	if len(f.calls) != 2 || strings.Join(f.calls[0], " ") != "/usr/local/bin/claude mcp remove --scope user pyro" {
		t.Errorf("calls %q", f.calls)
	}

	// A current entry: nothing run.
	write(t, claudeJSON, `{"mcpServers": {"pyro": {"type": "stdio", "command": "/opt/pyro/bin/pyro", "args": ["mcp", "serve"]}}}`, 0o600)
	f.calls = nil
	if r, err := Connect(ClaudeCode, e, want); err != nil || r.Action != "unchanged" || len(f.calls) != 0 {
		t.Errorf("current: %+v %v %q", r, err, f.calls)
	}

	// --project: project scope through the CLI, run in the project.
	e.ProjectScope = true
	f.calls = nil
	if _, err := Connect(ClaudeCode, e, want); err != nil || len(f.calls) != 1 || !strings.Contains(strings.Join(f.calls[0], " "), "--scope project") {
		t.Errorf("project scope: %v %q", err, f.calls)
	}

	// A local-scope entry for this project in ~/.claude.json is checked too.
	write(t, claudeJSON, `{"projects": {"`+e.Project+`": {"mcpServers": {"pyro": {"command": "/home/me/old/pyro", "args": ["mcp", "serve"]}}}}}`, 0o600)
	if st := oneStatus(t, ClaudeCode, e, want); st.State != Stale || st.Scope != "local" {
		t.Errorf("local scope: %+v", st)
	}

	// The CLI failing is an error that carries its output.
	f.fail = errors.New("exit status 1")
	if _, err := Repair(ClaudeCode, e, want); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("failing claude: %v", err)
	}
}

func TestSnippets(t *testing.T) {
	e := testEnv(t)
	w := Server{Command: "/opt/my pyro/pyro", Args: []string{"mcp", "serve", "--profile", "workspace-full"}}
	for host, parts := range map[string][]string{
		ClaudeCode: {`claude mcp add --transport stdio --scope user pyro -- '/opt/my pyro/pyro' mcp serve --profile workspace-full`, `"mcpServers"`},
		Codex:      {"[mcp_servers.pyro]", `command = "/opt/my pyro/pyro"`, `args = ["mcp", "serve", "--profile", "workspace-full"]`, "tool_timeout_sec = 600"},
		OpenCode:   {`"type": "local"`, `"/opt/my pyro/pyro"`, `"enabled": true`, "opencode.json"},
	} {
		s, err := Snippet(host, e, w)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if !strings.Contains(s, p) {
				t.Errorf("%s snippet lacks %q:\n%s", host, p, s)
			}
		}
	}
	if _, err := Snippet("vim", e, w); err == nil {
		t.Error("unknown host accepted")
	}
	// Nothing was written.
	if ents, _ := os.ReadDir(e.Project); len(ents) != 0 {
		t.Errorf("snippet wrote %v", ents)
	}
}

// TOML strings that need escaping survive a round trip through the parser.
func TestTOMLStringRoundTrip(t *testing.T) {
	for _, s := range []string{`C:\pyro`, `a "quoted" path`, "tab\there", "nl\n", "é\x01"} {
		stmts, err := parseTOML([]byte("k = " + tomlString(s) + "\n"))
		if err != nil || len(stmts) != 1 || stmts[0].value.str != s {
			t.Errorf("%q: %v %+v", s, err, stmts)
		}
	}
	stmts, err := parseTOML([]byte("a = \"\"\"\nx\\\n   y\"\"\"\nb = '''q''''\nc = 1979-05-27 07:32:00Z\n"))
	if err != nil || stmts[0].value.str != "xy" || stmts[1].value.str != "q'" || stmts[2].value.str != "1979-05-27 07:32:00Z" {
		t.Errorf("%v %+v", err, stmts)
	}
}
