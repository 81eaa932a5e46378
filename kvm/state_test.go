package kvm_test

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm"
)

// A host table: GenuineIntel with a few features in each compared leaf.
func hostCPUID() []kvm.CPUIDEntry {
	return []kvm.CPUIDEntry{
		{Function: 0, EAX: 0x1f, EBX: 0x756e6547, EDX: 0x49656e69, ECX: 0x6c65746e},
		{Function: 1, ECX: 1<<0 | 1<<9 | 1<<26, EDX: 1<<0 | 1<<4 | 1<<25},
		{Function: 7, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex, EBX: 1<<5 | 1<<8, ECX: 1 << 2, EDX: 1 << 29},
		{Function: 7, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex, EAX: 1 << 4},
		{Function: 0xd, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex, EAX: 1<<0 | 1<<1},
		{Function: 0x80000001, ECX: 1 << 0, EDX: 1<<11 | 1<<29},
	}
}

func TestCPUIDCompatible(t *testing.T) {
	host := hostCPUID()
	if err := kvm.CPUIDCompatible(host, host); err != nil {
		t.Fatalf("a table against itself: %v", err)
	}

	// What a running guest's table looks like: the VMM's hypervisor and
	// HTT bits, OSXSAVE and OSPKE as the guest left CR4, the TSC-deadline
	// timer; none is a host feature.
	saved := hostCPUID()
	saved[1].ECX |= 1<<31 | 1<<27 | 1<<24
	saved[1].EDX |= 1 << 28
	saved[2].ECX |= 1 << 4
	// Fewer features than the host has is fine too.
	saved[2].EBX &^= 1 << 8
	if err := kvm.CPUIDCompatible(saved, host); err != nil {
		t.Fatalf("VM-defined bits counted as host features: %v", err)
	}

	// A leaf the saved table lacks requires nothing.
	if err := kvm.CPUIDCompatible(hostCPUID()[:3], host); err != nil {
		t.Fatalf("missing leaves in the saved table: %v", err)
	}
}

func TestCPUIDIncompatible(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(saved, host []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry)
		wants []string
	}{
		{"vendor", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			h[0].EBX, h[0].EDX, h[0].ECX = 0x68747541, 0x69746e65, 0x444d4163 // AuthenticAMD
			return s, h
		}, []string{`"GenuineIntel"`, `"AuthenticAMD"`}},
		{"leaf 7.0 EBX", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			h[2].EBX &^= 1 << 5
			return s, h
		}, []string{"leaf 0x7.0 EBX lacks 0x00000020 (bits 5)"}},
		{"two registers", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			s[1].ECX |= 1<<12 | 1<<28
			s[5].EDX |= 1 << 27
			return s, h
		}, []string{"leaf 0x1.0 ECX lacks 0x10001000 (bits 12,28)", "leaf 0x80000001.0 EDX lacks 0x08000000 (bits 27)"}},
		{"xsave leaf", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			s[4].EAX |= 1 << 3 // XSAVES
			return s, h
		}, []string{"leaf 0xd.1 EAX", "bits 3"}},
		{"leaf absent on the host", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			return s, h[:5]
		}, []string{"leaf 0x80000001.0 ECX lacks 0x00000001 (bits 0)", "leaf 0x80000001.0 EDX"}},
		{"no vendor leaf", func(s, h []kvm.CPUIDEntry) ([]kvm.CPUIDEntry, []kvm.CPUIDEntry) {
			return s[1:], h
		}, []string{"no leaf 0"}},
	} {
		saved, host := c.edit(hostCPUID(), hostCPUID())
		err := kvm.CPUIDCompatible(saved, host)
		if err == nil {
			t.Errorf("%s: compatible", c.name)
			continue
		}
		for _, w := range c.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", c.name, err, w)
			}
		}
	}
}

// Leaf 7 subleaf 1 must not answer for subleaf 0, nor the reverse.
func TestCPUIDCompatibleMatchesSubleaves(t *testing.T) {
	host := hostCPUID()
	saved := hostCPUID()
	saved[2], saved[3] = saved[3], saved[2] // subleaf 1 listed first
	if err := kvm.CPUIDCompatible(saved, host); err != nil {
		t.Fatal(err)
	}
	saved[3].EBX |= 1 << 30 // on subleaf 0
	if err := kvm.CPUIDCompatible(saved, host); err == nil || !strings.Contains(err.Error(), "0x7.0 EBX") {
		t.Fatalf("a missing leaf 7.0 bit: %v", err)
	}
}
