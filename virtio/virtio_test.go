package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// echoDevice copies each chain's readable bytes into its writable buffers,
// synchronously in Notify.
type echoDevice struct {
	mu      sync.Mutex
	act     virtio.Activation
	active  bool
	resets  int
	failed  error
	config  [8]byte
	feature uint64
}

func (e *echoDevice) ID() virtio.DeviceID  { return 0x7f }
func (e *echoDevice) Features() uint64     { return e.feature }
func (e *echoDevice) QueueSizes() []uint16 { return []uint16{16} }
func (e *echoDevice) ReadConfig(off uint64, d []byte) {
	if off < 8 {
		copy(d, e.config[off:])
	}
}
func (e *echoDevice) WriteConfig(off uint64, d []byte) {
	if off < 8 {
		copy(e.config[off:], d)
	}
}
func (e *echoDevice) Activate(a virtio.Activation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.act, e.active = a, true
	return nil
}
func (e *echoDevice) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active = false
	e.resets++
}
func (e *echoDevice) Notify(qi int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.active || e.failed != nil {
		return
	}
	q := e.act.Queues[qi]
	for {
		c, ok, err := q.Pop()
		if err != nil {
			e.failed = err
			e.act.Fail(err)
			return
		}
		if !ok {
			return
		}
		var in []byte
		for _, b := range c.Readable {
			in = append(in, b...)
		}
		n := 0
		for _, w := range c.Writable {
			n += copy(w, in[n:])
		}
		irq, err := q.Push(c.Head, uint32(n))
		if err != nil {
			e.act.Fail(err)
			return
		}
		if irq {
			e.act.Interrupt()
		}
	}
}

func setup(t *testing.T) (*echoDevice, *virtiotest.Driver) {
	return setupFeatures(t, ^uint64(0), false)
}

// setupFeatures activates an echo device accepting the features in want,
// with event indices offered if eventIdx.
func setupFeatures(t *testing.T, want uint64, eventIdx bool) (*echoDevice, *virtiotest.Driver) {
	dev := &echoDevice{feature: 1 << 3}
	d := virtiotest.New(t, dev, 1<<20)
	if eventIdx {
		d.MMIO.OfferEventIdx()
	}
	d.Init(want, 8)
	return dev, d
}

func TestEchoRoundTrip(t *testing.T) {
	dev, d := setup(t)
	q := d.Queues[0]
	for i := 0; i < 20; i++ { // wraps the 8-entry rings more than twice
		req := q.Add([][]byte{[]byte("hello, "), []byte("virtio")}, []uint32{5, 100})
		q.Kick()
		used := q.TakeUsed()
		if len(used) != 1 || used[0].ID != uint32(req.Head) || used[0].Len != 13 {
			t.Fatalf("round %d: used %+v", i, used)
		}
		got := append(d.Bytes(req.Writable[0], 5), d.Bytes(req.Writable[1], 8)...)
		if string(got) != "hello, virtio" {
			t.Fatalf("round %d: echoed %q", i, got)
		}
	}
	if d.IRQs() != 20 {
		t.Fatalf("%d interrupts for 20 requests", d.IRQs())
	}
	if dev.act.Features != 1<<3|1<<virtio.VIRTIO_F_VERSION_1 {
		t.Fatalf("negotiated %#x", dev.act.Features)
	}
	q.SuppressInterrupts(true)
	q.Add([][]byte{[]byte("x")}, []uint32{1})
	q.Kick()
	if len(q.TakeUsed()) != 1 || d.IRQs() != 20 {
		t.Fatal("VIRTQ_AVAIL_F_NO_INTERRUPT not honoured")
	}
}

