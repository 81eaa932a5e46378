package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/guest/initramfs"
)

// l1 describes one L1 run.
type l1 struct {
	assets  string
	m       *Manifest
	binary  string   // host path of the test binary
	args    []string // its arguments
	env     []string // its environment inside L1
	cwd     string   // its working directory, same path as on the host
	host    []string // host files and trees copied to the same path in L1
	nonce   string
	merged  bool // stdout and stderr share one port (they share a file on the host)
	console bool // echo the console live, with kernel messages
	mem     int
	smp     int
	cpu     string   // QEMU -cpu model; it must offer SVM (and NPT)
	kvmAMD  string   // kvm-amd.ko's module parameters in L1
	tap     *failTap // sees the binary's output, for retry.go
}

// Guest-side locations of the harness's own files.
const (
	guestBin     = "/vmtest/bin"
	guestModules = "/vmtest/modules"
)

func cmdExec(args []string) int {
	if len(args) == 0 {
		usage()
	}
	// QEMU gets Pdeathsig: keep the thread that starts it alive for good.
	runtime.LockOSThread()
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("vmtest received %v", s))
	}()
	code, err := runExec(ctx, args[0], args[1:])
	if err != nil {
		logf("%v", err)
		return 1
	}
	return code
}

func runExec(ctx context.Context, binary string, args []string) (int, error) {
	t0 := time.Now()
	verbose := os.Getenv("PYRO_VMTEST_VERBOSE") == "1"
	r := &l1{binary: binary, args: args, console: os.Getenv("PYRO_VMTEST_CONSOLE") == "1"}
	var err error
	if r.assets, err = assetsDir(); err != nil {
		return 0, err
	}
	if r.m, err = readManifest(r.assets); err != nil {
		return 0, fmt.Errorf("assets in %s are missing or incomplete (%v); run `vmtest assets --dir %s` first", r.assets, err, r.assets)
	}
	timeout, err := runTimeout(os.Getenv("PYRO_VMTEST_TIMEOUT"), args)
	if err != nil {
		return 0, err
	}
	if r.mem, err = envInt("PYRO_VMTEST_MEM", 4096); err != nil {
		return 0, err
	}
	if r.smp, err = envInt("PYRO_VMTEST_SMP", 2); err != nil {
		return 0, err
	}
	if r.cpu = os.Getenv("PYRO_VMTEST_CPU"); r.cpu == "" {
		r.cpu = "max"
	}
	r.kvmAMD = os.Getenv("PYRO_VMTEST_KVM_AMD")
	if r.cwd, err = os.Getwd(); err != nil {
		return 0, err
	}
	environ := os.Environ()
	r.env = guestEnv(environ)
	r.host = testPaths(environ)
	if fi, err := os.Stat(filepath.Join(r.cwd, "testdata")); err == nil && fi.IsDir() {
		r.host = append(r.host, filepath.Join(r.cwd, "testdata"))
	}
	libs, err := sharedLibs(binary)
	if err != nil {
		return 0, err
	}
	r.host = append(r.host, libs...)
	if os.Getenv("PYRO_VMTEST_QEMU") == "1" {
		q, err := qemuFiles()
		if err != nil {
			return 0, err
		}
		r.host = append(r.host, q...)
	}
	r.merged = sameFile(os.Stdout, os.Stderr)
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	r.nonce = "vmtest-" + hex.EncodeToString(nonce[:])

	removeStaleTemps()
	tmp, err := os.MkdirTemp("", fmt.Sprintf("vmtest-%d-", os.Getpid()))
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	cpio := filepath.Join(tmp, "l1.cpio")
	if err := r.writeInitramfs(cpio); err != nil {
		return 0, fmt.Errorf("building the L1 initramfs: %w", err)
	}
	if fi, err := os.Stat(cpio); err == nil && verbose {
		logf("L1 initramfs: %.1f MiB in %.2fs", float64(fi.Size())/(1<<20), time.Since(t0).Seconds())
	}
	r.tap = &failTap{}
	res, err := r.boot(ctx, cpio, timeout)
	retry := os.Getenv("PYRO_VMTEST_RETRY") != "0" && retryableArgs(r.args)
	if err == nil && verbose {
		logf("timings: QEMU start %.1fs, L1 boot to test start %.1fs, test %.1fs, total %.1fs",
			res.qemuStart.Sub(t0).Seconds(), res.testStart.Sub(res.qemuStart).Seconds(),
			res.testEnd.Sub(res.testStart).Seconds(), time.Since(t0).Seconds())
	}
	var skipped []string // top-level tests that passed before an L1 panic
	var budget rerunBudget
	for reran := false; ; reran = true {
		var death *l1Death
		panicked := errors.As(err, &death) && death.panicked
		if err != nil && !panicked {
			return 0, err
		}
		if err == nil && res.code == 0 {
			if reran {
				logf("RERUN PASSED: the tests rerun passed (after %d reruns for dead guests, %d for L1 panics); the failures above are counted as the harness's, not pyro's.",
					budget.deaths, budget.panics)
			}
			return 0, nil
		}
		var failed []string
		var sign string
		if !panicked {
			var ok bool
			if failed, sign, ok = r.tap.verdict(); !ok || !retry {
				if reran {
					logf("RERUN FAILED: %s failed again, without a sign of the emulator.", strings.Join(failed, ", "))
				}
				return res.code, nil
			}
		}
		ok, n, most := budget.take(panicked)
		if !retry || !ok {
			if err != nil {
				return 0, err
			}
			if reran {
				logf("RERUN FAILED: the tests rerun failed again.")
			}
			return res.code, nil
		}
		if panicked {
			// L1's own kernel died of the emulator mid-run: the
			// binary never said which test it was in. Rerun
			// every test that had not passed.
			skipped = append(skipped, r.tap.passedTop()...)
			logf("%v", err)
			logf("RERUN %d of at most %d for L1 panics: L1's own kernel panicked mid-run (here, the nested emulator's doing: see qemu.go). "+
				"Rerunning in a fresh L1 every test that had not passed (%d had); PYRO_VMTEST_RETRY=0 turns reruns off.",
				n, most, len(skipped))
			r.args = skipArgs(r.args, skipped)
		} else {
			logf("RERUN %d of at most %d for dead guests: %s failed with a guest that died or went silent (%q): the nested emulator does that now and then. "+
				"Rerunning %s in a fresh L1; a failure without such a sign fails the run at once (PYRO_VMTEST_RETRY=0 turns reruns off).",
				n, most, strings.Join(failed, ", "), sign, strings.Join(failed, ", "))
			r.args = rerunArgs(r.args, failed)
		}
		r.tap = &failTap{}
		if err := r.writeInitramfs(cpio); err != nil {
			return 0, fmt.Errorf("building the L1 initramfs: %w", err)
		}
		res, err = r.boot(ctx, cpio, timeout)
	}
}

