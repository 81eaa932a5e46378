package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// findCheck returns the check called name, failing the test if absent.
func findCheck(t *testing.T, r doctorReport, name string) check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %q check in %+v", name, r.Checks)
	return check{}
}

func TestDoctorNothingSetUp(t *testing.T) {
	tmp := t.TempDir()
	r := diagnose(doctorInputs{
		device: filepath.Join(tmp, "no-kvm"), sysfs: filepath.Join(tmp, "sys"), cpuinfo: filepath.Join(tmp, "cpuinfo"),
		state: filepath.Join(tmp, "state", "pyro"), cache: filepath.Join(tmp, "cache"),
		self: os.Args[0], path: filepath.Join(tmp, "bin"),
	})
	if r.OK || !strings.Contains(r.Summary, "cannot boot") {
		t.Fatalf("a host with no KVM and no environment passed: %+v", r)
	}
	if c := findCheck(t, r, "device"); c.OK || !strings.Contains(c.Fix, "modprobe") {
		t.Errorf("device: %+v", c)
	}
	if c := findCheck(t, r, "environments"); c.OK || c.Fix != "pyro env build debian-12 (or minimal, in seconds)" {
		t.Errorf("environments: %+v", c)
	}
	// A state directory not made yet is fine when its parent is writable.
	if c := findCheck(t, r, "state directory"); !c.OK || !strings.Contains(c.Detail, "not made yet") {
		t.Errorf("state directory: %+v", c)
	}
	if c := findCheck(t, r, "pyro on PATH"); !c.OK || !c.Warn || !strings.Contains(c.Fix, "pyro host connect") {
		t.Errorf("pyro on PATH: %+v", c)
	}
	for _, c := range r.Checks {
		if c.Name == "workspaces" {
			t.Errorf("a workspaces check for a state directory never served from: %+v", c)
		}
	}
}

func TestDoctorBrokenEnvironment(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "cache", "envs", "minimal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := diagnose(doctorInputs{state: filepath.Join(tmp, "state"), cache: filepath.Join(tmp, "cache"), self: os.Args[0]})
	c := findCheck(t, r, "environment minimal")
	if c.OK || c.Fix != "pyro env build --force minimal" || !strings.HasPrefix(c.Detail, "broken: ") {
		t.Errorf("broken environment: %+v", c)
	}
	findCheck(t, r, "environments") // and none is built
}

