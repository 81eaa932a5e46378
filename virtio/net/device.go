package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// Backend is the network behind the device: in pyro a gVisor link endpoint
// (netstack/) whose stack is the guest's gateway. See the package doc for
// how one maps onto stack.LinkEndpoint.
type Backend interface {
	// Capabilities says which offloads the backend takes. The device asks
	// once, in New, and offers the guest features to match.
	Capabilities() Capabilities
	// Transmit hands the backend one frame the guest sent: an Ethernet
	// frame, as the pieces of guest memory it lies in, and its offload
	// metadata, checked against what the guest negotiated and within
	// the bounds of the package doc. The pieces are valid only until
	// Transmit returns: the backend copies what it keeps. It runs on the
	// device's worker, which moves nothing else meanwhile, so it must
	// not block; it may call Device.Deliver. An error counts the frame
	// as dropped by the backend (Stats.TxBackendErrors).
	Transmit(h Header, frame [][]byte) error
}

// Capabilities are the offloads a Backend takes.
type Capabilities struct {
	// TxChecksum: Transmit accepts frames whose L4 checksum is partial
	// (Header.NeedsCsum). Offers VIRTIO_NET_F_CSUM.
	TxChecksum bool
	// TxTSO: Transmit accepts TCP super-segments (Header.GSO TCPv4 or
	// TCPv6) of up to MaxGSOFrameLen bytes. Offers VIRTIO_NET_F_HOST_TSO4
	// and _TSO6; needs TxChecksum (§5.1.3.1).
	TxTSO bool
	// RxTSO: the backend may Deliver TCP super-segments. Offers
	// VIRTIO_NET_F_GUEST_TSO4 and _TSO6; Deliver refuses them while the
	// guest has not accepted them (Device.GuestOffloads).
	RxTSO bool
}

// GuestOffloads are the offloads the guest's driver accepted, which bound
// what Deliver takes.
type GuestOffloads struct {
	// Checksum (VIRTIO_NET_F_GUEST_CSUM): frames may arrive with
	// NeedsCsum or DataValid. Without it the device completes a partial
	// checksum itself and clears DataValid.
	Checksum bool
	// TSO4 and TSO6 (VIRTIO_NET_F_GUEST_TSO4/6): TCP super-segments.
	TSO4, TSO6 bool
	// Mergeable (VIRTIO_NET_F_MRG_RXBUF): a frame may span several
	// receive buffers.
	Mergeable bool
}

// Bounds.
const (
	// DefaultMTU is the MTU between guest and stack: 65520 bytes of IP,
	// so that a whole frame (with its 14-byte Ethernet header) still
	// fits 16-bit lengths. Both ends are in this process's reach, so no
	// wire dictates 1500, and large frames cut the per-packet cost that
	// dominates userspace networking.
	DefaultMTU = 65520
	// MinMTU is IPv4's minimum (RFC 791); MaxMTU is DefaultMTU.
	MinMTU = 68
	MaxMTU = DefaultMTU
	// ethHeaderLen and vlanTagLen size the link header a frame carries
	// beyond the MTU: a frame of gso_type NONE may be MTU +
	// ethHeaderLen + vlanTagLen bytes.
	ethHeaderLen = 14
	vlanTagLen   = 4
	// MaxGSOFrameLen bounds a TCP super-segment either way: Linux's
	// legacy GSO limit of 64 KiB of packet plus the link header.
	MaxGSOFrameLen = 64<<10 + ethHeaderLen + vlanTagLen
	// maxFrameLen is the largest frame of any kind, the cap on every
	// length taken from the guest or the backend before anything else
	// is checked.
	maxFrameLen = max(MaxGSOFrameLen, MaxMTU+ethHeaderLen+vlanTagLen)

	// DefaultMaxPendingFrames and DefaultMaxPendingBytes bound the
	// frames Deliver holds while the guest has posted no receive buffer
	// for them: one ring's worth of frames, and 64 full-size
	// super-segments. Past either, Deliver drops (Stats.RxQueueFull), as
	// a full NIC ring would; TCP retransmits. They bound the host memory
	// a guest that stops reading can pin.
	DefaultMaxPendingFrames = queueSize
	DefaultMaxPendingBytes  = 4 << 20

	queueSize = 256
	rxQueue   = 0
	txQueue   = 1

	// batch bounds the chains one pass takes from each queue, so that
	// interrupts go out while traffic keeps the worker busy.
	batch = 64
	// passes bounds one wake-up of the worker before it looks for a stop.
	passes = 64
	// txIRQBatch and defaultTxIRQDelay bound how long an interrupt for tx
	// completions alone waits, as virtio-vsock does: that many
	// completions, an interrupt the rx queue needs anyway, or that long.
	txIRQBatch        = 32
	defaultTxIRQDelay = 500 * time.Microsecond
)

