package main

import (
	"fmt"
	"os"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/pyro-mcp/pyro/netstack"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
)

// runNetwork is the network of a pyro run VM given grants: a netstack.Stack
// holding them and the virtio-net backend for the VM. No grants: no
// network (nil, nil), the VM stays sealed.
func runNetwork(grants []netstack.Grant, res netstack.Resolver) (*netstack.Stack, vnet.Backend, error) {
	if len(grants) == 0 {
		return nil, nil, nil
	}
	link, backend := runLink()
	st, err := netstack.New(netstack.Config{Link: link, Resolver: res})
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

// resolverEnv names the variable that sets --resolver's default for pyro
// run and pyro mcp serve (the VM tests set it to their own DNS server).
const resolverEnv = "PYRO_RESOLVER"

// resolverFlagHelp describes --resolver.
const resolverFlagHelp = "DNS server (IP:PORT) that resolves the names grants cover (default: $" + resolverEnv + ", else the host's resolver, /etc/resolv.conf)"

// hostResolver is the resolver for addr, a --resolver value: nil, the
// host's own, when addr is empty.
func hostResolver(addr string) (netstack.Resolver, error) {
	if addr == "" {
		return nil, nil
	}
	r, err := netstack.NewResolver(addr)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// defaultResolverAddr is --resolver's default: $PYRO_RESOLVER.
func defaultResolverAddr() string { return os.Getenv(resolverEnv) }
