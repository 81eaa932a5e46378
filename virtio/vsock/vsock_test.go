package vsock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

const testCID = 5

func setup(t *testing.T, opts Options, gopts guestOpts) (*Device, *guest) {
	t.Helper()
	dev, err := New(testCID, opts)
	if err != nil {
		t.Fatal(err)
	}
	return dev, newGuest(t, dev, gopts)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, dev *Device, port uint32) *Conn {
	t.Helper()
	c, err := dev.Dial(ctxTimeout(t, 5*time.Second), port)
	if err != nil {
		t.Fatalf("Dial(%d): %v", port, err)
	}
	return c
}

// guestConnect connects a guest socket to a new Listener on host port and
// returns both ends.
func guestConnect(t *testing.T, dev *Device, g *guest, port uint32) (*gsock, net.Conn) {
	t.Helper()
	l, err := dev.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	s := g.connect(port)
	if !s.connected {
		t.Fatalf("guest connect to %d was refused", port)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// echo copies what the guest socket reads back to the host until EOF,
// then closes its side.
func echo(s *gsock) {
	buf := make([]byte, 8192)
	for {
		n, err := s.read(buf)
		if err != nil {
			s.shutdown(shutdownBoth)
			return
		}
		s.write(buf[:n])
	}
}

func streamCount(dev *Device) int {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return len(dev.conns)
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestDeviceBasics(t *testing.T) {
	for _, cid := range []uint32{0, 1, 2, 0xffffffff} {
		if _, err := New(cid, Options{}); err == nil {
			t.Errorf("New accepted reserved CID %d", cid)
		}
	}
	if _, err := New(3, Options{BufferSize: MaxBufferSize + 1}); err == nil {
		t.Error("New accepted a buffer over the limit")
	}
	dev, err := New(0x12345678, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if dev.ID() != virtio.IDVsock || dev.Features() != 1<<VIRTIO_VSOCK_F_STREAM || len(dev.QueueSizes()) != 3 {
		t.Fatal("ID, features or queues")
	}
	cfg := make([]byte, 12)
	dev.ReadConfig(0, cfg)
	if !bytes.Equal(cfg, []byte{0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("config %x", cfg)
	}
	dev.WriteConfig(0, []byte{1, 2, 3, 4})
	hi := make([]byte, 4)
	dev.ReadConfig(4, hi)
	if !bytes.Equal(hi, []byte{0, 0, 0, 0}) {
		t.Fatalf("config high half %x", hi)
	}
	if _, err := dev.Listen(VMADDR_PORT_ANY); err == nil {
		t.Error("Listen(VMADDR_PORT_ANY) succeeded")
	}
	l, err := dev.Listen(1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Listen(1024); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen: %v", err)
	}
	if l.Addr().String() != "2:1024" || l.Addr().Network() != "vsock" {
		t.Errorf("listener address %v", l.Addr())
	}
	// Host ports skip listeners and live streams.
	dev.mu.Lock()
	p1, _ := dev.allocPortLocked()
	dev.newConnLocked(p1, 9, stateConnecting)
	p2, _ := dev.allocPortLocked()
	dev.mu.Unlock()
	if p1 != 1025 || p2 != 1026 {
		t.Errorf("ephemeral ports %d, %d", p1, p2)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err == nil {
		t.Error("second Listener.Close succeeded")
	}
	dev.Close()
	if _, err := dev.Listen(7); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
	if _, err := dev.Dial(context.Background(), 7); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: %v", err)
	}
}

func TestDialEcho(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	ln := g.listen(1000)
	c := dial(t, dev, 1000)
	s := g.accept(ln)
	go echo(s)
	if c.LocalAddr().String() != "2:1024" || c.RemoteAddr().String() != "5:1000" || c.RemoteAddr().Network() != "vsock" {
		t.Errorf("addresses %v → %v", c.LocalAddr(), c.RemoteAddr())
	}
	for i := 0; i < 20; i++ {
		msg := fmt.Sprintf("hello, guest %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	// A clean close: SHUTDOWN both ways, answered by the guest's RST.
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stream to leave the table", func() bool { return streamCount(dev) == 0 })
	if time.Since(start) > 6*time.Second {
		t.Error("the close waited for the timeout, not the guest's RST")
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

func TestListenAccept(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{rxSplit: true})
	l, err := dev.Listen(2000)
	if err != nil {
		t.Fatal(err)
	}
	s := g.connect(2000)
	if !s.connected {
		t.Fatal("guest connect was refused")
	}
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*Conn)
	if c.RemoteAddr().String() != fmt.Sprintf("5:%d", guestPort0) || c.LocalAddr().String() != "2:2000" {
		t.Errorf("addresses %v → %v", c.LocalAddr(), c.RemoteAddr())
	}
	s.write([]byte("from the guest"))
	got := make([]byte, 14)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "from the guest" {
		t.Fatalf("host read %q, %v", got, err)
	}
	if _, err := c.Write([]byte("from the host")); err != nil {
		t.Fatal(err)
	}
	if got := s.readN(13); string(got) != "from the host" {
		t.Fatalf("guest read %q", got)
	}
	// The guest closes: the host reads EOF and answers RST.
	s.write([]byte("last words"))
	s.shutdown(shutdownBoth)
	all, err := io.ReadAll(c)
	if err != nil || string(all) != "last words" {
		t.Fatalf("ReadAll %q, %v", all, err)
	}
	s.waitState("the host's RST", func(s *gsock) bool { return s.reset })
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrBrokenPipe) || !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write to a guest that closed: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after the guest closed: %v", err)
	}
	if n := streamCount(dev); n != 0 {
		t.Errorf("%d streams left", n)
	}
	// No listener: the guest's connect is reset.
	if s := g.connect(2001); s.connected || !s.reset {
		t.Error("connect to a port nobody listens on was not reset")
	}
}

// Ten MiB each way through a 16 KiB guest buffer and a 32 KiB host one,
// in 4 KiB packets: both sides' credit runs out again and again.
func TestBulkTransfer(t *testing.T) {
	for _, c := range []struct{ split, eventIdx bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		split := c.split
		t.Run(fmt.Sprintf("rxSplit=%v,eventIdx=%v", split, c.eventIdx), func(t *testing.T) {
			dev, g := setup(t, Options{BufferSize: 32 << 10}, guestOpts{bufAlloc: 16 << 10, rxSplit: split, seed: 3, eventIdx: c.eventIdx})
			if g.rxq.EventIdx != c.eventIdx {
				t.Fatalf("event indices negotiated: %v, want %v", g.rxq.EventIdx, c.eventIdx)
			}
			ln := g.listen(3000)
			c := dial(t, dev, 3000)
			s := g.accept(ln)
			const size = 10 << 20

			toGuest := randomBytes(size, 1)
			done := make(chan error, 1)
			go func() {
				n, err := c.Write(toGuest)
				if err == nil && n != size {
					err = fmt.Errorf("short write %d", n)
				}
				done <- err
			}()
			got := s.readN(size)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(toGuest) {
				t.Fatal("host → guest data differs")
			}
			dev.mu.Lock()
			stalls := c.stalls
			dev.mu.Unlock()
			if stalls == 0 {
				t.Error("the host writer never waited for credit")
			}

			toHost := randomBytes(size, 2)
			s.write(toHost)
			s.shutdown(VIRTIO_VSOCK_SHUTDOWN_SEND)
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil || n != size {
				t.Fatalf("host read %d bytes, %v", n, err)
			}
			if [32]byte(h.Sum(nil)) != sha256.Sum256(toHost) {
				t.Fatal("guest → host data differs")
			}
			if g.opCount(VIRTIO_VSOCK_OP_CREDIT_UPDATE) == 0 {
				t.Error("the host never sent a credit update")
			}
			c.Close()
			eventually(t, "the stream to close", func() bool { return streamCount(dev) == 0 })
		})
	}
}

// A guest buffer smaller than an rx buffer: only the credit bounds the
// packets, and the host never sends past it.
func TestCreditRespected(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{bufAlloc: 1000})
	ln := g.listen(3100)
	c := dial(t, dev, 3100)
	s := g.accept(ln)
	data := randomBytes(100<<10, 5)
	go c.Write(data)
	if got := s.readN(len(data)); !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	g.mu.Lock()
	maxRW := g.maxRW
	g.mu.Unlock()
	if maxRW > 1000 {
		t.Errorf("a %d-byte packet against 1000 bytes of credit", maxRW)
	}
}

// Fifty streams at once, half from each side, their traffic interleaved.
func TestManyConns(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{qsize: 128, seed: 9})
	ln := g.listen(4000)
	l, err := dev.Listen(4001)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	const perConn = 64 << 10
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 25; i++ {
		c := dial(t, dev, 4000)
		go echo(g.accept(ln))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := randomBytes(perConn, uint64(100+i))
			go func() {
				r := rand.New(rand.NewPCG(uint64(i), 0))
				for off := 0; off < perConn; {
					n := min(1+r.IntN(8192), perConn-off)
					if _, err := c.Write(data[off : off+n]); err != nil {
						errs <- err
						return
					}
					off += n
				}
			}()
			got := make([]byte, perConn)
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("host stream %d: %v", i, err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("host stream %d: data differs", i)
			}
			c.Close()
		}(i)
	}
	for i := 0; i < 25; i++ {
		s := g.connect(4001)
		if !s.connected {
			t.Fatal("guest connect refused")
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := randomBytes(perConn, uint64(200+i))
			for off := 0; off < perConn; off += 4096 {
				s.write(data[off : off+4096])
			}
			if got := s.readN(perConn); !bytes.Equal(got, data) {
				errs <- fmt.Errorf("guest stream %d: data differs", i)
			}
			s.shutdown(shutdownBoth)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "every stream to close", func() bool { return streamCount(dev) == 0 })
	l.Close()
}

func TestDialRefused(t *testing.T) {
	dev, _ := setup(t, Options{}, guestOpts{})
	start := time.Now()
	_, err := dev.Dial(ctxTimeout(t, 30*time.Second), 4444)
	if !errors.Is(err, ErrConnRefused) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial to a closed port: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("refusal took %v", time.Since(start))
	}
	t.Log(err)
	if n := streamCount(dev); n != 0 {
		t.Errorf("%d streams left", n)
	}
}

func TestDialTimeout(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	g.mu.Lock()
	g.blackhole[5555] = true
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := dev.Dial(ctx, 5555)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a guest that does not answer: %v", err)
	}
	// The guest heard the REQUEST, so it is told the stream is off.
	g.waitRst(1024, 5555)
	eventually(t, "the stream to leave the table", func() bool { return streamCount(dev) == 0 })
}

func TestDialWaitsForDriver(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	g.halt()
	g.drv.SetReg(virtio.Status, 0) // the guest reboots
	g.listen(6000)
	done := make(chan error, 1)
	go func() {
		c, err := dev.Dial(context.Background(), 6000)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	g.boot()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dial did not complete once the driver came up")
	}
}

func TestHalfClose(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	ln := g.listen(6000)
	c := dial(t, dev, 6000)
	s := g.accept(ln)

	// Host → guest closed; guest → host still flows.
	c.Write([]byte("abc"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := s.readN(3); string(got) != "abc" {
		t.Fatalf("guest read %q", got)
	}
	if _, err := s.read(make([]byte, 1)); err != errGuestEOF {
		t.Fatalf("guest read after SHUTDOWN: %v", err)
	}
	s.waitState("SHUTDOWN(SEND)", func(s *gsock) bool { return s.peerShut == VIRTIO_VSOCK_SHUTDOWN_SEND })
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after CloseWrite: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Errorf("second CloseWrite: %v", err)
	}
	s.write([]byte("xyz"))
	s.shutdown(VIRTIO_VSOCK_SHUTDOWN_SEND)
	all, err := io.ReadAll(c)
	if err != nil || string(all) != "xyz" {
		t.Fatalf("host ReadAll %q, %v", all, err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("Read after EOF: %v", err)
	}
	// Both halves are shut; Close finishes the handshake.
	c.Close()
	eventually(t, "the stream to close", func() bool { return streamCount(dev) == 0 })

	// The other way round: the guest stops sending first.
	c = dial(t, dev, 6000)
	s = g.accept(ln)
	s.shutdown(VIRTIO_VSOCK_SHUTDOWN_SEND)
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("host Read after the guest's SHUTDOWN(SEND): %v", err)
	}
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := s.readN(10); string(got) != "still here" {
		t.Fatalf("guest read %q", got)
	}
	// The guest stops receiving too: a Write fails, the guest gets RST.
	s.shutdown(VIRTIO_VSOCK_SHUTDOWN_RCV)
	s.waitState("the host's RST", func(s *gsock) bool { return s.reset })
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrBrokenPipe) {
		t.Errorf("Write after the guest's SHUTDOWN(RCV): %v", err)
	}
	c.Close()
}

func TestCreditViolation(t *testing.T) {
	dev, g := setup(t, Options{BufferSize: 8192}, guestOpts{})
	l, err := dev.Listen(7000)
	if err != nil {
		t.Fatal(err)
	}
	good := g.connect(7000)
	goodConn, _ := l.Accept()
	bad := g.connect(7000)
	badConn, _ := l.Accept()

	// Within the credit, then one byte past it.
	h := g.rawHeader(bad.local, 7000, VIRTIO_VSOCK_OP_RW, 6000)
	g.sendRaw(encodePacket(h, bytes.Repeat([]byte{'a'}, 6000)))
	h.len = 2193
	var hb [HeaderSize]byte
	h.encode(hb[:])
	g.sendRaw(hb[:], bytes.Repeat([]byte{'b'}, 2193))
	bad.waitState("the host's RST", func(s *gsock) bool { return s.reset })
	badConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(badConn)
	if len(got) != 6000 || !errors.Is(err, ErrProtocol) || !errors.Is(err, syscall.EPROTO) {
		t.Fatalf("read %d bytes, %v; want the 6000 granted and a protocol error", len(got), err)
	}
	t.Log(err)

	// The other stream carries on.
	good.write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(goodConn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("healthy stream: %q, %v", buf, err)
	}
	goodConn.Write([]byte("pong"))
	if got := good.readN(4); string(got) != "pong" {
		t.Fatalf("healthy stream: %q", got)
	}
}

// Broken packets are dropped or answered with RST; the device carries on.
func TestBadPackets(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	l, err := dev.Listen(8000)
	if err != nil {
		t.Fatal(err)
	}
	good := g.connect(8000)
	goodConn, _ := l.Accept()
	victim := g.connect(8000)
	victimConn, _ := l.Accept()
	victim2 := g.connect(8000)
	victimConn2, _ := l.Accept()

	hdr := func(h header) []byte { var b [HeaderSize]byte; h.encode(b[:]); return b[:] }
	rsts := g.rstCount()
	wantRst := func(what string, n int) {
		t.Helper()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.waitLocked(what, func() bool { return len(g.rsts) >= rsts+n })
		rsts += n
	}

	// Dropped silently: shorter than a header, an empty buffer, a
	// forged source CID.
	g.sendRaw(make([]byte, 20))
	g.sendRaw([]byte{})
	h := g.rawHeader(50000, 8000, VIRTIO_VSOCK_OP_REQUEST, 0)
	h.srcCID = 9
	g.sendRaw(hdr(h))

	// Answered with RST: another destination CID, another type, an
	// unknown op, a length past the buffer or the limit, a stray packet.
	h = g.rawHeader(50001, 8000, VIRTIO_VSOCK_OP_REQUEST, 0)
	h.dstCID = 7
	g.sendRaw(hdr(h))
	wantRst("RST for another CID", 1)
	h = g.rawHeader(50002, 8000, VIRTIO_VSOCK_OP_REQUEST, 0)
	h.typ = VIRTIO_VSOCK_TYPE_SEQPACKET
	g.sendRaw(hdr(h))
	wantRst("RST for SEQPACKET", 1)
	g.sendRaw(hdr(g.rawHeader(50003, 8000, 42, 0)))
	wantRst("RST for op 42", 1)
	g.sendRaw(hdr(g.rawHeader(50004, 8000, VIRTIO_VSOCK_OP_RW, 100)), make([]byte, 10))
	wantRst("RST for a length past the buffer", 1)
	g.sendRaw(hdr(g.rawHeader(50005, 8000, VIRTIO_VSOCK_OP_RW, 1<<30)))
	wantRst("RST for a huge length", 1)
	g.sendRaw(hdr(g.rawHeader(50006, 9999, VIRTIO_VSOCK_OP_REQUEST, 0)))
	wantRst("RST for a closed port", 1)
	g.sendRaw(hdr(g.rawHeader(50007, 8000, VIRTIO_VSOCK_OP_RST, 0)))

	// On a live stream, a broken packet resets that stream only.
	g.sendRaw(hdr(g.rawHeader(victim.local, 8000, 0, 0)))
	if _, err := victimConn.Read(make([]byte, 1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("stream after an INVALID op: %v", err)
	}
	victim.waitState("RST", func(s *gsock) bool { return s.reset })
	g.sendRaw(hdr(g.rawHeader(victim2.local, 8000, VIRTIO_VSOCK_OP_RW, maxPayload+1)), make([]byte, maxPayload+1))
	if _, err := victimConn2.Read(make([]byte, 1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("stream after an oversized packet: %v", err)
	}
	victim2.waitState("RST", func(s *gsock) bool { return s.reset })

	good.write([]byte("still fine"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(goodConn, buf); err != nil || string(buf) != "still fine" {
		t.Fatalf("healthy stream: %q, %v", buf, err)
	}
	if n := streamCount(dev); n != 1 {
		t.Errorf("%d streams, want the healthy one", n)
	}
	if d := g.drv.Reg(virtio.Status); d&virtio.DEVICE_NEEDS_RESET != 0 {
		t.Error("bad packets broke the device")
	}
}

// A driver that breaks the tx queue stops the device; the host sees it.
func TestQueueViolation(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	ln := g.listen(1)
	c := dial(t, dev, 1)
	g.accept(ln)
	g.halt()
	dev.memMu.Lock()
	g.txq.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 0})
	g.txq.Publish(0)
	dev.memMu.Unlock()
	g.txq.Kick()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrDeviceFailed) {
		t.Fatalf("Read on a broken device: %v", err)
	}
	if !g.drv.MMIO.NeedsReset() {
		t.Error("device not marked DEVICE_NEEDS_RESET")
	}
	if _, err := dev.Dial(context.Background(), 1); !errors.Is(err, ErrDeviceFailed) {
		t.Errorf("Dial on a broken device: %v", err)
	}
	// The guest resets the device and it works again.
	g.boot()
	c = dial(t, dev, 1)
	c.Close()
}

// goroutines returns the count once it stops falling, up to a deadline.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want %d:\n%s", runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockedIO starts the kinds of call that block and reports their errors.
type blockedIO struct {
	read, write, dial chan error
	wrote             chan int
	tail              *Conn // holds data from the guest the host has not read
}

func startBlockedIO(t *testing.T, dev *Device, g *guest) (*blockedIO, *Listener) {
	t.Helper()
	b := &blockedIO{read: make(chan error, 1), write: make(chan error, 1), dial: make(chan error, 1), wrote: make(chan int, 1)}
	ln := g.listen(100)
	g.mu.Lock()
	g.blackhole[101] = true
	g.mu.Unlock()
	reader := dial(t, dev, 100)
	g.accept(ln)
	writer := dial(t, dev, 100)
	g.accept(ln) // never reads: the writer runs out of credit
	go func() {
		_, err := reader.Read(make([]byte, 10))
		b.read <- err
	}()
	go func() {
		n, err := writer.Write(make([]byte, 1<<20))
		b.wrote <- n
		b.write <- err
	}()
	go func() {
		_, err := dev.Dial(context.Background(), 101)
		b.dial <- err
	}()
	// A guest stream with data the host has not read.
	l, err := dev.Listen(102)
	if err != nil {
		t.Fatal(err)
	}
	s := g.connect(102)
	tc, _ := l.Accept()
	s.write([]byte("tail"))
	eventually(t, "the tail to arrive", func() bool {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return tc.(*Conn).rx.len() == 4
	})
	eventually(t, "the writer to stall", func() bool {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return writer.stalls > 0
	})
	time.Sleep(10 * time.Millisecond) // let the reader and dialer block
	b.tail = tc.(*Conn)
	return b, l
}

func (b *blockedIO) check(t *testing.T, want error, tailData string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for name, ch := range map[string]chan error{"Read": b.read, "Write": b.write, "Dial": b.dial} {
		select {
		case err := <-ch:
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", name, err, want)
			}
		case <-timeout:
			t.Fatalf("%s still blocked", name)
		}
	}
	if n := <-b.wrote; n <= 0 || n >= 1<<20 {
		t.Errorf("blocked Write wrote %d", n)
	}
	b.tail.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(b.tail); string(got) != tailData || !errors.Is(err, want) {
		t.Errorf("buffered data %q then %v, want %q then %v", got, err, tailData, want)
	}
}

// A driver reset (the guest reboots) fails every pending call promptly,
// keeps the data already received readable, leaks nothing, and the device
// works again after the reboot.
func TestDeviceReset(t *testing.T) {
	base := runtime.NumGoroutine()
	dev, err := New(testCID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, dev, guestOpts{bufAlloc: 4096})
	b, l := startBlockedIO(t, dev, g)
	g.halt()
	g.drv.SetReg(virtio.Status, 0)
	b.check(t, ErrDeviceReset, "tail")
	if n := streamCount(dev); n != 0 {
		t.Errorf("%d streams after reset", n)
	}
	// Listeners outlive the reboot.
	g.boot()
	s := g.connect(102)
	if !s.connected {
		t.Fatal("listener gone after the reboot")
	}
	c, _ := l.Accept()
	c.Close()
	c = dial(t, dev, 100)
	c.Close()
	eventually(t, "streams to close", func() bool { return streamCount(dev) == 0 })
	l.Close()
	g.halt()
	dev.Close()
	g.drv.MMIO.Close()
	waitGoroutines(t, base)
}

// Device.Close resets every stream with net.ErrClosed and tells the guest.
func TestDeviceClose(t *testing.T) {
	base := runtime.NumGoroutine()
	dev, err := New(testCID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGuest(t, dev, guestOpts{bufAlloc: 4096})
	b, l := startBlockedIO(t, dev, g)
	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	rsts := g.rstCount()
	dev.Close()
	b.check(t, net.ErrClosed, "")
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked")
	}
	// RSTs for the reader, the writer and the guest's stream (the
	// dialer's REQUEST went to a port that ignores it, and gets one too).
	g.mu.Lock()
	g.waitLocked("RSTs", func() bool { return len(g.rsts) >= rsts+4 })
	g.mu.Unlock()
	eventually(t, "streams to leave", func() bool { return streamCount(dev) == 0 })
	if s := g.connect(102); s.connected {
		t.Error("connect after Close succeeded")
	}
	g.halt()
	g.drv.MMIO.Close()
	waitGoroutines(t, base)
}

// A transport reset fails the host's streams and tells the guest, whose
// listeners stay; ResetSettled waits until the guest has handled it, with
// and without VIRTIO_F_EVENT_IDX (under which the driver notifies only
// when asked).
func TestTransportReset(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(fmt.Sprintf("event_idx=%v", eventIdx), func(t *testing.T) { testTransportReset(t, eventIdx) })
	}
}

