package net

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// A frame the guest sends reaches the backend whole, with its header
// fields, however the driver splits header and frame across descriptors.
func TestTxReachesBackend(t *testing.T) {
	h := setup(t, allOffloads, Options{}, allFeatures, 0)
	f := frame(1000, 1)
	hdr := rawHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16)
	h.send(hdr[:5], append(hdr[5:], f[:3]...), f[3:500], f[500:])
	got := h.be.next(t)
	want := Header{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
	if got.h != want || !bytes.Equal(got.data, f) {
		t.Fatalf("backend got %+v and %d bytes", got.h, len(got.data))
	}
	if u := h.waitUsed(h.tx, 1); u[0].Len != 0 {
		t.Fatalf("tx used %+v", u)
	}

	// A TSO super-segment of the largest size.
	big := frame(MaxGSOFrameLen, 2)
	h.send(rawHdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 74, 1440, 54, 16), big)
	got = h.be.next(t)
	want = Header{NeedsCsum: true, CsumStart: 54, CsumOffset: 16, GSO: GSOTCPv6, GSOSize: 1440, HdrLen: 74}
	if got.h != want || !bytes.Equal(got.data, big) {
		t.Fatalf("backend got %+v and %d bytes", got.h, len(got.data))
	}
	h.waitStats("two frames counted", func(s Stats) bool {
		return s.TxFrames == 2 && s.TxBytes == uint64(len(f)+len(big))
	})
}

// Each malformed or oversized tx chain is dropped and counted, its chain
// returned, nothing reaches the backend, and the queue keeps working.
func TestTxRejects(t *testing.T) {
	csum := uint8(VIRTIO_NET_HDR_F_NEEDS_CSUM)
	noCsum := allFeatures &^ (1<<VIRTIO_NET_F_CSUM | 1<<VIRTIO_NET_F_HOST_TSO4 | 1<<VIRTIO_NET_F_HOST_TSO6)
	noTSO4 := allFeatures &^ (1 << VIRTIO_NET_F_HOST_TSO4)
	for _, c := range []struct {
		name     string
		want     uint64
		chain    [][]byte
		writable bool
		tooBig   bool
	}{
		{name: "short header", want: allFeatures, chain: [][]byte{make([]byte, HeaderSize-1)}},
		{name: "runt frame", want: allFeatures, chain: [][]byte{rawHdr(0, 0, 0, 0, 0, 0), make([]byte, 13)}},
		{name: "writable buffer", want: allFeatures, chain: [][]byte{rawHdr(0, 0, 0, 0, 0, 0), frame(100, 0)}, writable: true},
		{name: "unknown flag", want: allFeatures, chain: [][]byte{rawHdr(4, 0, 0, 0, 0, 0), frame(100, 0)}},
		{name: "checksum not negotiated", want: noCsum, chain: [][]byte{rawHdr(csum, 0, 0, 0, 20, 6), frame(100, 0)}},
		{name: "checksum past the frame", want: allFeatures, chain: [][]byte{rawHdr(csum, 0, 0, 0, 90, 9), frame(100, 0)}},
		{name: "TSO4 not negotiated", want: noTSO4, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 34, 16), frame(3000, 0)}},
		{name: "ECN", want: allFeatures, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_TCPV4|VIRTIO_NET_HDR_GSO_ECN, 54, 1000, 34, 16), frame(3000, 0)}},
		{name: "UFO", want: allFeatures, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_UDP, 42, 1000, 34, 6), frame(3000, 0)}},
		{name: "GSO without checksum", want: allFeatures, chain: [][]byte{rawHdr(0, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 0, 0), frame(3000, 0)}},
		{name: "GSO of size 0", want: allFeatures, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_TCPV4, 54, 0, 34, 16), frame(3000, 0)}},
		{name: "over the MTU", want: allFeatures, chain: [][]byte{rawHdr(0, 0, 0, 0, 0, 0), frame(1500+ethHeaderLen+vlanTagLen+1, 0)}, tooBig: true},
		{name: "super-segment over 64 KiB", want: allFeatures, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 34, 16), frame(MaxGSOFrameLen+1, 0)}, tooBig: true},
		{name: "past every bound", want: allFeatures, chain: [][]byte{rawHdr(csum, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1000, 34, 16), frame(maxFrameLen+1, 0)}, tooBig: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := setup(t, allOffloads, Options{MTU: 1500}, c.want, 0)
			var w []uint32
			if c.writable {
				w = []uint32{64}
			}
			h.locked(func() { h.tx.Add(c.chain, w) })
			h.tx.Kick()
			if u := h.waitUsed(h.tx, 1); u[0].Len != 0 {
				t.Fatalf("used %+v", u)
			}
			s := h.dev.Stats()
			if (c.tooBig && s.TxTooBig != 1) || (!c.tooBig && s.TxMalformed != 1) || s.TxFrames != 0 {
				t.Fatalf("stats %+v", s)
			}
			good := frame(60, 9)
			h.send(rawHdr(0, 0, 0, 0, 0, 0), good)
			if f := h.be.next(t); !bytes.Equal(f.data, good) {
				t.Fatal("the next frame did not follow the dropped one")
			}
			if h.drv.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET != 0 {
				t.Fatal("a dropped frame broke the device")
			}
		})
	}
}

// A backend that refuses a frame costs that frame only.
func TestTxBackendError(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.be.onTransmit = func(Header, [][]byte) error { return errors.New("no room") }
	h.send(rawHdr(0, 0, 0, 0, 0, 0), frame(100, 0))
	h.waitUsed(h.tx, 1)
	if s := h.dev.Stats(); s.TxBackendErrors != 1 || s.TxFrames != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A tx descriptor pointing outside guest memory breaks the queue: the
// device needs a reset and the backend sees nothing.
func TestTxDescriptorOutsideMemory(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.locked(func() {
		h.tx.WriteDesc(0, virtiotest.Desc{Addr: uint64(len(h.drv.Mem.B)) - 8, Len: 64})
		h.tx.Publish(0)
	})
	h.tx.Kick()
	deadline := time.Now().Add(5 * time.Second)
	for h.drv.Reg(virtio.Status)&virtio.DEVICE_NEEDS_RESET == 0 {
		if time.Now().After(deadline) {
			t.Fatal("device not marked DEVICE_NEEDS_RESET")
		}
		time.Sleep(50 * time.Microsecond)
	}
	if len(h.be.frames) != 0 || h.dev.Stats().TxFrames != 0 {
		t.Fatal("a frame from outside guest memory reached the backend")
	}
	if err := h.dev.Deliver(Header{}, [][]byte{frame(60, 0)}); !errors.Is(err, ErrInactive) {
		t.Fatalf("Deliver on a broken device: %v", err)
	}
}

// A backend may answer from inside Transmit, as a stack replying to a
// ping on the same goroutine does: Deliver takes no lock the worker holds.
func TestTransmitMayDeliver(t *testing.T) {
	h := setup(t, Capabilities{}, Options{}, allFeatures, 0)
	h.be.onTransmit = func(hd Header, frame [][]byte) error {
		return h.dev.Deliver(hd, frame)
	}
	bufs := h.post(1, 2048)
	f := frame(500, 8)
	h.send(rawHdr(0, 0, 0, 0, 0, 0), f)
	u := h.waitUsed(h.rx, 1)
	if _, _, data := parseRx(h.written(bufs[0], u[0].Len)); !bytes.Equal(data, f) {
		t.Fatal("echoed frame differs")
	}
}
