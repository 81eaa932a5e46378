package term

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// sbLine is one row that scrolled off the main screen.
type sbLine struct {
	text    string // untrimmed when wrapped, else right-trimmed
	wrapped bool   // continued on the next line
}

// scrollback is a ring of the newest rows that scrolled off, bounded by
// MaxScrollbackLines and MaxScrollbackBytes.
type scrollback struct {
	lines []sbLine // ring; grows to MaxScrollbackLines
	head  int      // index of the oldest line
	count int
	bytes int
}

func (b *scrollback) at(i int) *sbLine { return &b.lines[(b.head+i)%len(b.lines)] }

func (b *scrollback) reset() {
	clear(b.lines)
	b.head, b.count, b.bytes = 0, 0, 0
}

// dropOldest forgets the oldest line.
func (b *scrollback) dropOldest() {
	l := b.at(0)
	b.bytes -= len(l.text)
	*l = sbLine{}
	b.head = (b.head + 1) % len(b.lines)
	b.count--
}

// push keeps l and reports how many old lines it dropped to stay in bounds.
func (b *scrollback) push(l sbLine) int {
	dropped := 0
	for b.count > 0 && (b.count >= MaxScrollbackLines || b.bytes+len(l.text) > MaxScrollbackBytes) {
		b.dropOldest()
		dropped++
	}
	if b.count == len(b.lines) { // grow the ring, in order, up to the line bound
		lines := make([]sbLine, min(MaxScrollbackLines, max(64, 2*b.count)))
		for i := 0; i < b.count; i++ {
			lines[i] = *b.at(i)
		}
		b.lines, b.head = lines, 0
	}
	*b.at(b.count) = l
	b.count++
	b.bytes += len(l.text)
	return dropped
}

// pushScrollback keeps row r of the main screen, which is about to scroll
// off, as line number s.scrolled.
func (s *Screen) pushScrollback(r *row) {
	s.line = appendRow(s.line[:0], r)
	text := string(s.line)
	dropped := s.sb.push(sbLine{text: text, wrapped: r.wrapped})
	s.scrolled++
	if dropped > 0 {
		s.evicted += int64(dropped)
		s.evictedTo = s.scrolled - int64(s.sb.count)
	}
}

// appendRow appends row r's text, right-trimmed unless r wraps onto the
// next row (so a space written at the wrap survives; the blank left where a
// wide character did not fit is not written, so it is not there).
func appendRow(dst []byte, r *row) []byte {
	start := len(dst)
	dst = slices.Grow(dst, r.n)
	for x := 0; x < r.n; x++ {
		c := &r.cells[x]
		if c.ch > 0 && c.ch < utf8.RuneSelf && c.comb[0] == 0 {
			dst = append(dst, byte(c.ch))
			continue
		}
		switch {
		case c.ch == wideTail:
			if x > 0 && r.cells[x-1].ch > 0 && runeWidth(r.cells[x-1].ch) == 2 {
				continue
			}
			dst = append(dst, ' ') // its left half was lost
		case c.ch == 0:
			dst = append(dst, ' ')
		case c.ch < utf8.RuneSelf:
			dst = append(dst, byte(c.ch))
		default:
			dst = utf8.AppendRune(dst, c.ch)
		}
		for _, m := range c.comb {
			if m == 0 {
				break
			}
			dst = utf8.AppendRune(dst, m)
		}
	}
	if !r.wrapped {
		dst = trimSpaces(dst, start)
	}
	return dst
}

