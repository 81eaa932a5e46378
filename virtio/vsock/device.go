package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// Options configure a Device; zero fields take the defaults.
type Options struct {
	// Logger receives warnings about a misbehaving guest, rate limited;
	// nil discards them.
	Logger *slog.Logger
	// MaxConns bounds the streams in any state, host- and
	// guest-initiated, including ones waiting in a Listener's backlog
	// (default DefaultMaxConns).
	MaxConns int
	// BufferSize is each stream's receive buffer, the buf_alloc the
	// guest sees; host memory held for a stream's unread data never
	// exceeds it (default DefaultBufferSize, at most MaxBufferSize).
	BufferSize int
	// Backlog bounds the guest connections waiting for a Listener's
	// Accept; more are refused with RST (default DefaultBacklog).
	Backlog int
}

// Defaults and limits for Options.
const (
	DefaultMaxConns   = 256
	DefaultBufferSize = 256 << 10
	DefaultBacklog    = 64
	MaxBufferSize     = 64 << 20
)

const (
	queueSize      = 256
	eventQueueSize = 16
	rxQueue        = 0
	txQueue        = 1
	eventQueue     = 2

	// maxReplies bounds the RSTs queued for packets that match no
	// stream; past it tx waits for the guest to take rx buffers.
	maxReplies = 256
	// batch bounds the chains one pass takes from each queue, so that
	// interrupts go out while a stream keeps the worker busy.
	batch = 64
	// passes bounds one wake-up of the worker before it looks for a stop.
	passes = 64
	// txIRQBatch and txIRQDelay bound how long an interrupt for tx
	// completions alone waits: that many completions, or that long.
	txIRQBatch = 32
	txIRQDelay = 500 * time.Microsecond

	// Host ports for Dial come from this range, round robin, skipping
	// ones in use.
	ephemeralFirst = 1024
	ephemeralLast  = 65535

	// defaultCloseTimeout is how long a clean close waits for the
	// guest's RST before sending its own (Linux's VSOCK_CLOSE_TIMEOUT).
	defaultCloseTimeout = 8 * time.Second
)

// Device is a virtio-vsock device and the host end of its streams. It
// implements virtio.Device.
type Device struct {
	cid          uint32
	bufSize      uint32
	maxConns     int
	backlog      int
	log          *slog.Logger
	closeTimeout time.Duration
	txIRQDelay   time.Duration

	// crash is the last activation's Crash, for the close timers, which
	// run on goroutines of their own.
	crash atomic.Pointer[func(*virtio.PanicError)]

	// kick wakes the worker: guest notifications and host-side work.
	kick chan struct{}

	// memMu is held by the worker while it uses the queues and the guest
	// memory behind them, one pass at a time. Nothing else in pyro takes
	// it: the transport configures queues only while no worker runs. The
	// package's tests take it to play the guest driver on another
	// goroutine, whose ring accesses a real driver orders with barriers
	// the race detector cannot see. Lock order: memMu, then mu.
	memMu sync.Mutex

	// mu guards the fields below and the mutable state of every Conn
	// and Listener of the device.
	mu sync.Mutex
	// Guarded by mu.
	active bool // between Activate and Reset
	// Guarded by mu.
	paused bool // active with no worker running (Pause); w stays for Resume
	// Guarded by mu.
	broken bool // the driver broke a queue; nothing moves until a reset
	// Guarded by mu.
	stop, done chan struct{} // the last worker's; done is nil if none ran
	// Guarded by mu.
	closed bool
	// Guarded by mu.
	conns map[connKey]*Conn
	// Guarded by mu.
	ports map[uint32]int // local port → streams using it
	// Guarded by mu.
	listeners map[uint32]*Listener
	// Guarded by mu.
	ready []*Conn // streams with a packet to send, FIFO; Conn.queued marks them
	// Guarded by mu.
	replies []header // RSTs for packets that match no stream
	// Guarded by mu.
	nextPort uint32
	// Guarded by mu.
	eventPending bool
	// A transport reset the guest has not finished handling: eventPending
	// until the event is delivered, then resetWaiting until the driver
	// posts a new event buffer (it does once it has reset its sockets).
	// settling is closed when it is done, and nil while none is in
	// flight.
	//
	// Guarded by mu.
	resetWaiting bool
	// Guarded by mu.
	resetPosted uint16 // the event queue's avail.idx when the event went out
	// Guarded by mu.
	settling chan struct{}
	// Guarded by mu.
	lastWarn time.Time
	// Guarded by mu.
	suppressed int
	// Guarded by mu.
	w *worker // the running worker, for DebugState
	// Guarded by mu.
	trace packetTrace // the last packets each way, for DebugState

	// Counters for DebugState and the watchdog.
	kickCount, passCount, irqCount, rescueCount, probes, probeHits atomic.Uint64
}

