package main

import (
	"fmt"

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

// runLink is the wire between the stack and the VM: a netstack.Link, the
// VM's virtio-net backend, and its gVisor endpoint.
func runLink() (stack.LinkEndpoint, vnet.Backend) {
	l := netstack.NewLink()
	return l.Endpoint(), l
}
