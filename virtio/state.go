package virtio

// Device state for memory snapshots: what a transport and its device must
// carry from a paused VM to a new one built over a copy of its memory. The
// rings live in guest memory and travel with it; what is outside it is the
// transport's registers, each queue's configuration and the device's two
// ring indices (the next available entry to pop, its copy of used.idx),
// and whatever the device model keeps of its own (StatefulDevice).
//
// TransportState.MarshalBinary writes a versioned, self-delimiting
// encoding, all integers little-endian:
//
//	magic "PVTS"  version u16 (1)
//	device_id u32  status u32  dev_feat_sel u32  drv_feat_sel u32  queue_sel u32
//	drv_features u64  ring u64  int_status u32  config_gen u32
//	flags u8 (bit 0 NeedsReset)
//	queue_count u16, then per queue:
//	    size u16  ready u8 (0 or 1)  desc u64  avail u64  used u64
//	    last_avail u16  used_idx u16
//	device_len u32  device[device_len]
//
// UnmarshalBinary accepts exactly that: a snapshot file is as untrusted as
// anything else read from disk, so every length is checked against the
// input before use, unknown flag bits and trailing bytes are errors, and
// the encoding is canonical (decoding and encoding again gives the same
// bytes).

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Pauser is a device that can stop using its queues and start again,
// without losing anything: the transport's Pause and Resume call it. An
// active device must implement it to be paused or restored.
type Pauser interface {
	// Pause stops the device's workers once each has finished the chain
	// it holds, and waits for them. Chains it has not popped stay in
	// the available ring; chains it popped and holds unused it gives
	// back (Queue.Unpop), so that the queues' indices describe all it
	// has done. It may raise the interrupt one last time for chains it
	// returned. Idempotent.
	Pause()
	// Resume restarts a paused device on the same queues: it serves
	// what the driver made available meanwhile. A device that stopped
	// for a broken queue stays stopped. Idempotent.
	Resume()
}

// StatefulDevice is a device with state of its own to carry through a
// snapshot, beyond its queues.
type StatefulDevice interface {
	// SaveState encodes the device's state; the transport calls it
	// only while the device is paused.
	SaveState() ([]byte, error)
	// RestoreState loads a saved state into a device that was never
	// activated, before the transport activates it; an error says what
	// does not match this device (a disk of another size, say). The
	// bytes are untrusted input.
	RestoreState([]byte) error
}

// Restorer is a device that acts on being restored into a new VM: the
// transport calls Restored after it activated the device (paused) with
// the saved queues, before Resume.
type Restorer interface {
	Restored()
}

// QueueState is one queue's configuration and the device's ring indices.
type QueueState struct {
	Size                          uint16
	Ready                         bool
	DescAddr, AvailAddr, UsedAddr uint64
	LastAvail, UsedIdx            uint16 // next available entry to pop; device's used.idx
}

// TransportState is a paused transport's state and its device's
// (MMIO.SaveState, MMIO.RestoreState).
type TransportState struct {
	DeviceID                                 DeviceID
	Status, DevFeatSel, DrvFeatSel, QueueSel uint32
	DrvFeatures                              uint64
	Ring                                     uint64 // offered ring features (OfferEventIdx)
	IntStatus, ConfigGen                     uint32
	NeedsReset                               bool
	Queues                                   []QueueState
	Device                                   []byte // the device's own state (StatefulDevice), nil if none
}

const (
	stateMagic   = "PVTS"
	stateVersion = 1
	// stateHeaderLen is the fixed part before the queues.
	stateHeaderLen = 4 + 2 + 5*4 + 2*8 + 2*4 + 1 + 2
	queueStateLen  = 2 + 1 + 3*8 + 2 + 2

	stateFlagNeedsReset = 1 << 0
)

// ErrState marks a saved state that cannot be decoded or does not fit the
// transport it is restored into.
var ErrState = errors.New("virtio: saved device state")

func stateErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrState}, args...)...)
}

