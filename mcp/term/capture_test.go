package term

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The testdata/*.raw files are what real programs wrote to an 80×24
// pseudo-terminal (testdata/capture.py made them); *.txt is the text a
// person saw, checked by eye once and kept as golden files.
var update = flag.Bool("update", false, "rewrite the golden testdata/*.txt files")

func readCapture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".raw"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".txt")
	if *update {
		if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got+"\n" != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

// noControls fails if text holds anything a terminal would not show.
func noControls(t *testing.T, text string) {
	t.Helper()
	for _, r := range text {
		if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\ufffd' {
			t.Fatalf("control %U in %q", r, text)
		}
	}
}

func TestCapturePython(t *testing.T) {
	got := Render(readCapture(t, "python"), 80, 24)
	noControls(t, got)
	if !strings.Contains(got, ">>> 1+1\n2\n>>> print('hi')\nhi\n") {
		t.Errorf("REPL transcript not as typed:\n%s", got)
	}
	golden(t, "python", got)
}

func TestCaptureReadline(t *testing.T) {
	got := Render(readCapture(t, "readline"), 80, 24)
	noControls(t, got)
	for _, want := range []string{
		"$ echo hello\nhello\n",     // a typo mended with the left arrow
		"$ echo abc def\nabc def\n", // a word rubbed out
		"$ echo " + strings.Repeat("x", 100) + "\n" + strings.Repeat("x", 100) + "\n", // wrapped, joined
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	golden(t, "readline", got)
}

func TestCaptureBash(t *testing.T) {
	raw := readCapture(t, "bash")
	got := Render(raw, 80, 24)
	noControls(t, got)
	if !strings.Contains(got, "$ sleep 5\n^C\n$ echo two\ntwo\n") {
		t.Errorf("Ctrl-C at the prompt:\n%s", got)
	}
	if !strings.Contains(got, "$ stty size\n30 100\n") {
		t.Errorf("stty size after the resize:\n%s", got)
	}
	golden(t, "bash", got)

	// The same stream with the screen resized where the pty was (bash
	// redraws its prompt there) reads the same.
	cut := bytes.Index(raw, []byte("\r\x1b[K\r$ stty"))
	if cut < 0 {
		t.Fatal("no redraw in the capture")
	}
	s := NewScreen(80, 24)
	s.Write(raw[:cut])
	s.Resize(100, 30)
	s.Write(raw[cut:])
	if got2 := s.Text(); got2 != got {
		t.Errorf("resized mid-stream:\n%s\nwant\n%s", got2, got)
	}
}

func TestCaptureLess(t *testing.T) {
	raw := readCapture(t, "less")
	quit := bytes.LastIndex(raw, []byte("\x1b[?1049l"))
	if quit < 0 {
		t.Fatal("less never left the alternate screen")
	}
	// Stop where less has drawn its page and waits for a key (on q it
	// erases its prompt, then leaves the alternate screen).
	wait := bytes.LastIndex(raw[:quit], []byte("\r\x1b[K"))
	if wait < 0 {
		t.Fatal("no prompt erase in the capture")
	}
	s := NewScreen(80, 24)
	s.Write(raw[:wait])
	if !s.AltScreen() {
		t.Fatal("less is not on the alternate screen")
	}
	got := s.Text()
	noControls(t, got)
	lines := strings.Split(got, "\n")
	// Less scrolled one page on: 23 lines of the file and its prompt,
	// with the line that the first page's wrap split ("servi \bce") long
	// gone; the reverse-video "/etc/services" status was erased.
	if len(lines) != 24 || lines[23] != ":" {
		t.Errorf("less screen has %d lines, last %q:\n%s", len(lines), lines[len(lines)-1], got)
	}
	if strings.Contains(got, "/etc/services") {
		t.Errorf("stale status line:\n%s", got)
	}
	if v := s.Visible(); v != got {
		t.Errorf("Visible differs from Text on the alternate screen")
	}
	golden(t, "less", got)

	// The first page: the URL the wrap split reads whole.
	first := bytes.Index(raw, []byte("\r\x1b[K")) // less's erase before paging on
	page := Render(raw[:first], 80, 24)
	if !strings.Contains(page, "\n# Updated from https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.xhtml .\n") {
		t.Errorf("wrapped URL not joined:\n%s", page)
	}
	if !strings.HasSuffix(page, "\n/etc/services") {
		t.Errorf("first page has no status line:\n%s", page)
	}

	// On quitting, the main screen returns as it was: blank here.
	s.Write(raw[wait:])
	if s.AltScreen() || s.Text() != "" {
		t.Errorf("after q: alt %v, text %q", s.AltScreen(), s.Text())
	}
}

func TestCaptureTop(t *testing.T) {
	got := Render(readCapture(t, "top"), 80, 24)
	noControls(t, got)
	lines := strings.Split(got, "\n")
	if !strings.HasPrefix(lines[0], "top - ") || !strings.Contains(got, "\n  PID USER ") || len(lines) < 30 {
		t.Errorf("top -b output (%d lines):\n%s", len(lines), got)
	}
	golden(t, "top", got)

	// Interactive top draws one screen with cursor addressing.
	got = Render(readCapture(t, "topscreen"), 80, 24)
	noControls(t, got)
	lines = strings.Split(got, "\n")
	if len(lines) != 24 || !strings.HasPrefix(lines[0], "top - ") || !strings.HasPrefix(lines[6], "  PID USER ") {
		t.Errorf("top screen (%d lines):\n%s", len(lines), got)
	}
	golden(t, "topscreen", got)
}
