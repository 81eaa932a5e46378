package vmm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// bootPayload writes a fake bzImage whose 64-bit entry point runs code, so
// the VMM's real boot path (zero page, page tables, long mode) runs without
// a Linux kernel.
func bootPayload(t *testing.T, code []byte) string {
	t.Helper()
	img := fakeBzImage(27, 0x1000)
	copy(img[28*512+entry64Offset:], code)
	p := filepath.Join(t.TempDir(), "payload.bzImage")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runPayload(t *testing.T, code []byte, vcpus int) (Result, string) {
	t.Helper()
	kvmtest.Require(t)
	var console bytes.Buffer
	m, err := New(Config{Kernel: bootPayload(t, code), VCPUs: vcpus, MemMiB: 64, Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := m.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res, console.String()
}

// In long mode at the kernel entry point: print through the UART, then
// power off through the ACPI sleep register, as Linux's poweroff does.
func TestPayloadConsoleAndPoweroff(t *testing.T) {
	res, console := runPayload(t, []byte{
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xb0, 'o', 0xee, // mov al, 'o'; out dx, al
		0xb0, 'k', 0xee, // mov al, 'k'; out dx, al
		0xb0, '\n', 0xee, // mov al, '\n'; out dx, al
		0x66, 0xba, 0x00, 0x06, // mov dx, 0x600
		0xb0, 0x34, 0xee, // mov al, SLP_TYP(5)<<2|SLP_EN; out dx, al
		0xeb, 0xfe, // jmp $
	}, 2)
	if res.Reason != StopPoweroff {
		t.Fatalf("stopped with %v (%s), want poweroff", res.Reason, res.Detail)
	}
	if console != "ok\n" || len(res.ConsoleTail) != 1 || res.ConsoleTail[0] != "ok" {
		t.Fatalf("console %q, tail %q", console, res.ConsoleTail)
	}
}

// A guest that faults with no IDT triple-faults; the VMM stops it with a
// diagnostic naming the exit, the vCPU and its registers: where it faulted
// on Intel, its reset state (said so) on AMD, where KVM re-initialises a
// vCPU after a shutdown.
func TestPayloadTripleFaultDiagnostic(t *testing.T) {
	res, _ := runPayload(t, []byte{0x0f, 0x0b}, 1) // ud2
	if res.Reason != StopCrash {
		t.Fatalf("stopped with %v, want crash", res.Reason)
	}
	want := []string{"vCPU 0", "triple fault", "KVM_EXIT_SHUTDOWN", "rip=", "cr0=", "efer="}
	if strings.Contains(res.Detail, "rip=0xfff0") {
		want = append(want, "reset state")
	} else {
		want = append(want, "rip=0x100200", "cr3=0x9000", "efer=0x500")
	}
	for _, want := range want {
		if !strings.Contains(res.Detail, want) {
			t.Errorf("diagnostic %q lacks %q", res.Detail, want)
		}
	}
}

// A guest that spins forever is stopped when the caller's context ends.
func TestPayloadHangStopsOnCancel(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Kernel: bootPayload(t, []byte{0xeb, 0xfe}), VCPUs: 2, MemMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := m.Run(ctx)
	if err != nil || res.Reason != StopCanceled {
		t.Fatalf("got %v %v, want canceled", res.Reason, err)
	}
}

// DebugVCPUs describes a running VM's vCPUs without stopping it: the boot
// CPU halted with interrupts off, the second still waiting for its SIPI.
func TestDebugVCPUs(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Kernel: bootPayload(t, []byte{0xfa, 0xf4, 0xeb, 0xfd}), VCPUs: 2, MemMiB: 64}) // cli; hlt; jmp back
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		res, _ := m.Run(ctx)
		done <- res
	}()
	var report string
	for range 50 { // until the boot CPU reaches its hlt
		report = m.DebugVCPUs()
		if strings.Contains(report, "vCPU 0: halted") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("report:\n%s", report)
	for _, want := range []string{"vCPU 0: halted;", "interrupts disabled", "APIC TPR", "vCPU 1: waiting for INIT/SIPI"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The probes left the VM running, and a second one works as well.
	select {
	case res := <-done:
		t.Fatalf("the VM stopped after a probe: %v %s", res.Reason, res.Detail)
	default:
	}
	if again := m.DebugVCPUs(); !strings.Contains(again, "vCPU 0: halted;") {
		t.Errorf("second report: %s", again)
	}
	cancel()
	if res := <-done; res.Reason != StopCanceled {
		t.Fatalf("stopped with %v (%s), want canceled", res.Reason, res.Detail)
	}
	// A stopped or closed VM is described as such; nothing is kicked.
	if got := m.DebugVCPUs(); !strings.Contains(got, "stopped") {
		t.Errorf("after the stop: %q", got)
	}
	m.Close()
	if got := m.DebugVCPUs(); !strings.Contains(got, "stopped") {
		t.Errorf("after Close: %q", got)
	}
}
