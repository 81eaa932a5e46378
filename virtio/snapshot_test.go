package virtio_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// pauseEcho echoes chains synchronously, like echoDevice, but can pause
// (Pauser), carries its configuration through a snapshot (StatefulDevice)
// and counts Restored calls (Restorer). It serves nothing while paused.
type pauseEcho struct {
	mu        sync.Mutex
	act       virtio.Activation
	active    bool
	paused    bool
	config    [4]byte
	restored  int
	failStart bool // Activate fails
}

func (e *pauseEcho) ID() virtio.DeviceID  { return 0x7d }
func (e *pauseEcho) Features() uint64     { return 1 << 3 }
func (e *pauseEcho) QueueSizes() []uint16 { return []uint16{16, 4} }
func (e *pauseEcho) ReadConfig(off uint64, d []byte) {
	virtio.ReadConfigWindow(e.config[:], off, d)
}
func (e *pauseEcho) WriteConfig(uint64, []byte) {}

func (e *pauseEcho) Activate(a virtio.Activation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failStart {
		return errors.New("refused")
	}
	e.act, e.active, e.paused = a, true, a.Paused
	return nil
}

func (e *pauseEcho) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active, e.paused = false, false
}

func (e *pauseEcho) Notify(int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.serveLocked()
}

func (e *pauseEcho) serveLocked() {
	if !e.active || e.paused {
		return
	}
	q := e.act.Queues[0]
	irq := false
	for {
		c, ok, err := q.Pop()
		if err != nil {
			e.act.Fail(err)
			return
		}
		if !ok {
			break
		}
		var in []byte
		for _, b := range c.Readable {
			in = append(in, b...)
		}
		n := 0
		for _, w := range c.Writable {
			n += copy(w, in[n:])
		}
		i, err := q.Push(c.Head, uint32(n))
		if err != nil {
			e.act.Fail(err)
			return
		}
		irq = irq || i
	}
	if irq {
		e.act.Interrupt()
	}
}

func (e *pauseEcho) Pause() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.paused = true
}

func (e *pauseEcho) Resume() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.paused = false
	e.serveLocked()
}

func (e *pauseEcho) SaveState() ([]byte, error) { return append([]byte("cfg:"), e.config[:]...), nil }

func (e *pauseEcho) RestoreState(b []byte) error {
	if len(b) != 8 || string(b[:4]) != "cfg:" {
		return errors.New("not a pauseEcho state")
	}
	copy(e.config[:], b[4:])
	return nil
}

func (e *pauseEcho) Restored() {
	e.mu.Lock()
	e.restored++
	e.mu.Unlock()
}

var (
	_ virtio.Pauser         = (*pauseEcho)(nil)
	_ virtio.StatefulDevice = (*pauseEcho)(nil)
	_ virtio.Restorer       = (*pauseEcho)(nil)
)

// echoOnce sends one request on d's queue 0 and checks its echo.
func echoOnce(t *testing.T, d *virtiotest.Driver, msg string) {
	t.Helper()
	q := d.Queues[0]
	req := q.Add([][]byte{[]byte(msg)}, []uint32{uint32(len(msg))})
	q.Kick()
	checkEcho(t, d, req, msg)
}

func checkEcho(t *testing.T, d *virtiotest.Driver, req virtiotest.Request, msg string) {
	t.Helper()
	used := d.Queues[0].TakeUsed()
	if len(used) != 1 || used[0].ID != uint32(req.Head) || used[0].Len != uint32(len(msg)) {
		t.Fatalf("%q: used %+v, want head %d", msg, used, req.Head)
	}
	if got := string(d.Bytes(req.Writable[0], uint32(len(msg)))); got != msg {
		t.Fatalf("echoed %q, want %q", got, msg)
	}
}

