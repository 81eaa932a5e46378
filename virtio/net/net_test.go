package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

var testMAC = [6]byte{0x02, 0x50, 0x59, 0x52, 0x4f, 0x01}

// allOffloads is every capability a backend can have.
var allOffloads = Capabilities{TxChecksum: true, TxTSO: true, RxTSO: true}

// txFrame is a frame the backend received, copied.
type txFrame struct {
	h    Header
	data []byte
}

// recBackend records transmitted frames on a channel.
type recBackend struct {
	caps   Capabilities
	frames chan txFrame
	// onTransmit, if set, runs inside Transmit before the frame is
	// recorded; its error is Transmit's.
	onTransmit func(h Header, frame [][]byte) error
}

func newBackend(caps Capabilities) *recBackend {
	return &recBackend{caps: caps, frames: make(chan txFrame, 1024)}
}

func (b *recBackend) Capabilities() Capabilities { return b.caps }

func (b *recBackend) Transmit(h Header, frame [][]byte) error {
	if b.onTransmit != nil {
		if err := b.onTransmit(h, frame); err != nil {
			return err
		}
	}
	b.frames <- txFrame{h, bytes.Join(frame, nil)}
	return nil
}

func (b *recBackend) next(t *testing.T) txFrame {
	t.Helper()
	select {
	case f := <-b.frames:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame reached the backend in 5s")
		return txFrame{}
	}
}

// harness is a running device with a guest driver double.
type harness struct {
	t      *testing.T
	dev    *Device
	drv    *virtiotest.Driver
	be     *recBackend
	rx, tx *virtiotest.DriverQueue
}

// setup activates a device over a backend with caps; the guest accepts
// the features in want.
func setup(t *testing.T, caps Capabilities, opts Options, want uint64, txIRQDelay time.Duration) *harness {
	t.Helper()
	be := newBackend(caps)
	if opts.MAC == ([6]byte{}) {
		opts.MAC = testMAC
	}
	dev, err := New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	if txIRQDelay != 0 {
		dev.txIRQDelay = txIRQDelay
	}
	drv := virtiotest.New(t, dev, 32<<20)
	drv.Init(want, queueSize)
	h := &harness{t: t, dev: dev, drv: drv, be: be, rx: drv.Queues[rxQueue], tx: drv.Queues[txQueue]}
	t.Cleanup(func() { drv.SetReg(virtio.Status, 0) })
	return h
}

// locked runs f as the guest driver, holding the device's memory lock.
func (h *harness) locked(f func()) {
	h.dev.memMu.Lock()
	defer h.dev.memMu.Unlock()
	f()
}

// send adds a tx chain of the given readable pieces and kicks.
func (h *harness) send(pieces ...[]byte) virtiotest.Request {
	var r virtiotest.Request
	h.locked(func() { r = h.tx.Add(pieces, nil) })
	h.tx.Kick()
	return r
}

// post adds n receive chains of size bytes and kicks.
func (h *harness) post(n int, size uint32) []virtiotest.Request {
	var r []virtiotest.Request
	h.locked(func() { r = h.rx.Post(n, size) })
	h.rx.Kick()
	return r
}

