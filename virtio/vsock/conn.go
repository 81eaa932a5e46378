package vsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// Errors a Conn, Dial or Listener returns, inside a *net.OpError. Each
// matches the errno a kernel socket would give (errors.Is(err,
// syscall.ECONNREFUSED) holds for ErrConnRefused). A Conn whose peer shut
// down cleanly reads io.EOF instead; one closed on the host side fails
// with net.ErrClosed.
var (
	ErrConnRefused    = &sockError{"nothing listens on the guest port (connection refused)", syscall.ECONNREFUSED}
	ErrConnReset      = &sockError{"connection reset by the guest", syscall.ECONNRESET}
	ErrDeviceReset    = &sockError{"the guest reset its vsock device (reboot or driver reload); connection lost", syscall.ECONNRESET}
	ErrTransportReset = &sockError{"the host reset the vsock transport; connection lost", syscall.ECONNRESET}
	ErrDeviceFailed   = &sockError{"the guest's driver broke the virtqueue protocol; the device is stopped until the guest resets it", syscall.EIO}
	ErrProtocol       = &sockError{"the guest broke the vsock protocol; connection reset", syscall.EPROTO}
	ErrBrokenPipe     = &sockError{"broken pipe", syscall.EPIPE}
	ErrTooManyConns   = &sockError{"too many vsock connections", syscall.EAGAIN}
)

var (
	errDeviceClosed  = fmt.Errorf("%w: the vsock device was closed", net.ErrClosed)
	errWriteShutdown = fmt.Errorf("%w: write after CloseWrite", ErrBrokenPipe)
	errPeerNoReceive = fmt.Errorf("%w: the guest shut down its receiving side", ErrBrokenPipe)
	errPortInUse     = &sockError{"a listener already has that port", syscall.EADDRINUSE}
	errPortAny       = errors.New("vsock: VMADDR_PORT_ANY is not a port to listen on")
	errNoEphemeral   = &sockError{"no free host port for the connection", syscall.EADDRNOTAVAIL}
)

type sockError struct {
	msg   string
	errno syscall.Errno
}

func (e *sockError) Error() string { return "vsock: " + e.msg }
func (e *sockError) Unwrap() error { return e.errno }

// Addr is a vsock address: a context ID and a port.
type Addr struct {
	CID, Port uint32
}

// Network returns "vsock".
func (a Addr) Network() string { return "vsock" }

// String returns "cid:port".
func (a Addr) String() string {
	return strconv.FormatUint(uint64(a.CID), 10) + ":" + strconv.FormatUint(uint64(a.Port), 10)
}

type connState uint8

const (
	stateConnecting  connState = iota // Dial sent (or will send) REQUEST
	stateEstablished                  // data flows
	stateClosing                      // Close sent SHUTDOWN; waiting for the guest's RST
	stateResetting                    // a RST is queued; the stream leaves with it
	stateGone                         // out of the stream table
)

// Conn is the host end of one stream, a net.Conn. Write returns once the
// guest's driver holds every byte; Read returns io.EOF after the guest
// shut down its sending side and the data before it is read.
type Conn struct {
	d               *Device
	local, remote   Addr
	wsem            chan struct{} // one Write at a time
	readDL, writeDL deadline

	// Guarded by d.mu.
	state connState
	// Guarded by d.mu.
	queued bool // in d.ready
	// Guarded by d.mu.
	appClosed bool // Close was called
	// Guarded by d.mu.
	devClosed bool // Device.Close was called
	// Guarded by d.mu.
	err error // why the stream ended abnormally; Read returns it after the data
	// Guarded by d.mu.
	sendReq, sendResp, sendCredit, creditReqSent bool
	// Guarded by d.mu.
	localShut, shutSent, peerShut uint32 // VIRTIO_VSOCK_SHUTDOWN_* masks
	// Guarded by d.mu.
	rx ring // received, not yet read
	// Guarded by d.mu.
	fwdCnt, lastFwdSent uint32 // bytes read by the application; fwd_cnt last sent
	// Guarded by d.mu.
	peerBufAlloc, peerFwdCnt, txCnt uint32
	// Guarded by d.mu.
	pending []byte // the unsent rest of the Write in progress
	// Guarded by d.mu.
	wrote int // bytes of that Write sent so far
	// Guarded by d.mu.
	wait chan struct{} // closed on the next state change, for blocked calls
	// Guarded by d.mu.
	closeTimer *time.Timer
	// Guarded by d.mu.
	stalls int // CREDIT_REQUESTs sent: times a Write waited for credit
	// Guarded by d.mu.
	readWaiting bool // a Read waits for the guest's data
}

