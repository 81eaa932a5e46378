package agent

// The PID 1 test: this package's own test binary boots as /init of the
// minimal environment under QEMU, runs Main, and drives its agent over
// vsock (the vsock_loopback transport, since QEMU's vhost-vsock needs a
// host device) from a goroutine in the same process. It checks what only
// PID 1 in a VM can: mounts, module loading, switch root, hostname, lo,
// the reaper, freeze/thaw, the clock, poweroff, and the fatal path.
//
//	CGO_ENABLED=0 PYRO_TEST_AGENT_QEMU=1 go test -run TestPID1UnderQEMU ./guest/agent/
//
// It builds the environment (Debian packages through apt) in
// $TMPDIR/pyro-agent-qemu-cache, not the user's cache, and runs QEMU with
// TCG: nested KVM is not needed.

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/guest/initramfs"
)

const selftestModule = "/lib/modules/selftest/vsock_loopback.ko"

func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		ko, err := os.ReadFile(selftestModule) // before Main frees the initramfs
		go pid1SelfTest(ko, err)
		Version = "selftest"
		Main()
	}
	os.Exit(m.Run())
}

func TestPID1UnderQEMU(t *testing.T) {
	if os.Getenv("PYRO_TEST_AGENT_QEMU") != "1" {
		t.Skip("set PYRO_TEST_AGENT_QEMU=1 (with CGO_ENABLED=0; needs apt, mkfs.ext4 and qemu-system-x86_64)")
	}
	self, _ := os.Executable()
	if f, err := elf.Open(self); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Fatal("the test binary is dynamically linked and cannot be /init: run with CGO_ENABLED=0")
			}
		}
		f.Close()
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	cache := filepath.Join(os.TempDir(), "pyro-agent-qemu-cache")
	e, err := env.Build(context.Background(), env.BuildOptions{CacheRoot: cache, Name: "minimal", AgentBinary: self})
	if err != nil {
		t.Fatal(err)
	}
	// vsock_loopback.ko from the same kernel package, as an extra cpio.
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", "linux-image-"+e.Manifest.Kernel.Release+"_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("no kernel package for %s in %s/debs", e.Manifest.Kernel.Release, cache)
	}
	dir := t.TempDir()
	if out, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards '*/vsock_loopback.ko'`, "sh", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("extracting vsock_loopback.ko: %v\n%s", err, out)
	}
	kos, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*", "kernel", "net", "vmw_vsock", "vsock_loopback.ko"))
	if len(kos) != 1 {
		t.Fatal("vsock_loopback.ko not in the kernel package")
	}
	ko, _ := os.ReadFile(kos[0])
	initrd, _ := os.ReadFile(e.Initrd)
	var extra bytes.Buffer
	w := initramfs.NewWriter(&extra)
	w.File(selftestModule, 0o644, ko)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cpio := filepath.Join(dir, "boot.cpio")
	os.WriteFile(cpio, append(initrd, extra.Bytes()...), 0o644)

	boot := func(cmdline string) string {
		var out []byte
		// TCG now and then hangs early in the kernel's boot: retry those.
		for attempt := 1; attempt <= 4; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			out, _ = exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "microvm,acpi=on,pit=on,pic=on,rtc=on",
				"-cpu", "max", "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
				"-no-reboot", "-serial", "stdio", "-kernel", e.Kernel, "-initrd", cpio,
				"-append", "console=ttyS0 panic=-1 quiet lpj=1671168 "+cmdline,
				"-drive", "id=d,file="+e.Rootfs+",format=raw,if=none,snapshot=on",
				"-device", "virtio-blk-device,drive=d").CombinedOutput()
			cancel()
			if bytes.Contains(out, []byte("pyro-agent")) {
				break
			}
		}
		return string(out)
	}

	out := boot("pyro.root=/dev/vda pyro.hostname=selftest-ws")
	if !strings.Contains(out, proto.ReadyMarker) || !strings.Contains(out, "SELFTEST-DONE failures=0") ||
		strings.Contains(out, "SELFTEST FAIL") || !strings.Contains(out, "reboot: Power down") {
		t.Errorf("PID 1 self-test failed; console:\n%s", out)
	} else {
		t.Logf("console:\n%s", out)
	}

	out = boot("pyro.root=/dev/vdz pyro.root_wait=0.5")
	if !strings.Contains(out, proto.FatalMarker+" root device /dev/vdz") || !strings.Contains(out, "block devices (/sys/block): vda") ||
		!strings.Contains(out, "reboot: Power down") {
		t.Errorf("missing root device: want a fatal message and poweroff; console:\n%s", out)
	}
}

type selftestConn struct{ *os.File }

func (selftestConn) LocalAddr() net.Addr  { return VsockAddr{} }
func (selftestConn) RemoteAddr() net.Addr { return VsockAddr{} }

// pid1SelfTest runs in the PID 1 test binary next to Main: it waits for
// the switch to the root disk, loads vsock_loopback, and checks the agent
// through a Client. It prints SELFTEST lines and powers the VM off.
func pid1SelfTest(ko []byte, koErr error) {
	failures := 0
	check := func(ok bool, format string, args ...any) {
		status := "ok  "
		if !ok {
			status = "FAIL"
			failures++
		}
		fmt.Fprintf(os.Stderr, "SELFTEST %s "+format+"\n", append([]any{status}, args...)...)
	}
	if koErr != nil {
		check(false, "reading %s: %v", selftestModule, koErr)
	}
	for { // the root disk is mounted and switched to
		if _, err := os.Stat("/bin/busybox"); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for { // needs the vsock core module, which Main loads
		if err := unix.InitModule(ko, ""); err == nil || err == unix.EEXIST {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &proto.Client{Dial: func(ctx context.Context) (net.Conn, error) {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_LOCAL, Port: proto.DefaultAgentPort}); err != nil {
			unix.Close(fd)
			return nil, err
		}
		unix.SetNonblock(fd, true)
		return selftestConn{os.NewFile(uintptr(fd), "vsock")}, nil
	}}
	var ping proto.PingResult
	var err error
	for i := 0; i < 500; i++ {
		if ping, err = c.Ping(ctx); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	check(err == nil && ping.PID == 1 && ping.Version == "selftest", "ping: %+v %v", ping, err)
	sh := func(script string, timeout time.Duration) (proto.ExecResult, string) {
		var out bytes.Buffer
		r, err := c.Exec(ctx, proto.ExecRequest{Shell: script, Timeout: timeout}, &out, &out)
		if err != nil {
			check(false, "exec %q: %v", script, err)
		}
		return r, out.String()
	}
	r, out := sh("echo hello; exit 7", 0)
	check(r.ExitCode == 7 && out == "hello\n", "exit 7: %+v %q", r, out)
	r, _ = sh("kill -KILL $$", 0)
	check(r.Signal == "SIGKILL", "signal: %+v", r)
	_, out = sh("hostname; echo $PATH $HOME; ip addr show lo | grep -c 'inet 127.0.0.1'; cat /proc/mounts", 0)
	for _, want := range []string{"selftest-ws\n", DefaultPath + " /root\n", "\n1\n", "/dev/vda / ext4 rw", "devpts /dev/pts devpts",
		"/dev/shm tmpfs", "tmpfs /tmp tmpfs", "tmpfs /run tmpfs", "proc /proc proc", "sysfs /sys sysfs", "devtmpfs /dev devtmpfs"} {
		check(strings.Contains(out, want), "environment has %q", want)
	}
	_, out = sh("ls /init /newroot /lib/modules/pyro 2>&1; test -e /dev/fd/0 && echo devfd", 0)
	check(strings.Count(out, "No such file") == 3 && strings.Contains(out, "devfd"), "no initramfs files in the root, /dev/fd works: %q", out)
	for i := 0; i < 5; i++ {
		sh("sleep 0.2 & exit 3", 0) // orphans for the reaper
	}
	r, _ = sh("sleep 100 & echo $!; sleep 100", 300*time.Millisecond)
	check(r.TimedOut, "timeout: %+v", r)
	time.Sleep(700 * time.Millisecond)
	_, out = sh("ps -o pid,ppid,stat,comm | awk '$2 != 2 && $1 != 2'", 0)
	check(!strings.Contains(out, " Z ") && !strings.Contains(out, "sleep") && strings.Count(out, "\n") == 5,
		"after orphans and a timeout only the header, init, sh, ps and awk remain, no zombie:\n%s", out)
	n := 0
	for i := 0; i < 50; i++ {
		if r, err := c.Exec(ctx, proto.ExecRequest{Argv: []string{"true"}}, nil, nil); err == nil && r.ExitCode == 0 {
			n++
		}
	}
	check(n == 50, "50 sequential execs: %d ok", n)

	err = c.WriteFile(ctx, "/workspace/d/f.txt", strings.NewReader("data"), 0o640, true)
	data, _, rerr := c.ReadFile(ctx, "/workspace/d/f.txt", 0, 0)
	check(err == nil && rerr == nil && string(data) == "data", "write/read on the root disk: %v %v %q", err, rerr, data)
	rd, err := c.TarOut(ctx, "/workspace")
	var tb bytes.Buffer
	if err == nil {
		_, err = io.Copy(&tb, rd)
	}
	res, err2 := c.TarIn(ctx, "/tmp/restored", &tb)
	check(err == nil && err2 == nil && res.Entries == 2, "tar out/in: %v %v %+v", err, err2, res)
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"})
	tw.WriteHeader(&tar.Header{Name: "evil/x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	_, err = c.TarIn(ctx, "/tmp/evil", &evil)
	_, serr := os.Stat("/etc/x")
	check(err != nil && serr != nil, "tar escape rejected: %v", err)

	err = c.SetTime(ctx, time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC))
	_, out = sh("date -u +%Y-%m-%d", 0)
	check(err == nil && out == "2031-02-03\n", "set_time: %v %q", err, out)
	check(c.Sync(ctx) == nil, "sync")
	check(c.Freeze(ctx, "/") == nil, "freeze /")
	err = c.Freeze(ctx, "/")
	check(err != nil && strings.Contains(err.Error(), "already frozen"), "freeze twice: %v", err)
	check(c.Thaw(ctx, "/") == nil, "thaw /")
	err = c.Thaw(ctx, "/")
	check(err != nil && strings.Contains(err.Error(), "not frozen"), "thaw twice: %v", err)
	_, out = sh("kill -TERM 1; kill -HUP 1; kill -INT 1; echo alive", 0)
	_, perr := c.Ping(ctx)
	check(out == "alive\n" && perr == nil, "signals to PID 1 are ignored: %q %v", out, perr)

	fmt.Fprintf(os.Stderr, "SELFTEST-DONE failures=%d\n", failures)
	if err := c.Poweroff(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "SELFTEST FAIL poweroff: %v\n", err)
	}
}
