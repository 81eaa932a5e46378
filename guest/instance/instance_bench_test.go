package instance

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// Benchmarks of a running environment, with the environments and VM setup of
// the end-to-end tier (instance_vm_test.go). Each reports medians or
// percentiles through b.ReportMetric and logs a one-line summary. Under the
// nested-KVM harness (L1 is QEMU TCG) absolute figures are many times slower
// than on hardware KVM; the host-side comparisons of BenchmarkVirtioBlk then
// run inside L1 too, on L1's tmpfs.
//
//	E=~/.cache/pyro/envs; PYRO_KVM=1 PYRO_TEST_ENV_MINIMAL=$E/minimal \
//	  PYRO_TEST_ENV_DEBIAN=$E/debian-12 PYRO_TEST_PYRO=$PWD/build/pyro \
//	  go test -count=1 -run '^$' -bench . -benchtime 5x -exec "$PWD/build/vmtest exec" ./guest/instance
//
// Each benchmark uses b.Loop, so its setup (booting a VM) runs once and
// -benchtime Nx sets the number of samples.

// BenchmarkPyroRunTrue times `pyro run ENV -- true` end to end with the real
// pyro binary (PYRO_TEST_PYRO): load and check the environment, create the
// disk, boot, exec, power off, clean up. One op is one pyro run.
func BenchmarkPyroRunTrue(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	for _, te := range testEnvs {
		b.Run(te.name, func(b *testing.B) {
			dir := kvmtest.Path(b, te.variable)
			pyro := kvmtest.Path(b, "PYRO_TEST_PYRO")
			environ := append(os.Environ(),
				"PYRO_CACHE_DIR="+filepath.Dir(filepath.Dir(dir)),
				"TMPDIR="+b.TempDir())
			var walls []time.Duration
			for b.Loop() {
				cmd := exec.Command(pyro, "run", te.name, "--", "true")
				cmd.Env = environ
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				start := time.Now()
				err := cmd.Run()
				walls = append(walls, time.Since(start))
				if err != nil || out.Len() > 0 {
					b.Fatalf("pyro run %s -- true (run %d): %v after %v; stdout %q; stderr:\n%s", te.name, len(walls), err, walls[len(walls)-1].Round(time.Millisecond), out.String(), errb.String())
				}
			}
			med := medianDur(walls)
			b.ReportMetric(msOf(med), "wall-ms")
			b.ReportMetric(msOf(percentile(walls, 0)), "min-wall-ms")
			b.ReportMetric(msOf(percentile(walls, 100)), "max-wall-ms")
			b.Logf("pyro run %s -- true: median %.0f ms wall over %d runs (min %.0f, max %.0f)",
				te.name, msOf(med), len(walls), msOf(percentile(walls, 0)), msOf(percentile(walls, 100)))
		})
	}
}

// execBatch is the number of execs one op of BenchmarkExecTrue times;
// -benchtime 5x gives minExecs samples.
const (
	execBatch = 200
	minExecs  = 1000
)

// BenchmarkExecTrue measures the round trip of one exec of `true` (argv
// form, no stdin) in a running minimal VM: dial the agent over vsock, send
// the request, spawn, wait, read the result. One op is execBatch execs;
// p50 and p99 are over every exec, at least minExecs of them (when
// -benchtime asks for fewer, the rest run untimed after the loop).
func BenchmarkExecTrue(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "minimal", "PYRO_TEST_ENV_MINIMAL")
	vm := benchStart(b, e, benchDisk(b, e))
	req := proto.ExecRequest{Argv: []string{"true"}}
	for range 10 { // warm up: the agent, the guest's page cache
		benchExec(b, vm, req, io.Discard)
	}
	var lat []time.Duration
	one := func() {
		start := time.Now()
		benchExec(b, vm, req, io.Discard)
		lat = append(lat, time.Since(start))
	}
	for b.Loop() {
		for range execBatch {
			one()
		}
	}
	for len(lat) < minExecs {
		one()
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	b.ReportMetric(usOf(p50), "p50-us")
	b.ReportMetric(usOf(p99), "p99-us")
	b.ReportMetric(usOf(percentile(lat, 100)), "max-us")
	b.Logf("exec true (argv) in a running minimal VM: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d execs",
		msOf(p50), msOf(p99), msOf(percentile(lat, 100)), len(lat))
}

