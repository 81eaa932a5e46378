// Package dnstest is a DNS server for tests: it listens on the loopback,
// answers A questions for the names it was given and NXDOMAIN for every
// other name, so that tests resolve names without asking any real server.
package dnstest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Server answers on a loopback UDP port until the test ends.
type Server struct {
	// Addr is the server's address, 127.0.0.1:PORT.
	Addr string

	mu    sync.Mutex
	asked []string
}

// Start serves names (lower-case, no trailing dot) to their addresses.
func Start(t testing.TB, names map[string]netip.Addr) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: pc.LocalAddr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := s.answer(buf[:n], names); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	return s
}

// Asked returns the names queried so far, in order.
func (s *Server) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

// answer builds the response to query q, or nil to drop it.
func (s *Server) answer(q []byte, names map[string]netip.Addr) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	off := 12
	var labels []string
	for {
		if off >= len(q) {
			return nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) {
			return nil
		}
		labels = append(labels, strings.ToLower(string(q[off:off+l])))
		off += l
	}
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off:])
	question := q[12 : off+4]
	name := strings.Join(labels, ".")
	s.mu.Lock()
	s.asked = append(s.asked, name)
	s.mu.Unlock()

	addr, ok := names[name]
	rcode := byte(0)
	if !ok {
		rcode = 3 // NXDOMAIN
	}
	out := make([]byte, 12, 12+len(question)+16)
	copy(out, q[:2])                       // ID
	out[2] = 0x80 | q[2]&0x79              // QR, opcode, RD
	out[3] = 0x80 | rcode                  // RA, RCODE
	binary.BigEndian.PutUint16(out[4:], 1) // QDCOUNT
	out = append(out, question...)
	if ok && qtype == 1 {
		binary.BigEndian.PutUint16(out[6:], 1) // ANCOUNT
		a4 := addr.As4()
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		out = append(out, a4[:]...)
	}
	return out
}
