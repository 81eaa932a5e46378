package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// parseRx reads a received chain's header and frame.
func parseRx(b []byte) (Header, uint16, []byte) {
	hd, _, _ := parseHeader(b)
	return hd, binary.LittleEndian.Uint16(b[10:]), b[HeaderSize:]
}

// Without mergeable buffers each frame takes one chain, num_buffers 1.
func TestRxSingleBuffer(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures&^(1<<VIRTIO_NET_F_MRG_RXBUF), 0)
	bufs := h.post(2, 2048)
	f := frame(1514, 3)
	hd := Header{DataValid: true}
	if err := h.dev.Deliver(hd, [][]byte{f[:100], f[100:]}); err != nil {
		t.Fatal(err)
	}
	u := h.waitUsed(h.rx, 1)
	if u[0].ID != uint32(bufs[0].Head) || u[0].Len != uint32(HeaderSize+len(f)) {
		t.Fatalf("used %+v", u)
	}
	gh, nb, data := parseRx(h.written(bufs[0], u[0].Len))
	if gh != hd || nb != 1 || !bytes.Equal(data, f) {
		t.Fatalf("guest got %+v, num_buffers %d, %d bytes", gh, nb, len(data))
	}

	// A frame larger than the chain is dropped; the chain serves the
	// next frame.
	if err := h.dev.Deliver(Header{}, [][]byte{frame(3000, 0)}); err != nil {
		t.Fatal(err)
	}
	h.waitStats("frame too big for the buffer", func(s Stats) bool { return s.RxNoRoom == 1 })
	small := frame(64, 4)
	h.dev.Deliver(Header{}, [][]byte{small})
	u = h.waitUsed(h.rx, 1)
	if _, _, data := parseRx(h.written(bufs[1], u[0].Len)); u[0].ID != uint32(bufs[1].Head) || !bytes.Equal(data, small) {
		t.Fatalf("used %+v", u)
	}
}

// With mergeable buffers a frame spreads over as many chains as it takes,
// num_buffers counting them, all published at once.
func TestRxMergeable(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures, 0)
	bufs := h.post(8, 64)
	f := frame(300, 5) // 312 bytes with the header: 4 × 64 + 56
	hd := Header{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: GSOTCPv4, GSOSize: 100, HdrLen: 54}
	if err := h.dev.Deliver(hd, [][]byte{f}); err != nil {
		t.Fatal(err)
	}
	u := h.waitUsed(h.rx, 5)
	var got []byte
	for i, e := range u {
		want := uint32(64)
		if i == 4 {
			want = 56
		}
		if e.ID != uint32(bufs[i].Head) || e.Len != want {
			t.Fatalf("used %+v", u)
		}
		got = append(got, h.written(bufs[i], e.Len)...)
	}
	gh, nb, data := parseRx(got)
	if gh != hd || nb != 5 || !bytes.Equal(data, f) {
		t.Fatalf("guest got %+v, num_buffers %d, %d bytes", gh, nb, len(data))
	}

	// A frame that needs more chains than are posted waits for more,
	// then spans the old and the new ones in ring order.
	f2 := frame(400, 6) // 412 bytes: 7 chains of 64, 3 posted
	h.dev.Deliver(Header{}, [][]byte{f2})
	more := h.post(4, 64)
	u = h.waitUsed(h.rx, 7)
	got = nil
	order := append(bufs[5:], more...)
	for i, e := range u {
		if e.ID != uint32(order[i].Head) {
			t.Fatalf("used %+v", u)
		}
		got = append(got, h.written(order[i], e.Len)...)
	}
	if _, nb, data := parseRx(got); nb != 7 || !bytes.Equal(data, f2) {
		t.Fatalf("num_buffers %d, %d bytes", nb, len(data))
	}
}

