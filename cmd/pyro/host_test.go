package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/cmd/pyro/hostcfg"
)

// hostcfgEnv is a hosts' environment in dir, with no claude command.
func hostcfgEnv(dir string) hostcfg.Env {
	return hostcfg.Env{Home: dir, Project: filepath.Join(dir, "proj"),
		Getenv:   func(string) string { return "" },
		LookPath: func(string) (string, error) { return "", os.ErrNotExist }}
}

// hostEnvVars gives a pyro child a home of its own and a PATH without the
// claude command.
func hostEnvVars(t *testing.T) (home string, vars []string) {
	t.Helper()
	home = t.TempDir()
	return home, []string{"HOME=" + home, "PATH=" + filepath.Join(home, "bin"),
		"CODEX_HOME=", "CLAUDE_CONFIG_DIR=", "XDG_CONFIG_HOME="}
}

func TestHostUsage(t *testing.T) {
	_, vars := hostEnvVars(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"host"}, exitUsage, "pyro host connect claude-code|codex|opencode"},
		{[]string{"host", "--help"}, exitOK, "tool_timeout_sec = 600"},
		{[]string{"host", "connect", "--help"}, exitOK, "--project DIR"},
		{[]string{"host", "connect"}, exitUsage, "name one chat host: claude-code, codex, opencode"},
		{[]string{"host", "connect", "vim"}, exitUsage, `unknown chat host "vim"`},
		{[]string{"host", "connect", "codex", "--profile", "nope"}, exitUsage, "workspace-core"},
		{[]string{"host", "frob"}, exitUsage, "unknown subcommand"},
		{[]string{"host", "print-config", "codex", "--profile", "workspace-full"}, exitOK, `args = ["mcp", "serve", "--profile", "workspace-full"]`},
		{[]string{"host", "print-config", "codex", "--mode", "inspect"}, exitOK, `args = ["mcp", "serve", "--mode", "inspect"]`},
		{[]string{"host", "print-config", "claude-code", "--mode", "repro-fix"}, exitOK, "mcp serve --mode repro-fix\n"},
		{[]string{"host", "print-config", "opencode", "--mode", "cold-start"}, exitOK, `"--mode",` + "\n" + `        "cold-start"`},
		{[]string{"host", "connect", "codex", "--mode", "nope"}, exitUsage, "choose one of repro-fix, inspect, cold-start, review-eval"},
		{[]string{"host", "connect", "codex", "--mode", "inspect", "--profile", "workspace-full"}, exitUsage, "--mode and --profile exclude each other"},
		{[]string{"--help"}, exitOK, "pyro host connect claude-code"},
	} {
		r := runPyroIn(t, vars, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("pyro %q: exit %d, out %q err %q; want %d and %q", c.args, r.code, r.stdout, r.stderr, c.code, c.want)
		}
	}
}