// vsockMiB is the size of each BenchmarkVsockThroughput transfer.
const vsockMiB = 16

// BenchmarkVsockThroughput moves vsockMiB MiB through the agent each way per
// op in a running minimal VM: guest to host as an exec of dd writing zeros
// to its stdout in 1 MiB writes (the host counts and discards them), host to
// guest as an exec of `cat >/dev/null` fed that much stdin. (A writer of
// small blocks, such as busybox head -c's 4 KiB, is several times slower
// guest to host: the agent then forwards small frames.) Each transfer is timed on the host
// from the exec's call to its result, so it includes one exec round trip
// (see BenchmarkExecTrue), small beside a transfer of seconds.
func BenchmarkVsockThroughput(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "minimal", "PYRO_TEST_ENV_MINIMAL")
	vm := benchStart(b, e, benchDisk(b, e))
	const n = vsockMiB << 20
	out := proto.ExecRequest{Argv: []string{"dd", "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", vsockMiB)}}
	var g2h, h2g []float64
	for b.Loop() {
		var cw countWriter
		start := time.Now()
		benchExec(b, vm, out, &cw)
		d := time.Since(start)
		if cw.n != n {
			b.Fatalf("guest to host: %d bytes arrived, want %d", cw.n, n)
		}
		g2h = append(g2h, mibPerSec(n, d))

		start = time.Now()
		benchExec(b, vm, proto.ExecRequest{Shell: "cat >/dev/null", Stdin: io.LimitReader(zeroReader{}, n)}, nil)
		h2g = append(h2g, mibPerSec(n, time.Since(start)))
	}
	mg, mh := medianF(g2h), medianF(h2g)
	b.ReportMetric(mg, "guest-to-host-MiB/s")
	b.ReportMetric(mh, "host-to-guest-MiB/s")
	b.Logf("vsock through the agent, %d MiB per transfer, medians over %d: guest->host %.1f MiB/s, host->guest %.1f MiB/s",
		vsockMiB, len(g2h), mg, mh)
}

// Sizes of BenchmarkVirtioBlk's passes.
const (
	blkReadMiB  = 64
	blkWriteMiB = 32
	blkRandDur  = 2 * time.Second
	blkRandOffs = 4096 // distinct random offsets, cycled
)

// randReadPy reads 4 KiB blocks of /dev/vda at random block-aligned offsets
// with O_DIRECT into a page-aligned (mmap) buffer for argv[1] seconds and
// prints the reads done and the seconds taken. The offsets are drawn before
// the clock starts.
const randReadPy = `
import mmap, os, random, sys, time
fd = os.open("/dev/vda", os.O_RDONLY | os.O_DIRECT)
blocks = os.lseek(fd, 0, os.SEEK_END) // 4096
buf = mmap.mmap(-1, 4096)
rnd = random.Random(1)
offs = [rnd.randrange(blocks) * 4096 for _ in range(int(sys.argv[2]))]
n, t0 = 0, time.perf_counter()
end = t0 + float(sys.argv[1])
while True:
    for o in offs[n % len(offs):][:64]:
        if os.preadv(fd, [buf], o) != 4096:
            sys.exit("short read")
        n += 1
    t = time.perf_counter()
    if t >= end:
        break
print(n, t - t0)
`

