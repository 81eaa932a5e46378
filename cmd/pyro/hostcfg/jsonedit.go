package hostcfg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// This file reads and edits the JSON files hosts keep their MCP servers in
// (.mcp.json, opencode.json, ~/.claude.json) as text: it finds the byte
// span of each value so an edit replaces or inserts one member and leaves
// every other byte (key order, indentation, comments) as it was. It accepts
// what those hosts' own parsers do on top of RFC 8259: // and /* */
// comments and trailing commas (JSONC).

// jsonKind is the type of a parsed JSON value.
type jsonKind int

const (
	jsonObject jsonKind = iota
	jsonArray
	jsonString
	jsonScalar // number, true, false, null
)

// jsonNode is one value with its byte span [start, end) in the file.
type jsonNode struct {
	kind       jsonKind
	start, end int
	members    []jsonMember // objects
	elems      []*jsonNode  // arrays
	str        string       // decoded string, or the scalar's text
}

// jsonMember is one "key": value pair of an object.
type jsonMember struct {
	key   string
	value *jsonNode
}

// member returns the value of key in an object, or nil.
func (n *jsonNode) member(key string) *jsonNode {
	if n == nil || n.kind != jsonObject {
		return nil
	}
	var found *jsonNode
	for _, m := range n.members {
		if m.key == key {
			found = m.value // the last one wins, as in JavaScript
		}
	}
	return found
}

// strings returns an array of strings' values; ok is false for anything else.
func (n *jsonNode) strings() (out []string, ok bool) {
	if n == nil || n.kind != jsonArray {
		return nil, false
	}
	for _, e := range n.elems {
		if e.kind != jsonString {
			return nil, false
		}
		out = append(out, e.str)
	}
	return out, true
}

// SyntaxError is a file a host config parser would reject: pyro reports it
// and never writes over it.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

type jsonParser struct {
	b   []byte
	pos int
	err *SyntaxError
}

func lineAt(b []byte, pos int) int {
	if pos > len(b) {
		pos = len(b)
	}
	return 1 + bytes.Count(b[:pos], []byte{'\n'})
}

