package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// guestPATH is the search path inside L1.
const guestPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// guestEnv selects the environment the test binary gets inside L1: every
// PYRO_* variable, CI, GOTRACEBACK and GODEBUG from the host, plus a fixed
// HOME, TMPDIR and PATH, and PYRO_VMTEST_L1=1. Nothing else crosses, so host paths and settings
// (GOCACHE, GOPATH, ...) never leak into L1. The result is sorted.
func guestEnv(environ []string) []string {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(k, "PYRO_"), k == "CI", k == "GOTRACEBACK", k == "GODEBUG":
			env[k] = v
		}
	}
	env["PYRO_VMTEST_L1"] = "1" // lets the harness's self-tests know where they run
	env["HOME"] = "/root"
	env["TMPDIR"] = "/tmp"
	env["PATH"] = guestPATH
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// testPaths returns the files and directories that PYRO_TEST_* variables name
// by absolute path. They are copied into L1 at the same path, so the variables
// need no translation. Values that are not absolute paths of an existing
// regular file or directory are left alone (they still cross as plain strings).
func testPaths(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "PYRO_TEST_") || !filepath.IsAbs(v) {
			continue
		}
		if fi, err := os.Stat(v); err == nil && (fi.Mode().IsRegular() || fi.IsDir()) {
			out = append(out, filepath.Clean(v))
		}
	}
	sort.Strings(out)
	return out
}

// testTimeout returns the -test.timeout a test binary was given, or 0.
func testTimeout(args []string) time.Duration {
	var d time.Duration
	for i, a := range args {
		a = strings.TrimPrefix(a, "-")
		var v string
		switch {
		case strings.HasPrefix(a, "-test.timeout="), strings.HasPrefix(a, "test.timeout="):
			_, v, _ = strings.Cut(a, "=")
		case (a == "-test.timeout" || a == "test.timeout") && i+1 < len(args):
			v = args[i+1]
		default:
			continue
		}
		if p, err := time.ParseDuration(v); err == nil {
			d = p
		}
	}
	return d
}

// testTimeoutSlack is added to the test binary's own -test.timeout. It covers
// L1's boot and the stack dump the binary prints when its timeout fires, and is
// below go test's own grace of one minute, so vmtest reports the timeout
// (with the console tail) before go test kills it.
const testTimeoutSlack = 45 * time.Second

// runTimeout picks the limit for a whole L1 run: PYRO_VMTEST_TIMEOUT (default
// 30m), or the binary's -test.timeout plus slack if that is sooner.
func runTimeout(env string, args []string) (time.Duration, error) {
	d := 30 * time.Minute
	if env != "" {
		p, err := time.ParseDuration(env)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("PYRO_VMTEST_TIMEOUT=%q: want a positive duration such as 10m", env)
		}
		d = p
	}
	if t := testTimeout(args); t > 0 && t+testTimeoutSlack < d {
		d = t + testTimeoutSlack
	}
	return d, nil
}

// envInt reads a positive integer setting, or returns def when it is unset.
func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// shQuote quotes s for a POSIX shell: any byte string survives.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// underAny reports whether p is one of roots or lies below one of them.
func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, strings.TrimSuffix(r, "/")+"/") {
			return true
		}
	}
	return false
}
