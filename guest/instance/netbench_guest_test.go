package instance

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
)

// The guest half of BenchmarkNetworkVsQEMU (net_bench_test.go). This test
// binary is also the guest program, so that pyro's guest and QEMU's run the
// very same code: with netbenchGuestEnv set, TestMain runs netbenchGuest
// instead of the tests. pyro's agent execs the binary (copied into the
// guest) with that variable; under QEMU the binary is the initramfs's /init
// and the variable comes from the kernel command line (unknown key=value
// words become init's environment), with netbenchInitEnv=1 asking it to do
// init's work first: load the initramfs's modules and configure eth0 as
// pyro's agent does. (The Go toolchain is not in the harness's L1, so
// nothing can be built there; make builds this binary static.)
//
// The program dials the host's control listener at the gateway, port
// $netbenchGuestEnv, listens on 0.0.0.0:netbenchGuestPort, says "hello",
// and then obeys one command a line, answering each with one line:
//
//	up PORT N     dial GATEWAY:PORT, write N zero bytes, close    -> ok
//	down PORT N   dial GATEWAY:PORT, read to EOF, write one byte   -> ok BYTES
//	conn PORT K   K times: time a dial of GATEWAY:PORT, close it   -> conn NS NS ...
//	serve N       accept one connection, write N zero bytes, close -> ok
//	quit                                                           -> bye
//
// and "err TEXT" for a command that failed. The host times the transfers;
// only connection setup is timed in the guest.

const (
	netbenchGuestEnv  = "PYRO_NETBENCH_GUEST" // the control port on the gateway
	netbenchInitEnv   = "PYRO_NETBENCH_INIT"  // "1": run as PID 1 (QEMU's /init)
	netbenchGuestPort = 5201                  // the guest's listener, published by the host
	netbenchChunk     = 256 << 10             // write size of the guest's senders
)

func TestMain(m *testing.M) {
	if port := os.Getenv(netbenchGuestEnv); port != "" {
		os.Exit(netbenchGuest(port))
	}
	os.Exit(m.Run())
}

// netbenchGuest runs the guest program; as init it powers off at the end.
func netbenchGuest(ctlPort string) int {
	init := os.Getenv(netbenchInitEnv) == "1"
	err := netbenchServe(ctlPort, init)
	if err != nil {
		fmt.Fprintf(os.Stderr, "netbench guest: %v\n", err)
	}
	if init {
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		select {} // PID 1 must not exit
	}
	if err != nil {
		return 1
	}
	return 0
}

func netbenchServe(ctlPort string, init bool) error {
	if init {
		if err := netbenchInitGuest(); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", netbenchGuestPort))
	if err != nil {
		return err
	}
	defer l.Close()
	return netbenchRun(proto.GatewayAddr.String(), ctlPort, l)
}

// netbenchRun is the guest program proper: it calls the host at gw:ctlPort
// and obeys it, serving published transfers on l.
func netbenchRun(gw, ctlPort string, l net.Listener) error {
	var err error
	var ctl net.Conn
	deadline := time.Now().Add(time.Minute)
	for {
		ctl, err = net.DialTimeout("tcp4", net.JoinHostPort(gw, ctlPort), 10*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("dialling the control port: %w", err)
	}
	defer ctl.Close()
	in := bufio.NewReader(ctl)
	say := func(format string, args ...any) error {
		_, err := fmt.Fprintf(ctl, format+"\n", args...)
		return err
	}
	if err := say("hello"); err != nil {
		return err
	}
	zeros := make([]byte, netbenchChunk)
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		arg := func(i int) int64 {
			if i >= len(f) {
				return -1
			}
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
		var answer string
		switch {
		case f[0] == "quit":
			return say("bye")
		case f[0] == "up" && arg(1) > 0 && arg(2) >= 0:
			answer, err = "ok", netbenchUp(net.JoinHostPort(gw, f[1]), arg(2), zeros)
		case f[0] == "down" && arg(1) > 0:
			var n int64
			n, err = netbenchDown(net.JoinHostPort(gw, f[1]))
			answer = fmt.Sprintf("ok %d", n)
		case f[0] == "conn" && arg(1) > 0 && arg(2) > 0:
			answer, err = netbenchDials(net.JoinHostPort(gw, f[1]), int(arg(2)))
		case f[0] == "serve" && arg(1) >= 0:
			answer, err = "ok", netbenchServeOne(l, arg(1), zeros)
		default:
			err = fmt.Errorf("bad command %q", strings.TrimSpace(line))
		}
		if err != nil {
			answer = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		if err := say("%s", answer); err != nil {
			return err
		}
	}
}

// writeZeros writes n bytes from zeros (a chunk at most per write).
func writeZeros(w io.Writer, n int64, zeros []byte) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func netbenchUp(addr string, n int64, zeros []byte) error {
	c, err := net.DialTimeout("tcp4", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writeZeros(c, n, zeros); err != nil {
		return err
	}
	return c.(*net.TCPConn).CloseWrite()
}

func netbenchDown(addr string) (int64, error) {
	c, err := net.DialTimeout("tcp4", addr, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return n, err
	}
	_, err = c.Write([]byte{'k'})
	return n, err
}

func netbenchDials(addr string, k int) (string, error) {
	var b strings.Builder
	b.WriteString("conn")
	for range k {
		start := time.Now()
		c, err := net.DialTimeout("tcp4", addr, 30*time.Second)
		d := time.Since(start)
		if err != nil {
			return "", err
		}
		c.Close()
		fmt.Fprintf(&b, " %d", d.Nanoseconds())
	}
	return b.String(), nil
}

func netbenchServeOne(l net.Listener, n int64, zeros []byte) error {
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	return writeZeros(c, n, zeros)
}

// netbenchInitGuest does init's part under QEMU: the file systems the
// program needs, the initramfs's modules (virtio-mmio and virtio_net
// among them), lo, and eth0 configured as pyro's agent configures it
// (proto.GuestAddr/GuestPrefixLen via proto.GatewayAddr), which is also
// QEMU's user-mode network plan.
func netbenchInitGuest() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mounting %s: %w", m.dst, err)
		}
	}
	order, err := os.ReadFile(env.ModulesOrderPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, p := range strings.Fields(string(order)) {
		if err := netbenchLoadModule(p); err != nil {
			fmt.Fprintf(os.Stderr, "netbench guest: %v\n", err)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	var nic netlink.Link
	for deadline := time.Now().Add(30 * time.Second); nic == nil; {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback == 0 && a.EncapType == "ether" && l.Type() == "device" {
				nic = l
			}
		}
		if nic == nil {
			if time.Now().After(deadline) {
				return errors.New("no network interface appeared")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: proto.GuestAddr.AsSlice(), Mask: net.CIDRMask(proto.GuestPrefixLen, 32)}}
	if err := netlink.AddrReplace(nic, addr); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(nic); err != nil {
		return err
	}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: nic.Attrs().Index, Gw: proto.GatewayAddr.AsSlice()})
}

// netbenchLoadModule loads one module file; already loaded is fine.
func netbenchLoadModule(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags := 0
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ext) {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	for {
		err = unix.FinitModule(fd, "", flags)
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("module %s: %w", p, err)
	}
	return nil
}
