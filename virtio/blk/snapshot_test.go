package blk

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// saveState pauses d's transport and returns its state, through its
// encoding.
func saveState(t *testing.T, d *virtiotest.Driver) *virtio.TransportState {
	t.Helper()
	if err := d.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	s, err := d.MMIO.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back virtio.TransportState
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &back
}

// restore builds a new device over be and a driver over a copy of d's
// memory, and restores s into them.
func restore(t *testing.T, d *virtiotest.Driver, be Backend, opts Options, s *virtio.TransportState) (*Device, *virtiotest.Driver, error) {
	t.Helper()
	dev, err := New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	d2 := d.Fork(dev)
	t.Cleanup(d2.MMIO.Close)
	return dev, d2, d2.MMIO.RestoreState(s)
}

func TestSnapshotRestoreIntoNewDevice(t *testing.T) {
	be, _, d := setup(t, 1<<20, Options{ID: "disk"})
	data := bytes.Repeat([]byte("snap"), 256)
	if _, st, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_OUT, 10), data}, []uint32{1}); st != VIRTIO_BLK_S_OK {
		t.Fatalf("write: status %d", st)
	}
	// The driver took the interrupt (a pending one would make Resume
	// interrupt before the device pushes, and WaitUsed read too early).
	d.SetReg(virtio.InterruptACK, virtio.InterruptUsedBuffer)
	// Paused: a read published and kicked waits in the ring.
	if err := d.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	q := d.Queues[0]
	pending := q.Add([][]byte{header(VIRTIO_BLK_T_IN, 10)}, []uint32{1024, 1})
	q.Kick()
	s := saveState(t, d)
	if s.Queues[0].LastAvail != 1 || s.Queues[0].UsedIdx != 1 || len(s.Device) != stateLen {
		t.Fatalf("saved queue %+v, device state %x", s.Queues[0], s.Device)
	}

	_, d2, err := restore(t, d, be, Options{ID: "disk"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	used := d2.Queues[0].WaitUsed(1)
	if used[0].ID != uint32(pending.Head) || used[0].Len != 1025 || d2.Bytes(pending.Writable[1], 1)[0] != VIRTIO_BLK_S_OK {
		t.Fatalf("request queued before the save: used %+v", used)
	}
	if !bytes.Equal(d2.Bytes(pending.Writable[0], 1024), data) {
		t.Fatal("request queued before the save read the wrong data")
	}
	// And new requests, wrapping the 64-entry ring.
	for i := 0; i < 70; i++ {
		msg := bytes.Repeat([]byte{byte(i)}, 512)
		if _, st, _ := do(t, d2, [][]byte{header(VIRTIO_BLK_T_OUT, uint64(i)), msg}, []uint32{1}); st != VIRTIO_BLK_S_OK {
			t.Fatalf("write %d after restore: status %d", i, st)
		}
		req, st, _ := do(t, d2, [][]byte{header(VIRTIO_BLK_T_IN, uint64(i))}, []uint32{512, 1})
		if st != VIRTIO_BLK_S_OK || !bytes.Equal(d2.Bytes(req.Writable[0], 512), msg) {
			t.Fatalf("read %d after restore: status %d", i, st)
		}
	}
	// The old device, still paused, never served the request.
	if used := q.TakeUsed(); len(used) != 0 {
		t.Fatalf("the paused device served %+v", used)
	}
}

// gatedBackend blocks reads until its gate opens, telling entered when one
// starts.
type gatedBackend struct {
	*memBackend
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedBackend) ReadAt(p []byte, off int64) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.memBackend.ReadAt(p, off)
}

