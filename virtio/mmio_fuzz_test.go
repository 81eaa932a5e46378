package virtio_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// workerDevice echoes each chain's readable bytes into its writable ones on
// a worker goroutine of its own, as virtio-blk and virtio-vsock do: Notify
// kicks it, Reset stops it and waits.
//
// The guest writes its rings while the device reads them; the race
// detector sees guest memory as Go memory, so the worker and the fuzzer's
// "guest" take guest (a stand-in for the memory model) around their ring
// accesses. Everything else (the transport's registers, the queues'
// configuration, activation and reset) is left to the race detector.
type workerDevice struct {
	guest *sync.Mutex

	mu     sync.Mutex
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	active bool

	activations atomic.Int64
	processed   atomic.Int64 // chains returned to the driver
}

func (w *workerDevice) ID() virtio.DeviceID  { return 0x7e }
func (w *workerDevice) Features() uint64     { return 1 << 1 }
func (w *workerDevice) QueueSizes() []uint16 { return []uint16{8, 8} }
func (w *workerDevice) ReadConfig(off uint64, d []byte) {
	virtio.ReadConfigWindow([]byte("fuzzcfg!"), off, d)
}
func (w *workerDevice) WriteConfig(uint64, []byte) {}

func (w *workerDevice) Activate(a virtio.Activation) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active {
		return fmt.Errorf("already active")
	}
	w.active = true
	w.activations.Add(1)
	w.kick, w.stop, w.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go w.worker(a, w.kick, w.stop, w.done)
	return nil
}

func (w *workerDevice) Notify(int) {
	w.mu.Lock()
	kick := w.kick
	w.mu.Unlock()
	if kick != nil {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

func (w *workerDevice) Reset() {
	w.mu.Lock()
	if !w.active {
		w.mu.Unlock()
		return
	}
	close(w.stop)
	done := w.done
	w.active, w.kick = false, nil
	w.mu.Unlock()
	<-done
}

func (w *workerDevice) worker(a virtio.Activation, kick, stop, done chan struct{}) {
	defer close(done)
	defer a.Recover("fuzz worker")
	for {
		select {
		case <-stop:
			return
		case <-kick:
		}
		for _, q := range a.Queues {
			for {
				select {
				case <-stop: // a reset while requests are in flight
					return
				default:
				}
				w.guest.Lock()
				c, ok, err := q.Pop()
				var irq bool
				if err == nil && ok {
					var in []byte
					for _, b := range c.Readable {
						in = append(in, b...)
					}
					n := 0
					for _, b := range c.Writable {
						n += copy(b, in[n:])
					}
					irq, err = q.Push(c.Head, uint32(n))
					if err == nil {
						w.processed.Add(1)
					}
				}
				w.guest.Unlock()
				if err != nil {
					a.Fail(err)
					return
				}
				if irq {
					a.Interrupt()
				}
				if !ok {
					break
				}
			}
		}
	}
}

// The fuzzer's guest layout: queue i's rings at fuzzRing(i), its buffers
// at fuzzData(i).
const (
	fuzzMem     = 0x10000
	fuzzQSize   = 8
	fuzzOpBytes = 6 // op, register, value (le32)
	// fuzzOpTimeout bounds one operation: each is a few register accesses
	// and at most a wait for a worker draining eight chains, so five seconds
	// means a deadlock even on a loaded machine under the race detector.
	fuzzOpTimeout = 5 * time.Second
)

func fuzzRing(i int) (desc, avail, used uint64) {
	base := uint64(0x1000 + i*0x1000)
	return base, base + 0x200, base + 0x400
}

func fuzzData(i int) uint64 { return uint64(0x8000 + i*0x1000) }

// fuzzRegs are the offsets the fuzzer writes and reads: every register,
// the configuration space, and a few between them.
var fuzzRegs = []uint64{
	virtio.MagicValue, virtio.Version, virtio.DeviceIDReg, virtio.VendorID,
	virtio.DeviceFeatures, virtio.DeviceFeaturesSel, virtio.DriverFeatures, virtio.DriverFeaturesSel,
	virtio.QueueSel, virtio.QueueNumMax, virtio.QueueNum, virtio.QueueReady, virtio.QueueNotify,
	virtio.InterruptStatus, virtio.InterruptACK, virtio.Status,
	virtio.QueueDescLow, virtio.QueueDescHigh, virtio.QueueDriverLow, virtio.QueueDriverHigh,
	virtio.QueueDeviceLow, virtio.QueueDeviceHigh, virtio.SHMLenLow, virtio.SHMBaseHigh,
	virtio.ConfigGeneration, virtio.Config, virtio.Config + 6, virtio.MMIOSize - 4, 0x0c0, 0x071,
}

// mmioFuzzer plays a guest driver, well-behaved or not, against a
// transport whose device has a live worker.
type mmioFuzzer struct {
	dev   *workerDevice
	drv   *virtiotest.Driver
	guest sync.Mutex
	avail [2]uint16 // the guest's avail.idx per queue
	async sync.WaitGroup

	// After a reset, the worker must not return another chain until the
	// device is activated again.
	resetAt    int64 // activations at the last reset, or -1
	processedR int64
}

func (f *mmioFuzzer) width(b byte) []byte {
	return make([]byte, []int{4, 4, 4, 4, 4, 1, 2, 8}[b>>5])
}

// init runs the driver's initialisation with the fuzzer's layout and the
// device's features ANDed with v.
func (f *mmioFuzzer) init(v uint32) {
	d := f.drv
	d.SetReg(virtio.Status, 0)
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE)
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER)
	d.SetReg(virtio.DriverFeaturesSel, 0)
	d.SetReg(virtio.DriverFeatures, d.Reg(virtio.DeviceFeatures)&v)
	d.SetReg(virtio.DriverFeaturesSel, 1)
	d.SetReg(virtio.DriverFeatures, 1) // VERSION_1
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK)
	f.guest.Lock()
	clear(d.Mem.B[0x1000:0x3000])
	f.avail = [2]uint16{}
	f.guest.Unlock()
	for i := 0; i < 2; i++ {
		desc, avail, used := fuzzRing(i)
		d.SetReg(virtio.QueueSel, uint32(i))
		d.SetReg(virtio.QueueNum, fuzzQSize)
		d.SetReg(virtio.QueueDescLow, uint32(desc))
		d.SetReg(virtio.QueueDriverLow, uint32(avail))
		d.SetReg(virtio.QueueDeviceLow, uint32(used))
		d.SetReg(virtio.QueueReady, 1)
	}
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER|virtio.FEATURES_OK|virtio.DRIVER_OK)
}

