package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestGuestEnv(t *testing.T) {
	got := guestEnv([]string{
		"PYRO_KVM=1", "PYRO_TEST_X=/a b", "CI=true", "GOTRACEBACK=all", "GODEBUG=x=1",
		"HOME=/home/me", "GOCACHE=/c", "PATH=/host", "TMPDIR=/var/tmp", "PYROX=no", "junk",
	})
	want := []string{
		"CI=true", "GODEBUG=x=1", "GOTRACEBACK=all", "HOME=/root", "PATH=" + guestPATH,
		"PYRO_KVM=1", "PYRO_TEST_X=/a b", "PYRO_VMTEST_L1=1", "TMPDIR=/tmp",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestEnv:\n got %q\nwant %q", got, want)
	}
}

func TestTestPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := testPaths([]string{
		"PYRO_TEST_FILE=" + file, "PYRO_TEST_DIR=" + dir + "/", "PYRO_TEST_REL=f",
		"PYRO_TEST_MISSING=" + dir + "/nope", "PYRO_TEST_DEV=/dev/null", "PYRO_OTHER=" + file,
	})
	if want := []string{dir, file}; !reflect.DeepEqual(got, want) {
		t.Errorf("testPaths = %q, want %q", got, want)
	}
	if !underAny(file, got[:1]) || underAny(dir+"x", got[:1]) || !underAny("/a", []string{"/a"}) {
		t.Error("underAny")
	}
}

func TestTimeouts(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want time.Duration
	}{
		{"", nil, 30 * time.Minute},
		{"", []string{"-test.paniconexit0", "-test.timeout=10m0s"}, 10*time.Minute + testTimeoutSlack},
		{"", []string{"-test.timeout", "2m"}, 2*time.Minute + testTimeoutSlack},
		{"", []string{"-test.timeout=0s"}, 30 * time.Minute},
		{"1m", []string{"-test.timeout=10m"}, time.Minute},
		{"2h", []string{"-test.timeout=1h"}, time.Hour + testTimeoutSlack},
	} {
		got, err := runTimeout(tc.env, tc.args)
		if err != nil || got != tc.want {
			t.Errorf("runTimeout(%q, %q) = %v, %v; want %v", tc.env, tc.args, got, err, tc.want)
		}
	}
	if _, err := runTimeout("soon", nil); err == nil {
		t.Error("bad PYRO_VMTEST_TIMEOUT accepted")
	}
}

func TestShQuote(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	args := []string{"plain", "", "it's", `"$HOME" $(x) ` + "`y`", "new\nline", `back\slash`, "*"}
	var script strings.Builder
	script.WriteString("printf '%s\\0'")
	for _, a := range args {
		script.WriteString(" " + shQuote(a))
	}
	out, err := exec.Command("sh", "-c", script.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !reflect.DeepEqual(got, args) {
		t.Errorf("round trip through sh: %q, want %q", got, args)
	}
}

func TestCopyStream(t *testing.T) {
	const n = "vmtest-0123456789abcdef"
	for _, tc := range []struct {
		name, in, out, status string
		started, seen         bool
	}{
		{"normal", n + " start\n=== RUN\nok\n" + n + " exit=0\n", "=== RUN\nok\n", "exit=0", true, true},
		{"no trailing newline", n + " start\npartial" + n + " exit=3\n", "partial", "exit=3", true, true},
		{"crlf and drain", "x\r\n" + n + " exit=1\r\nafter\n", "x\r\n", "exit=1", false, true},
		{"setup failed", n + " setup-failed\n", "", "setup-failed", false, true},
		{"cut off", n + " start\nhalf a li", "half a li", "", true, false},
		{"other nonce", "vmtest-ffff exit=0\n", "vmtest-ffff exit=0\n", "", false, false},
		{"start not at line start", "a " + n + " start\n", "a " + n + " start\n", "", false, false},
	} {
		var out bytes.Buffer
		var calls []string
		m, err := copyStream(iotest.OneByteReader(strings.NewReader(tc.in)), &out, n, func(s string) { calls = append(calls, s) })
		var want []string
		if tc.started {
			want = append(want, "start")
		}
		if tc.seen {
			want = append(want, tc.status)
		}
		if err != nil || out.String() != tc.out || m.status != tc.status || m.seen != tc.seen || !reflect.DeepEqual(calls, want) {
			t.Errorf("%s: out %q status %q seen %v markers %q err %v", tc.name, out.String(), m.status, m.seen, calls, err)
		}
	}
}

func TestTail(t *testing.T) {
	tl := newTail(3)
	for _, s := range []string{"a\r\nb\n", "c\nd", "e\nf\n"} {
		_, _ = tl.Write([]byte(s))
	}
	if got := tl.String(); got != "c\nde\nf\n" {
		t.Errorf("tail = %q", got)
	}
	tl = newTail(2)
	_, _ = tl.Write([]byte("x\ny"))
	if got := tl.String(); got != "x\ny\n" {
		t.Errorf("tail with a partial line = %q", got)
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f00)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f01)\n"
	got, err := parseLdd([]byte(out))
	if want := []string{"/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseLdd = %q, %v", got, err)
	}
	if _, err := parseLdd([]byte("\tlibfoo.so.1 => not found\n")); err == nil {
		t.Error("missing library accepted")
	}
}

