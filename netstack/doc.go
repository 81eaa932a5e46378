// Package netstack is the host side of a workspace's network: one gVisor
// userspace TCP/IP stack per workspace, at the far end of the guest's
// virtio-net device, that stands in for every address the guest tries to
// reach and lets a connection out only when a grant allows it.
//
//	guest eth0 ── virtio-net (virtio/) ── link endpoint ── Stack (this package)
//	10.0.2.15/24                                            │ gateway + DNS 10.0.2.2
//	                                                        ├─ TCP/UDP forwarders ── grants? ── Dialer ── outside
//	                                                        │                          no: RST / ICMP, Denial
//	                                                        ├─ DNS :53 ── granted name? ── Resolver (host)
//	                                                        │               no: NXDOMAIN, Denial
//	                                                        └─ published ports ◀── 127.0.0.1:P / [::1]:P (host)
//
// The network plan is QEMU user-mode networking's: the guest is GuestAddr
// in 10.0.2.0/24 and GatewayAddr is its default route, its DNS server and the
// address host.pyro.internal resolves to. The NIC is promiscuous and may
// spoof, so a guest SYN or datagram to any address reaches the forwarders,
// which match it (destination, port, protocol, and the name the guest
// resolved for that address through this DNS) against the workspace's
// Grants. Allowed flows are dialled on the host and relayed through bounded
// buffers, charged to the most specific grant; denied ones never reach a host
// socket and are kept, with a hint naming the grant that would allow them, in
// a bounded ring that Status returns. Flows to the gateway are host services:
// only a host.pyro.internal:P grant opens them, and it dials 127.0.0.1:P
// (then [::1]:P, for services bound to "localhost" on IPv6 only).
//
// The stack is IPv4 only for now; DNS answers AAAA with no records so guests
// fall back to IPv4 at once. Published ports listen on 127.0.0.1 and ::1 and
// dial the guest's address; guest services bound only to the guest's
// loopback will be reached through the agent over vsock, not here.
//
// A workspace's VM and stack meet in a Link (link.go): NewLink, then
// New(Config{Link: link.Endpoint(), ...}) and instance.Config{Net: link};
// the VM hands the Link its virtio-net device at each boot.
//
// gVisor is wrapped here once: the exported API speaks net, netip and this
// package's own Grant and Status types, except Config.Link, the gVisor
// link endpoint (a Link's Endpoint, or a link/channel in tests). Every bound is a named constant in
// limits.go.
package netstack
