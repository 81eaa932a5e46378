package main

import (
	"regexp"
	"slices"
	"strings"
	"sync"
)

// A failed run is rerun, for its failed tests only and at most maxReruns
// times, while its output shows that an L2 guest died or went silent: the
// nested emulator (QEMU's TCG emulating AMD SVM for L1's KVM) kills or
// wedges a guest now and then, whatever the test (see qemu.go and the
// README). A test that fails without that sign, or fails maxReruns+1
// times, fails the run; every run's output stays in the log, and vmtest
// says loudly what it did. PYRO_VMTEST_RETRY=0 turns this off.
//
// The emulator can kill L1 itself: its kernel panics in the middle of a
// test (a page fault loop on its own per-CPU data, or on its stack, while
// it runs an L2 guest). The binary then never says which test it was in,
// so every top-level test that had not passed is run again (-test.skip of
// the ones that had). Such reruns have their own, larger budget
// (maxPanicReruns): a panic of L1's kernel is never a test's verdict, since
// nothing pyro does from L1's user space may crash L1's kernel short of a
// kernel bug, and in long runs they come about once in 10 to 15 minutes of
// L1 time (two in one package's run of CI's, four across two CI runs).
//
// Two reruns, not one: a CI run lost the exec test to a triple fault in
// its first L1 and again in its rerun; the loop measurements in qemu.go
// put a guest's death within a few 10 MiB streams of small writes.

// guestDeathSigns are phrases of pyro's own diagnostics for a guest that
// died or stopped answering.
var guestDeathSigns = []string{
	"did not answer within the start timeout", // boot went silent
	// ... or right after its agent's first answer: the boot's clock call
	// (a vCPU re-taking a page fault on valid kernel text, seen there).
	"setting the guest clock: the agent did not answer within",
	"no output for 20s after",                // an exec stream went silent (guest/instance tests)
	"the agent did not answer a second exec", // ... and the guest with it
	"triple fault",
	"Kernel panic",
	"stopped answering", // mcp/workspace's bounds on agent calls, pyro run's
	// Not "closed the stream before answering": a stream the VM's death
	// cuts says why (the triple fault above), so that one means the
	// agent closed it while its VM ran on, which is pyro's to explain.
}

// maxRetriedTests bounds a rerun: many failures are not the emulator.
const maxRetriedTests = 3

// maxReruns bounds the reruns of one run for guests that died;
// maxPanicReruns those for L1's own kernel panics.
const (
	maxReruns      = 2
	maxPanicReruns = 4
)

// rerunBudget counts one run's reruns of each kind.
type rerunBudget struct{ deaths, panics int }

// take spends a rerun of the kind given and says whether the budget
// allowed it, with the rerun's number and the most of that kind.
func (b *rerunBudget) take(panicked bool) (ok bool, n, most int) {
	if panicked {
		b.panics++
		return b.panics <= maxPanicReruns, b.panics, maxPanicReruns
	}
	b.deaths++
	return b.deaths <= maxReruns, b.deaths, maxReruns
}

// failTap watches a test binary's output for failed top-level tests and
// signs of a guest's death.
type failTap struct {
	mu      sync.Mutex
	partial string
	failed  []string
	passed  []string // top-level tests that passed or skipped
	sign    string
}

// anyFail matches a test's or a subtest's failure line; topDone a
// top-level test's pass or skip.
var (
	anyFail = regexp.MustCompile(`^\s*--- FAIL: (Test\S*) `)
	topDone = regexp.MustCompile(`^--- (?:PASS|SKIP): (Test\S*) `)
)

func (t *failTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial += string(p)
	for {
		i := strings.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(t.partial[:i])
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 1<<16 { // a very long line: look at it now
		t.line(t.partial)
		t.partial = ""
	}
	return len(p), nil
}

func (t *failTap) line(l string) {
	if m := anyFail.FindStringSubmatch(l); m != nil && !slices.Contains(t.failed, m[1]) {
		t.failed = append(t.failed, m[1])
	}
	if m := topDone.FindStringSubmatch(l); m != nil && !slices.Contains(t.passed, m[1]) {
		t.passed = append(t.passed, m[1])
	}
	if t.sign == "" {
		for _, s := range guestDeathSigns {
			if strings.Contains(l, s) {
				t.sign = s
				break
			}
		}
	}
}

// verdict returns the failed tests, deepest only (a subtest, not the
// tests it failed), and the sign of a guest's death, if the run may be
// retried.
func (t *failTap) verdict() (failed []string, sign string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.partial != "" {
		t.line(t.partial)
		t.partial = ""
	}
	for _, f := range t.failed {
		leaf := true
		for _, g := range t.failed {
			if strings.HasPrefix(g, f+"/") {
				leaf = false
				break
			}
		}
		if leaf {
			failed = append(failed, f)
		}
	}
	ok = len(failed) > 0 && len(failed) <= maxRetriedTests && t.sign != ""
	return failed, t.sign, ok
}

// passedTop returns the top-level tests that passed (or skipped) so far.
func (t *failTap) passedTop() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.partial != "" {
		t.line(t.partial)
		t.partial = ""
	}
	return append([]string(nil), t.passed...)
}

// skipArgs returns args that skip the top-level tests named, in place of
// any -test.skip an earlier rerun added: the test binary keeps only the
// last, so each rerun names every test skipped so far.
func skipArgs(args, tests []string) []string {
	if len(tests) == 0 {
		return args
	}
	q := make([]string, len(tests))
	for i, t := range tests {
		q[i] = regexp.QuoteMeta(t)
	}
	return withFlag(args, "-test.skip", "^("+strings.Join(q, "|")+")$")
}

// withFlag returns args with name=value in place of any earlier name=...
// (retryableArgs leaves only the ones reruns added).
func withFlag(args []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, name+"=") })
	return append(out, name+"="+value)
}

// retryableArgs reports whether a test binary's arguments allow a rerun
// of named tests: a plain run, not a filtered one, a benchmark or a
// repeated one.
func retryableArgs(args []string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		switch {
		case strings.HasPrefix(a, "test.run"), strings.HasPrefix(a, "test.bench"),
			strings.HasPrefix(a, "test.fuzz"), strings.HasPrefix(a, "test.skip"):
			return false
		case strings.HasPrefix(a, "test.count=") && a != "test.count=1":
			return false
		}
	}
	return true
}

// rerunArgs returns args that run the tests named (TestX/sub/leaf), level
// by level: -test.run matches each level of a name with its own part of
// the pattern, so naming several leaves under different parents may run
// a few more combinations than were named, never fewer.
func rerunArgs(args, tests []string) []string {
	var levels [][]string
	for _, t := range tests {
		for i, part := range strings.Split(t, "/") {
			if i == len(levels) {
				levels = append(levels, nil)
			}
			q := regexp.QuoteMeta(part)
			if !slices.Contains(levels[i], q) {
				levels[i] = append(levels[i], q)
			}
		}
	}
	parts := make([]string, len(levels))
	for i, l := range levels {
		parts[i] = "^(" + strings.Join(l, "|") + ")$"
	}
	return withFlag(args, "-test.run", strings.Join(parts, "/"))
}