func trimSpaces(b []byte, start int) []byte {
	for len(b) > start && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// lines joins rows into text: a wrapped row runs on into the next, each
// logical line ends in a newline with its trailing spaces cut, and
// trailing empty lines are dropped, final newline included.
type lines struct {
	b         []byte
	lineStart int
}

func (l *lines) add(text string, wrapped bool) {
	l.b = append(l.b, text...)
	if !wrapped {
		l.end()
	}
}

func (l *lines) addRow(r *row) {
	l.b = appendRow(l.b, r)
	if !r.wrapped {
		l.end()
	}
}

func (l *lines) end() {
	l.b = trimSpaces(l.b, l.lineStart)
	l.b = append(l.b, '\n')
	l.lineStart = len(l.b)
}

func (l *lines) String() string {
	return string(bytes.TrimRight(l.b, "\n"))
}

// Text returns what the terminal holds: on the main screen the scrollback
// then the screen; on the alternate screen that screen alone (as a person
// sees it; the alternate screen has no scrollback). Lines are
// right-trimmed, a line that autowrapped is joined with its continuation,
// and trailing empty lines are dropped.
func (s *Screen) Text() string {
	if s.buf == s.alt {
		return s.Visible()
	}
	var l lines
	s.appendFrom(&l, s.scrolled-int64(s.sb.count))
	return l.String()
}

// Visible returns the screen alone, as [Screen.Text] formats it.
func (s *Screen) Visible() string {
	var l lines
	for _, r := range s.buf.rows {
		l.addRow(r)
	}
	return l.String()
}

// appendFrom adds the main screen's lines numbered from `from` (at least
// the oldest kept) to its end.
func (s *Screen) appendFrom(l *lines, from int64) {
	first := s.scrolled - int64(s.sb.count) // oldest kept line
	for i := max(from, first) - first; i < int64(s.sb.count); i++ {
		sl := s.sb.at(int(i))
		l.add(sl.text, sl.wrapped)
	}
	for y := max(0, from-s.scrolled); y < int64(len(s.main.rows)); y++ {
		l.addRow(s.main.rows[y])
	}
}

// Take returns what changed since the last Take (or since the start),
// for a reader who follows the terminal as it goes:
//
//   - on the main screen, the lines from the first one changed to the end
//     of the screen, from the start of that line if it is the
//     continuation of a wrapped one; a line-oriented program's new output
//     arrives once, with the line it began on (often the prompt the
//     previous Take ended with);
//   - on the alternate screen, the whole screen if anything on it changed.
//
// It returns "" when nothing changed. lost counts changed lines that
// scrolled beyond the scrollback's bounds before this Take and are not in
// text.
func (s *Screen) Take() (text string, lost int) {
	if s.buf == s.alt {
		if !s.altDirty {
			return "", 0
		}
		s.altDirty = false
		return s.Visible(), 0
	}
	if s.dirtyFrom == noDirt {
		return "", 0
	}
	from := s.dirtyFrom
	s.dirtyFrom = noDirt
	// Changed lines dropped by the bounds: before the last ED 3, and after.
	lost = int(max(0, min(s.clearEvicted, s.clearedTo)-from) + max(0, s.evictedTo-max(from, s.clearedTo)))
	first := s.scrolled - int64(s.sb.count)
	from = max(from, first)
	for from > first && s.wrappedLine(from-1) {
		from--
	}
	var l lines
	s.appendFrom(&l, from)
	return l.String(), lost
}

// wrappedLine reports whether main-screen line i (scrollback or screen)
// continues on the next.
func (s *Screen) wrappedLine(i int64) bool {
	if i >= s.scrolled {
		return s.main.rows[i-s.scrolled].wrapped
	}
	return s.sb.at(int(i - (s.scrolled - int64(s.sb.count)))).wrapped
}

// Evicted returns how many lines the scrollback has dropped to stay within
// its bounds.
func (s *Screen) Evicted() int64 { return s.evicted }

// Render feeds p to a fresh cols×rows screen and returns its [Screen.Text]:
// the lines that scrolled off, then the final screen (or the alternate
// screen alone if p leaves a full-screen program running). It suits a
// self-contained byte range; for a stream read piece by piece keep one
// Screen and use [Screen.Take].
func Render(p []byte, cols, rows int) string {
	s := NewScreen(cols, rows)
	s.Write(p)
	return s.Text()
}
