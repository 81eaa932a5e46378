package term

import (
	"strings"
	"testing"
)

type renderCase struct {
	name       string
	cols, rows int
	in         string
	want       string
}

func runCases(t *testing.T, cases []renderCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Render([]byte(tc.in), tc.cols, tc.rows); got != tc.want {
				t.Errorf("Render(%q, %d, %d) =\n%q\nwant\n%q", tc.in, tc.cols, tc.rows, got, tc.want)
			}
			// Byte by byte gives the same: nothing depends on how the
			// stream is cut.
			s := NewScreen(tc.cols, tc.rows)
			for i := 0; i < len(tc.in); i++ {
				s.Write([]byte{tc.in[i]})
			}
			if got := s.Text(); got != tc.want {
				t.Errorf("fed byte by byte: %q, want %q", got, tc.want)
			}
		})
	}
}

func TestText(t *testing.T) {
	runCases(t, []renderCase{
		{"empty", 10, 3, "", ""},
		{"plain", 10, 3, "hello", "hello"},
		{"lines", 10, 3, "a\r\nb\r\n", "a\nb"},
		{"lf keeps column", 10, 3, "ab\ncd", "ab\n  cd"},
		{"trailing spaces trimmed", 10, 3, "a   \r\n   \r\nb  ", "a\n\nb"},
		{"trailing empty lines dropped", 10, 5, "a\r\n\r\n\r\n", "a"},
		{"leading empty lines kept", 10, 5, "\r\n\r\nc", "\n\nc"},
		{"bel ignored", 10, 3, "a\ab", "ab"},
		{"del and nul ignored", 10, 3, "a\x7f\x00b", "ab"},
	})
}

func TestCarriageReturnAndBackspace(t *testing.T) {
	runCases(t, []renderCase{
		{"progress bar", 20, 3, "\r50%\r100%\r\n", "100%"},
		{"cr overwrites prefix only", 20, 3, "abcdef\rXY", "XYcdef"},
		{"backspace overwrite", 20, 3, "abc\b\bXY", "aXY"},
		{"backspace at column 0", 20, 3, "\b\bab", "ab"},
		{"backspace erase idiom", 20, 3, "abc\b \b", "ab"},
		{"spinner", 20, 3, "working |\b/\b-\b\\\bdone", "working done"},
		{"backspace from the last column", 4, 3, "abcd\bX", "abXd"},
	})
}

func TestTabs(t *testing.T) {
	runCases(t, []renderCase{
		{"every 8", 30, 3, "a\tb\tc", "a       b       c"},
		{"from a stop", 30, 3, "12345678\tx", "12345678        x"},
		{"stops at the margin", 10, 3, "a\t\t\tb", "a        b"},
		{"CHT", 30, 3, "a\x1b[2Ib", "a               b"},
		{"CBT", 30, 3, "a\t\tb\x1b[2ZX", "a       X       b"},
	})
}

func TestAutowrap(t *testing.T) {
	runCases(t, []renderCase{
		{"long line joined", 5, 4, "abcdefghijkl", "abcdefghijkl"},
		{"exact width no extra line", 5, 4, "abcde\r\nf", "abcde\nf"},
		{"space at the wrap survives", 5, 4, "abcd efgh", "abcd efgh"},
		{"scrolled off while wrapped", 5, 2, "abcdefghijklmn", "abcdefghijklmn"},
		{"xenl space backspace idiom", 5, 3, "abcde \bfg", "abcdefg"},
		{"no wrap: last column overwritten", 5, 3, "\x1b[?7labcdefg", "abcdg"},
		{"erase to end breaks the join", 5, 3, "abcdefg\x1b[A\x1b[3G\x1b[K", "ab\nfg"},
	})
}

