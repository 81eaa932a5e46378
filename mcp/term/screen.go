package term

import "math"

// Screen sizes.
const (
	DefaultCols = 80
	DefaultRows = 24
	MaxCols     = 500 // a larger size is clamped to this
	MaxRows     = 200
)

// Scrollback bounds: lines that scroll off the top of the main screen are
// kept, oldest first out, while both hold.
const (
	MaxScrollbackLines = 10000
	MaxScrollbackBytes = 2 << 20 // of text, summed over the lines kept
)

// cell is one character position. ch 0 is a blank; wideTail marks the
// right half of the wide character in the cell to its left.
type cell struct {
	ch   rune
	comb [2]rune // combining marks drawn on ch (more are dropped)
}

const wideTail rune = -1

// row is one line of a screen buffer.
type row struct {
	cells   []cell // len == the screen's columns
	n       int    // cells[n:] are all blank: clearing costs what writing did
	wrapped bool   // autowrap continued this row on the next one
}

func (r *row) reset() {
	clear(r.cells[:r.n])
	r.n = 0
	r.wrapped = false
}

// fix prepares cell x for overwriting: a wide character that x is half of
// loses its other half too.
func (r *row) fix(x int) {
	if x < 0 || x >= len(r.cells) {
		return
	}
	if r.cells[x].ch == wideTail {
		if x > 0 {
			r.cells[x-1] = cell{}
		}
	} else if x+1 < len(r.cells) && r.cells[x+1].ch == wideTail {
		r.cells[x+1] = cell{}
	}
}

// erase blanks cells [a, b).
func (r *row) erase(a, b int) {
	b = min(b, len(r.cells))
	if a >= b {
		return
	}
	r.fix(a)
	r.fix(b - 1)
	if a < r.n {
		clear(r.cells[a:min(b, r.n)])
		if b >= r.n {
			r.n = a
		}
	}
	if b == len(r.cells) {
		r.wrapped = false
	}
}

// cursor is the active position. With wrapPending the cursor sits on the
// last column after drawing there, and the next character wraps first
// (the VT100's "last column flag").
type cursor struct {
	x, y        int
	wrapPending bool
	origin      bool // DECOM: row numbers count from the scroll region's top
}

// buffer is the main or the alternate screen.
type buffer struct {
	rows     []*row
	saved    cursor // DECSC
	hasSaved bool
}

func newBuffer(cols, rows int) *buffer {
	b := &buffer{rows: make([]*row, rows)}
	for i := range b.rows {
		b.rows[i] = &row{cells: make([]cell, cols)}
	}
	return b
}

// Screen is a terminal emulator reduced to what a reader of its screen
// needs: characters and their places, no colours or attributes. See the
// package doc. The zero value is not usable; call [NewScreen]. A Screen is
// not safe for concurrent use.
type Screen struct {
	cols, rows  int
	main, alt   *buffer // alt is made on first use
	buf         *buffer // the active one
	cur         cursor
	top, bottom int // scroll region, rows inclusive
	autowrap    bool
	insert      bool // IRM
	last        rune // the last graphic character drawn, for REP
	lastWidth   int

	p parser

	fed        int64 // bytes written before the current Write
	at         int64 // number of the byte being stepped (not kept for printable ASCII)
	rep, repAt int64 // REP credit, as of byte repAt

	widths [256]struct { // a direct-mapped cache of runeWidth for non-ASCII
		r rune
		w int8
	}

	// The scrollback, and what Take has yet to return. Lines of the main
	// screen are numbered from the first ever written: row y is line
	// scrolled+y, and the scrollback holds the lines just before.
	sb        scrollback
	scrolled  int64 // lines ever pushed off the main screen
	dirtyFrom int64 // first line changed since the last Take; noDirt if none
	altDirty  bool  // the alternate screen changed since the last Take
	evicted   int64 // lines the scrollback's bounds dropped
	evictedTo int64 // the last dropped line's number, plus one
	// ED 3 clears the scrollback: lines from clearEvicted (evictedTo at the
	// time) to clearedTo (scrolled at the time) were cleared, not dropped.
	clearEvicted, clearedTo int64

	scratch []*row // for rotating rows
	line    []byte // for rendering a row into the scrollback
}

const noDirt = math.MaxInt64

// NewScreen returns a blank screen of cols×rows with the cursor at the top
// left. Sizes of zero or less mean the defaults; sizes over the maximums
// are clamped.
func NewScreen(cols, rows int) *Screen {
	cols, rows = clampSize(cols, rows)
	s := &Screen{cols: cols, rows: rows, dirtyFrom: noDirt, rep: repCreditMax}
	s.main = newBuffer(cols, rows)
	s.buf = s.main
	s.resetModes()
	return s
}

