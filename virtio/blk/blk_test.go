package blk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// memBackend is a Backend over a byte slice that records calls.
type memBackend struct {
	mu      sync.Mutex
	b       []byte
	flushes int
	discard [][2]int64
	failAll bool
}

func (m *memBackend) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAll {
		return 0, errors.New("injected")
	}
	return copy(p, m.b[off:]), nil
}
func (m *memBackend) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		panic("device wrote outside the disk")
	}
	return copy(m.b[off:], p), nil
}
func (m *memBackend) Size() int64  { return int64(len(m.b)) }
func (m *memBackend) Flush() error { m.mu.Lock(); m.flushes++; m.mu.Unlock(); return nil }
func (m *memBackend) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.discard = append(m.discard, [2]int64{off, n})
	return nil
}
func (m *memBackend) WriteZeroes(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.b[off : off+n])
	return nil
}

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

func setup(t *testing.T, size int, opts Options) (*memBackend, *Device, *virtiotest.Driver) {
	t.Helper()
	be := &memBackend{b: make([]byte, size)}
	for i := range be.b {
		be.b[i] = byte(i / 512)
	}
	dev, err := New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	d := virtiotest.New(t, dev, 8<<20)
	d.Init(^uint64(0), 64)
	t.Cleanup(dev.Reset)
	return be, dev, d
}

// do sends one request and returns its status byte and used length.
func do(t *testing.T, d *virtiotest.Driver, readable [][]byte, writable []uint32) (virtiotest.Request, byte, uint32) {
	t.Helper()
	q := d.Queues[0]
	req := q.Add(readable, writable)
	q.Kick()
	u := q.WaitUsed(1)
	last := len(req.Writable) - 1
	st := d.Bytes(req.Writable[last], req.WLens[last])
	return req, st[len(st)-1], u[0].Len
}

func TestReadWriteFlushGetID(t *testing.T) {
	be, _, d := setup(t, 1<<20, Options{ID: "pyro-disk-1"})
	// Config space: capacity in sectors.
	cfg := make([]byte, 8)
	d.MMIO.Read(virtio.Config, cfg)
	if binary.LittleEndian.Uint64(cfg) != 2048 {
		t.Fatalf("capacity %d", binary.LittleEndian.Uint64(cfg))
	}
	// Write two sectors split across three descriptors at odd boundaries.
	data := bytes.Repeat([]byte("pyro"), 256)
	_, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_OUT, 10), data[:100], data[100:700], data[700:]}, []uint32{1})
	if st != VIRTIO_BLK_S_OK || !bytes.Equal(be.b[10*512:12*512], data) {
		t.Fatalf("write: status %d", st)
	}
	// Read them back, with the data and status in one buffer.
	req, st, n := do(t, d, [][]byte{header(VIRTIO_BLK_T_IN, 10)}, []uint32{1024 + 1})
	if st != VIRTIO_BLK_S_OK || n != 1025 || !bytes.Equal(d.Bytes(req.Writable[0], 1024), data) {
		t.Fatalf("read: status %d, %d bytes", st, n)
	}
	// A header split across descriptors.
	h := header(VIRTIO_BLK_T_IN, 0)
	req, st, _ = do(t, d, [][]byte{h[:3], h[3:]}, []uint32{512, 1})
	if st != VIRTIO_BLK_S_OK || d.Bytes(req.Writable[0], 512)[0] != 0 {
		t.Fatalf("split header: status %d", st)
	}
	_, st, _ = do(t, d, [][]byte{header(VIRTIO_BLK_T_FLUSH, 0)}, []uint32{1})
	if st != VIRTIO_BLK_S_OK || be.flushes != 1 {
		t.Fatalf("flush: status %d, %d flushes", st, be.flushes)
	}
	req, st, n = do(t, d, [][]byte{header(VIRTIO_BLK_T_GET_ID, 0)}, []uint32{20, 1})
	if st != VIRTIO_BLK_S_OK || n != 21 || string(bytes.TrimRight(d.Bytes(req.Writable[0], 20), "\x00")) != "pyro-disk-1" {
		t.Fatalf("get id: status %d %q", st, d.Bytes(req.Writable[0], 20))
	}
}