func testTransportReset(t *testing.T, eventIdx bool) {
	dev, g := setup(t, Options{}, guestOpts{eventIdx: eventIdx})
	ln := g.listen(9000)
	c := dial(t, dev, 9000)
	g.accept(ln)
	l, _ := dev.Listen(9001)
	select {
	case <-dev.ResetSettled():
	default:
		t.Error("ResetSettled is open before any reset")
	}
	g.mu.Lock() // the guest holds off the event
	dev.TransportReset()
	settled := dev.ResetSettled()
	select {
	case <-settled:
		t.Error("ResetSettled is closed before the guest took the event")
	default:
	}
	g.mu.Unlock()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrTransportReset) {
		t.Errorf("Read after a transport reset: %v", err)
	}
	g.mu.Lock()
	g.waitLocked("the event", func() bool { return len(g.events) == 1 })
	if g.events[0] != VIRTIO_VSOCK_EVENT_TRANSPORT_RESET {
		t.Errorf("event %d", g.events[0])
	}
	g.mu.Unlock()
	// The guest reset its sockets and posted the buffer again.
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("ResetSettled still open after the guest handled the event and posted a new buffer")
	}
	if s := g.connect(9001); !s.connected {
		t.Error("listener gone after a transport reset")
	}
	c2, _ := l.Accept()
	c2.Close()
}