// pausedEcho runs a pauseEcho through a few requests and pauses it with
// one request published and not served.
func pausedEcho(t *testing.T, eventIdx bool) (*pauseEcho, *virtiotest.Driver, virtiotest.Request) {
	t.Helper()
	dev := &pauseEcho{config: [4]byte{'a', 'b', 'c', 'd'}}
	d := virtiotest.New(t, dev, 1<<20)
	if eventIdx {
		d.MMIO.OfferEventIdx()
	}
	d.Init(^uint64(0), 8)
	for _, m := range []string{"one", "two", "three", "four", "five"} {
		echoOnce(t, d, m)
	}
	if err := d.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := d.MMIO.Pause(); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	q := d.Queues[0]
	pending := q.Add([][]byte{[]byte("queued before the save")}, []uint32{64})
	q.Kick()
	if used := q.TakeUsed(); len(used) != 0 {
		t.Fatalf("a paused device served %+v", used)
	}
	return dev, d, pending
}

// roundTrip saves d's transport and passes the state through its
// encoding.
func roundTrip(t *testing.T, d *virtiotest.Driver) *virtio.TransportState {
	t.Helper()
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
	if !reflect.DeepEqual(&back, s) {
		t.Fatalf("state changed through its encoding:\n%+v\n%+v", s, &back)
	}
	return &back
}

func TestSnapshotRestoreIntoNewDevice(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(map[bool]string{false: "flags", true: "event-idx"}[eventIdx], func(t *testing.T) {
			_, d, pending := pausedEcho(t, eventIdx)
			s := roundTrip(t, d)
			if s.DeviceID != 0x7d || s.Status&virtio.DRIVER_OK == 0 || len(s.Queues) != 2 ||
				s.Queues[0].LastAvail != 5 || s.Queues[0].UsedIdx != 5 || string(s.Device) != "cfg:abcd" {
				t.Fatalf("saved %+v", s)
			}

			dev2 := &pauseEcho{}
			d2 := d.Fork(dev2)
			if err := d2.MMIO.RestoreState(s); err != nil {
				t.Fatal(err)
			}
			if !dev2.active || !dev2.paused || dev2.restored != 1 || dev2.config != [4]byte{'a', 'b', 'c', 'd'} {
				t.Fatalf("restored device: active %v paused %v restored %d config %q", dev2.active, dev2.paused, dev2.restored, dev2.config)
			}
			if dev2.act.Queues[0].Pending() != true {
				t.Fatal("the request queued before the save is not pending")
			}
			d2.SetReg(virtio.QueueSel, 0)
			if d2.Reg(virtio.Status) != s.Status || d2.Reg(virtio.QueueReady) != 1 || !d2.MMIO.Paused() {
				t.Fatalf("registers after restore: status %#x ready %d", d2.Reg(virtio.Status), d2.Reg(virtio.QueueReady))
			}
			if err := d2.MMIO.Resume(); err != nil {
				t.Fatal(err)
			}
			checkEcho(t, d2, pending, "queued before the save")
			// The rings wrap more than once more on the new device.
			for i := 0; i < 20; i++ {
				echoOnce(t, d2, strings.Repeat("x", i+1))
			}
			if d2.Negotiated&(1<<virtio.VIRTIO_F_EVENT_IDX) != 0 != eventIdx {
				t.Fatalf("negotiated %#x", d2.Negotiated)
			}
			// The old device never served the request.
			if used := d.Queues[0].TakeUsed(); len(used) != 0 {
				t.Fatalf("the old device served %+v after the save", used)
			}
		})
	}
}

func TestPauseResumeSameDevice(t *testing.T) {
	dev, d, pending := pausedEcho(t, false)
	if _, err := d.MMIO.SaveState(); err != nil {
		t.Fatal(err)
	}
	if err := d.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	if dev.paused || d.MMIO.Paused() {
		t.Fatal("still paused after Resume")
	}
	checkEcho(t, d, pending, "queued before the save")
	echoOnce(t, d, "after")
	if err := d.MMIO.Resume(); err != nil {
		t.Fatalf("Resume of a running transport: %v", err)
	}
	if _, err := d.MMIO.SaveState(); err == nil {
		t.Fatal("SaveState of a running transport succeeded")
	}
}

