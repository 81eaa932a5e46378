package term

import (
	"bytes"
	"fmt"
	"testing"
)

// mixedOutput is about n bytes of what a build or a REPL session writes:
// plain and coloured lines, progress bars redrawn with CR, UTF-8, line
// editing, and now and then a full-screen program's page.
func mixedOutput(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		switch i % 8 {
		case 0, 1, 2:
			fmt.Fprintf(&b, "compiling module_%d.go: ok (%d ms) and some more text to fill a line\r\n", i, i%997)
		case 3:
			fmt.Fprintf(&b, "\x1b[1;32mPASS\x1b[0m \x1b[36mTestThing%d\x1b[0m (0.%02ds) — größe 日本 ✅\r\n", i, i%100)
		case 4:
			for p := 0; p <= 100; p += 10 {
				fmt.Fprintf(&b, "\rdownloading [%-20s] %3d%%\x1b[K", bytes.Repeat([]byte("#"), p/5), p)
			}
			b.WriteString("\r\n")
		case 5:
			b.WriteString("\x1b[?2004h$ echo helo\b\b\x1b[Clo\b\b\r\n\x1b[?2004l\rhello\r\n")
		case 6:
			if i%64 == 6 {
				b.WriteString("\x1b[?1049h\x1b[H\x1b[2J")
				for r := 1; r <= 23; r++ {
					fmt.Fprintf(&b, "\x1b[%d;1Hline %d of the page \x1b[7mhighlight\x1b[27m\x1b[K", r, r)
				}
				b.WriteString("\x1b[24;1H\x1b[7m:\x1b[27m\x1b[K\r\x1b[K\x1b[?1049l")
			}
		case 7:
			b.WriteString(">>> for i in range(3): print(i)\r\n... \r\n0\r\n1\r\n2\r\n>>> \r\n")
		}
	}
	return b.Bytes()[:n]
}

// BenchmarkRender renders 5 MiB of mixed output on an 80×24 screen.
func BenchmarkRender(b *testing.B) {
	in := mixedOutput(5 << 20)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var out string
	for b.Loop() {
		out = Render(in, 80, 24)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(in)), "ns/byte")
	_ = out
}

// BenchmarkRenderHostile renders 5 MiB of the sequences that cost the most
// per byte, on the largest screen: after prefix, unit repeated.
func BenchmarkRenderHostile(b *testing.B) {
	fill := "x\x1b[65535b\x1b[H" // a full first row, the cursor home
	for _, bc := range []struct{ name, prefix, unit string }{
		{"IL", "", "\x1b[L"},                       // rotate every row pointer
		{"regionLF", "\x1b[2;199r\x1b[198H", "\n"}, // scroll a region
		{"fullLF", fill, "\x1b[200Hx\n"},           // scroll into the scrollback
		{"REP", "", "x\x1b[65535b"},                // repeat a row's width
		{"ICH", fill, "\x1b[@"},                    // shift a full row
		{"insertMode", fill + "\x1b[4h", "x\r"},    // shift a full row per character
		{"ED", "", "\x1b[200;500Hx\x1b[2J"},        // clear the screen
		{"wide", "", "日\u0301\u0302\x1b[1P"},       // wide characters, marks, DCH
		{"params", "\x1b[", "1;"},                  // a parameter list without end
		{"OSC", "\x1b]0;", "title"},                // a string without end
		{"invalidUTF8", "", "\xff\xe2\x82"},        // U+FFFD each
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.prefix)
			in = append(in, bytes.Repeat([]byte(bc.unit), (5<<20)/len(bc.unit))...)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				Render(in, MaxCols, MaxRows)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(in)), "ns/byte")
		})
	}
}