// l1Death is boot's error for an L1 that stopped before the test binary
// reported its exit status.
type l1Death struct {
	msg      string
	panicked bool // L1's console shows its kernel's panic
}

func (e *l1Death) Error() string { return e.msg }

// removeStaleTemps removes the temporary directories of vmtest runs that were
// killed before they could clean up (their names carry the owner's pid).
func removeStaleTemps() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vmtest-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.Split(filepath.Base(d), "-")[1])
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
}

// assetsDir is PYRO_VMTEST_ASSETS, or "assets" next to the executable.
func assetsDir() (string, error) {
	if d := os.Getenv("PYRO_VMTEST_ASSETS"); d != "" {
		return filepath.Abs(d)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(exe), "assets"), nil
}

// sameFile reports whether a and b are the same open file (go test hands a
// test binary one pipe for both stdout and stderr).
func sameFile(a, b *os.File) bool {
	fa, err1 := a.Stat()
	fb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// sharedLibs returns the libraries and dynamic loader a dynamically linked
// binary needs (none for a static one, such as a CGO_ENABLED=0 test binary).
func sharedLibs(binary string) ([]string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, fmt.Errorf("test binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			out, err := exec.Command("ldd", binary).Output()
			if err != nil {
				return nil, fmt.Errorf("ldd %s: %v (build it with CGO_ENABLED=0 to avoid shared libraries)", binary, err)
			}
			return parseLdd(out)
		}
	}
	return nil, nil
}