// Deadlines are set on calls known to be blocked, and wall-clock checks
// are lower bounds only, so that a loaded machine cannot fail the test.
func TestDeadlines(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{bufAlloc: 16 << 10})
	ln := g.listen(10)
	c := dial(t, dev, 10)
	s := g.accept(ln)
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
	}
	type result struct {
		n   int
		err error
	}
	read := func() chan result {
		ch := make(chan result, 1)
		go func() {
			buf := make([]byte, 1)
			n, err := c.Read(buf)
			if n == 1 && buf[0] != 'y' {
				err = fmt.Errorf("read %q", buf)
			}
			ch <- result{n, err}
		}()
		return ch
	}
	wait := func(ch chan result) result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("call still blocked")
			return result{}
		}
	}

	// A deadline that passes while Read waits.
	start := time.Now()
	c.SetReadDeadline(start.Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("Read past its deadline: %v", err)
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Error("Read timed out early")
	}
	// A deadline in the past fails at once, data or not.
	s.write([]byte("x"))
	eventually(t, "data", func() bool { dev.mu.Lock(); defer dev.mu.Unlock(); return c.rx.len() == 1 })
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("Read with a past deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// Extending the deadline of a blocked Read leaves it blocked.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	ch := read()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(2 * time.Hour))
	time.Sleep(20 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("Read returned %v when its deadline moved later", r.err)
	default:
	}
	s.write([]byte("y"))
	if r := wait(ch); r.err != nil || r.n != 1 {
		t.Fatalf("Read after the deadline moved: %d, %v", r.n, r.err)
	}
	// Moving it to now wakes a blocked Read with a timeout.
	ch = read()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	if r := wait(ch); !isTimeout(r.err) {
		t.Fatalf("Read after the deadline moved to now: %v", r.err)
	}
	c.SetReadDeadline(time.Time{})

	// A Write with a past deadline sends nothing.
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if n, err := c.Write([]byte("z")); n != 0 || !isTimeout(err) {
		t.Fatalf("Write with a past deadline: %d, %v", n, err)
	}
	// A Write blocked for credit times out having sent what fitted.
	c.SetWriteDeadline(time.Time{})
	data := randomBytes(1<<20, 4)
	wch := make(chan result, 1)
	go func() {
		n, err := c.Write(data)
		wch <- result{n, err}
	}()
	eventually(t, "the writer to run out of credit", func() bool {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return c.wrote == 16<<10 && c.stalls > 0
	})
	c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	r := wait(wch)
	if !isTimeout(r.err) || r.n != 16<<10 {
		t.Fatalf("Write past its deadline: %d, %v; want the 16 KiB of credit", r.n, r.err)
	}
	c.SetDeadline(time.Time{})
	go func() { c.Write(data[r.n:]) }()
	if got := s.readN(1 << 20); !bytes.Equal(got, data) {
		t.Fatal("data after the timed-out Write differs")
	}
}

