package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSafeText(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		want   string
		binary bool
	}{
		{[]byte("hello\n"), "hello\n", false},
		{[]byte("héllo 日本"), "héllo 日本", false},
		{[]byte{'a', 0xff, 'b'}, "a\uFFFDb", true},
		{[]byte{'a', 0, 'b'}, "a\x00b", true},
		{nil, "", false},
	} {
		got := SafeText(tc.in)
		if got.S != tc.want || got.Binary != tc.binary {
			t.Errorf("SafeText(%q) = %q, %v; want %q, %v", tc.in, got.S, got.Binary, tc.want, tc.binary)
		}
	}
}

func TestMakeExcerptShort(t *testing.T) {
	e := MakeExcerpt([]byte("short"), 100)
	if e.Text != "short" || e.Truncated || e.Omitted != 0 {
		t.Fatalf("got %+v", e)
	}
}

func TestMakeExcerptLong(t *testing.T) {
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		b.WriteString(strings.Repeat("x", i%70))
		b.WriteString("\n")
	}
	in := b.Bytes()
	for _, max := range []int{0, 10, 50, 200, 4000, 9000} {
		e := MakeExcerpt(in, max)
		if !e.Truncated {
			t.Fatalf("max %d: not truncated", max)
		}
		if len(e.Text) > max && max >= 64 {
			t.Errorf("max %d: text is %d bytes", max, len(e.Text))
		}
		if !strings.Contains(e.Text, "bytes omitted") {
			t.Errorf("max %d: no omission marker in %q", max, e.Text)
		}
		if max >= 200 {
			parts := strings.SplitN(e.Text, "\n[... ", 2)
			head := parts[0]
			tail := parts[1][strings.Index(parts[1], "...]\n")+5:]
			if !bytes.HasPrefix(in, []byte(head)) || !bytes.HasSuffix(in, []byte(tail)) {
				t.Errorf("max %d: head/tail are not the input's", max)
			}
			if int64(len(head)+len(tail))+e.Omitted != int64(len(in)) {
				t.Errorf("max %d: head %d + tail %d + omitted %d != %d", max, len(head), len(tail), e.Omitted, len(in))
			}
			if len(tail) <= len(head) {
				t.Errorf("max %d: tail (%d) should get more room than head (%d)", max, len(tail), len(head))
			}
		}
	}
}

func TestMakeExcerptUTF8Boundaries(t *testing.T) {
	in := []byte(strings.Repeat("日本語のテキスト", 5000)) // 3-byte runes, no newlines
	for max := 60; max < 400; max++ {
		e := MakeExcerpt(in, max)
		if !utf8.ValidString(e.Text) || strings.ContainsRune(e.Text, utf8.RuneError) {
			t.Fatalf("max %d: excerpt split a rune: %q", max, e.Text)
		}
		if e.Binary {
			t.Fatalf("max %d: valid text flagged binary", max)
		}
		if len(e.Text) > max {
			t.Fatalf("max %d: %d bytes", max, len(e.Text))
		}
	}
}

func TestMakeExcerptInvalidUTF8(t *testing.T) {
	in := bytes.Repeat([]byte{0xff, 0xfe, 'a'}, 10000)
	e := MakeExcerpt(in, 500)
	if !utf8.ValidString(e.Text) || !e.Binary || !e.Truncated {
		t.Fatalf("got binary=%v truncated=%v valid=%v", e.Binary, e.Truncated, utf8.ValidString(e.Text))
	}
}

func TestTrimPartialRune(t *testing.T) {
	s := []byte("a日")
	for n, want := range map[int]string{0: "", 1: "a", 2: "a", 3: "a", 4: "a日"} {
		if got := string(trimPartialRune(s[:n])); got != want {
			t.Errorf("trimPartialRune(%q) = %q, want %q", s[:n], got, want)
		}
	}
	if got := trimPartialRune([]byte{'a', 0xff}); len(got) != 2 {
		t.Errorf("invalid byte should be kept, got %q", got)
	}
}

