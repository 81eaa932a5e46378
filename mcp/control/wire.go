package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// The wire format: one JSON object a line each way (see the package
// documentation).

// Protocol is the wire format's version, which hello reports.
const Protocol = 1

// Operations beyond contract.Ops that the socket answers: the handshake
// and the background calls that have no operation of their own.
const (
	OpHello     contract.Op = "hello"      // the server's Hello
	OpExecStart contract.Op = "exec.start" // BackgroundBackend.ExecStart
	OpExecList  contract.Op = "exec.list"  // BackgroundBackend.ExecList
	// contract.OpExecStatus is BackgroundBackend.ExecPoll.
)

// Size bounds.
const (
	// DefaultMaxRequestBytes bounds one request line: room for the
	// largest request the contract allows (a 1 MiB file write, base64,
	// with a command's environment) with JSON's escaping.
	DefaultMaxRequestBytes = 16 << 20
	// maxResponseBytes bounds one response line a Client reads: a diff's
	// patch is not bounded by the contract, but a server is this user's.
	maxResponseBytes = 256 << 20
	// DefaultMaxInFlight bounds the calls one connection runs at once.
	DefaultMaxInFlight = 16
)

// request is one call.
type request struct {
	ID   json.RawMessage `json:"id,omitempty"` // echoed in the response; optional
	Op   contract.Op     `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// response answers one request: Result or Error.
type response struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

// wireError is a *contract.Error on the wire, less its cause (Err). Msg
// and Hint keep their {{op}} markers: each face words them.
type wireError struct {
	Code     contract.ErrorCode `json:"code"`
	Msg      string             `json:"msg"`
	Hint     string             `json:"hint,omitempty"`
	Resource string             `json:"resource,omitempty"`
	Name     string             `json:"name,omitempty"`
}

func toWire(e *contract.Error) *wireError {
	return &wireError{Code: e.Code, Msg: e.Msg, Hint: e.Hint, Resource: e.Resource, Name: e.Name}
}

func (w *wireError) contract() *contract.Error {
	code := w.Code
	if code == "" {
		code = contract.CodeInternal
	}
	return &contract.Error{Code: code, Msg: w.Msg, Hint: w.Hint, Resource: w.Resource, Name: w.Name}
}

// Hello is what a server says of itself (op hello).
type Hello struct {
	Protocol int       // the wire format's version (Protocol)
	PID      int       // the server's process
	Version  string    // pyro's version
	StateDir string    // where its workspaces live
	Started  time.Time // when it started
}

// marshal encodes v for the wire: encoding/json's encoding, with strings
// that are not valid UTF-8 escaped (escapeString) so that they survive.
func marshal(v any) ([]byte, error) {
	return json.Marshal(escapeValue(v))
}

// unmarshal decodes data into v (a pointer) and unescapes its strings.
// Strict refuses fields v does not have: a server decoding arguments is
// strict, so that a misspelt field is an error rather than ignored.
func unmarshal(data []byte, v any, strict bool) error {
	if len(data) == 0 || string(data) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the value")
	}
	unescapeValue(reflect.ValueOf(v))
	return nil
}

// readLine reads one line of at most max bytes (without its newline). A
// longer line is read to its end and dropped: errTooLong, and the next
// line can be read.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			if err == io.EOF && len(line) > 0 && !tooLong {
				return line, nil // a last line without its newline
			}
			return nil, err
		case tooLong:
			return nil, errTooLong
		}
		return bytes.TrimSuffix(line, []byte("\n")), nil
	}
}

var errTooLong = errors.New("line too long")

// Strings that are not valid UTF-8 (a guest's file names, a latin-1
// patch, binary stdin) would reach the other side with U+FFFD in place of
// their bytes. They travel escaped in the last code points of plane 16
// (private use, never produced by pyro): a byte b that is not part of
// valid UTF-8 is U+10FF00+b, and a code point of the string that is in
// U+10FF00-U+10FFFF, or is U+10FE00, follows an U+10FE00.
const (
	escQuote = 0x10FE00
	escByte  = 0x10FF00
)

func needsEscape(s string) bool {
	return !utf8.ValidString(s) || strings.Contains(s, "\xf4\x8f")
}

func escapeString(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune(escByte + rune(s[i]))
		case r == escQuote || r >= escByte:
			b.WriteRune(escQuote)
			b.WriteRune(r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unescapeString(s string) string {
	if !strings.Contains(s, "\xf4\x8f") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == escQuote && i+n < len(s):
			_, n2 := utf8.DecodeRuneInString(s[i+n:])
			b.WriteString(s[i+n : i+n+n2])
			n += n2
		case r >= escByte && r <= utf8.MaxRune:
			b.WriteByte(byte(r - escByte))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

var byteType = reflect.TypeOf(byte(0))

// hasEscapes reports whether v holds a string that escapeString changes.
// Only what encoding/json writes is looked at: exported fields.
func hasEscapes(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return needsEscape(v.String())
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if t.Field(i).IsExported() && hasEscapes(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem() == byteType {
			return false
		}
		for i := 0; i < v.Len(); i++ {
			if hasEscapes(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if hasEscapes(it.Key()) || hasEscapes(it.Value()) {
				return true
			}
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return hasEscapes(v.Elem())
		}
	}
	return false
}

// escapeValue returns v with its strings escaped: v itself when none
// needs it, else a copy (v is never changed).
func escapeValue(v any) any {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || !hasEscapes(rv) {
		return v
	}
	return escapeCopy(rv).Interface()
}

func escapeCopy(v reflect.Value) reflect.Value {
	if !hasEscapes(v) {
		return v
	}
	t := v.Type()
	switch v.Kind() {
	case reflect.String:
		return reflect.ValueOf(escapeString(v.String())).Convert(t)
	case reflect.Struct:
		n := reflect.New(t).Elem()
		n.Set(v)
		for i := 0; i < v.NumField(); i++ {
			if t.Field(i).IsExported() {
				n.Field(i).Set(escapeCopy(v.Field(i)))
			}
		}
		return n
	case reflect.Slice:
		n := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(escapeCopy(v.Index(i)))
		}
		return n
	case reflect.Array:
		n := reflect.New(t).Elem()
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(escapeCopy(v.Index(i)))
		}
		return n
	case reflect.Map:
		n := reflect.MakeMapWithSize(t, v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(escapeCopy(it.Key()), escapeCopy(it.Value()))
		}
		return n
	case reflect.Pointer:
		n := reflect.New(t.Elem())
		n.Elem().Set(escapeCopy(v.Elem()))
		return n
	case reflect.Interface:
		n := reflect.New(t).Elem()
		n.Set(escapeCopy(v.Elem()))
		return n
	}
	return v
}

// unescapeValue undoes escapeValue in place in what v points to.
func unescapeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			if s := v.String(); strings.Contains(s, "\xf4\x8f") {
				v.SetString(unescapeString(s))
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if t.Field(i).IsExported() {
				unescapeValue(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem() == byteType {
			return
		}
		for i := 0; i < v.Len(); i++ {
			unescapeValue(v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		type change struct{ old, k, v reflect.Value }
		var changes []change
		it := v.MapRange()
		for it.Next() {
			k, val := it.Key(), it.Value()
			if !hasEscapedRune(k) && !hasEscapedRune(val) {
				continue
			}
			k2 := reflect.New(k.Type()).Elem()
			k2.Set(k)
			unescapeValue(k2)
			v2 := reflect.New(val.Type()).Elem()
			v2.Set(val)
			unescapeValue(v2)
			changes = append(changes, change{k, k2, v2})
		}
		for _, c := range changes {
			v.SetMapIndex(c.old, reflect.Value{})
		}
		for _, c := range changes {
			v.SetMapIndex(c.k, c.v)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			unescapeValue(v.Elem())
		}
	}
}

// hasEscapedRune reports whether v holds a string with an escape.
func hasEscapedRune(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return strings.Contains(v.String(), "\xf4\x8f")
	case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map, reflect.Pointer, reflect.Interface:
		return hasEscapes(v) // an escape is a code point escapeString would change
	}
	return false
}

// describe says what a request line held, for an error about it.
func describe(line []byte) string {
	if len(line) > 80 {
		return fmt.Sprintf("%q...", line[:80])
	}
	return fmt.Sprintf("%q", line)
}