// Each broken chain marks the device DEVICE_NEEDS_RESET and raises a
// configuration interrupt; the host never panics or reads outside memory.
func TestBrokenChains(t *testing.T) {
	for name, build := range map[string]func(q *virtiotest.DriverQueue, mem uint64){
		"loop": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			q.WriteDesc(1, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 0})
			q.Publish(0)
		},
		"self loop": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(3, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 3})
			q.Publish(3)
		},
		"outside memory": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: mem - 2, Len: 4})
			q.Publish(0)
		},
		"address overflow": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: ^uint64(0) - 1, Len: 4})
			q.Publish(0)
		},
		"next past queue": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 8})
			q.Publish(0)
		},
		"head past queue": func(q *virtiotest.DriverQueue, mem uint64) {
			q.Publish(200)
		},
		"readable after writable": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 4, Flags: virtio.VIRTQ_DESC_F_WRITE | virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			q.WriteDesc(1, virtiotest.Desc{Addr: 0x200, Len: 4})
			q.Publish(0)
		},
		"indirect not negotiated": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 16, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			q.Publish(0)
		},
		"index runs ahead": func(q *virtiotest.DriverQueue, mem uint64) {
			q.WriteDesc(0, virtiotest.Desc{Addr: 0x100, Len: 4})
			q.SetAvailIdx(9) // 9 new entries in an 8-entry ring
		},
	} {
		t.Run(name, func(t *testing.T) {
			dev, d := setup(t)
			q := d.Queues[0]
			build(q, uint64(len(d.Mem.B)))
			q.Kick()
			if dev.failed == nil || !errors.Is(dev.failed, virtio.ErrQueue) {
				t.Fatalf("device error %v, want a queue violation", dev.failed)
			}
			if d.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 || d.Reg(virtio.InterruptStatus)&virtio.InterruptConfigChange == 0 {
				t.Fatal("device not marked DEVICE_NEEDS_RESET with a config interrupt")
			}
			if len(q.TakeUsed()) != 0 {
				t.Fatal("a broken chain was completed")
			}
			// A reset brings the device back.
			d.SetReg(virtio.Status, 0)
			if dev.resets != 1 || d.Reg(virtio.Status) != 0 {
				t.Fatalf("after reset: %d resets, status %#x", dev.resets, d.Reg(virtio.Status))
			}
		})
	}
}

func TestFeatureNegotiation(t *testing.T) {
	dev := &echoDevice{feature: 1 << 3}
	d := virtiotest.New(t, dev, 1<<20)
	if f := d.Features(); f != 1<<3|1<<virtio.VIRTIO_F_VERSION_1 {
		t.Fatalf("offered %#x", f)
	}
	for name, feat := range map[string]uint64{
		"unoffered bit":   1<<3 | 1<<virtio.VIRTIO_F_VERSION_1 | 1<<5,
		"legacy (no v1)":  1 << 3,
		"indirect unoff":  1<<virtio.VIRTIO_F_INDIRECT_DESC | 1<<virtio.VIRTIO_F_VERSION_1,
		"event idx unoff": 1<<virtio.VIRTIO_F_EVENT_IDX | 1<<virtio.VIRTIO_F_VERSION_1,
	} {
		d.SetReg(virtio.Status, 0)
		d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER)
		d.SetReg(virtio.DriverFeaturesSel, 0)
		d.SetReg(virtio.DriverFeatures, uint32(feat))
		d.SetReg(virtio.DriverFeaturesSel, 1)
		d.SetReg(virtio.DriverFeatures, uint32(feat>>32))
		d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK)
		if d.Reg(virtio.Status)&virtio.FEATURES_OK != 0 {
			t.Errorf("%s: FEATURES_OK accepted for %#x", name, feat)
		}
		// DRIVER_OK without FEATURES_OK does not activate the device.
		d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.DRIVER_OK)
		if dev.active {
			t.Errorf("%s: device activated without FEATURES_OK", name)
		}
	}
}

func TestRegisters(t *testing.T) {
	dev, d := setup(t)
	if d.Reg(virtio.DeviceIDReg) != 0x7f || d.Reg(virtio.QueueNumMax) != 16 {
		t.Fatal("device ID or queue size")
	}
	d.SetReg(virtio.QueueSel, 5)
	if d.Reg(virtio.QueueNumMax) != 0 {
		t.Fatal("a queue that does not exist has a size")
	}
	// Queue configuration is frozen once the device runs.
	d.SetReg(virtio.QueueSel, 0)
	d.SetReg(virtio.QueueDescLow, 0xdead000)
	if dev.act.Queues[0].DescAddr == 0xdead000 {
		t.Fatal("queue address changed while running")
	}
	// Narrow or misaligned register accesses read zero and write nothing.
	b := []byte{0xff, 0xff}
	d.MMIO.Read(virtio.MagicValue, b)
	if b[0] != 0 || b[1] != 0 {
		t.Fatalf("16-bit read of a register: %x", b)
	}
	// Configuration space passes through at 0x100.
	d.MMIO.Write(virtio.Config+2, []byte{0xab})
	cfg := make([]byte, 4)
	d.MMIO.Read(virtio.Config, cfg)
	if !bytes.Equal(cfg, []byte{0, 0, 0xab, 0}) {
		t.Fatalf("config space %x", cfg)
	}
	// Interrupt status is acknowledged bit by bit.
	d.Queues[0].Add([][]byte{{1}}, []uint32{1})
	d.Queues[0].Kick()
	if d.Reg(virtio.InterruptStatus) != virtio.InterruptUsedBuffer {
		t.Fatal("no used-buffer interrupt status")
	}
	d.SetReg(virtio.InterruptACK, virtio.InterruptUsedBuffer)
	if d.Reg(virtio.InterruptStatus) != 0 {
		t.Fatal("interrupt not acknowledged")
	}
}

