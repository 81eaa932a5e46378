package virtio

// Split virtqueues (virtio 1.2 §2.7).
//
// A queue of Size entries is three areas of guest memory the driver
// allocates:
//
//	descriptor table  Size × 16 bytes, 16-aligned: {addr u64, len u32, flags u16, next u16}
//	available ring    {flags u16, idx u16, ring[Size] u16, used_event u16}, 2-aligned, driver-written
//	used ring         {flags u16, idx u16, ring[Size] {id u32, len u32}, avail_event u16}, 4-aligned, device-written
//
// The driver chains descriptors (VIRTQ_DESC_F_NEXT), device-readable ones
// first, device-writable ones after (VIRTQ_DESC_F_WRITE), puts the head in
// the available ring and bumps avail.idx. The device pops heads in order,
// processes the chain, writes {head, bytes written} to the used ring, bumps
// used.idx and interrupts unless the driver said not to.
//
// With VIRTIO_F_EVENT_IDX (§2.7.7, §2.7.10) the two ring flags give way to
// indices: the driver writes used_event, "interrupt me once used.idx passes
// this", and the device writes avail_event, "notify me once avail.idx
// passes this". The device here publishes avail_event as the next entry it
// will pop, after every pop and whenever it finds the ring empty, so a
// driver notifies only when it adds to a ring the device has caught up
// with; a driver batching its work (Linux re-arms used_event only after it
// has taken what was used) is interrupted once per batch, not per chain.
//
// Ordering: pyro runs on x86-64, where stores are not reordered with other
// stores nor loads with other loads, and Go's compiler keeps memory
// operations in program order; the one reordering x86 allows, a later load
// passing an earlier store, matters only where the device publishes used.idx
// and then reads the driver's interrupt-suppression flag, and a full fence
// sits there.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
)

// Descriptor flags.
const (
	VIRTQ_DESC_F_NEXT     = 1
	VIRTQ_DESC_F_WRITE    = 2
	VIRTQ_DESC_F_INDIRECT = 4
)

// Ring flags.
const (
	VIRTQ_AVAIL_F_NO_INTERRUPT = 1
	VIRTQ_USED_F_NO_NOTIFY     = 1
)

// MaxQueueSize is the largest queue size the spec allows (2^15).
const MaxQueueSize = 32768

const descSize = 16

// Queue is the device's view of one split virtqueue.
//
// The transport configures it (Size, addresses, Ready) while the driver
// sets the queue up; afterwards only the device's worker uses it. It is not
// safe for concurrent use.
type Queue struct {
	MaxSize uint16 // largest size the device supports
	Size    uint16 // size the driver chose
	Ready   bool

	DescAddr  uint64
	AvailAddr uint64
	UsedAddr  uint64

	mem       Memory
	desc      []byte // descriptor table, checked at activation
	avail     []byte
	used      []byte
	lastAvail uint16 // next available-ring entry to pop
	usedIdx   uint16 // device's copy of used.idx
	eventIdx  bool   // VIRTIO_F_EVENT_IDX negotiated
}

// ErrQueue marks a virtqueue the driver set up or used against the rules.
var ErrQueue = errors.New("virtqueue protocol violation")

func queueErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrQueue}, args...)...)
}

// activate checks the queue's layout against guest memory and binds it;
// eventIdx says whether the driver accepted VIRTIO_F_EVENT_IDX.
func (q *Queue) activate(mem Memory, eventIdx bool) error {
	return q.bind(mem, eventIdx, 0, 0)
}

// restore binds the queue as activate does, but with the ring indices a
// snapshot saved: the device pops from lastAvail and pushes at usedIdx,
// as the device it replaces would have. The rings themselves are in the
// restored guest memory.
func (q *Queue) restore(mem Memory, eventIdx bool, lastAvail, usedIdx uint16) error {
	return q.bind(mem, eventIdx, lastAvail, usedIdx)
}

// bind checks the queue's layout against guest memory and binds it with
// the given ring indices. On error the queue is left unbound.
func (q *Queue) bind(mem Memory, eventIdx bool, lastAvail, usedIdx uint16) error {
	q.mem, q.desc, q.avail, q.used = nil, nil, nil, nil
	if q.Size == 0 || q.Size > q.MaxSize || q.Size&(q.Size-1) != 0 {
		return queueErr("size %d (max %d, must be a power of two)", q.Size, q.MaxSize)
	}
	if q.DescAddr%16 != 0 || q.AvailAddr%2 != 0 || q.UsedAddr%4 != 0 {
		return queueErr("misaligned areas: desc %#x avail %#x used %#x", q.DescAddr, q.AvailAddr, q.UsedAddr)
	}
	n := uint64(q.Size)
	var err error
	var desc, avail, used []byte
	if desc, err = mem.Slice(q.DescAddr, descSize*n); err != nil {
		return queueErr("descriptor table: %v", err)
	}
	if avail, err = mem.Slice(q.AvailAddr, 6+2*n); err != nil {
		return queueErr("available ring: %v", err)
	}
	if used, err = mem.Slice(q.UsedAddr, 6+8*n); err != nil {
		return queueErr("used ring: %v", err)
	}
	q.mem, q.desc, q.avail, q.used = mem, desc, avail, used
	q.lastAvail, q.usedIdx = lastAvail, usedIdx
	q.eventIdx = eventIdx
	if eventIdx {
		q.setAvailEvent(lastAvail)
	}
	return nil
}