var _ net.Conn = (*Conn)(nil)

// Dial connects to port on the guest: it sends a REQUEST and waits for the
// guest's RESPONSE (ErrConnRefused if the guest answers RST: nothing listens
// there), or for ctx to end. A Dial before the guest's driver is up waits
// for it. The host port is picked from 1024-65535, never one in use.
func (d *Device) Dial(ctx context.Context, port uint32) (*Conn, error) {
	remote := Addr{CID: d.cid, Port: port}
	dialErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "vsock", Addr: remote, Err: err}
	}
	d.mu.Lock()
	if err := d.usableLocked(); err != nil {
		d.mu.Unlock()
		return nil, dialErr(err)
	}
	if len(d.conns) >= d.maxConns {
		d.mu.Unlock()
		return nil, dialErr(ErrTooManyConns)
	}
	local, ok := d.allocPortLocked()
	if !ok {
		d.mu.Unlock()
		return nil, dialErr(errNoEphemeral)
	}
	c := d.newConnLocked(local, port, stateConnecting)
	c.sendReq = true
	d.markReadyLocked(c)
	d.mu.Unlock()
	d.wake()
	for {
		d.mu.Lock()
		switch {
		case c.state == stateEstablished:
			d.mu.Unlock()
			return c, nil
		case c.state != stateConnecting || c.err != nil:
			err := c.err
			if err == nil {
				err = ErrConnReset
			}
			c.appClosed = true
			d.mu.Unlock()
			return nil, dialErr(err)
		}
		wait := c.waitLocked()
		d.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			d.mu.Lock()
			if c.state == stateEstablished {
				d.mu.Unlock()
				return c, nil
			}
			c.appClosed = true
			d.resetLocked(c, ctx.Err())
			d.mu.Unlock()
			d.wake()
			return nil, dialErr(ctx.Err())
		}
	}
}

// Read reads data the guest sent. After the guest shuts down its sending
// side (or closes) it returns io.EOF once the buffered data is read; after
// a reset it returns that data and then the reason.
func (c *Conn) Read(b []byte) (int, error) {
	d := c.d
	for {
		d.mu.Lock()
		c.readWaiting = false // set again below if it waits once more
		switch {
		case c.readDL.expired():
			d.mu.Unlock()
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		case c.appClosed || c.devClosed:
			d.mu.Unlock()
			return 0, c.opErr("read", c.closedErrLocked())
		case len(b) == 0:
			d.mu.Unlock()
			return 0, nil
		case c.rx.len() > 0:
			n := c.rx.read(b)
			c.fwdCnt += uint32(n)
			// Tell the guest about the room once a quarter of
			// the buffer has been freed since it last heard.
			update := c.state == stateEstablished && !c.sendCredit && c.fwdCnt-c.lastFwdSent >= d.bufSize/4
			if update {
				c.sendCredit = true
				d.markReadyLocked(c)
			}
			d.mu.Unlock()
			if update {
				d.wake()
			}
			return n, nil
		case c.peerShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0:
			d.mu.Unlock()
			return 0, io.EOF
		case c.err != nil:
			err := c.err
			d.mu.Unlock()
			return 0, c.opErr("read", err)
		case c.state == stateGone:
			d.mu.Unlock()
			return 0, io.EOF
		}
		wait := c.waitLocked()
		c.readWaiting = true
		d.mu.Unlock()
		select {
		case <-wait:
		case <-c.readDL.wait():
		}
	}
}