func TestCursorMovement(t *testing.T) {
	runCases(t, []renderCase{
		{"CUP", 10, 4, "\x1b[2;3Hx\x1b[Hy", "y\n  x"},
		{"CUP defaults and HVP", 10, 4, "\x1b[3;1fa\x1b[;5Hb", "    b\n\na"},
		{"CUU CUD CUF CUB", 10, 4, "\x1b[3Ba\x1b[2Ab\x1b[3Cc\x1b[5Dd", "\n d   c\n\na"},
		{"clamped", 10, 4, "\x1b[99;99Hz\x1b[99Ay\x1b[999Dx", "x        y\n\n\n         z"},
		{"zero means one", 10, 4, "ab\x1b[0DX", "aX"},
		{"CNL CPL", 10, 4, "ab\x1b[2Ecd\x1b[Fef", "ab\nef\ncd"},
		{"CHA HPA", 10, 4, "abcdef\x1b[3GX\x1b[5`Y", "abXdYf"},
		{"VPA keeps column", 10, 4, "ab\x1b[3dc", "ab\n\n  c"},
		{"HPR VPR", 10, 4, "a\x1b[2ab\x1b[1ec", "a  b\n    c"},
		{"huge count", 10, 4, "\x1b[99999999999999999999Bx\x1b[99999999999Cy", "\n\n\nx        y"},
		{"save restore ESC 7 8", 10, 4, "ab\x1b7\x1b[3;5Hc\x1b8d", "abd\n\n    c"},
		{"save restore CSI s u", 10, 4, "ab\x1b[s\x1b[3;5Hc\x1b[ud", "abd\n\n    c"},
		{"restore unsaved homes", 10, 4, "ab\x1b8c", "cb"},
		{"kitty keyboard CSI > u is not restore", 10, 4, "ab\x1b[s\x1b[2;1H\x1b[>1uc", "ab\nc"},
		{"origin mode", 10, 5, "\x1b[2;4r\x1b[?6h\x1b[1;1Ha\x1b[9;1Hb", "\na\n\nb"},
	})
}

func TestErase(t *testing.T) {
	runCases(t, []renderCase{
		{"EL 0", 10, 3, "abcdef\x1b[3G\x1b[K", "ab"},
		{"EL 1", 10, 3, "abcdef\x1b[3G\x1b[1K", "   def"},
		{"EL 2", 10, 3, "abcdef\r\nxy\x1b[A\x1b[2K", "\nxy"},
		{"readline rubout", 20, 3, "$ echo abc xyz\b\x1b[K\b\x1b[K\b\x1b[Kdef", "$ echo abc def"},
		{"ED 0", 10, 3, "abc\r\ndef\r\nghi\x1b[2;2H\x1b[J", "abc\nd"},
		{"ED 1", 10, 3, "abc\r\ndef\r\nghi\x1b[2;2H\x1b[1J", "\n  f\nghi"},
		{"ED 2 keeps cursor", 10, 3, "abc\r\ndef\x1b[2Jx", "\n   x"},
		{"ED 3 clears scrollback", 10, 2, "a\r\nb\r\nc\r\nd\x1b[3J", "c\nd"},
		{"clear command", 10, 2, "a\r\nb\r\nc\x1b[H\x1b[2J\x1b[3J$ ", "$"},
		{"DECSED DECSEL", 10, 3, "abc\r\ndef\x1b[?2J\x1b[1;3H\x1b[?1Kx", "  x"},
		{"ECH", 10, 3, "abcdef\x1b[2G\x1b[3X", "a   ef"},
		{"ECH huge", 10, 3, "abcdef\x1b[2G\x1b[65535X", "a"},
	})
}

func TestInsertDelete(t *testing.T) {
	runCases(t, []renderCase{
		{"ICH", 10, 3, "abcdef\x1b[3G\x1b[2@XY", "abXYcdef"},
		{"ICH before a wide character", 10, 3, "0本00\x1b[2G\x1b[@", "0 本00"},
		{"ICH splits a wide character", 10, 3, "0本00\x1b[3G\x1b[@", "0   00"},
		{"ICH pushes a wide character off", 5, 3, "000本\x1b[1G\x1b[@", " 000"},
		{"ICH pushes off the edge", 6, 3, "abcdef\x1b[2G\x1b[3@", "a   bc"},
		{"DCH", 10, 3, "abcdef\x1b[2G\x1b[2P", "adef"},
		{"DCH beyond", 10, 3, "abcdef\x1b[4G\x1b[99P", "abc"},
		{"insert mode", 10, 3, "abcd\x1b[3G\x1b[4hXY\x1b[4lZ", "abXYZd"},
		{"readline insert", 20, 3, "$ echo helo\b\b\x1b[Clo\b\b\r\n", "$ echo hello"},
		{"IL", 10, 4, "a\r\nb\r\nc\x1b[2H\x1b[Lx", "a\nx\nb\nc"},
		{"DL", 10, 4, "a\r\nb\r\nc\r\nd\x1b[2H\x1b[2M", "a\nd"},
		{"IL outside region ignored", 10, 4, "\x1b[2;3r\x1b[4Ha\x1b[L", "\n\n\na"},
		{"SU", 10, 3, "a\r\nb\r\nc\x1b[S", "b\nc"},
		{"SD", 10, 3, "a\r\nb\r\nc\x1b[2T", "\n\na"},
		{"REP", 10, 3, "ab\x1b[3bc", "abbbbc"},
		{"REP bounded", 4, 3, "a\x1b[65535b", "aaaaa"},
	})
}