func TestDoctorWorkspaces(t *testing.T) {
	state := t.TempDir()
	for _, d := range []string{"ws-1", "ws-2", ".deleting-ws-3", "ws-unfinished"} {
		if err := os.MkdirAll(filepath.Join(state, "workspaces", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"ws-1", "ws-2", ".deleting-ws-3"} {
		if err := os.WriteFile(filepath.Join(state, "workspaces", d, "record.json"), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := findCheck(t, diagnose(doctorInputs{state: state, cache: t.TempDir(), self: os.Args[0]}), "workspaces")
	if !c.OK || !strings.HasPrefix(c.Detail, "2 in the state directory") {
		t.Errorf("workspaces (a delete's remains and an unfinished create do not count): %+v", c)
	}
}

func TestDoctorPath(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mine, other := t.TempDir(), t.TempDir()
	if err := os.Symlink(self, filepath.Join(mine, "pyro")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "pyro"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	in := doctorInputs{state: t.TempDir(), cache: t.TempDir(), self: self}
	in.path = mine + string(os.PathListSeparator) + other
	if c := findCheck(t, diagnose(in), "pyro on PATH"); !c.OK || c.Warn {
		t.Errorf("this pyro first on PATH: %+v", c)
	}
	in.path = other + string(os.PathListSeparator) + mine
	if c := findCheck(t, diagnose(in), "pyro on PATH"); !c.Warn || !strings.Contains(c.Detail, "another pyro") {
		t.Errorf("another pyro first on PATH: %+v", c)
	}
}

// The command itself: its JSON is the report, and the exit status says
// whether it passed.
func TestDoctorCommand(t *testing.T) {
	tmp := t.TempDir()
	r := runPyroIn(t, []string{"PYRO_STATE_DIR=" + filepath.Join(tmp, "state"), "PYRO_CACHE_DIR=" + filepath.Join(tmp, "cache")}, "", "doctor", "--json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	if rep.OK || r.code != exitFailure {
		t.Fatalf("doctor with no environment: ok %v, exit %d", rep.OK, r.code)
	}
	if rep.StateDir != filepath.Join(tmp, "state") || rep.CacheDir != filepath.Join(tmp, "cache") {
		t.Errorf("doctor ignored PYRO_STATE_DIR/PYRO_CACHE_DIR: %+v", rep)
	}
	text := runPyroIn(t, []string{"PYRO_CACHE_DIR=" + filepath.Join(tmp, "cache")}, "", "doctor")
	if text.code != exitFailure || !strings.Contains(text.stdout, "[FAIL] environments") || !strings.Contains(text.stdout, "fix: pyro env build debian-12") {
		t.Errorf("doctor's report:\n%s", text.stdout)
	}
	if h := runPyro(t, "doctor", "--help"); h.code != 0 || !strings.Contains(h.stderr, "pyro mcp serve") {
		t.Errorf("doctor --help: %+v", h)
	}
	if bad := runPyro(t, "doctor", "extra"); bad.code != exitUsage {
		t.Errorf("doctor extra: %+v", bad)
	}
}

// doctor reports the resolver granted names go to: --resolver when given,
// else resolv.conf's nameservers; a resolv.conf that is missing or lists
// none is a warning that says granted names will not resolve and how to
// fix it, and a bad --resolver fails as pyro mcp serve would refuse it.
func TestDoctorResolver(t *testing.T) {
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example.org\nnameserver 192.0.2.53\nnameserver ::1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := doctorInputs{state: t.TempDir(), cache: t.TempDir(), self: os.Args[0], resolvConf: conf}
	r := diagnose(in)
	if c := findCheck(t, r, "resolver"); !c.OK || c.Warn || !strings.Contains(c.Detail, "192.0.2.53, ::1 (from "+conf+")") {
		t.Errorf("host resolver: %+v", c)
	}
	js, _ := json.Marshal(r)
	if want := `"resolver":{"source":"` + conf + `","servers":["192.0.2.53","::1"]}`; !strings.Contains(string(js), want) {
		t.Errorf("--json lacks %s: %s", want, js)
	}

	in.resolver = "127.0.0.1:5353"
	r = diagnose(in)
	if c := findCheck(t, r, "resolver"); !c.OK || c.Warn || !strings.Contains(c.Detail, "127.0.0.1:5353 (--resolver") {
		t.Errorf("--resolver: %+v", c)
	}
	if r.Resolver.Source != "--resolver" || len(r.Resolver.Servers) != 1 || r.Resolver.Servers[0] != "127.0.0.1:5353" {
		t.Errorf("--resolver report: %+v", r.Resolver)
	}
	in.resolver = "dns.example.org"
	if c := findCheck(t, diagnose(in), "resolver"); c.OK || !strings.Contains(c.Fix, "IP:PORT") {
		t.Errorf("bad --resolver: %+v", c)
	}
	in.resolver = ""

	if err := os.WriteFile(conf, []byte("# nothing here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = diagnose(in)
	if c := findCheck(t, r, "resolver"); !c.OK || !c.Warn || !strings.Contains(c.Detail, "lists no nameserver") ||
		!strings.Contains(c.Detail, "will not resolve") || !strings.Contains(c.Fix, "--resolver") {
		t.Errorf("no nameserver: %+v", c)
	}
	if len(r.Resolver.Servers) != 0 {
		t.Errorf("no nameserver, yet servers %v", r.Resolver.Servers)
	}
	in.resolvConf = filepath.Join(tmp, "missing")
	if c := findCheck(t, diagnose(in), "resolver"); !c.OK || !c.Warn || !strings.Contains(c.Detail, "no such file") || !strings.Contains(c.Fix, "nameserver") {
		t.Errorf("missing resolv.conf: %+v", c)
	}
}