// Write sends b to the guest and returns when the guest's driver has all
// of it, blocking while the guest grants no credit. On a deadline or an
// error it returns how much was sent.
func (c *Conn) Write(b []byte) (int, error) {
	d := c.d
	select {
	case c.wsem <- struct{}{}:
	case <-c.writeDL.wait():
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	defer func() { <-c.wsem }()
	if c.writeDL.expired() {
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	d.mu.Lock()
	if err := c.writeErrLocked(); err != nil {
		d.mu.Unlock()
		return 0, c.opErr("write", err)
	}
	if len(b) == 0 {
		d.mu.Unlock()
		return 0, nil
	}
	c.pending, c.wrote = b, 0
	d.markReadyLocked(c)
	d.mu.Unlock()
	d.wake()
	for {
		d.mu.Lock()
		if c.wrote == len(b) {
			c.pending = nil
			d.mu.Unlock()
			return len(b), nil
		}
		if err := c.writeErrLocked(); err != nil {
			n := c.wrote
			c.pending = nil
			d.mu.Unlock()
			return n, c.opErr("write", err)
		}
		wait := c.waitLocked()
		d.mu.Unlock()
		select {
		case <-wait:
		case <-c.writeDL.wait():
			d.mu.Lock()
			n := c.wrote
			c.pending = nil
			d.mu.Unlock()
			if n == len(b) {
				return n, nil
			}
			return n, c.opErr("write", os.ErrDeadlineExceeded)
		}
	}
}

// writeErrLocked says why c cannot take data, if it cannot.
//
// The caller holds c.d.mu.
func (c *Conn) writeErrLocked() error {
	switch {
	case c.appClosed || c.devClosed:
		return c.closedErrLocked()
	case c.localShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0:
		return errWriteShutdown
	case c.err != nil:
		return c.err
	case c.peerShut&VIRTIO_VSOCK_SHUTDOWN_RCV != 0:
		return errPeerNoReceive
	case c.state != stateEstablished:
		return ErrBrokenPipe
	}
	return nil
}

// The caller holds c.d.mu.
func (c *Conn) closedErrLocked() error {
	if c.devClosed && !c.appClosed {
		return errDeviceClosed
	}
	return net.ErrClosed
}

// Close closes the stream: blocked Reads and Writes fail with
// net.ErrClosed, unread data is dropped, and the guest gets SHUTDOWN with
// both flags; the stream leaves the table when the guest answers RST, or
// after a timeout, when the device sends one.
func (c *Conn) Close() error {
	d := c.d
	d.mu.Lock()
	if c.appClosed {
		d.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.appClosed = true
	c.pending = nil
	c.rx = ring{}
	c.signalLocked()
	switch c.state {
	case stateEstablished:
		c.localShut = shutdownBoth
		c.state = stateClosing
		d.markReadyLocked(c)
	case stateConnecting:
		d.resetLocked(c, net.ErrClosed)
	}
	d.mu.Unlock()
	d.wake()
	return nil
}

// CloseWrite shuts down the sending side: the guest gets SHUTDOWN with the
// SEND flag and reads EOF after the data before it; reading goes on. A
// Write in progress fails.
func (c *Conn) CloseWrite() error {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case c.appClosed || c.devClosed:
		return c.opErr("close", c.closedErrLocked())
	case c.localShut&VIRTIO_VSOCK_SHUTDOWN_SEND != 0:
		return nil
	case c.state != stateEstablished:
		if c.err != nil {
			return c.opErr("close", c.err)
		}
		return nil
	}
	c.localShut |= VIRTIO_VSOCK_SHUTDOWN_SEND
	c.pending = nil
	c.signalLocked()
	d.markReadyLocked(c)
	d.wake()
	return nil
}

// LocalAddr returns the host's address: CID 2 and the host port.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the guest's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDL.set(t)
	c.writeDL.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read calls, pending ones included.
func (c *Conn) SetReadDeadline(t time.Time) error { c.readDL.set(t); return nil }

// SetWriteDeadline sets the deadline for Write calls, pending ones
// included.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.writeDL.set(t); return nil }

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "vsock", Source: c.local, Addr: c.remote, Err: err}
}

// waitLocked returns a channel closed at c's next state change.
//
// The caller holds c.d.mu.
func (c *Conn) waitLocked() <-chan struct{} {
	if c.wait == nil {
		c.wait = make(chan struct{})
	}
	return c.wait
}

// signalLocked wakes every call blocked on c.
//
// The caller holds c.d.mu.
func (c *Conn) signalLocked() {
	if c.wait != nil {
		close(c.wait)
		c.wait = nil
	}
}

// setErrLocked records why the stream ended, keeping the first reason.
//
// The caller holds c.d.mu.
func (c *Conn) setErrLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	c.signalLocked()
}

// creditLocked is how many bytes the guest can take now (§5.10.6.3).
//
// The caller holds c.d.mu.
func (c *Conn) creditLocked() uint32 {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight >= c.peerBufAlloc {
		return 0 // full, or a fwd_cnt ahead of what we sent
	}
	return c.peerBufAlloc - inFlight
}

// hasWorkLocked reports whether c has a packet to send.
//
// The caller holds c.d.mu.
func (c *Conn) hasWorkLocked() bool {
	switch c.state {
	case stateGone:
		return false
	case stateResetting:
		return true
	}
	return c.sendReq || c.sendResp || c.sendCredit || c.localShut != c.shutSent ||
		(c.state == stateEstablished && len(c.pending) > 0 && (c.creditLocked() > 0 || !c.creditReqSent))
}

