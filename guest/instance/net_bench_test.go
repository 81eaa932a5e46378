package instance

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/guest/initramfs"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/netstack"
)

// BenchmarkNetworkVsQEMU measures TCP through pyro's network (the guest's
// virtio-net NIC into the netstack gVisor stack in this process, relayed to
// the host's loopback) against QEMU's user-mode network (-netdev user,
// libslirp) carrying the same transfers from an L2 guest on the same KVM:
// the same kernel (the minimal env's), 1 vCPU and benchMemMiB each, and the
// same guest program (this test binary; netbench_guest_test.go). Both VMs
// stay up; each op runs one round on pyro's, then one on QEMU's:
//
//   - guest to host: the guest writes netbenchMiB MiB to a listener on
//     the host's loopback, reached as the gateway 10.0.2.2 (pyro's
//     host.pyro.internal, granted; slirp maps the same address to the
//     host's loopback); the host times first byte to EOF;
//   - host to guest: the host writes netbenchMiB MiB to the guest and
//     times first write to the guest's one-byte answer after EOF;
//   - published: the host reads netbenchMiB MiB from a guest listener
//     through a published port (pyro: Stack.Publish, through the agent's
//     relay to the guest's loopback as workspaces do, and through the
//     stack to eth0; QEMU: hostfwd), timed first byte to EOF;
//   - connection setup: netbenchConnects dials from the guest to a host
//     listener, each timed in the guest (p50 and p99 of the round).
//
// Figures are medians over the rounds; the *-ratio metrics are
// pyro/QEMU (above 1: pyro is faster, for connects: slower). Without
// qemu-system-x86_64 on PATH it measures pyro alone. In the harness QEMU
// reaches L1 with PYRO_VMTEST_QEMU=1 (make bench sets it).
//
// PYRO_NETBENCH_MIB overrides the transfer size; PYRO_NETBENCH_CPUPROFILE=1
// logs a base64 CPU profile of this process over pyro's first round (the
// harness keeps no files): decode it and read it with go tool pprof.
func BenchmarkNetworkVsQEMU(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "minimal", "PYRO_TEST_ENV_MINIMAL")
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	if err := requireStatic(self); err != nil {
		b.Fatal(err)
	}
	n := int64(netbenchMiB) << 20
	if s := os.Getenv("PYRO_NETBENCH_MIB"); s != "" {
		m, err := strconv.Atoi(s)
		if err != nil || m <= 0 {
			b.Fatalf("PYRO_NETBENCH_MIB=%q: want a positive number", s)
		}
		n = int64(m) << 20
	}

	pyro := startPyroNet(b, e, self)
	var qemu *netGuest
	if q, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		b.Logf("no qemu-system-x86_64 (%v): measuring pyro alone", err)
	} else {
		qemu = startQEMUNet(b, e, q, self)
	}
	guests := []*netGuest{pyro}
	if qemu != nil {
		guests = append(guests, qemu)
	}
	for _, g := range guests { // warm up: the guest program's pages, ARP, the first connections
		g.round(b, 1<<20, 10)
	}
	profile := os.Getenv("PYRO_NETBENCH_CPUPROFILE") == "1"
	for b.Loop() {
		for _, g := range guests {
			var prof bytes.Buffer
			profiling := profile && g == pyro && len(g.rounds) == 0
			if profiling {
				if err := pprof.StartCPUProfile(&prof); err != nil {
					b.Fatal(err)
				}
			}
			g.rounds = append(g.rounds, g.round(b, n, netbenchConnects))
			if profiling {
				pprof.StopCPUProfile()
				b.Logf("CPU profile of pyro's first round (base64 pprof): %s", base64.StdEncoding.EncodeToString(prof.Bytes()))
			}
		}
	}
	b.StopTimer()
	for _, g := range guests {
		g.stop(b)
	}
	reportNet(b, n, pyro, qemu)
}

// netbenchMiB is the size of each transfer: long enough to outlast TCP's
// ramp-up and the harness's hiccups, short enough for the harness (a few
// MiB/s there: a round of 32 MiB takes one to two minutes).
const netbenchMiB = 32

// netbenchConnects is how many connections a round times.
const netbenchConnects = 200

