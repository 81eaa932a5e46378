package term

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzRender feeds anything to a small screen and checks that the
// emulator's invariants hold: no panic, every cell and the cursor inside
// the screen, text valid UTF-8 and within its bound, and the result the
// same however the input is cut into Writes.
func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		"", "hello\r\nworld", "\r50%\r100%", "abc\b\bX", "\x1b[2;3Hx\x1b[K\x1b[1J",
		"\x1b[?1049h\x1b[Hless\x1b[24;1H\x1b[7m:\x1b[27m\x1b[?1049l",
		"\x1b[2;4r\x1b[?6h\x1b[9;1Hb\x1bM\x1b[L\x1b[M\x1b[S\x1b[T", "日本語\u0301\x1b[2G\x1b[@\x1b[P\x1b[X",
		"\x1b]0;title\a\x1bPdcs\x1b\\\x1b_apc\x1b\\", "\xe2\x82\x1b[C\xff\xc0\xaf", "a\x1b[65535b\x1b[4h日\x1b[?7lxyz",
		"\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18H", "\x1b7\x1b[5;5H\x1b8\x1b[s\x1b[u\x1bc\x1b[!p",
	} {
		f.Add([]byte(seed), uint8(10), uint8(4), uint16(3))
	}
	if raws, _ := filepath.Glob("testdata/*.raw"); len(raws) > 0 {
		for _, p := range raws {
			if b, err := os.ReadFile(p); err == nil && len(b) < 4096 {
				f.Add(b, uint8(80), uint8(24), uint16(len(b)/2))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, c, r uint8, cut uint16) {
		cols, rows := int(c%100)+1, int(r%40)+1
		want := Render(data, cols, rows)

		s := NewScreen(cols, rows)
		k := min(int(cut), len(data))
		s.Write(data[:k])
		take1, _ := s.Take()
		s.Write(data[k:])
		if got := s.Text(); got != want {
			t.Fatalf("cut at %d: %q, whole: %q", k, got, want)
		}
		take2, _ := s.Take()
		for _, text := range []string{want, take1, take2, s.Visible()} {
			if !utf8.ValidString(text) {
				t.Fatalf("invalid UTF-8: %q", text)
			}
			if len(text) > maxTextLen(cols, rows) {
				t.Fatalf("%d bytes, bound %d", len(text), maxTextLen(cols, rows))
			}
		}
		checkInvariants(t, s)

		// A resize to another size keeps them too.
		s.Resize(int(r%60)+1, int(c%30)+1)
		s.Write(data[:k])
		checkInvariants(t, s)
		if text := s.Text(); !utf8.ValidString(text) {
			t.Fatalf("invalid UTF-8 after resize: %q", text)
		}
	})
}

func checkInvariants(t *testing.T, s *Screen) {
	t.Helper()
	if s.cur.x < 0 || s.cur.x >= s.cols || s.cur.y < 0 || s.cur.y >= s.rows {
		t.Fatalf("cursor %d,%d outside %dx%d", s.cur.x, s.cur.y, s.cols, s.rows)
	}
	if s.top < 0 || s.top >= s.bottom && s.rows > 1 || s.bottom >= s.rows {
		t.Fatalf("region %d..%d in %d rows", s.top, s.bottom, s.rows)
	}
	for _, b := range []*buffer{s.main, s.alt} {
		if b == nil {
			continue
		}
		if len(b.rows) != s.rows {
			t.Fatalf("%d rows, want %d", len(b.rows), s.rows)
		}
		for y, rw := range b.rows {
			if len(rw.cells) != s.cols || rw.n < 0 || rw.n > s.cols {
				t.Fatalf("row %d: %d cells, n %d, cols %d", y, len(rw.cells), rw.n, s.cols)
			}
			for x := rw.n; x < s.cols; x++ {
				if rw.cells[x] != (cell{}) {
					t.Fatalf("row %d: cell %d past n=%d is %+v", y, x, rw.n, rw.cells[x])
				}
			}
			w := 0
			for _, ch := range string(appendRow(nil, &row{cells: rw.cells, n: rw.n})) {
				w += runeWidth(ch)
			}
			if w > s.cols && s.cols > 1 { // one column holds a wide character whole
				t.Fatalf("row %d is %d columns wide on a %d-column screen", y, w, s.cols)
			}
		}
	}
	total := 0
	for i := 0; i < s.sb.count; i++ {
		total += len(s.sb.at(i).text)
	}
	if total != s.sb.bytes || s.sb.count > MaxScrollbackLines || s.sb.bytes > MaxScrollbackBytes {
		t.Fatalf("scrollback: %d lines, %d bytes, counted %d", s.sb.count, s.sb.bytes, total)
	}
}
