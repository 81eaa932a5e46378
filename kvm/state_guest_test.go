package kvm_test

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// Snapshot tests: a tiny 32-bit protected-mode guest runs a while, its vCPU
// and VM state are saved (and sent through the byte encoding), its memory
// copied, and a new VM restored from them must carry on where the old one
// stopped.
//
// Guest-physical layout, one region from 0:
//
//	0x1000 GDT: null, flat code (0x08), flat data (0x10)
//	0x1100 IDT: 0x41 gates, only vector 0x40's filled in
//	0x2000 code
//	0x3000 data
//	0x8000 top of the stack
const (
	snapMemSize   = 0x8000
	snapGDT       = 0x1000
	snapIDT       = 0x1100
	snapCode      = 0x2000
	snapData      = 0x3000
	snapStack     = 0x8000
	snapVector    = 0x40
	snapPort      = 0x10
	snapIDTLimit  = (snapVector+1)*8 - 1
	cr0PE, cr0ET  = 1 << 0, 1 << 4
	cr0NE         = 1 << 5
	cr4OSFXSR     = 1 << 9
	reportEvery   = 0x1000 // the counting guest's report interval
	timerInterval = 10_000_000
)

// snapVM is a VM with guest memory at 0, an in-kernel irqchip and PIT, and
// vCPU 0 created on the calling (locked) thread.
type snapVM struct {
	vm    *kvm.VM
	vcpu  *kvm.VCPU
	mem   []byte
	close func()
}

func newSnapVM(t *testing.T, sys *kvm.System, mem []byte) *snapVM {
	t.Helper()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	g := &snapVM{vm: vm, mem: mem}
	var once sync.Once
	g.close = func() {
		once.Do(func() {
			if g.vcpu != nil {
				g.vcpu.Close()
			}
			vm.Close()
			unix.Munmap(mem)
		})
	}
	t.Cleanup(g.close)
	if err := vm.SetUserMemoryRegion(kvm.MemoryRegion{Slot: 0, GuestAddr: 0, Memory: mem}); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		t.Fatal(err)
	}
	if g.vcpu, err = vm.CreateVCPU(0); err != nil {
		t.Fatal(err)
	}
	return g
}