func TestQueueSetupChecks(t *testing.T) {
	for name, mutate := range map[string]func(d *virtiotest.Driver){
		"size not a power of two": func(d *virtiotest.Driver) { d.SetReg(virtio.QueueNum, 6) },
		"size above max":          func(d *virtiotest.Driver) { d.SetReg(virtio.QueueNum, 32) },
		"misaligned desc":         func(d *virtiotest.Driver) { d.SetReg(virtio.QueueDescLow, 0x1008) },
		"rings outside memory":    func(d *virtiotest.Driver) { d.SetReg(virtio.QueueDeviceHigh, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			dev := &echoDevice{}
			d := virtiotest.New(t, dev, 1<<20)
			d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER)
			d.SetReg(virtio.DriverFeaturesSel, 1)
			d.SetReg(virtio.DriverFeatures, 1)
			d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK)
			d.SetReg(virtio.QueueSel, 0)
			d.SetReg(virtio.QueueNum, 8)
			d.SetReg(virtio.QueueDescLow, 0x1000)
			d.SetReg(virtio.QueueDriverLow, 0x2000)
			d.SetReg(virtio.QueueDeviceLow, 0x3000)
			mutate(d)
			d.SetReg(virtio.QueueReady, 1)
			d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK|virtio.DRIVER_OK)
			if dev.active || d.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
				t.Fatalf("activated with a bad queue (status %#x)", d.Reg(virtio.Status))
			}
		})
	}
}

