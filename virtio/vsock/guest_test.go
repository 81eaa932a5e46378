package vsock

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// A guest is the guest side of the tests: a virtio driver (through
// virtiotest) and a small vsock transport in the manner of Linux's
// virtio_transport, with sockets the tests drive. Its loop runs on its own
// goroutine and touches the rings only under the device's memMu, which
// stands in for the barriers a real driver uses.

type guestOpts struct {
	qsize    uint16 // rx and tx queue size
	rxBuf    int    // payload bytes per rx buffer
	rxSplit  bool   // header and payload in separate rx descriptors
	bufAlloc uint32 // guest sockets' receive buffer
	txMax    int    // largest payload the guest sends in one packet
	seed     uint64
	// loseKicks makes the guest publish buffers without notifying the
	// device, as if every notification were lost.
	loseKicks *atomic.Bool
	// eventIdx has the transport offer VIRTIO_F_EVENT_IDX (the guest
	// accepts everything offered).
	eventIdx bool
	// irqHook runs on each interrupt the device raises, on the device's
	// goroutine.
	irqHook func()
}

func (o *guestOpts) defaults() {
	if o.qsize == 0 {
		o.qsize = 64
	}
	if o.rxBuf == 0 {
		o.rxBuf = 4096
	}
	if o.bufAlloc == 0 {
		o.bufAlloc = 64 << 10
	}
	if o.txMax == 0 {
		o.txMax = 4096
	}
}

const (
	txDescBuf  = HeaderSize + maxPayload + 64 // room for any piece of a tx packet
	evBufSize  = 8
	evBuffers  = 4
	guestWait  = 10 * time.Second
	guestPort0 = 40000
)

type rxSlot struct {
	head       uint16
	addr, size []uint64 // one or two descriptors
}

type guest struct {
	t   testing.TB
	dev *Device
	drv *virtiotest.Driver
	cid uint32
	o   guestOpts
	irq chan struct{}

	// Ring state, used under dev.memMu by boot and the loop.
	rxq, txq, evq *virtiotest.DriverQueue
	rx            []rxSlot
	rxByHead      map[uint16]int
	txAddr        []uint64 // each tx descriptor's buffer
	txFree        []uint16
	txChains      map[uint16][]uint16
	evAddr        []uint64
	rng           *rand.Rand

	// mu guards the guest's sockets and queues. Lock order: dev.memMu, mu.
	mu        sync.Mutex
	cond      *sync.Cond
	socks     map[gkey]*gsock
	listeners map[uint32]chan *gsock
	blackhole map[uint32]bool // ports whose REQUESTs are ignored
	out       []gpacket       // packets waiting for tx descriptors
	events    []uint32
	ops       map[uint16]int // packets received, by op
	rsts      []header       // RSTs received
	maxRW     int            // largest RW payload received
	nextPort  uint32
	halted    bool // the loop is stopped: waits give up

	wake       chan struct{}
	stop, done chan struct{}
}

type gkey struct{ local, peer uint32 }

// gpacket is a tx packet: its bytes, or explicit descriptor pieces.
type gpacket struct {
	bytes  []byte
	pieces [][]byte
}

// gsock is a guest socket.
type gsock struct {
	g           *guest
	local, peer uint32
	// Guarded by g.mu.
	reqSent, connected, reset, gone bool
	sendReq, sendResp, sendCredit   bool
	sendRst                         bool
	in                              []byte
	out                             []byte
	fwdCnt, lastFwdSent             uint32
	txCnt, peerBufAlloc, peerFwdCnt uint32
	peerShut, localShut, shutSent   uint32
	received                        uint32 // bytes of RW payload, free running
}

