package main

// The harness self-tests run inside L1 through `vmtest exec` and prove the
// wiring end to end:
//
//	go build -o build/vmtest ./cmd/vmtest && ./build/vmtest assets --dir build/assets
//	PYRO_KVM=1 go test -count=1 -p 1 -exec "$PWD/build/vmtest exec" -run Self -v ./cmd/vmtest
//
// Knobs that make them misbehave on purpose, to check that vmtest reports it:
// PYRO_VMTEST_SELFTEST_FAIL=1 fails a test, PYRO_VMTEST_SELFTEST_HANG=1 hangs
// one (combine with PYRO_VMTEST_TIMEOUT=1m). With PYRO_VMTEST_QEMU=1,
// TestSelfQEMU boots an L2 guest with QEMU inside L1.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/initramfs"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// requireKVM gates the self-tests like every VM test (see kvm/kvmtest).
func requireKVM(t *testing.T) { t.Helper(); kvmtest.Require(t) }

func TestSelfKVM(t *testing.T) {
	// Require opens /dev/kvm and checks KVM_GET_API_VERSION is 12.
	requireKVM(t)
	_, errAMD := os.Stat("/sys/module/kvm_amd")
	_, errIntel := os.Stat("/sys/module/kvm_intel")
	if errAMD != nil && errIntel != nil {
		t.Error("neither kvm_amd nor kvm_intel is loaded: this KVM cannot boot stock kernels")
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		t.Error("kvm_pvm is loaded: this is the PVM host, not a hardware-virtualized KVM (run through vmtest exec)")
	}
	if os.Getenv("PYRO_VMTEST_SELFTEST_FAIL") == "1" {
		t.Fatal("failing on purpose (PYRO_VMTEST_SELFTEST_FAIL=1)")
	}
}

// TestSelfEnvironment checks what vmtest promises the binary inside L1.
func TestSelfEnvironment(t *testing.T) {
	requireKVM(t)
	if os.Getenv("PYRO_VMTEST_L1") != "1" {
		t.Skip("not running inside vmtest's L1")
	}
	for k, want := range map[string]string{"HOME": "/root", "TMPDIR": "/tmp", "PYRO_KVM": "1"} {
		if got := os.Getenv(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := os.Getenv("GOCACHE"); got != "" {
		t.Errorf("host variable GOCACHE leaked into L1: %q", got)
	}
	if b, err := os.ReadFile("testdata/selftest.txt"); err != nil || !strings.HasPrefix(string(b), "vmtest testdata") {
		t.Errorf("testdata/selftest.txt in the working directory: %q, %v", b, err)
	}
	if p := os.Getenv("PYRO_TEST_KERNEL"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("PYRO_TEST_KERNEL=%s not copied into L1: %v", p, err)
		}
	}
	fmt.Fprintln(os.Stderr, "selftest: this line went to stderr")
	d := t.TempDir()
	if !strings.HasPrefix(d, "/tmp/") {
		t.Errorf("TempDir %s not under /tmp", d)
	}
	if err := os.WriteFile(filepath.Join(d, "f"), make([]byte, 64<<20), 0o644); err != nil {
		t.Errorf("writing 64 MiB to /tmp: %v", err)
	}
	if os.Getenv("PYRO_VMTEST_SELFTEST_HANG") == "1" {
		t.Log("hanging on purpose (PYRO_VMTEST_SELFTEST_HANG=1)")
		time.Sleep(24 * time.Hour)
	}
}

// TestSelfQEMU boots the Debian kernel as an L2 guest with QEMU on L1's KVM:
// PYRO_VMTEST_QEMU=1 PYRO_TEST_KERNEL=$PWD/build/assets/vmlinuz
// PYRO_TEST_BUSYBOX=$PWD/build/assets/busybox.
func TestSelfQEMU(t *testing.T) {
	requireKVM(t)
	kernel, busybox := os.Getenv("PYRO_TEST_KERNEL"), os.Getenv("PYRO_TEST_BUSYBOX")
	if os.Getenv("PYRO_VMTEST_QEMU") != "1" || kernel == "" || busybox == "" {
		t.Skip("needs PYRO_VMTEST_QEMU=1, PYRO_TEST_KERNEL and PYRO_TEST_BUSYBOX")
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	var cpio bytes.Buffer
	w := initramfs.NewWriter(&cpio)
	_ = w.CharDev("/dev/console", 0o600, 5, 1)
	_ = w.File("/bin/busybox", 0o755, bb)
	_ = w.File("/init", 0o755, []byte("#!/bin/busybox sh\n/bin/busybox echo L2-INIT-REACHED\n/bin/busybox poweroff -f\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "l2.cpio")
	if err := os.WriteFile(initrd, cpio.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "kvm", "-M", "microvm", "-cpu", "host",
		"-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet lpj=1671168").CombinedOutput()
	t.Logf("L2 boot via QEMU/KVM in L1: %.1fs", time.Since(start).Seconds())
	if err != nil || !bytes.Contains(out, []byte("L2-INIT-REACHED")) {
		t.Fatalf("qemu in L1: %v\n%s", err, out)
	}
}
