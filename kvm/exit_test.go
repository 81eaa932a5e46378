package kvm

import (
	"encoding/binary"
	"testing"
)

func fakeRun() []byte { return make([]byte, 4096) }

func TestExitIO(t *testing.T) {
	r := fakeRun()
	r[runIODirection] = IOOut
	r[runIOSize] = 2
	binary.LittleEndian.PutUint16(r[runIOPort:], 0x3f8)
	binary.LittleEndian.PutUint32(r[runIOCount:], 3)
	binary.LittleEndian.PutUint64(r[runIODataOffset:], 0x1000-6)
	io, err := Exit{Reason: ExitIO, run: r}.IO()
	if err != nil {
		t.Fatal(err)
	}
	if !io.Out || io.Port != 0x3f8 || io.Size != 2 || io.Count != 3 || len(io.Data) != 6 {
		t.Fatalf("decoded %+v", io)
	}
	// The data must alias kvm_run so that IN results reach the guest.
	io.Data[0] = 0xaa
	if r[0x1000-6] != 0xaa {
		t.Fatal("IO data does not alias the kvm_run region")
	}
}

func TestExitIORejectsOutOfBounds(t *testing.T) {
	for _, c := range []struct {
		size   byte
		count  uint32
		offset uint64
	}{
		{1, 1, 4096},           // starts at the end
		{4, 2, 4090},           // runs past the end
		{3, 1, 100},            // impossible size
		{4, 1 << 31, 64},       // count overflows the region
		{1, 1, ^uint64(0) - 1}, // offset near 2^64
	} {
		r := fakeRun()
		r[runIOSize] = c.size
		binary.LittleEndian.PutUint32(r[runIOCount:], c.count)
		binary.LittleEndian.PutUint64(r[runIODataOffset:], c.offset)
		if io, err := (Exit{Reason: ExitIO, run: r}).IO(); err == nil {
			t.Errorf("size %d count %d offset %#x: accepted as %+v", c.size, c.count, c.offset, io)
		}
	}
}

func TestExitMMIO(t *testing.T) {
	r := fakeRun()
	binary.LittleEndian.PutUint64(r[runMMIOPhysAddr:], 0xd0000000)
	binary.LittleEndian.PutUint32(r[runMMIOLen:], 4)
	r[runMMIOIsWrite] = 1
	copy(r[runMMIOData:], []byte{1, 2, 3, 4, 5})
	m, err := Exit{Reason: ExitMMIO, run: r}.MMIO()
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != 0xd0000000 || !m.IsWrite || string(m.Data) != "\x01\x02\x03\x04" {
		t.Fatalf("decoded %+v", m)
	}
	for _, n := range []uint32{0, 9, 1 << 31} {
		binary.LittleEndian.PutUint32(r[runMMIOLen:], n)
		if _, err := (Exit{Reason: ExitMMIO, run: r}).MMIO(); err == nil {
			t.Errorf("length %d accepted", n)
		}
	}
}

func TestExitSystemEvent(t *testing.T) {
	r := fakeRun()
	binary.LittleEndian.PutUint32(r[runEventType:], SystemEventReset)
	binary.LittleEndian.PutUint32(r[runEventNData:], 1000) // clamped to 16
	binary.LittleEndian.PutUint64(r[runEventData:], 7)
	typ, data := Exit{Reason: ExitSystemEvent, run: r}.SystemEvent()
	if typ != SystemEventReset || len(data) != 16 || data[0] != 7 {
		t.Fatalf("got type %d data %v", typ, data)
	}
}

func TestExitReasonString(t *testing.T) {
	if s := ExitShutdown.String(); s != "KVM_EXIT_SHUTDOWN" {
		t.Error(s)
	}
	if s := ExitReason(99).String(); s != "KVM_EXIT_99" {
		t.Error(s)
	}
}

func TestCPUID2RoundTrip(t *testing.T) {
	in := []CPUIDEntry{{Function: 1, EAX: 2, EBX: 3, ECX: 4, EDX: 5}, {Function: 7, Index: 1, Flags: CPUIDFlagSignificantIndex, EBX: 9}}
	out, err := decodeCPUID2(encodeCPUID2(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("round trip: %+v", out)
	}
	buf := encodeCPUID2(in)
	binary.LittleEndian.PutUint32(buf, 3) // claims more than it holds
	if _, err := decodeCPUID2(buf); err == nil {
		t.Fatal("over-long kvm_cpuid2 accepted")
	}
}