// Options configure a device.
type Options struct {
	// MAC is the guest's address (configuration mac, VIRTIO_NET_F_MAC):
	// unicast, not all zero.
	MAC [6]byte
	// MTU is offered to the guest (VIRTIO_NET_F_MTU); 0 means
	// DefaultMTU. It bounds frames of gso_type NONE both ways.
	MTU int
	// MaxPendingFrames and MaxPendingBytes bound Deliver's queue; 0
	// means the default, and neither may exceed it.
	MaxPendingFrames int
	MaxPendingBytes  int
	Logger           *slog.Logger
}

// Errors Deliver returns; each frame it refuses is also counted in Stats.
var (
	// ErrInactive: the guest's driver is not running (before boot, after
	// a reset, or once it broke a queue). Frames are dropped until it is.
	ErrInactive = errors.New("virtio-net: the guest's driver is not running; frame dropped")
	// ErrFrameSize: the frame is shorter than an Ethernet header or
	// longer than the MTU allows (MaxGSOFrameLen for a super-segment).
	ErrFrameSize = errors.New("virtio-net: frame size outside the device's bounds; segment it or keep it within the MTU")
	// ErrOffload: the frame asks for an offload the guest did not accept
	// (GuestOffloads) or that does not fit it; segment it in software.
	ErrOffload = errors.New("virtio-net: the guest did not accept this frame's offload; segment in software")
	// ErrQueueFull: the guest is not taking frames as fast as they come
	// and the pending queue is at its bound.
	ErrQueueFull = errors.New("virtio-net: guest receive queue full; frame dropped")
)

// Stats counts the device's traffic and every frame it dropped, by reason.
type Stats struct {
	TxFrames, TxBytes uint64
	// TxMalformed: a chain with writable buffers, a short header, flags
	// or offsets the guest did not negotiate or that point outside the
	// frame, a runt frame.
	TxMalformed uint64
	// TxTooBig: a frame past the MTU or MaxGSOFrameLen.
	TxTooBig uint64
	// TxBackendErrors: Transmit returned an error.
	TxBackendErrors uint64

	RxFrames, RxBytes uint64
	// RxInactive, RxFrameSize, RxOffload, RxQueueFull: Deliver refused
	// the frame (ErrInactive, ErrFrameSize, ErrOffload, ErrQueueFull).
	// RxInactive also counts frames pending at a reset.
	RxInactive, RxFrameSize, RxOffload, RxQueueFull uint64
	// RxNoRoom: the guest's receive buffers could not hold the frame
	// (without mergeable buffers a chain smaller than the frame, with
	// them more chains than the ring holds).
	RxNoRoom uint64
	// Interrupts raised for used buffers.
	Interrupts uint64
}

type counters struct {
	txFrames, txBytes, txMalformed, txTooBig, txBackendErrors          atomic.Uint64
	rxFrames, rxBytes, rxInactive, rxFrameSize, rxOffload, rxQueueFull atomic.Uint64
	rxNoRoom, interrupts                                               atomic.Uint64
}

// pendingFrame is a frame Deliver copied, waiting for receive buffers.
type pendingFrame struct {
	h    Header
	data []byte
}

// Device is a virtio-net device with one queue pair. It implements
// virtio.Device.
type Device struct {
	backend     Backend
	caps        Capabilities
	mac         [6]byte
	mtu         int
	maxFrames   int
	maxBytes    int
	log         *slog.Logger
	txIRQDelay  time.Duration
	stats       counters
	kick        chan struct{}
	guestOffl   atomic.Pointer[GuestOffloads] // nil while inactive
	lastWarnSec atomic.Int64

	// memMu is held by the worker while it uses the queues and the guest
	// memory behind them, one pass at a time. The transport configures
	// queues only while no worker runs; the package's tests take it to
	// play the guest driver on another goroutine, whose ring accesses a
	// real driver orders with barriers the race detector cannot see.
	// Lock order: memMu, then mu.
	memMu sync.Mutex

	// mu guards the fields below.
	mu           sync.Mutex
	active       bool           // between Activate and Reset, until the driver breaks a queue
	stop, done   chan struct{}  // the last worker's; stop is nil while not activated, done if none ran
	paused       bool           // activated, with no worker running (Pause)
	w            *worker        // the activation's worker, kept across Pause
	pending      []pendingFrame // FIFO
	pendingBytes int
	// gen counts deactivations, so that a Deliver that reserved room
	// before a reset does not add its frame to the next activation.
	gen uint64
}

