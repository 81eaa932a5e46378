package acpi

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestEncodePkgLengthBoundaries(t *testing.T) {
	cases := []struct {
		n    uint32
		want []byte
	}{
		{0, []byte{0x00}},
		{63, []byte{0x3F}},
		{64, []byte{0x40, 0x04}},
		{0x123, []byte{0x43, 0x12}},
		{4095, []byte{0x4F, 0xFF}},
		{4096, []byte{0x80, 0x00, 0x01}},
		{1<<20 - 1, []byte{0x8F, 0xFF, 0xFF}},
		{1 << 20, []byte{0xC0, 0x00, 0x00, 0x01}},
		{0x0ABCDEF1, []byte{0xC1, 0xEF, 0xCD, 0xAB}},
		{maxPkgLength, []byte{0xCF, 0xFF, 0xFF, 0xFF}},
	}
	for _, c := range cases {
		got, err := encodePkgLength(c.n)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("encodePkgLength(%d) = % x, %v; want % x", c.n, got, err, c.want)
			continue
		}
		n, size, err := decodePkgLength(append(got, 0xAA)) // trailing byte must be ignored
		if err != nil || n != c.n || size != len(c.want) {
			t.Errorf("decodePkgLength(% x) = %d, %d, %v; want %d, %d", got, n, size, err, c.n, len(c.want))
		}
	}
	for _, n := range []uint32{1 << 28, 1<<32 - 1} {
		if b, err := encodePkgLength(n); err == nil {
			t.Errorf("encodePkgLength(%d) = % x, want error", n, b)
		}
	}
}

func TestDecodePkgLengthErrors(t *testing.T) {
	for _, b := range [][]byte{
		{},                 // nothing
		{0x40},             // promises 1 more byte
		{0xC0, 0x00, 0x00}, // promises 3 more bytes
		{0x50, 0x00},       // reserved bit 4 set
		{0x60, 0x00},       // reserved bit 5 set
	} {
		if n, size, err := decodePkgLength(b); err == nil {
			t.Errorf("decodePkgLength(% x) = %d, %d; want error", b, n, size)
		}
	}
}

// TestPkgLengthFor checks the self-inclusive length at the points where the
// PkgLength itself grows by a byte.
func TestPkgLengthFor(t *testing.T) {
	cases := []struct{ body, size int }{
		{0, 1}, {62, 1}, {63, 2}, {64, 2},
		{4093, 2}, {4094, 3},
		{1<<20 - 4, 3}, {1<<20 - 3, 4},
		{maxPkgLength - 4, 4},
	}
	for _, c := range cases {
		enc, err := pkgLengthFor(c.body)
		if err != nil {
			t.Errorf("pkgLengthFor(%d): %v", c.body, err)
			continue
		}
		n, size, _ := decodePkgLength(enc)
		if size != c.size || int(n) != c.body+c.size {
			t.Errorf("pkgLengthFor(%d) = % x (value %d, %d bytes); want value %d in %d bytes", c.body, enc, n, size, c.body+c.size, c.size)
		}
	}
	if enc, err := pkgLengthFor(maxPkgLength - 3); err == nil {
		t.Errorf("pkgLengthFor(max-3) = % x, want error", enc)
	}
}

