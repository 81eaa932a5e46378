package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/workspace"
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

// Each environment is warm, cold, stale or broken, decided as pyro env
// build decides it (recipe, guest agent), and names the command that
// readies it; only a broken one fails.
func TestDoctorEnvironmentReadiness(t *testing.T) {
	tmp := t.TempDir()
	agent := filepath.Join(tmp, "pyro")
	if err := os.WriteFile(agent, []byte("this pyro"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("this pyro"))
	got, other := hex.EncodeToString(h[:]), strings.Repeat("0", 64)
	spec, err := env.Lookup("minimal")
	if err != nil {
		t.Fatal(err)
	}
	builtWith := func(agentSize int64, agentSum, pyroVersion string) *env.Env {
		e := &env.Env{Name: "minimal"}
		e.Manifest.Agent = env.FileInfo{Size: agentSize, SHA256: agentSum}
		e.Manifest.PyroVersion = pyroVersion
		e.Manifest.Kernel.Version = "6.1.999-1"
		return e
	}
	for _, c := range []struct {
		name   string
		st     env.Status
		agent  string
		state  string
		detail string
	}{
		{"warm", env.Status{Spec: spec, State: env.StateBuilt, Env: builtWith(9, got, "v1")}, agent, envWarm, "guest agent is this pyro"},
		{"another agent", env.Status{Spec: spec, State: env.StateBuilt, Env: builtWith(9, other, "v0.9")}, agent, envStale, "another pyro binary (pyro v0.9)"},
		{"another agent size", env.Status{Spec: spec, State: env.StateBuilt, Env: builtWith(10, got, "")}, agent, envStale, "another pyro binary, not this one"},
		{"agent unreadable", env.Status{Spec: spec, State: env.StateBuilt, Env: builtWith(9, got, "")}, filepath.Join(tmp, "gone"), envStale, "cannot compare"},
		{"older recipe", env.Status{Spec: spec, State: env.StateBuilt, Env: builtWith(9, got, ""), Outdated: "built by build recipe 0"}, agent, envStale, "built, but built by build recipe 0"},
		{"not built", env.Status{Spec: spec, State: env.StateNotBuilt}, agent, envCold, "not built"},
		{"being built", env.Status{Spec: spec, State: env.StateNotBuilt, Building: true}, agent, envBuilding, "running now"},
		{"broken", env.Status{Spec: spec, State: env.StateBroken, Reason: "rootfs.ext4 is missing"}, agent, envBroken, "rootfs.ext4 is missing"},
	} {
		r := envState(c.st, c.agent)
		if r.Name != "minimal" || r.State != c.state || !strings.Contains(r.Detail, c.detail) {
			t.Errorf("%s: %+v; want state %s, detail with %q", c.name, r, c.state, c.detail)
		}
		switch {
		case c.state == envWarm || c.state == envBuilding:
			if r.Fix != "" {
				t.Errorf("%s: a fix for a %s environment: %q", c.name, c.state, r.Fix)
			}
		case c.state == envBroken:
			if r.Fix != "pyro env build --force minimal" {
				t.Errorf("%s: fix %q", c.name, r.Fix)
			}
		case r.Fix != "pyro prepare minimal (or pyro env build minimal)":
			t.Errorf("%s: fix %q", c.name, r.Fix)
		}
	}
}

// An empty cache: every environment is cold, the default one warns (a
// workspace that names none boots it), and --json lists them all.
func TestDoctorColdEnvironments(t *testing.T) {
	tmp := t.TempDir()
	r := diagnose(doctorInputs{state: filepath.Join(tmp, "state"), cache: filepath.Join(tmp, "cache"), self: os.Args[0], agent: os.Args[0]})
	def := findCheck(t, r, "environment "+workspace.DefaultEnv)
	if !def.OK || !def.Warn || !strings.HasPrefix(def.Detail, "cold: not built") || def.Fix != "pyro prepare debian-12 (or pyro env build debian-12)" {
		t.Errorf("default environment: %+v", def)
	}
	if c := findCheck(t, r, "environment minimal"); !c.OK || c.Warn || !strings.Contains(c.Detail, "pyro prepare minimal or pyro env build minimal") {
		t.Errorf("minimal: %+v", c)
	}
	if len(r.Environments) != len(env.Specs()) {
		t.Fatalf("environments: %+v", r.Environments)
	}
	js, _ := json.Marshal(r)
	if want := `{"name":"minimal","state":"cold","detail":"not built","fix":"pyro prepare minimal (or pyro env build minimal)"}`; !strings.Contains(string(js), want) {
		t.Errorf("--json lacks %s: %s", want, js)
	}
}

// A warm environment's line says which VM shapes resume a memory snapshot,
// the disk they hold, what happens without one, and what stale ones cost.
func TestDoctorWarmDetail(t *testing.T) {
	cur := workspace.WarmStatus{VCPUs: 1, MemMiB: 384, DiskMiB: 8192, Bytes: 150 << 20, Current: true}
	old := workspace.WarmStatus{VCPUs: 2, MemMiB: 512, Bytes: 100 << 20}
	for _, c := range []struct {
		name  string
		snaps []workspace.WarmStatus
		on    bool
		want  []string
		not   []string
	}{
		{"none", nil, true, []string{"no memory snapshot yet", "pyro prepare debian-12 takes it now"}, []string{"stale"}},
		{"current", []workspace.WarmStatus{cur}, true, []string{"workspaces of 1 vCPU, 384 MiB resume its memory snapshot", "150.0 MiB on disk"}, []string{"stale", "yet"}},
		{"current and stale", []workspace.WarmStatus{cur, old}, true, []string{"1 vCPU, 384 MiB resume", "1 stale memory snapshot(s), 100.0 MiB"}, []string{"2 vCPU"}},
		{"only stale", []workspace.WarmStatus{old}, true, []string{"no memory snapshot yet", "1 stale"}, nil},
		{"off", []workspace.WarmStatus{cur}, false, []string{"memory snapshots are off (PYRO_WARM=0)"}, []string{"resume"}},
	} {
		d := warmDetail("debian-12", c.snaps, c.on)
		for _, w := range c.want {
			if !strings.Contains(d, w) {
				t.Errorf("%s: %q lacks %q", c.name, d, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(d, n) {
				t.Errorf("%s: %q has %q", c.name, d, n)
			}
		}
	}
}