func TestPauseNeedsPauser(t *testing.T) {
	dev := &echoDevice{}
	d := virtiotest.New(t, dev, 1<<20)
	// An inactive device pauses whatever it implements.
	if err := d.MMIO.Pause(); err != nil {
		t.Fatalf("Pause before the driver: %v", err)
	}
	s, err := d.MMIO.SaveState()
	if err != nil || s.Status != 0 || s.Device != nil {
		t.Fatalf("SaveState of an idle transport: %+v, %v", s, err)
	}
	if err := d.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	d.Init(^uint64(0), 8)
	err = d.MMIO.Pause()
	if err == nil || !strings.Contains(err.Error(), "virtio device 127") || !strings.Contains(err.Error(), "Pauser") {
		t.Fatalf("Pause of an active device without Pauser: %v", err)
	}
	if d.MMIO.Paused() {
		t.Fatal("marked paused after a failed Pause")
	}
	if _, err := d.MMIO.SaveState(); err == nil {
		t.Fatal("SaveState after a failed Pause succeeded")
	}
}

func TestResumeRaisesPendingInterrupt(t *testing.T) {
	_, d, _ := pausedEcho(t, false)
	if d.Reg(virtio.InterruptStatus) == 0 {
		t.Fatal("no interrupt status to carry")
	}
	s := roundTrip(t, d)
	d2 := d.Fork(&pauseEcho{})
	if err := d2.MMIO.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	if d2.IRQs() != 0 {
		t.Fatal("interrupt raised before Resume")
	}
	// Resume serves the pending request, which interrupts, and raises
	// the saved status's interrupt: at least one, whatever the order.
	if err := d2.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	if d2.IRQs() == 0 {
		t.Fatal("no interrupt after Resume")
	}

	// With nothing pending, the saved status alone interrupts, once.
	_, d3, _ := pausedEcho(t, false)
	d3.Queues[0].TakeUsed()
	d3.MMIO.Resume()
	d3.Queues[0].TakeUsed()
	d3.SetReg(virtio.InterruptACK, d3.Reg(virtio.InterruptStatus))
	d3.MMIO.Pause()
	s3 := roundTrip(t, d3)
	if s3.IntStatus != 0 {
		t.Fatalf("interrupt status %#x", s3.IntStatus)
	}
	s3.IntStatus = virtio.InterruptConfigChange
	d4 := d3.Fork(&pauseEcho{})
	if err := d4.MMIO.RestoreState(s3); err != nil {
		t.Fatal(err)
	}
	d4.MMIO.Resume()
	if d4.IRQs() != 1 || d4.Reg(virtio.InterruptStatus) != virtio.InterruptConfigChange {
		t.Fatalf("%d interrupts, status %#x", d4.IRQs(), d4.Reg(virtio.InterruptStatus))
	}
	d4.MMIO.Resume()
	if d4.IRQs() != 1 {
		t.Fatal("Resume of a running transport interrupted")
	}
}

// powerOn checks that a transport is as NewMMIO left it.
func powerOn(t *testing.T, d *virtiotest.Driver, dev *pauseEcho) {
	t.Helper()
	if st := d.Reg(virtio.Status); st != 0 {
		t.Errorf("status %#x", st)
	}
	for i := 0; i < 2; i++ {
		d.SetReg(virtio.QueueSel, uint32(i))
		if d.Reg(virtio.QueueReady) != 0 {
			t.Errorf("queue %d ready", i)
		}
	}
	d.SetReg(virtio.QueueSel, 0)
	if d.Reg(virtio.InterruptStatus) != 0 || d.MMIO.NeedsReset() || d.MMIO.Paused() {
		t.Error("interrupt status, needs-reset or paused left behind")
	}
	if dev.active || dev.restored != 0 {
		t.Errorf("device active %v, restored %d", dev.active, dev.restored)
	}
	if d.Features()&(1<<virtio.VIRTIO_F_EVENT_IDX) != 0 {
		t.Error("ring features left behind")
	}
}