// BenchmarkVirtioBlk measures the debian-12 VM's /dev/vda (virtio-blk over
// a copy-on-write disk.Stack whose base is the environment's rootfs.ext4)
// and the same access patterns done by this process on the host's files:
//   - sequential read: dd bs=1M iflag=direct of blkReadMiB MiB of /dev/vda;
//     on the host, 1 MiB preads of rootfs.ext4;
//   - sequential write: dd bs=1M oflag=direct conv=fsync of blkWriteMiB MiB
//     to a new file on the root filesystem (deleted after each op); on the
//     host, 1 MiB writes to a new file beside the VM's disk layer, then fsync;
//   - random read: 4 KiB O_DIRECT preads at random offsets of /dev/vda for
//     blkRandDur (python3); on the host, the same over rootfs.ext4.
//
// The guest's rates are its own (dd's and python's clocks), so exec and
// interpreter start-up are left out. One op is one pass of each.
func BenchmarkVirtioBlk(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "debian-12", "PYRO_TEST_ENV_DEBIAN")
	d := benchDisk(b, e)
	vm := benchStart(b, e, d)
	hostDir := b.TempDir()
	randPy := []string{"python3", "-c", randReadPy, strconv.FormatFloat(blkRandDur.Seconds(), 'f', -1, 64), strconv.Itoa(blkRandOffs)}

	var gRead, hRead, gWrite, hWrite, gRand, hRand []float64
	var direct [3]bool
	for b.Loop() {
		_, errOut := benchExec(b, vm, proto.ExecRequest{Argv: []string{"dd", "if=/dev/vda", "of=/dev/null", "bs=1M",
			fmt.Sprintf("count=%d", blkReadMiB), "iflag=direct"}}, io.Discard)
		gRead = append(gRead, ddRate(b, errOut, blkReadMiB<<20))
		var r float64
		r, direct[0] = hostSeqRead(b, e.Rootfs, blkReadMiB<<20)
		hRead = append(hRead, r)

		_, errOut = benchExec(b, vm, proto.ExecRequest{Shell: fmt.Sprintf(
			"dd if=/dev/zero of=/root/pyro-bench.dat bs=1M count=%d oflag=direct conv=fsync && rm /root/pyro-bench.dat && sync",
			blkWriteMiB)}, io.Discard)
		gWrite = append(gWrite, ddRate(b, errOut, blkWriteMiB<<20))
		r, direct[1] = hostSeqWrite(b, filepath.Join(hostDir, "write.dat"), blkWriteMiB<<20)
		hWrite = append(hWrite, r)

		out, _ := benchExec(b, vm, proto.ExecRequest{Argv: randPy}, nil)
		var n int
		var secs float64
		if _, err := fmt.Sscan(out, &n, &secs); err != nil || n == 0 || secs <= 0 {
			b.Fatalf("random-read script printed %q: %v", out, err)
		}
		gRand = append(gRand, float64(n)/secs)
		r, direct[2] = hostRandRead(b, e.Rootfs, blkRandDur, blkRandOffs)
		hRand = append(hRand, r)
	}
	report := func(what, unit string, guest, host []float64, direct bool) string {
		g, h := medianF(guest), medianF(host)
		b.ReportMetric(g, what+"-guest-"+unit)
		b.ReportMetric(h, what+"-host-"+unit)
		b.ReportMetric(g/h, what+"-guest/host")
		return fmt.Sprintf("%s guest %.0f %s vs host %.0f %s (%s) = %.3f", what, g, unit, h, unit, directNote(direct), g/h)
	}
	b.Logf("virtio-blk, debian-12, medians over %d: %s; %s; %s", len(gRead),
		report("seqread", "MiB/s", gRead, hRead, direct[0]),
		report("seqwrite", "MiB/s", gWrite, hWrite, direct[1]),
		report("randread4k", "IOPS", gRand, hRand, direct[2]))
}

var ddCopied = regexp.MustCompile(`(\d+) bytes .*copied, ([0-9.e+-]+) s`)