var _ virtio.Device = (*Device)(nil)

// New returns a device in front of backend.
func New(backend Backend, opts Options) (*Device, error) {
	if backend == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	if opts.MAC == ([6]byte{}) || opts.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net: MAC %x must be unicast and not all zero", opts.MAC)
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < MinMTU || mtu > MaxMTU {
		return nil, fmt.Errorf("virtio-net: MTU %d outside [%d, %d]", mtu, MinMTU, MaxMTU)
	}
	caps := backend.Capabilities()
	if caps.TxTSO && !caps.TxChecksum {
		return nil, errors.New("virtio-net: a backend taking TSO frames must take partial checksums (TxChecksum)")
	}
	bound := func(v, def int, what string) (int, error) {
		if v == 0 {
			return def, nil
		}
		if v < 0 || v > def {
			return 0, fmt.Errorf("virtio-net: %s %d outside [1, %d]", what, v, def)
		}
		return v, nil
	}
	maxFrames, err := bound(opts.MaxPendingFrames, DefaultMaxPendingFrames, "MaxPendingFrames")
	if err != nil {
		return nil, err
	}
	maxBytes, err := bound(opts.MaxPendingBytes, DefaultMaxPendingBytes, "MaxPendingBytes")
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{
		backend: backend, caps: caps, mac: opts.MAC, mtu: mtu,
		maxFrames: maxFrames, maxBytes: maxBytes, log: log,
		txIRQDelay: defaultTxIRQDelay,
		kick:       make(chan struct{}, 1),
	}, nil
}

// ID implements virtio.Device.
func (d *Device) ID() virtio.DeviceID { return virtio.IDNet }

// Features implements virtio.Device. VIRTIO_F_EVENT_IDX is the
// transport's to offer (it does not, for now); no control queue, no
// multiqueue.
func (d *Device) Features() uint64 {
	f := uint64(1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_MTU | 1<<VIRTIO_NET_F_STATUS |
		1<<VIRTIO_NET_F_MRG_RXBUF | 1<<VIRTIO_NET_F_GUEST_CSUM)
	if d.caps.TxChecksum {
		f |= 1 << VIRTIO_NET_F_CSUM
	}
	if d.caps.TxTSO {
		f |= 1<<VIRTIO_NET_F_HOST_TSO4 | 1<<VIRTIO_NET_F_HOST_TSO6
	}
	if d.caps.RxTSO {
		f |= 1<<VIRTIO_NET_F_GUEST_TSO4 | 1<<VIRTIO_NET_F_GUEST_TSO6
	}
	return f
}

// QueueSizes implements virtio.Device: receiveq1 and transmitq1.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize, queueSize} }

// configSize is the part of struct virtio_net_config the device fills
// (§5.1.4):
//
//	u8   mac[6]               @0
//	le16 status               @6   VIRTIO_NET_S_LINK_UP
//	le16 max_virtqueue_pairs  @8   1 (meaningful with VIRTIO_NET_F_MQ only)
//	le16 mtu                  @10
const configSize = 12

func (d *Device) config() []byte {
	c := make([]byte, configSize)
	copy(c[0:6], d.mac[:])
	binary.LittleEndian.PutUint16(c[6:], VIRTIO_NET_S_LINK_UP)
	binary.LittleEndian.PutUint16(c[8:], 1)
	binary.LittleEndian.PutUint16(c[10:], uint16(d.mtu))
	return c
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	virtio.ReadConfigWindow(d.config(), off, data)
}

// WriteConfig implements virtio.Device. The configuration is read-only:
// the MAC is writable only through the control queue's
// VIRTIO_NET_CTRL_MAC_ADDR_SET, which the device does not offer.
func (d *Device) WriteConfig(uint64, []byte) {}