func newGuest(t testing.TB, dev *Device, o guestOpts) *guest {
	t.Helper()
	o.defaults()
	g := &guest{
		t: t, dev: dev, cid: dev.CID(), o: o,
		irq:       make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		listeners: make(map[uint32]chan *gsock),
		blackhole: make(map[uint32]bool),
		ops:       make(map[uint16]int),
		nextPort:  guestPort0,
		rng:       rand.New(rand.NewPCG(o.seed, 7)),
	}
	g.cond = sync.NewCond(&g.mu)
	g.drv = virtiotest.New(t, dev, 32<<20)
	g.drv.MMIO = virtio.NewMMIO(dev, g.drv.Mem, g.interrupt, nil)
	if o.eventIdx {
		g.drv.MMIO.OfferEventIdx()
	}
	// Buffers live as long as the guest; rings are new on each boot.
	n := int(o.qsize)
	chains := n
	if o.rxSplit {
		chains = n / 2
	}
	for i := 0; i < chains; i++ {
		var s rxSlot
		if o.rxSplit {
			s.head = uint16(2 * i)
			s.addr = []uint64{g.drv.Alloc(HeaderSize, 8), g.drv.Alloc(uint64(o.rxBuf), 8)}
			s.size = []uint64{HeaderSize, uint64(o.rxBuf)}
		} else {
			s.head = uint16(i)
			s.addr = []uint64{g.drv.Alloc(uint64(HeaderSize+o.rxBuf), 8)}
			s.size = []uint64{uint64(HeaderSize + o.rxBuf)}
		}
		g.rx = append(g.rx, s)
	}
	for i := 0; i < n; i++ {
		g.txAddr = append(g.txAddr, g.drv.Alloc(txDescBuf, 8))
	}
	for i := 0; i < evBuffers; i++ {
		g.evAddr = append(g.evAddr, g.drv.Alloc(evBufSize, 8))
	}
	g.boot()
	t.Cleanup(func() {
		g.halt()
		dev.Close()
		g.drv.MMIO.Close()
	})
	return g
}

// interrupt is the transport's interrupt line.
func (g *guest) interrupt() {
	if g.o.irqHook != nil {
		g.o.irqHook()
	}
	g.drv.IRQ()
	select {
	case g.irq <- struct{}{}:
	default:
	}
}

// boot initialises the driver, posts every rx and event buffer and starts
// the loop. Guest sockets from before are gone.
func (g *guest) boot() {
	g.t.Helper()
	g.drv.Init(^uint64(0), g.o.qsize)
	g.dev.memMu.Lock()
	g.rxq, g.txq, g.evq = g.drv.Queues[rxQueue], g.drv.Queues[txQueue], g.drv.Queues[eventQueue]
	g.rxByHead = make(map[uint16]int)
	for i, s := range g.rx {
		for k := range s.addr {
			d := virtiotest.Desc{Addr: s.addr[k], Len: uint32(s.size[k]), Flags: virtio.VIRTQ_DESC_F_WRITE}
			if k+1 < len(s.addr) {
				d.Flags |= virtio.VIRTQ_DESC_F_NEXT
				d.Next = s.head + uint16(k) + 1
			}
			g.rxq.WriteDesc(s.head+uint16(k), d)
		}
		g.rxByHead[s.head] = i
		g.rxq.Publish(s.head)
	}
	for i, a := range g.evAddr {
		g.evq.WriteDesc(uint16(i), virtiotest.Desc{Addr: a, Len: evBufSize, Flags: virtio.VIRTQ_DESC_F_WRITE})
		g.evq.Publish(uint16(i))
	}
	g.txFree = g.txFree[:0]
	for i := uint16(0); i < g.o.qsize; i++ {
		g.txFree = append(g.txFree, i)
	}
	g.txChains = make(map[uint16][]uint16)
	kickRx, kickEv := g.rxq.KickPrepare(), g.evq.KickPrepare()
	g.dev.memMu.Unlock()
	g.mu.Lock()
	g.socks = make(map[gkey]*gsock)
	g.out = nil
	g.halted = false
	g.mu.Unlock()
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go g.loop(g.stop, g.done)
	if kickRx {
		g.rxq.Notify()
	}
	if kickEv {
		g.evq.Notify()
	}
}