// waitUsed collects n used elements of q, polling under the memory lock.
func (h *harness) waitUsed(q *virtiotest.DriverQueue, n int) []virtiotest.Used {
	h.t.Helper()
	var out []virtiotest.Used
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.locked(func() { out = append(out, q.TakeUsed()...) })
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d of %d used elements on queue %d after 5s (status %#x, %+v)", len(out), n, q.Index, h.drv.Reg(virtio.Status), h.dev.Stats())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// waitIRQs waits until the device has raised at least n interrupts: it
// publishes used entries before it interrupts for them.
func (h *harness) waitIRQs(n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.drv.IRQs() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d of %d interrupts after 5s", h.drv.IRQs(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// written reads n bytes the device wrote into req.
func (h *harness) written(req virtiotest.Request, n uint32) []byte {
	var b []byte
	h.locked(func() { b = bytes.Clone(h.drv.Written(req, n)) })
	return b
}

// waitStats waits until cond holds for the device's counters.
func (h *harness) waitStats(what string, cond func(Stats) bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(h.dev.Stats()) {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not after 5s: %+v", what, h.dev.Stats())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// rawHdr builds a virtio_net_hdr.
func rawHdr(flags, gso uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) []byte {
	b := make([]byte, HeaderSize)
	b[0], b[1] = flags, gso
	le := binary.LittleEndian
	le.PutUint16(b[2:], hdrLen)
	le.PutUint16(b[4:], gsoSize)
	le.PutUint16(b[6:], csumStart)
	le.PutUint16(b[8:], csumOffset)
	return b
}

// frame returns an n-byte Ethernet frame with a recognisable payload.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x02, 0x50, 0x59, 0x52, 0x4f, 0x01, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	for i := ethHeaderLen; i < n; i++ {
		f[i] = seed + byte(i*7)
	}
	return f
}

const allFeatures = ^uint64(0)

func TestFeaturesAndConfig(t *testing.T) {
	base := uint64(1<<VIRTIO_NET_F_MAC | 1<<VIRTIO_NET_F_MTU | 1<<VIRTIO_NET_F_STATUS |
		1<<VIRTIO_NET_F_MRG_RXBUF | 1<<VIRTIO_NET_F_GUEST_CSUM | 1<<virtio.VIRTIO_F_VERSION_1)
	for _, c := range []struct {
		caps Capabilities
		want uint64
	}{
		{Capabilities{}, base},
		{Capabilities{TxChecksum: true}, base | 1<<VIRTIO_NET_F_CSUM},
		{allOffloads, base | 1<<VIRTIO_NET_F_CSUM | 1<<VIRTIO_NET_F_HOST_TSO4 | 1<<VIRTIO_NET_F_HOST_TSO6 |
			1<<VIRTIO_NET_F_GUEST_TSO4 | 1<<VIRTIO_NET_F_GUEST_TSO6},
	} {
		h := setup(t, c.caps, Options{MTU: 9000}, allFeatures, 0)
		if got := h.drv.Features(); got != c.want {
			t.Errorf("caps %+v: offered %#x, want %#x", c.caps, got, c.want)
		}
		if got := h.drv.Negotiated; got != c.want {
			t.Errorf("caps %+v: negotiated %#x", c.caps, got)
		}
		if h.drv.Features()&(1<<virtio.VIRTIO_F_EVENT_IDX|1<<VIRTIO_NET_F_CTRL_VQ|1<<VIRTIO_NET_F_MQ) != 0 {
			t.Error("offers event indices, a control queue or multiqueue")
		}
		g, ok := h.dev.GuestOffloads()
		if !ok || !g.Checksum || !g.Mergeable || g.TSO4 != c.caps.RxTSO || g.TSO6 != c.caps.RxTSO {
			t.Errorf("caps %+v: guest offloads %+v, %v", c.caps, g, ok)
		}
	}

	h := setup(t, Capabilities{}, Options{MTU: 9000}, allFeatures, 0)
	cfg := make([]byte, 16)
	h.drv.MMIO.Read(virtio.Config, cfg)
	if !bytes.Equal(cfg[:6], testMAC[:]) {
		t.Errorf("mac %x", cfg[:6])
	}
	le := binary.LittleEndian
	if st, pairs, mtu := le.Uint16(cfg[6:]), le.Uint16(cfg[8:]), le.Uint16(cfg[10:]); st != VIRTIO_NET_S_LINK_UP || pairs != 1 || mtu != 9000 {
		t.Errorf("status %d, max_virtqueue_pairs %d, mtu %d", st, pairs, mtu)
	}
	if !bytes.Equal(cfg[12:], make([]byte, 4)) {
		t.Errorf("bytes past the configuration read %x", cfg[12:])
	}
	h.drv.MMIO.Write(virtio.Config, []byte{1, 2, 3, 4, 5, 6})
	h.drv.MMIO.Read(virtio.Config, cfg[:6])
	if !bytes.Equal(cfg[:6], testMAC[:]) {
		t.Error("the guest rewrote the MAC")
	}

	// A guest that takes only VERSION_1 gets plain frames.
	h = setup(t, allOffloads, Options{}, 1<<virtio.VIRTIO_F_VERSION_1, 0)
	if g, ok := h.dev.GuestOffloads(); !ok || g != (GuestOffloads{}) {
		t.Errorf("minimal guest: %+v", g)
	}
	if h.dev.MTU() != DefaultMTU {
		t.Errorf("default MTU %d", h.dev.MTU())
	}
}

func TestNewRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		caps Capabilities
		opts Options
	}{
		"no MAC":                 {Capabilities{}, Options{}},
		"multicast MAC":          {Capabilities{}, Options{MAC: [6]byte{1, 0, 0, 0, 0, 1}}},
		"MTU too small":          {Capabilities{}, Options{MAC: testMAC, MTU: 67}},
		"MTU too large":          {Capabilities{}, Options{MAC: testMAC, MTU: MaxMTU + 1}},
		"TSO without checksum":   {Capabilities{TxTSO: true}, Options{MAC: testMAC}},
		"pending frames over":    {Capabilities{}, Options{MAC: testMAC, MaxPendingFrames: DefaultMaxPendingFrames + 1}},
		"pending bytes over":     {Capabilities{}, Options{MAC: testMAC, MaxPendingBytes: DefaultMaxPendingBytes + 1}},
		"pending bytes negative": {Capabilities{}, Options{MAC: testMAC, MaxPendingBytes: -1}},
	} {
		if _, err := New(newBackend(c.caps), c.opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(nil, Options{MAC: testMAC}); err == nil {
		t.Error("no backend: accepted")
	}
}

// A driver reset in the middle of traffic stops the worker, drops the
// pending frames (counted), refuses new ones, and a re-initialised
// driver gets a working device with clean accounting.
func TestResetMidTraffic(t *testing.T) {
	// At most 64 frames wait, so that all of them and one more fit the
	// ring the re-initialised driver posts.
	h := setup(t, allOffloads, Options{MaxPendingFrames: 64}, allFeatures, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a stack that keeps sending
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.dev.Deliver(Header{}, [][]byte{frame(100+i%1000, byte(i))})
		}
	}()
	h.post(16, 256)
	for range 8 {
		h.send(rawHdr(0, 0, 0, 0, 0, 0), frame(200, 1))
	}
	h.waitStats("traffic flowing", func(s Stats) bool { return s.RxFrames > 0 && s.RxQueueFull > 0 })
	h.drv.SetReg(virtio.Status, 0)
	if _, ok := h.dev.GuestOffloads(); ok {
		t.Fatal("guest offloads reported after the reset")
	}
	if err := h.dev.Deliver(Header{}, [][]byte{frame(100, 0)}); !errors.Is(err, ErrInactive) {
		t.Fatalf("after reset: %v", err)
	}
	h.dev.mu.Lock()
	n, b := len(h.dev.pending), h.dev.pendingBytes
	h.dev.mu.Unlock()
	if n != 0 || b != 0 {
		t.Fatalf("%d frames, %d bytes pending after reset", n, b)
	}
	if h.dev.Stats().RxInactive == 0 {
		t.Fatal("frames dropped by the reset not counted")
	}

	h.drv.Init(allFeatures, queueSize)
	h.rx, h.tx = h.drv.Queues[rxQueue], h.drv.Queues[txQueue]
	close(stop)
	wg.Wait()
	// Whatever the sender got in after the re-init is accounted.
	h.dev.mu.Lock()
	sum := 0
	for _, f := range h.dev.pending {
		sum += len(f.data)
	}
	if sum != h.dev.pendingBytes {
		t.Fatalf("pending bytes %d, frames hold %d", h.dev.pendingBytes, sum)
	}
	waiting := len(h.dev.pending)
	h.dev.mu.Unlock()
	for len(h.be.frames) > 0 {
		<-h.be.frames
	}
	h.send(rawHdr(0, 0, 0, 0, 0, 0), frame(64, 7))
	if f := h.be.next(t); !bytes.Equal(f.data, frame(64, 7)) {
		t.Fatal("tx after the reset")
	}
	bufs := h.post(waiting+1, 2048)
	h.dev.Deliver(Header{}, [][]byte{frame(77, 7)})
	u := h.waitUsed(h.rx, waiting+1)
	if _, _, data := parseRx(h.written(bufs[waiting], u[waiting].Len)); !bytes.Equal(data, frame(77, 7)) {
		t.Fatal("rx after the reset")
	}
}

// Tx completions alone wait for a batch (or the delay); an interrupt the
// rx queue needs pays them too.
func TestInterruptBatching(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, time.Hour)
	h.post(2, 2048)

	// One tx frame: its completion is owed, not interrupted for.
	h.send(rawHdr(0, 0, 0, 0, 0, 0), frame(60, 0))
	h.be.next(t)
	// A received frame's interrupt covers it.
	h.dev.Deliver(Header{}, [][]byte{frame(60, 1)})
	h.waitUsed(h.rx, 1)
	h.waitUsed(h.tx, 1)
	h.waitIRQs(1)

	// txIRQBatch frames published at once: one interrupt.
	h.locked(func() {
		for range txIRQBatch {
			h.tx.Add([][]byte{rawHdr(0, 0, 0, 0, 0, 0), frame(60, 2)}, nil)
		}
	})
	h.tx.Kick()
	h.waitUsed(h.tx, txIRQBatch)
	h.waitIRQs(2) // the batch's own, with the delay an hour away
	// The rx frame after them is the witness that the worker is done
	// with them: it interrupts once more.
	h.dev.Deliver(Header{}, [][]byte{frame(60, 3)})
	h.waitUsed(h.rx, 1)
	h.waitIRQs(3)
	// Nothing is owed after the received frame's interrupt, and every
	// interrupt before it has been raised: a device interrupting per tx
	// completion would be at 34 or more by now.
	if got := h.drv.IRQs(); got != 3 {
		t.Fatalf("%d interrupts, want 3 (the first rx frame's paying for a tx completion, the batch's, the second rx frame's)", got)
	}

	// With a short delay a lone tx completion interrupts by itself.
	h2 := setup(t, Capabilities{}, Options{}, allFeatures, time.Millisecond)
	h2.send(rawHdr(0, 0, 0, 0, 0, 0), frame(60, 0))
	h2.waitIRQs(1)
	if u := h2.waitUsed(h2.tx, 1); len(u) != 1 {
		t.Fatalf("used %+v", u)
	}
}

// A bug in the backend's Transmit, on the worker, crashes the device's VM
// through the transport and nothing else; a reset still returns.
func TestWorkerPanicCrashesVM(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	crashed := make(chan error, 1)
	h.drv.MMIO.OnCrash(func(err error) { crashed <- err })
	h.be.onTransmit = func(Header, [][]byte) error { panic("injected backend bug") }
	h.send(rawHdr(0, 0, 0, 0, 0, 0), frame(60, 0))
	var err error
	select {
	case err = <-crashed:
	case <-time.After(5 * time.Second):
		t.Fatal("no crash")
	}
	var pe *virtio.PanicError
	if !errors.As(err, &pe) || pe.Where != "virtio-net worker" || fmt.Sprint(pe.Value) != "injected backend bug" {
		t.Fatalf("crash: %v", err)
	}
	h.drv.SetReg(virtio.Status, 0) // must not hang
}

// The device runs unchanged over event indices, should the transport
// offer them again: frames flow both ways and interrupts arrive.
func TestWithEventIdx(t *testing.T) {
	be := newBackend(allOffloads)
	dev, err := New(be, Options{MAC: testMAC})
	if err != nil {
		t.Fatal(err)
	}
	drv := virtiotest.New(t, dev, 32<<20)
	drv.MMIO.OfferEventIdx()
	drv.Init(allFeatures, queueSize)
	t.Cleanup(func() { drv.SetReg(virtio.Status, 0) })
	h := &harness{t: t, dev: dev, drv: drv, be: be, rx: drv.Queues[rxQueue], tx: drv.Queues[txQueue]}
	if !h.rx.EventIdx {
		t.Fatal("event indices not negotiated")
	}
	bufs := h.post(4, 512)
	for i := range 3 {
		f := frame(60, byte(i))
		h.send(rawHdr(0, 0, 0, 0, 0, 0), f)
		if got := be.next(t); !bytes.Equal(got.data, f) {
			t.Fatalf("tx %d", i)
		}
	}
	f := frame(1000, 9) // two 512-byte chains
	if err := dev.Deliver(Header{}, [][]byte{f}); err != nil {
		t.Fatal(err)
	}
	u := h.waitUsed(h.rx, 2)
	got := append(h.written(bufs[0], u[0].Len), h.written(bufs[1], u[1].Len)...)
	if _, nb, data := parseRx(got); nb != 2 || !bytes.Equal(data, f) {
		t.Fatalf("num_buffers %d, %d bytes", nb, len(data))
	}
	h.waitIRQs(1)
}
