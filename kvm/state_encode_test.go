package kvm

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// sampleVCPUState is a state with every field set to something other than
// zero, as a running guest's would be.
func sampleVCPUState() *VCPUState {
	s := &VCPUState{
		ID:     3,
		TSCKHz: 2_500_000,
		CPUID: []CPUIDEntry{
			{Function: 0, EAX: 0xd, EBX: 0x756e6547, ECX: 0x6c65746e, EDX: 0x49656e69},
			{Function: 1, EAX: 0x806f8, ECX: 0xfffa3203, EDX: 0x178bfbff},
			{Function: 7, Index: 0, Flags: CPUIDFlagSignificantIndex, EBX: 0xf1bf07ab},
		},
		Regs:    Regs{RAX: 1, RBX: 0x1234, RSP: 0x8000, RIP: 0xffffffff81000000, RFLAGS: 0x246},
		XSave:   make([]byte, 4096+64),
		MSRs:    []MSR{{Index: 0x10, Data: 0x123456789}, {Index: 0xc0000080, Data: 0xd01}, {Index: 0x4b564d01, Data: 0x5001}},
		MPState: MPStateHalted,
	}
	s.Sregs.CS = Segment{Base: 0, Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	s.Sregs.GDT = DTable{Base: 0x1000, Limit: 0x27}
	s.Sregs.CR0, s.Sregs.CR3, s.Sregs.CR4, s.Sregs.EFER = 0x80050033, 0x1a2b000, 0x3506f0, 0xd01
	s.Sregs.APICBase = 0xfee00900
	for i := range s.XSave {
		s.XSave[i] = byte(i * 7)
	}
	s.XCRs.NrXCRs = 1
	s.XCRs.XCRs[0] = XCR{XCR: 0, Value: 0x7}
	for i := range s.LAPIC.Regs {
		s.LAPIC.Regs[i] = byte(i ^ 0x5a)
	}
	s.Events.Raw[8], s.Events.Raw[9], s.Events.Raw[20] = 1, 0xec, 4
	s.Debug = DebugRegs{DB: [4]uint64{1, 2, 3, 4}, DR6: 0xffff0ff0, DR7: 0x400}
	return s
}

func sampleVMState() *VMState {
	s := &VMState{
		PICMaster: IRQChip{ChipID: IRQChipPICMaster},
		PICSlave:  IRQChip{ChipID: IRQChipPICSlave},
		IOAPIC:    IRQChip{ChipID: IRQChipIOAPIC},
		Clock:     ClockData{Clock: 123456789, Flags: ClockRealtime | ClockHostTSC, Realtime: 1700000000000000000, HostTSC: 99},
	}
	for i := range s.IOAPIC.Chip {
		s.IOAPIC.Chip[i] = byte(i)
	}
	s.PICMaster.Chip[0], s.PICSlave.Chip[3] = 0xff, 0x28
	s.PIT.Channels[0] = PITChannelState{Count: 0x10000, Mode: 2, Gate: 1, RWMode: 3, CountLoadTime: 1 << 40}
	s.PIT.Flags = 1
	return s
}

func TestVCPUStateRoundTrip(t *testing.T) {
	for _, s := range []*VCPUState{
		sampleVCPUState(),
		{XSave: make([]byte, 4096)}, // no CPUID table, no MSRs
	} {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got VCPUState
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, s) {
			t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", got, *s)
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs (%v)", err)
		}
	}
}

func TestVMStateRoundTrip(t *testing.T) {
	s := sampleVMState()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got VMState
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, s) {
		t.Fatalf("round trip changed the state:\n got %+v\nwant %+v", got, *s)
	}
}

// Every strict prefix of an encoding is refused, as is one extra byte.
func TestStateTruncatedOrLong(t *testing.T) {
	vb, _ := sampleVCPUState().MarshalBinary()
	mb, _ := sampleVMState().MarshalBinary()
	for _, c := range []struct {
		b  []byte
		un func([]byte) error
	}{
		{vb, func(b []byte) error { var s VCPUState; return s.UnmarshalBinary(b) }},
		{mb, func(b []byte) error { var s VMState; return s.UnmarshalBinary(b) }},
	} {
		for n := 0; n < len(c.b); n++ {
			if err := c.un(c.b[:n]); err == nil {
				t.Fatalf("%d of %d bytes decoded", n, len(c.b))
			}
		}
		if err := c.un(append(bytes.Clone(c.b), 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
			t.Fatalf("a trailing byte: %v", err)
		}
	}
}

// patchU32 overwrites the uint32 at off.
func patchU32(b []byte, off int, v uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], v)
	return b
}

