package net

import (
	"fmt"

	"github.com/pyro-mcp/pyro/virtio"
)

// Deliver queues one frame for the guest: an Ethernet frame in pieces
// (gVisor's PacketBuffer.AsSlices) and its offload metadata. It copies the
// frame, so the caller keeps its buffers, and returns without waiting for
// the guest. Safe from any goroutine, including from within
// Backend.Transmit.
//
// A frame is refused, counted and reported (ErrInactive, ErrFrameSize,
// ErrOffload, ErrQueueFull) when the guest's driver is not running, when
// it is a runt or larger than the MTU (MaxGSOFrameLen for a super-segment),
// when it asks for an offload the guest did not accept, or when the frames
// already waiting for the guest's buffers reach the bound (Options
// MaxPendingFrames, MaxPendingBytes). A partial checksum for a guest
// without VIRTIO_NET_F_GUEST_CSUM is completed here instead.
func (d *Device) Deliver(h Header, frame [][]byte) error {
	n := 0
	for _, p := range frame {
		n += len(p)
		if n > maxFrameLen {
			break // the cap comes before any allocation
		}
	}
	d.mu.Lock()
	active := d.active
	d.mu.Unlock()
	if !active {
		d.stats.rxInactive.Add(1)
		return ErrInactive
	}
	g, ok := d.GuestOffloads()
	if !ok {
		d.stats.rxInactive.Add(1)
		return ErrInactive
	}
	limit := d.mtu + ethHeaderLen + vlanTagLen
	if h.GSO != GSONone {
		limit = MaxGSOFrameLen
	}
	if n < ethHeaderLen || n > limit {
		d.stats.rxFrameSize.Add(1)
		return fmt.Errorf("%w: %d bytes, %d allowed", ErrFrameSize, n, limit)
	}
	if err := checkRxOffload(h, g, n); err != nil {
		d.stats.rxOffload.Add(1)
		return err
	}
	d.mu.Lock()
	if !d.active {
		d.mu.Unlock()
		d.stats.rxInactive.Add(1)
		return ErrInactive
	}
	if len(d.pending) >= d.maxFrames || d.pendingBytes+n > d.maxBytes {
		d.mu.Unlock()
		d.stats.rxQueueFull.Add(1)
		return ErrQueueFull
	}
	// Reserve the room before copying outside the lock.
	d.pendingBytes += n
	gen := d.gen
	d.mu.Unlock()

	data := make([]byte, 0, n)
	for _, p := range frame {
		data = append(data, p...)
	}
	if h.NeedsCsum && !g.Checksum {
		completeChecksum(data, h.CsumStart, h.CsumOffset) // offsets checked above
		h.NeedsCsum, h.CsumStart, h.CsumOffset = false, 0, 0
	}
	if !g.Checksum {
		h.DataValid = false
	}

	d.mu.Lock()
	if d.gen != gen {
		// Reset while copying: it already zeroed pendingBytes.
		d.mu.Unlock()
		d.stats.rxInactive.Add(1)
		return ErrInactive
	}
	d.pending = append(d.pending, pendingFrame{h: h, data: data})
	d.mu.Unlock()
	d.wake()
	return nil
}

// checkRxOffload checks a frame's metadata against what the guest
// accepted and against the frame itself.
func checkRxOffload(h Header, g GuestOffloads, n int) error {
	if h.NeedsCsum && int(h.CsumStart)+int(h.CsumOffset)+2 > n {
		return fmt.Errorf("%w: checksum at %d+%d outside a %d-byte frame", ErrOffload, h.CsumStart, h.CsumOffset, n)
	}
	switch h.GSO {
	case GSONone:
		return nil
	case GSOTCPv4:
		if !g.TSO4 {
			return fmt.Errorf("%w: TSO4", ErrOffload)
		}
	case GSOTCPv6:
		if !g.TSO6 {
			return fmt.Errorf("%w: TSO6", ErrOffload)
		}
	default:
		return fmt.Errorf("%w: gso type %v", ErrOffload, h.GSO)
	}
	if !h.NeedsCsum || h.GSOSize == 0 {
		return fmt.Errorf("%w: a super-segment needs a partial checksum and a segment size", ErrOffload)
	}
	return nil
}

// fillRx places up to a batch of pending frames into the guest's receive
// buffers.
func (w *worker) fillRx() (n int, irq bool, err error) {
	d := w.d
	for ; n < batch; n++ {
		d.mu.Lock()
		if len(d.pending) == 0 {
			d.mu.Unlock()
			return n, irq, nil
		}
		f := d.pending[0]
		d.mu.Unlock()

		placed, i, err := w.place(f)
		if err != nil {
			return n, irq, err
		}
		if !placed {
			return n, irq, nil // wait for the guest's buffers
		}
		irq = irq || i
		d.mu.Lock()
		if len(d.pending) > 0 { // a Reset could only come after this pass
			d.pending[0] = pendingFrame{}
			d.pending = d.pending[1:]
			d.pendingBytes -= len(f.data)
		}
		d.mu.Unlock()
	}
	return n, irq, nil
}

// place writes one frame into receive chains: one chain, or with
// mergeable buffers as many as it takes (§5.1.6.4.2), the header's
// num_buffers saying how many. It reports placed=false, leaving the chains
// it popped as spares, when the guest has not posted enough yet; a frame
// that can never fit is dropped (Stats.RxNoRoom) and reported placed.
func (w *worker) place(f pendingFrame) (placed, irq bool, err error) {
	need := HeaderSize + len(f.data)
	have, chains := 0, 0
	for have < need {
		if chains == len(w.spare) {
			if chains == w.rxSize {
				break // every buffer of the ring is here and still short
			}
			c, ok, err := w.rx.Pop()
			if err != nil {
				return false, false, err
			}
			if !ok {
				return false, false, nil
			}
			if len(c.Readable) > 0 || c.WritableLen() < HeaderSize {
				// §5.1.6.3.1: receive buffers are device-writable and
				// hold at least the header.
				return false, false, fmt.Errorf("%w: virtio-net receive chain %d has %d readable and %d writable bytes", virtio.ErrQueue, c.Head, c.ReadableLen(), c.WritableLen())
			}
			w.spare = append(w.spare, c)
		}
		have += w.spare[chains].WritableLen()
		chains++
		if !w.guest.Mergeable {
			break
		}
	}
	if have < need {
		// Too big for the buffers the guest gives: without mergeable
		// buffers, for this chain; with them, for the whole ring.
		w.d.stats.rxNoRoom.Add(1)
		w.d.warn("frame larger than the guest's receive buffers dropped", "bytes", len(f.data), "room", have)
		return true, false, nil
	}

	var hb [HeaderSize]byte
	putHeader(hb[:], f.h, uint16(chains))
	w.used = w.used[:0]
	data := f.data
	for k := 0; k < chains; k++ {
		p := virtio.NewPieces(w.spare[k].Writable)
		written := 0
		if k == 0 {
			p.Write(hb[:]) // the first chain holds at least the header
			written = HeaderSize
		}
		m, _ := p.Write(data[:min(len(data), p.Len())])
		data = data[m:]
		written += m
		w.used = append(w.used, virtio.UsedElement{ID: w.spare[k].Head, Len: uint32(written)})
	}
	clear(w.spare[:chains])
	w.spare = w.spare[chains:]
	irq, err = w.rx.PushBatch(w.used)
	if err != nil {
		return false, false, err
	}
	w.d.stats.rxFrames.Add(1)
	w.d.stats.rxBytes.Add(uint64(len(f.data)))
	return true, irq, nil
}