// publish adds a two-descriptor chain (16 readable bytes, 16 writable) to
// queue i in the fuzzer's layout; v's bits break it in various ways.
func (f *mmioFuzzer) publish(i int, v uint32) {
	f.guest.Lock()
	defer f.guest.Unlock()
	b := f.drv.Mem.B
	descAddr, availAddr, _ := fuzzRing(i)
	head := uint16(2*f.avail[i]) % fuzzQSize
	next := (head + 1) % fuzzQSize
	data := fuzzData(i) + uint64(head)*32
	put := func(n uint16, addr uint64, l uint32, flags, nx uint16) {
		e := b[descAddr+16*uint64(n):]
		binary.LittleEndian.PutUint64(e, addr)
		binary.LittleEndian.PutUint32(e[8:], l)
		binary.LittleEndian.PutUint16(e[12:], flags)
		binary.LittleEndian.PutUint16(e[14:], nx)
	}
	l := uint32(16)
	if v&1 != 0 {
		l = v >> 8 // any length, in or out of memory
	}
	if v&2 != 0 {
		next = uint16(v>>4) & 0xf // a loop or an index outside the queue
	}
	if v&4 != 0 {
		data = uint64(v) << 4 // anywhere
	}
	put(head, data, 16, virtio.VIRTQ_DESC_F_NEXT, next)
	put((head+1)%fuzzQSize, data+16, l, virtio.VIRTQ_DESC_F_WRITE, 0)
	binary.LittleEndian.PutUint16(b[availAddr+4+2*uint64(f.avail[i]%fuzzQSize):], head)
	f.avail[i]++
	if v&8 != 0 {
		f.avail[i] += uint16(v >> 16) // run ahead of the ring
	}
	binary.LittleEndian.PutUint16(b[availAddr+2:], f.avail[i])
}

