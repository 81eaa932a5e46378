package netstack

import (
	"sync"
	"sync/atomic"

	vnet "github.com/pyro-mcp/pyro/virtio/net"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gatewayMAC is the stack's MAC address on the guest's link, the one QEMU's
// user-mode network gives its gateway (locally administered, unicast). The
// guest learns it by ARP.
var gatewayMAC = tcpip.LinkAddress("\x52\x55\x0a\x00\x02\x02")

// nicDevice is what a Link needs of the virtio-net device in front of it:
// *vnet.Device, or a test double.
type nicDevice interface {
	Deliver(h vnet.Header, frame [][]byte) error
	MTU() int
	GuestOffloads() (vnet.GuestOffloads, bool)
}

// Link joins a guest's virtio-net device to a Stack: it is the device's
// vnet.Backend (guest frames in, through Transmit), and its Endpoint, an
// Ethernet link endpoint, is the Stack's Config.Link (stack packets out,
// through the device's Deliver). (One type cannot be both: the two
// interfaces each have a Capabilities method.) Make one with NewLink, give
// Endpoint() to New as Config.Link and the Link to the VM as its NIC
// backend; the VM calls SetDevice once the device exists. Until then,
// and while the guest's driver is down, packets to the guest are dropped,
// as on an unplugged cable.
//
// Offloads, correctness first: the Link takes the guest's partial checksums
// (the stack terminates every flow, so it never needs the finished sum, and
// guest memory is no wire that corrupts frames), but no TSO super-segments
// yet; the stack computes its own checksums, which a guest that accepted
// GUEST_CSUM is told it need not verify (DataValid).
type Link struct {
	eth *ethernet.Endpoint // the stack's view: Ethernet framing over raw
	raw rawLink
}

// NewLink returns a Link with no device yet.
func NewLink() *Link {
	l := &Link{}
	l.raw.mtu.Store(vnet.DefaultMTU)
	l.eth = ethernet.New(&l.raw)
	return l
}

var _ vnet.Backend = (*Link)(nil)

// Endpoint is the stack's side of the Link, for Config.Link: it carries
// Ethernet frames, so the stack answers ARP for GatewayAddr. New takes it
// over and closes it in Close.
func (l *Link) Endpoint() stack.LinkEndpoint { return l.eth }

// SetDevice connects the Link to the device in front of it, whose Deliver
// carries frames to the guest and whose MTU the stack then uses. The VM
// calls it before the guest boots, and again with the new device when a
// workspace's VM restarts behind the same Link and Stack.
// A nil d detaches the device (the VM stopped): packets to the guest are
// then dropped and counted rather than queued for a guest that is gone.
func (l *Link) SetDevice(d *vnet.Device) {
	if d == nil {
		l.raw.setDevice(nil)
		return
	}
	l.raw.setDevice(d)
}

// Capabilities implements vnet.Backend: partial checksums yes, TSO not yet.
func (l *Link) Capabilities() vnet.Capabilities {
	return vnet.Capabilities{TxChecksum: true}
}

// Transmit implements vnet.Backend: it copies the guest's frame into a
// packet and hands it to the stack, which runs it on this goroutine as far
// as its own queues.
func (l *Link) Transmit(h vnet.Header, frame [][]byte) error {
	return l.raw.transmit(h, frame)
}

// LinkStats counts what the Link dropped.
type LinkStats struct {
	// ToGuestDropped: packets the device refused (guest driver down,
	// its receive queue full, or no device yet). TCP retransmits.
	ToGuestDropped uint64
	// FromGuestDropped: guest frames that arrived before the stack
	// attached or after it closed.
	FromGuestDropped uint64
}

// Stats returns the Link's drop counters.
func (l *Link) Stats() LinkStats {
	return LinkStats{ToGuestDropped: l.raw.toGuestDropped.Load(), FromGuestDropped: l.raw.fromGuestDropped.Load()}
}

// rawLink is the inner endpoint under link/ethernet: frames in both
// directions carry their Ethernet header in the packet data.
type rawLink struct {
	mtu                              atomic.Int64 // the device's MTU, IP bytes
	toGuestDropped, fromGuestDropped atomic.Uint64

	mu         sync.RWMutex
	dev        nicDevice
	dispatcher stack.NetworkDispatcher
	onClose    func()
	closed     bool
}

func (r *rawLink) setDevice(d nicDevice) {
	if d != nil {
		r.mtu.Store(int64(d.MTU()))
	}
	r.mu.Lock()
	r.dev = d
	r.mu.Unlock()
}

func (r *rawLink) transmit(_ vnet.Header, frame [][]byte) error {
	r.mu.RLock()
	d := r.dispatcher
	r.mu.RUnlock()
	if d == nil {
		r.fromGuestDropped.Add(1)
		return nil // no stack (yet, or any more): a frame into the void
	}
	// The header needs no action: a partial checksum (NeedsCsum) is
	// covered by CapabilityRXChecksumOffload, and without TxTSO the
	// device lets no super-segment through.
	var b buffer.Buffer
	for _, p := range frame {
		if len(p) > 0 {
			b.Append(buffer.NewViewWithData(p))
		}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: b})
	d.DeliverNetworkPacket(0, pkt) // link/ethernet reads the type
	pkt.DecRef()
	return nil
}

// MTU implements stack.LinkEndpoint: the frame size, which link/ethernet
// turns back into the device's IP MTU.
func (r *rawLink) MTU() uint32 {
	return uint32(r.mtu.Load()) + header.EthernetMinimumSize
}

func (r *rawLink) SetMTU(uint32) {}

func (r *rawLink) MaxHeaderLength() uint16 { return 0 }

func (r *rawLink) LinkAddress() tcpip.LinkAddress { return gatewayMAC }

func (r *rawLink) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. RX checksum offload: the
// stack does not verify guest checksums, which may be partial.
func (r *rawLink) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

func (r *rawLink) Attach(d stack.NetworkDispatcher) {
	r.mu.Lock()
	r.dispatcher = d
	r.mu.Unlock()
}

func (r *rawLink) IsAttached() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.dispatcher != nil
}

func (r *rawLink) Wait() {}

func (r *rawLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

func (r *rawLink) AddHeader(*stack.PacketBuffer) {}

func (r *rawLink) ParseHeader(*stack.PacketBuffer) bool { return true }

func (r *rawLink) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.dispatcher = nil
	f := r.onClose
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

func (r *rawLink) SetOnCloseAction(f func()) {
	r.mu.Lock()
	r.onClose = f
	r.mu.Unlock()
}

// WritePackets implements stack.LinkWriter: each packet, Ethernet header
// included, goes to the guest through the device, which copies it. A
// refused packet is dropped and counted, as a full NIC ring drops; the
// stack's TCP retransmits.
func (r *rawLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	r.mu.RLock()
	d, closed := r.dev, r.closed
	r.mu.RUnlock()
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		if d == nil || closed {
			r.toGuestDropped.Add(1)
			continue
		}
		var h vnet.Header
		if g, ok := d.GuestOffloads(); ok && g.Checksum {
			// The stack finished every checksum (no TX offload is
			// advertised), so the guest may skip verifying them.
			h.DataValid = true
		}
		if err := d.Deliver(h, pkt.AsSlices()); err != nil {
			r.toGuestDropped.Add(1)
		}
	}
	return n, nil
}