// A clean close the guest never answers ends with our RST.
func TestCloseTimeout(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	dev.mu.Lock()
	dev.closeTimeout = 50 * time.Millisecond
	dev.mu.Unlock()
	ln := g.listen(11)
	c := dial(t, dev, 11)
	g.accept(ln)
	g.halt() // buffers stay posted; nobody answers
	start := time.Now()
	c.Close()
	eventually(t, "the stream to leave", func() bool { return streamCount(dev) == 0 })
	if time.Since(start) < 40*time.Millisecond {
		t.Error("the stream left before the close timeout")
	}
}

func TestLimits(t *testing.T) {
	dev, g := setup(t, Options{MaxConns: 2, Backlog: 1}, guestOpts{})
	ln := g.listen(12)
	c1 := dial(t, dev, 12)
	c2 := dial(t, dev, 12)
	if _, err := dev.Dial(context.Background(), 12); !errors.Is(err, ErrTooManyConns) {
		t.Errorf("third Dial: %v", err)
	}
	g.accept(ln)
	g.accept(ln)
	l, _ := dev.Listen(13)
	if s := g.connect(13); s.connected {
		t.Error("guest connected past MaxConns")
	}
	c1.Close()
	c2.Close()
	eventually(t, "streams to close", func() bool { return streamCount(dev) == 0 })
	if s := g.connect(13); !s.connected {
		t.Error("first connection refused")
	}
	if s := g.connect(13); s.connected {
		t.Error("connection past the backlog accepted")
	}
	c, _ := l.Accept()
	// Closing the listener resets what it has not accepted; accepted
	// streams live on.
	if s := g.connect(13); !s.connected {
		t.Error("connection refused with room in the backlog")
	} else {
		l.Close()
		s.waitState("RST", func(s *gsock) bool { return s.reset })
	}
	c.Write([]byte("ok"))
	c.Close()
}

