package kvm

// The byte encoding of VCPUState and VMState, for snapshot files.
//
// Little-endian throughout. Each state opens with a 4-byte magic and a
// uint32 version; then come its parts in a fixed order, each one either a
// uint32 length and that many bytes (a kernel struct, the XSAVE area) or a
// uint32 count and that many fixed-size entries (CPUID, MSRs). A kernel
// struct is its fields in declaration order, reserved fields as zeros.
// Decoding checks every length and count against the bounds below before
// it allocates, refuses nonzero reserved bytes and trailing bytes, and so
// accepts exactly the encodings Marshal produces: whatever decodes encodes
// back to the same bytes.
//
//	VCPUState: "PKVC" version id tsc_khz
//	           cpuid(count, 40 bytes each) regs sregs xsave(len) xcrs
//	           msrs(count, 16 bytes each) lapic events mp_state debugregs
//	VMState:   "PKVM" version pic_master pic_slave ioapic pit clock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

const (
	vcpuStateMagic = "PKVC"
	vmStateMagic   = "PKVM"
	// stateVersion is the encoding's version; a decoder refuses others.
	stateVersion = 1

	// Bounds on what a snapshot may carry.
	maxStateMSRs  = 1024
	maxXSaveBytes = 1 << 20
)

var le = binary.LittleEndian

// MarshalBinary encodes the vCPU state (see the format above).
func (s *VCPUState) MarshalBinary() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("encode vCPU state: %w", err)
	}
	e := &encoder{b: make([]byte, 0, 4096+len(s.XSave)+len(s.MSRs)*sizeofMSREntry+len(s.CPUID)*sizeofCPUIDEntry2)}
	e.header(vcpuStateMagic)
	e.u32(uint32(s.ID))
	e.u32(s.TSCKHz)
	e.u32(uint32(len(s.CPUID)))
	for i := range s.CPUID {
		e.raw(&s.CPUID[i])
	}
	e.sized(&s.Regs)
	e.sized(&s.Sregs)
	e.blob(s.XSave)
	e.sized(&s.XCRs)
	e.u32(uint32(len(s.MSRs)))
	for i := range s.MSRs {
		e.raw(&s.MSRs[i])
	}
	e.sized(&s.LAPIC)
	e.sized(&s.Events)
	e.u32(s.MPState)
	e.sized(&s.Debug)
	return e.b, nil
}

// validate checks what the encoding bounds.
func (s *VCPUState) validate() error {
	switch {
	case s.ID < 0 || uint64(s.ID) > math.MaxUint32:
		return fmt.Errorf("vCPU ID %d out of range", s.ID)
	case len(s.CPUID) > maxCPUIDEntries:
		return fmt.Errorf("%d CPUID entries, at most %d", len(s.CPUID), maxCPUIDEntries)
	case len(s.MSRs) > maxStateMSRs:
		return fmt.Errorf("%d MSRs, at most %d", len(s.MSRs), maxStateMSRs)
	case len(s.XSave) < sizeofXSave || len(s.XSave) > maxXSaveBytes || len(s.XSave)%4 != 0:
		return fmt.Errorf("XSAVE area of %d bytes: want a multiple of 4 from %d to %d", len(s.XSave), sizeofXSave, maxXSaveBytes)
	case s.XCRs.NrXCRs > maxXCRs:
		return fmt.Errorf("%d XCRs, at most %d", s.XCRs.NrXCRs, maxXCRs)
	}
	return nil
}

// UnmarshalBinary decodes a vCPU state MarshalBinary encoded. On error s
// is unchanged.
func (s *VCPUState) UnmarshalBinary(b []byte) error {
	d := &decoder{b: b}
	var out VCPUState
	d.header(vcpuStateMagic)
	out.ID = int(d.u32("vCPU ID"))
	out.TSCKHz = d.u32("TSC frequency")
	if n := d.count("CPUID entries", maxCPUIDEntries, sizeofCPUIDEntry2); n > 0 {
		out.CPUID = make([]CPUIDEntry, n)
		for i := range out.CPUID {
			d.raw("CPUID entry", &out.CPUID[i])
		}
	}
	d.sized("registers", &out.Regs)
	d.sized("special registers", &out.Sregs)
	if x := d.blob("XSAVE area", maxXSaveBytes); d.err == nil {
		if len(x) < sizeofXSave || len(x)%4 != 0 {
			d.fail("XSAVE area of %d bytes: want a multiple of 4 from %d", len(x), sizeofXSave)
		}
		out.XSave = bytes.Clone(x)
	}
	d.sized("XCRs", &out.XCRs)
	if d.err == nil && out.XCRs.NrXCRs > maxXCRs {
		d.fail("%d XCRs, at most %d", out.XCRs.NrXCRs, maxXCRs)
	}
	if n := d.count("MSRs", maxStateMSRs, sizeofMSREntry); n > 0 {
		out.MSRs = make([]MSR, n)
		for i := range out.MSRs {
			d.raw("MSR", &out.MSRs[i])
		}
	}
	d.sized("LAPIC", &out.LAPIC)
	d.sized("vCPU events", &out.Events)
	out.MPState = d.u32("MP state")
	d.sized("debug registers", &out.Debug)
	if err := d.end("vCPU state"); err != nil {
		return err
	}
	*s = out
	return nil
}