// parseLdd extracts the absolute paths from ldd output.
func parseLdd(out []byte) ([]string, error) {
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "=> not found") {
			return nil, fmt.Errorf("missing shared library: %s", line)
		}
		if _, rhs, ok := strings.Cut(line, "=> "); ok {
			line = rhs
		}
		if f := strings.Fields(line); len(f) > 0 && filepath.IsAbs(f[0]) {
			paths = append(paths, f[0])
		}
	}
	return paths, nil
}

// qemuFiles lists what `qemu-system-x86_64 -accel kvm` needs inside L1: the
// binary, its libraries (with the loader) and the firmware directories.
func qemuFiles() ([]string, error) {
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("PYRO_VMTEST_QEMU=1: %v (apt-get install qemu-system-x86)", err)
	}
	if q, err = filepath.Abs(q); err != nil {
		return nil, err
	}
	libs, err := sharedLibs(q)
	if err != nil {
		return nil, err
	}
	files := append([]string{q}, libs...)
	for _, d := range []string{"/usr/share/qemu", "/usr/share/seabios"} {
		if _, err := os.Stat(d); err == nil {
			files = append(files, d)
		}
	}
	return files, nil
}

// writeInitramfs writes L1's initramfs to path.
func (r *l1) writeInitramfs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := initramfs.NewWriter(bw)
	for _, d := range []string{"/proc", "/sys", "/dev", "/etc", "/vmtest"} {
		_ = w.Dir(d, 0o755)
	}
	_ = w.Dir("/root", 0o700)
	_ = w.Dir("/tmp", 0o1777) // rootfs is a tmpfs: /tmp needs no mount of its own
	_ = w.CharDev("/dev/console", 0o600, 5, 1)
	_ = w.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	_ = w.File("/etc/group", 0o644, []byte("root:x:0:\n"))
	_ = w.File("/etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n"))

	// Host files at their own paths: parents before children, each once.
	sort.Strings(r.host)
	var added []string
	for _, p := range r.host {
		if underAny(p, added) || w.Has(p) {
			continue
		}
		if underAny(p, []string{"/proc", "/sys", "/dev", "/vmtest"}) {
			return fmt.Errorf("%s: cannot be placed in L1 at the same path", p)
		}
		src, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		if err := w.AddHost(p, src); err != nil {
			return err
		}
		added = append(added, p)
	}
	if err := w.Dir(r.cwd, 0o755); err != nil {
		return err
	}
	for _, a := range r.args {
		// go test -cover names a host directory; let the binary write there (in L1).
		if d, ok := strings.CutPrefix(a, "-test.gocoverdir="); ok && filepath.IsAbs(d) {
			if err := w.Dir(d, 0o755); err != nil {
				return err
			}
		}
	}

	bb := filepath.Join(r.assets, r.m.Busybox)
	if err := addFile(w, "/bin/busybox", bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %v", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if !w.Has(a) {
			if err := w.Symlink(a, "/bin/busybox"); err != nil {
				return err
			}
		}
	}
	for _, mod := range r.m.KVMModules {
		if err := addFile(w, guestModules+"/"+filepath.Base(mod), filepath.Join(r.assets, mod), 0o644); err != nil {
			return err
		}
	}
	if err := addFile(w, r.guestBinary(), r.binary, 0o755); err != nil {
		return err
	}
	if err := w.File("/init", 0o755, []byte(r.initScript())); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func (r *l1) guestBinary() string { return guestBin + "/" + filepath.Base(r.binary) }

func addFile(w *initramfs.Writer, dst, src string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.FileFrom(dst, mode, fi.Size(), f)
}

