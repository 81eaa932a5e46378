package vmm

import (
	"math/bits"

	"github.com/pyro-mcp/pyro/kvm"
)

// CPUID leaves and bits pyro edits.
const (
	leafFeatures         = 0x1
	leafCacheParams      = 0x4
	leafExtFeatures      = 0x7
	leafExtTopology      = 0xb
	leafV2ExtTopology    = 0x1f
	leafKVMSignature     = 0x40000000
	leafKVMFeatures      = 0x40000001
	leafHypervisorTiming = 0x40000010
	leafAMDSizes         = 0x80000008
	leafAMDExtAPICID     = 0x8000001e

	ecxHypervisor = 1 << 31
	edxHTT        = 1 << 28
	ecxLA57       = 1 << 16 // leaf 7: 5-level paging

	// KVM paravirtual features (leaf 0x40000001 EAX) the guest needs for
	// kvm-clock: with them it reads the TSC frequency from the pvclock page
	// instead of calibrating against the PIT, which fails under nested
	// virtualization.
	kvmFeatureClocksource  = 1 << 0
	kvmFeatureClocksource2 = 1 << 3
	kvmFeatureStableBit    = 1 << 24
)

// guestCPUID derives vCPU id's CPUID table from what KVM supports on this
// host: it marks the CPU as a hypervisor guest, describes a topology of
// nvcpus single-threaded cores in one package, sets each vCPU's APIC ID,
// advertises kvm-clock with a known TSC frequency, and hides 5-level
// paging.
//
// LA57 buys a guest 128 PiB of virtual address space it cannot use and
// costs it a fifth page-table level: a longer walk on every TLB miss;
// under nested paging, up to 35 memory references per 2-D walk against 24
// with four levels on both sides. Linux turns it on whenever CPUID offers it, so pyro does
// not offer it. (The test harness's emulated CPU offers it, and its L2
// guests then ran 5-level paging, a path its nested-paging emulation
// exercises rarely.)
func guestCPUID(supported []kvm.CPUIDEntry, id, nvcpus int, tscKHz uint32) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(supported)+1)
	coreBits := uint32(bits.Len(uint(nvcpus - 1))) // bits of APIC ID that number cores
	hasTiming := false
	for _, e := range supported {
		switch e.Function {
		case leafFeatures:
			e.ECX |= ecxHypervisor
			// EBX: [31:24] initial APIC ID, [23:16] logical processors per
			// package, [15:8] CLFLUSH line size in quadwords.
			e.EBX = uint32(id)<<24 | uint32(nvcpus)<<16 | e.EBX&0xff00
			if nvcpus > 1 {
				e.EDX |= edxHTT
			} else {
				e.EDX &^= edxHTT
			}
		case leafExtFeatures:
			if e.Index == 0 {
				e.ECX &^= ecxLA57
			}
		case leafCacheParams:
			// EAX[31:26]: addressable core IDs per package, minus one.
			// EAX[25:14]: logical processors sharing this cache, minus one:
			// one (no SMT) for L1/L2, all cores for L3.
			e.EAX &= 0x3fff
			e.EAX |= uint32(nvcpus-1) << 26
			if level := (e.EAX >> 5) & 7; level == 3 {
				e.EAX |= uint32(nvcpus-1) << 14
			}
		case leafExtTopology, leafV2ExtTopology:
			e.EDX = uint32(id) // x2APIC ID
			switch e.Index {
			case 0: // SMT level: one thread per core
				e.EAX, e.EBX, e.ECX = 0, 1, 1<<8|0
			case 1: // core level
				e.EAX, e.EBX, e.ECX = coreBits, uint32(nvcpus), 2<<8|1
			default:
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index
			}
		case leafKVMSignature:
			e.EAX = max(e.EAX, leafHypervisorTiming)
		case leafKVMFeatures:
			e.EAX |= kvmFeatureClocksource | kvmFeatureClocksource2 | kvmFeatureStableBit
		case leafHypervisorTiming:
			hasTiming = true
			e.EAX, e.EBX = tscKHz, 1000000
		case leafAMDSizes:
			// ECX[7:0]: cores per package minus one; [15:12]: APIC ID bits
			// that number them.
			e.ECX = e.ECX&^0xf0ff | coreBits<<12 | uint32(nvcpus-1)
		case leafAMDExtAPICID:
			e.EAX = uint32(id) // extended APIC ID
			e.EBX = uint32(id) // compute unit ID; one thread per unit
			e.ECX = 0          // one node
		}
		out = append(out, e)
	}
	if !hasTiming {
		// The hypervisor timing leaf (as VMware and QEMU define it): TSC
		// and local APIC timer frequencies in kHz.
		out = append(out, kvm.CPUIDEntry{Function: leafHypervisorTiming, EAX: tscKHz, EBX: 1000000})
	}
	return out
}