func clampSize(cols, rows int) (int, int) {
	if cols <= 0 {
		cols = DefaultCols
	}
	if rows <= 0 {
		rows = DefaultRows
	}
	return min(cols, MaxCols), min(rows, MaxRows)
}

func (s *Screen) resetModes() {
	s.top, s.bottom = 0, s.rows-1
	s.autowrap, s.insert = true, false
	s.cur.origin = false
}

// Size returns the screen's columns and rows.
func (s *Screen) Size() (cols, rows int) { return s.cols, s.rows }

// AltScreen reports whether the alternate screen is shown (a full-screen
// program such as less, vim or top is running).
func (s *Screen) AltScreen() bool { return s.buf == s.alt }

// Cursor returns the cursor's column and row, from 0.
func (s *Screen) Cursor() (x, y int) { return s.cur.x, s.cur.y }

// touch records that row y of the active buffer changed.
func (s *Screen) touch(y int) {
	if s.buf != s.main {
		s.altDirty = true
		return
	}
	if l := s.scrolled + int64(y); l < s.dirtyFrom {
		s.dirtyFrom = l
	}
}

// print draws graphic character r of width w (1 or 2) at the cursor.
func (s *Screen) print(r rune, w int) {
	s.last, s.lastWidth = r, w
	c := &s.cur
	if w > s.cols {
		w = 1
	}
	if c.wrapPending {
		c.wrapPending = false
		if s.autowrap {
			s.buf.rows[c.y].wrapped = true
			c.x = 0
			s.index()
		}
	}
	if c.x+w > s.cols { // a wide character at the last column
		if s.autowrap {
			s.buf.rows[c.y].wrapped = true
			c.x = 0
			s.index()
		} else {
			c.x = s.cols - w
		}
	}
	rw := s.buf.rows[c.y]
	if s.insert {
		s.insertBlanks(rw, c.x, w)
	}
	rw.fix(c.x)
	rw.cells[c.x] = cell{ch: r}
	if w == 2 {
		rw.fix(c.x + 1)
		rw.cells[c.x+1] = cell{ch: wideTail}
	}
	rw.n = max(rw.n, c.x+w)
	s.touch(c.y)
	if c.x+w >= s.cols {
		c.x = s.cols - 1
		c.wrapPending = true
	} else {
		c.x += w
	}
}

// printRune draws a decoded non-ASCII rune.
func (s *Screen) printRune(r rune) {
	if r < 0xa0 { // C1 controls are not acted on
		return
	}
	c := &s.widths[r&0xff]
	if c.r != r {
		c.r, c.w = r, int8(runeWidth(r))
	}
	switch w := int(c.w); w {
	case 0:
		s.combine(r)
	default:
		s.print(r, w)
	}
}

// combine puts combining mark r on the character before the cursor.
func (s *Screen) combine(r rune) {
	x := s.cur.x - 1
	if s.cur.wrapPending {
		x = s.cur.x
	}
	rw := s.buf.rows[s.cur.y]
	if x > 0 && rw.cells[x].ch == wideTail {
		x--
	}
	if x < 0 || rw.cells[x].ch <= 0 {
		return
	}
	cm := &rw.cells[x].comb
	for i := range cm {
		if cm[i] == 0 {
			cm[i] = r
			break
		}
	}
}

// execute acts on C0 control b.
func (s *Screen) execute(b byte) {
	c := &s.cur
	switch b {
	case bs:
		if c.wrapPending {
			c.wrapPending = false
		}
		if c.x > 0 {
			c.x--
		}
	case ht:
		c.wrapPending = false
		c.x = min(s.cols-1, (c.x/8+1)*8)
	case lf, vt, ff:
		s.index()
	case cr:
		c.x, c.wrapPending = 0, false
	}
	// BEL, SO, SI and the rest do nothing to the screen.
}

// index moves the cursor down a row, scrolling the region at its bottom
// (IND, and LF). Lines leaving the top of the main screen are kept.
func (s *Screen) index() {
	c := &s.cur
	c.wrapPending = false
	switch {
	case c.y == s.bottom:
		s.scrollUp(s.top, s.bottom, 1, true)
	case c.y < s.rows-1:
		c.y++
	}
}

// reverseIndex moves the cursor up a row, scrolling the region down at
// its top (RI).
func (s *Screen) reverseIndex() {
	c := &s.cur
	c.wrapPending = false
	switch {
	case c.y == s.top:
		s.scrollDown(s.top, s.bottom, 1)
	case c.y > 0:
		c.y--
	}
}

