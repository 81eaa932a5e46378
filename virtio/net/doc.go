// Package net implements the virtio-net device (virtio 1.2 §5.1): the
// guest's eth0, whose other end is a Backend in the pyro process, in pyro
// a gVisor userspace TCP/IP stack per workspace (netstack/). No TAP
// device, bridge or host interface is involved: frames go from guest
// memory to the stack and back as byte slices.
//
// # Where it sits
//
//	guest eth0 ─▶ Linux virtio_net ─▶ transmitq ─▶ Device ─▶ Backend.Transmit ─▶ stack
//	guest eth0 ◀─ Linux virtio_net ◀─ receiveq  ◀─ Device ◀─ Device.Deliver   ◀─ stack
//
// The virtio-mmio transport (package virtio) hands the device its two
// virtqueues at DRIVER_OK and passes on the guest's notifications; vmm/
// puts the transport on the VM's MMIO bus like virtio-blk and
// virtio-vsock. The device touches guest memory only through the queues'
// bounds-checked buffers.
//
// # The protocol in one page
//
// One queue pair (§5.1.2): receiveq1 (0) holds buffers the driver posts
// for frames to the guest, transmitq1 (1) carries the guest's frames. No
// control queue and no multiqueue. Every frame in either direction is
// preceded by a 12-byte struct virtio_net_hdr (hdr.go, read at named
// offsets), whose flags, gso_type, csum_start/csum_offset and gso_size
// carry the offloads below, and whose num_buffers says over how many
// receive chains a frame was spread.
//
// Features (§5.1.3): MAC and MTU fill the configuration (mac, status with
// VIRTIO_NET_S_LINK_UP, max_virtqueue_pairs 1, mtu; §5.1.4), which the
// guest cannot write. MTU defaults to DefaultMTU (65520): guest and stack
// are both in reach, so large frames cut the per-frame cost. MRG_RXBUF
// lets a frame span several receive chains, so the guest posts small
// buffers and still takes 64 KiB frames. GUEST_CSUM is always offered;
// CSUM, HOST_TSO4/6 and GUEST_TSO4/6 follow the Backend's Capabilities.
// VIRTIO_F_EVENT_IDX is the transport's to offer, and it does not for
// now (virtio.MMIO.OfferEventIdx); the device works either way.
//
// Offloads: a frame with NeedsCsum carries a partial L4 checksum (the
// pseudo-header sum at CsumStart+CsumOffset; the rest is the sum from
// CsumStart to the end), which a terminating stack need not finish. A
// frame with GSO TCPv4/TCPv6 is a TCP super-segment of up to
// MaxGSOFrameLen bytes to be cut into GSOSize-byte segments; it always
// has NeedsCsum. DataValid on a received frame tells the guest not to
// verify checksums.
//
// # The Backend, and a gVisor link endpoint behind it
//
// A Backend says once which offloads it takes (Capabilities) and receives
// every guest frame through Transmit(h, frame): the frame is the list of
// guest-memory pieces it occupies, valid only during the call. Frames go
// the other way through Device.Deliver(h, frame), from any goroutine; the
// device copies them, queues them up to a bound, and the worker places
// them in the guest's receive buffers. GuestOffloads says what the
// current guest accepted. A stack.LinkEndpoint of netstack/ sits behind
// it like this:
//
//   - Transmit builds a PacketBuffer from a copy of the pieces (or
//     buffer views of it) and calls its NetworkDispatcher's
//     DeliverNetworkPacket, through link/ethernet or parsing the
//     Ethernet header itself. With TxChecksum it advertises
//     CapabilityRXChecksumOffload, so the stack does not verify the
//     guest's partial checksums; with TxTSO a guest super-segment is just
//     a large TCP segment to a terminating stack, as after GRO.
//   - WritePackets turns each PacketBuffer into Deliver(h,
//     pkt.AsSlices()): for a packet with GSOOptions of type
//     GSOTCPv4/GSOTCPv6, GSO, GSOSize from its MSS, HdrLen from its
//     header lengths, NeedsCsum with CsumStart at the L4 header and
//     CsumOffset as given. ErrQueueFull maps to a dropped packet
//     (tcpip.ErrNoBufferSpace or a silent drop: TCP retransmits),
//     ErrInactive to a link that is down.
//   - MTU() is Device.MTU(); GSOMaxSize() at most MaxGSOFrameLen less
//     the link header; SupportedGSO() HostGSOSupported only while
//     GuestOffloads reports TSO4 and TSO6 (Deliver refuses
//     super-segments otherwise, ErrOffload); with
//     CapabilityTXChecksumOffload the stack leaves checksums blank, so
//     the endpoint sets DataValid, which only a guest with Checksum
//     honours: otherwise it must not advertise that capability. A
//     partial checksum (NeedsCsum) is completed by the device for a
//     guest without Checksum.
//
// The device never imports gVisor; the endpoint imports this package.
//
// # Bounds
//
// Every length the guest supplies is checked before use, and nothing is
// allocated from one: tx frames are passed as views of guest memory. A tx
// chain with device-writable buffers, a header the guest had no right to
// send (flags, gso_type or checksum offsets it did not negotiate, or
// pointing past the frame), a runt, or a frame over the MTU (over
// MaxGSOFrameLen for a super-segment) is dropped and counted (Stats) and
// its chain returned: the queue keeps working. A receive chain that is
// not device-writable or cannot hold the header breaks the queue
// (DEVICE_NEEDS_RESET), as the spec requires of the driver. Deliver copies
// at most the frame limit, and holds at most Options.MaxPendingFrames
// frames and MaxPendingBytes bytes while the guest posts no buffers; past
// that it drops and counts, as a full NIC ring would.
//
// # Threading
//
// Notify, called on vCPU threads and ioeventfd goroutines, only posts a
// wake-up. One worker goroutine per activation owns the queues: each pass
// it drains tx (handing each frame to the Backend), then fills receive
// buffers with pending frames, and raises at most one interrupt, tx
// completions alone waiting for a batch (see worker.pass). Deliver takes
// only the device's lock, never the worker's, so Transmit may call it. A
// panic in the worker crashes the VM, not the process
// (virtio.Activation.Recover).
//
// # Resets
//
// A driver reset (status 0: reboot, driver reload) stops the worker and
// drops the pending frames (counted in RxInactive); Deliver refuses frames
// until the driver comes back. The Backend is not told: the stack sees a
// link that stops answering, as after a cable pull.
//
// # Snapshots
//
// Pause stops the worker and keeps the pending frames for a Resume of the
// same VM; a device restored into a new VM starts without them, as a
// network drops packets (snapshot.go). Its saved state is the MAC and
// MTU the guest knows, which the new device must share.
package net
