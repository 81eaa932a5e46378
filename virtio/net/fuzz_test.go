package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
)

// FuzzNetTx feeds an arbitrary tx chain (header and frame bytes split
// across up to three readable descriptors at the given points, and
// optionally a writable one) to a worker that negotiated the features in
// feat. The device must not panic, must count the frame exactly once, and
// must pass the backend only frames within its bounds whose header the
// guest was entitled to send, byte for byte as the guest wrote them.
func FuzzNetTx(f *testing.F) {
	f.Add(append(rawHdr(0, 0, 0, 0, 0, 0), frame(60, 0)...), uint16(5), uint16(20), uint8(7), false)
	f.Add(append(rawHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16), frame(3000, 1)...), uint16(12), uint16(12), uint8(7), false)
	f.Add(append(rawHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 74, 1440, 54, 16), frame(200, 2)...), uint16(0), uint16(100), uint8(3), false)
	f.Add(append(rawHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 0xfff0, 0x20), frame(100, 3)...), uint16(1), uint16(2), uint8(1), true)
	f.Add([]byte{1, 2, 3}, uint16(1), uint16(2), uint8(0), false)
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint16, feat uint8, writable bool) {
		be := newBackend(allOffloads)
		dev, err := New(be, Options{MAC: testMAC, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		w := &worker{d: dev, txCsum: feat&1 != 0, tso4: feat&2 != 0, tso6: feat&4 != 0}
		a := min(int(cut1), len(data))
		b := min(max(int(cut2), a), len(data))
		c := virtio.Chain{Readable: []virtio.Buffer{data[:a], data[a:b], data[b:]}}
		if writable {
			c.Writable = []virtio.Buffer{make([]byte, 16)}
		}
		w.transmit(&c)

		s := dev.Stats()
		if s.TxFrames+s.TxMalformed+s.TxTooBig != 1 {
			t.Fatalf("one chain counted as %+v", s)
		}
		if s.TxFrames == 0 {
			if len(be.frames) != 0 {
				t.Fatal("a dropped frame reached the backend")
			}
			return
		}
		got := <-be.frames
		if writable || len(data) < HeaderSize+ethHeaderLen || !bytes.Equal(got.data, data[HeaderSize:]) {
			t.Fatalf("backend got %d bytes of a %d-byte chain (writable %v)", len(got.data), len(data), writable)
		}
		h, n := got.h, len(got.data)
		want, _, _ := parseHeader(data)
		if h != want {
			t.Fatalf("header %+v, guest wrote %+v", h, want)
		}
		if h.NeedsCsum && (!w.txCsum || int(h.CsumStart)+int(h.CsumOffset)+2 > n) {
			t.Fatalf("partial checksum passed: %+v, %d bytes, csum negotiated %v", h, n, w.txCsum)
		}
		switch h.GSO {
		case GSONone:
			if n > 1500+ethHeaderLen+vlanTagLen {
				t.Fatalf("%d-byte frame over a 1500 MTU passed", n)
			}
		case GSOTCPv4, GSOTCPv6:
			if (h.GSO == GSOTCPv4 && !w.tso4) || (h.GSO == GSOTCPv6 && !w.tso6) || !h.NeedsCsum || h.GSOSize == 0 || n > MaxGSOFrameLen {
				t.Fatalf("super-segment passed: %+v, %d bytes", h, n)
			}
		default:
			t.Fatalf("gso_type %d passed", h.GSO)
		}
		if data[0]&^(VIRTIO_NET_HDR_F_NEEDS_CSUM|VIRTIO_NET_HDR_F_DATA_VALID) != 0 {
			t.Fatalf("flags %#x passed", data[0])
		}
	})
}

// fakeRing is a receive ring of chains with writable buffers of given
// sizes, for FuzzNetRx.
type fakeRing struct {
	chains []virtio.Chain
	next   int
	used   []virtio.UsedElement
	pushes int
}

func (r *fakeRing) Pop() (virtio.Chain, bool, error) {
	if r.next == len(r.chains) {
		return virtio.Chain{}, false, nil
	}
	r.next++
	return r.chains[r.next-1], true, nil
}

func (r *fakeRing) Unpop(n int) error {
	r.next -= n
	return nil
}

func (r *fakeRing) PushBatch(e []virtio.UsedElement) (bool, error) {
	r.used = append(r.used, e...)
	r.pushes++
	return true, nil
}

