package proto

import "net/netip"

// What the host and the guest agent agree on besides the stream protocol:
// where the agent listens, what it writes on the console, and the network
// it configures. Host code takes these from here, never from the agent
// package, so that it does not link the guest's init.

// DefaultAgentPort is the vsock port the agent serves unless the kernel
// command line names another (pyro.agent_port=).
const DefaultAgentPort = 52

// Console markers: lines the agent writes on the guest's serial console
// that the host can look for.
const (
	ReadyMarker = "pyro-agent: ready"  // the agent serves vsock; the line goes on "on vsock port P after D"
	FatalMarker = "pyro-agent: FATAL:" // init failed; the reason follows, then the VM powers off
)

// The guest network plan, as the host's netstack serves it: the agent
// configures the guest's NIC with GuestAddr/GuestPrefixLen, a default
// route via GatewayAddr and GatewayAddr as name server. netstack declares
// the same addresses next to the gVisor stack that serves them; its
// TestGuestNetworkPlanAgrees keeps the two equal.
var (
	GuestAddr   = netip.MustParseAddr("10.0.2.15")
	GatewayAddr = netip.MustParseAddr("10.0.2.2")
)

// GuestPrefixLen is the guest subnet's prefix length.
const GuestPrefixLen = 24