// requireStatic fails for a dynamically linked binary: the guests have no
// libraries for it (make builds with CGO_ENABLED=0).
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guests need it static: build with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// netRound is one round's figures.
type netRound struct {
	up, down  time.Duration            // guest to host, host to guest
	published map[string]time.Duration // by path ("relay", "stack" for pyro; "hostfwd" for QEMU)
	p50, p99  time.Duration            // connection setup
}

// netGuest is a running guest program and the host's side of it.
type netGuest struct {
	name string
	// The host's loopback listeners the guest reaches at the gateway.
	ctlLn, sinkLn, sourceLn, connLn *net.TCPListener
	ctl                             net.Conn
	in                              *bufio.Reader
	// publish names the published-port paths and sets each up before
	// its transfer, returning the host port.
	published []string
	publish   func(path string) uint16
	done      func(tb testing.TB) // waits for the guest program's end
	// diag describes the VM's network for a failure's message.
	diag   func() string
	rounds []netRound
}

func newNetGuest(tb testing.TB, name string) *netGuest {
	g := &netGuest{name: name}
	for _, l := range []**net.TCPListener{&g.ctlLn, &g.sinkLn, &g.sourceLn, &g.connLn} {
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ln.Close() })
		*l = ln
	}
	// Connections timed by the guest: accept and close.
	go func() {
		for {
			c, err := g.connLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return g
}

func port(l *net.TCPListener) int { return l.Addr().(*net.TCPAddr).Port }

// netOpTimeout bounds each step of a round (the harness is slow).
const netOpTimeout = 3 * time.Minute

// accept waits for the guest program's control connection and its hello;
// failed says why the guest is gone, if it is.
func (g *netGuest) accept(tb testing.TB, failed func() string) {
	tb.Helper()
	deadline := time.Now().Add(netOpTimeout)
	for {
		g.ctlLn.SetDeadline(time.Now().Add(time.Second))
		c, err := g.ctlLn.Accept()
		if err == nil {
			g.ctl, g.in = c, bufio.NewReader(c)
			break
		}
		if why := failed(); why != "" {
			tb.Fatalf("%s: the guest program did not call: %s", g.name, why)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the guest program did not call within %v", g.name, netOpTimeout)
		}
	}
	g.ctl.SetDeadline(time.Now().Add(netOpTimeout))
	if line, err := g.in.ReadString('\n'); err != nil || line != "hello\n" {
		tb.Fatalf("%s: guest said %q, %v; want hello", g.name, line, err)
	}
}

// command sends one command and returns the guest's answer.
func (g *netGuest) command(tb testing.TB, format string, args ...any) string {
	tb.Helper()
	g.ctl.SetDeadline(time.Now().Add(netOpTimeout))
	if _, err := fmt.Fprintf(g.ctl, format+"\n", args...); err != nil {
		tb.Fatalf("%s: control: %v", g.name, err)
	}
	line, err := g.in.ReadString('\n')
	if err != nil {
		tb.Fatalf("%s: control: %v%s", g.name, err, g.diagnose())
	}
	line = strings.TrimSuffix(line, "\n")
	if strings.HasPrefix(line, "err ") {
		tb.Fatalf("%s: %s: guest: %s%s", g.name, fmt.Sprintf(format, args...), line[4:], g.diagnose())
	}
	return line
}

// diagnose is g.diag's description on a line of its own, if there is one.
func (g *netGuest) diagnose() string {
	if g.diag == nil {
		return ""
	}
	return "\n" + g.diag()
}

// acceptOne takes the next connection on l.
func acceptOne(tb testing.TB, l *net.TCPListener) *net.TCPConn {
	tb.Helper()
	c, err := acceptTimed(l)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// acceptTimed takes the next connection on l, both bounded by netOpTimeout.
func acceptTimed(l *net.TCPListener) (*net.TCPConn, error) {
	l.SetDeadline(time.Now().Add(netOpTimeout))
	c, err := l.AcceptTCP()
	if err == nil {
		c.SetDeadline(time.Now().Add(netOpTimeout))
	}
	return c, err
}

// readTimed reads r to EOF and returns the bytes and the time from the
// first byte to EOF.
func readTimed(r io.Reader) (int64, time.Duration, error) {
	buf := make([]byte, 256<<10)
	var n int64
	var first time.Time
	for {
		k, err := r.Read(buf)
		if k > 0 && n == 0 {
			first = time.Now()
		}
		n += int64(k)
		if err == io.EOF {
			return n, time.Since(first), nil
		}
		if err != nil {
			return n, 0, err
		}
	}
}

// round runs one round of every figure with n-byte transfers and k
// connects.
func (g *netGuest) round(tb testing.TB, n int64, k int) netRound {
	tb.Helper()
	r := netRound{published: map[string]time.Duration{}}

	// Guest to host.
	type result struct {
		n   int64
		d   time.Duration
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := acceptTimed(g.sinkLn)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		m, d, err := readTimed(c)
		got <- result{m, d, err}
	}()
	g.command(tb, "up %d %d", port(g.sinkLn), n)
	res := <-got
	if res.err != nil || res.n != n {
		tb.Fatalf("%s: guest to host: %d of %d bytes: %v", g.name, res.n, n, res.err)
	}
	r.up = res.d

	// Host to guest.
	go func() {
		c, err := acceptTimed(g.sourceLn)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		if err := writeZeros(c, n, make([]byte, 256<<10)); err != nil {
			got <- result{err: err}
			return
		}
		if err := c.CloseWrite(); err != nil {
			got <- result{err: err}
			return
		}
		var ack [1]byte
		_, err = io.ReadFull(c, ack[:])
		got <- result{n, time.Since(start), err}
	}()
	answer := g.command(tb, "down %d", port(g.sourceLn))
	res = <-got
	if res.err != nil || answer != fmt.Sprintf("ok %d", n) {
		tb.Fatalf("%s: host to guest: guest answered %q: %v", g.name, answer, res.err)
	}
	r.down = res.d

	// Published ports: the guest serves, the host reads.
	for _, path := range g.published {
		hp := g.publish(path)
		go func() {
			c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hp), netOpTimeout)
			if err != nil {
				got <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(netOpTimeout))
			m, d, err := readTimed(c)
			got <- result{m, d, err}
		}()
		g.command(tb, "serve %d", n)
		res = <-got
		if res.err != nil || res.n != n {
			tb.Fatalf("%s: published (%s): %d of %d bytes: %v", g.name, path, res.n, n, res.err)
		}
		r.published[path] = res.d
	}

	// Connection setup, timed in the guest.
	f := strings.Fields(g.command(tb, "conn %d %d", port(g.connLn), k))
	if len(f) != k+1 || f[0] != "conn" {
		tb.Fatalf("%s: connects: answer of %d fields, want %d", g.name, len(f), k+1)
	}
	var lat []time.Duration
	for _, s := range f[1:] {
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ns < 0 {
			tb.Fatalf("%s: connects: bad time %q", g.name, s)
		}
		lat = append(lat, time.Duration(ns))
	}
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	return r
}

