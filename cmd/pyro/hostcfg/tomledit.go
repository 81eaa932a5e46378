package hostcfg

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads and edits Codex's config.toml as text. It parses the
// file far enough to know where every statement (a [table] header or a
// key = value line, values spanning lines included) begins and ends, and
// to read the values of pyro's own table; an edit replaces or inserts
// single statements of [mcp_servers.pyro], so every other byte of the
// file, comments and layout included, stays as it was. What it cannot
// parse (TOML v1.0 syntax) it reports with the line, and pyro then writes
// nothing. It does not check everything a full TOML parser would (for
// instance keys defined twice outside pyro's table).

// tomlValue is a parsed value: a string, an array, an inline table or any
// other scalar (number, boolean, date), kept as its text.
type tomlValue struct {
	kind  byte // 's' string, 'a' array, 't' inline table, 'x' other scalar
	str   string
	elems []*tomlValue
}

// tomlStmt is one statement with its byte span: a header line, or a key
// and its value. start is the start of its line; end is just past its
// newline (or the end of the file).
type tomlStmt struct {
	header     bool
	arrayTable bool // [[...]]
	key        []string
	line       int
	start, end int
	value      *tomlValue
}

type tomlParser struct {
	b   []byte
	pos int
	err *SyntaxError
}

func (p *tomlParser) fail(msg string) {
	if p.err == nil {
		p.err = &SyntaxError{lineAt(p.b, p.pos), msg}
	}
}

// parseTOML splits a TOML document into statements.
func parseTOML(b []byte) ([]tomlStmt, error) {
	p := &tomlParser{b: b}
	var out []tomlStmt
	for p.err == nil {
		p.blank()
		if p.pos >= len(b) {
			break
		}
		s := tomlStmt{line: lineAt(b, p.pos), start: bytes.LastIndexByte(b[:p.pos], '\n') + 1}
		if b[p.pos] == '[' {
			s.header = true
			p.pos++
			if p.pos < len(b) && b[p.pos] == '[' {
				s.arrayTable = true
				p.pos++
			}
			s.key = p.key()
			closing := "]"
			if s.arrayTable {
				closing = "]]"
			}
			if p.err == nil && !bytes.HasPrefix(b[p.pos:], []byte(closing)) {
				p.fail("table header not closed with " + closing)
			}
			p.pos += len(closing)
		} else {
			s.key = p.key()
			if p.err == nil && (p.pos >= len(b) || b[p.pos] != '=') {
				p.fail("expected = after the key")
			}
			p.pos++
			s.value = p.value(0)
		}
		p.endOfLine()
		s.end = p.pos
		if p.err == nil {
			out = append(out, s)
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return out, nil
}

// blank skips empty lines, white space and comments.
func (p *tomlParser) blank() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\r', '\n':
			p.pos++
		case '#':
			p.comment()
		default:
			return
		}
	}
}

func (p *tomlParser) comment() {
	for p.pos < len(p.b) && p.b[p.pos] != '\n' {
		p.pos++
	}
}

func (p *tomlParser) spaces() {
	for p.pos < len(p.b) && (p.b[p.pos] == ' ' || p.b[p.pos] == '\t') {
		p.pos++
	}
}

// endOfLine consumes white space, a comment and the newline after a
// statement.
func (p *tomlParser) endOfLine() {
	if p.err != nil {
		return
	}
	p.spaces()
	if p.pos < len(p.b) && p.b[p.pos] == '#' {
		p.comment()
	}
	if p.pos < len(p.b) && p.b[p.pos] == '\r' {
		p.pos++
	}
	switch {
	case p.pos >= len(p.b):
	case p.b[p.pos] == '\n':
		p.pos++
	default:
		p.fail(fmt.Sprintf("unexpected %q after the statement", p.b[p.pos]))
	}
}

