package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// DefaultMaxDials bounds the dial streams (connections to published
// ports) a Server relays at once, unless Server.MaxDials says: half of
// DefaultMaxStreams, so that busy published ports always leave streams
// for exec and the file tools. More get CodeBusy, which the host sees as
// one refused connection.
const DefaultMaxDials = DefaultMaxStreams / 2

// dialTimeout bounds connecting to a loopback port: loopback answers or
// refuses at once, unless the service's accept backlog is full.
const dialTimeout = 5 * time.Second

// acquireDial takes one of the dial slots, or says there is none.
func (s *Server) acquireDial() (int, bool) {
	limit := s.MaxDials
	if limit <= 0 {
		limit = DefaultMaxDials
	}
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	if s.dials >= limit {
		return limit, false
	}
	s.dials++
	return limit, true
}

func (s *Server) releaseDial() {
	s.dialMu.Lock()
	s.dials--
	s.dialMu.Unlock()
	if s.dialEnded != nil {
		s.dialEnded()
	}
}

// dialLoopback connects to port on 127.0.0.1, else on ::1.
func dialLoopback(port uint16) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(int(port))
	c, err4 := d.Dial("tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.Dial("tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	code := "ECONNREFUSED"
	if !errors.Is(err4, syscall.ECONNREFUSED) {
		code = toProtoError(err4).Code
	}
	return nil, &proto.Error{Code: code, Message: fmt.Sprintf(
		"nothing accepts connections on port %d in the guest (127.0.0.1: %v; ::1: %v): start the service, "+
			"or publish the port it listens on", port, err4, err6)}
}

// dial relays a stream to a TCP port on the guest's loopback: the
// protocol's dial (see package proto). Host Data goes to the service, the
// service's bytes come back as Data, End each way is a half-close, and
// the host closing the stream aborts the connection.
func (s *Server) dial(st *stream, req *proto.DialArgs) (*proto.DialResult, error) {
	if req.Port == 0 {
		return nil, invalidf("dial needs a port from 1 to 65535")
	}
	limit, ok := s.acquireDial()
	if !ok {
		return nil, &proto.Error{Code: proto.CodeBusy, Message: fmt.Sprintf(
			"the agent already relays %d connections to published ports; close some and retry", limit)}
	}
	defer s.releaseDial()
	c, err := dialLoopback(req.Port)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := st.enc.WriteFrame(proto.FrameOpen, nil); err != nil {
		return nil, err
	}
	var res proto.DialResult
	out := make(chan error, 1)
	go func() { // service to host
		n, err := io.CopyBuffer(frameWriter{enc: st.enc, t: proto.FrameData}, c, make([]byte, proto.ChunkSize))
		res.Out = n
		if err == nil {
			err = st.enc.WriteFrame(proto.FrameEnd, nil)
		}
		out <- err
	}()
	abort := func(err error) (*proto.DialResult, error) {
		c.Close()
		st.conn.Close()
		<-out
		return nil, err
	}
	// Host to service, until the host's End.
	for {
		t, b, err := st.dec.ReadFrame()
		if err == io.EOF {
			return abort(errCancelled)
		}
		if err != nil {
			return abort(err)
		}
		if t == proto.FrameEnd {
			break
		}
		if t != proto.FrameData {
			return abort(&proto.Error{Code: proto.CodeProtocol, Message: fmt.Sprintf("unexpected %v frame in a dial", t)})
		}
		n, err := c.Write(b)
		res.In += int64(n)
		if err != nil {
			return abort(err)
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	// The service may still answer; the host may still give up.
	gone := make(chan error, 1)
	go func() {
		_, _, err := st.dec.ReadFrame() // nothing may follow End: EOF (gone) or a protocol error
		gone <- err
	}()
	select {
	case err := <-out:
		if err != nil {
			return nil, err
		}
		return &res, nil
	case <-gone:
		return abort(errCancelled)
	}
}
