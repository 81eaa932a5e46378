package mcp_test

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/mcp"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// TestFileReadBinary: binary files never come back as U+FFFD text. A small
// one comes base64-encoded whole; a large one as a summary (type, size,
// first bytes, how to get at it) unless its bytes are asked for, by
// encoding=base64, an offset or max_bytes, when they come base64 in pages.
func TestFileReadBinary(t *testing.T) {
	b := mcptest.New()
	s := connect(t, b, mcp.Options{})
	id := s.create(nil)

	// A 1 MiB ELF-like file: a header, then bytes of every value.
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	copy(big, "\x7fELF\x02\x01\x01\x00")
	b.SetFile(id, "app.bin", big)

	r := s.ok("file_read", map[string]any{"id": id, "path": "app.bin"})
	if r.str("encoding") != "none" || r.str("content") != "" || r.m["binary"] != true || r.num("size") != 1<<20 {
		t.Errorf("summary: %s", r.text)
	}
	if r.str("detected_type") != "ELF executable or library" || !strings.HasPrefix(r.str("head_hex"), "7f454c46 02010100 ") {
		t.Errorf("summary type and head: %s", r.text)
	}
	for _, want := range []string{"workspace_export", "xxd", "encoding=base64", "1.0 MiB"} {
		if !strings.Contains(r.str("hint"), want) {
			t.Errorf("summary hint lacks %q: %s", want, r.str("hint"))
		}
	}
	if strings.ContainsRune(r.text, utf8.RuneError) || len(r.text) > 1500 {
		t.Errorf("summary of %d bytes: %s", len(r.text), r.text)
	}

	// Its bytes on request: base64 pages that decode to the file.
	var got []byte
	offset := 0.0
	for page := 0; page < 3; page++ {
		r := s.ok("file_read", map[string]any{"id": id, "path": "app.bin", "offset": offset, "encoding": "base64"})
		data, err := base64.StdEncoding.DecodeString(r.str("content"))
		if err != nil || r.str("encoding") != "base64" || len(data) != int(r.num("bytes")) || r.m["eof"] != false {
			t.Fatalf("page %d: %v: %.300s", page, err, r.text)
		}
		// Most of the budget carries bytes.
		if len(data) < mcp.DefaultMaxResultBytes*6/10 {
			t.Errorf("page %d: %d bytes in a %d-byte result", page, len(data), len(r.text))
		}
		got = append(got, data...)
		offset = r.num("next_offset")
	}
	if !bytes.Equal(got, big[:len(got)]) || int(offset) != len(got) {
		t.Errorf("paged bytes differ from the file (%d bytes, next %v)", len(got), offset)
	}
	// An offset alone is a request for bytes too.
	if r := s.ok("file_read", map[string]any{"id": id, "path": "app.bin", "offset": 1 << 19}); r.str("encoding") != "base64" || r.m["detected_type"] != nil {
		t.Errorf("auto at an offset: %.300s", r.text)
	}
	// The end of the file, in base64, says eof.
	if r := s.ok("file_read", map[string]any{"id": id, "path": "app.bin", "offset": 1<<20 - 100}); r.num("bytes") != 100 || r.m["eof"] != true || r.m["next_offset"] != nil {
		t.Errorf("last page: %.300s", r.text)
	}

	// A small binary file comes whole, base64-encoded.
	small := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
	b.SetFile(id, "icon.png", small)
	r = s.ok("file_read", map[string]any{"id": id, "path": "icon.png"})
	if data, _ := base64.StdEncoding.DecodeString(r.str("content")); !bytes.Equal(data, small) || r.str("encoding") != "base64" ||
		r.m["eof"] != true || r.str("detected_type") != "PNG image" || r.m["binary"] != true {
		t.Errorf("small binary: %s", r.text)
	}
	// encoding=text shows it as text anyway, flagged.
	r = s.ok("file_read", map[string]any{"id": id, "path": "icon.png", "encoding": "text"})
	if r.str("encoding") != "utf-8" || r.m["binary"] != true || !strings.Contains(r.str("hint"), "U+FFFD") {
		t.Errorf("binary as text: %s", r.text)
	}

	// Text with a stray Latin-1 byte stays text, with a note.
	b.SetFile(id, "notes.txt", []byte("caf\xe9 au lait, with plenty of plain text around it\n"))
	r = s.ok("file_read", map[string]any{"id": id, "path": "notes.txt"})
	if r.str("encoding") != "utf-8" || r.m["binary"] != nil || !strings.HasPrefix(r.str("content"), "caf\uFFFD au") || !strings.Contains(r.str("hint"), "encoding=base64") {
		t.Errorf("latin-1 text: %s", r.text)
	}
	// encoding=base64 returns any file's exact bytes.
	r = s.ok("file_read", map[string]any{"id": id, "path": "notes.txt", "encoding": "base64"})
	if data, _ := base64.StdEncoding.DecodeString(r.str("content")); string(data) != "caf\xe9 au lait, with plenty of plain text around it\n" || r.m["binary"] != nil {
		t.Errorf("text as base64: %s", r.text)
	}
	s.fail("file_read", map[string]any{"id": id, "path": "notes.txt", "encoding": "hex"}, "", "")
}
