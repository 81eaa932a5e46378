// Package blk implements the virtio-blk device (virtio 1.2 §5.2): it serves
// the guest's /dev/vda from a Backend, in pyro the layered copy-on-write
// disk of vmm/disk over an environment's read-only base image.
//
// It sits between the virtio-mmio transport, which hands it virtqueues, and
// the Backend. Requests arrive on one queue as descriptor chains:
//
//	struct virtio_blk_req {
//		le32 type; le32 reserved; le64 sector;  // device-readable header
//		u8 data[];                              // readable (OUT) or writable (IN)
//		u8 status;                              // device-writable, last byte
//	};
//
// A worker goroutine drains the queue when notified, performs each request
// against the Backend, writes the status byte and returns the chain. For a
// snapshot it pauses between chains (Pause): what it has not popped stays
// in the ring for Resume, or for the device restored from the snapshot. Every
// guest-supplied sector, length and segment count is checked against the
// disk: a request outside it fails with VIRTIO_BLK_S_IOERR and touches
// nothing; a chain too malformed to carry a status byte breaks the queue
// (DEVICE_NEEDS_RESET).
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/pyro-mcp/pyro/virtio"
)

// Backend is the storage behind the device.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	Flush() error
	Discard(off, n int64) error
	WriteZeroes(off, n int64) error
}

// Request types and status values.
const (
	VIRTIO_BLK_T_IN           = 0
	VIRTIO_BLK_T_OUT          = 1
	VIRTIO_BLK_T_FLUSH        = 4
	VIRTIO_BLK_T_GET_ID       = 8
	VIRTIO_BLK_T_DISCARD      = 11
	VIRTIO_BLK_T_WRITE_ZEROES = 13

	VIRTIO_BLK_S_OK     = 0
	VIRTIO_BLK_S_IOERR  = 1
	VIRTIO_BLK_S_UNSUPP = 2
)

// Feature bits.
const (
	VIRTIO_BLK_F_SEG_MAX      = 2
	VIRTIO_BLK_F_RO           = 5
	VIRTIO_BLK_F_BLK_SIZE     = 6
	VIRTIO_BLK_F_FLUSH        = 9
	VIRTIO_BLK_F_DISCARD      = 13
	VIRTIO_BLK_F_WRITE_ZEROES = 14
)

const (
	sectorSize  = 512
	headerSize  = 16
	idLen       = 20 // VIRTIO_BLK_ID_BYTES
	queueSize   = 256
	segMax      = queueSize - 2 // data descriptors per request: all but header and status
	maxSegments = 128           // discard/write-zeroes segments per request
	segmentSize = 16            // struct virtio_blk_discard_write_zeroes
	// maxDiscardSectors bounds one discard or write-zeroes segment (1 GiB).
	maxDiscardSectors = 1 << 21
)

// Options configure a device.
type Options struct {
	ReadOnly bool
	// ID is returned by VIRTIO_BLK_T_GET_ID (the guest's
	// /sys/block/vda/serial); at most 20 bytes.
	ID     string
	Logger *slog.Logger
}

// Device is a virtio-blk device.
type Device struct {
	backend Backend
	opts    Options
	log     *slog.Logger
	size    int64 // bytes, a multiple of sectorSize

	// mu guards the worker's lifecycle.
	mu     sync.Mutex
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{} // the last worker's; nil if none ran
	act    virtio.Activation
	active bool
	paused bool // active, with no worker running (Pause)
	broken bool // the worker stopped on a broken queue, until the reset
}

var (
	_ virtio.Device         = (*Device)(nil)
	_ virtio.Pauser         = (*Device)(nil)
	_ virtio.StatefulDevice = (*Device)(nil)
)

// New returns a device serving backend, whose size is rounded down to whole
// sectors.
func New(backend Backend, opts Options) (*Device, error) {
	if len(opts.ID) > idLen {
		return nil, fmt.Errorf("virtio-blk ID %q is longer than %d bytes", opts.ID, idLen)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	size := backend.Size() &^ (sectorSize - 1)
	if size <= 0 {
		return nil, errors.New("virtio-blk backend is smaller than one sector")
	}
	return &Device{backend: backend, opts: opts, log: log, size: size}, nil
}

// ID implements virtio.Device.
func (d *Device) ID() virtio.DeviceID { return virtio.IDBlock }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	f := uint64(1<<VIRTIO_BLK_F_SEG_MAX | 1<<VIRTIO_BLK_F_BLK_SIZE | 1<<VIRTIO_BLK_F_FLUSH)
	if d.opts.ReadOnly {
		f |= 1 << VIRTIO_BLK_F_RO
	} else {
		f |= 1<<VIRTIO_BLK_F_DISCARD | 1<<VIRTIO_BLK_F_WRITE_ZEROES
	}
	return f
}

// QueueSizes implements virtio.Device: one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize} }