// FuzzNetRx delivers a frame of arbitrary length and header from the
// backend to a guest with the given offloads and arbitrary receive
// buffers (each chain one or two buffers of the sizes in bufs), then
// places what is pending. Deliver must refuse what the guest cannot take;
// placing must not panic, must treat a chain smaller than the header as a
// broken queue, must never write past a chain, and what the guest reads
// back across its chains must be the header with num_buffers right and
// the frame as Deliver queued it.
func FuzzNetRx(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint16(0), uint16(0), uint16(0), uint32(1514), []byte{200, 0, 100, 100}, uint8(0xf))
	f.Add(uint8(1), uint8(1), uint16(1448), uint16(34), uint16(16), uint32(60000), bytes.Repeat([]byte{255}, 16), uint8(0xf))
	f.Add(uint8(1), uint8(0), uint16(0), uint16(34), uint16(6), uint32(300), []byte{40, 1}, uint8(0x0))
	f.Add(uint8(1), uint8(4), uint16(1000), uint16(54), uint16(16), uint32(3000), []byte{3, 3, 3}, uint8(0x7))
	f.Add(uint8(0), uint8(0), uint16(0), uint16(0), uint16(0), uint32(100), []byte{0, 50}, uint8(0x8))
	f.Fuzz(func(t *testing.T, flags, gso uint8, gsoSize, csumStart, csumOffset uint16, n uint32, bufs []byte, offl uint8) {
		be := newBackend(allOffloads)
		dev, err := New(be, Options{MAC: testMAC, MTU: 1500, MaxPendingFrames: 4})
		if err != nil {
			t.Fatal(err)
		}
		var feat uint64
		for i, bit := range []int{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_MRG_RXBUF} {
			if offl&(1<<i) != 0 {
				feat |= 1 << bit
			}
		}
		g := guestOffloads(feat)
		dev.active = true
		dev.guestOffl.Store(&g)
		h := Header{NeedsCsum: flags&1 != 0, DataValid: flags&2 != 0, GSO: GSOType(gso),
			GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		fr := frame(int(n%(maxFrameLen+64)), byte(n))
		if err := dev.Deliver(h, [][]byte{fr[:len(fr)/3], fr[len(fr)/3:]}); err != nil {
			if !errors.Is(err, ErrFrameSize) && !errors.Is(err, ErrOffload) {
				t.Fatalf("Deliver: %v", err)
			}
			if len(dev.pending) != 0 {
				t.Fatal("a refused frame is pending")
			}
			return
		}
		if len(dev.pending) != 1 || dev.pendingBytes != len(fr) {
			t.Fatalf("%d pending, %d bytes", len(dev.pending), dev.pendingBytes)
		}
		queued := dev.pending[0]
		if queued.h.GSO != GSONone && (!queued.h.NeedsCsum || queued.h.GSOSize == 0 || len(fr) > MaxGSOFrameLen) {
			t.Fatalf("super-segment queued: %+v", queued.h)
		}
		if !g.Checksum && (queued.h.NeedsCsum || queued.h.DataValid) {
			t.Fatalf("checksum flags for a guest without GUEST_CSUM: %+v", queued.h)
		}

		// The guest's ring: bufs[i] is a chain's size in units of 16
		// bytes plus its low bits, split in two buffers when odd.
		ring := &fakeRing{}
		var mem [][]byte
		for i, s := range bufs {
			size := int(s)*16 + i%16
			b := make([]byte, size)
			mem = append(mem, b)
			c := virtio.Chain{Head: uint16(i)}
			if s%2 == 1 {
				c.Writable = []virtio.Buffer{b[:size/2], b[size/2:]}
			} else {
				c.Writable = []virtio.Buffer{b}
			}
			ring.chains = append(ring.chains, c)
		}
		w := &worker{d: dev, rx: ring, rxSize: max(len(bufs), 1), guest: g}
		_, _, err = w.fillRx()
		if err != nil {
			if !errors.Is(err, virtio.ErrQueue) {
				t.Fatalf("fillRx: %v", err)
			}
			small := false
			for _, c := range ring.chains[:ring.next] {
				small = small || c.WritableLen() < HeaderSize
			}
			if !small {
				t.Fatalf("queue broken with no small chain: %v", err)
			}
			return
		}
		s := dev.Stats()
		if len(ring.used) == 0 {
			if s.RxFrames != 0 {
				t.Fatal("a frame counted with no chain used")
			}
			return
		}
		if s.RxFrames != 1 || len(dev.pending) != 0 || dev.pendingBytes != 0 {
			t.Fatalf("stats %+v, %d pending (%d bytes)", s, len(dev.pending), dev.pendingBytes)
		}
		if ring.pushes != 1 {
			t.Fatalf("one frame's %d chains published in %d pushes", len(ring.used), ring.pushes)
		}
		if !g.Mergeable && len(ring.used) != 1 {
			t.Fatalf("%d chains without mergeable buffers", len(ring.used))
		}
		var got []byte
		for k, e := range ring.used {
			if int(e.ID) != k || int(e.Len) > len(mem[k]) {
				t.Fatalf("used %+v of chains %v", ring.used, bufs)
			}
			got = append(got, mem[k][:e.Len]...)
		}
		if len(got) != HeaderSize+len(fr) {
			t.Fatalf("%d bytes written for a %d-byte frame", len(got), len(fr))
		}
		gh, _, _ := parseHeader(got)
		if gh != queued.h || int(binary.LittleEndian.Uint16(got[10:])) != len(ring.used) || !bytes.Equal(got[HeaderSize:], queued.data) {
			t.Fatalf("guest read %+v (num_buffers %d), queued %+v", gh, binary.LittleEndian.Uint16(got[10:]), queued.h)
		}
	})
}