// ddRate parses GNU dd's final line on stderr into MiB/s.
func ddRate(tb testing.TB, stderr string, want int64) float64 {
	tb.Helper()
	m := ddCopied.FindStringSubmatch(stderr)
	if m == nil {
		tb.Fatalf("dd said %q", stderr)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	secs, err := strconv.ParseFloat(m[2], 64)
	if n != want || err != nil || secs <= 0 {
		tb.Fatalf("dd said %q: want %d bytes copied", stderr, want)
	}
	return float64(n) / (1 << 20) / secs
}

// hostSeqRead reads the first n bytes of path in 1 MiB preads.
func hostSeqRead(tb testing.TB, path string, n int64) (mibps float64, direct bool) {
	tb.Helper()
	fd, direct, err := openDirect(path, unix.O_RDONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Close(fd)
	buf := alignedBuf(tb, 1<<20)
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if k, err := unix.Pread(fd, buf, off); err != nil || k != len(buf) {
			tb.Fatalf("reading %s at %d: %d bytes, %v", path, off, k, err)
		}
	}
	return mibPerSec(n, time.Since(start)), direct
}

// hostSeqWrite writes n bytes to a new file at path in 1 MiB writes, then
// fsyncs and removes it; the time includes the fsync.
func hostSeqWrite(tb testing.TB, path string, n int64) (mibps float64, direct bool) {
	tb.Helper()
	fd, direct, err := openDirect(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(path)
	defer unix.Close(fd)
	buf := alignedBuf(tb, 1<<20)
	start := time.Now()
	for off := int64(0); off < n; off += int64(len(buf)) {
		if k, err := unix.Write(fd, buf); err != nil || k != len(buf) {
			tb.Fatalf("writing %s at %d: %d bytes, %v", path, off, k, err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		tb.Fatal(err)
	}
	return mibPerSec(n, time.Since(start)), direct
}

// hostRandRead does 4 KiB preads of path at nOffs random block-aligned
// offsets, cycled, for dur, as randReadPy does in the guest.
func hostRandRead(tb testing.TB, path string, dur time.Duration, nOffs int) (iops float64, direct bool) {
	tb.Helper()
	fd, direct, err := openDirect(path, unix.O_RDONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		tb.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	offs := make([]int64, nOffs)
	for i := range offs {
		offs[i] = rnd.Int64N(st.Size/4096) * 4096
	}
	buf := alignedBuf(tb, 4096)
	n := 0
	start := time.Now()
	var el time.Duration
	for {
		for range 64 {
			if k, err := unix.Pread(fd, buf, offs[n%nOffs]); err != nil || k != len(buf) {
				tb.Fatalf("reading %s at %d: %d bytes, %v", path, offs[n%nOffs], k, err)
			}
			n++
		}
		if el = time.Since(start); el >= dur {
			break
		}
	}
	return float64(n) / el.Seconds(), direct
}

// BenchmarkVMMMemory measures what a VM costs in host memory beyond its
// guest's pages: the growth of this process's resident set across Start of
// an idle minimal VM (agent ready), less the Rss of the guest-memory mapping
// (the anonymous mmap of benchMemMiB MiB; see readRSS). Go's heap is
// collected and returned to the OS before each reading. One op is one VM,
// closed before the next. The first VM also faults in the VMM's code and
// the runtime's one-time state, so it is reported apart (first-vm-*); the
// medians are over the VMs after it (all of them when there is only one).
func BenchmarkVMMMemory(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	e := benchEnv(b, "minimal", "PYRO_TEST_ENV_MINIMAL")
	settle := func() rssSnapshot {
		time.Sleep(300 * time.Millisecond) // let a closed VM's goroutines end
		runtime.GC()
		debug.FreeOSMemory()
		s, err := readRSS(benchMemMiB)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	var over, growth, guest []float64
	var slack float64
	for b.Loop() {
		d := benchDisk(b, e)
		before := settle()
		if before.guests != 0 {
			b.Fatalf("%d mappings of about %d MiB before Start: the guest mapping cannot be told apart:\n%s",
				before.guests, benchMemMiB, strings.Join(before.found, "\n"))
		}
		vm := benchStart(b, e, d)
		after := settle()
		if after.guests != 1 {
			b.Fatalf("%d anonymous mappings of about %d MiB after Start, want 1 (the guest's memory):\n%s",
				after.guests, benchMemMiB, strings.Join(after.found, "\n"))
		}
		slack = max(slack, float64(after.slackKiB)/1024)
		g := float64(after.totalKiB-before.totalKiB) / 1024
		growth = append(growth, g)
		guest = append(guest, float64(after.guestKiB)/1024)
		over = append(over, g-float64(after.guestKiB)/1024)
		vm.Close()
		d.Close()
	}
	steady := func(xs []float64) []float64 {
		if len(xs) > 1 {
			return xs[1:]
		}
		return xs
	}
	mo, mg, mr := medianF(steady(over)), medianF(steady(guest)), medianF(steady(growth))
	b.ReportMetric(mo, "vmm-rss-MiB")
	b.ReportMetric(mg, "guest-rss-MiB")
	b.ReportMetric(mr, "rss-growth-MiB")
	b.ReportMetric(over[0], "first-vm-vmm-rss-MiB")
	b.Logf("VMM resident memory beyond guest pages (idle minimal VM, %d MiB guest): median %.1f MiB over %d VMs after the first (RSS growth %.1f MiB, guest pages %.1f MiB); first VM %.1f MiB; all: %s MiB; error at most %.2f MiB from a merged neighbour mapping",
		benchMemMiB, mo, len(steady(over)), mr, mg, over[0], fmtFloats(over), slack)
}

func fmtFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}
