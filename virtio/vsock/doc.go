// Package vsock implements the virtio-vsock device (virtio 1.2 §5.10): it
// moves packets between guest AF_VSOCK sockets and host net.Conns, with the
// host's end of every stream living in this process. It is pyro's lifeline
// to the guest agent: Dial(ctx, port) connects to a port the agent listens
// on, and Listen(port) takes connections guest programs make to the host
// (CID 2).
//
// # Where it sits
//
//	guest socket ─▶ Linux virtio_transport ─▶ tx virtqueue ─▶ Device ─▶ Conn.Read
//	guest socket ◀─ Linux virtio_transport ◀─ rx virtqueue ◀─ Device ◀─ Conn.Write
//
// The virtio-mmio transport (package virtio) hands the device its three
// virtqueues at DRIVER_OK and passes on the guest's notifications; vmm/
// puts the transport on the VM's MMIO bus. The device never touches KVM
// or guest memory except through the queues.
//
// # The protocol in one page
//
// Queues (§5.10.2): 0 rx carries packets to the guest in buffers the
// driver posts; 1 tx carries the guest's packets; 2 event carries
// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET. Configuration (§5.10.4) is one le64,
// guest_cid, which must not be 0, 1, 2 or 0xffffffff; the host is CID 2.
// The only feature is VIRTIO_VSOCK_F_STREAM (§5.10.3).
//
// Every packet is a 44-byte header (packet.go) and len payload bytes; a
// stream is named by (src_cid, src_port, dst_cid, dst_port). The driver
// may split the header and payload across descriptors anywhere (older
// Linux uses one descriptor each, newer one for both), so both are read as
// a byte stream over the chain.
//
// Streams (§5.10.6.5): a REQUEST is answered by RESPONSE (connected) or
// RST (nobody listens, or no resources). SHUTDOWN carries cumulative flags
// RCV ("I will receive no more") and SEND ("I will send no more"). A clean
// close is SHUTDOWN with both flags answered by the peer's RST; a peer that
// has not answered within a while is sent the RST instead, so neither side
// reuses the address tuple while the other still holds it. A RST aborts a
// stream at any point. A packet for a stream that does not exist is
// answered with RST, except a RST.
//
// # Credit (§5.10.6.3)
//
// Receivers never drop stream data; senders never send more than the
// receiver has room for. Every packet carries the sender's buf_alloc (its
// receive buffer for the stream) and fwd_cnt (a free-running count of the
// bytes its application has consumed). A sender keeps tx_cnt, the bytes it
// has sent, and may send only
//
//	peer_free = peer_buf_alloc - (tx_cnt - peer_fwd_cnt)   // u32 arithmetic
//
// more. When the receiver's application consumes data it tells the sender,
// either in the next packet it sends anyway or in a CREDIT_UPDATE; a sender
// that is stuck may ask with CREDIT_REQUEST.
//
// Here each Conn advertises buf_alloc = Options.BufferSize and keeps at
// most that many received bytes: a guest that sends past its credit has
// broken the protocol and its stream is reset (ErrProtocol), so a hostile
// guest can make the host hold at most MaxConns × BufferSize bytes. The
// device sends a CREDIT_UPDATE once the application has consumed a quarter
// of the buffer since the last fwd_cnt the guest saw, and whenever asked.
// Host writes are not buffered: Conn.Write hands its slice to the device
// worker, which copies straight from it into the guest's rx buffers as
// credit allows, and Write returns once the guest's driver has every byte,
// so a host writer blocks while the guest has no credit. A writer with
// nothing to send for lack of credit sends one CREDIT_REQUEST.
//
// # Threading
//
// Notify, called on vCPU threads and ioeventfd goroutines, only posts a
// wake-up. One worker goroutine per activation owns the queues: each pass
// it drains tx (handling every guest packet under the device lock, so the
// tx queue is processed whatever the state of rx, §5.10.6.1), then fills
// the rx buffers the guest has posted with what is ready to send, then any
// pending event, and raises at most one interrupt. Host goroutines (Read,
// Write, Dial, Close) change connection state under the same lock and wake
// the worker. Replies that belong to no connection (RSTs) queue outside the
// rings up to a bound; past it the worker stops taking tx packets until the
// guest takes rx buffers, as §5.10.6.1 allows. A queue the driver breaks is
// reported with Activation.Fail and stops the worker until the reset.
//
// # Watchdog and diagnostics
//
// The worker also wakes once a second. If the guest's tx packets waited two
// whole seconds with no pass of the worker, a notification was lost: the
// watchdog runs the device, counts a rescue (Rescues) and logs the state.
// If a stream waits (a Read for data, a Write for credit, a packet for an
// rx buffer) and nothing has moved for ten seconds, it raises one
// interrupt, which a healthy driver takes as a no-op, in case the guest
// missed one; that probe is logged only if things move right after it.
// DebugState prints the rings as both sides see them and every stream's
// credit counters, which is what a stall report needs.
//
// # Resets
//
// A driver reset (status 0: reboot, driver reload) stops the worker and
// fails every connection with ErrDeviceReset; listeners survive it for the
// next boot. Nothing is sent on the event queue when the driver comes back:
// its own reset already dropped its sockets. TransportReset is for the
// other case §5.10.6.7 describes, where the host side lost its streams
// while the guest kept its own (say, restore from a snapshot): it fails the
// host's connections and posts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, on which
// the driver resets its connected sockets and re-reads guest_cid.
//
// # Snapshots
//
// Pause stops the worker and keeps every stream, for a Resume of the same
// VM. A device restored from a snapshot into a new VM has no streams, and
// says so with the same event once it runs (Restored, snapshot.go).
package vsock
