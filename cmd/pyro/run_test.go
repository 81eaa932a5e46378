package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad input gets one line that says what to fix, fast, before any VM exists.
func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	if err := os.WriteFile(garbage, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--kernel", garbage}, exitFailure, "not a Linux x86 bzImage"},
		{[]string{"--kernel", empty}, exitFailure, "not a Linux x86 bzImage"},
		{[]string{"--kernel", filepath.Join(dir, "missing")}, exitFailure, "no such file or directory"},
		{[]string{"--kernel", dir}, exitFailure, "is a directory"},
		{[]string{"--kernel", garbage, "--mem-mib", "4"}, exitFailure, "at least 64 MiB"},
		{[]string{"--kernel", garbage, "--mem-mib", "999999999999999999999"}, exitUsage, "invalid argument"},
		{[]string{"--kernel", garbage, "--mem-mib", "9999999"}, exitFailure, "more than this host's"},
		{[]string{"--kernel", garbage, "--vcpus", "0"}, exitFailure, "--vcpus 0"},
		{[]string{"--kernel", garbage, "--vcpus", "1000"}, exitFailure, "choose 1 to 254"},
		{[]string{"--kernel", garbage, "--timeout", "-1s"}, exitUsage, "--timeout"},
		{[]string{"--kernel", garbage, "extra"}, exitUsage, "unexpected argument"},
		{[]string{"--bogus"}, exitUsage, "unknown flag"},
	} {
		start := time.Now()
		r := runPyro(t, append([]string{"run"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("pyro run %q: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); r.code == exitFailure && lines > 0 {
			t.Errorf("pyro run %q: %d lines of error, want one: %q", c.args, lines+1, r.stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("pyro run %q took %v to reject bad input", c.args, d)
		}
	}
}

// The ENV form rejects bad input before booting anything, and an
// environment that is not built gets the command that builds it.
func TestRunEnvBadInput(t *testing.T) {
	cache := []string{"PYRO_CACHE_DIR=" + t.TempDir()}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"minimal"}, exitUsage, "no command"},
		{[]string{"--", "true"}, exitUsage, "name the environment"},
		{[]string{"nosuch", "--", "true"}, exitUsage, "nosuch"},
		{[]string{"minimal", "--env", "NOEQUALS", "--", "true"}, exitUsage, "want NAME=VALUE"},
		{[]string{"minimal", "--workdir", "rel", "--", "true"}, exitUsage, "absolute"},
		{[]string{"minimal", "--kernel", "/x", "--", "true"}, exitUsage, "unexpected argument"},
		{[]string{"--env", "A=B"}, exitUsage, "need an environment"},
		{[]string{"--network", "pypi.org:443"}, exitUsage, "need an environment"},
		{[]string{"minimal", "--network", "pypi.org", "--", "true"}, exitUsage, "NAME:PORT"},
		{[]string{"--disk-mib", "4096"}, exitUsage, "need an environment"},
		{[]string{"--resolver", "127.0.0.1:53"}, exitUsage, "need an environment"},
		{[]string{"minimal", "--resolver", "dns.example.org", "--", "true"}, exitUsage, "is not IP:PORT"},
		{[]string{"minimal", "--", "true"}, exitRunUnable, "pyro env build minimal"},
	} {
		r := runPyroIn(t, cache, "", append([]string{"run"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("pyro run %q: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}

func TestEnvCommands(t *testing.T) {
	cache := []string{"PYRO_CACHE_DIR=" + t.TempDir()}
	r := runPyroIn(t, cache, "", "env", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "debian-12") || !strings.Contains(r.stdout, "pyro env build NAME") {
		t.Errorf("env list: %+v", r)
	}
	r = runPyroIn(t, cache, "", "env", "list", "--json")
	var list []envListEntry
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) < 3 {
		t.Fatalf("env list --json: %v: %q", err, r.stdout)
	}
	for _, e := range list {
		if e.State == "built" || e.Build != "pyro env build "+e.Name {
			t.Errorf("empty cache lists %+v", e)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"env", "build"}, "name one environment"},
		{[]string{"env", "build", "nosuch"}, "nosuch"},
		{[]string{"env", "frob"}, "unknown subcommand"},
	} {
		if r := runPyroIn(t, cache, "", c.args...); r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("pyro %q: %+v", c.args, r)
		}
	}
}

// The ENV form's disk: 8 GiB by default (or the image, if larger), an
// explicit size between the image and the bound; its memory never asks
// for more than the host has.
func TestRunSizes(t *testing.T) {
	const image = 580<<20 + 4096 // rounds up to 581 MiB
	for _, c := range []struct {
		req  int
		want int64
		bad  bool
	}{
		{0, runDefaultDiskMiB << 20, false},
		{581, 581 << 20, false},
		{1024, 1 << 30, false},
		{580, 0, true},
		{-1, 0, true},
		{runMaxDiskMiB + 1, 0, true},
	} {
		got, err := runDiskBytes(c.req, image)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("--disk-mib %d: %d, %v; want %d (refused %v)", c.req, got, err, c.want, c.bad)
		}
		if err != nil && !strings.Contains(err.Error(), "581 MiB") {
			t.Errorf("--disk-mib %d: the refusal does not give the image's size: %v", c.req, err)
		}
	}
	if got, _ := runDiskBytes(0, 10<<30); got != 10<<30 {
		t.Errorf("default over a 10 GiB image: %d", got)
	}
	for _, c := range []struct {
		host uint64
		want int
	}{{0, runDefaultMemMiB}, {64 << 10, runDefaultMemMiB}, {3930, 1920}, {1000, 384}, {300, 256}} {
		if got := runDefaultMem(c.host); got != c.want {
			t.Errorf("host of %d MiB: default memory %d, want %d", c.host, got, c.want)
		}
	}
}

// $PYRO_RESOLVER is --resolver's default for pyro run and pyro mcp serve,
// validated as the flag is; an empty value means the host's resolver (a
// nil Resolver, never a typed nil).
func TestResolverEnv(t *testing.T) {
	bad := []string{"PYRO_RESOLVER=not-an-address", "PYRO_CACHE_DIR=" + t.TempDir(), "PYRO_STATE_DIR=" + t.TempDir()}
	for _, args := range [][]string{{"run", "minimal", "--", "true"}, {"mcp", "serve"}} {
		r := runPyroIn(t, bad, "", args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--resolver: resolver \"not-an-address\" is not IP:PORT") {
			t.Errorf("pyro %q with a bad $PYRO_RESOLVER: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if res, err := hostResolver(""); res != nil || err != nil {
		t.Fatalf("hostResolver(\"\") = %v, %v; want nil, nil", res, err)
	}
	if res, err := hostResolver("127.0.0.1:5353"); res == nil || err != nil {
		t.Fatalf("hostResolver(127.0.0.1:5353) = %v, %v", res, err)
	}
}