// MarshalBinary encodes s (encoding.BinaryMarshaler).
func (s *TransportState) MarshalBinary() ([]byte, error) {
	if len(s.Queues) > 0xffff {
		return nil, stateErr("%d queues", len(s.Queues))
	}
	if uint64(len(s.Device)) > 0xffffffff {
		return nil, stateErr("device state of %d bytes", len(s.Device))
	}
	b := make([]byte, 0, stateHeaderLen+queueStateLen*len(s.Queues)+4+len(s.Device))
	le := binary.LittleEndian
	b = append(b, stateMagic...)
	b = le.AppendUint16(b, stateVersion)
	for _, v := range []uint32{uint32(s.DeviceID), s.Status, s.DevFeatSel, s.DrvFeatSel, s.QueueSel} {
		b = le.AppendUint32(b, v)
	}
	b = le.AppendUint64(b, s.DrvFeatures)
	b = le.AppendUint64(b, s.Ring)
	b = le.AppendUint32(b, s.IntStatus)
	b = le.AppendUint32(b, s.ConfigGen)
	var flags byte
	if s.NeedsReset {
		flags |= stateFlagNeedsReset
	}
	b = append(b, flags)
	b = le.AppendUint16(b, uint16(len(s.Queues)))
	for _, q := range s.Queues {
		b = le.AppendUint16(b, q.Size)
		ready := byte(0)
		if q.Ready {
			ready = 1
		}
		b = append(b, ready)
		b = le.AppendUint64(b, q.DescAddr)
		b = le.AppendUint64(b, q.AvailAddr)
		b = le.AppendUint64(b, q.UsedAddr)
		b = le.AppendUint16(b, q.LastAvail)
		b = le.AppendUint16(b, q.UsedIdx)
	}
	b = le.AppendUint32(b, uint32(len(s.Device)))
	b = append(b, s.Device...)
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote
// (encoding.BinaryUnmarshaler). On error s is unchanged.
func (s *TransportState) UnmarshalBinary(b []byte) error {
	r := stateReader{b: b}
	if string(r.bytes(4)) != stateMagic {
		return stateErr("not a virtio transport state (bad magic)")
	}
	if v := r.u16(); v != stateVersion {
		if r.short {
			return stateErr("truncated at the version")
		}
		return stateErr("version %d; this pyro reads version %d", v, stateVersion)
	}
	var n TransportState
	n.DeviceID = DeviceID(r.u32())
	n.Status, n.DevFeatSel, n.DrvFeatSel, n.QueueSel = r.u32(), r.u32(), r.u32(), r.u32()
	n.DrvFeatures, n.Ring = r.u64(), r.u64()
	n.IntStatus, n.ConfigGen = r.u32(), r.u32()
	flags := r.u8()
	nq := int(r.u16())
	if r.short {
		return stateErr("truncated in the transport's registers")
	}
	if flags&^stateFlagNeedsReset != 0 {
		return stateErr("unknown flags %#x", flags)
	}
	n.NeedsReset = flags&stateFlagNeedsReset != 0
	if nq*queueStateLen > r.left() {
		return stateErr("%d queues in %d bytes", nq, r.left())
	}
	if nq > 0 {
		n.Queues = make([]QueueState, nq)
	}
	for i := range n.Queues {
		q := &n.Queues[i]
		q.Size = r.u16()
		switch r.u8() {
		case 0:
		case 1:
			q.Ready = true
		default:
			return stateErr("queue %d: ready is neither 0 nor 1", i)
		}
		q.DescAddr, q.AvailAddr, q.UsedAddr = r.u64(), r.u64(), r.u64()
		q.LastAvail, q.UsedIdx = r.u16(), r.u16()
	}
	dl := r.u32()
	if r.short {
		return stateErr("truncated before the device state")
	}
	if uint64(dl) > uint64(r.left()) {
		return stateErr("device state of %d bytes, %d left", dl, r.left())
	}
	if dl > 0 {
		n.Device = append([]byte(nil), r.bytes(int(dl))...)
	}
	if r.left() != 0 {
		return stateErr("%d bytes after the end", r.left())
	}
	*s = n
	return nil
}

// stateReader reads little-endian fields; past the end it returns zeros
// and sets short.
type stateReader struct {
	b     []byte
	short bool
}

func (r *stateReader) left() int { return len(r.b) }

func (r *stateReader) bytes(n int) []byte {
	if n > len(r.b) {
		r.short = true
		r.b = nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) u8() byte    { return r.bytes(1)[0] }
func (r *stateReader) u16() uint16 { return binary.LittleEndian.Uint16(r.bytes(2)) }
func (r *stateReader) u32() uint32 { return binary.LittleEndian.Uint32(r.bytes(4)) }
func (r *stateReader) u64() uint64 { return binary.LittleEndian.Uint64(r.bytes(8)) }