func TestScrolling(t *testing.T) {
	runCases(t, []renderCase{
		{"scrollback", 10, 2, "1\r\n2\r\n3\r\n4", "1\n2\n3\n4"},
		{"region scroll not saved", 10, 4, "top\x1b[2;3r\x1b[2Ha\r\nb\r\nc\r\nd\x1b[r\x1b[4Hbot", "top\nc\nd\nbot"},
		{"region at top saves", 10, 3, "\x1b[1;2r1\r\n2\r\n3\x1b[3Hst", "1\n2\n3\nst"},
		{"RI at top scrolls down", 10, 3, "a\r\nb\x1b[H\x1bMz", "z\na\nb"},
		{"IND NEL", 10, 3, "ab\x1bDc\x1bEd", "ab\n  c\nd"},
		{"invalid region ignored", 10, 3, "\x1b[3;2r1\r\n2\r\n3\r\n4", "1\n2\n3\n4"},
	})
}

func TestAltScreen(t *testing.T) {
	runCases(t, []renderCase{
		{"1049 round trip", 10, 3, "$ less f\r\n\x1b[?1049h\x1b[HFILE\x1b[3H\x1b[7m:\x1b[27m\x1b[?1049l\r$ ", "$ less f\n$"},
		{"1049 shown while on", 10, 3, "$ less f\r\n\x1b[?1049h\x1b[Hline1\r\nline2\r\n:", "line1\nline2\n:"},
		{"1049 restores the cursor", 10, 3, "ab\x1b[?1049hxyz\x1b[?1049lc", "abc"},
		{"1049 clears on entry", 10, 3, "\x1b[?1049hold\x1b[?1049l\x1b[?1049h", ""},
		{"47 keeps content", 10, 3, "\x1b[?47hold\x1b[?47l\x1b[?47h", "old"},
		{"1047 clears on exit", 10, 3, "\x1b[?1047hold\x1b[?1047l\x1b[?1047h", ""},
		{"no scrollback from alt", 10, 2, "\x1b[?1049h1\r\n2\r\n3\x1b[?1049lm", "m"},
		{"several modes at once", 10, 3, "a\x1b[?25;1049hb", " b"},
	})
}

