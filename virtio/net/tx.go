package net

import (
	"io"

	"github.com/pyro-mcp/pyro/virtio"
)

// drainTx hands up to a batch of the guest's frames to the backend and
// returns their chains.
func (w *worker) drainTx() (n int, irq bool, err error) {
	for ; n < batch; n++ {
		c, ok, err := w.tx.Pop()
		if err != nil || !ok {
			return n, irq, err
		}
		w.transmit(&c)
		i, err := w.tx.Push(c.Head, 0)
		if err != nil {
			return n, irq, err
		}
		irq = irq || i
	}
	return n, irq, nil
}

// transmit checks one tx chain and passes its frame to the backend, or
// drops it with a count. A malformed frame costs the guest that frame
// only: the chain goes back, the queue keeps working.
func (w *worker) transmit(c *virtio.Chain) {
	d := w.d
	total := c.ReadableLen()
	if len(c.Writable) > 0 || total < HeaderSize+ethHeaderLen {
		d.stats.txMalformed.Add(1)
		d.warn("malformed tx chain dropped", "readable", total, "writable", c.WritableLen())
		return
	}
	if total-HeaderSize > maxFrameLen {
		d.stats.txTooBig.Add(1)
		d.warn("oversized tx frame dropped", "bytes", total-HeaderSize)
		return
	}
	r := virtio.NewPieces(c.Readable)
	var hb [HeaderSize]byte
	io.ReadFull(r, hb[:]) // total >= HeaderSize
	h, flags, gsoType := parseHeader(hb[:])
	frameLen := r.Len()
	if reason := w.checkTxHeader(h, flags, gsoType, frameLen); reason != "" {
		if reason == "too big" {
			d.stats.txTooBig.Add(1)
		} else {
			d.stats.txMalformed.Add(1)
		}
		d.warn("tx frame dropped: "+reason, "flags", flags, "gso_type", gsoType, "bytes", frameLen)
		return
	}
	bufs, _ := r.Take(frameLen)
	frame := make([][]byte, len(bufs))
	for i, b := range bufs {
		frame[i] = b
	}
	if err := d.backend.Transmit(h, frame); err != nil {
		d.stats.txBackendErrors.Add(1)
		return
	}
	d.stats.txFrames.Add(1)
	d.stats.txBytes.Add(uint64(frameLen))
}

// checkTxHeader returns why a tx header is unacceptable, or "". Guests
// may set only what they negotiated (§5.1.6.2.1): a partial checksum with
// VIRTIO_NET_F_CSUM, TCP segmentation with HOST_TSO4/6; no ECN or UFO.
// DATA_VALID and num_buffers mean nothing on tx and are ignored.
func (w *worker) checkTxHeader(h Header, flags, gsoType uint8, frameLen int) string {
	if flags&^(VIRTIO_NET_HDR_F_NEEDS_CSUM|VIRTIO_NET_HDR_F_DATA_VALID) != 0 {
		return "unknown flags"
	}
	if h.NeedsCsum {
		if !w.txCsum {
			return "partial checksum not negotiated"
		}
		if int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return "checksum offsets outside the frame"
		}
	}
	switch GSOType(gsoType) {
	case GSONone:
		if frameLen > w.d.mtu+ethHeaderLen+vlanTagLen {
			return "too big"
		}
		return ""
	case GSOTCPv4:
		if !w.tso4 {
			return "TSO4 not negotiated"
		}
	case GSOTCPv6:
		if !w.tso6 {
			return "TSO6 not negotiated"
		}
	default:
		return "unsupported gso_type"
	}
	if !h.NeedsCsum || h.GSOSize == 0 {
		return "segmentation without a partial checksum or a segment size"
	}
	if frameLen > MaxGSOFrameLen {
		return "too big"
	}
	return ""
}
