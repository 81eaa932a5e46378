package vmm

import (
	"testing"

	"github.com/pyro-mcp/pyro/kvm"
)

func find(es []kvm.CPUIDEntry, fn, idx uint32) *kvm.CPUIDEntry {
	for i := range es {
		if es[i].Function == fn && es[i].Index == idx {
			return &es[i]
		}
	}
	return nil
}

func TestGuestCPUID(t *testing.T) {
	supported := []kvm.CPUIDEntry{
		{Function: 0, EAX: 0x1f},
		{Function: 1, EBX: 0xffff0000 | 8<<8, ECX: 0x1, EDX: 0},
		{Function: 4, Index: 0, EAX: 0xfc000121}, // L1d, garbage core count
		{Function: 4, Index: 3, EAX: 0xfc000163}, // L3
		{Function: 7, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex, ECX: 0xffffffff},
		{Function: 7, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex, ECX: 0xffffffff},
		{Function: 0xb, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xb, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0xb, Index: 2, Flags: kvm.CPUIDFlagSignificantIndex},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b},
		{Function: 0x40000001, EAX: 0},
		{Function: 0x80000008, ECX: 0xffff},
		{Function: 0x8000001e, EAX: 99},
	}
	for _, c := range []struct{ id, n int }{{0, 1}, {1, 2}, {5, 8}} {
		out := guestCPUID(supported, c.id, c.n, 2500000)
		l1 := find(out, 1, 0)
		if l7 := find(out, 7, 0); l7.ECX != 0xffffffff&^ecxLA57 {
			t.Errorf("vCPU %d/%d: leaf 7 ECX %#x: want every feature but LA57", c.id, c.n, l7.ECX)
		}
		if l7 := find(out, 7, 1); l7.ECX != 0xffffffff {
			t.Errorf("vCPU %d/%d: leaf 7.1 ECX %#x changed", c.id, c.n, l7.ECX)
		}
		if got := int(l1.EBX >> 24); got != c.id {
			t.Errorf("vCPU %d/%d: leaf 1 APIC ID %d", c.id, c.n, got)
		}
		if got := int(l1.EBX >> 16 & 0xff); got != c.n {
			t.Errorf("vCPU %d/%d: leaf 1 logical count %d", c.id, c.n, got)
		}
		if l1.EBX&0xff00 != 8<<8 {
			t.Errorf("CLFLUSH size lost: %#x", l1.EBX)
		}
		if l1.ECX&ecxHypervisor == 0 || l1.ECX&1 == 0 {
			t.Errorf("leaf 1 ECX %#x: want the hypervisor bit and the host's bits", l1.ECX)
		}
		if (l1.EDX&edxHTT != 0) != (c.n > 1) {
			t.Errorf("HTT %v for %d vCPUs", l1.EDX&edxHTT != 0, c.n)
		}
		if got := int(find(out, 4, 0).EAX>>26) + 1; got != c.n {
			t.Errorf("leaf 4 cores %d, want %d", got, c.n)
		}
		if got := int(find(out, 4, 3).EAX>>14&0xfff) + 1; got != c.n {
			t.Errorf("L3 shared by %d, want %d", got, c.n)
		}
		if got := int(find(out, 4, 0).EAX>>14&0xfff) + 1; got != 1 {
			t.Errorf("L1 shared by %d, want 1", got)
		}
		core := find(out, 0xb, 1)
		if int(core.EBX) != c.n || core.EDX != uint32(c.id) || core.ECX != 2<<8|1 || 1<<core.EAX < c.n {
			t.Errorf("leaf 0xb core level %+v", core)
		}
		if smt := find(out, 0xb, 0); smt.EBX != 1 || smt.ECX != 1<<8 {
			t.Errorf("leaf 0xb SMT level %+v", smt)
		}
		if sig := find(out, 0x40000000, 0); sig.EAX < 0x40000010 || sig.EBX != 0x4b4d564b {
			t.Errorf("KVM signature leaf %+v", sig)
		}
		if f := find(out, 0x40000001, 0); f.EAX&(kvmFeatureClocksource2|kvmFeatureStableBit) == 0 {
			t.Errorf("kvm-clock not advertised: %#x", f.EAX)
		}
		if tm := find(out, 0x40000010, 0); tm == nil || tm.EAX != 2500000 {
			t.Errorf("TSC frequency leaf %+v", tm)
		}
		if amd := find(out, 0x80000008, 0); int(amd.ECX&0xff)+1 != c.n || amd.ECX&0xffff0000 != 0 {
			t.Errorf("leaf 0x80000008 ECX %#x", amd.ECX)
		}
		if ext := find(out, 0x8000001e, 0); ext.EAX != uint32(c.id) {
			t.Errorf("leaf 0x8000001e %+v", ext)
		}
	}
	// The host's table is not modified.
	if supported[1].ECX != 1 {
		t.Error("guestCPUID modified its input")
	}
}