// connKey names a stream by its ports; the CIDs are fixed.
type connKey struct{ local, peer uint32 }

var _ virtio.Device = (*Device)(nil)

// New returns a device for a guest with context ID guestCID, which must
// not be reserved (0, 1, 2 or 0xffffffff, §5.10.4).
func New(guestCID uint32, opts Options) (*Device, error) {
	if guestCID <= VMADDR_CID_HOST || guestCID == VMADDR_CID_ANY {
		return nil, fmt.Errorf("vsock: guest CID %d is reserved; use 3 or more", guestCID)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	opts.MaxConns = min(opts.MaxConns, ephemeralLast-ephemeralFirst+1)
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.BufferSize > MaxBufferSize {
		return nil, fmt.Errorf("vsock: buffer size %d is over the %d limit", opts.BufferSize, MaxBufferSize)
	}
	if opts.Backlog <= 0 {
		opts.Backlog = DefaultBacklog
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{
		cid:          guestCID,
		bufSize:      uint32(opts.BufferSize),
		maxConns:     opts.MaxConns,
		backlog:      opts.Backlog,
		log:          log,
		closeTimeout: defaultCloseTimeout,
		txIRQDelay:   txIRQDelay,
		kick:         make(chan struct{}, 1),
		conns:        make(map[connKey]*Conn),
		ports:        make(map[uint32]int),
		listeners:    make(map[uint32]*Listener),
		nextPort:     ephemeralFirst,
	}, nil
}

// CID returns the guest's context ID.
func (d *Device) CID() uint32 { return d.cid }

// ID implements virtio.Device.
func (d *Device) ID() virtio.DeviceID { return virtio.IDVsock }

// Features implements virtio.Device: stream sockets only.
func (d *Device) Features() uint64 { return 1 << VIRTIO_VSOCK_F_STREAM }

// QueueSizes implements virtio.Device: rx, tx and event.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize, queueSize, eventQueueSize} }

// ReadConfig implements virtio.Device: struct virtio_vsock_config, one le64
// guest_cid.
func (d *Device) ReadConfig(off uint64, data []byte) {
	var c [8]byte
	binary.LittleEndian.PutUint64(c[:], uint64(d.cid))
	virtio.ReadConfigWindow(c[:], off, data)
}

// WriteConfig implements virtio.Device; guest_cid is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: it starts the worker.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return errors.New("virtio-vsock: already active")
	}
	if len(a.Queues) != 3 || !a.Queues[rxQueue].Ready || !a.Queues[txQueue].Ready {
		return errors.New("virtio-vsock: the rx and tx queues are not set up")
	}
	d.active, d.broken, d.paused = true, false, a.Paused
	if a.Crash != nil {
		d.crash.Store(&a.Crash)
	}
	d.w = &worker{d: d, act: a, rx: a.Queues[rxQueue], tx: a.Queues[txQueue], ev: a.Queues[eventQueue]}
	d.done = nil
	if !a.Paused {
		d.startLocked()
	}
	d.wake() // streams Dialed before the driver came up
	return nil
}

// startLocked starts a worker for the activation.
//
// The caller holds d.mu.
func (d *Device) startLocked() {
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.w.run(d.stop, d.done)
}

// Notify implements virtio.Device. It never blocks.
func (d *Device) Notify(int) { d.wake() }