// initScript is L1's /init: set up KVM, run the binary between markers on its
// own serial ports, power off.
func (r *l1) initScript() string {
	errPort := "/dev/ttyS2"
	if r.merged {
		errPort = "/dev/ttyS1"
	}
	var cmd []string
	cmd = append(cmd, "env", "-i")
	for _, kv := range r.env {
		cmd = append(cmd, shQuote(kv))
	}
	cmd = append(cmd, shQuote(r.guestBinary()))
	for _, a := range r.args {
		cmd = append(cmd, shQuote(a))
	}
	var mods []string
	for _, m := range r.m.KVMModules {
		arg := guestModules + "/" + filepath.Base(m)
		if filepath.Base(m) == "kvm-amd.ko" && r.kvmAMD != "" {
			arg += " " + r.kvmAMD
		}
		mods = append(mods, shQuote(arg))
	}
	return fmt.Sprintf(`#!/bin/busybox sh
# L1 /init, written by cmd/vmtest: load KVM, run one test binary, power off.
export PATH=%[1]s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
N=%[2]s
out=/dev/ttyS1
err=%[3]s
stty -F $out raw -echo
stty -F $err raw -echo
fail() {
	echo "vmtest: L1 setup failed: $*" >/dev/console
	dmesg | tail -n 20 >/dev/console
	echo "vmtest: L1 setup failed: $*" >$err
	echo "$N setup-failed" >$out
	[ $err = $out ] || echo "$N end" >$err
	poweroff -f
}
for m in %[4]s; do
	insmod $m || fail "insmod $m failed"
done
[ -c /dev/kvm ] || fail "/dev/kvm is missing after loading kvm-amd: does L1's CPU lack SVM?"
cd %[5]s || fail "cannot enter the working directory"
echo "vmtest: KVM ready; running" %[7]s >/dev/console
echo "$N start" >$out
%[6]s </dev/null >$out 2>$err
rc=$?
echo "vmtest: test binary exited with status $rc; powering off" >/dev/console
echo "$N exit=$rc" >$out
[ $err = $out ] || echo "$N end" >$err
poweroff -f
`, guestPATH, shQuote(r.nonce), errPort, strings.Join(mods, " "), shQuote(r.cwd), strings.Join(cmd, " "),
		shQuote(filepath.Base(r.binary)))
}