// FuzzQueueWalk hands the device arbitrary descriptor tables and ring
// contents: it must never panic, and every chain it accepts stays within
// the queue size and guest memory.
func FuzzQueueWalk(f *testing.F) {
	desc := make([]byte, 16*8)
	binary.LittleEndian.PutUint64(desc, 0x100)
	binary.LittleEndian.PutUint32(desc[8:], 16)
	f.Add(desc, []byte{0, 0, 1, 0, 0, 0}, uint16(0))
	loop := make([]byte, 16*8)
	binary.LittleEndian.PutUint16(loop[12:], virtio.VIRTQ_DESC_F_NEXT)
	f.Add(loop, []byte{0, 0, 3, 0, 0, 0, 0, 0, 0, 0}, uint16(0))
	f.Add(desc, []byte{0, 0, 1, 0, 0, 0}, uint16(1))
	// start's low bit negotiates event indices.
	f.Fuzz(func(t *testing.T, descTable, avail []byte, start uint16) {
		mem := virtiotest.NewMemory(0x4000)
		copy(mem.B[0x1000:0x1080], descTable)
		copy(mem.B[0x2000:0x2014], avail)
		q := &virtio.Queue{MaxSize: 8, Size: 8, Ready: true, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000}
		if err := virtio.ActivateForTest(q, mem, start&1 != 0); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			c, ok, err := q.Pop()
			if err != nil || !ok {
				return
			}
			if n := len(c.Readable) + len(c.Writable); n == 0 || n > 8 {
				t.Fatalf("chain of %d buffers from an 8-entry queue", n)
			}
			for _, b := range append(c.Readable, c.Writable...) {
				_ = b[:len(b)] // a buffer is a slice of mem.B, bounds checked by Slice
			}
			if _, err := q.Push(c.Head, uint32(c.WritableLen())); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// With VIRTIO_F_EVENT_IDX the device publishes avail_event as it pops and
// interrupts only when used.idx passes the driver's used_event; the ring
// flags no longer count.
func TestEventIdx(t *testing.T) {
	dev, d := setupFeatures(t, ^uint64(0), true)
	if d.Negotiated&(1<<virtio.VIRTIO_F_EVENT_IDX) == 0 || dev.act.Features&(1<<virtio.VIRTIO_F_EVENT_IDX) == 0 {
		t.Fatalf("event indices not negotiated: driver %#x, device %#x", d.Negotiated, dev.act.Features)
	}
	q := d.Queues[0]
	if got := q.AvailEvent(); got != 0 {
		t.Fatalf("avail_event %d at activation, want 0", got)
	}
	// A fresh ring wants a notification; after draining, the device
	// waits for the entry after the last it popped.
	q.Add([][]byte{[]byte("a")}, []uint32{1})
	if !q.KickPrepare() {
		t.Fatal("no notification wanted for the first entry")
	}
	q.Notify()
	if used := q.TakeUsed(); len(used) != 1 || d.IRQs() != 1 {
		t.Fatalf("first request: %d used, %d interrupts", len(used), d.IRQs())
	}
	if got := q.AvailEvent(); got != 1 {
		t.Fatalf("avail_event %d after one pop, want 1", got)
	}
	if got := q.UsedEvent(); got != 1 {
		t.Fatalf("TakeUsed left used_event at %d, want 1", got)
	}

	// A batch of three: one notification, one interrupt.
	for range 3 {
		q.Add([][]byte{[]byte("b")}, []uint32{1})
	}
	if !q.KickPrepare() {
		t.Fatal("no notification wanted for a batch on a caught-up device")
	}
	q.Notify()
	if d.IRQs() != 2 {
		t.Fatalf("%d interrupts after a batch of three, want one more (2)", d.IRQs())
	}
	if used := q.TakeUsed(); len(used) != 3 {
		t.Fatalf("batch: %d used, want 3", len(used))
	}
	if got := q.AvailEvent(); got != 4 {
		t.Fatalf("avail_event %d after four pops, want 4", got)
	}

	// Entries added while the device has not caught up need no
	// notification: avail_event 4 is behind what the driver already
	// told it about.
	q.Add([][]byte{[]byte("c")}, []uint32{1})
	if !q.KickPrepare() {
		t.Fatal("no notification wanted for entry 4")
	}
	q.Add([][]byte{[]byte("d")}, []uint32{1})
	if q.KickPrepare() {
		t.Fatal("notification wanted for entry 5 although avail_event is 4 and the device was told of 4")
	}
	q.Notify() // a driver may notify anyway
	if used := q.TakeUsed(); len(used) != 2 {
		t.Fatalf("%d used, want 2", len(used))
	}

	// A used_event ahead of used.idx holds interrupts back, and
	// VIRTQ_AVAIL_F_NO_INTERRUPT is ignored.
	irqs := d.IRQs()
	q.SetUsedEvent(100)
	q.Add([][]byte{[]byte("e")}, []uint32{1})
	q.Kick()
	if d.IRQs() != irqs {
		t.Fatal("interrupted although used_event is ahead")
	}
	q.TakeUsed() // re-arms
	q.SuppressInterrupts(true)
	q.Add([][]byte{[]byte("f")}, []uint32{1})
	q.Kick()
	if d.IRQs() != irqs+1 {
		t.Fatal("no interrupt for an armed used_event: the NO_INTERRUPT flag must be ignored")
	}
	q.TakeUsed()
	// Indices wrap: 70000 requests through an 8-entry ring, each on the
	// same descriptor.
	q.SuppressInterrupts(false)
	q.WriteDesc(0, virtiotest.Desc{Addr: d.Alloc(1, 8), Len: 1})
	for i := range 70000 {
		q.Publish(0)
		if !q.KickPrepare() {
			t.Fatalf("request %d: no notification wanted of a drained device", i)
		}
		q.Notify()
		if len(q.TakeUsed()) != 1 {
			t.Fatalf("request %d: not completed", i)
		}
	}
	if want := irqs + 1 + 70000; d.IRQs() != want {
		t.Fatalf("%d interrupts, want %d: one per re-armed request", d.IRQs(), want)
	}
}

func TestNeedEvent(t *testing.T) {
	for _, c := range []struct {
		event, next, prev uint16
		want              bool
	}{
		{0, 1, 0, true},
		{0, 0, 0, false},         // nothing moved
		{5, 3, 0, false},         // not there yet
		{2, 3, 0, true},          // passed inside the step
		{3, 3, 0, false},         // event is the next one to come
		{65535, 1, 65534, true},  // across the wrap
		{1, 65535, 65530, false}, // behind: long past
	} {
		if got := virtio.NeedEventForTest(c.event, c.next, c.prev); got != c.want {
			t.Errorf("needEvent(event %d, next %d, prev %d) = %v, want %v", c.event, c.next, c.prev, got, c.want)
		}
		if got := virtiotest.NeedEvent(c.event, c.next, c.prev); got != c.want {
			t.Errorf("virtiotest.NeedEvent(event %d, next %d, prev %d) = %v, want %v", c.event, c.next, c.prev, got, c.want)
		}
	}
}