// wake makes the worker run a pass soon.
func (d *Device) wake() {
	select {
	case d.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Reset implements virtio.Device: it stops the worker, waits for it, and
// fails every stream with ErrDeviceReset. Listeners stay open for the
// driver's next activation.
func (d *Device) Reset() {
	d.mu.Lock()
	if !d.active {
		d.mu.Unlock()
		return
	}
	if !d.paused {
		close(d.stop)
	}
	done := d.done
	d.active, d.paused = false, false
	d.w = nil
	d.mu.Unlock()
	if done != nil {
		<-done
	}
	d.mu.Lock()
	d.broken = false
	d.failAllLocked(ErrDeviceReset)
	d.eventPending = false
	d.settledLocked()
	d.mu.Unlock()
}

// Close shuts the host side down: every stream is reset (a RST goes to
// the guest while the driver runs) and fails its pending and future I/O
// with net.ErrClosed, every Listener is closed, and Dial and Listen fail
// from now on. The worker keeps answering the guest, with RSTs, until the
// transport resets or closes the device.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.settledLocked()
	for _, l := range d.listeners {
		l.closeLocked()
	}
	for _, c := range d.conns {
		c.devClosed = true
		c.rx = ring{}
		if d.active {
			d.resetLocked(c, errDeviceClosed)
		} else {
			c.setErrLocked(errDeviceClosed)
			d.removeLocked(c)
		}
	}
	d.mu.Unlock()
	d.wake()
	return nil
}

// TransportReset tells the guest that its connections are gone
// (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, §5.10.6.7): every host stream fails
// with ErrTransportReset, and the event goes to the guest in the next
// buffer it posts on the event queue. Listeners stay open. For a VMM that
// lost the host side of the streams while the guest kept running.
func (d *Device) TransportReset() {
	d.mu.Lock()
	d.failAllLocked(ErrTransportReset)
	d.eventPending = d.active
	if d.active && d.settling == nil {
		d.settling = make(chan struct{})
	}
	d.mu.Unlock()
	d.wake()
}

// ResetSettled returns a channel that is closed once the guest has
// handled the last TransportReset: its driver took the event, reset the
// sockets it had and posted a new event buffer. A stream the host opens
// before then may be reset with the old ones. The channel is closed at
// once when no reset is in flight, and when the device resets or closes;
// a driver that never posts event buffers never closes it, so wait with
// a bound.
func (d *Device) ResetSettled() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settling == nil {
		return closedChan
	}
	return d.settling
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// settledLocked ends the transport reset in flight, if any.
//
// The caller holds d.mu.
func (d *Device) settledLocked() {
	if d.settling != nil {
		close(d.settling)
		d.settling = nil
	}
	d.resetWaiting = false
}

// failAllLocked ends every stream with err and forgets queued packets;
// the guest is not told.
//
// The caller holds d.mu.
func (d *Device) failAllLocked(err error) {
	for _, c := range d.conns {
		c.setErrLocked(err)
		d.removeLocked(c)
	}
	for _, l := range d.listeners {
		l.backlog = nil
	}
	for _, c := range d.ready {
		c.queued = false
	}
	d.ready, d.replies = nil, nil
}

// failDevice stops everything after the driver broke a queue.
func (d *Device) failDevice(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.broken = true
	d.failAllLocked(fmt.Errorf("%w: %v", ErrDeviceFailed, err))
	d.settledLocked()
}

// warnLocked logs guest misbehaviour, at most once a second.
//
// The caller holds d.mu.
func (d *Device) warnLocked(msg string, args ...any) {
	now := time.Now()
	if now.Sub(d.lastWarn) < time.Second {
		d.suppressed++
		return
	}
	if d.suppressed > 0 {
		args = append(args, "suppressed", d.suppressed)
		d.suppressed = 0
	}
	d.lastWarn = now
	d.log.Warn("virtio-vsock: "+msg, args...)
}

// worker owns the queues of one activation.
type worker struct {
	d          *Device
	act        virtio.Activation
	rx, tx, ev *virtio.Queue
	// spare is an rx chain popped when there turned out to be nothing to
	// put in it; it is used first next time.
	spare *virtio.Chain
	// txOwed counts tx completions whose interrupt waits (see pass).
	// Written under d.memMu.
	txOwed int
}

func (w *worker) run(stop, done chan struct{}) {
	defer close(done)
	defer w.act.Recover("virtio-vsock worker")
	tick := time.NewTicker(watchdogPeriod)
	defer tick.Stop()
	txTimer := time.NewTimer(time.Hour)
	txTimer.Stop()
	defer txTimer.Stop()
	txArmed := false
	var dog watchdog
	for {
		select {
		case <-stop:
			return
		default:
		}
		select {
		case <-stop:
			return
		case <-w.d.kick:
		case <-txTimer.C:
			txArmed = false
			w.d.memMu.Lock()
			owed := w.txOwed > 0
			w.txOwed = 0
			w.d.memMu.Unlock()
			if owed {
				w.interrupt()
			}
			continue
		case <-tick.C:
			if !dog.check(w) {
				continue
			}
		}
		w.d.kickCount.Add(1)
		for n := 0; ; n++ {
			progress, irq, err := w.pass()
			w.d.passCount.Add(1)
			if irq {
				w.interrupt()
			}
			if err != nil {
				// The transport first, so that whoever the
				// failed streams wake finds the device marked.
				w.act.Fail(err)
				w.d.failDevice(err)
				return
			}
			if !progress {
				break
			}
			if n == passes {
				w.d.wake() // more to do, after a look at stop
				break
			}
			select {
			case <-stop: // a pause, say: the rest waits in the rings
				return
			default:
			}
		}
		if w.txOwed > 0 && !txArmed {
			txTimer.Reset(w.d.txIRQDelay)
			txArmed = true
		}
	}
}

func (w *worker) interrupt() {
	w.d.irqCount.Add(1)
	w.act.Interrupt()
}

// pass drains tx, fills rx and delivers a pending event, each up to a
// batch, and reports whether anything moved and whether to interrupt the
// driver now.
//
// An interrupt for tx completions alone can wait: the driver needs them
// only to reclaim its buffers, and its data has reached the host
// already. They are owed (txOwed) until txIRQBatch accumulate, another
// queue needs an interrupt (one serves every queue), or txIRQDelay
// passes. A guest streaming small writes then takes one interrupt per
// batch instead of one per packet, each of which costs it an exit to read
// the interrupt status and another to acknowledge it.
func (w *worker) pass() (progress, irq bool, err error) {
	w.d.memMu.Lock()
	defer w.d.memMu.Unlock()
	ntx, irqTx, err := w.drainTx()
	var nrx, nev int
	var irqRx, irqEv bool
	if err == nil {
		nrx, irqRx, err = w.fillRx()
	}
	if err == nil {
		nev, irqEv, err = w.fillEvent()
	}
	if irqTx {
		w.txOwed += max(ntx, 1)
	}
	// A failing device pays what it owes at once.
	return err == nil && ntx+nrx+nev > 0, w.settle(irqRx || irqEv || (err != nil && w.txOwed > 0)), err
}

// settle decides whether the interrupt goes out now: when now says so or
// enough tx completions are owed. It clears what the interrupt pays.
func (w *worker) settle(now bool) bool {
	if !now && w.txOwed < txIRQBatch {
		return false
	}
	w.txOwed = 0
	return true
}

// drainTx handles the guest's packets.
func (w *worker) drainTx() (n int, irq bool, err error) {
	d := w.d
	for ; n < batch; n++ {
		d.mu.Lock()
		full := len(d.replies) >= maxReplies
		d.mu.Unlock()
		if full {
			break // §5.10.6.1: until the guest takes our replies
		}
		c, ok, err := w.tx.Pop()
		if err != nil || !ok {
			return n, irq, err
		}
		d.handleTx(c.Readable)
		i, err := w.tx.Push(c.Head, 0)
		if err != nil {
			return n, irq, err
		}
		irq = irq || i
	}
	return n, irq, nil
}

// fillRx puts packets into the rx buffers the guest posted.
func (w *worker) fillRx() (n int, irq bool, err error) {
	d := w.d
	for n < batch {
		d.mu.Lock()
		has := len(d.replies) > 0 || len(d.ready) > 0
		d.mu.Unlock()
		if !has {
			break
		}
		c := w.spare
		w.spare = nil
		if c == nil {
			popped, ok, err := w.rx.Pop()
			if err != nil || !ok {
				return n, irq, err
			}
			c = &popped
		}
		written := 0
		if c.WritableLen() <= HeaderSize {
			// Linux posts 4 KiB; a buffer with no room for data
			// is returned empty, as a driver bug.
			d.mu.Lock()
			d.warnLocked("rx buffer too small for a packet", "bytes", c.WritableLen())
			d.mu.Unlock()
		} else {
			d.mu.Lock()
			var ok bool
			written, ok = d.produceLocked(c.Writable)
			d.mu.Unlock()
			if !ok {
				w.spare = c
				break
			}
		}
		i, err := w.rx.Push(c.Head, uint32(written))
		if err != nil {
			return n, irq, err
		}
		irq = irq || i
		n++
	}
	return n, irq, nil
}

// fillEvent delivers a pending transport reset, and notices when the
// driver has handled the last one: it posts a new event buffer then.
func (w *worker) fillEvent() (n int, irq bool, err error) {
	d := w.d
	d.mu.Lock()
	pending := d.eventPending
	if d.resetWaiting && w.ev.Posted() != d.resetPosted {
		d.settledLocked()
	}
	d.mu.Unlock()
	if !pending {
		return 0, false, nil
	}
	c, ok, err := w.ev.Pop()
	if err != nil || !ok {
		return 0, false, err
	}
	written := 0
	var ev [eventSize]byte
	binary.LittleEndian.PutUint32(ev[:], VIRTIO_VSOCK_EVENT_TRANSPORT_RESET)
	d.mu.Lock()
	if c.WritableLen() >= eventSize {
		virtio.NewPieces(c.Writable).Write(ev[:])
		written = eventSize
		d.eventPending = false
		// The driver handles the event, then posts the buffer again
		// and notifies: that ends the reset (ResetSettled).
		d.resetWaiting, d.resetPosted = true, w.ev.Posted()
		w.ev.NotifyNext()
	} else {
		d.warnLocked("event buffer too small", "bytes", c.WritableLen())
	}
	d.mu.Unlock()
	irq, err = w.ev.Push(c.Head, uint32(written))
	return 1, irq, err
}

// handleTx handles one packet from the guest, whose header and payload
// may be split across bufs anywhere.
func (d *Device) handleTx(bufs []virtio.Buffer) {
	r := virtio.NewPieces(bufs)
	var b [HeaderSize]byte
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := io.ReadFull(r, b[:]); err != nil {
		d.warnLocked("dropped a tx packet shorter than its header", "bytes", virtio.NewPieces(bufs).Len())
		return
	}
	h := parseHeader(b[:])
	d.trace.add(false, &h)
	switch {
	case h.srcCID != uint64(d.cid):
		d.warnLocked("dropped a packet with a spoofed source CID", "src_cid", h.srcCID, "op", opName(h.op))
		return
	case h.dstCID != VMADDR_CID_HOST:
		d.replyRstLocked(&h) // nothing else is reachable from here
		return
	case h.typ != VIRTIO_VSOCK_TYPE_STREAM:
		d.replyRstLocked(&h) // §5.10.6.4: RST answers an unknown type
		return
	}
	c := d.conns[connKey{h.dstPort, h.srcPort}]
	if h.len > maxPayload || int64(h.len) > int64(r.Len()) {
		d.warnLocked("packet length beyond its buffers or the limit", "len", h.len, "bytes", r.Len(), "op", opName(h.op))
		if c != nil {
			d.resetLocked(c, fmt.Errorf("%w: packet length %d with %d bytes of payload", ErrProtocol, h.len, r.Len()))
		} else {
			d.replyRstLocked(&h)
		}
		return
	}
	if c == nil {
		d.handleNoConnLocked(&h)
		return
	}
	d.handleConnLocked(c, &h, r)
}

// replyRstLocked queues a RST answering h, unless h is one.
//
// The caller holds d.mu.
func (d *Device) replyRstLocked(h *header) {
	if h.op == VIRTIO_VSOCK_OP_RST {
		return
	}
	if len(d.replies) >= maxReplies {
		return // drainTx stops before this; never grow past the bound
	}
	d.replies = append(d.replies, header{
		srcCID: h.dstCID, dstCID: h.srcCID,
		srcPort: h.dstPort, dstPort: h.srcPort,
		typ: h.typ, op: VIRTIO_VSOCK_OP_RST,
	})
}

// handleNoConnLocked handles a packet that names no stream: a connection
// request to a Listener, or a stray packet, answered with RST.
//
// The caller holds d.mu.
func (d *Device) handleNoConnLocked(h *header) {
	if h.op != VIRTIO_VSOCK_OP_REQUEST {
		d.replyRstLocked(h)
		return
	}
	l := d.listeners[h.dstPort]
	switch {
	case l == nil:
		d.replyRstLocked(h)
	case len(d.conns) >= d.maxConns:
		d.warnLocked("refused a guest connection: too many streams", "max", d.maxConns)
		d.replyRstLocked(h)
	case len(l.backlog) >= d.backlog:
		d.warnLocked("refused a guest connection: listener backlog full", "port", h.dstPort)
		d.replyRstLocked(h)
	default:
		c := d.newConnLocked(h.dstPort, h.srcPort, stateEstablished)
		c.peerBufAlloc, c.peerFwdCnt = h.bufAlloc, h.fwdCnt
		c.sendResp = true
		d.markReadyLocked(c)
		l.backlog = append(l.backlog, c)
		l.signalLocked()
	}
}

// handleConnLocked runs a stream's state machine for one guest packet.
//
// The caller holds d.mu.
func (d *Device) handleConnLocked(c *Conn, h *header, r *virtio.Pieces) {
	// Every packet of a stream carries the peer's credit (§5.10.6.3).
	if h.bufAlloc != c.peerBufAlloc || h.fwdCnt != c.peerFwdCnt {
		c.peerBufAlloc, c.peerFwdCnt = h.bufAlloc, h.fwdCnt
		c.creditReqSent = false
		if len(c.pending) > 0 {
			d.markReadyLocked(c)
		}
	}
	switch c.state {
	case stateConnecting:
		switch {
		case c.sendReq:
			// We have not sent the REQUEST: a stale packet of an
			// earlier stream on these ports.
			if h.op != VIRTIO_VSOCK_OP_RST {
				d.replyRstLocked(h)
			}
		case h.op == VIRTIO_VSOCK_OP_RESPONSE:
			c.state = stateEstablished
			c.signalLocked()
		case h.op == VIRTIO_VSOCK_OP_RST:
			c.setErrLocked(ErrConnRefused)
			d.removeLocked(c)
		default:
			d.resetLocked(c, fmt.Errorf("%w: %s in reply to a connection request", ErrProtocol, opName(h.op)))
		}
	case stateEstablished:
		switch h.op {
		case VIRTIO_VSOCK_OP_RW:
			d.receiveLocked(c, h, r)
		case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
			// Taken above.
		case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
			c.sendCredit = true
			d.markReadyLocked(c)
		case VIRTIO_VSOCK_OP_SHUTDOWN:
			c.peerShut |= h.flags & shutdownBoth
			if h.flags&VIRTIO_VSOCK_SHUTDOWN_RCV != 0 {
				c.pending = nil // Write fails: the guest takes no more
			}
			if c.peerShut == shutdownBoth {
				// §5.10.6.5: our RST completes the guest's close.
				c.state = stateResetting
				d.markReadyLocked(c)
			}
			c.signalLocked()
		case VIRTIO_VSOCK_OP_RST:
			c.setErrLocked(ErrConnReset)
			d.removeLocked(c)
		default:
			d.warnLocked("unexpected packet on a connected stream", "op", h.op)
			d.resetLocked(c, fmt.Errorf("%w: op %d (%s) on a connected stream", ErrProtocol, h.op, opName(h.op)))
		}
	case stateClosing:
		switch h.op {
		case VIRTIO_VSOCK_OP_RST:
			d.removeLocked(c) // the clean close is complete
		case VIRTIO_VSOCK_OP_SHUTDOWN:
			c.peerShut |= h.flags & shutdownBoth
			if c.peerShut == shutdownBoth {
				c.state = stateResetting
				d.markReadyLocked(c)
			}
		case VIRTIO_VSOCK_OP_RW, VIRTIO_VSOCK_OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_REQUEST:
			// Nobody reads any more.
		default:
			d.resetLocked(c, ErrProtocol)
		}
	case stateResetting:
		if h.op == VIRTIO_VSOCK_OP_RST {
			d.removeLocked(c) // both sides are done; ours need not go
		}
	}
}

// receiveLocked takes a RW packet's payload into the stream's buffer.
//
// The caller holds d.mu.
func (d *Device) receiveLocked(c *Conn, h *header, r *virtio.Pieces) {
	n := int(h.len)
	if n == 0 || c.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0 {
		return // nothing, or data the guest promised not to send
	}
	if c.rx.len()+n > int(d.bufSize) {
		d.warnLocked("guest sent beyond its credit; stream reset", "port", c.local.Port, "buffered", c.rx.len(), "len", n, "buf_alloc", d.bufSize)
		d.resetLocked(c, fmt.Errorf("%w: the guest sent %d bytes beyond the %d-byte buffer it was granted", ErrProtocol, c.rx.len()+n-int(d.bufSize), d.bufSize))
		return
	}
	bufs, _ := r.Take(n)
	c.rx.write(bufs, n, int(d.bufSize))
	c.signalLocked()
}

// produceLocked writes the next packet to send into an rx chain's
// writable buffers, which hold more than a header, and returns its
// length, or false if nothing can be sent now.
//
// The caller holds d.mu.
func (d *Device) produceLocked(bufs []virtio.Buffer) (int, bool) {
	if len(d.replies) > 0 {
		h := d.replies[0]
		d.replies = d.replies[1:]
		if len(d.replies) == 0 {
			d.replies = nil
		}
		var b [HeaderSize]byte
		h.encode(b[:])
		virtio.NewPieces(bufs).Write(b[:])
		d.trace.add(true, &h)
		return HeaderSize, true
	}
	room := min(buffersLen(bufs)-HeaderSize, maxPayload)
	for i, n := 0, len(d.ready); i < n; i++ {
		c := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		c.queued = false
		written, ok := d.packetLocked(c, bufs, room)
		if c.hasWorkLocked() {
			d.markReadyLocked(c) // round robin among busy streams
		}
		if ok {
			return written, true
		}
	}
	return 0, false
}

// packetLocked writes c's next packet into bufs, with at most room bytes
// of payload (room > 0).
//
// The caller holds d.mu.
func (d *Device) packetLocked(c *Conn, bufs []virtio.Buffer, room int) (int, bool) {
	h := header{
		srcCID: VMADDR_CID_HOST, dstCID: uint64(d.cid),
		srcPort: c.local.Port, dstPort: c.remote.Port,
		typ: VIRTIO_VSOCK_TYPE_STREAM,
	}
	var payload []byte
	switch {
	case c.state == stateGone:
		return 0, false
	case c.state == stateResetting:
		h.op = VIRTIO_VSOCK_OP_RST
		d.removeLocked(c)
	case c.sendReq:
		h.op = VIRTIO_VSOCK_OP_REQUEST
		c.sendReq = false
	case c.sendResp:
		h.op = VIRTIO_VSOCK_OP_RESPONSE
		c.sendResp = false
	case c.state == stateEstablished && len(c.pending) > 0 && c.creditLocked() > 0:
		n := min(len(c.pending), int(min(c.creditLocked(), uint32(room))))
		h.op, h.len = VIRTIO_VSOCK_OP_RW, uint32(n)
		payload = c.pending[:n]
		c.pending = c.pending[n:]
		c.wrote += n
		c.txCnt += uint32(n)
		if len(c.pending) == 0 {
			c.pending = nil
			c.signalLocked()
		}
	case c.localShut != c.shutSent:
		h.op, h.flags = VIRTIO_VSOCK_OP_SHUTDOWN, c.localShut
		c.shutSent = c.localShut
		if c.state == stateClosing && c.closeTimer == nil {
			c.closeTimer = time.AfterFunc(d.closeTimeout, func() { d.closeTimedOut(c) })
		}
	case c.sendCredit:
		h.op = VIRTIO_VSOCK_OP_CREDIT_UPDATE
	case c.state == stateEstablished && len(c.pending) > 0 && !c.creditReqSent:
		h.op = VIRTIO_VSOCK_OP_CREDIT_REQUEST
		c.creditReqSent = true
		c.stalls++
	default:
		return 0, false
	}
	// Every packet carries our credit (§5.10.6.3).
	h.bufAlloc, h.fwdCnt = d.bufSize, c.fwdCnt
	c.lastFwdSent = c.fwdCnt
	c.sendCredit = false
	var b [HeaderSize]byte
	h.encode(b[:])
	d.trace.add(true, &h)
	p := virtio.NewPieces(bufs)
	p.Write(b[:])
	p.Write(payload) // the pending Write cannot return while we hold mu
	return HeaderSize + len(payload), true
}

// closeTimedOut sends the RST a clean close waited for in vain.
func (d *Device) closeTimedOut(c *Conn) {
	defer func() {
		if r := recover(); r != nil {
			err := virtio.NewPanicError("virtio-vsock close timer", r)
			if f := d.crash.Load(); f != nil {
				(*f)(err)
			} else {
				d.log.Error("virtio-vsock: close timer panicked", "err", err)
			}
		}
	}()
	d.mu.Lock()
	if c.state == stateClosing {
		c.state = stateResetting
		d.markReadyLocked(c)
	}
	d.mu.Unlock()
	d.wake()
}

// markReadyLocked queues c for the worker to send its packets.
//
// The caller holds d.mu.
func (d *Device) markReadyLocked(c *Conn) {
	if !c.queued && c.state != stateGone {
		c.queued = true
		d.ready = append(d.ready, c)
	}
}

// newConnLocked adds a stream.
//
// The caller holds d.mu.
func (d *Device) newConnLocked(local, peer uint32, state connState) *Conn {
	c := &Conn{
		d:       d,
		local:   Addr{CID: VMADDR_CID_HOST, Port: local},
		remote:  Addr{CID: d.cid, Port: peer},
		state:   state,
		wsem:    make(chan struct{}, 1),
		readDL:  makeDeadline(),
		writeDL: makeDeadline(),
	}
	d.conns[connKey{local, peer}] = c
	d.ports[local]++
	return c
}

// removeLocked takes c out of the stream table; its application side
// keeps whatever it has buffered.
//
// The caller holds d.mu.
func (d *Device) removeLocked(c *Conn) {
	if c.state == stateGone {
		return
	}
	k := connKey{c.local.Port, c.remote.Port}
	if d.conns[k] == c {
		delete(d.conns, k)
		if d.ports[k.local]--; d.ports[k.local] <= 0 {
			delete(d.ports, k.local)
		}
	}
	c.state = stateGone
	c.pending = nil
	if c.closeTimer != nil {
		c.closeTimer.Stop()
		c.closeTimer = nil
	}
	c.signalLocked()
}

// resetLocked aborts c from the host side: the guest gets a RST if it
// knows the stream, and the application gets err.
//
// The caller holds d.mu.
func (d *Device) resetLocked(c *Conn, err error) {
	c.setErrLocked(err)
	c.pending = nil
	c.signalLocked()
	switch c.state {
	case stateGone, stateResetting:
		return
	case stateConnecting:
		if c.sendReq {
			d.removeLocked(c) // the guest never heard of it
			return
		}
	}
	c.state = stateResetting
	d.markReadyLocked(c)
}

// allocPortLocked picks a host port for Dial that no stream or listener
// uses.
//
// The caller holds d.mu.
func (d *Device) allocPortLocked() (uint32, bool) {
	for i := 0; i <= ephemeralLast-ephemeralFirst; i++ {
		p := d.nextPort
		if d.nextPort++; d.nextPort > ephemeralLast {
			d.nextPort = ephemeralFirst
		}
		if d.ports[p] == 0 && d.listeners[p] == nil {
			return p, true
		}
	}
	return 0, false
}

// usableLocked says why new streams cannot start, if they cannot.
//
// The caller holds d.mu.
func (d *Device) usableLocked() error {
	switch {
	case d.closed:
		return net.ErrClosed
	case d.broken:
		return ErrDeviceFailed
	}
	return nil
}

func buffersLen(bs []virtio.Buffer) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}
