package virtio

import "encoding/binary"

// UsedElement is one entry of the used ring (§2.7.8, struct
// virtq_used_elem): the head of a chain the device returns and the bytes it
// wrote into the chain's device-writable buffers.
type UsedElement struct {
	ID  uint16
	Len uint32
}

// PushBatch returns several chains at once: it writes every element, then
// publishes used.idx once, so the driver sees all of them or none. A device
// that spreads one message over several chains (virtio-net's mergeable
// receive buffers, §5.1.6.4.2) needs this: Linux reads num_buffers from the
// first chain and counts a packet whose other chains are not yet in the
// used ring as a receive error. It reports whether the driver wants an
// interrupt for any of them.
func (q *Queue) PushBatch(elems []UsedElement) (interrupt bool, err error) {
	if q.used == nil {
		return false, queueErr("push to a queue that is not active")
	}
	if len(elems) == 0 {
		return false, nil
	}
	if len(elems) > int(q.Size) {
		return false, queueErr("push of %d chains to a queue of %d", len(elems), q.Size)
	}
	for _, e := range elems {
		if e.ID >= q.Size {
			return false, queueErr("push of head %d outside a queue of %d", e.ID, q.Size)
		}
	}
	old := q.usedIdx
	for i, e := range elems {
		b := q.used[4+8*uint64((old+uint16(i))%q.Size):]
		binary.LittleEndian.PutUint32(b[0:], uint32(e.ID))
		binary.LittleEndian.PutUint32(b[4:], e.Len)
	}
	q.usedIdx = old + uint16(len(elems))
	// The elements are visible before the index that publishes them: x86
	// does not reorder stores. The driver's wish is read after, as in Push.
	binary.LittleEndian.PutUint16(q.used[2:], q.usedIdx)
	fence()
	if q.eventIdx {
		return needEvent(q.usedEvent(), q.usedIdx, old), nil
	}
	return binary.LittleEndian.Uint16(q.avail[0:])&VIRTQ_AVAIL_F_NO_INTERRUPT == 0, nil
}
