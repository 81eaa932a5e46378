package contract

import (
	"context"
	"fmt"
	"time"

	"github.com/pyro-mcp/pyro/netstack"
)

// NetworkBackend is the optional part of a Backend that manages a
// workspace's network: grants (the only way anything leaves a workspace)
// and published ports (host 127.0.0.1 listeners reaching a guest port).
// The tool layer registers the network tools only when its Backend has it.
//
// Grants and published ports are part of the workspace: kept across stop,
// start, reset and server restarts, applied to every boot, and changed on
// a running workspace at once.
type NetworkBackend interface {
	// NetworkGrant adds grants, each in a spelling netstack.ParseGrant
	// takes; one the workspace already has is not an error.
	NetworkGrant(ctx context.Context, id string, grants []string) (NetworkStatus, error)
	// NetworkRevoke removes grants the workspace has (*Error Invalid for
	// one it has not) and closes the live connections only they allowed.
	NetworkRevoke(ctx context.Context, id string, grants []string) (RevokeResult, error)
	// NetworkStatus reports grants with counters, published ports and the
	// last refused attempts.
	NetworkStatus(ctx context.Context, id string) (NetworkStatus, error)
	// PortPublish makes a guest TCP port reachable on the host's loopback;
	// the workspace must be running. Publishing a published guest port
	// again returns it as it is (or *Error Conflict for another host port).
	PortPublish(ctx context.Context, req PublishRequest) (PublishedPort, error)
	// PortUnpublish closes a published port's host listeners and forgets it.
	PortUnpublish(ctx context.Context, id string, guestPort int) error
}

// NetworkStatus is a workspace's network.
type NetworkStatus struct {
	// Live is set while the workspace runs: counters and denials are the
	// live network's. A stopped workspace reports its grants and ports only.
	Live        bool
	Grants      []GrantStatus
	Published   []PublishedPort
	Denials     []Denial // the last refused attempts, oldest first
	DeniedTotal uint64   // every refusal since boot, also those no longer listed
	LimitHits   uint64   // attempts refused by a connection limit since boot
	Connections int      // live connections now
}

// GrantStatus is one grant and what went through it since boot.
type GrantStatus struct {
	Grant            string // canonical spelling, as network_revoke takes it
	Kind             string // host-service, address, name, cidr, all-egress
	Connections      int    // live now
	TotalConnections uint64
	BytesOut         uint64 // guest to outside
	BytesIn          uint64 // outside to guest
}

// PublishedPort is one guest port reachable from the host.
type PublishedPort struct {
	GuestPort   int
	HostPort    int
	HostAddrs   []string // e.g. 127.0.0.1:8080 and [::1]:8080; empty when not listening
	Connections int
	// Error says why the port is not listening now (its host port was
	// taken when the workspace booted), "" when it is.
	Error string
}

// Denial is one attempt the workspace's network refused.
type Denial struct {
	Time     time.Time
	Protocol string // tcp, udp or dns
	Addr     string // destination address; "" for a DNS query
	Port     int
	Name     string // the name the guest resolved or asked for, if any
	Reason   string // why
	Fix      string // the grant that would allow it; "" when no grant would
	Count    int    // attempts folded into this one
}

// RevokeResult reports a revoke.
type RevokeResult struct {
	Status      NetworkStatus // after the revoke
	Revoked     []string      // canonical spellings
	ClosedConns int           // live connections closed because nothing allows them any more
}

// PublishRequest publishes a guest port.
type PublishRequest struct {
	ID        string
	GuestPort int // 1-65535
	HostPort  int // 0: pyro picks a free port
}

// ParseGrants checks grants as a tool or the CLI receives them and returns
// their canonical spellings, duplicates dropped, in order. A bad one is an
// *Error Invalid that lists the accepted forms.
func ParseGrants(specs []string) ([]netstack.Grant, error) {
	if len(specs) > MaxGrants {
		return nil, Invalid("%d grants given; the limit is %d per call", len(specs), MaxGrants).
			WithHint("Use a wildcard (*.example.com:443) or a CIDR with a port range to cover several destinations with one grant.")
	}
	var out []netstack.Grant
	seen := map[netstack.Grant]bool{}
	for _, s := range specs {
		g, err := netstack.ParseGrant(s)
		if err != nil {
			return nil, Invalid("%v", err).WithHint(GrantForms)
		}
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out, nil
}

// MaxGrants bounds the grants one call (or a workspace) takes: each is
// matched against every guest connection and DNS query, and a model that
// needs more wants a wildcard or CIDR instead.
const MaxGrants = 64

// GrantForms is the hint for a bad grant: every accepted form, with an
// example.
var GrantForms = fmt.Sprintf("Grants are %s:PORT (a service on the host's loopback), NAME:PORT (pypi.org:443), *.DOMAIN:PORT, "+
	"ADDRESS:PORT, CIDR:PORT-RANGE (10.0.0.0/8:8000-8099) or %s; append /udp for UDP.", netstack.HostServiceName, netstack.AllEgress)