// parseJSON parses a whole JSONC document whose top level is an object.
func parseJSON(b []byte) (*jsonNode, error) {
	p := &jsonParser{b: b}
	p.space()
	if p.pos < len(b) && b[p.pos] != '{' {
		return nil, &SyntaxError{lineAt(b, p.pos), "the top level is not an object"}
	}
	n := p.value(0)
	if p.err == nil {
		p.space()
		if p.pos < len(b) {
			p.fail("unexpected text after the top-level object")
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return n, nil
}

func (p *jsonParser) fail(msg string) {
	if p.err == nil {
		p.err = &SyntaxError{lineAt(p.b, p.pos), msg}
	}
}

// space skips white space and comments.
func (p *jsonParser) space() {
	for p.pos < len(p.b) {
		switch c := p.b[p.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.pos++
		case c == '/' && p.pos+1 < len(p.b) && p.b[p.pos+1] == '/':
			for p.pos < len(p.b) && p.b[p.pos] != '\n' {
				p.pos++
			}
		case c == '/' && p.pos+1 < len(p.b) && p.b[p.pos+1] == '*':
			end := bytes.Index(p.b[p.pos+2:], []byte("*/"))
			if end < 0 {
				p.fail("unterminated /* comment")
				p.pos = len(p.b)
				return
			}
			p.pos += end + 4
		default:
			return
		}
	}
}

const maxJSONDepth = 256

func (p *jsonParser) value(depth int) *jsonNode {
	if depth > maxJSONDepth {
		p.fail("nested too deep")
		return nil
	}
	p.space()
	if p.pos >= len(p.b) {
		p.fail("unexpected end of file")
		return nil
	}
	n := &jsonNode{start: p.pos}
	switch c := p.b[p.pos]; {
	case c == '{':
		n.kind = jsonObject
		p.pos++
		for p.err == nil {
			p.space()
			if p.pos < len(p.b) && p.b[p.pos] == '}' {
				p.pos++
				break
			}
			if p.pos >= len(p.b) || p.b[p.pos] != '"' {
				p.fail("expected a \"key\" or }")
				return nil
			}
			k := p.value(depth + 1)
			p.space()
			if p.err != nil {
				return nil
			}
			if p.pos >= len(p.b) || p.b[p.pos] != ':' {
				p.fail("expected : after the key")
				return nil
			}
			p.pos++
			v := p.value(depth + 1)
			if p.err != nil {
				return nil
			}
			n.members = append(n.members, jsonMember{k.str, v})
			if !p.separator('}') {
				return nil
			}
		}
	case c == '[':
		n.kind = jsonArray
		p.pos++
		for p.err == nil {
			p.space()
			if p.pos < len(p.b) && p.b[p.pos] == ']' {
				p.pos++
				break
			}
			v := p.value(depth + 1)
			if p.err != nil {
				return nil
			}
			n.elems = append(n.elems, v)
			if !p.separator(']') {
				return nil
			}
		}
	case c == '"':
		n.kind = jsonString
		i := p.pos + 1
		for i < len(p.b) && p.b[i] != '"' && p.b[i] != '\n' {
			if p.b[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(p.b) || p.b[i] != '"' {
			p.fail("unterminated string")
			return nil
		}
		if err := json.Unmarshal(p.b[p.pos:i+1], &n.str); err != nil {
			p.fail("bad string: " + err.Error())
			return nil
		}
		p.pos = i + 1
	default:
		i := p.pos
		for i < len(p.b) && strings.IndexByte("+-.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", p.b[i]) >= 0 {
			i++
		}
		tok := string(p.b[p.pos:i])
		var v any
		if tok == "" || json.Unmarshal([]byte(tok), &v) != nil {
			p.fail(fmt.Sprintf("unexpected %q", string(p.b[p.pos:min(p.pos+12, len(p.b))])))
			return nil
		}
		n.kind, n.str = jsonScalar, tok
		p.pos = i
	}
	n.end = p.pos
	return n
}

// separator consumes the , between members or elements (a trailing one
// allowed) or sees the closing bracket; false after an error.
func (p *jsonParser) separator(closing byte) bool {
	p.space()
	if p.pos >= len(p.b) {
		p.fail("unexpected end of file: missing " + string(closing))
		return false
	}
	switch p.b[p.pos] {
	case ',':
		p.pos++
		return true
	case closing:
		return true
	}
	p.fail("expected , or " + string(closing))
	return false
}

// indentUnit guesses the file's indentation step from the first line that
// starts with white space; two spaces when it has none.
func indentUnit(b []byte) string {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		t := bytes.TrimLeft(line, " \t")
		if len(t) > 0 && len(t) < len(line) {
			return string(line[:len(line)-len(t)])
		}
	}
	return "  "
}

// lineIndent returns the white space that starts the line holding pos.
func lineIndent(b []byte, pos int) string {
	s := bytes.LastIndexByte(b[:pos], '\n') + 1
	e := s
	for e < len(b) && (b[e] == ' ' || b[e] == '\t') {
		e++
	}
	return string(b[s:e])
}

// marshalAt encodes v so it reads well starting on a line indented by
// indent, one unit deeper per level.
func marshalAt(v any, indent, unit string) []byte {
	out, err := json.MarshalIndent(v, indent, unit)
	if err != nil {
		panic(err) // only our own values are encoded
	}
	return out
}

// setMember returns b with obj's member key set to v: its value replaced
// in place when present, else a member added after the last one. Nothing
// else in b changes. A value replaced or added on one line stays on one.
func setMember(b []byte, obj *jsonNode, key string, v any) []byte {
	unit := indentUnit(b)
	if m := obj.member(key); m != nil {
		if bytes.IndexByte(b[m.start:m.end], '\n') < 0 && bytes.IndexByte(b[obj.start:obj.end], '\n') < 0 {
			return splice(b, m.start, m.end, oneLine(v))
		}
		return splice(b, m.start, m.end, marshalAt(v, lineIndent(b, m.start), unit))
	}
	k, _ := json.Marshal(key)
	if len(obj.members) == 0 {
		// {} or { } (maybe with comments): open it onto its own lines.
		outer := lineIndent(b, obj.start)
		inner := outer + unit
		text := "{\n" + inner + string(k) + ": " + string(marshalAt(v, inner, unit)) + "\n" + outer + "}"
		return splice(b, obj.start, obj.end, []byte(text))
	}
	last := obj.members[len(obj.members)-1].value
	ind := lineIndent(b, last.start) // the last member's line
	// The comma goes right after the last value (unless a trailing comma
	// is there already); the new member after that line's comment, so a
	// comment stays with the member it was written beside.
	commaAt, comma := last.end, ","
	after := last.end
	if i := bytes.IndexByte(b[after:obj.end], ','); i >= 0 && onlySpaceOrComments(b[after:after+i]) {
		after += i + 1
		comma = ""
	}
	after = pastLineComment(b, after, obj.end-1)
	var text []byte
	if multiLineMembers(b, obj) {
		text = []byte("\n" + ind + string(k) + ": " + string(marshalAt(v, ind, unit)))
	} else {
		text = []byte(" " + string(k) + ": " + string(oneLine(v)))
		if comma != "" {
			after = last.end // right after the value, where the comma goes
		} else {
			after = commaAt + bytes.IndexByte(b[commaAt:], ',') + 1
		}
	}
	if comma == "" {
		text = append(text, ',')
	}
	b = splice(b, after, after, text)
	return splice(b, commaAt, commaAt, []byte(comma))
}

// pastLineComment returns the position after white space and comments
// that follow pos on its line (not past limit, nor the newline).
func pastLineComment(b []byte, pos, limit int) int {
	for pos < limit {
		switch {
		case b[pos] == ' ' || b[pos] == '\t':
			pos++
		case bytes.HasPrefix(b[pos:], []byte("//")):
			for pos < limit && b[pos] != '\n' {
				pos++
			}
			return pos
		case bytes.HasPrefix(b[pos:], []byte("/*")):
			end := bytes.Index(b[pos+2:limit], []byte("*/"))
			if end < 0 || bytes.IndexByte(b[pos:pos+2+end], '\n') >= 0 {
				return pos
			}
			pos += end + 4
		default:
			return pos
		}
	}
	return pos
}

// oneLine encodes v on one line, with a space after each , and :.
func oneLine(v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own values are encoded
	}
	var out []byte
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		out = append(out, c)
		switch {
		case inStr && c == '\\':
			i++
			out = append(out, raw[i])
		case c == '"':
			inStr = !inStr
		case !inStr && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out
}

// multiLineMembers reports whether obj lays its members out one per line.
func multiLineMembers(b []byte, obj *jsonNode) bool {
	return bytes.IndexByte(b[obj.start:obj.members[0].value.start], '\n') >= 0
}

func onlySpaceOrComments(b []byte) bool {
	p := &jsonParser{b: b}
	p.space()
	return p.pos == len(b) && p.err == nil
}

func splice(b []byte, start, end int, with []byte) []byte {
	out := make([]byte, 0, len(b)-(end-start)+len(with))
	out = append(out, b[:start]...)
	out = append(out, with...)
	return append(out, b[end:]...)
}