func TestIgnoredSequences(t *testing.T) {
	runCases(t, []renderCase{
		{"SGR", 20, 3, "\x1b[1;31mred\x1b[0m \x1b[38;2;1;2;3mrgb\x1b[m", "red rgb"},
		{"SGR colon sub-params", 20, 3, "\x1b[4:3;38:2::1:2:3mx", "x"},
		{"OSC title BEL", 20, 3, "\x1b]0;my title\aabc", "abc"},
		{"OSC title ST", 20, 3, "\x1b]2;t\x1b\\abc", "abc"},
		{"OSC hyperlink", 30, 3, "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"DCS", 20, 3, "\x1bPq#0;2;0;0;0#1!14~\x1b\\abc", "abc"},
		{"APC PM SOS", 20, 3, "\x1b_Gf=24\x1b\\a\x1b^pm\x1b\\b\x1bXsos\x1b\\c", "abc"},
		{"charset", 20, 3, "\x1b(Ba\x1b)0b\x1b(0c\x1b(B", "abc"},
		{"keypad and DECALN", 20, 3, "\x1b=\x1b>a\x1b#8", "a"},
		{"private modes", 20, 3, "\x1b[?2004h\x1b[?25la\x1b[?1h", "a"},
		{"queries", 20, 3, "\x1b[6n\x1b[c\x1b[>c\x1b[22;0;0ta", "a"},
		{"cursor style", 20, 3, "\x1b[2 qa", "a"},
		{"CAN aborts", 20, 3, "\x1b[12\x18Ab", "Ab"},
		{"SUB aborts OSC", 20, 3, "\x1b]0;t\x1abc", "bc"},
		{"ESC restarts", 20, 3, "\x1b[12\x1b[3Cx", "   x"},
		{"C0 inside CSI executes", 20, 3, "ab\x1b[\r2Cx", "abx"},
		{"too many intermediates", 20, 3, "\x1b[1!!!Ha", "a"},
		{"private marker after params", 20, 3, "a\x1b[1?Hb", "ab"},
		{"unknown final", 20, 3, "a\x1b[5yb", "ab"},
		{"DECSTR", 20, 3, "\x1b[?7l\x1b[!pabc", "abc"},
		{"RIS", 20, 3, "abc\x1bcd", "d"},
		{"C1 code points dropped", 20, 3, "a\u009b2Jb", "a2Jb"},
	})
}

func TestParameters(t *testing.T) {
	// A million parameters cost nothing and keep the first ones.
	in := "\x1b[2;" + strings.Repeat("1;", 1000000) + "5H" + "x"
	if got := Render([]byte(in), 10, 3); got != "\nx" {
		t.Errorf("million parameters: %q", got)
	}
	// A value saturates rather than wrapping to something small.
	if got := Render([]byte("\x1b[18446744073709551618Cx"), 10, 3); got != "         x" {
		t.Errorf("overflowing value: %q", got)
	}
}

func TestUTF8(t *testing.T) {
	runCases(t, []renderCase{
		{"two byte", 10, 3, "héllo", "héllo"},
		{"invalid byte", 10, 3, "a\xffb", "a\ufffdb"},
		{"stray continuation", 10, 3, "a\x80b", "a\ufffdb"},
		{"truncated then ascii", 10, 3, "a\xe2\x82b", "a\ufffdb"},
		{"truncated then escape", 10, 3, "a\xe2\x1b[Cb", "a\ufffd b"},
		{"overlong", 10, 3, "\xc0\xaf", "\ufffd\ufffd"},
		{"surrogate", 10, 3, "\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"four byte", 10, 3, "a\U0001F600b", "a\U0001F600b"},
		{"combining", 10, 3, "e\u0301x", "e\u0301x"},
		{"combining at the margin", 3, 3, "abc\u0301d", "abc\u0301d"},
		{"combining on nothing", 10, 3, "\u0301a", "a"},
		{"marks bounded", 10, 3, "e\u0301\u0302\u0303\u0304x", "e\u0301\u0302x"},
		{"wide", 10, 3, "日本語x", "日本語x"},
		{"wide layout", 10, 3, "日本\r\nabcd", "日本\nabcd"},
		{"wide wraps whole", 5, 3, "abcd日e", "abcd日e"},
		{"overwrite left half", 10, 3, "日本\rx", "x 本"},
		{"overwrite right half", 10, 3, "日本\x1b[2Gx", " x本"},
		{"wide then CUP over it", 10, 3, "ab日\x1b[4GZ", "ab Z"},
		{"wide on one column", 1, 3, "日", "日"},
		{"emoji", 10, 3, "ok ✅ \U0001F680!", "ok ✅ \U0001F680!"},
	})
}

// A UTF-8 sequence cut across Writes decodes as if whole.
func TestUTF8AcrossWrites(t *testing.T) {
	in := []byte("a日b\U0001F600c")
	for cut := 0; cut <= len(in); cut++ {
		s := NewScreen(10, 3)
		s.Write(in[:cut])
		s.Write(in[cut:])
		if got := s.Text(); got != string(in) {
			t.Errorf("cut at %d: %q", cut, got)
		}
	}
}

func TestRuneWidth(t *testing.T) {
	for _, tc := range []struct {
		r    rune
		want int
	}{
		{'a', 1}, {'é', 1}, {'\u0301', 0}, {'\u200d', 0}, {'\u1160', 0},
		{'日', 2}, {'한', 2}, {'，', 2}, {'\u3000', 2}, {'\U0001F600', 2},
		{'\U00020000', 2}, {'→', 1}, {'Ω', 1}, {'\u303f', 1}, {'\uff61', 1},
	} {
		if got := runeWidth(tc.r); got != tc.want {
			t.Errorf("runeWidth(%U) = %d, want %d", tc.r, got, tc.want)
		}
	}
	for i := 1; i < len(wide); i++ {
		if wide[i][0] <= wide[i-1][1] || wide[i][0] > wide[i][1] {
			t.Fatalf("wide ranges unsorted or overlapping at %d", i)
		}
	}
}