// qemuArgs returns the QEMU command line for L1. The console, the binary's
// stdout and (unless merged) its stderr are serial ports 0, 1 and 2, written
// to the inherited file descriptors 3, 4 and 5.
func (r *l1) qemuArgs(cpio string) []string {
	// Transparent huge pages off: an L2 guest streaming output died
	// (triple fault, or a page-fault loop on valid kernel text) within
	// its first two 10 MiB streams in three tries of three with them,
	// and after eleven with them off; weak evidence, but they buy a test
	// VM nothing.
	appendLine := "console=ttyS0 panic=-1 transparent_hugepage=never quiet loglevel=4"
	if r.console {
		appendLine = "console=ttyS0 panic=-1 transparent_hugepage=never loglevel=7"
	}
	if extra := os.Getenv("PYRO_VMTEST_APPEND"); extra != "" {
		appendLine += " " + extra
	}
	args := []string{
		"-accel", "tcg", "-M", "q35", "-cpu", r.cpu,
		"-smp", fmt.Sprint(r.smp), "-m", fmt.Sprint(r.mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", filepath.Join(r.assets, r.m.Kernel), "-initrd", cpio,
		"-append", appendLine,
	}
	ports := 3
	if r.merged {
		ports = 2
	}
	for i := 0; i < ports; i++ {
		args = append(args,
			"-chardev", fmt.Sprintf("file,id=s%d,path=/dev/fd/%d", i, 3+i),
			"-serial", fmt.Sprintf("chardev:s%d", i))
	}
	return args
}

// result is how an L1 run ended.
type result struct {
	code                          int
	qemuStart, testStart, testEnd time.Time
}

// boot runs QEMU and relays the ports until L1 powers off, the timeout
// passes or ctx is cancelled.
func (r *l1) boot(ctx context.Context, cpio string, timeout time.Duration) (*result, error) {
	qemu, pre, err := harnessQEMU(ctx, r.assets)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(qemu, append(pre, r.qemuArgs(cpio)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	qlog := newTail(20)
	cmd.Stdout, cmd.Stderr = qlog, qlog
	ports := 3
	if r.merged {
		ports = 2
	}
	var readers []*os.File
	for i := 0; i < ports; i++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer pr.Close()
		defer pw.Close()
		readers = append(readers, pr)
		cmd.ExtraFiles = append(cmd.ExtraFiles, pw)
	}
	res := &result{qemuStart: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}

	console := newTail(40)
	consoleDone := make(chan struct{})
	var l1Panic string // L1's kernel's panic line; read after consoleDone
	go func() {
		defer close(consoleDone)
		sc := bufio.NewScanner(readers[0])
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if l1Panic == "" && strings.Contains(line, "Kernel panic - not syncing") {
				l1Panic = line
			}
			fmt.Fprintln(console, line)
			if r.console {
				fmt.Fprintf(os.Stderr, "L1| %s\n", line)
			}
		}
	}()
	type streamEnd struct {
		m   marker
		err error
	}
	// The stdout port reports its markers as they arrive; the loop below
	// needs the end marker before L1 has finished powering off.
	markers := make(chan string, 4)
	outDone := make(chan streamEnd, 1)
	go func() {
		m, err := copyStream(readers[1], r.stdout(), r.nonce, func(s string) {
			select {
			case markers <- s:
			default:
			}
		})
		outDone <- streamEnd{m, err}
	}()
	errDone := make(chan streamEnd, 1)
	if r.merged {
		errDone <- streamEnd{marker{seen: true, status: "end"}, nil}
	} else {
		go func() {
			m, err := copyStream(readers[2], r.stderr(), r.nonce, nil)
			errDone <- streamEnd{m, err}
		}()
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var reason string
	var waitErr error
	ended, exited := false, false
	for !exited && reason == "" {
		select {
		case waitErr = <-waitDone:
			exited = true
		case m := <-markers:
			if m == "start" {
				res.testStart = time.Now()
				break
			}
			// The binary has finished; give L1 a moment to power off.
			ended = true
			res.testEnd = time.Now()
			timer.Reset(15 * time.Second)
		case <-timer.C:
			if ended {
				reason = "L1 did not power off after the test finished"
			} else {
				reason = fmt.Sprintf("timeout: L1 did not finish within %v (PYRO_VMTEST_TIMEOUT, or -test.timeout + %v)", timeout, testTimeoutSlack)
			}
		case <-ctx.Done():
			reason = "interrupted: " + context.Cause(ctx).Error()
		}
	}
	if !exited {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		waitErr = <-waitDone
	}
	// QEMU is gone, so the ports reach EOF.
	out := <-outDone
	e := <-errDone
	<-consoleDone
	if res.testEnd.IsZero() {
		res.testEnd = time.Now()
	}
	if res.testStart.IsZero() {
		res.testStart = res.testEnd
	}

	fail := func(why string) (*result, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s\n--- last L1 console lines ---\n%s", why, console)
		if q := qlog.String(); q != "" {
			fmt.Fprintf(&b, "--- QEMU output ---\n%s", q)
		}
		b.WriteString("--- end (set PYRO_VMTEST_CONSOLE=1 for the whole console) ---")
		return nil, errors.New(b.String())
	}
	switch {
	case out.m.seen && out.m.status == "setup-failed":
		return fail("L1 could not set up KVM")
	case out.m.seen && strings.HasPrefix(out.m.status, "exit="):
		if reason != "" && !ended {
			return fail(reason)
		}
		if reason != "" {
			logf("warning: %s; killed QEMU", reason)
		}
		var code int
		if _, err := fmt.Sscanf(out.m.status, "exit=%d", &code); err != nil {
			return fail(fmt.Sprintf("bad end marker %q", out.m.status))
		}
		if !e.m.seen {
			logf("warning: the stderr port ended without its marker; stderr may be incomplete")
		}
		if out.err != nil {
			logf("warning: writing the test's output: %v", out.err)
		}
		res.code = code
		return res, nil
	case reason != "":
		return fail(reason)
	default:
		_, err := fail(fmt.Sprintf("L1 stopped before the test binary reported its exit status (QEMU: %v); "+
			"a kernel panic, the binary killing L1, or too little memory (PYRO_VMTEST_MEM) are the usual causes", exitDesc(waitErr)))
		msg := err.Error()
		if l1Panic != "" {
			msg = "L1's kernel panicked: " + strings.TrimSpace(l1Panic) + "\n" + msg
		}
		return nil, &l1Death{msg: msg, panicked: l1Panic != ""}
	}
}

func exitDesc(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

// stdout and stderr are where the binary's output goes: the host's, with
// the failure tap watching when there is one.
func (r *l1) stdout() io.Writer {
	if r.tap == nil {
		return os.Stdout
	}
	return io.MultiWriter(os.Stdout, r.tap)
}

func (r *l1) stderr() io.Writer {
	if r.tap == nil {
		return os.Stderr
	}
	return io.MultiWriter(os.Stderr, r.tap)
}
