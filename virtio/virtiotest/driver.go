// Package virtiotest plays the guest's virtio driver against a device model
// with no VM: it owns a plain byte slice as guest memory, programs a
// virtio-mmio transport through its registers exactly as Linux's
// virtio_mmio driver does, builds descriptor chains (valid or deliberately
// broken) and reads back the used ring. Every device is unit-tested through
// it.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// Memory is guest memory backed by a byte slice at guest-physical 0.
type Memory struct {
	B []byte
}

// NewMemory returns size bytes of zeroed guest memory.
func NewMemory(size int) *Memory { return &Memory{B: make([]byte, size)} }

// Slice implements virtio.Memory with the same bounds rules as the VMM's.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	if addr > uint64(len(m.B)) || n > uint64(len(m.B))-addr {
		return nil, fmt.Errorf("guest range [%#x, +%#x) is not inside guest RAM", addr, n)
	}
	return m.B[addr : addr+n : addr+n], nil
}

// Driver is a guest driver bound to one transport.
type Driver struct {
	T      testing.TB
	MMIO   *virtio.MMIO
	Mem    *Memory
	Queues []*DriverQueue
	// Negotiated are the features Init accepted.
	Negotiated uint64

	mu   sync.Mutex
	irqs int
	next uint64 // bump allocator for guest memory
}

// IRQ is the interrupt callback to pass to virtio.NewMMIO; it counts.
func (d *Driver) IRQ() {
	d.mu.Lock()
	d.irqs++
	d.mu.Unlock()
}

// IRQs returns how many interrupts the device raised.
func (d *Driver) IRQs() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.irqs
}

// New returns a driver for dev on memSize bytes of fresh guest memory, with
// the transport built.
func New(t testing.TB, dev virtio.Device, memSize int) *Driver {
	d := &Driver{T: t, Mem: NewMemory(memSize), next: 0x1000}
	d.MMIO = virtio.NewMMIO(dev, d.Mem, d.IRQ, nil)
	return d
}

// Alloc reserves n bytes of guest memory aligned to align and returns the
// guest address.
func (d *Driver) Alloc(n, align uint64) uint64 {
	d.next = (d.next + align - 1) &^ (align - 1)
	a := d.next
	d.next += n
	if d.next > uint64(len(d.Mem.B)) {
		d.T.Fatalf("virtiotest: guest memory exhausted (%d bytes)", len(d.Mem.B))
	}
	return a
}

// Reg reads a transport register.
func (d *Driver) Reg(off uint64) uint32 {
	b := make([]byte, 4)
	d.MMIO.Read(off, b)
	return binary.LittleEndian.Uint32(b)
}

// SetReg writes a transport register.
func (d *Driver) SetReg(off uint64, v uint32) {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	d.MMIO.Write(off, b)
}

// Features reads the 64 feature bits the device offers.
func (d *Driver) Features() uint64 {
	d.SetReg(virtio.DeviceFeaturesSel, 0)
	lo := d.Reg(virtio.DeviceFeatures)
	d.SetReg(virtio.DeviceFeaturesSel, 1)
	hi := d.Reg(virtio.DeviceFeatures)
	return uint64(hi)<<32 | uint64(lo)
}

// Init runs the driver initialisation sequence (§3.1.1): reset, acknowledge,
// negotiate features (the device's offer ANDed with want), set up every
// queue at size qsize (or its maximum if smaller), and set DRIVER_OK. It
// fails the test if the device refuses.
func (d *Driver) Init(want uint64, qsize uint16) {
	d.T.Helper()
	if d.Reg(virtio.MagicValue) != 0x74726976 || d.Reg(virtio.Version) != 2 {
		d.T.Fatal("virtiotest: bad magic or version")
	}
	d.SetReg(virtio.Status, 0)
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE)
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER)
	feat := d.Features() & want
	d.SetReg(virtio.DriverFeaturesSel, 0)
	d.SetReg(virtio.DriverFeatures, uint32(feat))
	d.SetReg(virtio.DriverFeaturesSel, 1)
	d.SetReg(virtio.DriverFeatures, uint32(feat>>32))
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK)
	if d.Reg(virtio.Status)&virtio.FEATURES_OK == 0 {
		d.T.Fatalf("virtiotest: device refused features %#x", feat)
	}
	d.Negotiated = feat
	d.Queues = nil
	for i := 0; i < d.MMIO.NumQueues(); i++ {
		d.SetReg(virtio.QueueSel, uint32(i))
		max := uint16(d.Reg(virtio.QueueNumMax))
		size := min(qsize, max)
		q := d.newQueue(i, size)
		q.EventIdx = feat&(1<<virtio.VIRTIO_F_EVENT_IDX) != 0
		d.SetReg(virtio.QueueNum, uint32(size))
		d.SetReg(virtio.QueueDescLow, uint32(q.Desc))
		d.SetReg(virtio.QueueDescHigh, uint32(q.Desc>>32))
		d.SetReg(virtio.QueueDriverLow, uint32(q.Avail))
		d.SetReg(virtio.QueueDriverHigh, uint32(q.Avail>>32))
		d.SetReg(virtio.QueueDeviceLow, uint32(q.Used))
		d.SetReg(virtio.QueueDeviceHigh, uint32(q.Used>>32))
		d.SetReg(virtio.QueueReady, 1)
		d.Queues = append(d.Queues, q)
	}
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK|virtio.DRIVER_OK)
	if s := d.Reg(virtio.Status); s&virtio.DEVICE_NEEDS_RESET != 0 || s&virtio.DRIVER_OK == 0 {
		d.T.Fatalf("virtiotest: device did not activate (status %#x)", s)
	}
}

