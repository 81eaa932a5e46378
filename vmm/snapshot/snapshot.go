package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Version is the format version this package reads and writes.
const Version = 1

// Bounds on a state file, checked by Encode and Decode.
const (
	MaxSize    = 64 << 20 // bytes in the whole file
	MaxVCPUs   = 254      // vCPUs (and cpu sections)
	MaxDevices = 19       // device sections
	MaxArch    = 32       // bytes in Arch
	MaxNote    = 4096     // bytes in Note
)

const magic = "PYROSNAP"

// headerLen is the magic, version and file length; trailerLen the checksum.
const (
	headerLen  = 8 + 4 + 8
	trailerLen = 4
	sectionHdr = 4 + 8
)

// Section tags, in the order they appear (see the package doc).
const (
	tagArch    = 1
	tagVCPUs   = 2
	tagMemory  = 3
	tagCPUID   = 4
	tagVM      = 5
	tagCPU     = 6
	tagSerial  = 7
	tagDevice  = 8
	tagGenID   = 9
	tagCreated = 10
	tagNote    = 11
	tagLast    = tagNote
)

var tagNames = [...]string{tagArch: "arch", tagVCPUs: "vcpus", tagMemory: "memory", tagCPUID: "cpuid", tagVM: "vm",
	tagCPU: "cpu", tagSerial: "serial", tagDevice: "device", tagGenID: "genid", tagCreated: "created", tagNote: "note"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Device is one virtio device's state: its ID (which the VMM matches to the
// device it recreates) and its transport's state blob.
type Device struct {
	ID        uint32
	Transport []byte
}

// State is everything a snapshot holds besides the guest's RAM.
type State struct {
	Arch    string   // "x86_64"
	VCPUs   int      // 1 to MaxVCPUs
	MemSize uint64   // RAM in bytes (memory.Layout.Size)
	MemHole uint64   // where the 32-bit MMIO hole starts (memory.Layout.Hole)
	CPUID   []byte   // encoded CPUID table of vCPU 0 (opaque)
	VM      []byte   // kvm.VMState blob
	CPUs    [][]byte // one kvm.VCPUState blob per vCPU, len(CPUs) == VCPUs
	Serial  []byte   // the UART's state blob
	Devices []Device // at most MaxDevices, IDs unique
	GenID   [16]byte // the VM generation ID the guest saw
	Created time.Time
	Note    string // free text (what took it), at most MaxNote bytes
}

// ErrFormat is wrapped by every error Decode and Read return for a file
// that is not a valid state file of this version.
var ErrFormat = errors.New("not a valid pyro snapshot state file")

// The distinct reasons a file is not valid; each wraps ErrFormat.
var (
	ErrNotSnapshot = fmt.Errorf("%w: not a snapshot state file (no PYROSNAP magic)", ErrFormat)
	ErrTruncated   = fmt.Errorf("%w: truncated", ErrFormat)
	ErrChecksum    = fmt.Errorf("%w: checksum mismatch (the file is damaged)", ErrFormat)
)

// VersionError is a state file of another format version. It wraps
// ErrFormat.
type VersionError struct{ Got, Want uint32 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("snapshot state file is format version %d, this pyro reads version %d: take the snapshot again with this pyro", e.Got, e.Want)
}

func (e *VersionError) Unwrap() error { return ErrFormat }

// check says what makes s impossible to encode, or nil.
func (s *State) check() error {
	switch {
	case len(s.Arch) == 0 || len(s.Arch) > MaxArch:
		return fmt.Errorf("architecture name of %d bytes, want 1 to %d", len(s.Arch), MaxArch)
	case s.VCPUs < 1 || s.VCPUs > MaxVCPUs:
		return fmt.Errorf("%d vCPUs, want 1 to %d", s.VCPUs, MaxVCPUs)
	case len(s.CPUs) != s.VCPUs:
		return fmt.Errorf("%d vCPU states for %d vCPUs", len(s.CPUs), s.VCPUs)
	case len(s.Devices) > MaxDevices:
		return fmt.Errorf("%d devices, at most %d", len(s.Devices), MaxDevices)
	case len(s.Note) > MaxNote:
		return fmt.Errorf("note of %d bytes, at most %d", len(s.Note), MaxNote)
	}
	if !createdOK(s.Created.Unix(), s.Created.Nanosecond()) {
		return fmt.Errorf("creation time %v out of range", s.Created)
	}
	for i, d := range s.Devices {
		for _, e := range s.Devices[:i] {
			if e.ID == d.ID {
				return fmt.Errorf("device ID %d appears twice", d.ID)
			}
		}
	}
	return nil
}

// encodedLen is the size of s's encoding.
func (s *State) encodedLen() uint64 {
	n := uint64(headerLen + trailerLen)
	sec := func(payload int) { n += sectionHdr + uint64(payload) }
	sec(len(s.Arch))
	sec(4)
	sec(16)
	sec(len(s.CPUID))
	sec(len(s.VM))
	for _, c := range s.CPUs {
		sec(len(c))
	}
	sec(len(s.Serial))
	for _, d := range s.Devices {
		sec(4 + len(d.Transport))
	}
	sec(16)
	sec(12)
	sec(len(s.Note))
	return n
}

// Encode returns s in the state file format.
func Encode(s *State) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("encode snapshot state: %w", err)
	}
	n := s.encodedLen()
	if n > MaxSize {
		return nil, fmt.Errorf("encode snapshot state: %d bytes, more than a state file may hold (%d)", n, MaxSize)
	}
	le := binary.LittleEndian
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = le.AppendUint32(b, Version)
	b = le.AppendUint64(b, n)
	sec := func(tag uint32, parts ...[]byte) {
		var l int
		for _, p := range parts {
			l += len(p)
		}
		b = le.AppendUint32(b, tag)
		b = le.AppendUint64(b, uint64(l))
		for _, p := range parts {
			b = append(b, p...)
		}
	}
	sec(tagArch, []byte(s.Arch))
	sec(tagVCPUs, le.AppendUint32(nil, uint32(s.VCPUs)))
	sec(tagMemory, le.AppendUint64(le.AppendUint64(nil, s.MemSize), s.MemHole))
	sec(tagCPUID, s.CPUID)
	sec(tagVM, s.VM)
	for _, c := range s.CPUs {
		sec(tagCPU, c)
	}
	sec(tagSerial, s.Serial)
	for _, d := range s.Devices {
		sec(tagDevice, le.AppendUint32(nil, d.ID), d.Transport)
	}
	sec(tagGenID, s.GenID[:])
	sec(tagCreated, le.AppendUint32(le.AppendUint64(nil, uint64(s.Created.Unix())), uint32(s.Created.Nanosecond())))
	sec(tagNote, []byte(s.Note))
	b = le.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return b, nil
}