// MarshalBinary encodes the VM state (see the format above).
func (s *VMState) MarshalBinary() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("encode VM state: %w", err)
	}
	e := &encoder{b: make([]byte, 0, 3*sizeofIRQChip+sizeofPITState2+sizeofClockData+64)}
	e.header(vmStateMagic)
	e.sized(&s.PICMaster)
	e.sized(&s.PICSlave)
	e.sized(&s.IOAPIC)
	e.sized(&s.PIT)
	e.sized(&s.Clock)
	return e.b, nil
}

// validate checks that each controller is the chip its field names.
func (s *VMState) validate() error {
	for _, c := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"PIC master", s.PICMaster.ChipID, IRQChipPICMaster},
		{"PIC slave", s.PICSlave.ChipID, IRQChipPICSlave},
		{"IOAPIC", s.IOAPIC.ChipID, IRQChipIOAPIC},
	} {
		if c.got != c.want {
			return fmt.Errorf("%s state has chip ID %d, want %d", c.name, c.got, c.want)
		}
	}
	return nil
}

// UnmarshalBinary decodes a VM state MarshalBinary encoded. On error s is
// unchanged.
func (s *VMState) UnmarshalBinary(b []byte) error {
	d := &decoder{b: b}
	var out VMState
	d.header(vmStateMagic)
	d.sized("PIC master", &out.PICMaster)
	d.sized("PIC slave", &out.PICSlave)
	d.sized("IOAPIC", &out.IOAPIC)
	d.sized("PIT", &out.PIT)
	d.sized("kvmclock", &out.Clock)
	if err := d.end("VM state"); err != nil {
		return err
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode VM state: %w", err)
	}
	*s = out
	return nil
}

// encoder appends to b.
type encoder struct{ b []byte }

func (e *encoder) u32(v uint32) { e.b = le.AppendUint32(e.b, v) }

func (e *encoder) header(magic string) {
	e.b = append(e.b, magic...)
	e.u32(stateVersion)
}

// raw appends a fixed-size struct's fields.
func (e *encoder) raw(v any) {
	var err error
	e.b, err = binary.Append(e.b, le, v)
	if err != nil {
		panic("kvm: state struct is not fixed-size: " + err.Error()) // a bug in this file
	}
}

// sized appends a fixed-size struct after its length.
func (e *encoder) sized(v any) {
	e.u32(uint32(binary.Size(v)))
	e.raw(v)
}

// blob appends p after its length.
func (e *encoder) blob(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}

// decoder consumes b; the first error sticks and turns later reads into
// no-ops returning zeros.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: "+format, append([]any{d.off}, args...)...)
	}
}

// take returns the next n bytes, or nil (failing) if fewer remain.
func (d *decoder) take(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("%s: %d bytes needed, %d left", what, n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u32(what string) uint32 {
	p := d.take(what, 4)
	if p == nil {
		return 0
	}
	return le.Uint32(p)
}

func (d *decoder) header(magic string) {
	if p := d.take("magic", len(magic)); p != nil && string(p) != magic {
		d.fail("magic %q, want %q", p, magic)
	}
	if v := d.u32("version"); d.err == nil && v != stateVersion {
		d.fail("version %d, this build reads %d", v, stateVersion)
	}
}

// count reads an entry count, bounded by max and by the bytes left for
// entries of size bytes each.
func (d *decoder) count(what string, max, size int) int {
	n := d.u32(what)
	if d.err != nil {
		return 0
	}
	if n > uint32(max) {
		d.fail("%d %s, at most %d", n, what, max)
		return 0
	}
	if int(n)*size > len(d.b)-d.off {
		d.fail("%d %s need %d bytes, %d left", n, what, int(n)*size, len(d.b)-d.off)
		return 0
	}
	return int(n)
}

// raw decodes a fixed-size struct into v, refusing nonzero reserved
// bytes (which encoding the result would not give back).
func (d *decoder) raw(what string, v any) {
	p := d.take(what, binary.Size(v))
	if p == nil {
		return
	}
	if _, err := binary.Decode(p, le, v); err != nil {
		d.fail("%s: %v", what, err)
		return
	}
	if again, _ := binary.Append(nil, le, v); !bytes.Equal(again, p) {
		d.fail("%s: nonzero reserved bytes", what)
	}
}

// sized decodes a fixed-size struct after its length, which must be the
// struct's.
func (d *decoder) sized(what string, v any) {
	if n := d.u32(what + " length"); d.err == nil && int(n) != binary.Size(v) {
		d.fail("%s is %d bytes, want %d", what, n, binary.Size(v))
		return
	}
	d.raw(what, v)
}

// blob returns the bytes after a length of at most max.
func (d *decoder) blob(what string, max int) []byte {
	n := d.u32(what + " length")
	if d.err == nil && n > uint32(max) {
		d.fail("%s of %d bytes, at most %d", what, n, max)
		return nil
	}
	return d.take(what, int(n))
}

// end reports the first error, or trailing bytes.
func (d *decoder) end(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	return nil
}
