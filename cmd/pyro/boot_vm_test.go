package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/initramfs"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// initMarker is what the test initramfs prints once /init runs.
const initMarker = "PYRO-INIT-MARKER"

// markerInit is the test initramfs's /init: print the marker and the CPUs
// the kernel brought up, then power off through ACPI.
const markerInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "` + initMarker + ` cpus=$(/bin/busybox nproc) online=$(/bin/busybox cat /sys/devices/system/cpu/online)"
/bin/busybox poweroff -f
`

// markerInitramfs builds the test initramfs from the busybox binary that
// PYRO_TEST_BUSYBOX names (make test-vm sets it).
func markerInitramfs(t testing.TB) string {
	t.Helper()
	busybox := kvmtest.Path(t, "PYRO_TEST_BUSYBOX")
	p := filepath.Join(t.TempDir(), "marker.cpio")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := initramfs.NewWriter(f)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp"} {
		w.Dir(d, 0o755)
	}
	w.CharDev("/dev/console", 0o600, 5, 1)
	w.AddHost("/bin/busybox", busybox)
	w.File("/init", 0o755, []byte(markerInit))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCmdline is the guest command line of the end-to-end boots: quiet,
// since under nested virtualization each console byte costs a VM exit.
// PYRO_TEST_CMDLINE replaces it when debugging a boot.
var testCmdline = cmp.Or(os.Getenv("PYRO_TEST_CMDLINE"), "console=ttyS0 quiet loglevel=1 reboot=acpi panic=-1 pci=off")

var markerRE = regexp.MustCompile(initMarker + ` cpus=(\d+) online=(\S+)`)

// The Debian cloud kernel boots, runs /init, sees every vCPU, and powers off
// cleanly.
func TestBootDebianKernel(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	kernel := kvmtest.Path(t, "PYRO_TEST_KERNEL")
	initrd := markerInitramfs(t)
	for _, vcpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("vcpus=%d", vcpus), func(t *testing.T) {
			r := runPyro(t, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", testCmdline,
				"--vcpus", fmt.Sprint(vcpus), "--mem-mib", "256", "--console", "--timeout", "240s")
			t.Logf("stderr: %s", strings.TrimSpace(r.stderr))
			if r.code != 0 {
				t.Fatalf("pyro run exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			m := markerRE.FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no %s line on the console:\n%s", initMarker, r.stdout)
			}
			wantOnline := "0"
			if vcpus > 1 {
				wantOnline = fmt.Sprintf("0-%d", vcpus-1)
			}
			if m[1] != fmt.Sprint(vcpus) || m[2] != wantOnline {
				t.Fatalf("guest sees cpus=%s online=%s, want %d and %s", m[1], m[2], vcpus, wantOnline)
			}
			if !strings.Contains(r.stderr, "guest powered off") {
				t.Fatalf("no clean poweroff reported: %s", r.stderr)
			}
		})
	}
}
