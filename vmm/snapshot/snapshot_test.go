package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *State {
	return &State{
		Arch:    "x86_64",
		VCPUs:   2,
		MemSize: 512 << 20,
		MemHole: 3 << 30,
		CPUID:   []byte("cpuid table"),
		VM:      []byte("vm state"),
		CPUs:    [][]byte{[]byte("vcpu 0"), []byte("vcpu 1, longer")},
		Serial:  []byte{1, 0, 3, 8, 0, 12, 0, 1, 0, 0},
		Devices: []Device{{ID: 0, Transport: []byte("blk")}, {ID: 7, Transport: nil}, {ID: 2, Transport: []byte("net")}},
		GenID:   [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Created: time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.FixedZone("X", 3600)),
		Note:    "pyro workspace snapshot \"before-upgrade\"",
	}
}

// same says whether two states hold the same values (Created as an instant:
// the file keeps no time zone).
func same(a, b *State) bool {
	if !a.Created.Equal(b.Created) {
		return false
	}
	x, y := *a, *b
	x.Created, y.Created = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

func TestRoundTrip(t *testing.T) {
	s := sample()
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != "PYROSNAP" || binary.LittleEndian.Uint32(b[8:]) != Version || binary.LittleEndian.Uint64(b[12:]) != uint64(len(b)) {
		t.Fatalf("header % x", b[:20])
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !same(s, d) {
		t.Fatalf("decoded %+v\nwant %+v", d, s)
	}
	if d.Created.Location() != time.UTC {
		t.Errorf("created in %v, want UTC", d.Created.Location())
	}
	again, err := Encode(d)
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs: %v", err)
	}
	// Decode copies out of its input.
	for i := range b {
		b[i] = 0
	}
	if !same(s, d) {
		t.Fatal("decoded state aliases the input")
	}
}

func TestRoundTripMinimal(t *testing.T) {
	s := &State{Arch: "x86_64", VCPUs: 1, CPUs: [][]byte{nil}}
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !same(s, d) || !d.Created.IsZero() {
		t.Fatalf("decoded %+v", d)
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, []byte("an older snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := sample()
	if err := Write(path, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %v", ents)
	}
	r, err := Read(path)
	if err != nil || !same(s, r) {
		t.Fatalf("read back %+v, %v", r, err)
	}

	// A state Encode refuses leaves no file.
	bad := filepath.Join(dir, "bad")
	if err := Write(bad, &State{}); err == nil {
		t.Fatal("empty state written")
	}
	// Nor does a rename that fails (path is a directory with a file in it).
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(busy, s); err == nil {
		t.Fatal("state written over a directory")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("directory holds %v", ents)
	}
}

func TestReadRejects(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("PYROSNAP")
	f.Truncate(MaxSize + 1) // sparse: takes no disk
	f.Close()
	if _, err := Read(big); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized file: %v", err)
	}
	b, _ := Encode(sample())
	short := filepath.Join(dir, "short")
	os.WriteFile(short, b[:len(b)-1], 0o600)
	if _, err := Read(short); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), short) {
		t.Fatalf("truncated file: %v", err)
	}
}

// isOnly says err is the one distinct decode error want (and so ErrFormat).
func isOnly(err error, want error) bool {
	if !errors.Is(err, ErrFormat) {
		return false
	}
	var ve *VersionError
	kinds := []bool{errors.Is(err, ErrNotSnapshot), errors.Is(err, ErrTruncated), errors.Is(err, ErrChecksum), errors.As(err, &ve)}
	_, version := want.(*VersionError)
	wantKinds := []bool{want == ErrNotSnapshot, want == ErrTruncated, want == ErrChecksum, version}
	return reflect.DeepEqual(kinds, wantKinds)
}