func guestMemory(t *testing.T) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, snapMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// bootProtectedMode loads code (and handler, for vector snapVector, at
// handlerOff within it) and starts vCPU 0 at snapCode in flat 32-bit
// protected mode with SSE enabled and KVM's supported CPUID.
func bootProtectedMode(t *testing.T, sys *kvm.System, code []byte, handlerOff int) *snapVM {
	t.Helper()
	mem := guestMemory(t)
	le := binary.LittleEndian
	le.PutUint64(mem[snapGDT+0x08:], 0x00cf9b000000ffff) // code: base 0, 4 GiB, execute/read, accessed
	le.PutUint64(mem[snapGDT+0x10:], 0x00cf93000000ffff) // data: base 0, 4 GiB, read/write, accessed
	if handlerOff >= 0 {
		h := uint32(snapCode + handlerOff)
		gate := mem[snapIDT+snapVector*8:]
		le.PutUint16(gate[0:], uint16(h))
		le.PutUint16(gate[2:], 0x08)
		gate[5] = 0x8e // present, DPL 0, 32-bit interrupt gate
		le.PutUint16(gate[6:], uint16(h>>16))
	}
	copy(mem[snapCode:], code)

	runtime.LockOSThread() // every vCPU of the test lives on this thread
	t.Cleanup(runtime.UnlockOSThread)
	g := newSnapVM(t, sys, mem)
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.vcpu.SetCPUID(cpuid); err != nil {
		t.Fatal(err)
	}
	s, err := g.vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	flat := kvm.Segment{Limit: 0xffffffff, Present: 1, S: 1, DB: 1, G: 1}
	s.CS, s.CS.Type, s.CS.Selector = flat, 0xb, 0x08
	for _, seg := range []*kvm.Segment{&s.DS, &s.ES, &s.FS, &s.GS, &s.SS} {
		*seg = flat
		seg.Type, seg.Selector = 0x3, 0x10
	}
	s.GDT = kvm.DTable{Base: snapGDT, Limit: 3*8 - 1}
	s.IDT = kvm.DTable{Base: snapIDT, Limit: snapIDTLimit}
	s.CR0 = cr0PE | cr0ET | cr0NE
	s.CR4 = cr4OSFXSR
	if err := g.vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := g.vcpu.SetRegs(kvm.Regs{RIP: snapCode, RSP: snapStack, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return g
}

// snapshot is what a VMM writes out: the encoded states and the memory.
type snapshot struct {
	vcpu, vm, mem []byte
}

// save snapshots g, whose vCPU must be stopped with its last exit
// complete, and checks that the saved CPUID would pass the compatibility
// check on this same host.
func save(t *testing.T, sys *kvm.System, g *snapVM) snapshot {
	t.Helper()
	msrs, err := sys.SaveableMSRs()
	if err != nil {
		t.Fatal(err)
	}
	vs, err := g.vcpu.SaveState(msrs)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := g.vm.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("saved: %d of %d listed MSRs readable, XSAVE area %d bytes, %d CPUID entries, MP state %d, TSC %d kHz",
		len(vs.MSRs), len(msrs), len(vs.XSave), len(vs.CPUID), vs.MPState, vs.TSCKHz)
	supported, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := kvm.CPUIDCompatible(vs.CPUID, supported); err != nil {
		t.Errorf("a guest's CPUID against its own host: %v", err)
	}
	var snap snapshot
	if snap.vcpu, err = vs.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if snap.vm, err = ms.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	snap.mem = bytes.Clone(g.mem)
	return snap
}

// restore builds a new VM from snap, as a VMM would in another process.
func restore(t *testing.T, sys *kvm.System, snap snapshot) *snapVM {
	t.Helper()
	mem := guestMemory(t)
	copy(mem, snap.mem)
	g := newSnapVM(t, sys, mem)
	var vs kvm.VCPUState
	if err := vs.UnmarshalBinary(snap.vcpu); err != nil {
		t.Fatal(err)
	}
	var ms kvm.VMState
	if err := ms.UnmarshalBinary(snap.vm); err != nil {
		t.Fatal(err)
	}
	if err := g.vcpu.RestoreState(&vs); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.RestoreState(&ms); err != nil {
		t.Fatal(err)
	}
	return g
}

// report runs the vCPU to its next port write to snapPort and returns the
// 32-bit value written. It returns ok false on an ExitIntr once kicked()
// says a Kick was sent; other ExitIntrs are the Go runtime's own SIGURG
// (goroutine preemption), which interrupts KVM_RUN just as a Kick does,
// and it runs on. kicked may be nil: never kicked.
func report(t *testing.T, v *kvm.VCPU, kicked func() bool) (val uint32, ok bool) {
	t.Helper()
	for {
		e, err := v.Run()
		if err != nil {
			t.Fatal(err)
		}
		switch e.Reason {
		case kvm.ExitIntr:
			if kicked != nil && kicked() {
				return 0, false
			}
			continue
		case kvm.ExitIO:
			io, err := e.IO()
			if err != nil || !io.Out || io.Port != snapPort || io.Size != 4 {
				t.Fatalf("unexpected port access %+v (%v)", io, err)
			}
			return binary.LittleEndian.Uint32(io.Data), true
		}
		r, _ := v.Regs()
		t.Fatalf("exit %v at rip %#x", e.Reason, r.RIP)
	}
}

// A counting guest stopped by a Kick from another goroutine and restored
// into a new VM counts on from where it stopped: its general registers,
// its SSE registers (the count is kept in XMM0, so the XSAVE area must
// come back) and its memory all continue.
func TestSnapshotRestoreContinuesCounting(t *testing.T) {
	sys := kvmtest.Require(t)
	g := bootProtectedMode(t, sys, []byte{
		0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
		0x66, 0x0f, 0x6e, 0xc8, // movd xmm1, eax
		0x66, 0x0f, 0xef, 0xc0, // pxor xmm0, xmm0
		0x31, 0xdb, // xor ebx, ebx
		// top:
		0x43,                   // inc ebx
		0x66, 0x0f, 0xfe, 0xc1, // paddd xmm0, xmm1
		0x89, 0x1d, 0x00, 0x30, 0x00, 0x00, // mov [0x3000], ebx
		0xf7, 0xc3, 0xff, 0x0f, 0x00, 0x00, // test ebx, 0xfff
		0x75, 0xed, // jnz top
		0x66, 0x0f, 0x7e, 0xc0, // movd eax, xmm0
		0xe7, 0x10, // out 0x10, eax
		0xeb, 0xe5, // jmp top
	}, -1)

	// Run to the third report, then kick the vCPU from another goroutine
	// and keep running until the kick lands, wherever in the loop.
	var last uint32
	for i := 0; i < 3; i++ {
		v, ok := report(t, g.vcpu, nil)
		if !ok || v != last+reportEvery {
			t.Fatalf("report %d: %#x (%v), want %#x", i, v, ok, last+reportEvery)
		}
		last = v
	}
	var sent atomic.Bool
	kicked := make(chan error, 1)
	go func() {
		sent.Store(true)
		kicked <- g.vcpu.Kick()
	}()
	for {
		v, ok := report(t, g.vcpu, sent.Load)
		if !ok {
			break
		}
		if v != last+reportEvery {
			t.Fatalf("report %#x after %#x", v, last)
		}
		last = v
	}
	if err := <-kicked; err != nil {
		t.Fatal(err)
	}
	r, err := g.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	count := uint32(r.RBX)
	if count < last || binary.LittleEndian.Uint32(g.mem[snapData:]) != count {
		t.Fatalf("stopped at ebx %#x, memory %#x, after reporting %#x", count, binary.LittleEndian.Uint32(g.mem[snapData:]), last)
	}
	snap := save(t, sys, g)
	g.close() // the snapshot outlives its VM

	// A state that lost XCR0 while the guest had XSAVE on is refused,
	// not resumed into a guest whose first vector instruction faults.
	var lost kvm.VCPUState
	if err := lost.UnmarshalBinary(snap.vcpu); err != nil {
		t.Fatal(err)
	}
	lost.XCRs.NrXCRs = 0
	lost.Sregs.CR4 |= 1 << 18 // OSXSAVE
	if err := newSnapVM(t, sys, guestMemory(t)).vcpu.RestoreState(&lost); err == nil || !strings.Contains(err.Error(), "no XCR0") {
		t.Errorf("restoring a state without XCR0 under CR4.OSXSAVE: %v", err)
	}

	h := restore(t, sys, snap)
	want := (count/reportEvery + 1) * reportEvery
	for i := 0; i < 3; i++ {
		v, ok := report(t, h.vcpu, nil)
		if !ok || v != want {
			t.Fatalf("report %d after the restore at ebx %#x: %#x (%v), want %#x", i, count, v, ok, want)
		}
		if m := binary.LittleEndian.Uint32(h.mem[snapData:]); m != v {
			t.Fatalf("memory counter %#x at report %#x", m, v)
		}
		want += reportEvery
	}
}

// The LAPIC timer, programmed periodic by the guest, keeps firing in the
// restored VM: its LAPIC (timer mode, count, vector), its IDT and GDT, its
// interrupt flag and its halted loop all come back.
func TestSnapshotRestoreKeepsLAPICTimer(t *testing.T) {
	sys := kvmtest.Require(t)
	code := []byte{
		0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe, 0xff, 0x01, 0x00, 0x00, // mov [SVR], 0x1ff: APIC on, spurious 0xff
		0xc7, 0x05, 0xe0, 0x03, 0xe0, 0xfe, 0x0b, 0x00, 0x00, 0x00, // mov [TDCR], 0xb: divide by 1
		0xc7, 0x05, 0x20, 0x03, 0xe0, 0xfe, 0x40, 0x00, 0x02, 0x00, // mov [LVTT], 0x20040: periodic, vector 0x40
		0xc7, 0x05, 0x80, 0x03, 0xe0, 0xfe, 0x80, 0x96, 0x98, 0x00, // mov [TMICT], 10000000
		0xfb, // sti
		// loop:
		0xf4,                         // hlt
		0xa1, 0x00, 0x30, 0x00, 0x00, // mov eax, [0x3000]
		0xe7, 0x10, // out 0x10, eax
		0xeb, 0xf6, // jmp loop
	}
	if binary.LittleEndian.Uint32(code[36:]) != timerInterval {
		t.Fatal("the guest's timer count and timerInterval disagree")
	}
	const handlerOff = 0x40
	code = append(code, make([]byte, handlerOff-len(code))...)
	code = append(code,
		0xff, 0x05, 0x00, 0x30, 0x00, 0x00, // inc dword [0x3000]
		0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00, // mov [EOI], 0
		0xcf, // iret
	)
	g := bootProtectedMode(t, sys, code, handlerOff)

	ticks := func(v *kvm.VCPU, n int, after uint32) uint32 {
		t.Helper()
		// A guard against a test that would hang: if the ticks stop, the
		// guest halts for good; kick it shortly before the test's own
		// deadline so the failure says why. (Not a timing assertion: it
		// fires only where go test would time out anyway.)
		var fired atomic.Bool
		if d, ok := t.Deadline(); ok && time.Until(d) > time.Minute {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(time.Until(d) - 30*time.Second):
					fired.Store(true)
					v.Kick()
				case <-stop:
				}
			}()
			defer func() { close(stop); wg.Wait() }() // no Kick after v closes
		}
		for i := 0; i < n; i++ {
			c, ok := report(t, v, fired.Load)
			if !ok {
				t.Fatalf("no LAPIC timer tick after count %d", after)
			}
			if c <= after {
				t.Fatalf("tick count %d after %d", c, after)
			}
			after = c
		}
		return after
	}
	before := ticks(g.vcpu, 3, 0)
	// The last exit was the guest's out: complete it, then save.
	if e, err := g.vcpu.CompletePendingIO(); err != nil || e.Reason != kvm.ExitIntr {
		t.Fatalf("completing the port write: exit %v, %v", e.Reason, err)
	}
	if l, err := g.vcpu.LAPIC(); err != nil || binary.LittleEndian.Uint32(l.Regs[0x320:])&0x300ff != 0x20040 {
		t.Fatalf("the guest did not program the timer (LVTT %#x, %v)", binary.LittleEndian.Uint32(l.Regs[0x320:]), err)
	}
	snap := save(t, sys, g)
	saved := binary.LittleEndian.Uint32(snap.mem[snapData:])
	if saved < before {
		t.Fatalf("saved count %d below the last report %d", saved, before)
	}
	g.close()

	h := restore(t, sys, snap)
	after := ticks(h.vcpu, 5, saved)
	t.Logf("ticks: %d before the save, %d saved, %d after five more", before, saved, after)
}