// config lays out struct virtio_blk_config.
func (d *Device) config() []byte {
	c := make([]byte, 60)
	le := binary.LittleEndian
	le.PutUint64(c[0:], uint64(d.size/sectorSize)) // capacity
	le.PutUint32(c[12:], segMax)                   // seg_max
	le.PutUint32(c[20:], 4096)                     // blk_size: ext4 block
	le.PutUint32(c[36:], maxDiscardSectors)        // max_discard_sectors
	le.PutUint32(c[40:], maxSegments)              // max_discard_seg
	le.PutUint32(c[44:], 4096/sectorSize)          // discard_sector_alignment
	le.PutUint32(c[48:], maxDiscardSectors)        // max_write_zeroes_sectors
	le.PutUint32(c[52:], maxSegments)              // max_write_zeroes_seg
	c[56] = 1                                      // write_zeroes_may_unmap
	return c
}

// ReadConfig implements virtio.Device.
func (d *Device) ReadConfig(off uint64, data []byte) {
	virtio.ReadConfigWindow(d.config(), off, data)
}

// WriteConfig implements virtio.Device; the configuration is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: it starts the worker.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return errors.New("virtio-blk: already active")
	}
	if len(a.Queues) != 1 || !a.Queues[0].Ready {
		return errors.New("virtio-blk: the request queue is not set up")
	}
	d.act, d.active, d.paused, d.broken = a, true, a.Paused, false
	d.kick = make(chan struct{}, 1)
	d.done = nil
	if !a.Paused {
		d.startLocked()
	}
	return nil
}

// startLocked starts a worker on the request queue.
//
// The caller holds d.mu.
func (d *Device) startLocked() {
	d.stop = make(chan struct{})
	d.done = make(chan struct{})
	go d.worker(d.act.Queues[0], d.kick, d.stop, d.done)
}

// Pause implements virtio.Pauser: the worker finishes the request in hand
// and stops; requests it has not popped stay in the ring.
func (d *Device) Pause() {
	d.mu.Lock()
	if !d.active || d.paused {
		d.mu.Unlock()
		return
	}
	d.paused = true
	close(d.stop)
	done := d.done
	d.mu.Unlock()
	<-done
}

// Resume implements virtio.Pauser: a worker serves whatever the driver
// made available meanwhile. After a broken queue it stays stopped.
func (d *Device) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active || !d.paused || d.broken {
		return
	}
	d.paused = false
	d.startLocked()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Notify implements virtio.Device.
func (d *Device) Notify(int) {
	d.mu.Lock()
	kick := d.kick
	d.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default: // a kick is already pending
		}
	}
}

// Reset implements virtio.Device: it stops the worker and waits for it.
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
	d.active, d.paused, d.kick = false, false, nil
	d.mu.Unlock()
	if done != nil {
		<-done
	}
}

// fail stops the worker for good after the driver broke the queue.
func (d *Device) fail(err error) {
	d.mu.Lock()
	d.broken = true
	d.mu.Unlock()
	d.act.Fail(err)
}

func (d *Device) worker(q *virtio.Queue, kick, stop, done chan struct{}) {
	defer close(done)
	defer d.act.Recover("virtio-blk worker")
	for {
		select {
		case <-stop:
			return
		case <-kick:
		}
		interrupt, stopped := false, false
		for !stopped {
			c, ok, err := q.Pop()
			if err != nil {
				d.fail(err)
				return
			}
			if !ok {
				break
			}
			written, err := d.process(&c)
			if err != nil {
				d.fail(err)
				return
			}
			irq, err := q.Push(c.Head, written)
			if err != nil {
				d.fail(err)
				return
			}
			interrupt = interrupt || irq
			select {
			case <-stop: // a pause: the rest waits in the ring
				stopped = true
			default:
			}
		}
		if interrupt {
			d.act.Interrupt()
		}
		if stopped {
			return
		}
	}
}

// process performs one request and returns how many bytes it wrote to the
// chain's writable buffers. An error means the chain cannot even carry a
// status byte.
func (d *Device) process(c *virtio.Chain) (uint32, error) {
	w := virtio.NewPieces(c.Writable)
	status, ok := w.TakeLast(1)
	if !ok {
		return 0, fmt.Errorf("%w: virtio-blk request without a status byte", virtio.ErrQueue)
	}
	r := virtio.NewPieces(c.Readable)
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		status[0] = VIRTIO_BLK_S_IOERR
		return 1, nil
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	st, n := d.do(typ, sector, r, w)
	status[0] = st
	return uint32(n) + 1, nil
}

