package instance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Helpers for instance_bench_test.go: testing.TB versions of the end-to-end
// tier's helpers, statistics, and host-side I/O that bypasses the page
// cache where the filesystem allows it.

// benchMemMiB is the guest memory of the benchmarks' VMs (as the tests').
const benchMemMiB = 384

// benchEnv loads the environment whose directory (CACHE/envs/NAME) the
// variable names, skipping or failing as the PYRO_KVM gate says.
func benchEnv(tb testing.TB, name, variable string) *env.Env {
	tb.Helper()
	dir := kvmtest.Path(tb, variable)
	e, err := env.Load(filepath.Dir(filepath.Dir(dir)), name)
	if err != nil {
		tb.Fatalf("%s=%s: %v", variable, dir, err)
	}
	return e
}

// benchDisk returns a fresh copy-on-write disk over e's root filesystem.
func benchDisk(tb testing.TB, e *env.Env) *disk.Stack {
	tb.Helper()
	fi, err := os.Stat(e.Rootfs)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := disk.Create(filepath.Join(tb.TempDir(), "disk"), e.Rootfs, fi.Size())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// benchStart boots e over d and waits for its agent; the VM is closed at
// the end of tb (closing it earlier is harmless).
func benchStart(tb testing.TB, e *env.Env, d *disk.Stack) *VM {
	tb.Helper()
	console := new(countingBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Start(ctx, Config{Env: e, Disk: d, MemMiB: benchMemMiB, Console: console})
	if err != nil {
		tb.Fatalf("starting %s: %v\nconsole:\n%s", e.Name, err, console.String())
	}
	tb.Cleanup(func() { vm.Close() })
	return vm
}

// benchExec runs req, which must exit 0, and returns its stdout (when
// stdout is nil) and stderr.
func benchExec(tb testing.TB, vm *VM, req proto.ExecRequest, stdout io.Writer) (string, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	if stdout == nil {
		stdout = &o
	}
	res, err := vm.Agent.Exec(ctx, req, stdout, &e)
	if err != nil {
		tb.Fatalf("exec %q%q: %v", req.Argv, req.Shell, err)
	}
	if res.ExitCode != 0 || res.Signal != "" || res.TimedOut {
		tb.Fatalf("exec %q%q: %+v, stderr %q", req.Argv, req.Shell, res, e.String())
	}
	return o.String(), e.String()
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100).
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func medianDur(ds []time.Duration) time.Duration { return percentile(ds, 50) }

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func msOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
func usOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// mibPerSec is the rate of n bytes in d.
func mibPerSec(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// zeroReader reads zeros for ever.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// countWriter discards what it is given and counts it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// rssSnapshot is this process's resident memory from /proc/self/smaps.
type rssSnapshot struct {
	totalKiB int64    // Rss of every mapping
	guestKiB int64    // Rss of the guest-memory mapping, when one was asked for
	slackKiB int64    // how much larger than the guest's memory that mapping is
	guests   int      // how many mappings matched
	found    []string // their smaps headers, sizes and Rss, for errors
}

// guestSlackKiB is how much larger than the guest's memory the mapping
// holding it may be. The guest's memory is one private anonymous rw mmap
// of exactly its size, but the kernel merges it with an adjacent anonymous
// mapping of the same flags when there is one (a few pages of the Go
// runtime's, seen under the harness); the Rss of that neighbour, at most
// slackKiB, is then counted as the guest's.
const guestSlackKiB = 2 << 10

// readRSS sums the Rss of this process's mappings and picks out the
// anonymous read-write mapping of guestMiB MiB, or up to guestSlackKiB
// more (the guest's memory; 0: none).
func readRSS(guestMiB int) (rssSnapshot, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return rssSnapshot{}, err
	}
	defer f.Close()
	var s rssSnapshot
	var candidate bool // the current mapping is anonymous and read-write
	var header string
	var sizeKiB int64
	want := int64(guestMiB) << 10
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping's header: start-end perms offset dev inode [path].
			candidate = len(fields) == 5 && strings.HasPrefix(fields[1], "rw")
			header, sizeKiB = sc.Text(), 0
			continue
		}
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "Size:":
			sizeKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		case "Rss:":
			kib, _ := strconv.ParseInt(fields[1], 10, 64)
			s.totalKiB += kib
			if guestMiB > 0 && candidate && sizeKiB >= want && sizeKiB <= want+guestSlackKiB {
				s.guestKiB += kib
				s.slackKiB = max(s.slackKiB, sizeKiB-want)
				s.guests++
				s.found = append(s.found, fmt.Sprintf("%s (Size %d kB, Rss %d kB)", header, sizeKiB, kib))
			}
		}
	}
	return s, sc.Err()
}

// openDirect opens path with O_DIRECT, or without it where the
// filesystem refuses it (tmpfs before Linux 6.6 does: nested-KVM harness
// files live in L1's tmpfs, whose pages are the file itself, so there is
// no separate cache to bypass). direct says which.
func openDirect(path string, flags int, perm uint32) (fd int, direct bool, err error) {
	fd, err = unix.Open(path, flags|unix.O_DIRECT|unix.O_CLOEXEC, perm)
	if err == nil {
		return fd, true, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return -1, false, fmt.Errorf("open %s: %w", path, err)
	}
	fd, err = unix.Open(path, flags|unix.O_CLOEXEC, perm)
	if err != nil {
		return -1, false, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, false, nil
}

// alignedBuf returns size bytes of page-aligned memory (as O_DIRECT needs),
// unmapped at the end of tb.
func alignedBuf(tb testing.TB, size int) []byte {
	tb.Helper()
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Munmap(m) })
	return m
}

// directNote describes how host-side I/O was done, for the summaries.
func directNote(direct bool) string {
	if direct {
		return "O_DIRECT"
	}
	return "buffered: the host filesystem refuses O_DIRECT"
}
