package virtio

import (
	"io"
	"slices"
)

// Pieces walks a list of buffers as one byte stream, handing out sub-slices
// without copying. Devices use it to parse requests that the driver may
// split across descriptors at any byte.
type Pieces struct {
	bufs []Buffer
}

// NewPieces returns a walker over bufs.
func NewPieces(bufs []Buffer) *Pieces { return &Pieces{bufs: slices.Clone(bufs)} }

// Len is the number of bytes left.
func (p *Pieces) Len() int { return buffersLen(p.bufs) }

// Read copies the next bytes into b (io.Reader).
func (p *Pieces) Read(b []byte) (int, error) {
	if p.Len() == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(b) && len(p.bufs) > 0 {
		c := copy(b[n:], p.bufs[0])
		n += c
		p.advance(c)
	}
	return n, nil
}

// Write copies b into the next bytes (io.Writer); it writes what fits and
// reports io.ErrShortWrite for the rest.
func (p *Pieces) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) && len(p.bufs) > 0 {
		c := copy(p.bufs[0], b[n:])
		n += c
		p.advance(c)
	}
	if n < len(b) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// Take removes the next n bytes and returns them as sub-slices of the
// buffers, or nil and false if fewer than n remain.
func (p *Pieces) Take(n int) ([]Buffer, bool) {
	if n > p.Len() {
		return nil, false
	}
	var out []Buffer
	for n > 0 {
		c := min(n, len(p.bufs[0]))
		out = append(out, p.bufs[0][:c:c])
		n -= c
		p.advance(c)
	}
	return out, true
}

// TakeLast removes the last n bytes and returns them as one slice when they
// lie in one buffer (a virtio-blk status byte, say), or nil and false.
func (p *Pieces) TakeLast(n int) (Buffer, bool) {
	for len(p.bufs) > 0 && len(p.bufs[len(p.bufs)-1]) == 0 {
		p.bufs = p.bufs[:len(p.bufs)-1]
	}
	if len(p.bufs) == 0 {
		return nil, false
	}
	last := p.bufs[len(p.bufs)-1]
	if len(last) < n {
		return nil, false
	}
	p.bufs[len(p.bufs)-1] = last[: len(last)-n : len(last)-n]
	return last[len(last)-n:], true
}

func (p *Pieces) advance(n int) {
	p.bufs[0] = p.bufs[0][n:]
	for len(p.bufs) > 0 && len(p.bufs[0]) == 0 {
		p.bufs = p.bufs[1:]
	}
}