// reset returns the queue to its power-on state.
func (q *Queue) reset() {
	*q = Queue{MaxSize: q.MaxSize}
}

// Buffer is one device-readable or device-writable region of a chain, as
// host bytes backing guest memory.
type Buffer []byte

// Chain is one request: the buffers of a descriptor chain, in order.
type Chain struct {
	Head     uint16
	Readable []Buffer // driver to device
	Writable []Buffer // device to driver
}

// ReadableLen is the total length of the device-readable buffers.
func (c *Chain) ReadableLen() int { return buffersLen(c.Readable) }

// WritableLen is the total length of the device-writable buffers.
func (c *Chain) WritableLen() int { return buffersLen(c.Writable) }

func buffersLen(bs []Buffer) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// Pending reports whether the driver has made chains available that the
// device has not popped.
func (q *Queue) Pending() bool {
	return q.Ready && q.avail != nil && q.availIdx() != q.lastAvail
}

func (q *Queue) availIdx() uint16 { return binary.LittleEndian.Uint16(q.avail[2:]) }

// Posted is the driver's avail.idx: how many chains it has made available
// since the queue started, modulo 2^16; 0 on a queue not set up. The
// driver writes it: a device may compare it with an earlier value to see
// that the driver added chains, and trust nothing more of it.
func (q *Queue) Posted() uint16 {
	if !q.Ready || q.avail == nil {
		return 0
	}
	return q.availIdx()
}

// NotifyNext asks the driver to notify the device when it next makes a
// chain available, even where VIRTIO_F_EVENT_IDX would otherwise let it
// skip that notification (avail_event then names the next entry).
func (q *Queue) NotifyNext() {
	if q.Ready && q.avail != nil && q.eventIdx {
		q.setAvailEvent(q.availIdx())
		fence()
	}
}

// Pop returns the next available chain, or ok=false when there is none. An
// error means the driver broke the protocol; the queue must not be used
// again until reset.
func (q *Queue) Pop() (c Chain, ok bool, err error) {
	if !q.Ready || q.avail == nil {
		return Chain{}, false, nil
	}
	idx := q.availIdx()
	if idx == q.lastAvail {
		if !q.eventIdx {
			return Chain{}, false, nil
		}
		// Ask to be notified of the next entry, then look again: the
		// driver may have added one after we read avail.idx but
		// before it could see the new avail_event, and it will not
		// notify for that one.
		q.setAvailEvent(q.lastAvail)
		fence()
		if idx = q.availIdx(); idx == q.lastAvail {
			return Chain{}, false, nil
		}
	}
	if uint16(idx-q.lastAvail) > q.Size {
		return Chain{}, false, queueErr("avail.idx %d is %d entries ahead of the device's %d, more than the queue size %d", idx, uint16(idx-q.lastAvail), q.lastAvail, q.Size)
	}
	// The entry must be read after avail.idx; x86 keeps loads in order.
	head := binary.LittleEndian.Uint16(q.avail[4+2*uint64(q.lastAvail%q.Size):])
	q.lastAvail++
	if q.eventIdx {
		q.setAvailEvent(q.lastAvail)
	}
	c, err = q.walk(head)
	if err != nil {
		return Chain{}, false, err
	}
	return c, true, nil
}

// walk follows the chain starting at head.
func (q *Queue) walk(head uint16) (Chain, error) {
	c := Chain{Head: head}
	i := head
	for n := uint16(0); ; n++ {
		if n == q.Size {
			return Chain{}, queueErr("chain from head %d is longer than the queue (%d): a loop", head, q.Size)
		}
		if i >= q.Size {
			return Chain{}, queueErr("descriptor index %d outside a queue of %d", i, q.Size)
		}
		d := q.desc[descSize*uint64(i):]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&VIRTQ_DESC_F_INDIRECT != 0 {
			return Chain{}, queueErr("indirect descriptor %d, but VIRTIO_F_INDIRECT_DESC was not offered", i)
		}
		buf, err := q.mem.Slice(addr, uint64(length))
		if err != nil {
			return Chain{}, queueErr("descriptor %d: %v", i, err)
		}
		if flags&VIRTQ_DESC_F_WRITE != 0 {
			c.Writable = append(c.Writable, buf)
		} else {
			if len(c.Writable) > 0 {
				return Chain{}, queueErr("descriptor %d is device-readable after a device-writable one", i)
			}
			c.Readable = append(c.Readable, buf)
		}
		if flags&VIRTQ_DESC_F_NEXT == 0 {
			return c, nil
		}
		i = next
	}
}

