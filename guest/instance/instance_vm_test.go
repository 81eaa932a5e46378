package instance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// The end-to-end tier: real environments (built by make envs; the harness
// copies them into its VM at the same paths) booted by the real VMM, driven
// through the real agent.
//
// PYRO_TEST_ENV_MINIMAL and PYRO_TEST_ENV_DEBIAN name the built
// environments' directories (CACHE/envs/NAME).

var testEnvs = []struct{ name, variable string }{
	{"minimal", "PYRO_TEST_ENV_MINIMAL"},
	{"debian-12", "PYRO_TEST_ENV_DEBIAN"},
}

func loadEnv(t *testing.T, name, variable string) *env.Env {
	t.Helper()
	dir := kvmtest.Path(t, variable)
	e, err := env.Load(filepath.Dir(filepath.Dir(dir)), name)
	if err != nil {
		t.Fatalf("%s=%s: %v", variable, dir, err)
	}
	return e
}

func start(t *testing.T, e *env.Env, d *disk.Stack) *VM {
	t.Helper()
	console := new(countingBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Env: e, Disk: d, MemMiB: 384, Console: console, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("starting %s: %v\nconsole:\n%s", e.Name, err, console.String())
	}
	t.Logf("%s: agent ready after %v", e.Name, vm.Ready)
	consoles.Store(vm, console)
	// The guest boots quiet; let its kernel's errors and warnings (hung
	// tasks, an interrupt nobody cared for) reach the console, which a
	// stalled exec then shows.
	mustSh(t, vm, "echo 5 >/proc/sys/kernel/printk")
	t.Cleanup(func() {
		consoles.Delete(vm)
		vm.Close()
		// A rescue is a lost notification: the watchdog hid a bug.
		if n := vm.vs.Rescues(); n > 0 {
			t.Errorf("the vsock watchdog had to rescue %d stalled queues (see the log)\n%s", n, vm.DebugState())
		}
	})
	return vm
}

// testLogger sends the VM's log to t.Log until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() { // registered first, so it runs after the VM's
		w.mu.Lock()
		w.t = nil
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, nil))
}

type testLogWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

type execOut struct {
	proto.ExecResult
	stdout, stderr string
}

func run(t *testing.T, vm *VM, req proto.ExecRequest) execOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var o, e countingBuffer
	type result struct {
		res proto.ExecResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := vm.Agent.Exec(ctx, req, &o, &e)
		done <- result{res, err}
	}()
	// The device's watchdog nudges a stalled stream itself; if output
	// still stops, describe the device once, so that the failure says
	// where it stuck.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	last, still := int64(-1), 0
	for {
		select {
		case r := <-done:
			if r.err != nil {
				time.Sleep(3 * time.Second) // the guest's console drains slowly
				t.Fatalf("exec %q%q: %v\n%s\nconsole:\n%s", req.Argv, req.Shell, r.err, vm.DebugState(), consoleTail(vm))
			}
			return execOut{r.res, o.String(), e.String()}
		case <-tick.C:
		}
		n := o.Len() + e.Len()
		if n != last {
			last, still = n, 0
			continue
		}
		if still++; still == 4 {
			state := vm.DebugState()
			time.Sleep(time.Second)
			t.Logf("exec %q%q: no output for 20s after %d bytes\n%s\na second later:\n%s\nconsole:\n%s\nguest processes:\n%s",
				req.Argv, req.Shell, n, state, vm.m.DebugVCPUs(), consoleTail(vm), guestProcesses(vm))
		}
	}
}

// guestProcesses asks the agent, on a stream of its own, what every guest
// process is waiting in (its kernel stack where the kernel shows it), for
// a stall report. It gives up after 30 seconds.
func guestProcesses(vm *VM) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	script := `for p in /proc/[0-9]*; do
  echo "== ${p#/proc/} $(cat $p/comm) state=$(cut -d' ' -f3 $p/stat) wchan=$(cat $p/wchan)"
  cat $p/stack 2>/dev/null | head -12
done`
	if _, err := vm.Agent.Exec(ctx, proto.ExecRequest{Shell: script}, &o, &e); err != nil {
		return fmt.Sprintf("(the agent did not answer a second exec: %v)", err)
	}
	return o.String() + e.String()
}

