package term

import (
	"fmt"
	"strings"
	"testing"
)

// takeStep writes in, then Takes and expects want.
type takeStep struct {
	in   string
	want string
}

func runTake(t *testing.T, cols, rows int, steps []takeStep) *Screen {
	t.Helper()
	s := NewScreen(cols, rows)
	for i, st := range steps {
		s.Write([]byte(st.in))
		got, lost := s.Take()
		if got != st.want || lost != 0 {
			t.Fatalf("step %d: Write(%q); Take() = %q, %d lost; want %q", i, st.in, got, lost, st.want)
		}
	}
	return s
}

func TestTakeLineOriented(t *testing.T) {
	runTake(t, 20, 5, []takeStep{
		{"", ""},
		{">>> ", ">>>"},
		{"", ""},
		// The prompt line comes again, now with what was typed on it.
		{"1+1\r\n2\r\n>>> ", ">>> 1+1\n2\n>>>"},
		// Output that scrolls the screen arrives whole, once.
		{"for i in range(9): print(i)\r\n0\r\n1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n7\r\n8\r\n>>> ",
			">>> for i in range(9): print(i)\n0\n1\n2\n3\n4\n5\n6\n7\n8\n>>>"},
		{"\r\n", ""}, // a blank line is nothing new to read
	})
}

func TestTakeRewrites(t *testing.T) {
	runTake(t, 20, 5, []takeStep{
		{"50%", "50%"},
		{"\r100%", "100%"},
		{"\r\ndone\r\n", "done"},
		// A multi-line progress display moves up and rewrites: from the
		// first line it touched to the end.
		{"a 0%\r\nb 0%\r\n", "a 0%\nb 0%"},
		{"\x1b[2A\x1b[2C9%\r\n\r\n", "a 9%\nb 0%"},
		// A wrapped line changed in its continuation comes whole.
		{strings.Repeat("x", 25), strings.Repeat("x", 25)},
		{"yy", strings.Repeat("x", 25) + "yy"},
	})
}

func TestTakeAltScreen(t *testing.T) {
	runTake(t, 20, 4, []takeStep{
		{"$ less f\r\n", "$ less f"},
		{"\x1b[?1049h\x1b[HA\r\nB\r\n\x1b[4H:", "A\nB\n\n:"},
		// A full-screen program's small repaint still shows the screen.
		{"\x1b[1;1HX", "X\nB\n\n:"},
		{"\x1b[?25h", ""},
		// Back on the main screen: the new prompt, not less's screen.
		{"\x1b[?1049l\r$ ", "$"},
	})
}

func TestTakeLost(t *testing.T) {
	s := NewScreen(10, 3)
	const n = MaxScrollbackLines + 50
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d\r\n", i)
	}
	s.Write([]byte(b.String()))
	text, lost := s.Take()
	// n-2 lines scrolled off, the last two are on the screen.
	if wantLost := n - 2 - MaxScrollbackLines; lost != wantLost || s.Evicted() != int64(wantLost) {
		t.Fatalf("lost %d, evicted %d, want %d", lost, s.Evicted(), wantLost)
	}
	lines := strings.Split(text, "\n")
	if len(lines) != MaxScrollbackLines+2 || lines[0] != fmt.Sprint(n-2-MaxScrollbackLines) || lines[len(lines)-1] != fmt.Sprint(n-1) {
		t.Fatalf("%d lines, %q .. %q", len(lines), lines[0], lines[len(lines)-1])
	}
	if text2, lost2 := s.Take(); text2 != "" || lost2 != 0 {
		t.Fatalf("second Take: %q, %d", text2, lost2)
	}
	// Lines read before they scrolled away are not lost: of what follows,
	// only the new line "x" goes beyond the bounds.
	s.Write([]byte("x\r\n" + strings.Repeat("y\r\n", MaxScrollbackLines+2)))
	if text, lost := s.Take(); lost != 1 || !strings.HasPrefix(text, "y\ny\n") {
		t.Fatalf("lost %d, text starts %q", lost, text[:min(len(text), 10)])
	}
}

func TestTakeClearedIsNotLost(t *testing.T) {
	s := NewScreen(10, 3)
	s.Write([]byte("1\r\n2\r\n3\r\n4\r\n\x1b[H\x1b[2J\x1b[3J$ "))
	if text, lost := s.Take(); text != "$" || lost != 0 {
		t.Fatalf("Take after clear: %q, %d lost", text, lost)
	}
	// Lines cleared before the bounds drop others are not counted either;
	// the dropped ones are, before and after the clear.
	s.Write([]byte(strings.Repeat("a\r\n", MaxScrollbackLines+10) + "\x1b[3J" + strings.Repeat("b\r\n", MaxScrollbackLines+5)))
	_, lost := s.Take()
	// Before the clear, "$ a" and the a's but the 2 left on the screen
	// scrolled off: MaxScrollbackLines+8 lines, 8 dropped. After it, those
	// 2 a's and the b's but the last 2 scrolled off: MaxScrollbackLines+5,
	// 5 dropped.
	if want := 8 + 5; lost != want || s.Evicted() != int64(want) {
		t.Fatalf("lost %d, evicted %d; want %d", lost, s.Evicted(), want)
	}
}