// With no receive buffers posted, frames wait up to the bound, the rest
// are dropped and counted, and the waiting ones arrive in order once the
// guest posts buffers.
func TestRxWaitsForBuffersWithinBound(t *testing.T) {
	h := setup(t, Capabilities{}, Options{MaxPendingFrames: 4, MaxPendingBytes: 4 * 1000}, allFeatures, 0)
	var errs []error
	for i := range 6 {
		errs = append(errs, h.dev.Deliver(Header{}, [][]byte{frame(1000, byte(i))}))
	}
	for i, err := range errs {
		if (i < 4) != (err == nil) || (i >= 4 && !errors.Is(err, ErrQueueFull)) {
			t.Fatalf("Deliver %d: %v", i, err)
		}
	}
	if s := h.dev.Stats(); s.RxQueueFull != 2 || s.RxFrames != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The bytes bound: a frame of 1 byte over what is left.
	h2 := setup(t, Capabilities{}, Options{MaxPendingBytes: 2500}, allFeatures, 0)
	if err := h2.dev.Deliver(Header{}, [][]byte{frame(1500, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := h2.dev.Deliver(Header{}, [][]byte{frame(1001, 0)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("over the byte bound: %v", err)
	}

	bufs := h.post(4, 2048)
	u := h.waitUsed(h.rx, 4)
	for i, e := range u {
		if _, nb, data := parseRx(h.written(bufs[i], e.Len)); nb != 1 || !bytes.Equal(data, frame(1000, byte(i))) {
			t.Fatalf("frame %d: num_buffers %d, %d bytes", i, nb, len(data))
		}
	}
	// Room again.
	if err := h.dev.Deliver(Header{}, [][]byte{frame(1000, 9)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.dev.mu.Lock()
		n, b := len(h.dev.pending), h.dev.pendingBytes
		h.dev.mu.Unlock()
		if n == 1 && b == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames, %d bytes pending, want the last one alone", n, b)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Deliver refuses what the guest cannot take and says why.
func TestDeliverRefuses(t *testing.T) {
	be := newBackend(allOffloads)
	dev, err := New(be, Options{MAC: testMAC, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Deliver(Header{}, [][]byte{frame(100, 0)}); !errors.Is(err, ErrInactive) {
		t.Fatalf("before the driver: %v", err)
	}
	h := setup(t, allOffloads, Options{MTU: 1500}, allFeatures&^(1<<VIRTIO_NET_F_GUEST_TSO6), 0)
	tso := Header{NeedsCsum: true, CsumStart: 54, CsumOffset: 16, GSO: GSOTCPv6, GSOSize: 1000}
	for name, c := range map[string]struct {
		h    Header
		n    int
		want error
	}{
		"runt":                  {Header{}, ethHeaderLen - 1, ErrFrameSize},
		"over the MTU":          {Header{}, 1500 + ethHeaderLen + vlanTagLen + 1, ErrFrameSize},
		"super-segment too big": {Header{GSO: GSOTCPv4, NeedsCsum: true, GSOSize: 1}, MaxGSOFrameLen + 1, ErrFrameSize},
		"huge":                  {Header{}, 1 << 20, ErrFrameSize},
		"TSO6 declined":         {tso, 3000, ErrOffload},
		"ECN":                   {Header{GSO: GSOTCPv4 | VIRTIO_NET_HDR_GSO_ECN, NeedsCsum: true, GSOSize: 1}, 3000, ErrOffload},
		"TSO without checksum":  {Header{GSO: GSOTCPv4, GSOSize: 1000}, 3000, ErrOffload},
		"checksum past the end": {Header{NeedsCsum: true, CsumStart: 99, CsumOffset: 0}, 100, ErrOffload},
	} {
		if err := h.dev.Deliver(c.h, [][]byte{make([]byte, c.n)}); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if s := h.dev.Stats(); s.RxFrameSize != 4 || s.RxOffload != 4 {
		t.Fatalf("stats %+v", s)
	}
}

// onesSum is the Internet checksum's folded ones' complement sum.
func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// A guest that did not accept GUEST_CSUM gets partial checksums finished
// by the device and no DATA_VALID.
func TestRxCompletesChecksumForPlainGuest(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures&^(1<<VIRTIO_NET_F_GUEST_CSUM), 0)
	bufs := h.post(1, 4096)
	for _, n := range []int{301, 300} { // odd and even lengths
		f := frame(n, byte(n))
		binary.BigEndian.PutUint16(f[34+6:], 0x1234) // the pseudo-header sum
		orig := bytes.Clone(f)
		if err := h.dev.Deliver(Header{NeedsCsum: true, DataValid: true, CsumStart: 34, CsumOffset: 6}, [][]byte{f}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f, orig) {
			t.Fatal("Deliver changed the caller's frame")
		}
		u := h.waitUsed(h.rx, 1)
		gh, _, data := parseRx(h.written(bufs[0], u[0].Len))
		if gh != (Header{}) {
			t.Fatalf("header %+v", gh)
		}
		// The stored checksum makes the sum over [start, end) plus
		// the pseudo-header sum the field held come to 0xffff.
		sum := uint32(onesSum(data[34:])) + 0x1234
		sum = sum&0xffff + sum>>16
		if sum != 0xffff || !bytes.Equal(data[:40], orig[:40]) || !bytes.Equal(data[42:], orig[42:]) {
			t.Fatalf("length %d: checksum %#x does not complete the sum (%#x)", n, binary.BigEndian.Uint16(data[40:]), sum)
		}
		bufs = h.post(1, 4096)
	}
}

// A receive chain the driver made readable breaks the queue: the device
// needs a reset and Deliver refuses until it has one.
func TestRxBrokenChainNeedsReset(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.locked(func() { h.rx.Add([][]byte{make([]byte, 64)}, nil) })
	h.rx.Kick()
	h.dev.Deliver(Header{}, [][]byte{frame(100, 0)})
	deadline := time.Now().Add(5 * time.Second)
	for h.drv.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		if time.Now().After(deadline) {
			t.Fatal("device not marked DEVICE_NEEDS_RESET")
		}
		time.Sleep(50 * time.Microsecond)
	}
	if err := h.dev.Deliver(Header{}, [][]byte{frame(100, 0)}); !errors.Is(err, ErrInactive) {
		t.Fatalf("after the break: %v", err)
	}
	// A chain too small for the header breaks it the same way.
	h = setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.post(1, HeaderSize-1)
	h.dev.Deliver(Header{}, [][]byte{frame(100, 0)})
	deadline = time.Now().Add(5 * time.Second)
	for h.drv.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		if time.Now().After(deadline) {
			t.Fatal("device not marked DEVICE_NEEDS_RESET for a header-sized chain")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// A driver that took GUEST_TSO without GUEST_CSUM, against §5.1.3.1, is
// sent no super-segments: they carry partial checksums the device could
// not finish for it.
func TestGuestTSONeedsGuestCsum(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures&^(1<<VIRTIO_NET_F_GUEST_CSUM), 0)
	if g, _ := h.dev.GuestOffloads(); g.TSO4 || g.TSO6 {
		t.Fatalf("guest offloads %+v", g)
	}
	err := h.dev.Deliver(Header{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSO: GSOTCPv4, GSOSize: 1448}, [][]byte{frame(3000, 0)})
	if !errors.Is(err, ErrOffload) {
		t.Fatalf("super-segment to a guest without GUEST_CSUM: %v", err)
	}
}
