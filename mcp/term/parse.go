package term

// The parser: bytes in, actions on the screen out.
//
// Primer. A terminal's input is text interleaved with control functions
// (ECMA-48; the DEC VT100..VT500 and xterm dialects). The recognizer here
// is the state machine Paul Flo Williams drew for DEC's terminals
// ("A parser for DEC's ANSI-compatible video terminals", vt100.net/emu/
// dec_ansi_parser), which says what a real terminal does with every byte
// in every state, malformed input included:
//
//   - ground: printable text is drawn; C0 controls (0x00-0x1F) execute.
//   - escape: after ESC. 0x20-0x2F are intermediates (escape intermediate);
//     '[' enters a control sequence (CSI), ']' an operating system command
//     (OSC), 'P' a device control string (DCS), 'X' 'd' '_' SOS/PM/APC
//     strings; any other 0x30-0x7E is the final byte of an escape sequence.
//   - CSI entry/param/intermediate: parameters are digits separated by ';'
//     (':' for sub-parameters), an optional private marker 0x3C-0x3F comes
//     first, intermediates 0x20-0x2F follow, and a final byte 0x40-0x7E
//     dispatches. A byte out of that order sends the sequence to CSI
//     ignore, which swallows up to its final byte.
//   - OSC string, DCS/SOS/PM/APC string: consumed and discarded up to ST
//     (ESC \); an OSC also ends at BEL, as xterm's do.
//   - anywhere: CAN and SUB abort a sequence, ESC starts a new one; C0
//     controls inside an escape or control sequence execute without
//     ending it (so "ESC [ 1 LF A" is a line feed then a cursor up).
//
// Departures, all deliberate: text is UTF-8, decoded in ground state only
// (incomplete sequences wait for the next Write; invalid bytes become
// U+FFFD, one per maximal invalid subpart); 8-bit C1 controls are not
// recognized (0x80-0x9F are UTF-8 continuation bytes, and the code points
// U+0080-U+009F are dropped); DCS is not passed through anywhere, so its
// entry, param, intermediate, passthrough and ignore states collapse into
// one "string" state. Bytes 0x80-0xFF inside a sequence or string are
// ignored.
//
// Bounds: at most maxParams parameters are kept (later ones are parsed and
// dropped), each saturates at maxParamValue, and at most maxIntermediates
// intermediates are kept (a sequence with more is ignored). The parser's
// state is a fixed-size struct; no input makes it allocate.

import "unicode/utf8"

const (
	maxParams        = 16    // parameters kept per control sequence (the VT500's limit)
	maxParamValue    = 65535 // a parameter saturates here
	maxIntermediates = 2     // intermediate bytes kept per sequence
)

// Parser states (vt100.net names).
const (
	stGround = iota
	stEscape
	stEscapeIntermediate
	stCSIEntry
	stCSIParam
	stCSIIntermediate
	stCSIIgnore
	stOSCString
	stString // DCS, SOS, PM and APC: consumed up to ST, never interpreted
)

// C0 controls the screen acts on.
const (
	bel = 0x07
	bs  = 0x08
	ht  = 0x09
	lf  = 0x0a
	vt  = 0x0b
	ff  = 0x0c
	cr  = 0x0d
	can = 0x18
	sub = 0x1a
	esc = 0x1b
	del = 0x7f
)

// parser holds the recognizer's state between Writes.
type parser struct {
	state   uint8
	params  [maxParams]int
	pidx    int  // index of the parameter being read; maxParams once they overflow
	pseen   bool // a parameter byte was seen: count the parameters
	colon   bool // a ':' sub-parameter separator was seen
	prefix  byte // private marker ('?', '>', '<', '=') or 0
	inter   [maxIntermediates]byte
	ninter  int
	tooMany bool // more intermediates than kept: ignore the sequence

	// UTF-8 decoding in ground state.
	utf  [utf8.UTFMax]byte
	nutf int // bytes held
	need int // bytes the held sequence needs
}

// clear forgets the parameters and intermediates of the last sequence (the
// "clear" action).
func (p *parser) clear() {
	for i := 0; i <= p.pidx && i < maxParams; i++ {
		p.params[i] = 0
	}
	p.pidx, p.pseen, p.colon, p.prefix, p.ninter, p.tooMany = 0, false, false, 0, 0, false
}

func (p *parser) collect(b byte) {
	if p.ninter < maxIntermediates {
		p.inter[p.ninter] = b
		p.ninter++
	} else {
		p.tooMany = true
	}
}

// param takes one of 0-9 ; : into the parameter list.
func (p *parser) param(b byte) {
	p.pseen = true
	switch {
	case b == ';' || b == ':':
		if b == ':' {
			p.colon = true
		}
		if p.pidx < maxParams {
			p.pidx++
		}
	case p.pidx < maxParams:
		v := p.params[p.pidx]*10 + int(b-'0')
		if v > maxParamValue {
			v = maxParamValue
		}
		p.params[p.pidx] = v
	}
}