// Decode parses a state file. Every error wraps ErrFormat; see the package
// doc for the distinct ones.
func Decode(b []byte) (*State, error) {
	le := binary.LittleEndian
	if len(b) < len(magic) {
		if string(b) == magic[:len(b)] {
			return nil, fmt.Errorf("%w: %d bytes, not even the magic", ErrTruncated, len(b))
		}
		return nil, ErrNotSnapshot
	}
	if string(b[:len(magic)]) != magic {
		return nil, ErrNotSnapshot
	}
	if len(b) < len(magic)+4 {
		return nil, fmt.Errorf("%w: %d bytes, not even the header", ErrTruncated, len(b))
	}
	if v := le.Uint32(b[len(magic):]); v != Version {
		return nil, &VersionError{Got: v, Want: Version}
	}
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, not even the header", ErrTruncated, len(b))
	}
	total := le.Uint64(b[12:])
	switch {
	case total < headerLen+trailerLen || total > MaxSize:
		return nil, fmt.Errorf("%w: the header gives a length of %d bytes, want %d to %d", ErrFormat, total, headerLen+trailerLen, MaxSize)
	case uint64(len(b)) < total:
		return nil, fmt.Errorf("%w: %d of the %d bytes its header gives", ErrTruncated, len(b), total)
	case uint64(len(b)) > total:
		return nil, fmt.Errorf("%w: %d bytes after the end its header gives", ErrFormat, uint64(len(b))-total)
	}
	body, sum := b[:len(b)-trailerLen], le.Uint32(b[len(b)-trailerLen:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("%w: CRC-32C %08x, the file says %08x", ErrChecksum, got, sum)
	}
	s, err := decodeSections(body[headerLen:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return s, nil
}

func decodeSections(b []byte) (*State, error) {
	le := binary.LittleEndian
	s := &State{}
	var seen [tagLast + 1]bool
	last := uint32(0)
	for len(b) > 0 {
		if len(b) < sectionHdr {
			return nil, fmt.Errorf("%d bytes left, too few for a section header", len(b))
		}
		tag, n := le.Uint32(b), le.Uint64(b[4:])
		b = b[sectionHdr:]
		if tag == 0 || tag > tagLast {
			return nil, fmt.Errorf("unknown section tag %d", tag)
		}
		name := tagNames[tag]
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("%s section of %d bytes, only %d left", name, n, len(b))
		}
		p := b[:n]
		b = b[n:]
		repeats := tag == tagCPU || tag == tagDevice
		if tag < last || (seen[tag] && !repeats) {
			return nil, fmt.Errorf("%s section out of order or repeated", name)
		}
		last, seen[tag] = tag, true
		size := func(want int) error {
			if len(p) != want {
				return fmt.Errorf("%s section of %d bytes, want %d", name, len(p), want)
			}
			return nil
		}
		switch tag {
		case tagArch:
			if len(p) == 0 || len(p) > MaxArch {
				return nil, fmt.Errorf("architecture name of %d bytes, want 1 to %d", len(p), MaxArch)
			}
			s.Arch = string(p)
		case tagVCPUs:
			if err := size(4); err != nil {
				return nil, err
			}
			v := le.Uint32(p)
			if v < 1 || v > MaxVCPUs {
				return nil, fmt.Errorf("%d vCPUs, want 1 to %d", v, MaxVCPUs)
			}
			s.VCPUs = int(v)
		case tagMemory:
			if err := size(16); err != nil {
				return nil, err
			}
			s.MemSize, s.MemHole = le.Uint64(p), le.Uint64(p[8:])
		case tagCPUID:
			s.CPUID = clone(p)
		case tagVM:
			s.VM = clone(p)
		case tagCPU:
			if len(s.CPUs) == s.VCPUs {
				return nil, fmt.Errorf("more vCPU states than the %d vCPUs", s.VCPUs)
			}
			s.CPUs = append(s.CPUs, clone(p))
		case tagSerial:
			s.Serial = clone(p)
		case tagDevice:
			if len(p) < 4 {
				return nil, fmt.Errorf("device section of %d bytes, too short for its ID", len(p))
			}
			if len(s.Devices) == MaxDevices {
				return nil, fmt.Errorf("more than %d devices", MaxDevices)
			}
			s.Devices = append(s.Devices, Device{ID: le.Uint32(p), Transport: clone(p[4:])})
		case tagGenID:
			if err := size(16); err != nil {
				return nil, err
			}
			copy(s.GenID[:], p)
		case tagCreated:
			if err := size(12); err != nil {
				return nil, err
			}
			sec, ns := int64(le.Uint64(p)), int(le.Uint32(p[8:]))
			if !createdOK(sec, ns) {
				return nil, fmt.Errorf("creation time %d s %d ns out of range", sec, ns)
			}
			s.Created = time.Unix(sec, int64(ns)).UTC()
		case tagNote:
			if len(p) > MaxNote {
				return nil, fmt.Errorf("note of %d bytes, at most %d", len(p), MaxNote)
			}
			s.Note = string(p)
		}
	}
	for tag := uint32(1); tag <= tagLast; tag++ {
		// cpu sections are counted by check, device sections may be absent.
		if !seen[tag] && tag != tagCPU && tag != tagDevice {
			return nil, fmt.Errorf("no %s section", tagNames[tag])
		}
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// Created must lie in years 1 to 9999 (the zero time.Time included), where
// a time.Time gives its seconds back unchanged.
const (
	minCreated = -62135596800 // 0001-01-01T00:00:00Z
	maxCreated = 253402300799 // 9999-12-31T23:59:59Z
)

// createdOK says whether sec seconds and ns nanoseconds since the epoch are
// a creation time a state file may hold.
func createdOK(sec int64, ns int) bool {
	return ns >= 0 && ns < 1e9 && sec >= minCreated && sec <= maxCreated
}

// clone copies a payload out of the file's buffer; empty is nil.
func clone(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}
