package proto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Protocol constants; the package doc describes the format.
const (
	Magic      = "PYROAG" // first 6 bytes of each hello
	Version    = 3        // protocol version this package speaks (2: beneath; 3: per-operation args)
	HelloSize  = 8        // Magic + uint16 version
	HeaderSize = 5        // frame type + uint32 length
	MaxPayload = 1 << 20  // largest frame payload either side accepts

	// ChunkSize is the payload size senders use for byte streams (Data,
	// Stdout, Stderr); receivers accept up to MaxPayload. A full frame,
	// header included, is 64 KiB: one packet of the Linux vsock driver
	// (its largest), not one and a 5-byte straggler, each with its own
	// notification and interrupt.
	ChunkSize = 64<<10 - HeaderSize
)

// FrameType is the first byte of a frame.
type FrameType uint8

// Frame types; the package doc says who sends each and when.
const (
	FrameRequest FrameType = 0x01
	FrameData    FrameType = 0x02
	FrameEnd     FrameType = 0x03
	FrameStdout  FrameType = 0x10
	FrameStderr  FrameType = 0x11
	FrameEntries FrameType = 0x12
	FrameResult  FrameType = 0x13
	FrameError   FrameType = 0x14
	FrameOpen    FrameType = 0x15
)

var frameNames = map[FrameType]string{
	FrameRequest: "Request", FrameData: "Data", FrameEnd: "End", FrameStdout: "Stdout",
	FrameStderr: "Stderr", FrameEntries: "Entries", FrameResult: "Result", FrameError: "Error",
	FrameOpen: "Open",
}

func (t FrameType) String() string {
	if n, ok := frameNames[t]; ok {
		return n
	}
	return fmt.Sprintf("FrameType(0x%02x)", uint8(t))
}

// Hello returns the 8-byte hello for version v.
func Hello(v uint16) []byte {
	b := make([]byte, HelloSize)
	copy(b, Magic)
	binary.LittleEndian.PutUint16(b[6:], v)
	return b
}

// ReadHello reads the peer's hello and returns its version. Bytes that do
// not start with Magic give a CodeProtocol *Error.
func ReadHello(r io.Reader) (uint16, error) {
	var b [HelloSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, protoErrorf("stream ended inside the %d-byte hello", HelloSize)
		}
		return 0, err
	}
	if string(b[:6]) != Magic {
		return 0, protoErrorf("peer does not speak the pyro agent protocol (hello %q, want %q)", b[:6], Magic)
	}
	return binary.LittleEndian.Uint16(b[6:]), nil
}

// VersionError says the two sides speak different protocol versions.
type VersionError struct {
	Host, Guest uint16
	// Env names the environment whose agent answered, when the caller
	// knows it (the Client does not), for the message.
	Env string
}

func (e *VersionError) Error() string {
	env := e.Env
	if env == "" {
		env = "NAME"
	}
	return fmt.Sprintf("guest agent speaks protocol version %d, this pyro speaks %d: "+
		"the environment's /init is a different pyro build; rebuild the environment with this pyro: pyro env build %s", e.Guest, e.Host, env)
}

// Encoder writes frames to a stream. It is safe for concurrent use: each
// frame goes out whole, in a single Write.
type Encoder struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// WriteFrame writes one frame. Payloads over MaxPayload are refused.
func (e *Encoder) WriteFrame(t FrameType, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("proto: %v frame of %d bytes exceeds the %d-byte limit", t, len(payload), MaxPayload)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = AppendFrame(e.buf[:0], t, payload)
	_, err := e.w.Write(e.buf)
	if cap(e.buf) > 2*ChunkSize {
		e.buf = nil // do not pin a large control frame's buffer
	}
	return err
}

// AppendFrame appends the encoding of one frame to dst. The caller checks
// len(payload) <= MaxPayload.
func AppendFrame(dst []byte, t FrameType, payload []byte) []byte {
	dst = append(dst, byte(t))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// WriteJSON writes v, JSON-encoded, as one frame of type t.
func (e *Encoder) WriteJSON(t FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("proto: encoding %v frame: %w", t, err)
	}
	return e.WriteFrame(t, b)
}

// Decoder reads frames from a stream. It never holds more memory than the
// bytes it has actually received, and at most MaxPayload of them.
type Decoder struct {
	r   *bufio.Reader
	buf []byte
}

// NewDecoder returns a Decoder reading from r (buffered internally).
func NewDecoder(r io.Reader) *Decoder { return &Decoder{r: bufio.NewReaderSize(r, 16<<10)} }

// Reader returns the buffered reader the Decoder consumes, for reading the
// hello before the first frame.
func (d *Decoder) Reader() io.Reader { return d.r }

// ReadFrame reads the next frame. The payload is valid until the next
// call. It returns io.EOF at a clean end of stream (between frames), a
// CodeProtocol *Error for an oversized frame, an unknown type or a stream
// that ends inside a frame, and the underlying error otherwise.
func (d *Decoder) ReadFrame() (FrameType, []byte, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(d.r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, protoErrorf("stream ended inside a frame header")
		}
		return 0, nil, err
	}
	t, n := FrameType(h[0]), binary.LittleEndian.Uint32(h[1:])
	if _, ok := frameNames[t]; !ok {
		return 0, nil, protoErrorf("unknown frame type 0x%02x", h[0])
	}
	if n > MaxPayload {
		return 0, nil, protoErrorf("%v frame of %d bytes exceeds the %d-byte limit", t, n, MaxPayload)
	}
	// Grow the buffer as bytes arrive, so a header claiming a large frame
	// costs nothing until its payload is really sent.
	d.buf = d.buf[:0]
	for len(d.buf) < int(n) {
		k := min(int(n)-len(d.buf), ChunkSize)
		d.buf = slices.Grow(d.buf, k)
		m, err := io.ReadFull(d.r, d.buf[len(d.buf):len(d.buf)+k])
		d.buf = d.buf[:len(d.buf)+m]
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return 0, nil, protoErrorf("stream ended inside a %v frame (%d of %d bytes)", t, len(d.buf), n)
			}
			return 0, nil, err
		}
	}
	return t, d.buf, nil
}

// ReadJSON reads the next frame, which must be of type want, into v.
func (d *Decoder) ReadJSON(want FrameType, v any) error {
	t, p, err := d.ReadFrame()
	if err != nil {
		return err
	}
	if t != want {
		return protoErrorf("got a %v frame, want %v", t, want)
	}
	return DecodeJSON(t, p, v)
}

// DecodeJSON unmarshals the payload of a frame of type t into v, as a
// CodeProtocol *Error if it is not valid JSON for v.
func DecodeJSON(t FrameType, p []byte, v any) error {
	if err := json.Unmarshal(p, v); err != nil {
		return protoErrorf("bad %v frame: %v", t, err)
	}
	return nil
}

func protoErrorf(format string, args ...any) *Error {
	return &Error{Code: CodeProtocol, Message: fmt.Sprintf(format, args...)}
}