func TestDecodeRejectsFiles(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	versionErr := &VersionError{}
	cases := []struct {
		name string
		b    []byte
		want error // ErrFormat: malformed, none of the others
	}{
		{"foreign", []byte("\x7fELF\x02\x01\x01\x00 and more bytes of a program"), ErrNotSnapshot},
		{"foreign short", []byte("GIF"), ErrNotSnapshot},
		{"empty", nil, ErrTruncated},
		{"bad magic", mod(func(b []byte) []byte { b[7] = 'Q'; return b }), ErrNotSnapshot},
		{"version 2", mod(func(b []byte) []byte { b[8] = 2; return b }), versionErr},
		{"version 0", mod(func(b []byte) []byte { b[8] = 0; return b })[:12], versionErr},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrFormat},
		{"length too small", mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[12:], 23); return b }), ErrFormat},
		{"length too large", mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[12:], MaxSize+1); return b }), ErrFormat},
		{"checksum", mod(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), ErrChecksum},
	}
	for _, c := range cases {
		_, err := Decode(c.b)
		if !isOnly(err, c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	var ve *VersionError
	if _, err := Decode(cases[4].b); !errors.As(err, &ve) || ve.Got != 2 || ve.Want != Version || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version error %v", err)
	}
	// Every cut of the file is truncated, every flipped bit past the
	// header is damage.
	for n := range len(good) {
		if _, err := Decode(good[:n]); !isOnly(err, ErrTruncated) {
			t.Fatalf("first %d bytes: %v", n, err)
		}
	}
	for i := 20; i < len(good); i++ {
		b := mod(func(b []byte) []byte { b[i] ^= 1 << (i % 8); return b })
		if _, err := Decode(b); !isOnly(err, ErrChecksum) {
			t.Fatalf("bit flipped at %d: %v", i, err)
		}
	}
}

// file builds a state file from raw sections, with a correct header and
// checksum, to check what Decode makes of the content.
func file(secs ...[]byte) []byte {
	le := binary.LittleEndian
	b := []byte("PYROSNAP")
	b = le.AppendUint32(b, Version)
	b = le.AppendUint64(b, 0)
	for _, s := range secs {
		b = append(b, s...)
	}
	return seal(b)
}

// seal fixes up the length and checksum of a file of at least 24 bytes.
func seal(b []byte) []byte {
	le := binary.LittleEndian
	le.PutUint64(b[12:], uint64(len(b)+4))
	return le.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func sec(tag uint32, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	b := binary.LittleEndian.AppendUint32(nil, tag)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(p)))
	return append(b, p...)
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// sections is a valid file's sections, by name, for the cases to vary.
type sections struct {
	arch, vcpus, mem, cpuid, vm []byte
	cpus                        [][]byte
	serial                      []byte
	devices                     [][]byte
	genid, created, note        []byte
	extra                       []byte // appended last
}

func valid() sections {
	return sections{
		arch:    sec(tagArch, []byte("x86_64")),
		vcpus:   sec(tagVCPUs, u32(2)),
		mem:     sec(tagMemory, make([]byte, 16)),
		cpuid:   sec(tagCPUID),
		vm:      sec(tagVM, []byte("vm")),
		cpus:    [][]byte{sec(tagCPU, []byte("0")), sec(tagCPU, []byte("1"))},
		serial:  sec(tagSerial),
		devices: [][]byte{sec(tagDevice, u32(1), []byte("t"))},
		genid:   sec(tagGenID, make([]byte, 16)),
		created: sec(tagCreated, make([]byte, 12)),
		note:    sec(tagNote, []byte("note")),
	}
}

func (s sections) file() []byte {
	all := [][]byte{s.arch, s.vcpus, s.mem, s.cpuid, s.vm}
	all = append(all, s.cpus...)
	all = append(all, s.serial)
	all = append(all, s.devices...)
	all = append(all, s.genid, s.created, s.note, s.extra)
	return file(all...)
}