// Requests outside the disk or of partial sectors fail with IOERR and touch
// nothing; unknown types are UNSUPP; the device keeps serving afterwards.
func TestBadRequests(t *testing.T) {
	be, _, d := setup(t, 1<<20, Options{})
	before := bytes.Clone(be.b)
	seg := func(sector uint64, n, flags uint32) []byte {
		s := make([]byte, 16)
		binary.LittleEndian.PutUint64(s, sector)
		binary.LittleEndian.PutUint32(s[8:], n)
		binary.LittleEndian.PutUint32(s[12:], flags)
		return s
	}
	for name, c := range map[string]struct {
		readable [][]byte
		writable []uint32
		want     byte
	}{
		"write past the end":      {[][]byte{header(VIRTIO_BLK_T_OUT, 2047), make([]byte, 1024)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"write at huge sector":    {[][]byte{header(VIRTIO_BLK_T_OUT, 1<<62), make([]byte, 512)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"sector overflow":         {[][]byte{header(VIRTIO_BLK_T_OUT, ^uint64(0)), make([]byte, 512)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"partial sector write":    {[][]byte{header(VIRTIO_BLK_T_OUT, 0), make([]byte, 100)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"read past the end":       {[][]byte{header(VIRTIO_BLK_T_IN, 2048)}, []uint32{512, 1}, VIRTIO_BLK_S_IOERR},
		"partial sector read":     {[][]byte{header(VIRTIO_BLK_T_IN, 0)}, []uint32{511, 1}, VIRTIO_BLK_S_IOERR},
		"short header":            {[][]byte{header(VIRTIO_BLK_T_OUT, 0)[:10]}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"unknown type":            {[][]byte{header(99, 0)}, []uint32{1}, VIRTIO_BLK_S_UNSUPP},
		"get id, short buffer":    {[][]byte{header(VIRTIO_BLK_T_GET_ID, 0)}, []uint32{5, 1}, VIRTIO_BLK_S_IOERR},
		"discard past the end":    {[][]byte{header(VIRTIO_BLK_T_DISCARD, 0), seg(2000, 100, 0)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"discard with unmap flag": {[][]byte{header(VIRTIO_BLK_T_DISCARD, 0), seg(0, 8, 1)}, []uint32{1}, VIRTIO_BLK_S_UNSUPP},
		"discard odd segment":     {[][]byte{header(VIRTIO_BLK_T_DISCARD, 0), make([]byte, 15)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"too many segments":       {[][]byte{header(VIRTIO_BLK_T_DISCARD, 0), make([]byte, 16*129)}, []uint32{1}, VIRTIO_BLK_S_IOERR},
		"write zeroes, bad flags": {[][]byte{header(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(0, 8, 6)}, []uint32{1}, VIRTIO_BLK_S_UNSUPP},
	} {
		_, st, _ := do(t, d, c.readable, c.writable)
		if st != c.want {
			t.Errorf("%s: status %d, want %d", name, st, c.want)
		}
	}
	if !bytes.Equal(be.b, before) || len(be.discard) != 0 {
		t.Fatal("a rejected request changed the disk")
	}
	// Still serving.
	if _, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_IN, 2047)}, []uint32{513}); st != VIRTIO_BLK_S_OK {
		t.Fatalf("after bad requests: status %d", st)
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	be, _, d := setup(t, 1<<20, Options{})
	s := make([]byte, 32)
	binary.LittleEndian.PutUint64(s, 8)
	binary.LittleEndian.PutUint32(s[8:], 8)
	binary.LittleEndian.PutUint64(s[16:], 100)
	binary.LittleEndian.PutUint32(s[24:], 4)
	if _, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_WRITE_ZEROES, 0), s}, []uint32{1}); st != VIRTIO_BLK_S_OK {
		t.Fatalf("write zeroes: %d", st)
	}
	if !bytes.Equal(be.b[8*512:16*512], make([]byte, 8*512)) || !bytes.Equal(be.b[100*512:104*512], make([]byte, 4*512)) || be.b[16*512] == 0 {
		t.Fatal("write zeroes hit the wrong sectors")
	}
	if _, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_DISCARD, 0), s}, []uint32{1}); st != VIRTIO_BLK_S_OK {
		t.Fatalf("discard: %d", st)
	}
	if len(be.discard) != 2 || be.discard[0] != [2]int64{8 * 512, 8 * 512} || be.discard[1] != [2]int64{100 * 512, 4 * 512} {
		t.Fatalf("discards %v", be.discard)
	}
}

func TestReadOnly(t *testing.T) {
	be, dev, d := setup(t, 64<<10, Options{ReadOnly: true})
	if dev.Features()&(1<<VIRTIO_BLK_F_RO) == 0 || dev.Features()&(1<<VIRTIO_BLK_F_DISCARD) != 0 {
		t.Fatalf("features %#x", dev.Features())
	}
	before := bytes.Clone(be.b)
	for _, typ := range []uint32{VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES} {
		if _, st, _ := do(t, d, [][]byte{header(typ, 0), make([]byte, 512)}, []uint32{1}); st != VIRTIO_BLK_S_IOERR {
			t.Errorf("type %d on a read-only disk: status %d", typ, st)
		}
	}
	if !bytes.Equal(be.b, before) {
		t.Fatal("read-only disk written")
	}
}

func TestBackendErrorIsIOERR(t *testing.T) {
	be, _, d := setup(t, 64<<10, Options{})
	be.failAll = true
	if _, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_IN, 0)}, []uint32{513}); st != VIRTIO_BLK_S_IOERR {
		t.Fatalf("status %d", st)
	}
}

// A chain without room for a status byte breaks the queue.
func TestNoStatusByteNeedsReset(t *testing.T) {
	_, _, d := setup(t, 64<<10, Options{})
	q := d.Queues[0]
	q.Add([][]byte{header(VIRTIO_BLK_T_FLUSH, 0)}, nil)
	q.Kick()
	for i := 0; i < 5000 && d.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0; i++ {
		waitABit()
	}
	if d.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		t.Fatal("device not marked DEVICE_NEEDS_RESET")
	}
}

// Many requests in flight at once, in one batch, all complete correctly
// with one interrupt.
func TestBatch(t *testing.T) {
	be, _, d := setup(t, 1<<20, Options{})
	q := d.Queues[0]
	var reqs []virtiotest.Request
	var sectors []uint64
	for i := 0; i < 20; i++ {
		sectors = append(sectors, uint64(rand.IntN(2040)))
		reqs = append(reqs, q.Add([][]byte{header(VIRTIO_BLK_T_IN, sectors[i])}, []uint32{4096, 1}))
	}
	q.Kick()
	used := q.WaitUsed(20)
	for i, u := range used {
		if u.ID != uint32(reqs[i].Head) || u.Len != 4097 {
			t.Fatalf("used %d: %+v", i, u)
		}
		if got, want := d.Bytes(reqs[i].Writable[0], 4096), be.b[sectors[i]*512:][:4096]; !bytes.Equal(got, want) {
			t.Fatalf("request %d read the wrong sectors", i)
		}
	}
	if d.IRQs() != 1 {
		t.Fatalf("%d interrupts for one batch", d.IRQs())
	}
}

func FuzzRequest(f *testing.F) {
	f.Add(header(VIRTIO_BLK_T_IN, 0), uint32(513))
	f.Add(append(header(VIRTIO_BLK_T_OUT, 1), make([]byte, 512)...), uint32(1))
	f.Add(append(header(VIRTIO_BLK_T_DISCARD, 0), make([]byte, 16)...), uint32(1))
	f.Fuzz(func(t *testing.T, readable []byte, wlen uint32) {
		be := &memBackend{b: make([]byte, 64<<10)}
		dev, _ := New(be, Options{})
		if len(readable) > 8192 || wlen > 8192 {
			return
		}
		w := make([]byte, wlen)
		c := virtio.Chain{Readable: []virtio.Buffer{readable}}
		if wlen > 0 {
			c.Writable = []virtio.Buffer{w}
		}
		n, err := dev.process(&c)
		if err != nil {
			if wlen != 0 {
				t.Fatalf("error with a status byte present: %v", err)
			}
			return
		}
		if n < 1 || n > wlen {
			t.Fatalf("wrote %d bytes into %d", n, wlen)
		}
	})
}

// panicBackend is a disk whose reads hit a bug.
type panicBackend struct{ memBackend }

func (p *panicBackend) ReadAt([]byte, int64) (int, error) { panic("injected backend bug") }

// A bug in the device (here its backend panicking on the worker goroutine)
// crashes that device's VM with the panic and its stack, and nothing else:
// the process goes on, the broken device resets without hanging, and a
// second device keeps serving.
func TestWorkerPanicCrashesOnlyItsVM(t *testing.T) {
	dev, err := New(&panicBackend{memBackend{b: make([]byte, 64<<10)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := virtiotest.New(t, dev, 8<<20)
	crashed := make(chan error, 1)
	d.MMIO.OnCrash(func(err error) { crashed <- err })
	d.Init(^uint64(0), 64)
	t.Cleanup(dev.Reset)

	be2, _, d2 := setup(t, 64<<10, Options{})

	q := d.Queues[0]
	q.Add([][]byte{header(VIRTIO_BLK_T_IN, 0)}, []uint32{513})
	q.Kick()
	err = <-crashed
	var pe *virtio.PanicError
	if !errors.As(err, &pe) || pe.Value != "injected backend bug" || pe.Where != "virtio-blk worker" {
		t.Fatalf("crash: %v", err)
	}
	for _, want := range []string{"virtio-blk worker panicked: injected backend bug", "panicBackend).ReadAt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("crash detail lacks %q:\n%s", want, err)
		}
	}
	if d.MMIO.Crashed() != err || d.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		t.Errorf("transport: crashed %v, status %#x", d.MMIO.Crashed(), d.Reg(virtio.Status))
	}
	d.SetReg(virtio.Status, 0) // the worker has ended: the reset returns
	if s := d.Reg(virtio.Status); s != 0 {
		t.Errorf("status after reset %#x", s)
	}

	if _, st, _ := do(t, d2, [][]byte{header(VIRTIO_BLK_T_IN, 1)}, []uint32{513}); st != VIRTIO_BLK_S_OK {
		t.Fatalf("second device: status %d", st)
	}
	if d2.MMIO.Crashed() != nil || be2.flushes != 0 {
		t.Fatalf("second device crashed: %v", d2.MMIO.Crashed())
	}
}
