// Package virtio is the device side of virtio 1.2 over the MMIO transport:
// the split virtqueue shared by every device, the virtio-mmio register
// interface the guest's virtio_mmio driver programs, and the status and
// feature-negotiation state machine. Device models (virtio/blk,
// virtio/vsock) implement Device and see only virtqueues of bounds-checked
// buffers; they never touch guest memory or KVM directly.
//
// It sits between vmm/, which places each transport's MMIO window and
// interrupt, wires queue notifications to ioeventfds and interrupts to
// irqfds, and the device packages, which move the data.
//
// The guest is hostile. Every index, address and length read from a ring is
// checked before use; a descriptor walk visits at most the queue size; a
// guest that breaks the rules gets its device marked DEVICE_NEEDS_RESET and
// its queues stopped, never a host panic or an access outside its memory.
//
// For memory snapshots a transport pauses its device (Pauser), saves its
// registers, queue configuration and ring indices with the device's own
// state (TransportState, a versioned encoding), and restores them into a
// new transport and device over a copy of guest memory (snapshot.go,
// state.go).
//
// Names follow the specification (virtio-v1.2-cs01): §2.7 for the split
// virtqueue, §4.2 for virtio over MMIO.
package virtio

// Memory is guest-physical memory as devices see it: Slice returns the host
// bytes backing [addr, addr+n), or an error if any of it is not guest RAM.
// vmm/memory.Guest implements it; tests use a plain byte slice.
type Memory interface {
	Slice(addr, n uint64) ([]byte, error)
}
