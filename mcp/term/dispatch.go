package term

// Dispatch of escape and control sequences to the screen. What is acted
// on is what moves characters or the cursor (xterm's "ctlseqs" names the
// sequences); everything else (colours and attributes, modes that change
// only input or appearance, reports a terminal would send back) is
// recognized by the parser and dropped here.

// escDispatch acts on ESC [intermediates] final.
func (s *Screen) escDispatch(final byte) {
	p := &s.p
	if p.ninter > 0 {
		// ESC ( B and kin designate character sets; ESC # 8 (DECALN) and
		// ESC SP F (S7C1T) and the rest change nothing we draw.
		return
	}
	switch final {
	case '7':
		s.saveCursor()
	case '8':
		s.restoreCursor()
	case 'D': // IND
		s.index()
	case 'E': // NEL
		s.cur.x = 0
		s.index()
	case 'M': // RI
		s.reverseIndex()
	case 'c': // RIS
		s.reset()
	}
	// ESC \ (ST) ends a string and does nothing; ESC = and ESC > set the
	// keypad mode; ESC H sets a tab stop (tab stops stay every 8 columns).
}

// csiDispatch acts on CSI [prefix] params [intermediates] final.
func (s *Screen) csiDispatch(final byte) {
	p := &s.p
	if p.tooMany {
		return
	}
	if p.ninter > 0 {
		if p.ninter == 1 && p.inter[0] == '!' && final == 'p' && p.prefix == 0 {
			s.softReset() // DECSTR
		}
		return
	}
	if p.prefix != 0 {
		switch {
		case p.prefix != '?':
		case final == 'h' || final == 'l':
			s.decMode(final == 'h')
		case final == 'J': // DECSED: no character is protected, so ED
			s.eraseDisplay(p.arg(0, 0))
		case final == 'K': // DECSEL
			s.eraseLine(p.arg(0, 0))
		}
		return
	}
	if p.colon && final != 'm' {
		return // sub-parameters mean something only to SGR
	}
	c := &s.cur
	n := p.arg(0, 1)
	switch final {
	case 'A': // CUU
		c.wrapPending = false
		if c.y >= s.top {
			c.y = max(s.top, c.y-n)
		} else {
			c.y = max(0, c.y-n)
		}
	case 'B', 'e': // CUD, VPR
		c.wrapPending = false
		if c.y <= s.bottom {
			c.y = min(s.bottom, c.y+n)
		} else {
			c.y = min(s.rows-1, c.y+n)
		}
	case 'C', 'a': // CUF, HPR
		c.x, c.wrapPending = min(s.cols-1, c.x+n), false
	case 'D': // CUB
		c.x, c.wrapPending = max(0, c.x-n), false
	case 'E': // CNL
		s.csiCursorLine(n)
	case 'F': // CPL
		s.csiCursorLine(-n)
	case 'G', '`': // CHA, HPA
		c.x, c.wrapPending = min(s.cols-1, n-1), false
	case 'H', 'f': // CUP, HVP
		s.moveTo(p.arg(1, 1)-1, n-1)
	case 'd': // VPA
		s.moveTo(c.x, n-1)
	case 'I': // CHT
		c.x, c.wrapPending = min(s.cols-1, (c.x/8+n)*8), false
	case 'Z': // CBT
		for i := 0; i < n && c.x > 0; i++ {
			c.x = (c.x - 1) / 8 * 8
		}
		c.wrapPending = false
	case 'J': // ED
		s.eraseDisplay(p.arg(0, 0))
	case 'K': // EL
		s.eraseLine(p.arg(0, 0))
	case '@': // ICH
		s.insertBlanks(s.buf.rows[c.y], c.x, n)
		c.wrapPending = false
		s.touch(c.y)
	case 'P': // DCH
		s.deleteChars(s.buf.rows[c.y], c.x, n)
		c.wrapPending = false
		s.touch(c.y)
	case 'X': // ECH
		s.buf.rows[c.y].erase(c.x, c.x+min(n, s.cols))
		c.wrapPending = false
		s.touch(c.y)
	case 'L': // IL
		if c.y >= s.top && c.y <= s.bottom {
			s.scrollDown(c.y, s.bottom, n)
			c.x, c.wrapPending = 0, false
		}
	case 'M': // DL
		if c.y >= s.top && c.y <= s.bottom {
			s.scrollUp(c.y, s.bottom, n, false)
			c.x, c.wrapPending = 0, false
		}
	case 'S': // SU
		s.scrollUp(s.top, s.bottom, n, false)
	case 'T': // SD; with more parameters it is xterm's mouse highlight
		if p.nparams() <= 1 {
			s.scrollDown(s.top, s.bottom, n)
		}
	case 'b': // REP, at most a row's worth and what the credit allows
		if s.lastWidth > 0 {
			for i := s.repCredit(min(n, s.cols)); i > 0; i-- {
				s.print(s.last, s.lastWidth)
			}
		}
	case 'r': // DECSTBM
		top, bot := p.arg(0, 1)-1, p.arg(1, s.rows)-1
		bot = min(bot, s.rows-1)
		if top < bot {
			s.top, s.bottom = top, bot
			s.moveTo(0, 0)
		}
	case 's': // SCOSC
		s.saveCursor()
	case 'u': // SCORC
		s.restoreCursor()
	case 'h', 'l': // SM, RM
		for i := 0; i < p.nparams(); i++ {
			if p.params[i] == 4 { // IRM
				s.insert = final == 'h'
			}
		}
	}
	// SGR (m), DSR (n), DA (c), window operations (t) and the rest: dropped.
}

// csiCursorLine moves the cursor n rows down (up if negative) to column 0.
func (s *Screen) csiCursorLine(n int) {
	c := &s.cur
	lo, hi := 0, s.rows-1
	if c.y >= s.top && c.y <= s.bottom {
		lo, hi = s.top, s.bottom
	}
	c.x, c.y, c.wrapPending = 0, max(lo, min(hi, c.y+n)), false
}

// decMode is DECSET (on) and DECRST for the modes that move text.
func (s *Screen) decMode(on bool) {
	p := &s.p
	for i := 0; i < p.nparams(); i++ {
		switch m := p.params[i]; m {
		case 6: // DECOM
			s.cur.origin = on
			s.moveTo(0, 0)
		case 7: // DECAWM
			s.autowrap = on
			if !on {
				s.cur.wrapPending = false
			}
		case 47, 1047, 1049:
			s.setAlt(on, m)
		}
		// 1 (cursor keys), 12 (blink), 25 (cursor shown), 1000-1006 (mouse),
		// 2004 (bracketed paste) and the rest change nothing we draw.
	}
}

// softReset is DECSTR.
func (s *Screen) softReset() {
	s.resetModes()
	s.main.hasSaved = false
	if s.alt != nil {
		s.alt.hasSaved = false
	}
	s.cur.wrapPending = false
}

// REP is the one sequence that draws more than it is sent: a few bytes can
// draw a row. Its credit keeps hostile input from multiplying the work
// per byte by a row's width: it grows by repPerByte cells for every byte
// written, up to repCreditMax (which it starts at), and each repeated cell
// spends one. Programs that use REP (ncurses, for runs of a character)
// send far more bytes than they repeat, so they never run short.
const (
	repPerByte   = 4
	repCreditMax = MaxCols * MaxRows
)

// repCredit spends up to n cells of REP credit and returns how many.
func (s *Screen) repCredit(n int) int {
	credit := min(repCreditMax, s.rep+(s.at-s.repAt)*repPerByte)
	n = int(min(int64(n), credit))
	s.rep, s.repAt = credit-int64(n), s.at
	return n
}
