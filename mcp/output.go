package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the output shaping every tool shares: UTF-8-safe text,
// head+tail excerpts of long output, and fitting a JSON result into the
// result budget (Options.MaxResultBytes).

// Text is bytes made safe for a JSON string.
type Text struct {
	S      string // valid UTF-8
	Binary bool   // the input was not valid UTF-8 (bad bytes became U+FFFD) or held NUL bytes
}

// SafeText returns b as valid UTF-8, replacing invalid bytes with U+FFFD.
func SafeText(b []byte) Text {
	bin := bytes.IndexByte(b, 0) >= 0
	if utf8.Valid(b) {
		return Text{S: string(b), Binary: bin}
	}
	return Text{S: strings.ToValidUTF8(string(b), "\uFFFD"), Binary: true}
}

// Excerpt is a possibly shortened, UTF-8-safe view of some output.
type Excerpt struct {
	Text      string // head, an omission marker, tail; or everything
	Truncated bool   // bytes were left out of the middle
	Omitted   int64  // how many input bytes were left out
	Binary    bool   // see Text.Binary
}

// omissionMarker is what replaces the middle of a long output.
func omissionMarker(n int64) string {
	return fmt.Sprintf("\n[... %d bytes omitted ...]\n", n)
}

// MakeExcerpt returns b whole if it has at most max bytes; otherwise its head
// (about 40%) and tail (about 60%) joined by an omission marker, in at most
// max bytes of text before JSON escaping. Cuts land on UTF-8 boundaries and,
// where one is near, on line boundaries. The tail gets more room because that
// is where test failures and error summaries end up.
func MakeExcerpt(b []byte, max int) Excerpt {
	if max < 0 {
		max = 0
	}
	if len(b) <= max {
		t := SafeText(b)
		return Excerpt{Text: t.S, Binary: t.Binary}
	}
	marker := omissionMarker(int64(len(b))) // upper bound on the marker's length
	room := max - len(marker)
	if room < 16 {
		// No room for a useful excerpt: say what was left out, nothing else.
		t := SafeText(b)
		return Excerpt{Text: strings.TrimSpace(omissionMarker(int64(len(b)))), Truncated: true,
			Omitted: int64(len(b)), Binary: t.Binary}
	}
	headN := room * 2 / 5
	tailN := room - headN

	head := trimPartialRune(b[:headN])
	if i := bytes.LastIndexByte(head, '\n'); i >= 0 && i >= len(head)*3/4 {
		head = head[:i+1]
	}
	start := len(b) - tailN
	for k := 0; k < utf8.UTFMax-1 && !utf8.RuneStart(b[start]); k++ {
		start++ // do not begin inside a UTF-8 sequence
	}
	tail := b[start:]
	if i := bytes.IndexByte(tail, '\n'); i >= 0 && i < len(tail)/4 {
		tail = tail[i+1:]
	}
	omitted := int64(len(b) - len(head) - len(tail))
	h, t := SafeText(head), SafeText(tail)
	return Excerpt{
		Text:      h.S + omissionMarker(omitted) + t.S,
		Truncated: true,
		Omitted:   omitted,
		Binary:    h.Binary || t.Binary || bytes.IndexByte(b, 0) >= 0,
	}
}

// trimPartialRune drops a UTF-8 sequence cut off at the end of b, so that a
// page boundary never splits a character. It returns b unchanged when b ends
// on a boundary or when the tail is not valid UTF-8 anyway.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if !utf8.RuneStart(c) {
			continue
		}
		if c < utf8.RuneSelf {
			return b // ASCII: complete
		}
		if utf8.FullRune(b[len(b)-i:]) {
			return b
		}
		return b[:len(b)-i]
	}
	return b
}