// GuestOffloads returns what the guest's driver accepted, and false while
// it is not running. A backend asks before delivering a super-segment or
// a frame relying on DataValid.
func (d *Device) GuestOffloads() (GuestOffloads, bool) {
	if g := d.guestOffl.Load(); g != nil {
		return *g, true
	}
	return GuestOffloads{}, false
}

// MTU is the MTU the device offers.
func (d *Device) MTU() int { return d.mtu }

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		TxFrames: s.txFrames.Load(), TxBytes: s.txBytes.Load(),
		TxMalformed: s.txMalformed.Load(), TxTooBig: s.txTooBig.Load(), TxBackendErrors: s.txBackendErrors.Load(),
		RxFrames: s.rxFrames.Load(), RxBytes: s.rxBytes.Load(),
		RxInactive: s.rxInactive.Load(), RxFrameSize: s.rxFrameSize.Load(), RxOffload: s.rxOffload.Load(),
		RxQueueFull: s.rxQueueFull.Load(), RxNoRoom: s.rxNoRoom.Load(), Interrupts: s.interrupts.Load(),
	}
}

// Activate implements virtio.Device: it starts the worker.
func (d *Device) Activate(a virtio.Activation) error {
	if len(a.Queues) != 2 || !a.Queues[rxQueue].Ready || !a.Queues[txQueue].Ready {
		return errors.New("virtio-net: receiveq1 and transmitq1 must both be set up")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		return errors.New("virtio-net: already active")
	}
	g := guestOffloads(a.Features)
	w := &worker{d: d, act: a, rx: a.Queues[rxQueue], rxSize: int(a.Queues[rxQueue].Size),
		tx: a.Queues[txQueue], guest: g,
		txCsum: a.Features&(1<<VIRTIO_NET_F_CSUM) != 0,
		tso4:   a.Features&(1<<VIRTIO_NET_F_HOST_TSO4) != 0,
		tso6:   a.Features&(1<<VIRTIO_NET_F_HOST_TSO6) != 0,
	}
	d.active, d.paused, d.w = true, a.Paused, w
	d.stop, d.done = make(chan struct{}), nil
	d.guestOffl.Store(&g)
	if !a.Paused {
		d.startLocked()
	}
	d.wake()
	return nil
}

// startLocked starts the activation's worker.
//
// The caller holds d.mu.
func (d *Device) startLocked() {
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.w.run(d.stop, d.done)
}

// guestOffloads reads what the driver accepted. TSO needs GUEST_CSUM
// (§5.1.3.1): a super-segment always carries a partial checksum, which
// the device cannot complete for the guest without segmenting, so a
// driver that took TSO alone is treated as having taken neither.
func guestOffloads(features uint64) GuestOffloads {
	has := func(bit int) bool { return features&(1<<bit) != 0 }
	csum := has(VIRTIO_NET_F_GUEST_CSUM)
	return GuestOffloads{
		Checksum:  csum,
		TSO4:      csum && has(VIRTIO_NET_F_GUEST_TSO4),
		TSO6:      csum && has(VIRTIO_NET_F_GUEST_TSO6),
		Mergeable: has(VIRTIO_NET_F_MRG_RXBUF),
	}
}

// Notify implements virtio.Device: it wakes the worker, whichever queue
// the guest filled.
func (d *Device) Notify(int) { d.wake() }

func (d *Device) wake() {
	select {
	case d.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Reset implements virtio.Device: it stops the worker, waits for it and
// drops the frames pending for the guest.
func (d *Device) Reset() {
	d.mu.Lock()
	if d.stop == nil {
		d.mu.Unlock()
		return
	}
	if !d.paused {
		close(d.stop)
	}
	done := d.done
	d.stop, d.done, d.paused, d.w = nil, nil, false, nil
	d.deactivateLocked()
	d.mu.Unlock()
	if done != nil {
		<-done
	}
	// A kick left over from the old activation only costs the next
	// worker an empty pass.
}

// deactivateLocked makes Deliver refuse frames and drops the pending ones.
func (d *Device) deactivateLocked() {
	d.active = false
	d.gen++
	d.guestOffl.Store(nil)
	d.stats.rxInactive.Add(uint64(len(d.pending)))
	clear(d.pending)
	d.pending, d.pendingBytes = nil, 0
}

// warn logs at most once a second: a hostile guest must not flood the
// host's log.
func (d *Device) warn(msg string, args ...any) {
	now := time.Now().Unix()
	if last := d.lastWarnSec.Load(); last == now || !d.lastWarnSec.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn("virtio-net: "+msg, args...)
}
