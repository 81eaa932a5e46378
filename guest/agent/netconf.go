package agent

import (
	"bytes"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// The guest network plan (the addresses the agent configures) is
// proto.GuestAddr, GuestPrefixLen and GatewayAddr.

// ResolvConfPath is the guest's resolver configuration, in its root.
const ResolvConfPath = "/etc/resolv.conf"

// resolvConfMarker starts every resolv.conf pyro wrote (the env builder's
// placeholder and the agent's): a file that starts otherwise is the
// user's, and the agent leaves it alone.
const resolvConfMarker = "# pyro:"

// resolvConf is what the agent writes for a guest with a NIC.
func resolvConf() []byte {
	return []byte(resolvConfMarker + " written by the guest agent at boot; delete this line to keep your own settings.\n" +
		"nameserver " + proto.GatewayAddr.String() + "\n")
}

// ownsResolvConf reports whether the agent may (re)write a resolv.conf
// with content old: when there is none (exists false) or pyro wrote it.
func ownsResolvConf(old []byte, exists bool) bool {
	return !exists || bytes.HasPrefix(old, []byte(resolvConfMarker))
}
