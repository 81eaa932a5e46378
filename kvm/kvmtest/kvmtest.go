// Package kvmtest gates pyro's VM test tiers. Tests that need /dev/kvm call
// Require or RequireStockKernels at their start.
//
// The gate is the PYRO_KVM environment variable:
//   - PYRO_KVM=1: the tests must run; an unusable /dev/kvm fails them. The
//     nested-KVM harness (make test-vm) and hosts with hardware KVM set it.
//   - PYRO_KVM=0: the tests skip, saying so; make test-unit sets it because
//     the harness runs them next.
//   - unset: on a developer machine the tests skip with a loud reason; under
//     CI=true they fail, so a lost KVM never turns a CI run green.
package kvmtest

import (
	"os"
	"testing"

	"github.com/pyro-mcp/pyro/kvm"
)

func gate(t testing.TB, why string) {
	t.Helper()
	switch os.Getenv("PYRO_KVM") {
	case "1":
		t.Fatalf("PYRO_KVM=1 but this VM test cannot run: %s", why)
	case "0":
		t.Skipf("VM test deferred (PYRO_KVM=0; make test-vm runs it): %s", why)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and this VM test cannot run: %s; run VM tests with make test-vm or PYRO_KVM=1, or set PYRO_KVM=0 to defer them explicitly", why)
	}
	t.Skipf("SKIPPING VM TEST: %s (run make test-vm for the nested-KVM harness, or PYRO_KVM=1 go test on a host with hardware KVM)", why)
}

// Require returns an open /dev/kvm for tests that run tiny guest programs
// (any KVM, PVM included), or skips/fails t as the PYRO_KVM gate says.
func Require(t testing.TB) *kvm.System {
	t.Helper()
	if os.Getenv("PYRO_KVM") == "0" {
		gate(t, "deferred")
	}
	sys, err := kvm.Open(kvm.DevicePath)
	if err != nil {
		gate(t, err.Error())
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}

// RequireStockKernels is Require for tests that boot a real distribution
// kernel, which needs hardware virtualization (VT-x or AMD-V), not PVM.
func RequireStockKernels(t testing.TB) *kvm.System {
	t.Helper()
	sys := Require(t)
	if k := kvm.DetectHost("/sys"); !k.BootsStockKernels() {
		gate(t, "this host's KVM cannot boot stock kernels: "+k.Describe())
	}
	return sys
}

// Path returns the file named by environment variable name (a test asset
// such as PYRO_TEST_KERNEL), or skips/fails t as the PYRO_KVM gate says when
// it is unset or missing.
func Path(t testing.TB, name string) string {
	t.Helper()
	p := os.Getenv(name)
	if p == "" {
		gate(t, name+" is not set (make test-vm sets it to the harness's assets)")
	}
	if _, err := os.Stat(p); err != nil {
		gate(t, name+": "+err.Error())
	}
	return p
}