// halt stops the guest's loop (a guest that froze); the device is not
// told.
func (g *guest) halt() {
	if g.stop == nil {
		return
	}
	close(g.stop)
	<-g.done
	g.stop = nil
	g.mu.Lock()
	g.halted = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *guest) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *guest) loop(stop, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(20 * time.Millisecond) // lets waiters check their deadlines
	defer tick.Stop()
	for {
		g.dev.memMu.Lock()
		g.mu.Lock()
		kickRx, kickTx, kickEv := g.serviceLocked()
		g.cond.Broadcast()
		g.mu.Unlock()
		// As Linux does: decide under the ring's lock whether the
		// device asked to be notified (avail_event), notify outside.
		kickRx = kickRx && g.rxq.KickPrepare()
		kickTx = kickTx && g.txq.KickPrepare()
		kickEv = kickEv && g.evq.KickPrepare()
		g.dev.memMu.Unlock()
		if g.o.loseKicks != nil && g.o.loseKicks.Load() {
			kickRx, kickTx, kickEv = false, false, false
		}
		if kickRx {
			g.rxq.Notify()
		}
		if kickTx {
			g.txq.Notify()
		}
		if kickEv {
			g.evq.Notify()
		}
	wait:
		for {
			select {
			case <-stop:
				return
			case <-g.irq:
				break wait
			case <-g.wake:
				break wait
			case <-tick.C: // only wake waiters: rings are read after interrupts
				g.mu.Lock()
				g.cond.Broadcast()
				g.mu.Unlock()
			}
		}
	}
}

// serviceLocked takes used buffers, handles received packets and publishes
// packets to send.
func (g *guest) serviceLocked() (kickRx, kickTx, kickEv bool) {
	for _, u := range g.rxq.TakeUsed() {
		i, ok := g.rxByHead[uint16(u.ID)]
		if !ok {
			g.t.Errorf("guest: used rx id %d is no chain head", u.ID)
			continue
		}
		s := g.rx[i]
		var p []byte
		left := uint64(u.Len)
		for k := range s.addr {
			n := min(left, s.size[k])
			p = append(p, g.drv.Mem.B[s.addr[k]:s.addr[k]+n]...)
			left -= n
		}
		if left != 0 {
			g.t.Errorf("guest: used length %d is more than the buffer", u.Len)
		}
		g.recvLocked(p)
		g.rxq.Publish(s.head)
		kickRx = true
	}
	for _, u := range g.txq.TakeUsed() {
		descs, ok := g.txChains[uint16(u.ID)]
		if !ok {
			g.t.Errorf("guest: used tx id %d was not published", u.ID)
			continue
		}
		delete(g.txChains, uint16(u.ID))
		g.txFree = append(g.txFree, descs...)
	}
	for _, u := range g.evq.TakeUsed() {
		if u.Len >= 4 {
			ev := binary.LittleEndian.Uint32(g.drv.Mem.B[g.evAddr[u.ID]:])
			g.events = append(g.events, ev)
			if ev == VIRTIO_VSOCK_EVENT_TRANSPORT_RESET {
				// As Linux: connected sockets are reset, listening
				// ones stay.
				for k, s := range g.socks {
					s.reset, s.gone = true, true
					delete(g.socks, k)
				}
			}
		}
		g.evq.Publish(uint16(u.ID))
		kickEv = true
	}
	g.generateLocked()
	for len(g.out) > 0 {
		if !g.publishLocked(g.out[0]) {
			break
		}
		g.out = g.out[1:]
		kickTx = true
	}
	return kickRx, kickTx, kickEv
}

