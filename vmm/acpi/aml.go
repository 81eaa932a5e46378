package acpi

import (
	"encoding/binary"
	"fmt"
)

// A small AML encoder (§20, "ACPI Machine Language (AML) Specification"),
// covering exactly what the DSDT needs. Inputs are built by this package, so
// malformed names or oversized objects are programming errors and panic;
// Config.validate bounds everything that comes from the caller.

// AML opcodes and prefixes (§20.2).
const (
	amlZeroOp          = 0x00 // §20.2.3 ConstObj
	amlOneOp           = 0x01
	amlNameOp          = 0x08 // §20.2.5.1 DefName
	amlBytePrefix      = 0x0A // §20.2.3 ComputationalData
	amlWordPrefix      = 0x0B
	amlDWordPrefix     = 0x0C
	amlStringPrefix    = 0x0D
	amlQWordPrefix     = 0x0E
	amlScopeOp         = 0x10 // §20.2.5.1 DefScope
	amlBufferOp        = 0x11 // §20.2.5.4 DefBuffer
	amlPackageOp       = 0x12 // §20.2.5.4 DefPackage
	amlDualNamePrefix  = 0x2E // §20.2.2 NamePath
	amlMultiNamePrefix = 0x2F
	amlExtOpPrefix     = 0x5B
	amlRootChar        = 0x5C // '\'
	amlArg0Op          = 0x68 // §20.2.6.1 ArgObj: Arg0Op 0x68 .. Arg6Op 0x6E
	amlMethodOp        = 0x14 // §20.2.5.2 DefMethod
	amlDeviceOp        = 0x82 // §20.2.5.2 DefDevice = ExtOpPrefix 0x82
	amlNotifyOp        = 0x86 // §20.2.5.3 DefNotify
	amlLEqualOp        = 0x93 // §20.2.5.4 DefLEqual
	amlIfOp            = 0xA0 // §20.2.5.3 DefIfElse
	amlReturnOp        = 0xA4 // §20.2.5.3 DefReturn
)

// Method flags (§20.2.5.2 MethodFlags): bits 2:0 ArgCount, bit 3
// SerializeFlag, bits 7:4 SyncLevel.
const (
	amlMaxMethodArgs    = 7
	amlMethodSerialized = 1 << 3
)

// maxPkgLength is the largest value a 4-byte PkgLength can encode (§20.2.4).
const maxPkgLength = 1<<28 - 1

// encodePkgLength encodes the PkgLength value n (§20.2.4) in the fewest bytes:
// one byte holds 0..63 in bits 5:0; otherwise bits 7:6 of the lead byte give
// the number of bytes that follow (1-3), bits 5:4 are zero, bits 3:0 hold the
// low nibble and each following byte the next 8 bits.
func encodePkgLength(n uint32) ([]byte, error) {
	switch {
	case n < 1<<6:
		return []byte{byte(n)}, nil
	case n < 1<<12:
		return []byte{1<<6 | byte(n&0xF), byte(n >> 4)}, nil
	case n < 1<<20:
		return []byte{2<<6 | byte(n&0xF), byte(n >> 4), byte(n >> 12)}, nil
	case n <= maxPkgLength:
		return []byte{3<<6 | byte(n&0xF), byte(n >> 4), byte(n >> 12), byte(n >> 20)}, nil
	}
	return nil, fmt.Errorf("acpi: PkgLength %d exceeds %d", n, maxPkgLength)
}

// decodePkgLength decodes a PkgLength at the start of b, returning its value
// and how many bytes it occupies. It accepts non-minimal encodings.
func decodePkgLength(b []byte) (n uint32, size int, err error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("acpi: PkgLength: no data")
	}
	lead := b[0]
	follow := int(lead >> 6)
	if follow == 0 {
		return uint32(lead & 0x3F), 1, nil
	}
	if lead&0x30 != 0 {
		return 0, 0, fmt.Errorf("acpi: PkgLength: reserved bits 5:4 set in lead byte %#02x", lead)
	}
	if len(b) < 1+follow {
		return 0, 0, fmt.Errorf("acpi: PkgLength: lead byte %#02x needs %d more bytes, have %d", lead, follow, len(b)-1)
	}
	n = uint32(lead & 0x0F)
	for i := 1; i <= follow; i++ {
		n |= uint32(b[i]) << (4 + 8*(i-1))
	}
	return n, 1 + follow, nil
}

// pkgLengthFor returns the PkgLength for an object whose bytes after the
// PkgLength are bodyLen long. The encoded value counts the PkgLength's own
// bytes (§20.2.4), so the encoding size depends on itself.
func pkgLengthFor(bodyLen int) ([]byte, error) {
	for size := 1; size <= 4; size++ {
		total := bodyLen + size
		if total < 0 || total > maxPkgLength {
			break
		}
		enc, err := encodePkgLength(uint32(total))
		if err == nil && len(enc) == size {
			return enc, nil
		}
	}
	return nil, fmt.Errorf("acpi: object body of %d bytes is too large for a PkgLength", bodyLen)
}

