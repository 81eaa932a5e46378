package main

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/pyro-mcp/pyro/netstack"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
)

// runNetwork is the network of a pyro run VM given grants: a netstack.Stack
// holding them and the virtio-net backend for the VM. No grants: no
// network (nil, nil), the VM stays sealed.
func runNetwork(grants []netstack.Grant) (*netstack.Stack, vnet.Backend, error) {
	if len(grants) == 0 {
		return nil, nil, nil
	}
	link, backend := runLink()
	st, err := netstack.New(netstack.Config{Link: link})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the VM's network: %w", err)
	}
	for _, g := range grants {
		if _, err := st.Grant(g); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("starting the VM's network: %w", err)
		}
	}
	return st, backend, nil
}

// runLink is the wire between the stack and the VM. Until the netstack
// adapter that is also a virtio-net backend is wired in (with
// instance.Config.Net), it is a link/channel endpoint no VM drives.
func runLink() (stack.LinkEndpoint, vnet.Backend) {
	return channel.New(64, 1500, ""), nil
}