func TestAMLInteger(t *testing.T) {
	cases := []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0A, 0x02}},
		{0xFF, []byte{0x0A, 0xFF}},
		{0x100, []byte{0x0B, 0x00, 0x01}},
		{0xFFFF, []byte{0x0B, 0xFF, 0xFF}},
		{0x10000, []byte{0x0C, 0x00, 0x00, 0x01, 0x00}},
		{0xFFFFFFFF, []byte{0x0C, 0xFF, 0xFF, 0xFF, 0xFF}},
		{1 << 32, []byte{0x0E, 0, 0, 0, 0, 1, 0, 0, 0}},
	}
	for _, c := range cases {
		if got := amlInteger(c.v); !bytes.Equal(got, c.want) {
			t.Errorf("amlInteger(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestAMLNamesAndObjects(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"NameSeg", amlNameString("_HID"), []byte("_HID")},
		{"root", amlNameString(`\_SB_`), []byte(`\_SB_`)},
		{"dual", amlNameString("_SB_.V000"), append([]byte{0x2E}, "_SB_V000"...)},
		{"multi", amlNameString(`\_SB_.PCI0.S08_`), append([]byte{0x5C, 0x2F, 3}, "_SB_PCI0S08_"...)},
		{"string", amlString("LNRO0005"), append(append([]byte{0x0D}, "LNRO0005"...), 0)},
		{"EISAID PNP0501", amlEISAID("PNP0501"), []byte{0x0C, 0x41, 0xD0, 0x05, 0x01}},
		{"EISAID PNP0A03", amlEISAID("PNP0A03"), []byte{0x0C, 0x41, 0xD0, 0x0A, 0x03}},
		{"_S5_", amlName(`\_S5_`, amlPackage(amlInteger(5), amlInteger(0))),
			[]byte{0x08, 0x5C, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0A, 0x05, 0x00}},
		{"buffer", amlBuffer([]byte{0x79, 0x00}), []byte{0x11, 0x05, 0x0A, 0x02, 0x79, 0x00}},
		{"device", amlDevice("V000", amlName("_UID", amlInteger(0))),
			[]byte{0x5B, 0x82, 0x0B, 'V', '0', '0', '0', 0x08, '_', 'U', 'I', 'D', 0x00}},
		{"Memory32Fixed", resMemory32FixedDesc(0xD0000000, 0x1000),
			[]byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00}},
		{"Interrupt", resInterruptDesc(5), []byte{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00}},
		{"IO", resIOPortDesc(0x3F8, 8), []byte{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08}},
	}
	for _, c := range cases {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, c.want)
		}
	}
}