func TestRestoreRejects(t *testing.T) {
	_, d, _ := pausedEcho(t, false)
	good := roundTrip(t, d)
	memSize := uint64(len(d.Mem.B))
	for _, c := range []struct {
		name, want string
		edit       func(s *virtio.TransportState)
	}{
		{"device ID", "restored into virtio device 125", func(s *virtio.TransportState) { s.DeviceID = virtio.IDBlock }},
		{"queue count", "3 queues saved, the device has 2", func(s *virtio.TransportState) { s.Queues = append(s.Queues, virtio.QueueState{}) }},
		{"too few queues", "1 queues saved", func(s *virtio.TransportState) { s.Queues = s.Queues[:1] }},
		{"size over max", "queue 0 has size 32, more than the device's 16", func(s *virtio.TransportState) { s.Queues[0].Size = 32 }},
		{"idle queue size over max", "queue 1 has size 8", func(s *virtio.TransportState) { s.Queues[1].Size = 8 }},
		{"size not a power of two", "queue 0 does not fit", func(s *virtio.TransportState) { s.Queues[0].Size = 12 }},
		{"table outside memory", "queue 0 does not fit guest memory", func(s *virtio.TransportState) { s.Queues[0].DescAddr = memSize - 16 }},
		{"used ring outside memory", "used ring", func(s *virtio.TransportState) { s.Queues[0].UsedAddr = 1 << 40 }},
		{"misaligned", "misaligned", func(s *virtio.TransportState) { s.Queues[0].AvailAddr++ }},
		{"unoffered feature", "features 0x20 this device does not offer", func(s *virtio.TransportState) { s.DrvFeatures |= 1 << 5 }},
		{"no version 1", "VERSION_1", func(s *virtio.TransportState) { s.DrvFeatures &^= 1 << virtio.VIRTIO_F_VERSION_1 }},
		{"unknown ring feature", "ring features", func(s *virtio.TransportState) { s.Ring = 1 << 28 }},
		{"needs-reset in status", "DEVICE_NEEDS_RESET", func(s *virtio.TransportState) { s.Status |= virtio.DEVICE_NEEDS_RESET }},
		{"driver ok without features ok", "DRIVER_OK without FEATURES_OK", func(s *virtio.TransportState) { s.Status &^= virtio.FEATURES_OK }},
		{"device state", "restoring the device: not a pauseEcho state", func(s *virtio.TransportState) { s.Device = []byte("junk") }},
		{"no device state", "not a pauseEcho state", func(s *virtio.TransportState) { s.Device = nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := *good
			s.Queues = append([]virtio.QueueState(nil), good.Queues...)
			c.edit(&s)
			dev := &pauseEcho{}
			d2 := d.Fork(dev)
			err := d2.MMIO.RestoreState(&s)
			if !errors.Is(err, virtio.ErrState) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrState saying %q", err, c.want)
			}
			powerOn(t, d2, dev)
			// Nothing was left half-restored: the good state
			// restores into the same transport.
			if err := d2.MMIO.RestoreState(good); err != nil {
				t.Fatalf("good state after a rejection: %v", err)
			}
			d2.MMIO.Resume()
			if used := d2.Queues[0].TakeUsed(); len(used) != 1 {
				t.Fatalf("pending request: used %+v", used)
			}
			echoOnce(t, d2, "still works")
		})
	}

	t.Run("activation fails", func(t *testing.T) {
		dev := &pauseEcho{failStart: true}
		d2 := d.Fork(dev)
		err := d2.MMIO.RestoreState(good)
		if !errors.Is(err, virtio.ErrState) || !strings.Contains(err.Error(), "activation: refused") {
			t.Fatalf("error %v", err)
		}
		powerOn(t, d2, dev)
	})
	t.Run("activation fails with event indices", func(t *testing.T) {
		_, de, _ := pausedEcho(t, true)
		s := roundTrip(t, de)
		dev := &pauseEcho{failStart: true}
		d2 := de.Fork(dev)
		if err := d2.MMIO.RestoreState(s); err == nil {
			t.Fatal("accepted")
		}
		powerOn(t, d2, dev) // the ring features it set are undone
	})
	t.Run("programmed transport", func(t *testing.T) {
		dev := &pauseEcho{}
		d2 := d.Fork(dev)
		d2.SetReg(virtio.Status, virtio.ACKNOWLEDGE)
		if err := d2.MMIO.RestoreState(good); err == nil || !strings.Contains(err.Error(), "programmed") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("stateless device", func(t *testing.T) {
		d2 := d.Fork(&echoDevice{feature: 1 << 3})
		s := *good
		s.DeviceID = 0x7f
		s.Queues = s.Queues[:1]
		if err := d2.MMIO.RestoreState(&s); err == nil || !strings.Contains(err.Error(), "keeps none") {
			t.Fatalf("error %v", err)
		}
		s.Device = nil
		if err := d2.MMIO.RestoreState(&s); err == nil || !strings.Contains(err.Error(), "Pauser") {
			t.Fatalf("running device without Pauser: %v", err)
		}
	})
	if err := d.MMIO.RestoreState(nil); err == nil {
		t.Error("nil state accepted")
	}
}

func TestRestoreIdleAndBrokenDevices(t *testing.T) {
	// A driver half way through initialisation.
	dev := &pauseEcho{config: [4]byte{1, 2, 3, 4}}
	d := virtiotest.New(t, dev, 1<<20)
	d.SetReg(virtio.Status, virtio.ACKNOWLEDGE|virtio.DRIVER)
	d.SetReg(virtio.QueueSel, 1)
	d.SetReg(virtio.QueueNum, 4)
	d.MMIO.Pause()
	s := roundTrip(t, d)
	dev2 := &pauseEcho{}
	d2 := d.Fork(dev2)
	if err := d2.MMIO.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	if dev2.active || dev2.restored != 0 || dev2.config != dev.config {
		t.Fatalf("idle device: active %v restored %d config %v", dev2.active, dev2.restored, dev2.config)
	}
	if d2.Reg(virtio.Status) != virtio.ACKNOWLEDGE|virtio.DRIVER || d2.Reg(virtio.QueueNumMax) != 4 {
		t.Fatal("registers not restored")
	}
	d2.MMIO.Resume()
	d2.Init(^uint64(0), 8) // the driver can go on
	echoOnce(t, d2, "fresh")

	// A device the driver broke stays stopped, marked.
	dev3 := &pauseEcho{}
	d3 := virtiotest.New(t, dev3, 1<<20)
	d3.Init(^uint64(0), 8)
	q := d3.Queues[0]
	q.WriteDesc(0, virtiotest.Desc{Addr: 1 << 40, Len: 1})
	q.Publish(0)
	q.Kick()
	if !d3.MMIO.NeedsReset() {
		t.Fatal("not broken")
	}
	d3.MMIO.Pause()
	s3 := roundTrip(t, d3)
	dev4 := &pauseEcho{}
	d4 := d3.Fork(dev4)
	if err := d4.MMIO.RestoreState(s3); err != nil {
		t.Fatal(err)
	}
	d4.MMIO.Resume()
	if dev4.active || d4.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		t.Fatalf("broken device restored running (status %#x)", d4.Reg(virtio.Status))
	}
	d4.Init(^uint64(0), 8) // a reset brings it back
	echoOnce(t, d4, "after the reset")
}

