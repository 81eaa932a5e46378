package agent

import (
	"bytes"
	"net/netip"
)

// The guest network plan, as netstack serves it: the agent configures the
// guest's NIC with GuestAddr/GuestPrefixLen, a default route via
// GatewayAddr and GatewayAddr as name server. They duplicate netstack's
// GuestAddr and GatewayAddr so the agent does not link gVisor;
// netstack's TestGuestNetworkPlanAgrees keeps them equal.
var (
	GuestAddr   = netip.MustParseAddr("10.0.2.15")
	GatewayAddr = netip.MustParseAddr("10.0.2.2")
)

// GuestPrefixLen is the guest subnet's prefix length.
const GuestPrefixLen = 24

// ResolvConfPath is the guest's resolver configuration, in its root.
const ResolvConfPath = "/etc/resolv.conf"

// resolvConfMarker starts every resolv.conf pyro wrote (the env builder's
// placeholder and the agent's): a file that starts otherwise is the
// user's, and the agent leaves it alone.
const resolvConfMarker = "# pyro:"

// resolvConf is what the agent writes for a guest with a NIC.
func resolvConf() []byte {
	return []byte(resolvConfMarker + " written by the guest agent at boot; delete this line to keep your own settings.\n" +
		"nameserver " + GatewayAddr.String() + "\n")
}

// ownsResolvConf reports whether the agent may (re)write a resolv.conf
// with content old: when there is none (exists false) or pyro wrote it.
func ownsResolvConf(old []byte, exists bool) bool {
	return !exists || bytes.HasPrefix(old, []byte(resolvConfMarker))
}