func TestVCPUStateRejectsGarbage(t *testing.T) {
	s := sampleVCPUState()
	good, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Offsets of the counted and sized parts in good.
	cpuidCount := 16
	regsLen := cpuidCount + 4 + len(s.CPUID)*sizeofCPUIDEntry2
	xsaveLen := regsLen + 4 + sizeofRegs + 4 + sizeofSregs
	xcrsLen := xsaveLen + 4 + len(s.XSave)
	msrCount := xcrsLen + 4 + sizeofXCRs
	if got := binary.LittleEndian.Uint32(good[msrCount:]); got != uint32(len(s.MSRs)) {
		t.Fatalf("offset arithmetic is off: MSR count reads %d", got)
	}
	firstMSR := msrCount + 4
	for _, c := range []struct {
		name, want string
		b          []byte
	}{
		{"magic", "magic", append([]byte("PKVM"), good[4:]...)},
		{"version", "version 2", patchU32(good, 4, 2)},
		{"CPUID count over the bound", "257 CPUID entries", patchU32(good, cpuidCount, 257)},
		{"CPUID count past the end", "need 10200 bytes", patchU32(good, cpuidCount, 255)},
		{"regs length", "registers is 145 bytes", patchU32(good, regsLen, 145)},
		{"XSAVE too big", "at most 1048576", patchU32(good, xsaveLen, 1<<20+4)},
		{"XSAVE too small", "multiple of 4 from 4096", patchU32(good, xsaveLen, 4092)},
		{"XSAVE not a multiple of 4", "multiple of 4", patchU32(good, xsaveLen, 4097)},
		{"XCR count", "17 XCRs", patchU32(good, xcrsLen+4, 17)},
		{"MSR count over the bound", "1025 MSRs", patchU32(good, msrCount, 1025)},
		{"MSR reserved field", "nonzero reserved", patchU32(good, firstMSR+4, 1)},
		{"CPUID padding", "nonzero reserved", patchU32(good, cpuidCount+4+28, 1)},
	} {
		var got VCPUState
		err := got.UnmarshalBinary(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if !reflect.DeepEqual(got, VCPUState{}) {
			t.Errorf("%s: a failed decode changed the state", c.name)
		}
	}
}

func TestMarshalRefusesWhatDecodeWould(t *testing.T) {
	for name, mut := range map[string]func(*VCPUState){
		"no XSAVE area":    func(s *VCPUState) { s.XSave = nil },
		"odd XSAVE length": func(s *VCPUState) { s.XSave = make([]byte, 4098) },
		"negative ID":      func(s *VCPUState) { s.ID = -1 },
		"too many MSRs":    func(s *VCPUState) { s.MSRs = make([]MSR, maxStateMSRs+1) },
		"too many CPUID":   func(s *VCPUState) { s.CPUID = make([]CPUIDEntry, maxCPUIDEntries+1) },
		"too many XCRs":    func(s *VCPUState) { s.XCRs.NrXCRs = maxXCRs + 1 },
	} {
		s := sampleVCPUState()
		mut(s)
		if _, err := s.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	m := sampleVMState()
	m.PICSlave.ChipID = IRQChipIOAPIC
	if _, err := m.MarshalBinary(); err == nil {
		t.Error("a VM state with the IOAPIC in the slave PIC's place encoded")
	}
	good, _ := sampleVMState().MarshalBinary()
	bad := patchU32(good, 8+4, IRQChipPICSlave) // the master's chip ID
	var got VMState
	if err := got.UnmarshalBinary(bad); err == nil || !strings.Contains(err.Error(), "PIC master state has chip ID 1") {
		t.Errorf("swapped chip ID: %v", err)
	}
}

func FuzzVCPUStateUnmarshal(f *testing.F) {
	good, _ := sampleVCPUState().MarshalBinary()
	empty, _ := (&VCPUState{XSave: make([]byte, 4096)}).MarshalBinary()
	f.Add(good)
	f.Add(empty)
	f.Add(good[:len(good)/2])
	f.Add([]byte("PKVC\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s VCPUState
		if s.UnmarshalBinary(b) != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}

func FuzzVMStateUnmarshal(f *testing.F) {
	good, _ := sampleVMState().MarshalBinary()
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte("PKVM\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s VMState
		if s.UnmarshalBinary(b) != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}