func TestEncodeJSONNoHTMLEscape(t *testing.T) {
	d, err := encodeJSON(map[string]string{"s": "<a> & b"})
	if err != nil {
		t.Fatal(err)
	}
	if string(d) != `{"s":"<a> & b"}` {
		t.Fatalf("got %s", d)
	}
}

func TestFitJSON(t *testing.T) {
	text := strings.Repeat("\"quoted\"\n", 5000) // escapes inflate the JSON
	build := func(n int) any { return map[string]string{"t": text[:n]} }
	data, n, fits, err := FitJSON(1000, len(text), build)
	if err != nil || !fits {
		t.Fatal(err, fits)
	}
	if len(data) > 1000 {
		t.Fatalf("%d bytes", len(data))
	}
	if next, _ := encodeJSON(build(n + 1)); len(next) <= 1000 {
		t.Fatalf("n=%d is not the largest that fits", n)
	}
	var v map[string]string
	if err := json.Unmarshal(data, &v); err != nil || v["t"] != text[:n] {
		t.Fatal("round trip", err)
	}

	// Everything fits: max is used.
	if _, n, fits, _ := FitJSON(1000, 3, build); n != 3 || !fits {
		t.Fatalf("n=%d fits=%v", n, fits)
	}
	// Nothing fits: build(0) is returned and reported.
	big := func(n int) any { return strings.Repeat("y", 2000) }
	if _, _, fits, _ := FitJSON(1000, 10, big); fits {
		t.Fatal("fits reported for an oversize fixed part")
	}
}

func TestSplitAllowance(t *testing.T) {
	for _, tc := range []struct{ allow, a, b, wa, wb int }{
		{100, 10, 20, 10, 20},
		{100, 10, 500, 10, 90},
		{100, 500, 10, 90, 10},
		{100, 500, 500, 50, 50},
		{100, 0, 500, 0, 100},
	} {
		if a, b := splitAllowance(tc.allow, tc.a, tc.b); a != tc.wa || b != tc.wb {
			t.Errorf("splitAllowance(%d,%d,%d) = %d,%d want %d,%d", tc.allow, tc.a, tc.b, a, b, tc.wa, tc.wb)
		}
	}
}

func TestClip(t *testing.T) {
	if got := clip("日本語日本語", 8); got != "日..." {
		t.Errorf("clip = %q", got)
	}
	if got := clip("short", 8); got != "short" {
		t.Errorf("clip = %q", got)
	}
}

func TestLooksBinary(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"plain text\n", false},
		{"héllo 日本\n", false},
		{"\x9c\xe6\x9c\xac text after a character cut at the start", false},
		{"text before a character cut at the end \xe6\x9c", false},
		{"caf\xe9 au lait, and more plain text to go with it", false},
		{"\x1b[31mred\x1b[0m\r\n", false},
		{"a\x00b", true},
		{"\xff\xfe\xfd\xfc\x80\x81 short", true},
		{"\x01\x02\x03\x04\x05\x06 control", true},
	} {
		if got := looksBinary([]byte(tc.in)); got != tc.want {
			t.Errorf("looksBinary(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDetectedTypeAndHexHead(t *testing.T) {
	tar := make([]byte, 512)
	copy(tar[257:], "ustar\x0000")
	for in, want := range map[string]string{
		"\x7fELF\x02\x01":       "ELF executable or library",
		"\x1f\x8b\x08\x00":      "gzip-compressed data",
		"PK\x03\x04\x14\x00":    "zip archive (also jar, wheel, docx)",
		"SQLite format 3\x00xx": "SQLite database",
		string(tar):             "tar archive",
		"\x00\x01\x02":          "data",
		"":                      "data",
	} {
		if got := detectedType([]byte(in)); got != want {
			t.Errorf("detectedType(%.20q) = %q, want %q", in, got, want)
		}
	}
	if got := hexHead([]byte("\x7fELF\x02\x01\x01\x00\xff"), 32); got != "7f454c46 02010100 ff" {
		t.Errorf("hexHead: %q", got)
	}
	if got := hexHead(bytes.Repeat([]byte{0xab}, 100), 8); got != "abababab abababab" {
		t.Errorf("hexHead cut: %q", got)
	}
}
