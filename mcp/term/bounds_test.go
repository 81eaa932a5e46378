package term

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// maxTextLen bounds len(Text()) for any input: the scrollback's bytes and a
// newline per kept line, then per screen row 12 bytes a column (a
// character and two combining marks, 4 bytes each) and a newline.
func maxTextLen(cols, rows int) int {
	return MaxScrollbackBytes + MaxScrollbackLines + rows*(12*cols+1)
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct{ cols, rows, wantCols, wantRows int }{
		{0, 0, DefaultCols, DefaultRows},
		{-5, 3, DefaultCols, 3},
		{1, 1, 1, 1},
		{1 << 30, 1 << 30, MaxCols, MaxRows},
	} {
		s := NewScreen(tc.cols, tc.rows)
		if c, r := s.Size(); c != tc.wantCols || r != tc.wantRows {
			t.Errorf("NewScreen(%d, %d).Size() = %d, %d", tc.cols, tc.rows, c, r)
		}
		s.Resize(tc.cols, tc.rows)
		if c, r := s.Size(); c != tc.wantCols || r != tc.wantRows {
			t.Errorf("Resize(%d, %d): Size() = %d, %d", tc.cols, tc.rows, c, r)
		}
	}
}

func TestResize(t *testing.T) {
	// Losing rows below the cursor drops them; losing rows the cursor is
	// on pushes the top ones into the scrollback.
	s := NewScreen(10, 5)
	s.Write([]byte("1\r\n2\r\n3\x1b[5;1H5\x1b[3;2H"))
	s.Resize(10, 3)
	if got := s.Text(); got != "1\n2\n3" {
		t.Errorf("shrunk below the cursor: %q", got)
	}
	s = NewScreen(10, 5)
	s.Write([]byte("1\r\n2\r\n3\r\n4\r\n5"))
	s.Resize(10, 2)
	if got, v := s.Text(), s.Visible(); got != "1\n2\n3\n4\n5" || v != "4\n5" {
		t.Errorf("shrunk at the cursor: text %q, visible %q", got, v)
	}
	if x, y := s.Cursor(); x != 1 || y != 1 {
		t.Errorf("cursor at %d,%d", x, y)
	}
	s.Write([]byte("x\r\nnew"))
	if got := s.Visible(); got != "5x\nnew" {
		t.Errorf("after writing: %q", got)
	}
	// Columns are cut, not reflowed, and come back blank.
	s = NewScreen(10, 3)
	s.Write([]byte("abcdefghij\x1b[2;1H日本語"))
	s.Resize(5, 3)
	if got := s.Visible(); got != "abcde\n日本" {
		t.Errorf("narrowed: %q", got)
	}
	s.Resize(12, 4)
	if got := s.Visible(); got != "abcde\n日本" {
		t.Errorf("widened again: %q", got)
	}
	s.Write([]byte("\x1b[1;12Hz\x1b[4;1Hlast"))
	if got := s.Visible(); got != "abcde      z\n日本\n\nlast" {
		t.Errorf("written after widening: %q", got)
	}
	// A one-column screen holds a wide character whole; widened, the
	// character takes its two columns and what follows starts after it.
	s = NewScreen(1, 2)
	s.Write([]byte("日"))
	s.Resize(6, 2)
	s.Write([]byte("\x1b[1;3Hb"))
	if got := s.Visible(); got != "日b" {
		t.Errorf("widened from one column: %q", got)
	}
	checkInvariants(t, s)
	// The alternate screen resizes too, and the main screen survives it.
	s = NewScreen(10, 3)
	s.Write([]byte("main\x1b[?1049h\x1b[3;1Halt"))
	s.Resize(20, 2)
	s.Write([]byte("\x1b[2;15Hend"))
	if got := s.Visible(); got != "\nalt           end" {
		t.Errorf("alt after resize: %q", got)
	}
	s.Write([]byte("\x1b[?1049l!"))
	if got := s.Text(); got != "main!" {
		t.Errorf("main after resize: %q", got)
	}
}

func TestScrollbackBounds(t *testing.T) {
	// By lines.
	s := NewScreen(10, 2)
	for i := 0; i < 3*MaxScrollbackLines; i++ {
		s.Write([]byte("l\r\n"))
	}
	if s.sb.count != MaxScrollbackLines || len(s.sb.lines) != MaxScrollbackLines {
		t.Errorf("scrollback holds %d lines in a ring of %d", s.sb.count, len(s.sb.lines))
	}
	// By bytes: full-width rows of 4-byte characters with two marks each.
	s = NewScreen(MaxCols, 1)
	line := strings.Repeat("\U0001F600\u0301\u0302", MaxCols/2) + "\r\n"
	for i := 0; i < 2*MaxScrollbackBytes/len(line)+10; i++ {
		s.Write([]byte(line))
	}
	if s.sb.bytes > MaxScrollbackBytes || s.sb.bytes < MaxScrollbackBytes-len(line) {
		t.Errorf("scrollback holds %d bytes, bound %d", s.sb.bytes, MaxScrollbackBytes)
	}
	text := s.Text()
	if len(text) > maxTextLen(MaxCols, 1) || !utf8.ValidString(text) {
		t.Errorf("Text is %d bytes (bound %d), valid UTF-8 %v", len(text), maxTextLen(MaxCols, 1), utf8.ValidString(text))
	}
	total := 0
	for i := 0; i < s.sb.count; i++ {
		total += len(s.sb.at(i).text)
	}
	if total != s.sb.bytes {
		t.Errorf("byte count %d, lines hold %d", s.sb.bytes, total)
	}
}

// Hostile sequences that could cost a screenful each cost at most a row or
// a column of row pointers; this checks their results, the benchmark
// their cost.
func TestHostileRepeats(t *testing.T) {
	s := NewScreen(MaxCols, MaxRows)
	s.Write([]byte("x\x1b[65535b\x1b[65535@\x1b[65535L\x1b[65535M\x1b[65535S\x1b[65535T\x1b[65535I\x1b[65535Z"))
	if got := s.Text(); got != "" {
		t.Errorf("after scrolling everything away: %q", got)
	}
	s.Write([]byte("\x1b[1;1Hx\x1b[65535b"))
	if got := s.Text(); got != strings.Repeat("x", MaxCols+1) {
		t.Errorf("REP: %d bytes", len(got))
	}
}

// REP's credit bounds the cells drawn to those sent plus repPerByte per
// byte (and the starting credit).
func TestRepCredit(t *testing.T) {
	s := NewScreen(MaxCols, MaxRows)
	in := []byte(strings.Repeat("x\x1b[65535b", 20000))
	s.Write(in)
	drawn := s.sb.bytes
	for _, r := range s.main.rows {
		drawn += r.n
	}
	limit := 20000 + repCreditMax + repPerByte*len(in)
	if drawn > limit || drawn < limit-MaxCols {
		t.Errorf("drew %d cells from %d bytes; credit allows %d", drawn, len(in), limit)
	}
}