// stop ends the guest program and waits for it (and, for QEMU, the VM).
func (g *netGuest) stop(tb testing.TB) {
	tb.Helper()
	if a := g.command(tb, "quit"); a != "bye" {
		tb.Fatalf("%s: quit: guest answered %q", g.name, a)
	}
	g.ctl.Close()
	g.done(tb)
}

// startPyroNet boots e with a NIC into a netstack.Stack, grants the
// guest program's host ports, copies the program (self) in and starts it.
func startPyroNet(b *testing.B, e *env.Env, self string) *netGuest {
	g := newNetGuest(b, "pyro")
	link := netstack.NewLink()
	st, err := netstack.New(netstack.Config{Link: link.Endpoint(), Resolver: noResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	console := new(countingBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Env: e, Disk: benchDisk(b, e), VCPUs: 1, MemMiB: benchMemMiB, Console: console, Net: link})
	if err != nil {
		b.Fatalf("starting %s: %v\nconsole:\n%s", e.Name, err, console.String())
	}
	b.Cleanup(func() { vm.Close() })
	for _, l := range []*net.TCPListener{g.ctlLn, g.sinkLn, g.sourceLn, g.connLn} {
		gr, err := netstack.ParseGrant(fmt.Sprintf("%s:%d", netstack.HostServiceName, port(l)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Grant(gr); err != nil {
			b.Fatal(err)
		}
	}
	const prog = "/tmp/netbench"
	f, err := os.Open(self)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	begin := time.Now()
	if err := vm.Agent.WriteFile(ctx, prog, f, 0o755, false); err != nil {
		b.Fatalf("copying the guest program: %v", err)
	}
	b.Logf("pyro: agent ready after %v; guest program copied in %v", vm.Ready.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	type execEnd struct {
		res    proto.ExecResult
		err    error
		stderr string
	}
	ended := make(chan execEnd, 1)
	go func() {
		var stderr bytes.Buffer
		res, err := vm.Agent.Exec(context.Background(), proto.ExecRequest{Argv: []string{prog},
			Env: map[string]string{netbenchGuestEnv: strconv.Itoa(port(g.ctlLn))}}, io.Discard, &stderr)
		ended <- execEnd{res, err, stderr.String()}
	}()
	var end *execEnd
	failed := func() string {
		select {
		case x := <-ended:
			end = &x
		default:
		}
		if end != nil {
			return fmt.Sprintf("it ended: %+v, %v; stderr %q", end.res, end.err, end.stderr)
		}
		return ""
	}
	g.diag = func() string {
		ns, _ := vm.NetStats()
		s := st.Status()
		return fmt.Sprintf("NIC %+v; link %+v; stack: %d live connections, %d denied (last %+v), %d limit hits, %d handshake drops; grants %+v",
			ns, link.Stats(), s.Connections, s.DeniedTotal, s.Denials[max(0, len(s.Denials)-3):], s.LimitHits, s.HandshakeDrops, s.Grants)
	}
	g.accept(b, failed)
	g.done = func(tb testing.TB) {
		if end == nil {
			select {
			case x := <-ended:
				end = &x
			case <-time.After(netOpTimeout):
				tb.Fatalf("pyro: the guest program did not end")
			}
		}
		if end.err != nil || end.res.ExitCode != 0 {
			tb.Fatalf("pyro: the guest program: %+v, %v; stderr %q", end.res, end.err, end.stderr)
		}
		ns, _ := vm.NetStats()
		tb.Logf("pyro: NIC %+v; link %+v", ns, link.Stats())
	}

	// Published ports, both ways a workspace may reach the guest: through
	// the agent's relay to the guest's loopback (what workspaces use), and
	// through the stack to the guest's eth0 (an agent too old to relay).
	hp, err := st.Publish(netbenchGuestPort, 0)
	if err != nil {
		b.Fatal(err)
	}
	g.published = []string{"relay", "stack"}
	g.publish = func(path string) uint16 {
		if path == "relay" {
			st.SetPublishDialer(func(ctx context.Context, p uint16) (net.Conn, error) { return vm.Agent.DialPort(ctx, p) })
		} else {
			st.SetPublishDialer(nil)
		}
		return hp
	}
	return g
}

// startQEMUNet boots e's kernel under qemu with an initramfs of e's
// modules and the guest program as /init, on QEMU's user-mode network
// with the guest port forwarded from the host's loopback.
func startQEMUNet(b *testing.B, e *env.Env, qemu, self string) *netGuest {
	g := newNetGuest(b, "qemu")
	version := "?"
	if out, err := exec.Command(qemu, "--version").Output(); err == nil {
		version, _, _ = strings.Cut(string(out), "\n")
	}
	initrd := filepath.Join(b.TempDir(), "netbench.cpio")
	if err := writeNetbenchInitrd(initrd, e.Initrd, self); err != nil {
		b.Fatal(err)
	}
	// A free host port for the forward: QEMU binds it itself.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hp := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmdline := fmt.Sprintf("console=ttyS0 quiet loglevel=1 reboot=acpi panic=-1 %s=%d %s=1",
		netbenchGuestEnv, port(g.ctlLn), netbenchInitEnv)
	cmd := exec.Command(qemu, "-accel", "kvm", "-M", "microvm", "-cpu", "host",
		"-m", strconv.Itoa(benchMemMiB), "-smp", "1",
		"-no-user-config", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
		"-kernel", e.Kernel, "-initrd", initrd, "-append", cmdline,
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:%d", hp, netbenchGuestPort),
		"-device", "virtio-net-device,netdev=n0")
	console := new(countingBuffer)
	cmd.Stdout, cmd.Stderr = console, console
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	isDone := false
	wait := func(d time.Duration) bool {
		if isDone {
			return true
		}
		select {
		case waitErr = <-exited:
			isDone = true
		case <-time.After(d):
		}
		return isDone
	}
	b.Cleanup(func() {
		if !wait(0) {
			cmd.Process.Kill()
			wait(time.Minute)
		}
	})
	g.accept(b, func() string {
		if wait(0) {
			return fmt.Sprintf("QEMU exited (%v); console:\n%s", waitErr, console.String())
		}
		return ""
	})
	b.Logf("qemu (%s): guest program called after %v", version, time.Since(begin).Round(time.Millisecond))
	g.diag = func() string { return "console:\n" + console.String() }
	g.published = []string{"hostfwd"}
	g.publish = func(string) uint16 { return hp }
	g.done = func(tb testing.TB) {
		if !wait(time.Minute) {
			tb.Fatalf("qemu: did not exit after the guest powered off; console:\n%s", console.String())
		}
		if waitErr != nil {
			tb.Fatalf("qemu: %v; console:\n%s", waitErr, console.String())
		}
	}
	return g
}

// writeNetbenchInitrd writes an initramfs with the env's initramfs's
// entries (its modules, modules.order, mount points, /dev/console) and
// self as /init instead of the agent.
func writeNetbenchInitrd(path, envInitrd, self string) error {
	src, err := os.Open(envInitrd)
	if err != nil {
		return err
	}
	entries, err := env.ReadInitrd(src)
	src.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", envInitrd, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := initramfs.NewWriter(bw)
	for _, x := range entries {
		perm := os.FileMode(x.Mode & 0o7777)
		switch x.Mode & env.CpioTypeMask {
		case env.CpioDir:
			err = w.Dir(x.Name, perm)
		case env.CpioFile:
			if x.Name != "init" {
				err = w.File(x.Name, perm, x.Data)
			}
		case env.CpioSymlink:
			err = w.Symlink(x.Name, string(x.Data))
		case env.CpioCharDev:
			err = w.CharDev(x.Name, perm, x.RMajor, x.RMin)
		}
		if err != nil {
			return err
		}
	}
	prog, err := os.Open(self)
	if err != nil {
		return err
	}
	defer prog.Close()
	fi, err := prog.Stat()
	if err != nil {
		return err
	}
	if err := w.FileFrom("/init", 0o755, fi.Size(), prog); err != nil {
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

// netStat is one figure over the rounds: its median, minimum and maximum.
type netStat struct{ med, lo, hi float64 }

func statOf(xs []float64) netStat {
	if len(xs) == 0 {
		return netStat{}
	}
	return netStat{medianF(xs), slices.Min(xs), slices.Max(xs)}
}

func (s netStat) String() string { return fmt.Sprintf("%.1f (%.1f to %.1f)", s.med, s.lo, s.hi) }

// gbit converts MiB/s to Gbit/s.
func gbit(mibps float64) float64 { return mibps * (1 << 20) * 8 / 1e9 }

// netFigures are a guest's figures over its rounds: MiB/s of the
// transfers, by published path, and µs of connection setup.
type netFigures struct {
	up, down, p50, p99 netStat
	pub                map[string]netStat
}

func figuresOf(n int64, rounds []netRound) netFigures {
	var up, down, p50, p99 []float64
	pub := map[string][]float64{}
	for _, r := range rounds {
		up = append(up, mibPerSec(n, r.up))
		down = append(down, mibPerSec(n, r.down))
		p50 = append(p50, usOf(r.p50))
		p99 = append(p99, usOf(r.p99))
		for k, d := range r.published {
			pub[k] = append(pub[k], mibPerSec(n, d))
		}
	}
	f := netFigures{up: statOf(up), down: statOf(down), p50: statOf(p50), p99: statOf(p99), pub: map[string]netStat{}}
	for k, v := range pub {
		f.pub[k] = statOf(v)
	}
	return f
}

// logLine is one guest's figures: medians with their ranges in brackets.
func (f netFigures) logLine(paths []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "guest to host %v MiB/s (%.2f Gbit/s), host to guest %v MiB/s (%.2f Gbit/s)",
		f.up, gbit(f.up.med), f.down, gbit(f.down.med))
	for _, p := range paths {
		fmt.Fprintf(&b, ", published (%s) %v MiB/s (%.2f Gbit/s)", p, f.pub[p], gbit(f.pub[p].med))
	}
	fmt.Fprintf(&b, "; connect p50 %v µs, p99 %v µs", f.p50, f.p99)
	return b.String()
}

// reportNet reports the medians of the rounds (and their ranges in the
// log), and the pyro/QEMU ratios of the medians.
func reportNet(b *testing.B, n int64, pyro, qemu *netGuest) {
	p := figuresOf(n, pyro.rounds)
	b.ReportMetric(p.up.med, "pyro-g2h-MiB/s")
	b.ReportMetric(p.down.med, "pyro-h2g-MiB/s")
	b.ReportMetric(p.pub["relay"].med, "pyro-pub-MiB/s")
	b.ReportMetric(p.pub["stack"].med, "pyro-pub-stack-MiB/s")
	b.ReportMetric(p.p50.med, "pyro-conn-p50-us")
	b.ReportMetric(p.p99.med, "pyro-conn-p99-us")
	b.Logf("pyro, %d rounds of %d MiB, medians (min to max): %s", len(pyro.rounds), n>>20, p.logLine(pyro.published))
	if qemu == nil {
		return
	}
	q := figuresOf(n, qemu.rounds)
	b.ReportMetric(q.up.med, "qemu-g2h-MiB/s")
	b.ReportMetric(q.down.med, "qemu-h2g-MiB/s")
	b.ReportMetric(q.pub["hostfwd"].med, "qemu-pub-MiB/s")
	b.ReportMetric(q.p50.med, "qemu-conn-p50-us")
	b.ReportMetric(q.p99.med, "qemu-conn-p99-us")
	b.ReportMetric(p.up.med/q.up.med, "g2h-ratio")
	b.ReportMetric(p.down.med/q.down.med, "h2g-ratio")
	b.ReportMetric(p.pub["relay"].med/q.pub["hostfwd"].med, "pub-ratio")
	b.ReportMetric(p.p50.med/q.p50.med, "conn-p50-ratio")
	b.ReportMetric(p.p99.med/q.p99.med, "conn-p99-ratio")
	b.Logf("qemu -netdev user, %d rounds, medians (min to max): %s", len(qemu.rounds), q.logLine(qemu.published))
	b.Logf("pyro/qemu: guest to host %.2f, host to guest %.2f, published %.2f (through pyro's stack %.2f); connect p50 %.2f, p99 %.2f",
		p.up.med/q.up.med, p.down.med/q.down.med, p.pub["relay"].med/q.pub["hostfwd"].med,
		p.pub["stack"].med/q.pub["hostfwd"].med, p.p50.med/q.p50.med, p.p99.med/q.p99.med)
}

// TestNetbenchRound runs the guest program in this process against the
// host side on the loopback (the gateway 127.0.0.1), with no VM: one
// round with every command, and its figures.
func TestNetbenchRound(t *testing.T) {
	g := newNetGuest(t, "loopback")
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ended := make(chan error, 1)
	go func() { ended <- netbenchRun("127.0.0.1", strconv.Itoa(port(g.ctlLn)), l) }()
	g.accept(t, func() string { return "" })
	g.published = []string{"direct"}
	g.publish = func(string) uint16 { return uint16(port(l)) }
	g.done = func(tb testing.TB) {
		if err := <-ended; err != nil {
			tb.Fatalf("guest program: %v", err)
		}
	}
	const n, k = 3<<20 + 17, 20
	r := g.round(t, n, k)
	if r.up <= 0 || r.down <= 0 || r.published["direct"] <= 0 || r.p50 <= 0 || r.p99 < r.p50 {
		t.Errorf("round figures %+v", r)
	}
	if line := figuresOf(n, []netRound{r}).logLine(g.published); !strings.Contains(line, "published (direct) ") {
		t.Errorf("log line %q lacks the published path", line)
	}
	// A command the program does not know is an error it reports, and
	// it goes on.
	g.ctl.SetDeadline(time.Now().Add(netOpTimeout))
	if _, err := fmt.Fprintf(g.ctl, "up x 1\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := g.in.ReadString('\n'); err != nil || !strings.HasPrefix(line, "err bad command") {
		t.Errorf("bad command answered %q, %v", line, err)
	}
	g.stop(t)
}
