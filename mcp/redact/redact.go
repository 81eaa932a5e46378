// Package redact replaces secret values with [Mask] in text that pyro
// returns or stores: a workspace's exec output as it streams into its host
// files and tool results, journal entries, error messages. It sits on the
// host side of the VM boundary, between the guest agent's output streams
// and everything that keeps or shows them; it imports only the standard
// library (and nothing of pyro's), so the in-guest agent can use it too.
//
// # Matching
//
// A [Set] holds up to [MaxSecrets] values of [MinLen] to [MaxLen] bytes.
// Its output is defined by one left-to-right scan of the input: at each
// position, the longest value that occurs there is replaced by Mask and the
// scan resumes after it; where none occurs, the byte is kept. So of two
// overlapping occurrences the one that starts first wins, and a value that
// is a prefix of another yields to the longer one where both occur.
// Whatever the overlaps, no value survives whole: an occurrence of a value
// in the output always overlaps a Mask that redaction inserted (it can
// only be formed with some of the Mask's own bytes, for a value such as
// "DACTED]").
//
// The [Writer] gives exactly the output of the one-shot [Set.Bytes] however
// the input is split into writes: it holds back only bytes that may still
// begin a value (at most MaxLen-1 of them, fewer in practice), and emits
// them at [Writer.Flush].
//
// Redaction is of literal bytes: a command that prints a value encoded
// (base64, reversed, one character a line) is not caught. It keeps values
// out of what pyro shows and stores by accident; it is no barrier against
// a command that means to reveal them.
package redact

import (
	"bytes"
	"fmt"
	"io"
	"slices"
)

// Mask replaces every occurrence of a secret value.
const Mask = "[REDACTED]"

// Bounds on a Set.
const (
	// MaxSecrets bounds the values of one Set (a workspace's secrets).
	MaxSecrets = 64
	// MaxLen bounds one value: 64 KiB, room for a private key or a
	// certificate chain. A Writer holds back at most MaxLen-1 bytes.
	MaxLen = 64 << 10
	// MinLen is the shortest value: a shorter one would mask common
	// words and numbers all over the output, and is no secret anyway.
	MinLen = 4
)

// Set is an immutable set of secret values. The zero value and nil
// redact nothing. A Set is safe for concurrent use.
type Set struct {
	// byFirst lists, for each first byte, the values that begin with it,
	// longest first; by4 the same by their first four bytes (every value
	// has MinLen of them), so that a position where a common prefix
	// such as "sk-" occurs costs one lookup, not one comparison a value.
	byFirst [256][][]byte
	by4     map[uint32][][]byte
	// pairs has bit a<<8|b set when some value begins with bytes a, b:
	// the scan's fast path skips every position whose two bytes are in no
	// value's start.
	pairs  [1 << 16 / 64]uint64
	maxLen int
}

// New returns the Set of values, after checking them against the bounds.
// Duplicates count once.
func New(values [][]byte) (*Set, error) {
	s := &Set{by4: map[uint32][][]byte{}}
	seen := map[string]bool{}
	for _, v := range values {
		if err := CheckValue(v); err != nil {
			return nil, err
		}
		if seen[string(v)] {
			continue
		}
		seen[string(v)] = true
		if len(seen) > MaxSecrets {
			return nil, fmt.Errorf("more than %d secret values", MaxSecrets)
		}
		v = bytes.Clone(v)
		s.byFirst[v[0]] = append(s.byFirst[v[0]], v)
		s.by4[key4(v)] = append(s.by4[key4(v)], v)
		k := uint16(v[0])<<8 | uint16(v[1])
		s.pairs[k/64] |= 1 << (k % 64)
		s.maxLen = max(s.maxLen, len(v))
	}
	for i := range s.byFirst {
		slices.SortStableFunc(s.byFirst[i], longestFirst)
	}
	for _, l := range s.by4 {
		slices.SortStableFunc(l, longestFirst)
	}
	return s, nil
}

func longestFirst(a, b []byte) int { return len(b) - len(a) }

func key4(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// CheckValue says why v cannot be a secret value, or nil.
func CheckValue(v []byte) error {
	switch {
	case len(v) < MinLen:
		return fmt.Errorf("a secret value must be at least %d bytes (this one has %d): a shorter one cannot be redacted without masking common text", MinLen, len(v))
	case len(v) > MaxLen:
		return fmt.Errorf("a secret value must be at most %d bytes (this one has %d)", MaxLen, len(v))
	}
	return nil
}

// Len is the number of distinct values.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, l := range s.byFirst {
		n += len(l)
	}
	return n
}

