package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/testinit"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// initMarker is what the test initramfs prints once /init runs.
const initMarker = testinit.Marker

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
	if err := testinit.Write(f, busybox); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCmdline is the guest command line of the end-to-end boots: quiet,
// since under nested virtualization each console byte costs a VM exit.
// PYRO_TEST_CMDLINE replaces it when debugging a boot.
var testCmdline = cmp.Or(os.Getenv("PYRO_TEST_CMDLINE"), "console=ttyS0 quiet loglevel=1 reboot=acpi panic=-1 pci=off")

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
			cpus, online, err := testinit.Parse(r.stdout)
			if err != nil {
				t.Fatalf("%v:\n%s", err, r.stdout)
			}
			wantOnline := "0"
			if vcpus > 1 {
				wantOnline = fmt.Sprintf("0-%d", vcpus-1)
			}
			if cpus != vcpus || online != wantOnline {
				t.Fatalf("guest sees cpus=%d online=%s, want %d and %s", cpus, online, vcpus, wantOnline)
			}
			if !strings.Contains(r.stderr, "guest powered off") {
				t.Fatalf("no clean poweroff reported: %s", r.stderr)
			}
		})
	}
}