// DriverQueue is the driver's side of one virtqueue.
type DriverQueue struct {
	d                 *Driver
	Index             int
	Size              uint16
	Desc, Avail, Used uint64
	freeHead          uint16
	availIdx          uint16
	lastUsed          uint16
	seenIRQs          int
	// EventIdx is set when VIRTIO_F_EVENT_IDX was negotiated: TakeUsed
	// then re-arms used_event and KickPrepare honours avail_event.
	EventIdx bool
	kicked   uint16 // avail.idx at the last KickPrepare
}

func (d *Driver) newQueue(i int, size uint16) *DriverQueue {
	n := uint64(size)
	return &DriverQueue{
		d: d, Index: i, Size: size,
		Desc:  d.Alloc(16*n, 16),
		Avail: d.Alloc(6+2*n, 2),
		Used:  d.Alloc(6+8*n, 4),
	}
}

// Desc is one descriptor to write: Len bytes at Addr with Flags and Next.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// WriteDesc writes descriptor i raw, for building broken chains.
func (q *DriverQueue) WriteDesc(i uint16, d Desc) {
	b := q.d.Mem.B[q.Desc+16*uint64(i):]
	binary.LittleEndian.PutUint64(b[0:], d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
}

// Publish puts head in the available ring and bumps avail.idx.
func (q *DriverQueue) Publish(head uint16) {
	b := q.d.Mem.B
	binary.LittleEndian.PutUint16(b[q.Avail+4+2*uint64(q.availIdx%q.Size):], head)
	q.availIdx++
	binary.LittleEndian.PutUint16(b[q.Avail+2:], q.availIdx)
}

// SetAvailIdx writes avail.idx directly, for tests of a driver running ahead.
func (q *DriverQueue) SetAvailIdx(v uint16) {
	binary.LittleEndian.PutUint16(q.d.Mem.B[q.Avail+2:], v)
}

// SuppressInterrupts sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT.
func (q *DriverQueue) SuppressInterrupts(on bool) {
	var f uint16
	if on {
		f = virtio.VIRTQ_AVAIL_F_NO_INTERRUPT
	}
	binary.LittleEndian.PutUint16(q.d.Mem.B[q.Avail:], f)
}

// Request is a chain to add: device-readable payloads, then device-writable
// buffers of the given sizes.
type Request struct {
	Head     uint16
	Writable []uint64 // guest addresses of the writable buffers
	WLens    []uint32
}

// Add writes a well-formed chain (readable buffers copied into fresh guest
// memory, writable buffers allocated) using descriptors from the queue's
// free area, publishes it and returns it.
func (q *DriverQueue) Add(readable [][]byte, writable []uint32) Request {
	q.d.T.Helper()
	n := len(readable) + len(writable)
	if n == 0 || n > int(q.Size) {
		q.d.T.Fatalf("virtiotest: chain of %d descriptors in a queue of %d", n, q.Size)
	}
	req := Request{Head: q.freeHead % q.Size}
	idx := req.Head
	for k := 0; k < n; k++ {
		var d Desc
		if k < len(readable) {
			d.Addr = q.d.Alloc(uint64(len(readable[k])), 8)
			copy(q.d.Mem.B[d.Addr:], readable[k])
			d.Len = uint32(len(readable[k]))
		} else {
			l := writable[k-len(readable)]
			d.Addr = q.d.Alloc(uint64(l), 8)
			d.Len = l
			d.Flags = virtio.VIRTQ_DESC_F_WRITE
			req.Writable = append(req.Writable, d.Addr)
			req.WLens = append(req.WLens, l)
		}
		next := (idx + 1) % q.Size
		if k < n-1 {
			d.Flags |= virtio.VIRTQ_DESC_F_NEXT
			d.Next = next
		}
		q.WriteDesc(idx, d)
		idx = next
	}
	q.freeHead += uint16(n)
	q.Publish(req.Head)
	return req
}

// Kick notifies the device that queue q has buffers, whether or not the
// device asked to be (a driver may always notify).
func (q *DriverQueue) Kick() { q.Notify() }

// KickPrepare reports whether the device wants a notification for the
// entries published since the last call, as Linux's virtqueue_kick_prepare
// does: always without event indices, and with them only when avail.idx
// passed the device's avail_event. Call it where the device cannot be
// writing the ring (the race detector sees guest memory as Go memory), and
// Notify after.
func (q *DriverQueue) KickPrepare() bool {
	prev := q.kicked
	q.kicked = q.availIdx
	if !q.EventIdx {
		return true
	}
	return NeedEvent(q.AvailEvent(), q.availIdx, prev)
}

// Notify writes the queue's index to QueueNotify.
func (q *DriverQueue) Notify() {
	q.d.SetReg(virtio.QueueNotify, uint32(q.Index))
}

// NeedEvent is the spec's vring_need_event: whether moving an index from
// prev to next passes event.
func NeedEvent(event, next, prev uint16) bool { return next-event-1 < next-prev }

// AvailEvent reads the device's avail_event (the used ring's last entry).
func (q *DriverQueue) AvailEvent() uint16 {
	return binary.LittleEndian.Uint16(q.d.Mem.B[q.Used+4+8*uint64(q.Size):])
}

// UsedEvent reads the driver's used_event (the available ring's last
// entry).
func (q *DriverQueue) UsedEvent() uint16 {
	return binary.LittleEndian.Uint16(q.d.Mem.B[q.Avail+4+2*uint64(q.Size):])
}

// SetUsedEvent writes used_event: interrupt once used.idx passes v.
func (q *DriverQueue) SetUsedEvent(v uint16) {
	binary.LittleEndian.PutUint16(q.d.Mem.B[q.Avail+4+2*uint64(q.Size):], v)
}

// Used is one used-ring element.
type Used struct {
	ID  uint32
	Len uint32
}

// TakeUsed returns the used elements the device added since the last call.
// With event indices it then asks for an interrupt at the next one, as
// Linux's virtqueue_enable_cb does, and looks once more.
func (q *DriverQueue) TakeUsed() []Used {
	b := q.d.Mem.B
	var out []Used
	for {
		idx := binary.LittleEndian.Uint16(b[q.Used+2:])
		for q.lastUsed != idx {
			e := b[q.Used+4+8*uint64(q.lastUsed%q.Size):]
			out = append(out, Used{binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])})
			q.lastUsed++
		}
		if !q.EventIdx {
			return out
		}
		q.SetUsedEvent(q.lastUsed)
		if binary.LittleEndian.Uint16(b[q.Used+2:]) == q.lastUsed {
			return out
		}
	}
}

// Bytes returns n bytes of guest memory at addr.
func (d *Driver) Bytes(addr uint64, n uint32) []byte {
	return d.Mem.B[addr : addr+uint64(n)]
}

// WaitUsed waits until n elements have arrived in the used ring from a
// device with its own worker goroutine, and returns them; it fails the test
// after five seconds. Like a real driver it reads the ring only after an
// interrupt, which is also what orders the device's writes before the
// test's reads for the race detector.
func (q *DriverQueue) WaitUsed(n int) []Used {
	q.d.T.Helper()
	var out []Used
	deadline := time.Now().Add(5 * time.Second)
	for len(out) < n {
		if irqs := q.d.IRQs(); irqs != q.seenIRQs {
			q.seenIRQs = irqs
			out = append(out, q.TakeUsed()...)
			continue
		}
		if time.Now().After(deadline) {
			q.d.T.Fatalf("virtiotest: %d of %d used elements after 5s (status %#x)", len(out), n, q.d.Reg(virtio.Status))
		}
		time.Sleep(100 * time.Microsecond)
	}
	return out
}
