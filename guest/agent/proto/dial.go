package proto

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DialPort connects, through the agent, to TCP port on the guest's
// loopback (127.0.0.1, then ::1; a service on 0.0.0.0 answers on
// 127.0.0.1) and returns the connection: how a published port reaches a
// service that listens only on localhost in the guest. ctx bounds the
// connecting only. Nothing listening gives an *Error with code
// ECONNREFUSED; an agent built before dial existed gives CodeUnsupported
// with a message that says to rebuild the environment. The connection's
// CloseWrite half-closes it (the service reads EOF).
func (c *Client) DialPort(ctx context.Context, port uint16) (net.Conn, error) {
	if port == 0 {
		return nil, errorf(CodeInvalid, "dial needs a guest port from 1 to 65535")
	}
	s, err := open(ctx, c, OpDial, DialArgs{Port: port})
	if err != nil {
		return nil, err
	}
	t, p, err := s.dec.ReadFrame()
	switch {
	case err != nil:
		err = s.wrap(err)
	case t == FrameOpen:
	case t == FrameError:
		err = s.decodeError(p)
	default:
		err = protoErrorf("unexpected %v frame from the guest answering dial", t)
	}
	if err == nil && !s.stop() {
		err = ctx.Err() // ctx ended as the dial connected
	}
	if err != nil {
		s.close()
		return nil, err
	}
	// From here on the stream outlives ctx; errors are reported as
	// themselves, not as ctx's.
	s.ctx = context.Background()
	return &dialConn{s: s}, nil
}

// dialConn is a connection DialPort made: Data frames both ways.
type dialConn struct {
	s      *stream[DialResult]
	buf    []byte // the rest of the last Data frame, valid until the next ReadFrame
	err    error
	wmu    sync.Mutex
	wdone  bool // CloseWrite was called
	closed sync.Once
}

func (c *dialConn) Read(p []byte) (int, error) {
	for len(c.buf) == 0 && c.err == nil {
		t, b, err := c.s.dec.ReadFrame()
		switch {
		case err != nil:
			c.err = c.s.wrap(err)
		case t == FrameData:
			c.buf = b
		case t == FrameEnd, t == FrameResult:
			c.err = io.EOF // the guest service shut down its side
		case t == FrameError:
			c.err = decodeError(b)
		default:
			c.err = protoErrorf("unexpected %v frame from the guest in a dial", t)
		}
	}
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return 0, c.err
}

func (c *dialConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wdone {
		return 0, fmt.Errorf("proto: write after CloseWrite: %w", net.ErrClosed)
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), ChunkSize)
		if err := c.s.enc.WriteFrame(FrameData, p[:k]); err != nil {
			return n, c.s.wrap(err)
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// CloseWrite sends End: the guest service reads EOF, and may still answer.
func (c *dialConn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wdone {
		return nil
	}
	c.wdone = true
	return c.s.enc.WriteFrame(FrameEnd, nil)
}

// Close aborts the connection: the agent closes its side to the service.
func (c *dialConn) Close() error {
	c.closed.Do(c.s.close)
	return nil
}

func (c *dialConn) LocalAddr() net.Addr                { return c.s.conn.LocalAddr() }
func (c *dialConn) RemoteAddr() net.Addr               { return c.s.conn.RemoteAddr() }
func (c *dialConn) SetDeadline(t time.Time) error      { return c.s.conn.SetDeadline(t) }
func (c *dialConn) SetReadDeadline(t time.Time) error  { return c.s.conn.SetReadDeadline(t) }
func (c *dialConn) SetWriteDeadline(t time.Time) error { return c.s.conn.SetWriteDeadline(t) }