// consoles holds each running test VM's console (*countingBuffer).
var consoles sync.Map

// consoleTail returns the last lines of vm's console.
func consoleTail(vm *VM) string {
	c, ok := consoles.Load(vm)
	if !ok {
		return "(not kept)"
	}
	lines := strings.Split(strings.TrimRight(c.(*countingBuffer).String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-150):], "\n")
}

// countingBuffer is a bytes.Buffer safe to read (Len, String) while
// another goroutine writes: exec output, a VM's console.
type countingBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *countingBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *countingBuffer) Len() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.b.Len())
}

func (c *countingBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func sh(t *testing.T, vm *VM, script string) execOut {
	t.Helper()
	r := run(t, vm, proto.ExecRequest{Shell: script})
	return r
}

// mustSh runs a script that must succeed and returns its stdout.
func mustSh(t *testing.T, vm *VM, script string) string {
	t.Helper()
	r := sh(t, vm, script)
	if r.ExitCode != 0 {
		t.Fatalf("%q: exit %d, stderr %q", script, r.ExitCode, r.stderr)
	}
	return r.stdout
}

func newDisk(t *testing.T, e *env.Env) *disk.Stack {
	t.Helper()
	fi, err := os.Stat(e.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.Create(filepath.Join(t.TempDir(), "disk"), e.Rootfs, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestEnvironmentsEndToEnd(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	for _, te := range testEnvs {
		t.Run(te.name, func(t *testing.T) {
			e := loadEnv(t, te.name, te.variable)
			t.Run("exec", func(t *testing.T) { testExec(t, e) })
			t.Run("isolation", func(t *testing.T) { testIsolation(t, e) })
			t.Run("layers", func(t *testing.T) { testLayers(t, e) })
			if te.name == "minimal" { // one is enough: the agent's init is the same
				t.Run("no-root", func(t *testing.T) { testNoRoot(t, e) })
			}
			// The base image is never written, whatever the VMs did.
			sum, err := fileSHA256(e.Rootfs)
			if err != nil {
				t.Fatal(err)
			}
			if want := e.Manifest.Files["rootfs.ext4"].SHA256; sum != want {
				t.Fatalf("base image %s changed: sha256 %s, manifest says %s", e.Rootfs, sum, want)
			}
		})
	}
}

func testExec(t *testing.T, e *env.Env) {
	vm := start(t, e, newDisk(t, e))

	if r := run(t, vm, proto.ExecRequest{Argv: []string{"echo", "hello", "world"}}); r.ExitCode != 0 || r.stdout != "hello world\n" {
		t.Errorf("echo: %+v", r)
	}
	if r := sh(t, vm, "echo out; echo err >&2; exit 7"); r.ExitCode != 7 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exit 7: %+v", r)
	}
	if r := sh(t, vm, "kill -KILL $$"); r.ExitCode != -1 || r.Signal != "SIGKILL" {
		t.Errorf("signal-killed command: %+v", r)
	}
	in := strings.Repeat("stdin passes through\n", 5000)
	if r := run(t, vm, proto.ExecRequest{Argv: []string{"cat"}, Stdin: strings.NewReader(in)}); r.ExitCode != 0 || r.stdout != in {
		t.Errorf("stdin: exit %d, %d bytes back of %d", r.ExitCode, len(r.stdout), len(in))
	}
	if r := run(t, vm, proto.ExecRequest{Shell: "echo $GREETING; pwd", Env: map[string]string{"GREETING": "hi"}, Cwd: "/tmp"}); r.stdout != "hi\n/tmp\n" {
		t.Errorf("env and cwd: %+v", r)
	}

	// 10 MiB of output arrives intact. cat writes it in large chunks: a
	// writer of 1 KiB pieces makes ten thousand packets and as many
	// interrupts, and the nested harness's emulator now and then kills
	// an L2 guest amid such a storm (see cmd/vmtest).
	big := run(t, vm, proto.ExecRequest{Shell: "head -c 10485760 /dev/urandom >/tmp/big && cat /tmp/big"})
	if big.ExitCode != 0 || len(big.stdout) != 10<<20 {
		t.Fatalf("10 MiB output: exit %d, %d bytes", big.ExitCode, len(big.stdout))
	}
	sum := sha256.Sum256([]byte(big.stdout))
	guest := strings.Fields(mustSh(t, vm, "sha256sum /tmp/big"))
	if len(guest) == 0 || guest[0] != hex.EncodeToString(sum[:]) {
		t.Fatalf("10 MiB output: host sha256 %x, guest %q", sum, guest)
	}

	// A timeout kills the command and its children.
	start := time.Now()
	r := run(t, vm, proto.ExecRequest{Shell: "sleep 1000 & echo $! >/tmp/child; sleep 1000", Timeout: 2 * time.Second})
	if !r.TimedOut {
		t.Fatalf("timeout: not reported: %+v", r)
	}
	t.Logf("timed-out exec returned after %v", time.Since(start))
	if r := sh(t, vm, "kill -0 $(cat /tmp/child)"); r.ExitCode == 0 {
		t.Fatalf("the timed-out command's child still runs")
	}

	// Many execs in one VM.
	for i := range 50 {
		r := run(t, vm, proto.ExecRequest{Argv: []string{"echo", fmt.Sprint(i)}})
		if r.ExitCode != 0 || r.stdout != fmt.Sprintf("%d\n", i) {
			t.Fatalf("exec %d of 50: %+v", i, r)
		}
	}
	shutdown(t, vm)
}

// Two VMs of one environment run at once over the same base image, and
// neither sees the other's writes.
func testIsolation(t *testing.T, e *env.Env) {
	a := start(t, e, newDisk(t, e))
	b := start(t, e, newDisk(t, e))
	mustSh(t, a, "echo a >/root/a-only && sync")
	mustSh(t, b, "echo b >/root/b-only && sync")
	if got := mustSh(t, a, "ls /root"); strings.Contains(got, "b-only") || !strings.Contains(got, "a-only") {
		t.Errorf("VM a sees %q", got)
	}
	if got := mustSh(t, b, "ls /root"); strings.Contains(got, "a-only") || !strings.Contains(got, "b-only") {
		t.Errorf("VM b sees %q", got)
	}
	shutdown(t, a)
	shutdown(t, b)
}

// Writes persist across a guest reboot on the same layer, and vanish when
// the stack is cut back below the layer that holds them.
func testLayers(t *testing.T, e *env.Env) {
	d := newDisk(t, e)
	vm := start(t, e, d)
	mustSh(t, vm, "echo kept >/root/persist && sync")
	// A guest-initiated reboot: the VM stops, the disk stays.
	// The stream ends with the VM, before any answer, and the error says
	// why.
	_, err := vm.Agent.Exec(t.Context(), proto.ExecRequest{Shell: "echo b >/proc/sysrq-trigger"}, io.Discard, io.Discard)
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "reboot") {
		t.Errorf("exec cut short by a reboot: %v; want ErrStopped naming the reboot", err)
	}
	select {
	case <-vm.Done():
	case <-time.After(time.Minute):
		t.Fatal("the guest did not reboot")
	}
	if res, err := vm.Result(); err != nil || res.Reason != vmm.StopReboot {
		t.Fatalf("after reboot: %+v, %v", res, err)
	}
	vm.Close()

	vm = start(t, e, d)
	if got := mustSh(t, vm, "cat /root/persist"); got != "kept\n" {
		t.Fatalf("after reboot, /root/persist reads %q", got)
	}
	shutdown(t, vm)
	snap, err := d.Freeze("before")
	if err != nil {
		t.Fatal(err)
	}

	vm = start(t, e, d)
	mustSh(t, vm, "echo gone >/root/later && rm /root/persist && sync")
	shutdown(t, vm)
	if err := d.CutBack(snap.ID); err != nil {
		t.Fatal(err)
	}

	vm = start(t, e, d)
	if got := mustSh(t, vm, "cat /root/persist; ls /root"); got != "kept\npersist\n" {
		t.Fatalf("after cut back, /root holds %q; want only persist", got)
	}
	shutdown(t, vm)
}

func shutdown(t *testing.T, vm *VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if res, err := vm.Result(); err != nil || res.Reason != vmm.StopPoweroff {
		t.Fatalf("after shutdown: %+v, %v", res, err)
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// testNoRoot boots a blank disk: the agent's init cannot mount a root,
// says so and powers off, and Start reports that, not the vsock device
// closing under its ping.
func testNoRoot(t *testing.T, e *env.Env) {
	blank := filepath.Join(t.TempDir(), "blank")
	if err := os.WriteFile(blank, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blank, 64<<20); err != nil {
		t.Fatal(err)
	}
	d, err := disk.Create(filepath.Join(t.TempDir(), "disk"), blank, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Env: e, Disk: d, MemMiB: 256, Logger: testLogger(t)})
	if err == nil {
		vm.Close()
		t.Fatal("Start booted a blank disk")
	}
	t.Logf("Start: %v", err)
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Start: %v\nwant an error that says the VM stopped", err)
	}
	for _, want := range []string{"before its agent was ready", proto.FatalMarker, "mounting the root disk"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start's error lacks %q:\n%v", want, err)
		}
	}
}

// TestAgentRestored calls the agent's restored twice on one booted
// guest, as the host does after each restore of a memory snapshot: each
// time /proc shows the new boot id through exactly one read-only bind
// mount, and the host name, machine id and clock are the ones given.
// Refused arguments change nothing, and the agent goes on answering.
func TestAgentRestored(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	e := loadEnv(t, "minimal", "PYRO_TEST_ENV_MINIMAL")
	vm := start(t, e, newDisk(t, e))
	// What restored changes, one line each: the boot id, host name and
	// machine id; the boot id's mount options and how many mounts it
	// has; the year; and whether root can write the boot id.
	const state = `cat /proc/sys/kernel/random/boot_id /proc/sys/kernel/hostname /etc/machine-id
grep ' /proc/sys/kernel/random/boot_id ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1
echo "mounts $(grep -c ' /proc/sys/kernel/random/boot_id ' /proc/self/mountinfo)"
date -u +%Y
(echo x >/proc/sys/kernel/random/boot_id) 2>/dev/null && echo writable || echo read-only`
	mustSh(t, vm, "echo 0123456789abcdef0123456789abcdef >/etc/machine-id")
	own := mustSh(t, vm, state)
	if f := strings.Fields(own); len(f) < 5 || len(f[0]) != 36 || f[3] != "mounts" || f[4] != "0" {
		t.Fatalf("before restored the guest shows:\n%s", own)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, a := range []proto.RestoredArgs{
		{TimeNs: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano(), Entropy: bytes.Repeat([]byte{1, 2, 3, 4}, 16),
			Hostname: "restored-one", BootID: "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10", MachineID: "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8"},
		{TimeNs: time.Date(2032, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano(), Entropy: bytes.Repeat([]byte{9, 8, 7, 6}, 128),
			Hostname: "restored-two", BootID: "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", MachineID: "ffeeddccbbaa99887766554433221100"},
	} {
		res, err := vm.Agent.Restored(ctx, a)
		if err != nil {
			t.Fatalf("restored %d: %v\nconsole:\n%s", i, err, consoleTail(vm))
		}
		// The test kernel is a current Debian one: it reseeds on request.
		if !res.Reseeded || res.BootID != a.BootID {
			t.Errorf("restored %d: %+v, want reseeded with boot id %s", i, res, a.BootID)
		}
		want := fmt.Sprintf("%s\n%s\n%s\nro\nmounts 1\n%d\nread-only\n", a.BootID, a.Hostname, a.MachineID, 2031+i)
		if got := mustSh(t, vm, state); got != want {
			t.Errorf("after restored %d the guest shows:\n%s\nwant:\n%s", i, got, want)
		}
	}

	bad := proto.RestoredArgs{TimeNs: 1, Entropy: make([]byte, 64), Hostname: "bad", BootID: "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10", MachineID: "x"}
	if _, err := vm.Agent.Restored(ctx, bad); err == nil || !strings.Contains(err.Error(), "machine_id") {
		t.Errorf("restored with a bad machine id: %v", err)
	}
	if got := mustSh(t, vm, "cat /proc/sys/kernel/random/boot_id /proc/sys/kernel/hostname; date -u +%Y"); got != "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\nrestored-two\n2032\n" {
		t.Errorf("after a refused restored: %q", got)
	}
	if _, err := vm.Agent.Ping(ctx); err != nil {
		t.Fatalf("the agent after restored: %v", err)
	}
	shutdown(t, vm)
}