// scrollUp moves rows top+n..bot up n rows and blanks the n at the bottom.
// With save, on the main screen with the region at its top, the rows
// leaving go to the scrollback.
func (s *Screen) scrollUp(top, bot, n int, save bool) {
	n = min(n, bot-top+1)
	if n <= 0 {
		return
	}
	rows := s.buf.rows
	save = save && top == 0 && s.buf == s.main
	if save {
		for _, r := range rows[:n] {
			s.pushScrollback(r)
		}
	}
	s.rotate(rows[top:bot+1], n)
	for _, r := range rows[bot+1-n : bot+1] {
		r.reset()
	}
	switch {
	case !save:
		s.touch(top)
	case bot < s.rows-1:
		// The rows below the region now have new line numbers.
		s.touch(bot + 1 - n)
	}
}

// scrollDown moves rows top..bot-n down n rows and blanks the n at the top.
func (s *Screen) scrollDown(top, bot, n int) {
	n = min(n, bot-top+1)
	if n <= 0 {
		return
	}
	rows := s.buf.rows
	s.rotate(rows[top:bot+1], len(rows[top:bot+1])-n)
	for _, r := range rows[top : top+n] {
		r.reset()
	}
	s.touch(top)
}

// rotate moves rs left by k, the first k rows going to the end.
func (s *Screen) rotate(rs []*row, k int) {
	if k <= 0 || k >= len(rs) {
		return
	}
	s.scratch = append(s.scratch[:0], rs[:k]...)
	copy(rs, rs[k:])
	copy(rs[len(rs)-k:], s.scratch)
	clear(s.scratch)
}

// insertBlanks shifts cells x.. right by n within rw (ICH, insert mode).
func (s *Screen) insertBlanks(rw *row, x, n int) {
	n = min(n, s.cols-x)
	if n <= 0 {
		return
	}
	if rw.cells[x].ch == wideTail { // the insertion splits a wide character
		rw.fix(x)
		rw.cells[x] = cell{}
	}
	if x < rw.n {
		end := min(rw.n, s.cols-n)
		copy(rw.cells[x+n:], rw.cells[x:end])
		rw.n = min(s.cols, rw.n+n)
		clear(rw.cells[x : x+n])
	}
	rw.fixEdge()
}

// fixEdge blanks the left half of a wide character whose right half went
// past the last column.
func (r *row) fixEdge() {
	if x := len(r.cells) - 1; x >= 0 && r.cells[x].ch > 0 && runeWidth(r.cells[x].ch) == 2 {
		r.cells[x] = cell{}
	}
}

// deleteChars removes n cells at x, shifting the rest left (DCH).
func (s *Screen) deleteChars(rw *row, x, n int) {
	n = min(n, s.cols-x)
	if n <= 0 || x >= rw.n {
		return
	}
	rw.fix(x)
	rw.fix(min(x+n, s.cols) - 1)
	if x+n < rw.n {
		copy(rw.cells[x:], rw.cells[x+n:rw.n])
		clear(rw.cells[rw.n-n : rw.n])
		rw.n -= n
	} else {
		clear(rw.cells[x:rw.n])
		rw.n = x
	}
	if rw.cells[x].ch == wideTail {
		rw.cells[x] = cell{}
	}
}

// eraseDisplay is ED.
func (s *Screen) eraseDisplay(mode int) {
	c := &s.cur
	rows := s.buf.rows
	switch mode {
	case 0:
		rows[c.y].erase(c.x, s.cols)
		for _, r := range rows[c.y+1:] {
			r.reset()
		}
		s.touch(c.y)
	case 1:
		for _, r := range rows[:c.y] {
			r.reset()
		}
		rows[c.y].erase(0, c.x+1)
		s.touch(0)
	case 2:
		for _, r := range rows {
			r.reset()
		}
		s.touch(0)
	case 3: // xterm: forget the scrollback
		if s.buf == s.main {
			s.sb.reset()
			s.clearEvicted, s.clearedTo = s.evictedTo, s.scrolled
		}
	}
	c.wrapPending = false
}

// eraseLine is EL.
func (s *Screen) eraseLine(mode int) {
	c := &s.cur
	rw := s.buf.rows[c.y]
	switch mode {
	case 0:
		rw.erase(c.x, s.cols)
	case 1:
		rw.erase(0, c.x+1)
	case 2:
		rw.erase(0, s.cols)
	default:
		return
	}
	s.touch(c.y)
	c.wrapPending = false
}