// publishLocked puts one packet on the tx queue, split across descriptors
// in one of several ways, or reports that there are not enough free.
func (g *guest) publishLocked(p gpacket) bool {
	pieces := p.pieces
	if pieces == nil {
		b := p.bytes
		switch mode := g.rng.IntN(4); {
		case mode == 1 && len(b) > HeaderSize: // header, payload
			pieces = [][]byte{b[:HeaderSize], b[HeaderSize:]}
		case mode == 2: // the header itself split
			k := 1 + g.rng.IntN(HeaderSize-1)
			pieces = [][]byte{b[:k], b[k:]}
		case mode == 3 && len(b) > HeaderSize+1: // header, payload in two
			k := HeaderSize + 1 + g.rng.IntN(len(b)-HeaderSize-1)
			pieces = [][]byte{b[:HeaderSize], b[HeaderSize:k], b[k:]}
		default: // one buffer, as newer Linux
			pieces = [][]byte{b}
		}
	}
	if len(pieces) > len(g.txFree) {
		return false
	}
	descs := append([]uint16(nil), g.txFree[:len(pieces)]...)
	g.txFree = g.txFree[len(pieces):]
	for k, piece := range pieces {
		if len(piece) > txDescBuf {
			g.t.Fatalf("guest: tx piece of %d bytes", len(piece))
		}
		a := g.txAddr[descs[k]]
		copy(g.drv.Mem.B[a:], piece)
		d := virtiotest.Desc{Addr: a, Len: uint32(len(piece))}
		if k+1 < len(pieces) {
			d.Flags = virtio.VIRTQ_DESC_F_NEXT
			d.Next = descs[k+1]
		}
		g.txq.WriteDesc(descs[k], d)
	}
	g.txChains[descs[0]] = descs
	g.txq.Publish(descs[0])
	return true
}

// recvLocked handles a packet from the host, checking that it is well
// formed.
func (g *guest) recvLocked(p []byte) {
	if len(p) < HeaderSize {
		g.t.Errorf("guest: rx packet of %d bytes", len(p))
		return
	}
	h := parseHeader(p)
	payload := p[HeaderSize:]
	// A RST may come from the CID a bad packet was sent to.
	fromHost := h.srcCID == VMADDR_CID_HOST || h.op == VIRTIO_VSOCK_OP_RST
	if !fromHost || h.dstCID != uint64(g.cid) || int(h.len) != len(payload) {
		g.t.Errorf("guest: malformed packet from the host: %+v with %d payload bytes", h, len(payload))
		return
	}
	if h.typ != VIRTIO_VSOCK_TYPE_STREAM && h.op != VIRTIO_VSOCK_OP_RST {
		g.t.Errorf("guest: host sent type %d", h.typ)
	}
	g.ops[h.op]++
	if h.op == VIRTIO_VSOCK_OP_RST {
		g.rsts = append(g.rsts, h)
	}
	k := gkey{h.dstPort, h.srcPort}
	s := g.socks[k]
	if s == nil {
		switch h.op {
		case VIRTIO_VSOCK_OP_REQUEST:
			ch := g.listeners[h.dstPort]
			switch {
			case ch != nil:
				s = &gsock{g: g, local: h.dstPort, peer: h.srcPort, connected: true, sendResp: true,
					peerBufAlloc: h.bufAlloc, peerFwdCnt: h.fwdCnt}
				g.socks[k] = s
				select {
				case ch <- s:
				default:
					g.t.Errorf("guest: listener %d backlog full", h.dstPort)
				}
			case g.blackhole[h.dstPort]:
			default:
				g.rstLocked(h)
			}
		case VIRTIO_VSOCK_OP_RST:
		default:
			g.rstLocked(h)
		}
		return
	}
	s.peerBufAlloc, s.peerFwdCnt = h.bufAlloc, h.fwdCnt
	switch h.op {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if !s.reqSent || s.connected {
			g.t.Errorf("guest: unexpected RESPONSE on %v", k)
		}
		s.connected = true
	case VIRTIO_VSOCK_OP_RST:
		s.reset, s.gone = true, true
		delete(g.socks, k)
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		s.peerShut |= h.flags
		if s.peerShut == shutdownBoth {
			// As Linux: answer the host's close with RST.
			s.sendRst = true
		}
	case VIRTIO_VSOCK_OP_RW:
		if !s.connected {
			g.t.Errorf("guest: RW on %v before it connected", k)
		}
		// The host may have seen an older fwd_cnt than our last,
		// never a newer one: past this it overran our credit.
		s.received += uint32(len(payload))
		if inFlight := s.received - s.lastFwdSent; inFlight > g.o.bufAlloc {
			g.t.Errorf("guest: host has %d bytes in flight against %d of credit", inFlight, g.o.bufAlloc)
		}
		s.in = append(s.in, payload...)
		g.maxRW = max(g.maxRW, len(payload))
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		s.sendCredit = true
	default:
		g.t.Errorf("guest: unexpected %s on %v", opName(h.op), k)
	}
}