// withPkgLength returns op, PkgLength, then the concatenated parts.
func withPkgLength(op []byte, parts ...[]byte) []byte {
	body := concat(parts...)
	pl, err := pkgLengthFor(len(body))
	if err != nil {
		panic(err)
	}
	return concat(op, pl, body)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// amlNameSeg encodes a 4-character NameSeg (§20.2.2): a lead character
// 'A'-'Z' or '_' followed by three of 'A'-'Z', '0'-'9', '_'.
func amlNameSeg(s string) []byte {
	if len(s) != 4 {
		panic(fmt.Sprintf("acpi: NameSeg %q is not 4 characters", s))
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			panic(fmt.Sprintf("acpi: NameSeg %q: invalid character %q", s, c))
		}
	}
	return []byte(s)
}

// amlNameString encodes a NameString (§20.2.2) such as `\_SB_.V000` or
// `_HID`: an optional root prefix, then one NameSeg, a DualNamePath or a
// MultiNamePath.
func amlNameString(path string) []byte {
	var out []byte
	if len(path) > 0 && path[0] == '\\' {
		out = append(out, amlRootChar)
		path = path[1:]
	}
	var segs []string
	for len(path) > 4 && path[4] == '.' {
		segs = append(segs, path[:4])
		path = path[5:]
	}
	segs = append(segs, path)
	switch {
	case len(segs) == 2:
		out = append(out, amlDualNamePrefix)
	case len(segs) > 2:
		if len(segs) > 255 {
			panic("acpi: NamePath has too many segments")
		}
		out = append(out, amlMultiNamePrefix, byte(len(segs)))
	}
	for _, s := range segs {
		out = append(out, amlNameSeg(s)...)
	}
	return out
}

// amlInteger encodes v as the shortest ComputationalData (§20.2.3):
// ZeroOp, OneOp, or a Byte/Word/DWord/QWord constant.
func amlInteger(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xFF:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return binary.LittleEndian.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xFFFFFFFF:
		return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{amlQWordPrefix}, v)
}

// amlString encodes a String (§20.2.3): StringPrefix, ASCII 0x01-0x7F, NUL.
func amlString(s string) []byte {
	out := []byte{amlStringPrefix}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			panic(fmt.Sprintf("acpi: String %q has a non-ASCII or NUL byte", s))
		}
	}
	return append(append(out, s...), 0)
}

// amlEISAID encodes a PNP ID such as "PNP0501" the way the ASL EISAID macro
// does: three letters compressed to 5 bits each ('A' = 1) and four hex
// digits, stored big-endian in a DWord.
func amlEISAID(id string) []byte {
	var v uint32
	if len(id) != 7 {
		panic(fmt.Sprintf("acpi: EISA ID %q is not 7 characters", id))
	}
	for i := 0; i < 3; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			panic(fmt.Sprintf("acpi: EISA ID %q: %q is not an uppercase letter", id, c))
		}
		v = v<<5 | uint32(c-'A'+1)
	}
	for i := 3; i < 7; i++ {
		var d byte
		switch c := id[i]; {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			panic(fmt.Sprintf("acpi: EISA ID %q: %q is not a hex digit", id, c))
		}
		v = v<<4 | uint32(d)
	}
	// v holds the 31-bit ID with the manufacturer in the high half; the
	// in-memory byte order is big-endian, so swap before the LE DWord.
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], v)
	return amlInteger(uint64(binary.LittleEndian.Uint32(be[:])))
}

// amlName encodes DefName := NameOp NameString DataRefObject (§20.2.5.1).
func amlName(path string, object []byte) []byte {
	return concat([]byte{amlNameOp}, amlNameString(path), object)
}

// amlScope encodes DefScope := ScopeOp PkgLength NameString TermList (§20.2.5.1).
func amlScope(path string, terms ...[]byte) []byte {
	return withPkgLength([]byte{amlScopeOp}, amlNameString(path), concat(terms...))
}

// amlDevice encodes DefDevice := DeviceOp PkgLength NameString TermList
// (§20.2.5.2), with DeviceOp = ExtOpPrefix 0x82.
func amlDevice(path string, terms ...[]byte) []byte {
	return withPkgLength([]byte{amlExtOpPrefix, amlDeviceOp}, amlNameString(path), concat(terms...))
}

// amlPackage encodes DefPackage := PackageOp PkgLength NumElements
// PackageElementList (§20.2.5.4).
func amlPackage(elements ...[]byte) []byte {
	if len(elements) > 255 {
		panic("acpi: Package has more than 255 elements")
	}
	return withPkgLength([]byte{amlPackageOp}, []byte{byte(len(elements))}, concat(elements...))
}