func TestTransportStateEncodingRejects(t *testing.T) {
	_, d, _ := pausedEcho(t, true)
	s, _ := d.MMIO.SaveState()
	b, _ := s.MarshalBinary()
	var got virtio.TransportState
	for n := 0; n < len(b); n++ {
		if err := got.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("accepted %d of %d bytes", n, len(b))
		}
	}
	bad := func(name string, edit func(b []byte) []byte) {
		c := edit(bytes.Clone(b))
		if err := got.UnmarshalBinary(c); !errors.Is(err, virtio.ErrState) {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad("magic", func(b []byte) []byte { b[0] = 'X'; return b })
	bad("version", func(b []byte) []byte { b[4] = 2; return b })
	bad("trailing", func(b []byte) []byte { return append(b, 0) })
	bad("flags", func(b []byte) []byte { b[4+2+20+16+8] |= 2; return b })
	bad("ready", func(b []byte) []byte { b[4+2+20+16+8+1+2+2] = 2; return b })
	bad("queue count", func(b []byte) []byte { b[4+2+20+16+8+1] = 0xff; return b })
	bad("device length", func(b []byte) []byte { b[len(b)-len(s.Device)-1] = 0x7f; return b })
	if !reflect.DeepEqual(got, virtio.TransportState{}) {
		t.Fatalf("a failed decode changed the state: %+v", got)
	}
}

func FuzzTransportStateUnmarshal(f *testing.F) {
	for _, s := range []*virtio.TransportState{
		{},
		{DeviceID: virtio.IDVsock, Status: 15, DrvFeatures: 1 << 32, Ring: 1 << 29, IntStatus: 3, ConfigGen: 9, NeedsReset: true,
			Queues: []virtio.QueueState{{Size: 256, Ready: true, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000, LastAvail: 7, UsedIdx: 65535}, {}},
			Device: []byte("state")},
	} {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("PVTS\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s virtio.TransportState
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, virtio.ErrState) {
				t.Fatalf("error not ErrState: %v", err)
			}
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("not canonical:\n%x\n%x", b, out)
		}
		var back virtio.TransportState
		if err := back.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, s, back)
		}
	})
}