// encodeJSON marshals v compactly without HTML escaping, so '<', '>' and '&'
// in code and output stay one byte each.
func encodeJSON(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// FitJSON returns the JSON of build(n) for the largest n in [0, max] whose
// encoding fits in limit bytes. build must grow (weakly) with n: n is a byte
// allowance for variable text, or a count of list items. If even build(0)
// does not fit, its encoding is returned anyway and fits is false.
func FitJSON(limit, max int, build func(n int) any) (data []byte, n int, fits bool, err error) {
	if full, err := encodeJSON(build(max)); err != nil {
		return nil, 0, false, err
	} else if len(full) <= limit {
		return full, max, true, nil
	}
	best, err := encodeJSON(build(0))
	if err != nil {
		return nil, 0, false, err
	}
	if len(best) > limit {
		return best, 0, false, nil
	}
	lo, hi := 0, max-1 // build(max) is known not to fit
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		d, err := encodeJSON(build(mid))
		if err != nil {
			return nil, 0, false, err
		}
		if len(d) <= limit {
			lo, best = mid, d
		} else {
			hi = mid - 1
		}
	}
	return best, lo, true, nil
}

// splitAllowance shares allow bytes between two outputs of sizes a and b:
// each gets half, and what one does not need goes to the other.
func splitAllowance(allow, a, b int) (int, int) {
	if a+b <= allow {
		return a, b
	}
	half := allow / 2
	switch {
	case a <= half:
		return a, allow - a
	case b <= half:
		return allow - b, b
	default:
		return half, allow - half
	}
}

// timeString formats t for results: RFC 3339 UTC to the second; "" for zero.
func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// humanBytes formats n as a short size for hints.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// Binary data. Guest files are bytes; the model reads text. looksBinary
// tells data from text, so that data is never shown as a page of U+FFFD.

// looksBinary reports whether b is data rather than text: it holds a NUL
// byte, or more than a tenth of it is invalid UTF-8 or control characters
// that text does not use. A character cut at either end (b is a page of a
// file) does not count, and a few bad bytes (a stray Latin-1 letter) leave
// it text.
func looksBinary(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return true
	}
	for k := 0; k < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); k++ {
		b = b[1:]
	}
	b = trimPartialRune(b)
	bad := 0
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			bad++
		case r < 0x20 && !strings.ContainsRune("\t\n\v\f\r\b\x1b", r), r == 0x7f:
			bad++
		}
		i += size
	}
	return bad*10 > len(b)
}

// magic is a file format known by its first bytes.
type magic struct {
	at   int
	sig  string
	name string
}

// magics are the formats detectedType knows, most specific first.
var magics = []magic{
	{0, "\x7fELF", "ELF executable or library"},
	{0, "\x89PNG\r\n\x1a\n", "PNG image"},
	{0, "\xff\xd8\xff", "JPEG image"},
	{0, "GIF87a", "GIF image"},
	{0, "GIF89a", "GIF image"},
	{0, "RIFF", "RIFF container (WAV, AVI or WebP)"},
	{0, "%PDF-", "PDF document"},
	{0, "PK\x03\x04", "zip archive (also jar, wheel, docx)"},
	{0, "\x1f\x8b", "gzip-compressed data"},
	{0, "BZh", "bzip2-compressed data"},
	{0, "\xfd7zXZ\x00", "xz-compressed data"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed data"},
	{0, "7z\xbc\xaf\x27\x1c", "7-zip archive"},
	{257, "ustar", "tar archive"},
	{0, "SQLite format 3\x00", "SQLite database"},
	{0, "\x00asm", "WebAssembly module"},
	{0, "\xca\xfe\xba\xbe", "Java class file or Mach-O universal binary"},
	{0, "\xcf\xfa\xed\xfe", "Mach-O executable"},
	{0, "MZ", "Windows (PE) executable"},
	{0, "!<arch>\n", "ar archive (static library or .deb)"},
	{0, "\xed\xab\xee\xdb", "RPM package"},
}

// detectedType names the format whose signature b, a file's first bytes,
// starts with, or "data".
func detectedType(b []byte) string {
	for _, m := range magics {
		if len(b) >= m.at+len(m.sig) && string(b[m.at:m.at+len(m.sig)]) == m.sig {
			return m.name
		}
	}
	return "data"
}

// hexHead is b's first n bytes in hex, in groups of four.
func hexHead(b []byte, n int) string {
	b = b[:min(n, len(b))]
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%02x", c)
	}
	return s.String()
}