// do runs request typ and returns its status and the data bytes written to
// the guest.
func (d *Device) do(typ uint32, sector uint64, r, w *virtio.Pieces) (byte, int) {
	switch typ {
	case VIRTIO_BLK_T_IN:
		off, ok := d.span(sector, w.Len())
		if !ok {
			return VIRTIO_BLK_S_IOERR, 0
		}
		n := w.Len()
		bufs, _ := w.Take(n)
		for _, b := range bufs {
			if _, err := d.backend.ReadAt(b, off); err != nil {
				d.log.Warn("virtio-blk: read failed", "offset", off, "err", err)
				return VIRTIO_BLK_S_IOERR, 0
			}
			off += int64(len(b))
		}
		return VIRTIO_BLK_S_OK, n
	case VIRTIO_BLK_T_OUT:
		if d.opts.ReadOnly {
			return VIRTIO_BLK_S_IOERR, 0
		}
		off, ok := d.span(sector, r.Len())
		if !ok {
			return VIRTIO_BLK_S_IOERR, 0
		}
		bufs, _ := r.Take(r.Len())
		for _, b := range bufs {
			if _, err := d.backend.WriteAt(b, off); err != nil {
				d.log.Warn("virtio-blk: write failed", "offset", off, "err", err)
				return VIRTIO_BLK_S_IOERR, 0
			}
			off += int64(len(b))
		}
		return VIRTIO_BLK_S_OK, 0
	case VIRTIO_BLK_T_FLUSH:
		if err := d.backend.Flush(); err != nil {
			d.log.Warn("virtio-blk: flush failed", "err", err)
			return VIRTIO_BLK_S_IOERR, 0
		}
		return VIRTIO_BLK_S_OK, 0
	case VIRTIO_BLK_T_GET_ID:
		var id [idLen]byte
		copy(id[:], d.opts.ID)
		if w.Len() < idLen {
			return VIRTIO_BLK_S_IOERR, 0
		}
		n, _ := w.Write(id[:])
		return VIRTIO_BLK_S_OK, n
	case VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES:
		if d.opts.ReadOnly {
			return VIRTIO_BLK_S_IOERR, 0
		}
		return d.segments(typ, r), 0
	}
	return VIRTIO_BLK_S_UNSUPP, 0
}

// span checks that n bytes from sector lie inside the disk and are whole
// sectors, and returns the byte offset.
func (d *Device) span(sector uint64, n int) (int64, bool) {
	if n%sectorSize != 0 || sector > uint64(d.size)/sectorSize {
		return 0, false
	}
	off := int64(sector) * sectorSize
	return off, int64(n) <= d.size-off
}

// segments performs a discard or write-zeroes request's segments.
func (d *Device) segments(typ uint32, r *virtio.Pieces) byte {
	n := r.Len()
	if n == 0 || n%segmentSize != 0 || n/segmentSize > maxSegments {
		return VIRTIO_BLK_S_IOERR
	}
	var seg [segmentSize]byte
	for r.Len() > 0 {
		io.ReadFull(r, seg[:])
		sector := binary.LittleEndian.Uint64(seg[0:])
		count := binary.LittleEndian.Uint32(seg[8:])
		flags := binary.LittleEndian.Uint32(seg[12:])
		if count > maxDiscardSectors || flags&^1 != 0 || (typ == VIRTIO_BLK_T_DISCARD && flags != 0) {
			return VIRTIO_BLK_S_UNSUPP
		}
		off, ok := d.span(sector, int(count)*sectorSize)
		if !ok {
			return VIRTIO_BLK_S_IOERR
		}
		var err error
		if typ == VIRTIO_BLK_T_DISCARD {
			err = d.backend.Discard(off, int64(count)*sectorSize)
		} else {
			err = d.backend.WriteZeroes(off, int64(count)*sectorSize)
		}
		if err != nil {
			d.log.Warn("virtio-blk: discard/write-zeroes failed", "offset", off, "err", err)
			return VIRTIO_BLK_S_IOERR
		}
	}
	return VIRTIO_BLK_S_OK
}

// The device's state for a snapshot (virtio.StatefulDevice): nothing it
// keeps changes while it runs, but a restored guest must find the disk it
// knew, so the state is the disk's size and whether it is read-only, and
// a restore into a device that differs fails.
//
//	version u8 (1)  size u64 (bytes)  flags u8 (bit 0 read-only)
const stateLen = 1 + 8 + 1

// SaveState implements virtio.StatefulDevice.
func (d *Device) SaveState() ([]byte, error) {
	b := make([]byte, stateLen)
	b[0] = 1
	binary.LittleEndian.PutUint64(b[1:], uint64(d.size))
	if d.opts.ReadOnly {
		b[9] = 1
	}
	return b, nil
}

// RestoreState implements virtio.StatefulDevice: the saved disk must be
// this one's size and mode.
func (d *Device) RestoreState(b []byte) error {
	if len(b) != stateLen || b[0] != 1 || b[9]&^1 != 0 {
		return fmt.Errorf("virtio-blk: saved state of %d bytes is not version 1 (%d bytes)", len(b), stateLen)
	}
	if size := binary.LittleEndian.Uint64(b[1:]); size != uint64(d.size) {
		return fmt.Errorf("virtio-blk: the saved disk had %d bytes, this one has %d", size, d.size)
	}
	if ro := b[9] == 1; ro != d.opts.ReadOnly {
		return fmt.Errorf("virtio-blk: the saved disk was read-only=%v, this one is read-only=%v", ro, d.opts.ReadOnly)
	}
	return nil
}