func TestUnpop(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		d := virtiotest.New(t, &echoDevice{}, 1<<16)
		d.Init(^uint64(0), 8) // for its rings: q below drives them, the echo device is never kicked
		dq := d.Queues[0]
		q := &virtio.Queue{MaxSize: 8, Size: 8, Ready: true, DescAddr: dq.Desc, AvailAddr: dq.Avail, UsedAddr: dq.Used}
		if err := virtio.ActivateForTest(q, d.Mem, eventIdx); err != nil {
			t.Fatal(err)
		}
		var heads []uint16
		for i := 0; i < 3; i++ {
			heads = append(heads, dq.Add([][]byte{{byte(i)}}, nil).Head)
		}
		first, _, _ := q.Pop()
		q.Push(first.Head, 0)
		q.Pop()
		q.Pop()
		if err := q.Unpop(2); err != nil {
			t.Fatal(err)
		}
		if popped, pushed := q.Progress(); popped != 1 || pushed != 1 {
			t.Fatalf("progress %d/%d after unpop", popped, pushed)
		}
		if eventIdx && dq.AvailEvent() != 1 {
			t.Fatalf("avail_event %d after unpop, want 1", dq.AvailEvent())
		}
		for _, want := range heads[1:] {
			c, ok, err := q.Pop()
			if !ok || err != nil || c.Head != want || c.Readable[0][0] != byte(want) {
				t.Fatalf("pop after unpop: head %d ok %v err %v, want %d", c.Head, ok, err, want)
			}
		}
		if _, ok, _ := q.Pop(); ok {
			t.Fatal("a fourth chain")
		}
		if q.Unpop(9) == nil || q.Unpop(-1) == nil {
			t.Fatal("unpop beyond the queue size accepted")
		}
		if (&virtio.Queue{}).Unpop(1) == nil {
			t.Fatal("unpop on an inactive queue accepted")
		}
	}
}

// Reload puts a programmed, running device back to a saved state in
// place (a VM rewound to a memory snapshot): the device is reset and
// activated on the saved rings, and serves again, from the saved indices,
// what the rewound guest memory holds.
func TestReloadRewindsInPlace(t *testing.T) {
	dev, d, pending := pausedEcho(t, false)
	s := roundTrip(t, d)
	// The driver's side as of the save: its rings (guest memory) and what
	// it published and took.
	saved := d.Fork(&pauseEcho{})
	// Reloaded at the state it was saved in, the device runs on alike.
	if err := d.MMIO.Reload(s); err != nil {
		t.Fatalf("Reload of a paused transport: %v", err)
	}
	if err := d.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	checkEcho(t, d, pending, "queued before the save")
	for _, m := range []string{"six", "seven", "eight"} {
		echoOnce(t, d, m)
	}
	if err := d.MMIO.Reload(s); err == nil {
		t.Fatal("Reload of a running transport succeeded")
	}
	if err := d.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	dev.mu.Lock()
	dev.config = [4]byte{'z', 'z', 'z', 'z'}
	dev.mu.Unlock()
	// Rewind: guest memory back to the save, then the transport.
	copy(d.Mem.B, saved.Mem.B)
	if err := d.MMIO.Reload(s); err != nil {
		t.Fatal(err)
	}
	if !dev.active || !dev.paused || dev.restored != 2 || dev.config != [4]byte{'a', 'b', 'c', 'd'} {
		t.Fatalf("reloaded device: active %v paused %v restored %d config %q", dev.active, dev.paused, dev.restored, dev.config)
	}
	saved.Mem, saved.MMIO = d.Mem, d.MMIO
	if err := d.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	// The request pending at the save is served again, from the rewound
	// ring, and the device goes on from there.
	checkEcho(t, saved, pending, "queued before the save")
	for i := range 12 {
		echoOnce(t, saved, strings.Repeat("y", i+1))
	}
}