func TestInitScriptAndQEMUArgs(t *testing.T) {
	r := &l1{
		assets: "/a", binary: "/tmp/go-build1/b001/kvm.test", args: []string{"-test.run", "X|Y's"},
		env: []string{"HOME=/root"}, cwd: "/work/main/kvm", nonce: "vmtest-00", mem: 4096, smp: 2, cpu: "max",
		m: &Manifest{Kernel: "vmlinuz", KVMModules: []string{"kvm/irqbypass.ko", "kvm/kvm.ko", "kvm/kvm-amd.ko"}},
	}
	s := r.initScript()
	for _, want := range []string{
		"#!/bin/busybox sh\n",
		"for m in '/vmtest/modules/irqbypass.ko' '/vmtest/modules/kvm.ko' '/vmtest/modules/kvm-amd.ko'; do",
		"cd '/work/main/kvm' ||",
		`env -i 'HOME=/root' '/vmtest/bin/kvm.test' '-test.run' 'X|Y'\''s' </dev/null >$out 2>$err`,
		"err=/dev/ttyS2\n", `echo "$N exit=$rc" >$out`, "poweroff -f\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	args := strings.Join(r.qemuArgs("/tmp/x.cpio"), " ")
	for _, want := range []string{"-accel tcg", "-cpu max", "-m 4096", "-kernel /a/vmlinuz", "-initrd /tmp/x.cpio",
		"path=/dev/fd/3", "path=/dev/fd/5", "panic=-1"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q: %s", want, args)
		}
	}
	r.merged = true
	if s := r.initScript(); !strings.Contains(s, "err=/dev/ttyS1\n") {
		t.Error("merged mode does not share ttyS1")
	}
	if args := strings.Join(r.qemuArgs("/tmp/x.cpio"), " "); strings.Contains(args, "/dev/fd/5") {
		t.Error("merged mode still has a third port")
	}
}

