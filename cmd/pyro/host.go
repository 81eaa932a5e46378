package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro/cmd/pyro/hostcfg"
	"github.com/pyro-mcp/pyro/mcp"
)

const hostHelp = `Usage: pyro host connect claude-code|codex|opencode [--profile P | --mode M] [--project DIR] [--json]
       pyro host print-config claude-code|codex|opencode [--profile P | --mode M] [--project DIR]
       pyro host doctor [HOST...] [--profile P | --mode M] [--project DIR] [--json]
       pyro host repair claude-code|codex|opencode [--profile P | --mode M] [--project DIR] [--json]

Registers pyro mcp serve with a chat host, in the host's own configuration,
with the absolute path of this pyro binary:
  claude-code  claude mcp add (user scope; project scope with --project)
               when the claude command is on PATH, else the project's
               .mcp.json (the working directory, or --project)
  codex        [mcp_servers.pyro] in ~/.codex/config.toml ($CODEX_HOME),
               or DIR/.codex/config.toml with --project (Codex reads it in
               a trusted project), with tool_timeout_sec = 600 so long
               calls are not cut off
  opencode     the "mcp" entry of ~/.config/opencode/opencode.json, or of
               DIR/opencode.json with --project

Only pyro's entry is written: other servers, keys and comments stay as they
were. A second connect changes nothing. A file the host could not parse is
reported with its line and never written over.

connect       registers pyro (or updates its entry)
print-config  prints what connect would write, and writes nothing
doctor        checks each host (or those named): not registered, current,
              stale (another binary, other arguments, a short Codex tool
              timeout) or malformed; exits 1 when something needs fixing
              and names the command that fixes it
repair        rewrites a stale entry, or adds a missing one; does nothing
              when the entry is current

Without --profile or --mode, doctor and repair accept the profile or mode
an entry already has.

Flags:
`

func hostUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, hostHelp)
	if fs != nil {
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// hostDeps are what the host commands reach outside themselves; tests
// replace them.
var hostDeps = struct {
	self     func() (string, error)
	home     func() (string, error)
	lookPath func(string) (string, error)
	run      func(dir, name string, args ...string) ([]byte, error)
}{
	self:     os.Executable,
	home:     os.UserHomeDir,
	lookPath: exec.LookPath,
	run: func(dir, name string, args ...string) ([]byte, error) {
		c := exec.Command(name, args...)
		c.Dir = dir
		return c.CombinedOutput()
	},
}

// hostEnv is where the hosts' configuration lives for this user and
// project.
func hostEnv(project string) (hostcfg.Env, error) {
	home, err := hostDeps.home()
	if err != nil {
		return hostcfg.Env{}, err
	}
	e := hostcfg.Env{Home: home, Project: project, ProjectScope: project != "",
		Getenv: os.Getenv, LookPath: hostDeps.lookPath, Run: hostDeps.run}
	if project == "" {
		if e.Project, err = os.Getwd(); err != nil {
			return e, err
		}
	}
	e.Project, err = filepath.Abs(e.Project)
	return e, err
}

// hostServer is the command line a host should run: this binary's
// absolute path, mcp serve, and --profile when one was given.
func hostServer(profile string, profileSet bool) (hostcfg.Server, error) {
	self, err := hostDeps.self()
	if err != nil {
		return hostcfg.Server{}, fmt.Errorf("cannot find this binary's path: %v", err)
	}
	if self, err = filepath.Abs(self); err != nil {
		return hostcfg.Server{}, err
	}
	s := hostcfg.Server{Command: self, Args: []string{"mcp", "serve"}, KeepArgs: !profileSet}
	if profileSet && profile != mcp.ProfileCore {
		s.Args = append(s.Args, "--profile", profile)
	}
	return s, nil
}

func hostMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		hostUsage(stderr, nil)
		return exitUsage
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		hostUsage(stdout, nil)
		return exitOK
	case "connect", "print-config", "doctor", "repair":
	default:
		fmt.Fprintf(stderr, "pyro host: unknown subcommand %q (use connect, print-config, doctor or repair)\n", sub)
		return exitUsage
	}
	fs := flag.NewFlagSet("host "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", mcp.ProfileCore, "tool profile the host starts pyro with: "+profileNames())
	mode := fs.String("mode", "", "workflow mode the host starts pyro with, instead of a profile: "+mcp.ModeNames())
	project := fs.String("project", "", "register for this project `DIR` only")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	fs.Usage = func() { hostUsage(stderr, fs) }
	if code := parseFlags(fs, args[1:], stderr); code >= 0 {
		return code
	}
	if code := checkProfileMode(fs, *profile, *mode, "pyro host "+sub, stderr); code >= 0 {
		return code
	}
	hosts := fs.Args()
	switch {
	case sub == "doctor" && len(hosts) == 0:
		hosts = hostcfg.Hosts
	case sub != "doctor" && len(hosts) != 1:
		fmt.Fprintf(stderr, "pyro host %s: name one chat host: %s\n", sub, strings.Join(hostcfg.Hosts, ", "))
		return exitUsage
	}
	for i, h := range hosts {
		if h == "claude" {
			hosts[i] = hostcfg.ClaudeCode
			continue
		}
		if !isHost(h) {
			fmt.Fprintf(stderr, "pyro host %s: unknown chat host %q: %s\n", sub, h, strings.Join(hostcfg.Hosts, ", "))
			return exitUsage
		}
	}
	env, err := hostEnv(*project)
	if err != nil {
		fmt.Fprintf(stderr, "pyro host %s: %v\n", sub, err)
		return exitFailure
	}
	want, err := hostServer(*profile, fs.Changed("profile"))
	if err != nil {
		fmt.Fprintf(stderr, "pyro host %s: %v\n", sub, err)
		return exitFailure
	}
	if *mode != "" {
		want.Args, want.KeepArgs = append(want.Args, "--mode", *mode), false
	}
	switch sub {
	case "print-config":
		s, err := hostcfg.Snippet(hosts[0], env, hostcfg.Server{Command: want.Command, Args: want.Args})
		if err != nil {
			fmt.Fprintf(stderr, "pyro host print-config: %v\n", err)
			return exitUsage
		}
		fmt.Fprintln(stdout, strings.TrimRight(s, "\n"))
		return exitOK
	case "doctor":
		return hostDoctor(hosts, fs.NArg() > 0, env, want, *asJSON, stdout, stderr)
	}
	var results []hostcfg.Result
	if sub == "connect" {
		want.KeepArgs = false // connect writes what it was asked for
		var r hostcfg.Result
		r, err = hostcfg.Connect(hosts[0], env, want)
		if r.Action != "" {
			results = append(results, r)
		}
	} else {
		results, err = hostcfg.Repair(hosts[0], env, want)
	}
	if *asJSON {
		out := struct {
			OK      bool             `json:"ok"`
			Results []hostcfg.Result `json:"results"`
			Error   string           `json:"error,omitempty"`
		}{OK: err == nil, Results: results}
		if out.Results == nil {
			out.Results = []hostcfg.Result{}
		}
		if err != nil {
			out.Error = err.Error()
		}
		printJSON(stdout, out)
	} else {
		for _, r := range results {
			printResult(stdout, r)
		}
		if err == nil && len(results) == 0 {
			fmt.Fprintf(stdout, "%s: nothing to repair, pyro's entry is current\n", hosts[0])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pyro host %s %s: %v\n", sub, hosts[0], err)
		return exitFailure
	}
	return exitOK
}

func isHost(h string) bool {
	for _, k := range hostcfg.Hosts {
		if h == k {
			return true
		}
	}
	return false
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func printResult(w io.Writer, r hostcfg.Result) {
	switch {
	case r.Action == "unchanged":
		fmt.Fprintf(w, "%s: pyro is already registered (%s scope, %s); nothing changed\n", r.Host, r.Scope, r.Path)
	case r.Via != "file":
		fmt.Fprintf(w, "%s: pyro %s (%s scope) by running: %s\n", r.Host, r.Action, r.Scope, r.Via)
	default:
		fmt.Fprintf(w, "%s: pyro %s in %s (%s scope)\n", r.Host, r.Action, r.Path, r.Scope)
	}
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
}

// hostDoctor checks hosts' registrations and exits 1 when one named on the
// command line is missing, or any is stale or malformed.
func hostDoctor(hosts []string, named bool, env hostcfg.Env, want hostcfg.Server, asJSON bool, stdout, stderr io.Writer) int {
	var all []hostcfg.Status
	var checks []check
	ok := true
	for _, h := range hosts {
		ss, err := hostcfg.Check(h, env, want)
		if err != nil {
			fmt.Fprintf(stderr, "pyro host doctor: %v\n", err)
			return exitUsage
		}
		all = append(all, ss...)
		for _, s := range ss {
			c := hostCheck(s)
			if !c.OK || (c.Warn && (s.State != hostcfg.Missing || named)) {
				ok = false
			}
			checks = append(checks, c)
		}
	}
	if asJSON {
		printJSON(stdout, struct {
			OK    bool             `json:"ok"`
			Hosts []hostcfg.Status `json:"hosts"`
		}{ok, all})
	} else {
		printChecks(stdout, checks)
	}
	if !ok {
		return exitFailure
	}
	return exitOK
}

// hostCheck turns one registration's status into a doctor line with the
// command that fixes it, and says whether the host's own program is
// installed. Only a malformed file fails: pyro cannot fix it.
func hostCheck(s hostcfg.Status) check {
	c := check{Name: "host " + s.Host, OK: true}
	where := fmt.Sprintf("%s (%s scope)", s.Path, s.Scope)
	switch s.State {
	case hostcfg.Current:
		c.Detail = "registered, current: " + where
	case hostcfg.Missing:
		c.Warn = true
		c.Detail = "pyro is not registered"
		c.Fix = "pyro host connect " + s.Host
	case hostcfg.Stale:
		c.Warn = true
		c.Detail = fmt.Sprintf("stale entry in %s: %s", where, s.Detail)
		c.Fix = "pyro host repair " + s.Host
	case hostcfg.Malformed:
		c.OK = false
		c.Detail = fmt.Sprintf("%s cannot be parsed: %s", s.Path, s.Detail)
		c.Fix = "fix " + s.Path + " by hand"
		if s.Line > 0 {
			c.Fix = fmt.Sprintf("fix %s at line %d by hand; pyro never writes over it", s.Path, s.Line)
		}
	}
	c.Detail += "; " + hostCLIDetail(s)
	return c
}

// hostCLIDetail says where the host's own program is, or how to install
// it. A host without it on PATH may still start pyro (an IDE extension, a
// desktop app), so its absence is never a problem by itself.
func hostCLIDetail(s hostcfg.Status) string {
	name, install := hostcfg.CLI(s.Host)
	if s.CLI == "" {
		return fmt.Sprintf("%s not installed (%s)", name, install)
	}
	return name + " installed: " + s.CLI
}

// checkHosts adds pyro doctor's line per chat host, from the same check
// as pyro host doctor. Workspaces boot whatever a host's entry says, so
// these lines only warn; a host with no entry is not a problem at all.
func checkHosts(e hostcfg.Env, want hostcfg.Server, add func(check)) []hostcfg.Status {
	var all []hostcfg.Status
	for _, h := range hostcfg.Hosts {
		ss, err := hostcfg.Check(h, e, want)
		if err != nil {
			continue
		}
		all = append(all, ss...)
		for _, s := range ss {
			c := hostCheck(s)
			if s.State == hostcfg.Missing {
				c.Warn = false
				c.Detail = "pyro is not registered (pyro host connect " + h + "); " + hostCLIDetail(s)
			}
			if !c.OK {
				c.OK, c.Warn = true, true
			}
			add(c)
		}
	}
	return all
}