// amlBuffer encodes DefBuffer := BufferOp PkgLength BufferSize ByteList
// (§20.2.5.4).
func amlBuffer(data []byte) []byte {
	return withPkgLength([]byte{amlBufferOp}, amlInteger(uint64(len(data))), data)
}

// amlMethod encodes DefMethod := MethodOp PkgLength NameString MethodFlags
// TermList (§20.2.5.2) for a method of args arguments (0..7) with SyncLevel
// 0. A NotSerialized method may run on several threads at once, which is
// safe as long as it creates no named objects (see the ASL Method
// operator, §19.6).
func amlMethod(name string, args int, serialized bool, terms ...[]byte) []byte {
	if args < 0 || args > amlMaxMethodArgs {
		panic(fmt.Sprintf("acpi: Method %s: %d arguments, at most %d", name, args, amlMaxMethodArgs))
	}
	flags := byte(args)
	if serialized {
		flags |= amlMethodSerialized
	}
	return withPkgLength([]byte{amlMethodOp}, amlNameString(name), []byte{flags}, concat(terms...))
}

// amlIf encodes DefIfElse := IfOp PkgLength Predicate TermList DefElse with
// an empty DefElse (§20.2.5.3): the terms run when predicate is non-zero.
func amlIf(predicate []byte, terms ...[]byte) []byte {
	return withPkgLength([]byte{amlIfOp}, predicate, concat(terms...))
}

// amlLEqual encodes DefLEqual := LequalOp Operand Operand (§20.2.5.4), which
// is Ones when the two integers are equal and Zero otherwise.
func amlLEqual(a, b []byte) []byte {
	return concat([]byte{amlLEqualOp}, a, b)
}

// amlNotify encodes DefNotify := NotifyOp NotifyObject NotifyValue
// (§20.2.5.3): it queues notification value for the device at path, which
// the OS hands to that device's driver (§5.6.6).
func amlNotify(path string, value []byte) []byte {
	return concat([]byte{amlNotifyOp}, amlNameString(path), value)
}

// amlReturn encodes DefReturn := ReturnOp ArgObject (§20.2.5.3).
func amlReturn(object []byte) []byte {
	return concat([]byte{amlReturnOp}, object)
}

// amlArg encodes ArgObj n (Arg0..Arg6, §20.2.6.1): the method's nth argument.
func amlArg(n int) []byte {
	if n < 0 || n >= amlMaxMethodArgs {
		panic(fmt.Sprintf("acpi: Arg%d does not exist (Arg0..Arg%d)", n, amlMaxMethodArgs-1))
	}
	return []byte{amlArg0Op + byte(n)}
}

// Resource data (§6.4).
const (
	resEndTag        = 0x79 // §6.4.2.9: small item 0x0F, length 1
	resIOPort        = 0x47 // §6.4.2.5: small item 0x08, length 7
	resMemory32Fixed = 0x86 // §6.4.3.4: large item 0x06
	resExtendedIRQ   = 0x89 // §6.4.3.6: large item 0x09
	resIODecode16    = 1 << 0
	resMemReadWrite  = 1 << 0
	resIRQConsumer   = 1 << 0 // Extended Interrupt flags, bit 0
	resIRQEdge       = 1 << 1 // bit 1: edge triggered (0 = level)
	resIRQActiveLow  = 1 << 2 // bit 2: active low (0 = active high)
	resIRQShared     = 1 << 3 // bit 3: shared (0 = exclusive)
)

// amlResourceTemplate wraps resource descriptors and an End Tag with checksum
// 0 ("treated as valid", §6.4.2.9) into the Buffer an ASL ResourceTemplate()
// compiles to.
func amlResourceTemplate(descriptors ...[]byte) []byte {
	return amlBuffer(concat(concat(descriptors...), []byte{resEndTag, 0}))
}

// resMemory32FixedDesc is Memory32Fixed(ReadWrite, base, length) (§6.4.3.4).
func resMemory32FixedDesc(base, length uint32) []byte {
	d := []byte{resMemory32Fixed, 9, 0, resMemReadWrite}
	d = binary.LittleEndian.AppendUint32(d, base)
	return binary.LittleEndian.AppendUint32(d, length)
}

// resInterruptDesc is Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive)
// {gsi}, an Extended Interrupt Descriptor with one interrupt (§6.4.3.6).
func resInterruptDesc(gsi uint32) []byte {
	d := []byte{resExtendedIRQ, 6, 0, resIRQConsumer | resIRQEdge, 1}
	return binary.LittleEndian.AppendUint32(d, gsi)
}

// resIOPortDesc is IO(Decode16, base, base, 1, length) (§6.4.2.5).
func resIOPortDesc(base uint16, length uint8) []byte {
	d := []byte{resIOPort, resIODecode16}
	d = binary.LittleEndian.AppendUint16(d, base) // Range Minimum Base Address
	d = binary.LittleEndian.AppendUint16(d, base) // Range Maximum Base Address
	return append(d, 1, length)                   // Base Alignment, Range Length
}
