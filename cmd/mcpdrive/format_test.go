package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestResultLine(t *testing.T) {
	if got := resultLine("cold-start", 12345*time.Millisecond, nil); got != "smoke cold-start: ok (12.3s)" {
		t.Errorf("ok line %q", got)
	}
	got := resultLine("untrusted", 3*time.Second, errors.New("filling the disk:\n  limited \"\"\n\nwant a full disk"))
	if got != `smoke untrusted: FAIL (3.0s): filling the disk: | limited "" | want a full disk` {
		t.Errorf("FAIL line %q", got)
	}
	long := resultLine("parallel", time.Second, errors.New(strings.Repeat("é", 1000)))
	if strings.Contains(long, "\n") || len(long) > 700 || !strings.HasSuffix(long, "...") || !strings.HasPrefix(long, "smoke parallel: FAIL (1.0s): é") {
		t.Errorf("long FAIL line: %d bytes, %.80q...", len(long), long)
	}
	if !utf8Valid(long) {
		t.Error("the cut split a UTF-8 sequence")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

func TestTail(t *testing.T) {
	if got := tail("  short\n", 10); got != `"short"` {
		t.Errorf("tail %s", got)
	}
	if got := tail("0123456789abcdef", 4); got != `"...cdef"` {
		t.Errorf("tail %s", got)
	}
	if got := tail(strings.Repeat("ü", 10), 5); !utf8Valid(got) || !strings.HasPrefix(got, `"...`) {
		t.Errorf("tail cut a character: %s", got)
	}
}

func TestBlockLines(t *testing.T) {
	text := "a\nb\tx\nc  \nd\ne\n\n"
	if got := strings.Join(blockLines(text, 0, false), "|"); got != "a|b    x|c|d|e" {
		t.Errorf("whole block %q", got)
	}
	if got := strings.Join(blockLines(text, 3, false), "|"); got != "a|b    x|... (3 more lines)" {
		t.Errorf("head %q", got)
	}
	if got := strings.Join(blockLines(text, 3, true), "|"); got != "... (3 more lines)|d|e" {
		t.Errorf("tail %q", got)
	}
	if got := blockLines("\n\n", 3, true); got != nil {
		t.Errorf("blank block %q", got)
	}
	if got := strings.Join(blockLines("a\r\nb", 5, false), "|"); got != "a|b" {
		t.Errorf("CRLF %q", got)
	}
}

func TestTranscript(t *testing.T) {
	var b bytes.Buffer
	tr := &transcript{w: &b}
	tr.step("workspace_exec", arg{"", "python3 -m unittest"}, arg{"timeout", "120"})
	tr.result(1500*time.Millisecond, "%s", exitLine(execResult{ExitCode: 1, DurationMs: 420}))
	tr.block("FAIL: test_x\nAssertionError: 0.0 != 27\n", 8, true)
	want := "\n 1  workspace_exec    python3 -m unittest  timeout=120\n" +
		"    -> exit 1, ran 0.4s  [1.5s]\n" +
		"       | FAIL: test_x\n" +
		"       | AssertionError: 0.0 != 27\n"
	if b.String() != want {
		t.Errorf("transcript\n%q\nwant\n%q", b.String(), want)
	}
	// No trailing blanks: a step without arguments, a blank output line.
	b.Reset()
	tr.step("workspace_diff")
	tr.block("a\n\nb", 0, false)
	want = "\n 2  workspace_diff\n       | a\n       |\n       | b\n"
	if b.String() != want {
		t.Errorf("transcript\n%q\nwant\n%q", b.String(), want)
	}
}

func TestExitLine(t *testing.T) {
	for _, c := range []struct {
		r    execResult
		want string
	}{
		{execResult{ExitCode: 0, DurationMs: 1234}, "exit 0, ran 1.2s"},
		{execResult{ExitCode: 124, TimedOut: true, DurationMs: 30000}, "exit 124 (timed out), ran 30.0s"},
		{execResult{ExitCode: 137, Signal: "SIGKILL", Limited: "out of memory"}, "exit 137 (SIGKILL), ran 0.0s; limited: out of memory"},
	} {
		if got := exitLine(c.r); got != c.want {
			t.Errorf("exitLine(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestSmallFormats(t *testing.T) {
	if got := numbered("x = 1\ny = 2\n"); got != "  1  x = 1\n  2  y = 2" {
		t.Errorf("numbered %q", got)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if plural(1, "file") != "1 file" || plural(3, "line") != "3 lines" || plural(0, "file") != "0 files" {
		t.Error("plural")
	}
	if got := output(execResult{Stdout: "out\n", Stderr: "err\n"}); got != "out\nerr\n" {
		t.Errorf("output %q", got)
	}
	if got := shellQuote("/tmp/it's here"); got != `'/tmp/it'\''s here'` {
		t.Errorf("shellQuote %s", got)
	}
}

func TestWantOnlyChanges(t *testing.T) {
	d := diffResult{Stats: diffStats{Files: 2, Additions: 2, Deletions: 1}, FilesTotal: 2, Files: []change{
		{Path: "notes/a.txt", Status: "added", Additions: 1},
		{Path: "app.py", Status: "modified", Additions: 1, Deletions: 1},
	}}
	app := change{Path: "app.py", Status: "modified", Additions: 1, Deletions: 1}
	note := change{Path: "notes/a.txt", Status: "added", Additions: 1}
	if err := wantOnlyChanges(d, app, note); err != nil {
		t.Errorf("the exact changes: %v", err)
	}
	if err := wantOnlyChanges(d, app); err == nil {
		t.Error("an extra change passed")
	}
	if err := wantOnlyChanges(d, app, change{Path: "notes/b.txt", Status: "added", Additions: 1}); err == nil {
		t.Error("another workspace's change passed")
	}
	d.Stats.Additions = 5
	if err := wantOnlyChanges(d, app, note); err == nil {
		t.Error("stats that disagree passed")
	}
	if err := wantOnlyChanges(diffResult{Files: []change{}}); err != nil {
		t.Errorf("an empty diff: %v", err)
	}
}

func TestWantExit(t *testing.T) {
	if err := wantExit(execResult{ExitCode: 0}, 0, "true"); err != nil {
		t.Error(err)
	}
	if err := wantExit(execResult{ExitCode: 1, Stderr: "nope"}, 0, "false"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("wantExit %v", err)
	}
	if err := wantExit(execResult{ExitCode: 124, TimedOut: true}, 124, "sleep"); err == nil {
		t.Error("a timeout passed as its exit code")
	}
}

func TestSelectScenarios(t *testing.T) {
	if sel, err := selectScenarios(""); sel != nil || err != nil {
		t.Errorf("no --only: %v %v", sel, err)
	}
	sel, err := selectScenarios("repro-fix, untrusted")
	if err != nil || len(sel) != 2 || !sel["repro-fix"] || !sel["untrusted"] {
		t.Errorf("two scenarios: %v %v", sel, err)
	}
	if _, err := selectScenarios("nope"); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := mainArgs(context.Background(), nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "cold-start, repro-fix, parallel, untrusted, review-eval") {
		t.Errorf("no arguments: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := mainArgs(context.Background(), []string{"smoke", "--only", "nope", "--pyro", "/bin/true"}, &out, &errb); code != 2 {
		t.Errorf("--only nope: exit %d, %q", code, errb.String())
	}
	if code := mainArgs(context.Background(), []string{"fly"}, &out, &errb); code != 2 {
		t.Errorf("unknown subcommand: exit %d", code)
	}
}

func TestForEach(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	err := forEach([]string{"a", "b", "c"}, func(i int, s string) error {
		mu.Lock()
		seen[s] = i
		mu.Unlock()
		if s != "a" {
			return errors.New("boom")
		}
		return nil
	})
	if len(seen) != 3 || seen["c"] != 2 {
		t.Errorf("ran %v", seen)
	}
	if err == nil || err.Error() != "b: boom (c failed too)" {
		t.Errorf("error %v", err)
	}
	if err := forEach([]string{"a"}, func(int, string) error { return nil }); err != nil {
		t.Errorf("no failure: %v", err)
	}
}

func TestDeathSign(t *testing.T) {
	if s := deathSign("workspace_exec failed (internal): pyro lost the agent", "crash: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN)"); s != "triple fault" {
		t.Errorf("sign %q", s)
	}
	if s := deathSign("exit 1, want 0", "tool call ok"); s != "" {
		t.Errorf("a plain failure has sign %q", s)
	}
	t.Setenv("PYRO_VMTEST_L1", "")
	if rerunsAllowed() {
		t.Error("reruns outside the harness")
	}
	t.Setenv("PYRO_VMTEST_L1", "1")
	if !rerunsAllowed() {
		t.Error("no reruns in the harness")
	}
	t.Setenv("PYRO_VMTEST_RETRY", "0")
	if rerunsAllowed() {
		t.Error("PYRO_VMTEST_RETRY=0 did not turn reruns off")
	}
}

// runSmoke reruns a scenario whose guest died, at most maxReruns times and
// only when allowed, prints one line per scenario and counts failures.
func TestRunSmokeReruns(t *testing.T) {
	for _, c := range []struct {
		name     string
		rerun    bool
		failures []error // what each attempt of repro-fix returns
		signs    []string
		want     string // repro-fix's line, without the duration
		runs     int
	}{
		{"passes", true, []error{nil}, []string{""}, "ok", 1},
		{"died then passed", true, []error{errors.New("boot: triple fault"), nil}, []string{"triple fault", ""}, "ok", 2},
		{"died every time", true, []error{errors.New("a"), errors.New("b"), errors.New("c"), errors.New("d")},
			[]string{"triple fault", "triple fault", "triple fault", "triple fault"}, "FAIL: c", 3},
		{"plain failure", true, []error{errors.New("exit 1"), nil}, []string{"", ""}, "FAIL: exit 1", 1},
		{"no reruns natively", false, []error{errors.New("boot: triple fault"), nil}, []string{"triple fault", ""}, "FAIL: boot: triple fault", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, log bytes.Buffer
			runs := 0
			failed := runSmoke(context.Background(), smokeOptions{Only: map[string]bool{"repro-fix": true, "parallel": true},
				Rerun: c.rerun, Out: &out, Log: &log,
				runner: func(_ context.Context, _ smokeOptions, sc scenario) (string, error) {
					if sc.name != "repro-fix" {
						return "", nil
					}
					runs++
					return c.signs[runs-1], c.failures[runs-1]
				}})
			if runs != c.runs {
				t.Errorf("%d runs, want %d", runs, c.runs)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "smoke repro-fix: ") || !strings.HasPrefix(lines[1], "smoke parallel: ok (") {
				t.Fatalf("lines %q", lines)
			}
			got := regexp.MustCompile(` \([0-9.]+s\)`).ReplaceAllString(strings.TrimPrefix(lines[0], "smoke repro-fix: "), "")
			if got != c.want {
				t.Errorf("line %q, want %q", got, c.want)
			}
			if wantFailed := map[bool]int{true: 0, false: 1}[c.want == "ok"]; failed != wantFailed {
				t.Errorf("%d failed", failed)
			}
			if n := strings.Count(log.String(), "mcpdrive: RERUN"); n != c.runs-1 {
				t.Errorf("%d RERUN notes for %d runs: %s", n, c.runs, log.String())
			}
		})
	}
}