func (g *guest) rstLocked(h header) {
	r := header{srcCID: uint64(g.cid), dstCID: VMADDR_CID_HOST, srcPort: h.dstPort, dstPort: h.srcPort,
		typ: VIRTIO_VSOCK_TYPE_STREAM, op: VIRTIO_VSOCK_OP_RST}
	g.out = append(g.out, gpacket{bytes: encodePacket(r, nil)})
}

func encodePacket(h header, payload []byte) []byte {
	h.len = uint32(len(payload))
	b := make([]byte, HeaderSize+len(payload))
	h.encode(b)
	copy(b[HeaderSize:], payload)
	return b
}

// generateLocked turns socket state into packets, respecting the host's
// credit.
func (g *guest) generateLocked() {
	keys := make([]gkey, 0, len(g.socks))
	for k := range g.socks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].local < keys[j].local })
	for _, k := range keys {
		s := g.socks[k]
		emit := func(op uint16, flags uint32, payload []byte) {
			h := header{srcCID: uint64(g.cid), dstCID: VMADDR_CID_HOST, srcPort: s.local, dstPort: s.peer,
				typ: VIRTIO_VSOCK_TYPE_STREAM, op: op, flags: flags, bufAlloc: g.o.bufAlloc, fwdCnt: s.fwdCnt}
			s.lastFwdSent, s.sendCredit = s.fwdCnt, false
			g.out = append(g.out, gpacket{bytes: encodePacket(h, payload)})
		}
		if s.sendReq {
			emit(VIRTIO_VSOCK_OP_REQUEST, 0, nil)
			s.sendReq, s.reqSent = false, true
		}
		if s.sendResp {
			emit(VIRTIO_VSOCK_OP_RESPONSE, 0, nil)
			s.sendResp = false
		}
		if s.sendRst {
			emit(VIRTIO_VSOCK_OP_RST, 0, nil)
			s.gone = true
			delete(g.socks, k)
			continue
		}
		for s.connected && len(s.out) > 0 {
			credit := s.peerBufAlloc - (s.txCnt - s.peerFwdCnt)
			if s.txCnt-s.peerFwdCnt >= s.peerBufAlloc || credit == 0 {
				break
			}
			n := min(len(s.out), g.o.txMax, int(credit))
			emit(VIRTIO_VSOCK_OP_RW, 0, s.out[:n])
			s.out = s.out[n:]
			s.txCnt += uint32(n)
		}
		if s.localShut != s.shutSent && len(s.out) == 0 {
			emit(VIRTIO_VSOCK_OP_SHUTDOWN, s.localShut, nil)
			s.shutSent = s.localShut
		}
		if s.sendCredit {
			emit(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0, nil)
		}
	}
}

// waitLocked waits until cond holds, for up to guestWait.
func (g *guest) waitLocked(what string, cond func() bool) bool {
	deadline := time.Now().Add(guestWait)
	for !cond() {
		if g.halted {
			return false
		}
		if time.Now().After(deadline) {
			g.t.Errorf("guest: timed out waiting for %s", what)
			return false
		}
		g.cond.Wait()
	}
	return true
}

// listen makes the guest accept connections on port.
func (g *guest) listen(port uint32) <-chan *gsock {
	ch := make(chan *gsock, 128)
	g.mu.Lock()
	g.listeners[port] = ch
	g.mu.Unlock()
	return ch
}