// moveTo puts the cursor at column x, row y (from 0, y relative to the
// region in origin mode), clamped to the screen.
func (s *Screen) moveTo(x, y int) {
	c := &s.cur
	lo, hi := 0, s.rows-1
	if c.origin {
		lo, hi = s.top, s.bottom
		y += s.top
	}
	c.x = max(0, min(x, s.cols-1))
	c.y = max(lo, min(y, hi))
	c.wrapPending = false
}

// setAlt switches to the alternate screen or back. mode is the DECSET
// number: 1049 saves the cursor and clears the alternate screen on entry
// and restores the cursor on exit; 1047 clears it on exit; 47 does
// neither.
func (s *Screen) setAlt(on bool, mode int) {
	if on == (s.buf == s.alt) {
		return
	}
	if on {
		if mode == 1049 {
			s.saveCursor()
		}
		if s.alt == nil {
			s.alt = newBuffer(s.cols, s.rows)
		}
		s.buf = s.alt
		if mode == 1049 {
			for _, r := range s.alt.rows {
				r.reset()
			}
		}
		s.altDirty = true
		return
	}
	if mode == 1047 {
		for _, r := range s.alt.rows {
			r.reset()
		}
	}
	s.buf = s.main
	if mode == 1049 {
		s.restoreCursor()
	}
}

// saveCursor is DECSC.
func (s *Screen) saveCursor() {
	s.buf.saved, s.buf.hasSaved = s.cur, true
}

// restoreCursor is DECRC; with nothing saved it homes the cursor.
func (s *Screen) restoreCursor() {
	if !s.buf.hasSaved {
		s.cur = cursor{}
		return
	}
	s.cur = s.buf.saved
	s.cur.x = min(s.cur.x, s.cols-1)
	s.cur.y = min(s.cur.y, s.rows-1)
}

// reset is RIS: the main screen, blank, with default modes. The
// scrollback stays.
func (s *Screen) reset() {
	s.buf = s.main
	for _, r := range s.main.rows {
		r.reset()
	}
	s.main.hasSaved = false
	if s.alt != nil {
		s.alt.hasSaved = false
	}
	s.cur = cursor{}
	s.resetModes()
	s.touch(0)
}

// Resize changes the screen's size (clamped as for [NewScreen]). Text is
// not reflowed: rows are cut or padded on the right. When the screen
// loses rows and the cursor would fall off it, the top rows go to the
// scrollback (as in xterm); otherwise rows are dropped from the bottom.
func (s *Screen) Resize(cols, rows int) {
	cols, rows = clampSize(cols, rows)
	if cols == s.cols && rows == s.rows {
		return
	}
	for _, b := range []*buffer{s.main, s.alt} {
		if b == nil {
			continue
		}
		if k := s.cur.y - (rows - 1); k > 0 && b == s.buf {
			if b == s.main {
				for _, r := range b.rows[:k] {
					s.pushScrollback(r)
				}
			}
			b.rows = append(b.rows[:0], b.rows[k:]...)
		}
		for _, r := range b.rows {
			r.resize(cols)
		}
		if len(b.rows) > rows {
			clear(b.rows[rows:])
			b.rows = b.rows[:rows]
		}
		for len(b.rows) < rows {
			b.rows = append(b.rows, &row{cells: make([]cell, cols)})
		}
		b.saved.x = min(b.saved.x, cols-1)
		b.saved.y = min(b.saved.y, rows-1)
	}
	if k := s.cur.y - (rows - 1); k > 0 {
		s.cur.y -= k
	}
	s.cols, s.rows = cols, rows
	s.cur.x = min(s.cur.x, cols-1)
	s.cur.wrapPending = false
	s.top, s.bottom = 0, rows-1
	if s.buf == s.alt {
		s.altDirty = true
	}
}

func (r *row) resize(cols int) {
	old := len(r.cells)
	switch {
	case cols <= cap(r.cells):
		r.cells = r.cells[:cols]
		if cols > old {
			clear(r.cells[old:])
		} else {
			r.fixEdge()
		}
	default:
		c := make([]cell, cols)
		copy(c, r.cells)
		r.cells = c
	}
	r.n = min(r.n, cols)
	if cols > old {
		r.wrapped = false
		// A one-column screen holds a wide character whole in its only
		// cell; given room, it takes its second column like any other.
		if x := old - 1; x >= 0 && r.cells[x].ch > 0 && runeWidth(r.cells[x].ch) == 2 {
			r.cells[x+1] = cell{ch: wideTail}
			r.n = max(r.n, x+2)
		}
	}
}