func TestDecodeRejectsContent(t *testing.T) {
	if _, err := Decode(valid().file()); err != nil {
		t.Fatalf("the cases' base file: %v", err)
	}
	many := func(n int, f func(i int) []byte) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	cases := []struct {
		name string
		edit func(s *sections)
		says string
	}{
		{"unknown tag", func(s *sections) { s.extra = sec(12) }, "unknown section tag 12"},
		{"tag 0", func(s *sections) { s.extra = sec(0) }, "unknown section tag 0"},
		{"repeated", func(s *sections) { s.extra = s.note }, "note section out of order or repeated"},
		{"out of order", func(s *sections) { s.arch, s.vcpus = s.vcpus, s.arch }, "arch section out of order"},
		{"missing", func(s *sections) { s.genid = nil }, "no genid section"},
		{"no arch", func(s *sections) { s.arch = sec(tagArch) }, "architecture name of 0 bytes"},
		{"long arch", func(s *sections) { s.arch = sec(tagArch, make([]byte, MaxArch+1)) }, "architecture name of 33 bytes"},
		{"0 vCPUs", func(s *sections) { s.vcpus, s.cpus = sec(tagVCPUs, u32(0)), nil }, "0 vCPUs"},
		{"255 vCPUs", func(s *sections) {
			s.vcpus, s.cpus = sec(tagVCPUs, u32(255)), many(255, func(int) []byte { return sec(tagCPU) })
		}, "255 vCPUs"},
		{"vcpus size", func(s *sections) { s.vcpus = sec(tagVCPUs, u32(2), []byte{0}) }, "vcpus section of 5 bytes, want 4"},
		{"memory size", func(s *sections) { s.mem = sec(tagMemory, make([]byte, 8)) }, "memory section of 8 bytes"},
		{"too few CPUs", func(s *sections) { s.cpus = s.cpus[:1] }, "1 vCPU states for 2 vCPUs"},
		{"too many CPUs", func(s *sections) { s.cpus = append(s.cpus, s.cpus[0]) }, "more vCPU states than the 2 vCPUs"},
		{"20 devices", func(s *sections) {
			s.devices = many(20, func(i int) []byte { return sec(tagDevice, u32(uint32(i))) })
		}, "more than 19 devices"},
		{"duplicate device", func(s *sections) { s.devices = append(s.devices, s.devices[0]) }, "device ID 1 appears twice"},
		{"device without ID", func(s *sections) { s.devices = [][]byte{sec(tagDevice, []byte{1, 2, 3})} }, "too short for its ID"},
		{"genid size", func(s *sections) { s.genid = sec(tagGenID, make([]byte, 15)) }, "genid section of 15 bytes"},
		{"nanoseconds", func(s *sections) {
			s.created = sec(tagCreated, make([]byte, 8), u32(1e9))
		}, "creation time 0 s 1000000000 ns out of range"},
		{"seconds", func(s *sections) {
			s.created = sec(tagCreated, binary.LittleEndian.AppendUint64(nil, 1<<63-1), u32(0))
		}, "out of range"},
		{"long note", func(s *sections) { s.note = sec(tagNote, make([]byte, MaxNote+1)) }, "note of 4097 bytes"},
		{"section past the end", func(s *sections) {
			s.extra = binary.LittleEndian.AppendUint64(u32(tagNote), 1<<40)
		}, "only 0 left"},
		{"partial section header", func(s *sections) { s.extra = []byte{1, 2, 3} }, "too few for a section header"},
	}
	for _, c := range cases {
		s := valid()
		c.edit(&s)
		_, err := Decode(s.file())
		if !isOnly(err, ErrFormat) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want one saying %q", c.name, err, c.says)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(s *State)
	}{
		{"no arch", func(s *State) { s.Arch = "" }},
		{"long arch", func(s *State) { s.Arch = strings.Repeat("x", MaxArch+1) }},
		{"0 vCPUs", func(s *State) { s.VCPUs, s.CPUs = 0, nil }},
		{"255 vCPUs", func(s *State) { s.VCPUs, s.CPUs = 255, make([][]byte, 255) }},
		{"CPUs mismatch", func(s *State) { s.CPUs = s.CPUs[:1] }},
		{"20 devices", func(s *State) {
			s.Devices = nil
			for i := range 20 {
				s.Devices = append(s.Devices, Device{ID: uint32(i)})
			}
		}},
		{"duplicate device", func(s *State) { s.Devices[2].ID = 0 }},
		{"long note", func(s *State) { s.Note = strings.Repeat("n", MaxNote+1) }},
		{"year 10000", func(s *State) { s.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 0", func(s *State) { s.Created = time.Date(0, 12, 31, 23, 59, 59, 0, time.UTC) }},
		{"too large", func(s *State) { s.VM = make([]byte, MaxSize) }},
	}
	for _, c := range cases {
		s := sample()
		c.edit(s)
		if b, err := Encode(s); err == nil {
			t.Errorf("%s: encoded %d bytes", c.name, len(b))
		}
	}
	// The largest counts are fine.
	s := sample()
	s.VCPUs, s.CPUs = MaxVCPUs, make([][]byte, MaxVCPUs)
	s.Devices = nil
	for i := range MaxDevices {
		s.Devices = append(s.Devices, Device{ID: uint32(i)})
	}
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Decode(b); err != nil || d.VCPUs != MaxVCPUs || len(d.Devices) != MaxDevices {
		t.Fatalf("largest counts: %v", err)
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts Encode writes
// back byte for byte. With seal set the input's length and checksum are
// fixed up first, so the fuzzer reaches the sections past the CRC.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good, false)
	f.Add(good[:len(good)-4], true)
	f.Add(valid().file(), false)
	min, _ := Encode(&State{Arch: "x86_64", VCPUs: 1, CPUs: [][]byte{nil}})
	f.Add(min[:len(min)-4], true)
	f.Add([]byte("PYROSNAP\x02\x00\x00\x00"), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		if sealed && len(b) >= 20 && len(b) < MaxSize {
			b = seal(append([]byte(nil), b...))
		}
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error not ErrFormat: %v", err)
			}
			return
		}
		again, err := Encode(s)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", b, again)
		}
	})
}