// Unpop gives back the last n chains Pop returned, which the device has
// not pushed, so that the next Pops return them again: for a device that
// holds popped chains it has no use for yet (receive buffers waiting for
// a packet) and must leave the ring describing everything it has not
// returned, as when it pauses for a snapshot. The chains must be the last
// n popped, and none of them pushed.
func (q *Queue) Unpop(n int) error {
	if n == 0 {
		return nil
	}
	if q.avail == nil || n < 0 || n > int(q.Size) {
		return queueErr("unpop of %d chains from a queue of %d", n, q.Size)
	}
	q.lastAvail -= uint16(n)
	if q.eventIdx {
		q.setAvailEvent(q.lastAvail)
	}
	return nil
}

// Push returns chain head to the driver with written bytes of device-writable
// data, and reports whether the driver wants an interrupt for it.
func (q *Queue) Push(head uint16, written uint32) (interrupt bool, err error) {
	if q.used == nil {
		return false, queueErr("push to a queue that is not active")
	}
	if head >= q.Size {
		return false, queueErr("push of head %d outside a queue of %d", head, q.Size)
	}
	e := q.used[4+8*uint64(q.usedIdx%q.Size):]
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	old := q.usedIdx
	q.usedIdx++
	// The element must be visible before the index that publishes it: x86
	// does not reorder stores.
	binary.LittleEndian.PutUint16(q.used[2:], q.usedIdx)
	// The driver's wish must be read after used.idx is published, or a
	// driver that just re-enabled interrupts could miss this one.
	fence()
	if q.eventIdx {
		return needEvent(q.usedEvent(), q.usedIdx, old), nil
	}
	return binary.LittleEndian.Uint16(q.avail[0:])&VIRTQ_AVAIL_F_NO_INTERRUPT == 0, nil
}

// needEvent reports whether moving an index from prev to next crosses event,
// that is whether event is in [prev, next) modulo 2^16 (§2.7.7.2's
// vring_need_event).
func needEvent(event, next, prev uint16) bool {
	return next-event-1 < next-prev
}

// usedEvent is the driver's used_event: the last entry of the available
// ring.
func (q *Queue) usedEvent() uint16 {
	return binary.LittleEndian.Uint16(q.avail[4+2*uint64(q.Size):])
}

// setAvailEvent writes the device's avail_event: the last entry of the
// used ring.
func (q *Queue) setAvailEvent(v uint16) {
	binary.LittleEndian.PutUint16(q.used[4+8*uint64(q.Size):], v)
}

var fenceWord atomic.Uint32

// fence is a full memory barrier: on x86-64 a locked read-modify-write.
func fence() { fenceWord.Add(0) }

// String describes the ring indices as the device and the driver see them,
// for diagnosing a stalled queue: chains the driver made available that
// the device has not popped, used entries the driver may not have seen,
// and whether the driver suppressed interrupts.
func (q *Queue) String() string {
	if !q.Ready || q.avail == nil || q.used == nil {
		return fmt.Sprintf("queue(size %d, not active)", q.Size)
	}
	if q.eventIdx {
		return fmt.Sprintf("queue(size %d: avail.idx %d, popped %d, used.idx %d, used_event %d, avail_event %d)",
			q.Size, q.availIdx(), q.lastAvail, binary.LittleEndian.Uint16(q.used[2:]),
			q.usedEvent(), binary.LittleEndian.Uint16(q.used[4+8*uint64(q.Size):]))
	}
	return fmt.Sprintf("queue(size %d: avail.idx %d, popped %d, used.idx %d, avail.flags %#x, used.flags %#x)",
		q.Size, q.availIdx(), q.lastAvail, binary.LittleEndian.Uint16(q.used[2:]),
		binary.LittleEndian.Uint16(q.avail[0:]), binary.LittleEndian.Uint16(q.used[0:]))
}

// Progress returns how many chains the device has popped and pushed, each
// modulo 2^16: they change whenever the queue moves.
func (q *Queue) Progress() (popped, pushed uint16) { return q.lastAvail, q.usedIdx }
