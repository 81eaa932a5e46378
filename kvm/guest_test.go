package kvm_test

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// realModeGuest runs code in 16-bit real mode at guest address 0x1000, with
// one page of memory there and nothing else, and returns its vCPU.
func realModeGuest(t *testing.T, code []byte) *kvm.VCPU {
	t.Helper()
	sys := kvmtest.Require(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	mem, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	copy(mem, code)
	if err := vm.SetUserMemoryRegion(kvm.MemoryRegion{Slot: 0, GuestAddr: 0x1000, Memory: mem}); err != nil {
		t.Fatal(err)
	}
	// The test goroutine is the vCPU thread for the whole test.
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	vcpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vcpu.Close() })
	s, err := vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	s.DS.Base, s.DS.Selector = 0, 0
	if err := vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := vcpu.SetRegs(kvm.Regs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return vcpu
}

// A tiny guest reports through a port write and an MMIO store, reads an MMIO
// value the host supplies, echoes it to the port and halts.
func TestTinyGuestPortAndMMIO(t *testing.T) {
	vcpu := realModeGuest(t, []byte{
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xb0, 0x41, // mov al, 'A'
		0xee,       // out dx, al
		0xb0, 0x42, // mov al, 0x42
		0xa2, 0x00, 0x30, // mov [0x3000], al   (no memory there: MMIO)
		0xa0, 0x00, 0x30, // mov al, [0x3000]
		0xee, // out dx, al
		0xf4, // hlt
	})
	next := func(want kvm.ExitReason) kvm.Exit {
		t.Helper()
		e, err := vcpu.Run()
		if err != nil {
			t.Fatal(err)
		}
		if e.Reason != want {
			r, _ := vcpu.Regs()
			t.Fatalf("exit %v, want %v (rip %#x)", e.Reason, want, r.RIP)
		}
		return e
	}
	io, err := next(kvm.ExitIO).IO()
	if err != nil || !io.Out || io.Port != 0x3f8 || io.Size != 1 || string(io.Data) != "A" {
		t.Fatalf("first port write: %+v %v", io, err)
	}
	m, err := next(kvm.ExitMMIO).MMIO()
	if err != nil || !m.IsWrite || m.Addr != 0x3000 || len(m.Data) != 1 || m.Data[0] != 0x42 {
		t.Fatalf("MMIO store: %+v %v", m, err)
	}
	m, err = next(kvm.ExitMMIO).MMIO()
	if err != nil || m.IsWrite || m.Addr != 0x3000 || len(m.Data) != 1 {
		t.Fatalf("MMIO load: %+v %v", m, err)
	}
	m.Data[0] = 0x99
	io, err = next(kvm.ExitIO).IO()
	if err != nil || io.Data[0] != 0x99 {
		t.Fatalf("echo of the MMIO load: %+v %v", io, err)
	}
	next(kvm.ExitHLT)
}

// A guest in 32-bit protected mode with an empty IDT that raises an
// exception triple-faults, which KVM reports as KVM_EXIT_SHUTDOWN.
// PVM emulates this path differently (KVM_EXIT_INTERNAL_ERROR), so the test
// asks for hardware virtualization.
func TestTinyGuestTripleFault(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	vcpu := realModeGuest(t, []byte{
		0xcc, // int3: vector 3 lies outside the IDT, so #GP, #DF, shutdown
		0xf4, // not reached
	})
	s, err := vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	flat := kvm.Segment{Limit: 0xffffffff, Present: 1, S: 1, DB: 1, G: 1}
	s.CS, s.CS.Type, s.CS.Selector = flat, 0xb, 0x8 // execute/read, accessed
	for _, seg := range []*kvm.Segment{&s.DS, &s.ES, &s.SS} {
		*seg = flat
		seg.Type, seg.Selector = 0x3, 0x10 // read/write, accessed
	}
	s.IDT = kvm.DTable{Base: 0, Limit: 0}
	s.CR0 |= 1 // PE
	if err := vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	e, err := vcpu.Run()
	if err != nil {
		t.Fatal(err)
	}
	if e.Reason != kvm.ExitShutdown {
		t.Fatalf("exit %v, want KVM_EXIT_SHUTDOWN", e.Reason)
	}
}

// Kick from another goroutine stops a vCPU that spins in the guest.
func TestKickStopsSpinningVCPU(t *testing.T) {
	vcpu := realModeGuest(t, []byte{0xeb, 0xfe}) // jmp $
	go func() {
		if err := vcpu.Kick(); err != nil {
			t.Error(err)
		}
	}()
	e, err := vcpu.Run()
	if err != nil {
		t.Fatal(err)
	}
	if e.Reason != kvm.ExitIntr {
		t.Fatalf("exit %v, want KVM_EXIT_INTR", e.Reason)
	}
}

func TestSystemQueries(t *testing.T) {
	sys := kvmtest.Require(t)
	for _, c := range kvm.RequiredCaps {
		if v, err := sys.CheckExtension(c); err != nil {
			t.Errorf("%v: %v", c, err)
		} else {
			t.Logf("%v = %d", c, v)
		}
	}
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpuid) == 0 || cpuid[0].Function != 0 {
		t.Fatalf("supported CPUID starts with %+v", cpuid[:min(1, len(cpuid))])
	}
	msrs, err := sys.MSRIndexList()
	if err != nil || len(msrs) == 0 {
		t.Fatalf("MSR index list: %d entries, %v", len(msrs), err)
	}
}

// A Kick is consumed by the Run it interrupts: the next Run enters the
// guest again.
func TestKickIsConsumed(t *testing.T) {
	vcpu := realModeGuest(t, []byte{0xe6, 0x10, 0xeb, 0xfe}) // out 0x10, al; jmp $
	if err := vcpu.Kick(); err != nil {
		t.Fatal(err)
	}
	e, err := vcpu.Run()
	if err != nil || e.Reason != kvm.ExitIntr {
		t.Fatalf("first run: exit %v, err %v; want KVM_EXIT_INTR", e.Reason, err)
	}
	e, err = vcpu.Run()
	if err != nil || e.Reason != kvm.ExitIO {
		t.Fatalf("second run: exit %v, err %v; want KVM_EXIT_IO from the guest's out", e.Reason, err)
	}
}
