package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for the pyro binary: with
// PYRO_TEST_AS_PYRO=1 it runs pyro's main on its arguments. End-to-end tests
// run pyro as a user would, as a separate process, even inside the harness
// where no Go toolchain exists to build it.
func TestMain(m *testing.M) {
	if os.Getenv("PYRO_TEST_AS_PYRO") == "1" {
		os.Exit(pyroMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type pyroResult struct {
	code           int
	stdout, stderr string
}

// runPyro runs "pyro args..." as a child process.
func runPyro(t *testing.T, args ...string) pyroResult {
	t.Helper()
	return runPyroIn(t, nil, "", args...)
}

// runPyroIn runs pyro as a child process with extra environment variables
// and stdin.
func runPyroIn(t *testing.T, env []string, stdin string, args ...string) pyroResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "PYRO_TEST_AS_PYRO=1"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return pyroResult{code, out.String(), errb.String()}
}

func TestUsage(t *testing.T) {
	r := runPyro(t, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "kvm-check") || !strings.Contains(r.stdout, "run") {
		t.Fatalf("--help: %+v", r)
	}
	r = runPyro(t)
	if r.code != exitUsage || !strings.Contains(r.stderr, "Usage:") {
		t.Fatalf("no arguments: %+v", r)
	}
	r = runPyro(t, "kvm-chek")
	if r.code != exitUsage || !strings.Contains(r.stderr, `unknown command "kvm-chek"`) {
		t.Fatalf("typo: %+v", r)
	}
	r = runPyro(t, "run", "--help")
	if r.code != 0 || !strings.Contains(r.stderr, "--kernel") || !strings.Contains(r.stderr, "Exit status") {
		t.Fatalf("run --help: %+v", r)
	}
}