// connect, doctor and repair as a user runs them, against a home of the
// test's own: the entry carries this binary's absolute path, a second
// connect changes nothing, a stale entry makes doctor exit 1 and repair
// fixes it.
func TestHostConnectDoctorRepair(t *testing.T) {
	home, vars := hostEnvVars(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(home, ".codex", "config.toml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("model = \"o4\" # mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runPyroIn(t, vars, "", "host", "connect", "codex")
	if r.code != exitOK || !strings.Contains(r.stdout, "codex: pyro added in "+cfg) {
		t.Fatalf("connect: %+v", r)
	}
	b, _ := os.ReadFile(cfg)
	if !strings.HasPrefix(string(b), "model = \"o4\" # mine\n\n[mcp_servers.pyro]\ncommand = "+tomlQuote(self)) {
		t.Errorf("config.toml:\n%s", b)
	}
	r = runPyroIn(t, vars, "", "host", "connect", "codex", "--json")
	var out struct {
		OK      bool `json:"ok"`
		Results []struct {
			Action string `json:"action"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || !out.OK || len(out.Results) != 1 || out.Results[0].Action != "unchanged" {
		t.Errorf("second connect --json: %+v (%v)", r, err)
	}
	if b2, _ := os.ReadFile(cfg); string(b2) != string(b) {
		t.Error("a second connect changed the file")
	}

	// Doctor on codex alone: current.
	if r := runPyroIn(t, vars, "", "host", "doctor", "codex"); r.code != exitOK || !strings.Contains(r.stdout, "registered, current") {
		t.Errorf("doctor codex: %+v", r)
	}
	// Named but not registered: exit 1 with the command that fixes it.
	if r := runPyroIn(t, vars, "", "host", "doctor", "opencode"); r.code != exitFailure || !strings.Contains(r.stdout, "fix: pyro host connect opencode") {
		t.Errorf("doctor opencode: %+v", r)
	}
	// All hosts: unregistered ones are only named.
	if r := runPyroIn(t, vars, "", "host", "doctor"); r.code != exitOK || !strings.Contains(r.stdout, "host claude-code") {
		t.Errorf("doctor: %+v", r)
	}

	// Another binary's path: stale, doctor exits 1, repair fixes it.
	stale := strings.Replace(string(b), tomlQuote(self), `"/old/pyro"`, 1)
	os.WriteFile(cfg, []byte(stale), 0o600)
	r = runPyroIn(t, vars, "", "host", "doctor", "--json")
	var doc struct {
		OK    bool `json:"ok"`
		Hosts []struct {
			Host, State string
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitFailure || doc.OK {
		t.Fatalf("doctor on a stale entry: %+v (%v)", r, err)
	}
	if r := runPyroIn(t, vars, "", "host", "doctor"); !strings.Contains(r.stdout, "fix: pyro host repair codex") {
		t.Errorf("doctor names no repair: %+v", r)
	}
	if r := runPyroIn(t, vars, "", "host", "repair", "codex"); r.code != exitOK || !strings.Contains(r.stdout, "codex: pyro updated in "+cfg) {
		t.Errorf("repair: %+v", r)
	}
	if b2, _ := os.ReadFile(cfg); string(b2) != string(b) {
		t.Errorf("repaired file:\n%s", b2)
	}
	if r := runPyroIn(t, vars, "", "host", "repair", "codex"); r.code != exitOK || !strings.Contains(r.stdout, "nothing to repair") {
		t.Errorf("second repair: %+v", r)
	}

	// Malformed: doctor fails naming the line; connect refuses and the
	// file stays as it was.
	bad := "[mcp_servers.docs\n"
	os.WriteFile(cfg, []byte(bad), 0o600)
	if r := runPyroIn(t, vars, "", "host", "doctor", "codex"); r.code != exitFailure || !strings.Contains(r.stdout, "at line 1") {
		t.Errorf("doctor on a malformed file: %+v", r)
	}
	if r := runPyroIn(t, vars, "", "host", "connect", "codex"); r.code != exitFailure || !strings.Contains(r.stderr, "by hand") {
		t.Errorf("connect on a malformed file: %+v", r)
	}
	if b2, _ := os.ReadFile(cfg); string(b2) != bad {
		t.Errorf("a malformed file was written: %q", b2)
	}
}

// Without the claude command, Claude Code gets the project's .mcp.json.
func TestHostConnectClaudeWithoutCLI(t *testing.T) {
	_, vars := hostEnvVars(t)
	proj := t.TempDir()
	r := runPyroIn(t, vars, "", "host", "connect", "claude-code", "--project", proj, "--profile", "workspace-full")
	if r.code != exitOK || !strings.Contains(r.stdout, filepath.Join(proj, ".mcp.json")) {
		t.Fatalf("connect: %+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(proj, ".mcp.json"))
	var m struct {
		MCPServers map[string]struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal(b, &m); err != nil || strings.Join(m.MCPServers["pyro"].Args, " ") != "mcp serve --profile workspace-full" ||
		!filepath.IsAbs(m.MCPServers["pyro"].Command) {
		t.Errorf(".mcp.json %s (%v)", b, err)
	}
	// Doctor without --profile takes the entry's profile as it is.
	if r := runPyroIn(t, vars, "", "host", "doctor", "claude-code", "--project", proj); r.code != exitOK {
		t.Errorf("doctor: %+v", r)
	}
}

func tomlQuote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// pyro doctor carries a line per host from the same check, warning on a
// stale entry and never failing for one.
func TestDoctorHostLines(t *testing.T) {
	tmp := t.TempDir()
	e := hostcfgEnv(tmp)
	cfg := filepath.Join(tmp, ".codex", "config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte("[mcp_servers.pyro]\ncommand = \"/old/pyro\"\nargs = [\"mcp\", \"serve\", \"--profile\", \"workspace-full\"]\n"), 0o644)
	r := diagnose(doctorInputs{state: filepath.Join(tmp, "state"), cache: filepath.Join(tmp, "cache"), self: "/new/pyro", hosts: &e})
	if c := findCheck(t, r, "host codex"); !c.OK || !c.Warn || c.Fix != "pyro host repair codex" || !strings.Contains(c.Detail, "/old/pyro") {
		t.Errorf("host codex: %+v", c)
	}
	if c := findCheck(t, r, "host opencode"); !c.OK || c.Warn || !strings.Contains(c.Detail, "pyro host connect opencode") {
		t.Errorf("host opencode: %+v", c)
	}
	os.WriteFile(cfg, []byte("[mcp_servers.pyro\n"), 0o644)
	r = diagnose(doctorInputs{state: filepath.Join(tmp, "state"), cache: filepath.Join(tmp, "cache"), self: "/new/pyro", hosts: &e})
	if c := findCheck(t, r, "host codex"); !c.OK || !c.Warn || !strings.Contains(c.Fix, "line 1") {
		t.Errorf("malformed: %+v", c)
	}
}

// Each host's line says whether its own program is installed, or how to
// install it; --json carries its path. Neither way is a problem by itself.
func TestDoctorHostCLIs(t *testing.T) {
	tmp := t.TempDir()
	e := hostcfgEnv(tmp)
	e.LookPath = func(name string) (string, error) {
		if name == "codex" {
			return "/opt/bin/codex", nil
		}
		return "", os.ErrNotExist
	}
	cfg := filepath.Join(tmp, ".codex", "config.toml")
	os.MkdirAll(filepath.Dir(cfg), 0o755)
	os.WriteFile(cfg, []byte("[mcp_servers.pyro]\ncommand = \"/new/pyro\"\nargs = [\"mcp\", \"serve\"]\ntool_timeout_sec = 600\n"), 0o644)
	r := diagnose(doctorInputs{state: filepath.Join(tmp, "state"), cache: filepath.Join(tmp, "cache"), self: "/new/pyro", hosts: &e})
	if c := findCheck(t, r, "host codex"); !c.OK || c.Warn || !strings.Contains(c.Detail, "registered, current") ||
		!strings.Contains(c.Detail, "codex installed: /opt/bin/codex") {
		t.Errorf("host codex: %+v", c)
	}
	for host, install := range map[string]string{"claude-code": "npm install -g @anthropic-ai/claude-code", "opencode": "npm install -g opencode-ai"} {
		if c := findCheck(t, r, "host "+host); !c.OK || c.Warn || !strings.Contains(c.Detail, "not installed ("+install+")") {
			t.Errorf("host %s: %+v", host, c)
		}
	}
	if len(r.Hosts) != 3 {
		t.Fatalf("hosts: %+v", r.Hosts)
	}
	for _, h := range r.Hosts {
		if want := map[string]string{"codex": "/opt/bin/codex"}[h.Host]; h.CLI != want {
			t.Errorf("%s: cli %q, want %q", h.Host, h.CLI, want)
		}
	}
	// pyro host doctor says the same.
	var b strings.Builder
	if code := hostDoctor([]string{hostcfg.Codex}, true, e, hostcfg.Server{Command: "/new/pyro", Args: []string{"mcp", "serve"}}, false, &b, &b); code != exitOK ||
		!strings.Contains(b.String(), "codex installed: /opt/bin/codex") {
		t.Errorf("pyro host doctor codex: exit %d\n%s", code, b.String())
	}
}

// A mode chosen at connect is written into the entry; doctor without
// --mode accepts it, doctor with another mode calls it stale, and repair
// with a mode writes that one.
func TestHostConnectMode(t *testing.T) {
	home, vars := hostEnvVars(t)
	cfg := filepath.Join(home, ".codex", "config.toml")
	if r := runPyroIn(t, vars, "", "host", "connect", "codex", "--mode", "inspect"); r.code != exitOK {
		t.Fatalf("connect --mode: %+v", r)
	}
	b, _ := os.ReadFile(cfg)
	if !strings.Contains(string(b), `args = ["mcp", "serve", "--mode", "inspect"]`) {
		t.Fatalf("config.toml:\n%s", b)
	}
	if r := runPyroIn(t, vars, "", "host", "doctor", "codex"); r.code != exitOK || !strings.Contains(r.stdout, "registered, current") {
		t.Errorf("doctor: %+v", r)
	}
	if r := runPyroIn(t, vars, "", "host", "doctor", "codex", "--mode", "repro-fix"); r.code != exitFailure || !strings.Contains(r.stdout, "stale") {
		t.Errorf("doctor --mode repro-fix: %+v", r)
	}
	if r := runPyroIn(t, vars, "", "host", "repair", "codex", "--mode", "repro-fix"); r.code != exitOK {
		t.Errorf("repair --mode repro-fix: %+v", r)
	}
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), `args = ["mcp", "serve", "--mode", "repro-fix"]`) {
		t.Errorf("repaired config.toml:\n%s", b)
	}
}