func TestPauseWithRequestInFlight(t *testing.T) {
	be := &gatedBackend{memBackend: &memBackend{b: make([]byte, 64<<10)}, entered: make(chan struct{}, 2), gate: make(chan struct{})}
	copy(be.b[512:], "second sector")
	dev, err := New(be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := virtiotest.New(t, dev, 1<<20)
	d.Init(^uint64(0), 16)
	t.Cleanup(d.MMIO.Close)
	q := d.Queues[0]
	a := q.Add([][]byte{header(VIRTIO_BLK_T_IN, 0)}, []uint32{512, 1})
	b := q.Add([][]byte{header(VIRTIO_BLK_T_IN, 1)}, []uint32{512, 1})
	q.Kick()
	<-be.entered // the worker holds a
	paused := make(chan error)
	go func() { paused <- d.MMIO.Pause() }()
	// Pause has asked the worker to stop (under mu) and waits for it.
	for {
		dev.mu.Lock()
		asked := dev.paused
		dev.mu.Unlock()
		if asked {
			break
		}
		waitABit()
	}
	select {
	case err := <-paused:
		t.Fatalf("Pause returned (%v) with a request in the backend", err)
	default:
	}
	close(be.gate)
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	// a completed and interrupted; b waits in the ring.
	used := q.WaitUsed(1)
	if len(used) != 1 || used[0].ID != uint32(a.Head) {
		t.Fatalf("used %+v, want only request a", used)
	}
	s, err := d.MMIO.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if s.Queues[0].LastAvail != 1 || s.IntStatus&virtio.InterruptUsedBuffer == 0 {
		t.Fatalf("saved %+v", s)
	}
	// The driver acknowledges, as its handler would have, so that the
	// next interrupt it waits for is b's (Resume re-raises a pending one).
	d.SetReg(virtio.InterruptACK, virtio.InterruptUsedBuffer)
	if err := d.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	used = q.WaitUsed(1)
	if used[0].ID != uint32(b.Head) || !bytes.HasPrefix(d.Bytes(b.Writable[0], 512), []byte("second sector")) {
		t.Fatalf("after Resume: used %+v", used)
	}
	if st, _, _ := doStatus(t, d, 2); st != VIRTIO_BLK_S_OK {
		t.Fatalf("request after Resume: status %d", st)
	}
}

// doStatus reads sector n and returns the status byte.
func doStatus(t *testing.T, d *virtiotest.Driver, n uint64) (byte, virtiotest.Request, uint32) {
	t.Helper()
	req, st, l := do(t, d, [][]byte{header(VIRTIO_BLK_T_IN, n)}, []uint32{512, 1})
	return st, req, l
}

func TestResetWhilePaused(t *testing.T) {
	_, dev, d := setup(t, 64<<10, Options{})
	if err := d.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	d.SetReg(virtio.Status, 0) // a driver reset, as at reboot: must not hang
	dev.mu.Lock()
	active := dev.active
	dev.mu.Unlock()
	if active {
		t.Fatal("active after a reset")
	}
	d.MMIO.Resume()
	d.Init(^uint64(0), 16)
	if st, _, _ := doStatus(t, d, 0); st != VIRTIO_BLK_S_OK {
		t.Fatalf("after reset: status %d", st)
	}
	// A device restored paused and reset before it ran.
	s := saveState(t, d)
	_, d2, err := restore(t, d, &memBackend{b: make([]byte, 64<<10)}, Options{}, s)
	if err != nil {
		t.Fatal(err)
	}
	d2.SetReg(virtio.Status, 0)
	d2.MMIO.Close()
}

func TestRestoreRejectsAnotherDisk(t *testing.T) {
	_, _, d := setup(t, 1<<20, Options{})
	s := saveState(t, d)
	for _, c := range []struct {
		size int
		opts Options
		want string
	}{
		{2 << 20, Options{}, "the saved disk had 1048576 bytes, this one has 2097152"},
		{1 << 20, Options{ReadOnly: true}, "does not offer"}, // the driver took discard
	} {
		dev, d2, err := restore(t, d, &memBackend{b: make([]byte, c.size)}, c.opts, s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d bytes %+v: error %v, want %q", c.size, c.opts, err, c.want)
		}
		if dev.active || d2.Reg(virtio.Status) != 0 {
			t.Error("half restored")
		}
	}
	dev, _ := New(&memBackend{b: make([]byte, 1<<20)}, Options{})
	for _, b := range [][]byte{nil, {1}, {2, 0, 0, 16, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 16, 0, 0, 0, 0, 0, 2}} {
		if err := dev.RestoreState(b); err == nil {
			t.Errorf("device state %x accepted", b)
		}
	}
	good, _ := dev.SaveState()
	if err := dev.RestoreState(good); err != nil {
		t.Fatal(err)
	}
}