func TestAMLInvalidNamesPanic(t *testing.T) {
	for _, name := range []string{"_HI", "_HIDX", "0ABC", "ab__", `\`} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("amlNameString(%q) did not panic", name)
				}
			}()
			amlNameString(name)
		}()
	}
}

// TestAMLControlMethods checks the method-body encoders byte for byte
// against the encodings of §20.2.5 and §20.2.6 (the expected bytes were
// also checked against iasl's listing of the same ASL, compiled with -oa so
// that it keeps the absolute path).
func TestAMLControlMethods(t *testing.T) {
	vgen := []byte{0x5C, 0x2E, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N'} // \_SB_.VGEN
	notify := append(append([]byte{0x86}, vgen...), 0x0A, 0x80)        // Notify (\_SB.VGEN, 0x80)
	lequal := []byte{0x93, 0x68, 0x0A, 0x03}                           // LEqual (Arg0, 3)
	cases := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"Arg0", amlArg(0), []byte{0x68}},
		{"Arg6", amlArg(6), []byte{0x6E}},
		{"LEqual", amlLEqual(amlArg(0), amlInteger(3)), lequal},
		{"Notify", amlNotify(`\_SB_.VGEN`, amlInteger(0x80)), notify},
		{"Return Zero", amlReturn(amlInteger(0)), []byte{0xA4, 0x00}},
		{"If", amlIf(amlLEqual(amlArg(0), amlInteger(3)), amlNotify(`\_SB_.VGEN`, amlInteger(0x80))),
			concat([]byte{0xA0, 0x12}, lequal, notify)},
		{"empty If", amlIf(amlInteger(1)), []byte{0xA0, 0x02, 0x01}},
		{"Method _EVT", amlMethod("_EVT", 1, false, amlIf(amlLEqual(amlArg(0), amlInteger(3)), amlNotify(`\_SB_.VGEN`, amlInteger(0x80)))),
			concat([]byte{0x14, 0x19, '_', 'E', 'V', 'T', 0x01, 0xA0, 0x12}, lequal, notify)},
		{"Method ADDR", amlMethod("ADDR", 0, false, amlReturn(amlPackage(amlInteger(0xEFFF0), amlInteger(0)))),
			[]byte{0x14, 0x10, 'A', 'D', 'D', 'R', 0x00, 0xA4, 0x12, 0x08, 0x02, 0x0C, 0xF0, 0xFF, 0x0E, 0x00, 0x00}},
		// MethodFlags: ArgCount in bits 2:0, SerializeFlag bit 3.
		{"Serialized", amlMethod("SRL_", 2, true), []byte{0x14, 0x06, 'S', 'R', 'L', '_', 0x0A}},
		{"seven args", amlMethod("M7__", 7, false), []byte{0x14, 0x06, 'M', '7', '_', '_', 0x07}},
	}
	for _, c := range cases {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, c.want)
		}
	}
	for name, f := range map[string]func(){
		"Arg7":            func() { amlArg(7) },
		"Arg-1":           func() { amlArg(-1) },
		"8-arg method":    func() { amlMethod("M8__", 8, false) },
		"negative args":   func() { amlMethod("MN__", -1, false) },
		"bad method name": func() { amlMethod("m", 0, false) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestMultiBytePkgLengthObjects runs objects whose PkgLength needs 1, 2, 3
// and 4 bytes through the walker, so a wrong self-inclusive length shows up.
func TestMultiBytePkgLengthObjects(t *testing.T) {
	// Buffer body = BufferSize encoding + data; sizes straddle 63/4095/2^20-1.
	for _, n := range []int{0, 59, 60, 61, 62, 4000, 4090, 4091, 4092, 1<<20 - 8, 1<<20 - 7, 1<<20 - 6} {
		w, err := walkAML(amlName("BUFF", amlBuffer(make([]byte, n))))
		if err != nil {
			t.Fatalf("buffer of %d bytes: %v", n, err)
		}
		if v := w.names[`\BUFF`]; v.kind != 'b' || len(v.buf) != n {
			t.Errorf("buffer of %d bytes decoded as %c with %d bytes", n, v.kind, len(v.buf))
		}
	}
	// A method body and an If body whose PkgLengths grow from 1 to 2 and
	// from 2 to 3 bytes somewhere in these ranges.
	var sizes []int
	for n := 0; n < 70; n++ {
		sizes = append(sizes, n)
	}
	for n := 4060; n < 4100; n++ {
		sizes = append(sizes, n)
	}
	seen := map[int]bool{}
	for _, n := range sizes {
		m := amlMethod("BIG_", 1, false, amlIf(amlArg(0), amlReturn(amlBuffer(make([]byte, n)))))
		w, err := walkAML(m)
		if err != nil {
			t.Fatalf("method returning %d bytes: %v", n, err)
		}
		want := fmt.Sprintf("If(Arg0){Return(Buffer[%d])}", n)
		if got := w.methods[`\BIG_`]; got.args != 1 || got.body != want {
			t.Errorf("method returning %d bytes decoded as %+v, want body %q", n, got, want)
		}
		_, methodLen, _ := decodePkgLength(m[1:])
		_, ifLen, _ := decodePkgLength(m[1+methodLen+5+1:])
		seen[10*methodLen+ifLen] = true
	}
	for _, lens := range []int{11, 21, 22, 32, 33} { // method, If PkgLength sizes
		if !seen[lens] {
			t.Errorf("no method had PkgLength sizes %d (method) and %d (If)", lens/10, lens%10)
		}
	}
	for _, n := range []int{0, 1, 20, 21, 22, 255} {
		var elems [][]byte
		for i := 0; i < n; i++ {
			elems = append(elems, amlInteger(0x1234)) // 3 bytes each
		}
		w, err := walkAML(amlName("PKG_", amlPackage(elems...)))
		if err != nil {
			t.Fatalf("package of %d: %v", n, err)
		}
		if v := w.names[`\PKG_`]; v.kind != 'p' || len(v.elems) != n {
			t.Errorf("package of %d decoded as %c with %d elements", n, v.kind, len(v.elems))
		}
	}
}

// --- A strict AML walker, independent of the encoder ------------------------

type amlValue struct {
	kind  byte // 'i' integer, 's' string, 'p' package, 'b' buffer
	i     uint64
	s     string
	elems []amlValue
	buf   []byte
}

// String renders v compactly, for comparing method bodies.
func (v amlValue) String() string {
	switch v.kind {
	case 'i':
		return fmt.Sprintf("%#x", v.i)
	case 's':
		return fmt.Sprintf("%q", v.s)
	case 'p':
		var e []string
		for _, x := range v.elems {
			e = append(e, x.String())
		}
		return "Package{" + strings.Join(e, ",") + "}"
	case 'b':
		return fmt.Sprintf("Buffer[%d]", len(v.buf))
	}
	return "?"
}

// amlMethodInfo is one decoded Method: its flags and its body rendered as
// compact ASL, e.g. `If(LEqual(Arg0,0x3)){Notify(\_SB_.VGEN,0x80)}`.
type amlMethodInfo struct {
	args       int
	serialized bool
	body       string
}

type amlWalk struct {
	b       []byte
	pos     int
	names   map[string]amlValue      // absolute path -> value
	methods map[string]amlMethodInfo // absolute path -> method
	devices []string                 // absolute paths, in order
	scopes  []string
	pkgLens []int // offsets of every PkgLength decoded
}

// walkAML parses a TermList of the subset the DSDT uses (Name, Scope, Device,
// Method and their data objects; in method bodies Return, If, Notify,
// LEqual and ArgN), checking that every PkgLength ends exactly where its
// contents end.
func walkAML(b []byte) (*amlWalk, error) {
	w := &amlWalk{b: b, names: map[string]amlValue{}, methods: map[string]amlMethodInfo{}}
	if err := w.termList(len(b), `\`); err != nil {
		return w, fmt.Errorf("at offset %#x: %w", w.pos, err)
	}
	return w, nil
}

func (w *amlWalk) need(n, end int) error {
	if w.pos+n > end {
		return fmt.Errorf("need %d bytes, %d left before end %#x", n, end-w.pos, end)
	}
	return nil
}

func (w *amlWalk) pkgEnd(end int) (int, error) {
	start := w.pos
	w.pkgLens = append(w.pkgLens, start)
	n, size, err := decodePkgLength(w.b[w.pos:end])
	if err != nil {
		return 0, err
	}
	if int(n) < size || start+int(n) > end {
		return 0, fmt.Errorf("PkgLength %d (%d bytes) at %#x overruns enclosing end %#x", n, size, start, end)
	}
	w.pos += size
	return start + int(n), nil
}

func join(scope, name string) string {
	switch {
	case strings.HasPrefix(name, `\`):
		return name
	case scope == `\`:
		return `\` + name
	}
	return scope + "." + name
}

func (w *amlWalk) nameString(end int, scope string) (string, error) {
	root := false
	if err := w.need(1, end); err != nil {
		return "", err
	}
	if w.b[w.pos] == '\\' {
		root = true
		w.pos++
	}
	if err := w.need(1, end); err != nil {
		return "", err
	}
	count := 1
	switch w.b[w.pos] {
	case 0x2E:
		count = 2
		w.pos++
	case 0x2F:
		if err := w.need(2, end); err != nil {
			return "", err
		}
		count = int(w.b[w.pos+1])
		w.pos += 2
	}
	var segs []string
	for i := 0; i < count; i++ {
		if err := w.need(4, end); err != nil {
			return "", err
		}
		seg := string(w.b[w.pos : w.pos+4])
		for j, c := range []byte(seg) {
			if !(c >= 'A' && c <= 'Z' || c == '_' || j > 0 && c >= '0' && c <= '9') {
				return "", fmt.Errorf("invalid NameSeg %q", seg)
			}
		}
		segs = append(segs, seg)
		w.pos += 4
	}
	name := strings.Join(segs, ".")
	if root {
		return `\` + name, nil
	}
	return join(scope, name), nil
}

func (w *amlWalk) termList(end int, scope string) error {
	for w.pos < end {
		op := w.b[w.pos]
		w.pos++
		switch op {
		case 0x08: // Name
			name, err := w.nameString(end, scope)
			if err != nil {
				return err
			}
			v, err := w.dataObject(end)
			if err != nil {
				return fmt.Errorf("Name(%s): %w", name, err)
			}
			if w.defined(name) {
				return fmt.Errorf("duplicate name %s", name)
			}
			w.names[name] = v
		case 0x14: // Method
			pend, err := w.pkgEnd(end)
			if err != nil {
				return err
			}
			name, err := w.nameString(pend, scope)
			if err != nil {
				return err
			}
			if err := w.need(1, pend); err != nil {
				return err
			}
			flags := w.b[w.pos]
			w.pos++
			if flags&0xF0 != 0 {
				return fmt.Errorf("Method %s: SyncLevel %d, want 0", name, flags>>4)
			}
			m := amlMethodInfo{args: int(flags & 7), serialized: flags&8 != 0}
			if m.body, err = w.statements(pend, scope, m.args); err != nil {
				return fmt.Errorf("Method %s: %w", name, err)
			}
			if w.defined(name) {
				return fmt.Errorf("duplicate name %s", name)
			}
			w.methods[name] = m
		case 0x10, 0x5B: // Scope, ExtOpPrefix
			isDevice := op == 0x5B
			if isDevice {
				if err := w.need(1, end); err != nil {
					return err
				}
				if w.b[w.pos] != 0x82 {
					return fmt.Errorf("unsupported extended opcode 5B %02x", w.b[w.pos])
				}
				w.pos++
			}
			pend, err := w.pkgEnd(end)
			if err != nil {
				return err
			}
			name, err := w.nameString(pend, scope)
			if err != nil {
				return err
			}
			if isDevice {
				w.devices = append(w.devices, name)
			} else {
				w.scopes = append(w.scopes, name)
			}
			if err := w.termList(pend, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected opcode %#02x", op)
		}
	}
	if w.pos != end {
		return fmt.Errorf("term list ran to %#x, past its end %#x", w.pos, end)
	}
	return nil
}

func (w *amlWalk) defined(name string) bool {
	_, n := w.names[name]
	_, m := w.methods[name]
	return n || m
}

// statements parses a method's TermList up to end, rendering it as compact
// ASL; args is the method's ArgCount, which bounds the ArgN it may use.
func (w *amlWalk) statements(end int, scope string, args int) (string, error) {
	var out []string
	for w.pos < end {
		op := w.b[w.pos]
		w.pos++
		switch op {
		case 0xA4: // Return
			v, err := w.termArg(end, scope, args)
			if err != nil {
				return "", fmt.Errorf("Return: %w", err)
			}
			out = append(out, "Return("+v+")")
		case 0xA0: // If
			pend, err := w.pkgEnd(end)
			if err != nil {
				return "", err
			}
			pred, err := w.termArg(pend, scope, args)
			if err != nil {
				return "", fmt.Errorf("If predicate: %w", err)
			}
			body, err := w.statements(pend, scope, args)
			if err != nil {
				return "", err
			}
			out = append(out, "If("+pred+"){"+body+"}")
		case 0x86: // Notify
			name, err := w.nameString(end, scope)
			if err != nil {
				return "", fmt.Errorf("Notify: %w", err)
			}
			v, err := w.termArg(end, scope, args)
			if err != nil {
				return "", fmt.Errorf("Notify value: %w", err)
			}
			out = append(out, "Notify("+name+","+v+")")
		default:
			return "", fmt.Errorf("unexpected statement opcode %#02x", op)
		}
	}
	if w.pos != end {
		return "", fmt.Errorf("method body ran to %#x, past its end %#x", w.pos, end)
	}
	return strings.Join(out, ";"), nil
}

// termArg parses an operand: LEqual, an ArgN below args, or a data object.
func (w *amlWalk) termArg(end int, scope string, args int) (string, error) {
	if err := w.need(1, end); err != nil {
		return "", err
	}
	switch op := w.b[w.pos]; {
	case op == 0x93: // LEqual
		w.pos++
		a, err := w.termArg(end, scope, args)
		if err != nil {
			return "", err
		}
		b, err := w.termArg(end, scope, args)
		if err != nil {
			return "", err
		}
		return "LEqual(" + a + "," + b + ")", nil
	case op >= 0x68 && op <= 0x6E:
		w.pos++
		if n := int(op - 0x68); n >= args {
			return "", fmt.Errorf("Arg%d in a method of %d arguments", n, args)
		}
		return fmt.Sprintf("Arg%d", op-0x68), nil
	}
	v, err := w.dataObject(end)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

func (w *amlWalk) dataObject(end int) (amlValue, error) {
	if err := w.need(1, end); err != nil {
		return amlValue{}, err
	}
	op := w.b[w.pos]
	w.pos++
	fixed := map[byte]int{0x0A: 1, 0x0B: 2, 0x0C: 4, 0x0E: 8}
	switch op {
	case 0x00, 0x01:
		return amlValue{kind: 'i', i: uint64(op)}, nil
	case 0x0A, 0x0B, 0x0C, 0x0E:
		n := fixed[op]
		if err := w.need(n, end); err != nil {
			return amlValue{}, err
		}
		var v uint64
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint64(w.b[w.pos+i])
		}
		w.pos += n
		return amlValue{kind: 'i', i: v}, nil
	case 0x0D:
		i := bytes.IndexByte(w.b[w.pos:end], 0)
		if i < 0 {
			return amlValue{}, fmt.Errorf("unterminated string")
		}
		s := string(w.b[w.pos : w.pos+i])
		for _, c := range []byte(s) {
			if c > 0x7F {
				return amlValue{}, fmt.Errorf("non-ASCII string %q", s)
			}
		}
		w.pos += i + 1
		return amlValue{kind: 's', s: s}, nil
	case 0x12: // Package
		pend, err := w.pkgEnd(end)
		if err != nil {
			return amlValue{}, err
		}
		if err := w.need(1, pend); err != nil {
			return amlValue{}, err
		}
		count := int(w.b[w.pos])
		w.pos++
		v := amlValue{kind: 'p'}
		for w.pos < pend {
			e, err := w.dataObject(pend)
			if err != nil {
				return amlValue{}, err
			}
			v.elems = append(v.elems, e)
		}
		if len(v.elems) != count {
			return amlValue{}, fmt.Errorf("package declares %d elements, holds %d", count, len(v.elems))
		}
		return v, nil
	case 0x11: // Buffer
		pend, err := w.pkgEnd(end)
		if err != nil {
			return amlValue{}, err
		}
		size, err := w.dataObject(pend)
		if err != nil || size.kind != 'i' {
			return amlValue{}, fmt.Errorf("buffer size: %v", err)
		}
		if uint64(pend-w.pos) != size.i {
			return amlValue{}, fmt.Errorf("buffer declares %d bytes, PkgLength leaves %d", size.i, pend-w.pos)
		}
		v := amlValue{kind: 'b', buf: w.b[w.pos:pend]}
		w.pos = pend
		return v, nil
	}
	return amlValue{}, fmt.Errorf("unsupported data object opcode %#02x", op)
}

// resource is one decoded resource descriptor (§6.4).
type resource struct {
	kind string
	a, b uint64 // Memory32Fixed: base, length; IO: base, length; Interrupt: flags, gsi
}

// parseResources decodes a resource template, requiring the End Tag last.
func parseResources(buf []byte) ([]resource, error) {
	var out []resource
	for off := 0; off < len(buf); {
		tag := buf[off]
		if tag&0x80 == 0 { // small item: length in bits 2:0
			n := int(tag & 7)
			if off+1+n > len(buf) {
				return nil, fmt.Errorf("small item %#02x overruns", tag)
			}
			d := buf[off+1 : off+1+n]
			switch tag >> 3 {
			case 0x0F: // End Tag
				if n != 1 || off+2 != len(buf) {
					return nil, fmt.Errorf("end tag at %d of %d", off, len(buf))
				}
				return out, nil
			case 0x08: // I/O Port
				if n != 7 || d[1] != d[3] || d[2] != d[4] {
					return nil, fmt.Errorf("IO descriptor % x", d)
				}
				out = append(out, resource{"IO", uint64(le.Uint16(d[1:3])), uint64(d[6])})
			default:
				return nil, fmt.Errorf("unexpected small item %#02x", tag)
			}
			off += 1 + n
			continue
		}
		if off+3 > len(buf) {
			return nil, fmt.Errorf("large item header overruns")
		}
		n := int(le.Uint16(buf[off+1:]))
		if off+3+n > len(buf) {
			return nil, fmt.Errorf("large item %#02x overruns", tag)
		}
		d := buf[off+3 : off+3+n]
		switch tag {
		case 0x86:
			if n != 9 || d[0] != 1 {
				return nil, fmt.Errorf("Memory32Fixed % x", d)
			}
			out = append(out, resource{"Memory32Fixed", uint64(le.Uint32(d[1:5])), uint64(le.Uint32(d[5:9]))})
		case 0x89:
			if n != 6 || d[1] != 1 {
				return nil, fmt.Errorf("Extended Interrupt % x", d)
			}
			out = append(out, resource{"Interrupt", uint64(d[0]), uint64(le.Uint32(d[2:6]))})
		default:
			return nil, fmt.Errorf("unexpected large item %#02x", tag)
		}
		off += 3 + n
	}
	return nil, fmt.Errorf("no end tag")
}

func TestDSDTStructure(t *testing.T) {
	cfg := sampleConfig()
	g := buildAndParse(t, cfg, DefaultBase)
	w, err := walkAML(g.dsdt[36:])
	if err != nil {
		t.Fatalf("DSDT AML: %v", err)
	}
	s5 := w.names[`\_S5_`]
	if s5.kind != 'p' || len(s5.elems) != 2 || s5.elems[0].i != SleepTypeS5 || s5.elems[1].i != 0 {
		t.Errorf(`\_S5_ = %+v, want Package {5, 0}`, s5)
	}
	wantDevices := []string{`\_SB_.COM1`, `\_SB_.V000`, `\_SB_.V001`, `\_SB_.V002`, `\_SB_.VGEN`, `\_SB_.GED0`}
	if !reflect.DeepEqual(w.devices, wantDevices) {
		t.Errorf("devices %v, want %v", w.devices, wantDevices)
	}
	for i, d := range cfg.VirtioMMIO {
		p := fmt.Sprintf(`\_SB_.V%03d.`, i)
		if v := w.names[p+"_HID"]; v.kind != 's' || v.s != "LNRO0005" {
			t.Errorf("%s_HID = %+v", p, v)
		}
		if v := w.names[p+"_UID"]; v.kind != 'i' || v.i != uint64(i) {
			t.Errorf("%s_UID = %+v", p, v)
		}
		crs := w.names[p+"_CRS"]
		res, err := parseResources(crs.buf)
		if err != nil {
			t.Fatalf("%s_CRS: %v", p, err)
		}
		want := []resource{{"Memory32Fixed", d.Base, d.Size}, {"Interrupt", 0x03, uint64(d.GSI)}} // consumer|edge, active high, exclusive
		if !reflect.DeepEqual(res, want) {
			t.Errorf("%s_CRS = %+v, want %+v", p, res, want)
		}
	}
	if v := w.names[`\_SB_.COM1._HID`]; v.kind != 'i' || v.i != 0x0105D041 {
		t.Errorf(`COM1 _HID = %+v, want EISAID("PNP0501") = 0x0105D041`, v)
	}
	res, err := parseResources(w.names[`\_SB_.COM1._CRS`].buf)
	want := []resource{{"IO", 0x3F8, 8}, {"Interrupt", 0x03, 4}}
	if err != nil || !reflect.DeepEqual(res, want) {
		t.Errorf("COM1 _CRS = %+v, %v; want %+v", res, err, want)
	}
	checkVMGenID(t, w, *cfg.VMGenID)
}

// checkVMGenID checks \_SB_.VGEN and \_SB_.GED0 against what Linux's
// vmgenid and GED drivers look for.
func checkVMGenID(t *testing.T, w *amlWalk, g VMGenIDConfig) {
	t.Helper()
	for name, want := range map[string]string{
		`\_SB_.VGEN._HID`: `"PYRO0001"`,
		`\_SB_.VGEN._CID`: `"VM_Gen_Counter"`, // upper-cased by ACPICA: VM_GEN_COUNTER
		`\_SB_.VGEN._DDN`: `"VM_Gen_Counter"`,
		`\_SB_.GED0._HID`: `"ACPI0013"`,
		`\_SB_.GED0._UID`: `0x0`,
	} {
		if got := w.names[name].String(); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	// vmgenid.c evaluates ADDR and wants a package of two integers, the
	// low and the high 32 bits of the address.
	addr := amlMethodInfo{args: 0, body: fmt.Sprintf("Return(Package{%#x,%#x})", g.Addr&0xFFFFFFFF, g.Addr>>32)}
	if got := w.methods[`\_SB_.VGEN.ADDR`]; got != addr {
		t.Errorf(`\_SB_.VGEN.ADDR = %+v, want %+v`, got, addr)
	}
	res, err := parseResources(w.names[`\_SB_.GED0._CRS`].buf)
	want := []resource{{"Interrupt", 0x03, uint64(g.GSI)}} // consumer|edge, active high, exclusive
	if err != nil || !reflect.DeepEqual(res, want) {
		t.Errorf("GED0 _CRS = %+v, %v; want %+v", res, err, want)
	}
	// evged.c runs _EVT with the GSI as its one argument.
	evt := amlMethodInfo{args: 1, body: fmt.Sprintf(`If(LEqual(Arg0,%#x)){Notify(\_SB_.VGEN,0x80)}`, g.GSI)}
	if got := w.methods[`\_SB_.GED0._EVT`]; got != evt {
		t.Errorf(`\_SB_.GED0._EVT = %+v, want %+v`, got, evt)
	}
}

// TestVMGenIDAddressAbove4GiB checks the high half of ADDR's package.
func TestVMGenIDAddressAbove4GiB(t *testing.T) {
	g := VMGenIDConfig{Addr: 0x1_2345_6788, GSI: 22}
	b := buildAndParse(t, Config{NumCPUs: 1, VMGenID: &g}, DefaultBase)
	w, err := walkAML(b.dsdt[36:])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`\_SB_.VGEN`, `\_SB_.GED0`}; !reflect.DeepEqual(w.devices, want) {
		t.Errorf("devices %v, want %v", w.devices, want)
	}
	if got, want := w.methods[`\_SB_.VGEN.ADDR`].body, "Return(Package{0x23456788,0x1})"; got != want {
		t.Errorf("ADDR body %s, want %s", got, want)
	}
	checkVMGenID(t, w, g)
}

func TestDSDTMinimal(t *testing.T) {
	g := buildAndParse(t, Config{NumCPUs: 1}, DefaultBase)
	w, err := walkAML(g.dsdt[36:])
	if err != nil {
		t.Fatal(err)
	}
	if len(w.devices) != 0 || len(w.scopes) != 0 || len(w.names) != 1 || len(w.methods) != 0 {
		t.Errorf("minimal DSDT has devices %v, scopes %v, names %v, methods %v", w.devices, w.scopes, w.names, w.methods)
	}
}

// TestWalkerRejectsCorruption makes sure the structural check can fail:
// nudging any PkgLength of the DSDT by one must be caught.
func TestWalkerRejectsCorruption(t *testing.T) {
	g := buildAndParse(t, sampleConfig(), DefaultBase)
	aml := g.dsdt[36:]
	w, err := walkAML(aml)
	if err != nil {
		t.Fatal(err)
	}
	// 1 package + 1 scope + 4 devices + 4 buffers, then for the VM
	// generation ID 2 devices, 2 methods, ADDR's package, GED0's _CRS
	// buffer and _EVT's If.
	if len(w.pkgLens) != 17 {
		t.Fatalf("walker saw %d PkgLengths, want 17", len(w.pkgLens))
	}
	for _, at := range w.pkgLens {
		for _, delta := range []int{-1, 1} {
			bad := append([]byte(nil), aml...)
			bad[at] = byte(int(bad[at]) + delta)
			if _, err := walkAML(bad); err == nil {
				t.Errorf("PkgLength at %#x changed by %d: corruption not detected", at, delta)
			}
		}
	}
	if _, err := walkAML(aml[:len(aml)-1]); err == nil {
		t.Error("walker accepted truncated AML")
	}
}

func FuzzPkgLength(f *testing.F) {
	for _, v := range []uint32{0, 1, 63, 64, 4095, 4096, 1<<20 - 1, 1 << 20, maxPkgLength, maxPkgLength + 1, 1<<32 - 1} {
		enc, _ := encodePkgLength(v)
		f.Add(v, enc)
	}
	f.Add(uint32(5), []byte{0x40, 0x00})       // non-minimal encoding of 0
	f.Add(uint32(7), []byte{0x70, 0x01})       // reserved bits set
	f.Add(uint32(9), []byte{0xC0, 0x01, 0x02}) // truncated
	f.Fuzz(func(t *testing.T, v uint32, raw []byte) {
		// Encode -> decode round trip with the minimal size.
		enc, err := encodePkgLength(v)
		if v > maxPkgLength {
			if err == nil {
				t.Fatalf("encodePkgLength(%d) = % x, want error", v, enc)
			}
		} else {
			if err != nil {
				t.Fatalf("encodePkgLength(%d): %v", v, err)
			}
			wantSize := 1
			for _, lim := range []uint32{1 << 6, 1 << 12, 1 << 20} {
				if v >= lim {
					wantSize++
				}
			}
			n, size, err := decodePkgLength(enc)
			if err != nil || n != v || size != len(enc) || size != wantSize {
				t.Fatalf("round trip %d: % x -> %d, %d, %v (want size %d)", v, enc, n, size, err, wantSize)
			}
		}
		// Decode -> encode -> decode of arbitrary bytes.
		if n, size, err := decodePkgLength(raw); err == nil {
			if size < 1 || size > 4 || size > len(raw) || int(raw[0]>>6)+1 != size {
				t.Fatalf("decodePkgLength(% x): size %d", raw, size)
			}
			re, err := encodePkgLength(n)
			if err != nil || len(re) > size {
				t.Fatalf("re-encode %d: % x, %v (decoded from %d bytes)", n, re, err, size)
			}
			if n2, _, _ := decodePkgLength(re); n2 != n {
				t.Fatalf("re-decode % x = %d, want %d", re, n2, n)
			}
		}
		// Self-inclusive lengths as used by withPkgLength.
		body := int(v % (maxPkgLength + 1))
		if pl, err := pkgLengthFor(body); err == nil {
			n, size, _ := decodePkgLength(pl)
			if int(n) != body+size || size != len(pl) {
				t.Fatalf("pkgLengthFor(%d) = % x: value %d, size %d", body, pl, n, size)
			}
			if size > 1 {
				if shorter, _ := encodePkgLength(uint32(body + size - 1)); len(shorter) == size-1 {
					t.Fatalf("pkgLengthFor(%d) used %d bytes, %d would do", body, size, size-1)
				}
			}
		} else if body+4 <= maxPkgLength {
			t.Fatalf("pkgLengthFor(%d): %v", body, err)
		}
	})
}
