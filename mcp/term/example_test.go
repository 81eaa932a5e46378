package term_test

import (
	"fmt"

	"github.com/pyro-mcp/pyro/mcp/term"
)

// Render turns a finished command's raw output into the text left on the
// terminal: colours gone, a progress bar's redraws collapsed to its last
// state, a rubbed-out typo mended.
func ExampleRender() {
	raw := "\x1b[1;32mfetching\x1b[0m  10%\r\x1b[Kfetching 100%\r\n" +
		"$ echo helo\b\b\x1b[Clo\r\nhello\r\n"
	fmt.Println(term.Render([]byte(raw), 80, 24))
	// Output:
	// fetching 100%
	// $ echo hello
	// hello
}

// A Screen follows a live terminal. Take returns what is new since the last
// Take: for a line-oriented program the lines it wrote (from the line it
// began on, here the prompt), for a full-screen one the whole screen.
func ExampleScreen_Take() {
	s := term.NewScreen(40, 4)
	show := func(label string) {
		text, _ := s.Take()
		fmt.Printf("--- %s\n%s\n", label, text)
	}

	s.Write([]byte(">>> "))
	show("prompt")

	s.Write([]byte("6*7\r\n42\r\n>>> "))
	show("after input")

	// help() runs a pager: the alternate screen, drawn with cursor
	// addressing.
	s.Write([]byte("help(len)\r\n"))
	s.Write([]byte("\x1b[?1049h\x1b[H\x1b[2Jlen(obj, /)\r\n  Return the number of items.\x1b[4;1H\x1b[7m(END)\x1b[27m"))
	show("pager")

	// Quitting restores the main screen; what is new there is the line
	// typed before the pager ran, and the prompt after it.
	s.Write([]byte("\r\x1b[K\x1b[?1049l>>> "))
	show("after q")
	// Output:
	// --- prompt
	// >>>
	// --- after input
	// >>> 6*7
	// 42
	// >>>
	// --- pager
	// len(obj, /)
	//   Return the number of items.
	//
	// (END)
	// --- after q
	// >>> help(len)
	// >>>
}
