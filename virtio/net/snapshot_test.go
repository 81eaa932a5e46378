package net

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// spares returns how many receive chains the worker holds.
func (h *harness) spares() int {
	h.dev.mu.Lock()
	w := h.dev.w
	h.dev.mu.Unlock()
	n := 0
	h.locked(func() { n = len(w.spare) })
	return n
}

// waitSpares waits until the worker holds n receive chains.
func (h *harness) waitSpares(n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.spares() != n {
		if time.Now().After(deadline) {
			h.t.Fatalf("the worker holds %d receive chains, want %d", h.spares(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// save pauses h's transport and returns its state, through its encoding.
func (h *harness) save() *virtio.TransportState {
	h.t.Helper()
	if err := h.drv.MMIO.Pause(); err != nil {
		h.t.Fatal(err)
	}
	s, err := h.drv.MMIO.SaveState()
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		h.t.Fatal(err)
	}
	var back virtio.TransportState
	if err := back.UnmarshalBinary(b); err != nil {
		h.t.Fatal(err)
	}
	return &back
}

// fork builds a new device with opts over a new backend and a driver over
// a copy of h's memory, and restores s into them.
func (h *harness) fork(opts Options, s *virtio.TransportState) (*harness, error) {
	h.t.Helper()
	be := newBackend(h.be.caps)
	if opts.MAC == ([6]byte{}) {
		opts.MAC = testMAC
	}
	dev, err := New(be, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	drv := h.drv.Fork(dev)
	h.t.Cleanup(drv.MMIO.Close)
	h2 := &harness{t: h.t, dev: dev, drv: drv, be: be, rx: drv.Queues[rxQueue], tx: drv.Queues[txQueue]}
	return h2, drv.MMIO.RestoreState(s)
}

// receive checks that the used elements u carry frame f over the chains
// bufs, in order.
func (h *harness) receive(u []virtiotest.Used, bufs []virtiotest.Request, f []byte) {
	h.t.Helper()
	var got []byte
	for i, e := range u {
		if e.ID != uint32(bufs[i].Head) {
			h.t.Fatalf("used %+v, want heads in the order posted", u)
		}
		got = append(got, h.written(bufs[i], e.Len)...)
	}
	if _, nb, data := parseRx(got); int(nb) != len(u) || !bytes.Equal(data, f) {
		h.t.Fatalf("num_buffers %d of %d chains, %d bytes", nb, len(u), len(data))
	}
}

func TestSnapshotRestoreIntoNewDevice(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures, 0)
	f := frame(100, 1)
	h.send(rawHdr(0, 0, 0, 0, 0, 0), f)
	if got := h.be.next(t); !bytes.Equal(got.data, f) {
		t.Fatal("tx before the save")
	}
	h.waitUsed(h.tx, 1)
	bufs := h.post(8, 64)
	f1 := frame(300, 2) // 5 chains
	h.dev.Deliver(Header{}, [][]byte{f1})
	h.receive(h.waitUsed(h.rx, 5), bufs, f1)
	// A frame needing 7 chains of the 3 left: the worker holds them.
	h.dev.Deliver(Header{}, [][]byte{frame(400, 3)})
	h.waitSpares(3)

	if err := h.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	if h.spares() != 0 {
		t.Fatal("the worker kept its receive chains over Pause")
	}
	paused := frame(200, 4)
	h.send(rawHdr(0, 0, 0, 0, 0, 0), paused)
	s := h.save()
	if q := s.Queues[rxQueue]; q.LastAvail != 5 || q.UsedIdx != 5 {
		t.Fatalf("saved receive queue %+v: the held chains were not given back", q)
	}

	if _, err := h.fork(Options{MAC: [6]byte{0x02, 0, 0, 0, 0, 9}}, s); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Fatalf("restore with another MAC: %v", err)
	}
	if _, err := h.fork(Options{MTU: 1500}, s); err == nil || !strings.Contains(err.Error(), "MTU") {
		t.Fatalf("restore with another MTU: %v", err)
	}
	h2, err := h.fork(Options{}, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.drv.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	// The frame the guest sent into the snapshot goes out; the one the
	// old device held for the guest is lost, as on a network.
	if got := h2.be.next(t); !bytes.Equal(got.data, paused) {
		t.Fatal("the frame sent while paused did not reach the new backend")
	}
	h2.waitUsed(h2.tx, 1)
	// The three chains the old worker held serve the new device's
	// frames, with four more.
	more := h2.post(4, 64)
	f2 := frame(400, 5) // 7 chains
	if err := h2.dev.Deliver(Header{}, [][]byte{f2}); err != nil {
		t.Fatal(err)
	}
	h2.receive(h2.waitUsed(h2.rx, 7), append(bufs[5:8:8], more...), f2)
	// Both ways, again.
	f3 := frame(1000, 6)
	h2.send(rawHdr(0, 0, 0, 0, 0, 0), f3)
	if got := h2.be.next(t); !bytes.Equal(got.data, f3) {
		t.Fatal("tx after the restore")
	}
	rb := h2.post(20, 64)
	f4 := frame(1000, 7) // 16 chains
	h2.dev.Deliver(Header{}, [][]byte{f4})
	h2.receive(h2.waitUsed(h2.rx, 16), rb, f4)
	if st := h.dev.Stats(); st.TxFrames != 1 {
		t.Fatalf("the paused device transmitted: %+v", st)
	}
}

func TestPauseResumeKeepsPendingFrames(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures, 0)
	// Frames wait for buffers, one of them half placed.
	bufs := h.post(3, 64)
	fs := [][]byte{frame(400, 1), frame(100, 2), frame(60, 3)} // 7, 2 and 2 chains
	h.dev.Deliver(Header{}, [][]byte{fs[0]})
	h.dev.Deliver(Header{}, [][]byte{fs[1]})
	h.waitSpares(3)
	if err := h.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	// While paused the backend still delivers, and the guest posts and
	// sends.
	if err := h.dev.Deliver(Header{}, [][]byte{fs[2]}); err != nil {
		t.Fatal(err)
	}
	more := h.post(17, 64)
	tx := frame(80, 4)
	h.send(rawHdr(0, 0, 0, 0, 0, 0), tx)
	if err := h.drv.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	all := append(bufs, more...)
	u := h.waitUsed(h.rx, 7+2+2)
	h.receive(u[:7], all[:7], fs[0])
	h.receive(u[7:9], all[7:9], fs[1])
	h.receive(u[9:], all[9:11], fs[2])
	if got := h.be.next(t); !bytes.Equal(got.data, tx) {
		t.Fatal("tx after Resume")
	}
}

func TestResetWhilePaused(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.dev.Deliver(Header{}, [][]byte{frame(100, 1)})
	if err := h.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	h.drv.SetReg(virtio.Status, 0) // must not hang
	if err := h.dev.Deliver(Header{}, [][]byte{frame(100, 1)}); err == nil {
		t.Fatal("Deliver after a reset accepted")
	}
	h.drv.MMIO.Resume()
	h.drv.Init(allFeatures, queueSize)
	h.rx, h.tx = h.drv.Queues[rxQueue], h.drv.Queues[txQueue]
	bufs := h.post(1, 2048)
	f := frame(100, 2)
	if err := h.dev.Deliver(Header{}, [][]byte{f}); err != nil {
		t.Fatal(err)
	}
	h.receive(h.waitUsed(h.rx, 1), bufs, f)
}