// accept waits for a connection on a listen channel.
func (g *guest) accept(ch <-chan *gsock) *gsock {
	g.t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(guestWait):
		g.t.Fatal("guest: no connection to accept")
		return nil
	}
}

// connect connects to the host's port, returning the socket once the
// host answered (connected or reset).
func (g *guest) connect(port uint32) *gsock {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := &gsock{g: g, local: g.nextPort, peer: port, sendReq: true}
	g.nextPort++
	g.socks[gkey{s.local, s.peer}] = s
	g.kick()
	g.waitLocked("a connection", func() bool { return s.connected || s.reset })
	return s
}

// sendRaw queues a packet exactly as the given descriptor pieces.
func (g *guest) sendRaw(pieces ...[]byte) {
	g.mu.Lock()
	g.out = append(g.out, gpacket{pieces: pieces})
	g.mu.Unlock()
	g.kick()
}

// rawHeader is a valid header from the guest, to edit for broken packets.
func (g *guest) rawHeader(srcPort, dstPort uint32, op uint16, payload int) header {
	return header{srcCID: uint64(g.cid), dstCID: VMADDR_CID_HOST, srcPort: srcPort, dstPort: dstPort,
		len: uint32(payload), typ: VIRTIO_VSOCK_TYPE_STREAM, op: op, bufAlloc: g.o.bufAlloc}
}

func (g *guest) opCount(op uint16) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ops[op]
}

func (g *guest) rstCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.rsts)
}

// waitRst waits for a RST from host port to guest port.
func (g *guest) waitRst(hostPort, guestPort uint32) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waitLocked("a RST", func() bool {
		for _, h := range g.rsts {
			if h.srcPort == hostPort && h.dstPort == guestPort {
				return true
			}
		}
		return false
	})
}

func (s *gsock) write(p []byte) {
	g := s.g
	g.mu.Lock()
	s.out = append(s.out, p...)
	g.mu.Unlock()
	g.kick()
}

var errGuestEOF = errors.New("guest: EOF")
var errGuestReset = errors.New("guest: connection reset")

// read reads what has arrived, waiting for something.
func (s *gsock) read(p []byte) (int, error) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.waitLocked("data", func() bool {
		return len(s.in) > 0 || s.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 || s.reset
	}) {
		return 0, errors.New("guest: read timed out")
	}
	if len(s.in) == 0 {
		if s.reset {
			return 0, errGuestReset
		}
		return 0, errGuestEOF
	}
	n := copy(p, s.in)
	s.in = s.in[n:]
	s.fwdCnt += uint32(n)
	if s.fwdCnt-s.lastFwdSent >= g.o.bufAlloc/2 {
		s.sendCredit = true
		g.kick()
	}
	return n, nil
}

// readN reads exactly n bytes, at most 3001 at a time, so that the
// credit it returns is rarely a whole number of packets.
func (s *gsock) readN(n int) []byte {
	buf := make([]byte, n)
	got := 0
	for got < n {
		k, err := s.read(buf[got:min(n, got+3001)])
		if err != nil {
			s.g.t.Errorf("guest read after %d of %d bytes: %v", got, n, err)
			return buf[:got]
		}
		got += k
	}
	return buf
}

// shutdown sends SHUTDOWN with flags (after pending data).
func (s *gsock) shutdown(flags uint32) {
	g := s.g
	g.mu.Lock()
	s.localShut |= flags
	g.mu.Unlock()
	g.kick()
}

// rst aborts the socket.
func (s *gsock) rst() {
	g := s.g
	g.mu.Lock()
	s.sendRst = true
	g.mu.Unlock()
	g.kick()
}

// waitState waits for cond on the socket, under the guest's lock.
func (s *gsock) waitState(what string, cond func(s *gsock) bool) bool {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waitLocked(what, func() bool { return cond(s) })
}
