// Command vmtest runs pyro's VM tests inside a nested-KVM virtual machine.
//
// It sits between `go test` and the test binaries of the VM tier. The
// development and CI machines' /dev/kvm is PVM, which cannot boot stock
// kernels, so vmtest boots a Debian cloud kernel under QEMU's TCG emulator
// with an emulated AMD CPU ("L1"), loads kvm-amd there, and runs the test
// binary inside L1 against a genuine /dev/kvm (see
// shared/design/test-harness.md).
//
// Usage:
//
//	vmtest assets [--dir build/assets] [--kernel linux-image-cloud-amd64]
//	vmtest exec TESTBINARY [ARGS...]
//	vmtest marker-initrd --busybox PATH -o FILE
//
// `assets` fetches the current Debian cloud kernel, its KVM modules and
// busybox into the assets directory (idempotent; quick when up to date),
// and, when the host's QEMU is older than 10, the release's backports QEMU
// into assets/qemu, which exec then prefers (see qemu.go for why).
//
// `marker-initrd` writes the initramfs of guest/testinit (print a marker line
// and the CPU count, power off), which make demo boots.
//
// `exec` is a go test -exec wrapper:
//
//	go test -p 1 -exec "$PWD/build/vmtest exec" ./...
//
// It packs the binary into an L1 initramfs, boots L1, streams the binary's
// stdout and stderr back live and exits with the binary's exit status. The
// assets directory defaults to "assets" next to the vmtest executable
// (build/vmtest uses build/assets); set PYRO_VMTEST_ASSETS to override.
// A link to vmtest named vmtest-exec behaves like `vmtest exec`, for tools
// that cannot pass an argument.
//
// Environment of `exec`:
//
//	PYRO_VMTEST_ASSETS   assets directory (default: assets next to the executable)
//	PYRO_VMTEST_TIMEOUT  limit for the whole L1 run (default 30m; the binary's
//	                     -test.timeout plus 45s if that is sooner)
//	PYRO_VMTEST_MEM      L1 memory in MiB (default 4096)
//	PYRO_VMTEST_SMP      L1 vCPUs (default 2)
//	PYRO_VMTEST_CPU      QEMU -cpu model for L1 (default max; it must offer svm and npt)
//	PYRO_VMTEST_APPEND   extra L1 kernel command-line arguments
//	PYRO_VMTEST_RETRY=0  never rerun tests whose guest died (see retry.go)
//	PYRO_VMTEST_KVM_AMD  module parameters for L1's kvm-amd (vgif=0, say), for
//	                     experiments with the nested setup
//	PYRO_VMTEST_QEMU=1   also pack qemu-system-x86_64, its libraries and the
//	                     x86 firmware into L1, at their host paths
//	PYRO_VMTEST_CONSOLE=1  echo L1's console to stderr live, with kernel messages
//	PYRO_VMTEST_VERBOSE=1  print timings to stderr
//
// Inside L1 the binary sees only PYRO_*, CI, GOTRACEBACK and GODEBUG from the
// host, plus HOME=/root, TMPDIR=/tmp, a standard PATH and PYRO_VMTEST_L1=1; it
// runs as root in the same absolute directory as on the host, which holds the
// package's testdata/. Every PYRO_TEST_* variable whose value is the absolute
// path of a file or directory has that file or tree copied into L1 at the same
// path. L1 has busybox, /dev/kvm, loopback networking and no other network;
// its root filesystem (and /tmp) is the initramfs's tmpfs, which may fill up
// to half of PYRO_VMTEST_MEM. A dynamically linked test binary gets its shared
// libraries copied too, but CGO_ENABLED=0 binaries are smaller and simpler.
// The binary's stdout and stderr are serial ports in L1 (ttys, not pipes), and
// files it writes stay in L1: -cover reports 0% and profiles are lost.
//
// How a run is framed: L1's /init (a generated busybox script) loads
// irqbypass, kvm and kvm-amd, checks /dev/kvm, and runs the binary with stdout
// on ttyS1 and stderr on ttyS2 (both on ttyS1 when vmtest's own stdout and
// stderr are one file, as under go test, which keeps their order). Marker lines
// carrying a random nonce frame the output and carry the exit status (see
// stream.go); ttyS0 is the kernel console, shown only when something fails.
// A run without the end marker, a timeout, or a signal (SIGINT, SIGTERM,
// SIGHUP, SIGQUIT) kills QEMU and fails with the last console lines.
//
// go test runs several test binaries at once by default; with a 2-core host,
// run the VM tier with -p 1 so that only one L1 boots at a time.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "vmtest-exec" {
		args = append([]string{"exec"}, args...)
	}
	if len(args) == 0 {
		usage()
	}
	switch args[0] {
	case "assets":
		if err := cmdAssets(args[1:]); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
	case "exec":
		os.Exit(cmdExec(args[1:]))
	case "marker-initrd":
		if err := cmdMarkerInitrd(args[1:]); err != nil {
			logf("%v", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage:\n  vmtest assets [--dir build/assets] [--kernel PKG]\n  vmtest exec TESTBINARY [ARGS...]\n  vmtest marker-initrd --busybox PATH -o FILE\n")
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest: "+format+"\n", args...)
}

// signalContext is cancelled by SIGINT, SIGTERM, SIGHUP or SIGQUIT (go test
// sends SIGQUIT when a test binary overruns), so that children are killed.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
}