// A guest that sends one small packet at a time gets one interrupt per
// txIRQBatch completions, not one per packet: it needs them only to
// reclaim its buffers.
func TestTxInterruptBatching(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	dev.txIRQDelay = time.Hour // only the batch bound counts here
	s, c := guestConnect(t, dev, g, 3100)
	const packets = 10 * txIRQBatch
	before := dev.irqCount.Load()
	buf := make([]byte, 10)
	for i := range packets {
		s.write([]byte(fmt.Sprintf("packet%04d", i)))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != fmt.Sprintf("packet%04d", i) {
			t.Fatalf("packet %d: read %q, %v", i, buf, err)
		}
	}
	if irqs := dev.irqCount.Load() - before; irqs > packets/txIRQBatch+1 {
		t.Errorf("%d interrupts for %d tx completions: want at most %d", irqs, packets, packets/txIRQBatch+1)
	}
}

// Completions fewer than a batch still get their interrupt, txIRQDelay
// later.
func TestTxInterruptDelay(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	s, c := guestConnect(t, dev, g, 3101)
	time.Sleep(10 * txIRQDelay) // the handshake's interrupts are out
	before := dev.irqCount.Load()
	s.write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for dev.irqCount.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the tx completion's interrupt never came")
		}
		time.Sleep(time.Millisecond)
	}
	dev.mu.Lock()
	w := dev.w
	dev.mu.Unlock()
	dev.memMu.Lock()
	owed := w.txOwed
	dev.memMu.Unlock()
	if owed != 0 {
		t.Errorf("%d completions still owed an interrupt", owed)
	}
}