func isBare(c byte) bool {
	return c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// key parses a dotted key.
func (p *tomlParser) key() []string {
	var parts []string
	for p.err == nil {
		p.spaces()
		if p.pos >= len(p.b) {
			p.fail("unexpected end of file in a key")
			return nil
		}
		switch c := p.b[p.pos]; {
		case c == '"' || c == '\'':
			v := p.str(c, false)
			parts = append(parts, v)
		case isBare(c):
			i := p.pos
			for i < len(p.b) && isBare(p.b[i]) {
				i++
			}
			parts = append(parts, string(p.b[p.pos:i]))
			p.pos = i
		default:
			p.fail(fmt.Sprintf("unexpected %q in a key", c))
			return nil
		}
		p.spaces()
		if p.pos < len(p.b) && p.b[p.pos] == '.' {
			p.pos++
			continue
		}
		break
	}
	return parts
}

const maxTOMLDepth = 128

func (p *tomlParser) value(depth int) *tomlValue {
	p.spaces()
	if p.err != nil {
		return nil
	}
	if depth > maxTOMLDepth {
		p.fail("nested too deep")
		return nil
	}
	if p.pos >= len(p.b) {
		p.fail("expected a value")
		return nil
	}
	switch c := p.b[p.pos]; c {
	case '"', '\'':
		multi := bytes.HasPrefix(p.b[p.pos:], []byte{c, c, c})
		return &tomlValue{kind: 's', str: p.str(c, multi)}
	case '[':
		v := &tomlValue{kind: 'a'}
		p.pos++
		for p.err == nil {
			p.blank()
			if p.pos < len(p.b) && p.b[p.pos] == ']' {
				p.pos++
				break
			}
			v.elems = append(v.elems, p.value(depth+1))
			p.blank()
			if p.pos < len(p.b) && p.b[p.pos] == ',' {
				p.pos++
			} else if p.pos >= len(p.b) || p.b[p.pos] != ']' {
				p.fail("expected , or ] in an array")
			}
		}
		return v
	case '{':
		v := &tomlValue{kind: 't'}
		p.pos++
		for p.err == nil {
			p.blank()
			if p.pos < len(p.b) && p.b[p.pos] == '}' {
				p.pos++
				break
			}
			p.key()
			if p.err == nil && (p.pos >= len(p.b) || p.b[p.pos] != '=') {
				p.fail("expected = in an inline table")
			}
			p.pos++
			p.value(depth + 1)
			p.blank()
			if p.pos < len(p.b) && p.b[p.pos] == ',' {
				p.pos++
			} else if p.pos >= len(p.b) || p.b[p.pos] != '}' {
				p.fail("expected , or } in an inline table")
			}
		}
		return v
	}
	i := p.pos
	for i < len(p.b) && (isBare(p.b[i]) || strings.IndexByte("+.:", p.b[i]) >= 0 ||
		p.b[i] == ' ' && i+1 < len(p.b) && '0' <= p.b[i+1] && p.b[i+1] <= '9' && i > p.pos && '0' <= p.b[i-1] && p.b[i-1] <= '9') {
		i++
	}
	if i == p.pos {
		p.fail(fmt.Sprintf("expected a value, found %q", p.b[p.pos]))
		return nil
	}
	v := &tomlValue{kind: 'x', str: string(p.b[p.pos:i])}
	p.pos = i
	return v
}

// str parses a string opened by quote ('"' basic, '\” literal), one line
// or multi-line, and returns its value.
func (p *tomlParser) str(quote byte, multi bool) string {
	n := 1
	if multi {
		n = 3
	}
	p.pos += n
	if multi && p.pos < len(p.b) && p.b[p.pos] == '\n' {
		p.pos++ // a newline right after the opening quotes is trimmed
	} else if multi && bytes.HasPrefix(p.b[p.pos:], []byte("\r\n")) {
		p.pos += 2
	}
	var out strings.Builder
	for p.err == nil {
		if p.pos >= len(p.b) {
			p.fail("unterminated string")
			break
		}
		c := p.b[p.pos]
		if c == quote && (!multi || bytes.HasPrefix(p.b[p.pos:], []byte{c, c, c})) {
			p.pos += n
			// Up to two more quotes right before the closing three
			// belong to the string.
			for multi && p.pos < len(p.b) && p.b[p.pos] == quote && n < 5 {
				out.WriteByte(quote)
				p.pos++
				n++
			}
			return out.String()
		}
		if c == '\n' && !multi {
			p.fail("unterminated string")
			break
		}
		if c == '\\' && quote == '"' {
			p.escape(&out, multi)
			continue
		}
		out.WriteByte(c)
		p.pos++
	}
	return ""
}

// escape decodes one backslash escape of a basic string.
func (p *tomlParser) escape(out *strings.Builder, multi bool) {
	p.pos++
	if p.pos >= len(p.b) {
		p.fail("unterminated string")
		return
	}
	c := p.b[p.pos]
	p.pos++
	switch c {
	case 'b':
		out.WriteByte('\b')
	case 't':
		out.WriteByte('\t')
	case 'n':
		out.WriteByte('\n')
	case 'f':
		out.WriteByte('\f')
	case 'r':
		out.WriteByte('\r')
	case 'e':
		out.WriteByte(0x1b)
	case '"', '\\':
		out.WriteByte(c)
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.b) {
			p.fail("bad \\" + string(c) + " escape")
			return
		}
		r, err := strconv.ParseUint(string(p.b[p.pos:p.pos+n]), 16, 32)
		if err != nil || !utf8.ValidRune(rune(r)) {
			p.fail("bad \\" + string(c) + " escape")
			return
		}
		out.WriteRune(rune(r))
		p.pos += n
	case ' ', '\t', '\r', '\n':
		// A line-ending backslash in a multi-line string eats the
		// white space and newlines that follow.
		if !multi {
			p.fail("bad escape in a string")
			return
		}
		p.pos--
		rest := p.pos
		for p.pos < len(p.b) && strings.IndexByte(" \t\r\n", p.b[p.pos]) >= 0 {
			p.pos++
		}
		if bytes.IndexByte(p.b[rest:p.pos], '\n') < 0 {
			p.fail("bad escape in a string")
		}
	default:
		p.fail(fmt.Sprintf("bad escape \\%c in a string", c))
	}
}

// tomlString writes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlStrings writes ss as a TOML array of strings on one line.
func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func sameKey(a []string, b ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