func TestQEMUMajor(t *testing.T) {
	for in, want := range map[string]int{
		"1:10.0.2+ds-2+deb13u1~bpo12+1":                                  10,
		"1:7.2+dfsg-7+deb12u18+b3":                                       7,
		"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)": 7,
		"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)":            10,
		"8.2.1": 8,
	} {
		got, err := qemuMajor(in)
		if err != nil || got != want {
			t.Errorf("qemuMajor(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "QEMU emulator version", "x.y"} {
		if _, err := qemuMajor(bad); err == nil {
			t.Errorf("qemuMajor(%q): no error", bad)
		}
	}
}

func TestFailTap(t *testing.T) {
	var tap failTap
	out := "=== RUN   TestA\n--- PASS: TestA (0.1s)\n=== RUN   TestB\n    x_test.go:1: exec: no output for 20s after 5 bytes\n" +
		"--- FAIL: TestB (3.0s)\n    --- FAIL: TestB/sub (1.0s)\n--- FAIL: TestC (0.2s)\n--- FAIL: TestB (9s)\nFAIL\n"
	for _, chunk := range []string{out[:17], out[17:60], out[60:]} { // lines split across writes
		tap.Write([]byte(chunk))
	}
	failed, sign, ok := tap.verdict()
	if !ok || !slices.Equal(failed, []string{"TestB/sub", "TestC"}) || sign != "no output for 20s after" {
		t.Fatalf("verdict: %v %q %v", failed, sign, ok)
	}
	tap.Write([]byte("=== RUN   TestS\n--- SKIP: TestS (0.0s)\n    --- PASS: TestB/other (0.1s)\n--- PASS: TestZ (1s)"))
	if got := tap.passedTop(); !slices.Equal(got, []string{"TestA", "TestS", "TestZ"}) {
		t.Errorf("passedTop: %q, want the top-level passes and skips", got)
	}

	var clock failTap // a boot that went silent after its agent's first answer
	clock.Write([]byte("    snapshot_vm_test.go:183: starting minimal: setting the guest clock: the agent did not answer within 10s (stop and start the workspace)\n--- FAIL: TestR (23s)\n"))
	if failed, sign, ok := clock.verdict(); !ok || !slices.Equal(failed, []string{"TestR"}) || !strings.Contains(sign, "setting the guest clock") {
		t.Errorf("a boot silent at its clock call: %v %q %v, want it retryable", failed, sign, ok)
	}

	var plain failTap // a failure with no sign of a guest's death
	plain.Write([]byte("--- FAIL: TestD (0.0s)\n    d_test.go:9: got 1, want 2\n"))
	if _, _, ok := plain.verdict(); ok {
		t.Error("an ordinary failure was found retryable")
	}
	var many failTap
	for _, n := range []string{"TestE", "TestF", "TestG", "TestH"} {
		many.Write([]byte("Kernel panic - not syncing\n--- FAIL: " + n + " (1s)\n"))
	}
	if _, _, ok := many.verdict(); ok {
		t.Errorf("more than %d failed tests were found retryable", maxRetriedTests)
	}
}

func TestRetryArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"-test.paniconexit0", "-test.timeout=25m0s", "-test.count=1", "-test.v=true"}, true},
		{[]string{"-test.run=TestX"}, false},
		{[]string{"-test.run", "^$", "-test.bench=."}, false},
		{[]string{"-test.count=12"}, false},
	} {
		if got := retryableArgs(c.args); got != c.want {
			t.Errorf("retryableArgs(%q) = %v", c.args, got)
		}
	}
	got := rerunArgs([]string{"-test.v=true"}, []string{"TestB", "TestC"})
	if want := []string{"-test.v=true", "-test.run=^(TestB|TestC)$"}; !slices.Equal(got, want) {
		t.Errorf("rerunArgs: %q, want %q", got, want)
	}
	got = skipArgs([]string{"-test.v=true"}, []string{"TestA", "TestB.x"})
	if want := []string{"-test.v=true", "-test.skip=^(TestA|TestB\\.x)$"}; !slices.Equal(got, want) {
		t.Errorf("skipArgs: %q, want %q", got, want)
	}
	if got := skipArgs([]string{"-test.v=true"}, nil); !slices.Equal(got, []string{"-test.v=true"}) {
		t.Errorf("skipArgs of nothing: %q", got)
	}
	// A second rerun replaces the first's flags: the binary keeps only
	// the last of each.
	got = skipArgs(rerunArgs(skipArgs([]string{"-test.v=true"}, []string{"TestA"}), []string{"TestB"}), []string{"TestA", "TestC"})
	if want := []string{"-test.v=true", "-test.run=^(TestB)$", "-test.skip=^(TestA|TestC)$"}; !slices.Equal(got, want) {
		t.Errorf("flags of a second rerun: %q, want %q", got, want)
	}
	got = rerunArgs(nil, []string{"TestEnv/minimal/exec", "TestEnv/debian-12/exec", "TestRun/std.in"})
	if want := []string{"-test.run=^(TestEnv|TestRun)$/^(minimal|debian-12|std\\.in)$/^(exec)$"}; !slices.Equal(got, want) {
		t.Errorf("rerunArgs of subtests: %q, want %q", got, want)
	}
}

func TestRerunBudget(t *testing.T) {
	var b rerunBudget
	// Panics of L1 and dead guests are counted apart: spending one kind
	// leaves the other's whole.
	for i := 1; i <= maxPanicReruns; i++ {
		if ok, n, most := b.take(true); !ok || n != i || most != maxPanicReruns {
			t.Fatalf("L1 panic rerun %d: ok %v, n %d, most %d", i, ok, n, most)
		}
	}
	if ok, _, _ := b.take(true); ok {
		t.Errorf("L1 panic rerun %d allowed, over maxPanicReruns", maxPanicReruns+1)
	}
	for i := 1; i <= maxReruns; i++ {
		if ok, n, most := b.take(false); !ok || n != i || most != maxReruns {
			t.Fatalf("dead-guest rerun %d after the panics: ok %v, n %d, most %d", i, ok, n, most)
		}
	}
	if ok, _, _ := b.take(false); ok {
		t.Errorf("dead-guest rerun %d allowed, over maxReruns", maxReruns+1)
	}
}
