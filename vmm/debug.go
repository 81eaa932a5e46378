package vmm

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/kvm"
)

// probeTimeout bounds the wait for one vCPU to answer DebugVCPUs.
const probeTimeout = 2 * time.Second

// DebugVCPUs describes every vCPU of a running VM, for a report on a
// guest that stopped answering: whether it runs or halts, where, whether
// it takes interrupts, what its local APIC holds pending or in service,
// its timer, and its last exits. Each vCPU is kicked out of the guest and
// describes itself on its own thread, then goes on running; a vCPU that
// does not come out within two seconds is named as stuck.
func (m *Machine) DebugVCPUs() string {
	m.probeMu.Lock()
	defer m.probeMu.Unlock()
	select {
	case <-m.stopped:
		return "vCPUs: the VM has stopped"
	default:
	}
	if m.vcpusClosed {
		return "vCPUs: the VM is closed"
	}
	var b strings.Builder
	for id, v := range m.vcpus {
		if id > 0 {
			b.WriteByte('\n')
		}
		if v == nil {
			fmt.Fprintf(&b, "vCPU %d: not created", id)
			continue
		}
		reply := make(chan string, 1)
		select {
		case m.probes[id] <- reply:
		default:
			fmt.Fprintf(&b, "vCPU %d: an earlier probe is still unanswered: the vCPU has not left KVM_RUN since", id)
			continue
		}
		v.Kick()
		t := time.NewTimer(probeTimeout)
		select {
		case s := <-reply:
			b.WriteString(s)
		case <-m.stopped:
			fmt.Fprintf(&b, "vCPU %d: the VM stopped", id)
		case <-t.C:
			fmt.Fprintf(&b, "vCPU %d: did not leave KVM_RUN within %v of a kick", id, probeTimeout)
		}
		t.Stop()
	}
	return b.String()
}

// mpStateNames are the KVM_MP_STATE_* values a x86 vCPU can be in.
var mpStateNames = map[uint32]string{
	0: "runnable", 1: "waiting for INIT/SIPI", 2: "INIT received", 3: "halted", 4: "SIPI received",
}

// Local APIC register offsets (Intel SDM vol. 3, table 11-1).
const (
	apicTPR   = 0x80
	apicISR   = 0x100
	apicIRR   = 0x200
	apicLVTT  = 0x320
	apicTMICT = 0x380
	apicTMCCT = 0x390
)

// msrTSCDeadline is IA32_TSC_DEADLINE, the report's timer in TSC-deadline
// mode.
const msrTSCDeadline = 0x6e0

// vcpuReport describes v; it runs on v's own thread, outside KVM_RUN.
func vcpuReport(v *kvm.VCPU, rec *exitRecorder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "vCPU %d:", v.ID())
	if mp, err := v.MPState(); err != nil {
		fmt.Fprintf(&b, " mp state unavailable (%v);", err)
	} else if name, ok := mpStateNames[mp]; ok {
		fmt.Fprintf(&b, " %s;", name)
	} else {
		fmt.Fprintf(&b, " mp state %d;", mp)
	}
	if r, err := v.Regs(); err == nil {
		fmt.Fprintf(&b, " rip=%#x rsp=%#x interrupts %s;", r.RIP, r.RSP, map[bool]string{true: "enabled", false: "disabled"}[r.RFLAGS&(1<<9) != 0])
	}
	if s, err := v.Sregs(); err == nil {
		gs := []kvm.MSR{{Index: msrKernelGSBase}}
		v.MSRs(gs)
		fmt.Fprintf(&b, " cs=%#x cr2=%#x cr3=%#x gs.base=%#x kernel_gs_base=%#x;", s.CS.Selector, s.CR2, s.CR3, s.GS.Base, gs[0].Data)
	}
	if e, err := v.Events(); err == nil {
		fmt.Fprintf(&b, " %s;", e.String())
	}
	if l, err := v.LAPIC(); err == nil {
		b.WriteString(" " + lapicSummary(&l))
		msrs := []kvm.MSR{{Index: msrTSCDeadline}, {Index: msrIA32TSC}}
		if err := v.MSRs(msrs); err == nil {
			switch dl, now := msrs[0].Data, msrs[1].Data; {
			case dl == 0:
				b.WriteString(", no TSC deadline armed")
			case dl > now:
				fmt.Fprintf(&b, ", TSC deadline in %d cycles", dl-now)
			default:
				fmt.Fprintf(&b, ", TSC deadline passed %d cycles ago", now-dl)
			}
		}
		b.WriteString(";")
	}
	b.WriteString(" " + rec.String())
	return b.String()
}

// lapicSummary names the vectors a local APIC holds requested (IRR) and
// in service (ISR), its task priority, and its timer.
func lapicSummary(l *kvm.LAPICState) string {
	reg := func(off int) uint32 { return binary.LittleEndian.Uint32(l.Regs[off:]) }
	vectors := func(base int) string {
		var vs []string
		for i := range 8 {
			w := reg(base + 0x10*i)
			for w != 0 {
				bit := bits.TrailingZeros32(w)
				w &^= 1 << bit
				vs = append(vs, fmt.Sprintf("%#x", 32*i+bit))
			}
		}
		if len(vs) == 0 {
			return "none"
		}
		return strings.Join(vs, ",")
	}
	lvt := reg(apicLVTT)
	mode := [4]string{"one-shot", "periodic", "TSC-deadline", "reserved"}[(lvt>>17)&3]
	masked := ""
	if lvt&(1<<16) != 0 {
		masked = " masked"
	}
	return fmt.Sprintf("APIC TPR %#x, requested %s, in service %s, timer %s%s vector %#x count %d of %d",
		reg(apicTPR), vectors(apicIRR), vectors(apicISR), mode, masked, lvt&0xff, reg(apicTMCCT), reg(apicTMICT))
}