// nparams is the number of parameters kept.
func (p *parser) nparams() int {
	if !p.pseen {
		return 0
	}
	return min(p.pidx+1, maxParams)
}

// arg is parameter i, or def where it is absent or zero (ECMA-48: a zero
// parameter to a count means the default).
func (p *parser) arg(i, def int) int {
	if i >= p.nparams() || p.params[i] == 0 {
		return def
	}
	return p.params[i]
}

// Write feeds p to the terminal. It never fails and never keeps p.
func (s *Screen) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		if s.p.state == stGround && s.p.nutf == 0 && b >= 0x20 && b < 0x7f {
			s.print(rune(b), 1)
			continue
		}
		s.at = s.fed + int64(i)
		s.step(b)
	}
	s.fed += int64(len(p))
	return len(p), nil
}

// step runs the state machine for one byte.
func (s *Screen) step(b byte) {
	p := &s.p
	if p.nutf > 0 {
		if s.utf8Continue(b) {
			return
		}
		// The sequence was cut short: one U+FFFD for it, then b afresh.
	}
	// Transitions from anywhere.
	switch b {
	case can, sub:
		p.state = stGround
		return
	case esc:
		p.clear()
		p.state = stEscape
		return
	}
	switch p.state {
	case stGround:
		switch {
		case b < 0x20:
			s.execute(b)
		case b < 0x7f:
			s.print(rune(b), 1)
		case b == del:
		default:
			s.utf8Start(b)
		}
	case stEscape:
		switch {
		case b < 0x20:
			s.execute(b)
		case b < 0x30:
			p.collect(b)
			p.state = stEscapeIntermediate
		case b == '[':
			p.clear()
			p.state = stCSIEntry
		case b == ']':
			p.state = stOSCString
		case b == 'P' || b == 'X' || b == '^' || b == '_':
			p.state = stString
		case b < 0x7f:
			p.state = stGround
			s.escDispatch(b)
		}
	case stEscapeIntermediate:
		switch {
		case b < 0x20:
			s.execute(b)
		case b < 0x30:
			p.collect(b)
		case b < 0x7f:
			p.state = stGround
			s.escDispatch(b)
		}
	case stCSIEntry, stCSIParam:
		switch {
		case b < 0x20:
			s.execute(b)
		case b < 0x30:
			p.collect(b)
			p.state = stCSIIntermediate
		case b <= ';': // 0-9 : ;
			p.param(b)
			p.state = stCSIParam
		case b < 0x40: // < = > ?
			if p.state == stCSIEntry {
				p.prefix = b
				p.state = stCSIParam
			} else {
				p.state = stCSIIgnore
			}
		case b < 0x7f:
			p.state = stGround
			s.csiDispatch(b)
		}
	case stCSIIntermediate:
		switch {
		case b < 0x20:
			s.execute(b)
		case b < 0x30:
			p.collect(b)
		case b < 0x40:
			p.state = stCSIIgnore
		case b < 0x7f:
			p.state = stGround
			s.csiDispatch(b)
		}
	case stCSIIgnore:
		switch {
		case b < 0x20:
			s.execute(b)
		case b >= 0x40 && b < 0x7f:
			p.state = stGround
		}
	case stOSCString:
		if b == bel {
			p.state = stGround
		}
	case stString:
		// Everything up to ST (or CAN, SUB) is discarded.
	}
}

// utf8Start begins a multi-byte sequence with lead byte b (>= 0x80).
func (s *Screen) utf8Start(b byte) {
	p := &s.p
	switch {
	case b >= 0xc2 && b <= 0xdf:
		p.need = 2
	case b >= 0xe0 && b <= 0xef:
		p.need = 3
	case b >= 0xf0 && b <= 0xf4:
		p.need = 4
	default: // a stray continuation byte, C0/C1 overlongs, F5-FF
		s.printRune(utf8.RuneError)
		return
	}
	p.utf[0] = b
	p.nutf = 1
}

// utf8Continue offers b to the held sequence. It reports whether b was
// taken; if not, the held bytes were invalid and have been drawn as one
// U+FFFD, and the caller processes b afresh.
func (s *Screen) utf8Continue(b byte) bool {
	p := &s.p
	lo, hi := byte(0x80), byte(0xbf)
	if p.nutf == 1 { // the second byte's range depends on the lead (RFC 3629)
		switch p.utf[0] {
		case 0xe0:
			lo = 0xa0
		case 0xed:
			hi = 0x9f
		case 0xf0:
			lo = 0x90
		case 0xf4:
			hi = 0x8f
		}
	}
	if b < lo || b > hi {
		p.nutf = 0
		s.printRune(utf8.RuneError)
		return false
	}
	p.utf[p.nutf] = b
	p.nutf++
	if p.nutf == p.need {
		r, _ := utf8.DecodeRune(p.utf[:p.nutf])
		p.nutf = 0
		s.printRune(r)
	}
	return true
}