// Listener takes the guest's connections to one host port. It implements
// net.Listener; Accept returns *Conn values.
type Listener struct {
	d    *Device
	port uint32

	// Guarded by d.mu.
	backlog []*Conn
	// Guarded by d.mu.
	closed bool
	// Guarded by d.mu.
	wait chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// Listen takes guest connections to host port (CID 2). The handshake
// completes before Accept, up to Options.Backlog connections ahead of it.
func (d *Device) Listen(port uint32) (*Listener, error) {
	addr := Addr{CID: VMADDR_CID_HOST, Port: port}
	opErr := func(err error) error { return &net.OpError{Op: "listen", Net: "vsock", Addr: addr, Err: err} }
	if port == VMADDR_PORT_ANY {
		return nil, opErr(errPortAny)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, opErr(net.ErrClosed)
	}
	if d.listeners[port] != nil {
		return nil, opErr(errPortInUse)
	}
	l := &Listener{d: d, port: port}
	d.listeners[port] = l
	return l, nil
}

// Accept waits for the next guest connection; it fails with net.ErrClosed
// once the Listener or the Device is closed.
func (l *Listener) Accept() (net.Conn, error) {
	d := l.d
	for {
		d.mu.Lock()
		if l.closed {
			d.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: "vsock", Addr: l.Addr(), Err: net.ErrClosed}
		}
		if len(l.backlog) > 0 {
			c := l.backlog[0]
			l.backlog[0] = nil
			l.backlog = l.backlog[1:]
			d.mu.Unlock()
			return c, nil
		}
		if l.wait == nil {
			l.wait = make(chan struct{})
		}
		wait := l.wait
		d.mu.Unlock()
		<-wait
	}
}

// Close stops the listener; connections not yet accepted are reset.
func (l *Listener) Close() error {
	d := l.d
	d.mu.Lock()
	if l.closed {
		d.mu.Unlock()
		return &net.OpError{Op: "close", Net: "vsock", Addr: l.Addr(), Err: net.ErrClosed}
	}
	l.closeLocked()
	d.mu.Unlock()
	d.wake()
	return nil
}

// The caller holds l.d.mu.
func (l *Listener) closeLocked() {
	d := l.d
	l.closed = true
	if d.listeners[l.port] == l {
		delete(d.listeners, l.port)
	}
	for _, c := range l.backlog {
		c.appClosed = true
		d.resetLocked(c, net.ErrClosed)
	}
	l.backlog = nil
	l.signalLocked()
}

// The caller holds l.d.mu.
func (l *Listener) signalLocked() {
	if l.wait != nil {
		close(l.wait)
		l.wait = nil
	}
}

// Addr returns the listening address, CID 2 and the port.
func (l *Listener) Addr() net.Addr { return Addr{CID: VMADDR_CID_HOST, Port: l.port} }

// deadline is a settable point in time after which wait's channel is
// closed; pending calls select on it. Setting a new deadline re-arms it.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close the channel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func (d *deadline) expired() bool { return isClosed(d.wait()) }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ring is a stream's receive buffer: a circular buffer that grows on
// demand up to the stream's buf_alloc and never past it.
type ring struct {
	buf     []byte
	head, n int
}

func (q *ring) len() int { return q.n }

// write appends total bytes from bufs; the caller checked q.n+total
// against limit.
func (q *ring) write(bufs []virtio.Buffer, total, limit int) {
	if q.n+total > len(q.buf) {
		nb := make([]byte, min(max(2*len(q.buf), q.n+total, 4096), limit))
		q.n = q.copyOut(nb)
		q.buf, q.head = nb, 0
	}
	for _, b := range bufs {
		tail := (q.head + q.n) % len(q.buf)
		c := copy(q.buf[tail:], b)
		copy(q.buf, b[c:])
		q.n += len(b)
	}
}

// read moves up to len(b) bytes out.
func (q *ring) read(b []byte) int {
	n := q.copyOut(b)
	q.head = (q.head + n) % max(len(q.buf), 1)
	q.n -= n
	if q.n == 0 {
		q.head = 0
	}
	return n
}

// copyOut copies up to len(b) buffered bytes into b without consuming
// them.
func (q *ring) copyOut(b []byte) int {
	n := min(len(b), q.n)
	if n == 0 {
		return 0
	}
	c := copy(b[:n], q.buf[q.head:])
	copy(b[c:n], q.buf)
	return n
}