// Bytes returns b with every value replaced by Mask. It returns b itself
// when nothing matched.
func (s *Set) Bytes(b []byte) []byte {
	if s.Len() == 0 {
		return b
	}
	out, n := s.scan(nil, b, true)
	if n != len(b) {
		panic("redact: a final scan left input")
	}
	if bytes.Equal(out, b) {
		return b
	}
	return out
}

// String is Bytes for a string.
func (s *Set) String(str string) string {
	if s.Len() == 0 {
		return str
	}
	out, _ := s.scan(nil, []byte(str), true)
	return string(out)
}

// pair reports whether some value begins with a, b.
func (s *Set) pair(a, b byte) bool {
	k := uint16(a)<<8 | uint16(b)
	return s.pairs[k/64]&(1<<(k%64)) != 0
}

// scan appends to out the redaction of in's bytes up to the first one
// that may still begin a value (when !final: its decision needs bytes
// that have not arrived), and returns how many bytes of in it consumed.
// When final, in is the end of the input and it consumes all of it.
func (s *Set) scan(out, in []byte, final bool) ([]byte, int) {
	i, run := 0, 0 // in[run:i] are bytes kept, not yet appended
	for i < len(in) {
		// Fast path: skip positions that begin no value.
		if i+1 < len(in) && !s.pair(in[i], in[i+1]) {
			i++
			continue
		}
		rest := in[i:]
		var cands [][]byte
		if len(rest) >= MinLen {
			cands = s.by4[key4(rest)]
		} else {
			cands = s.byFirst[rest[0]] // near the end: values it may begin
		}
		if len(cands) == 0 {
			i++
			continue
		}
		best, pending := 0, false
		for _, v := range cands {
			if len(v) <= len(rest) {
				if best == 0 && bytes.Equal(rest[:len(v)], v) {
					best = len(v) // longest first: the first match is the longest
				}
			} else if !final && bytes.HasPrefix(v, rest) {
				// A longer value may still match here: wait for it.
				pending = true
				break
			}
		}
		if pending {
			return append(out, in[run:i]...), i
		}
		if best == 0 {
			i++
			continue
		}
		out = append(out, in[run:i]...)
		out = append(out, Mask...)
		i += best
		run = i
	}
	return append(out, in[run:]...), len(in)
}

// Writer redacts what is written through it into an underlying writer.
// Bytes that may begin a value are held back until the bytes after them
// decide; Flush (or Close) writes them out at the end of the stream. A
// Writer is not safe for concurrent use.
type Writer struct {
	s    *Set
	w    io.Writer
	held []byte // input not yet decided, < s.maxLen bytes
	out  []byte // scratch for the output of one write
	err  error  // the first error of w, returned by every later call
}

// Writer returns a Writer that writes to w.
func (s *Set) Writer(w io.Writer) *Writer { return &Writer{s: s, w: w} }

// Write redacts p into the underlying writer. It consumes all of p unless
// the underlying writer failed.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.s.Len() == 0 {
		return w.emit(p, len(p))
	}
	in := p
	if len(w.held) > 0 {
		w.held = append(w.held, p...)
		in = w.held
	}
	out, n := w.s.scan(w.out[:0], in, false)
	w.out = out[:0]
	// Keep the undecided tail; in may be held itself, so copy first.
	rest := in[n:]
	if len(rest) > 0 && len(w.held) > 0 {
		w.held = w.held[:copy(w.held, rest)]
	} else {
		w.held = append(w.held[:0], rest...)
	}
	return w.emit(out, len(p))
}

func (w *Writer) emit(b []byte, n int) (int, error) {
	if len(b) == 0 {
		return n, nil
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = err
		return 0, err
	}
	return n, nil
}

// Flush writes out the bytes held back: the stream has ended, so they
// begin no value that the next write could complete. Writes after a Flush
// start a new stream.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.held) == 0 {
		return nil
	}
	out, _ := w.s.scan(w.out[:0], w.held, true)
	w.held = w.held[:0]
	w.out = out[:0]
	_, err := w.emit(out, 0)
	return err
}

// Close flushes; it does not close the underlying writer.
func (w *Writer) Close() error { return w.Flush() }

// Held is how many bytes the Writer holds back now.
func (w *Writer) Held() int { return len(w.held) }