// step runs one operation and checks the invariants it can.
func (f *mmioFuzzer) step(op, reg byte, v uint32) error {
	d := f.drv
	off := fuzzRegs[int(reg)%len(fuzzRegs)]
	switch op % 8 {
	case 0: // a register write of any width
		var data [8]byte
		binary.LittleEndian.PutUint64(data[:], uint64(v)<<32|uint64(v))
		d.MMIO.Write(off, data[:len(f.width(reg))])
	case 1: // a register read of any width
		d.MMIO.Read(off, f.width(reg))
	case 2: // the driver's initialisation
		f.init(v)
	case 3: // a request on a queue, notified
		f.publish(int(v>>31), v)
		d.SetReg(virtio.QueueNotify, v>>31)
	case 4: // a notification from another thread, as an ioeventfd gives
		f.async.Add(1)
		go func() {
			defer f.async.Done()
			d.MMIO.Notify(int(v % 3))
		}()
	case 5: // several requests, then a reset while the worker is busy
		for k := 0; k < int(v%fuzzQSize)+1; k++ {
			f.publish(k&1, v&^0xf)
		}
		d.SetReg(virtio.QueueNotify, 0)
		d.SetReg(virtio.QueueNotify, 1)
		fallthrough
	case 6: // a reset
		d.SetReg(virtio.Status, 0)
		if s := d.Reg(virtio.Status); s != 0 {
			return fmt.Errorf("status %#x after a reset", s)
		}
		if is := d.Reg(virtio.InterruptStatus); is != 0 {
			return fmt.Errorf("interrupt status %#x after a reset", is)
		}
		f.resetAt, f.processedR = f.dev.activations.Load(), f.dev.processed.Load()
	case 7: // an interrupt acknowledgement of what is pending
		d.SetReg(virtio.InterruptACK, d.Reg(virtio.InterruptStatus)&v)
	}
	if f.resetAt >= 0 {
		if f.dev.activations.Load() != f.resetAt {
			f.resetAt = -1
		} else if p := f.dev.processed.Load(); p != f.processedR {
			return fmt.Errorf("%d chains processed after a reset", p-f.processedR)
		}
	}
	if err := d.MMIO.Crashed(); err != nil {
		return err // a panic the transport recovered
	}
	return nil
}

// FuzzMMIOSequence drives the virtio-mmio registers and status machine
// with a live device worker: reads and writes of every register at every
// width, initialisations, requests (broken ones too), notifications from
// other threads, and resets while requests are in flight. Nothing may
// panic, deadlock (each operation is bounded) or race (run it with -race);
// after a reset the status reads 0 and the queues are not processed until
// the driver activates the device again.
func FuzzMMIOSequence(f *testing.F) {
	op := func(o, reg byte, v uint32) []byte {
		b := []byte{o, reg, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[2:], v)
		return b
	}
	seq := func(ops ...[]byte) []byte {
		var b []byte
		for _, o := range ops {
			b = append(b, o...)
		}
		return b
	}
	f.Add(seq(op(2, 0, ^uint32(0)), op(3, 0, 0), op(3, 0, 1<<31), op(1, 13, 0), op(7, 0, 3)))
	f.Add(seq(op(2, 0, 0), op(5, 0, 7), op(2, 0, 0), op(3, 0, 0), op(6, 0, 0)))
	f.Add(seq(op(2, 0, 0), op(4, 0, 0), op(3, 0, 2), op(3, 0, 1), op(0, 15, 0), op(2, 0, 0), op(3, 0, 0)))
	f.Add(seq(op(0, 15, virtio.ACKNOWLEDGE), op(0, 8, 5), op(0, 10, 4), op(0, 11, 1), op(0, 15, 0xf), op(4, 0, 1)))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64*fuzzOpBytes {
			in = in[:64*fuzzOpBytes]
		}
		fz := &mmioFuzzer{resetAt: -1}
		fz.dev = &workerDevice{guest: &fz.guest}
		fz.drv = virtiotest.New(t, fz.dev, fuzzMem)
		progress := make(chan error)
		go func() {
			for ; len(in) >= fuzzOpBytes; in = in[fuzzOpBytes:] {
				if err := fz.step(in[0], in[1], binary.LittleEndian.Uint32(in[2:])); err != nil {
					progress <- err
					fz.drv.MMIO.Close()
					return
				}
				progress <- nil
			}
			fz.async.Wait()
			fz.drv.MMIO.Close() // stops the worker, as the VMM does
			close(progress)
		}()
		for n := 0; ; n++ {
			select {
			case err, ok := <-progress:
				if !ok {
					if fz.dev.active {
						t.Fatal("the worker still runs after Close")
					}
					return
				}
				if err != nil {
					t.Fatalf("operation %d: %v", n, err)
				}
			case <-time.After(fuzzOpTimeout):
				t.Fatalf("operation %d did not finish in %v: a deadlock", n, fuzzOpTimeout)
			}
		}
	})
}
