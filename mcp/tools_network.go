package mcp

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Network tools: network_grant, network_revoke, network_status, port_publish
// and port_unpublish. A workspace reaches nothing outside until granted;
// grants are the only way out, and published ports the only way in.

type grantsIn struct {
	ID     string   `json:"id" jsonschema:"workspace id (or name)"`
	Grants []string `json:"grants" jsonschema:"grants, e.g. [\"pypi.org:443\", \"*.npmjs.org:443\", \"host.pyro.internal:5432\", \"10.1.0.0/16:8000-8099\", \"all-egress\"]; append /udp for UDP"`
}

type publishIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	GuestPort int    `json:"guest_port" jsonschema:"TCP port the guest service listens on"`
	HostPort  int    `json:"host_port,omitempty" jsonschema:"port on the host's 127.0.0.1 and ::1 (default: a free one)"`
}

type unpublishIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	GuestPort int    `json:"guest_port" jsonschema:"the published guest port, as network_status lists it"`
}

type networkOut struct {
	Workspace string      `json:"id"`
	Network   networkView `json:"network"`
	Hint      string      `json:"hint,omitempty"`
}

type revokeOut struct {
	Workspace   string      `json:"id"`
	Revoked     []string    `json:"revoked"`
	ClosedConns int         `json:"closed_connections"`
	Network     networkView `json:"network"`
}

type publishOut struct {
	Workspace string        `json:"id"`
	Published publishedView `json:"published"`
	Hint      string        `json:"hint,omitempty"`
}

type unpublishOut struct {
	Workspace   string `json:"id"`
	Unpublished int    `json:"unpublished_guest_port"`
}

func tunePorts(s *jsonschema.Schema) {
	bounds(s, "guest_port", 1, 65535)
	bounds(s, "host_port", 0, 65535)
}

func tuneGrants(s *jsonschema.Schema) {
	if p := prop(s, "grants"); p != nil {
		one, most := 1, contract.MaxGrants
		p.MinItems, p.MaxItems = &one, &most
	}
}

func networkTools() []toolSpec {
	return netTools(
		defTool(toolDef{
			name: "network_grant", group: "network", core: true, idempotent: true,
			summary:     "Let a workspace reach a destination outside it: a name, address or network with ports, a service on the host's loopback (host.pyro.internal:PORT), or all-egress; at once, kept across reset.",
			description: "Let the workspace open connections to more destinations (NAME:PORT, *.DOMAIN:PORT, ADDR:PORT, CIDR:PORT-RANGE, all-egress; host.pyro.internal:PORT is the host's 127.0.0.1:PORT). Traffic then crosses to the host's network. Immediate; kept across stop and reset.",
			tune:        tuneGrants,
		}, toolNetworkGrant),
		defTool(toolDef{
			name: "network_revoke", group: "network", destructive: true, idempotent: true,
			summary:     "Withdraw grants from a workspace; closes the live connections that depended on them.",
			description: "Withdraw grants (spelled as network_status lists them). Live connections that only they allowed are closed; the result says how many.",
			tune:        tuneGrants,
		}, toolNetworkRevoke),
		defTool(toolDef{
			name: "network_status", group: "network", readOnly: true,
			summary:     "A workspace's grants with connection and byte counters, published ports, and the last refused attempts with the grant that would allow each.",
			description: "Show the workspace's grants (with connection and byte counters), published ports, and its last refused connections and DNS names with the grant that would allow each. Read it when a download or install fails.",
		}, toolNetworkStatus),
		defTool(toolDef{
			name: "port_publish", group: "network", core: true, idempotent: true,
			summary:     "Make a guest TCP port reachable from the host at 127.0.0.1 and ::1 (host port chosen or given), e.g. a dev server.",
			description: "Make a guest TCP service reachable from the host at 127.0.0.1:HOST_PORT and [::1]:HOST_PORT (host_port default: a free one); returns the host port. Host programs can then connect into the guest. Kept across stop and reset.",
			tune:        tunePorts,
		}, toolPortPublish),
		defTool(toolDef{
			name: "port_unpublish", group: "network", destructive: true,
			summary:     "Close a published port's host listeners and forget it.",
			description: "Close the host listeners of a published guest port and forget it; connections already open run on until closed.",
			tune:        tunePorts,
		}, toolPortUnpublish),
	)
}

// netTools makes specs register only on a Backend that has the network.
func netTools(specs ...toolSpec) []toolSpec {
	for i := range specs {
		add := specs[i].add
		specs[i].add = func(s *sdk.Server, h *handler) {
			if _, ok := h.b.(contract.NetworkBackend); ok {
				add(s, h)
			}
		}
	}
	return specs
}

// netBackend returns the Backend's network, or an error saying it has none.
func (h *handler) netBackend() (contract.NetworkBackend, error) {
	nb, ok := h.b.(contract.NetworkBackend)
	if !ok {
		return nil, contract.Invalid("this pyro server has no workspace network").WithHint("Workspaces here reach nothing outside; do without the network.")
	}
	return nb, nil
}

// grantArgs checks a tool's grants and returns their canonical spellings.
func grantArgs(specs []string) ([]string, error) { return contract.CanonicalGrants(specs) }

func toolNetworkGrant(ctx context.Context, h *handler, in grantsIn) (networkOut, error) {
	grants, err := grantArgs(in.Grants)
	if err != nil {
		return networkOut{}, err
	}
	nb, err := h.netBackend()
	if err != nil {
		return networkOut{}, err
	}
	var (
		st contract.NetworkStatus
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		st, err = nb.NetworkGrant(ctx, id, grants)
		return err
	})
	if err != nil {
		return networkOut{}, err
	}
	out := networkOut{Workspace: ws, Network: h.fitNetwork(st, 5)}
	if !st.Live {
		out.Hint = "Recorded; the workspace is not running, so the grants apply when it starts."
	}
	return out, nil
}

func toolNetworkRevoke(ctx context.Context, h *handler, in grantsIn) (revokeOut, error) {
	grants, err := grantArgs(in.Grants)
	if err != nil {
		return revokeOut{}, err
	}
	nb, err := h.netBackend()
	if err != nil {
		return revokeOut{}, err
	}
	var (
		r  contract.RevokeResult
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		r, err = nb.NetworkRevoke(ctx, id, grants)
		return err
	})
	if err != nil {
		return revokeOut{}, err
	}
	if r.Revoked == nil {
		r.Revoked = []string{} // the schema says an array
	}
	return revokeOut{Workspace: ws, Revoked: r.Revoked, ClosedConns: r.ClosedConns, Network: h.fitNetwork(r.Status, 5)}, nil
}

func toolNetworkStatus(ctx context.Context, h *handler, in refIn) (networkOut, error) {
	nb, err := h.netBackend()
	if err != nil {
		return networkOut{}, err
	}
	var (
		st contract.NetworkStatus
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		st, err = nb.NetworkStatus(ctx, id)
		return err
	})
	if err != nil {
		return networkOut{}, err
	}
	build := func(n int) networkOut {
		o := networkOut{Workspace: ws, Network: viewNetwork(st, n)}
		switch {
		case !st.Live:
			o.Hint = "The workspace is not running: no counters or refusals until it starts."
		case len(st.Grants) == 0 && len(st.Denials) == 0:
			o.Hint = "No grants: the workspace reaches nothing outside. network_grant opens a destination."
		case n < len(st.Denials):
			o.Hint = fmt.Sprintf("Showing the newest %d of %d refusals.", n, len(st.Denials))
		}
		return o
	}
	data, _, err := fit(h, len(st.Denials), build)
	return data, err
}

// fitNetwork is the network view with at most maxDenials refusals, fewer
// if the budget needs it.
func (h *handler) fitNetwork(st contract.NetworkStatus, maxDenials int) networkView {
	v := viewNetwork(st, maxDenials)
	for n := min(maxDenials, len(st.Denials)); n > 0; n-- {
		v = viewNetwork(st, n)
		if data, err := encodeJSON(v); err == nil && len(data) < h.budget()/2 {
			break
		}
	}
	return v
}

func toolPortPublish(ctx context.Context, h *handler, in publishIn) (publishOut, error) {
	if err := contract.ValidatePublish(contract.PublishRequest{GuestPort: in.GuestPort, HostPort: in.HostPort}); err != nil {
		return publishOut{}, err
	}
	nb, err := h.netBackend()
	if err != nil {
		return publishOut{}, err
	}
	var (
		p  contract.PublishedPort
		ws string
	)
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws = id
		p, err = nb.PortPublish(ctx, contract.PublishRequest{ID: id, GuestPort: in.GuestPort, HostPort: in.HostPort})
		return err
	})
	if err != nil {
		return publishOut{}, err
	}
	return publishOut{Workspace: ws, Published: viewPublished(p),
		Hint: fmt.Sprintf("On the host: http://127.0.0.1:%d/ (if it speaks HTTP). The guest service may listen on 0.0.0.0, 127.0.0.1 or ::1: connections reach it through the guest agent.", p.HostPort)}, nil
}

func toolPortUnpublish(ctx context.Context, h *handler, in unpublishIn) (unpublishOut, error) {
	if err := contract.ValidateGuestPort(in.GuestPort); err != nil {
		return unpublishOut{}, err
	}
	nb, err := h.netBackend()
	if err != nil {
		return unpublishOut{}, err
	}
	var ws string
	err = h.onWorkspace(ctx, in.ID, func(id string) error {
		ws = id
		return nb.PortUnpublish(ctx, id, in.GuestPort)
	})
	if err != nil {
		return unpublishOut{}, err
	}
	return unpublishOut{Workspace: ws, Unpublished: in.GuestPort}, nil
}

// Views.

type networkView struct {
	Live        bool            `json:"live"`
	Grants      []grantView     `json:"grants"`
	Published   []publishedView `json:"published,omitempty"`
	Denials     []denialView    `json:"denials,omitempty"`
	DeniedTotal uint64          `json:"denied_total,omitempty"`
	LimitHits   uint64          `json:"limit_hits,omitempty"`
	Connections int             `json:"connections,omitempty"`
}

type grantView struct {
	Grant            string `json:"grant"`
	Kind             string `json:"kind,omitempty"`
	Connections      int    `json:"connections,omitempty"`
	TotalConnections uint64 `json:"total_connections,omitempty"`
	BytesOut         uint64 `json:"bytes_out,omitempty"`
	BytesIn          uint64 `json:"bytes_in,omitempty"`
}

type publishedView struct {
	GuestPort   int      `json:"guest_port"`
	HostPort    int      `json:"host_port"`
	HostAddrs   []string `json:"host_addrs,omitempty"`
	Connections int      `json:"connections,omitempty"`
	Error       string   `json:"error,omitempty"`
}

type denialView struct {
	Time   string `json:"time,omitempty"`
	What   string `json:"what"` // "tcp pypi.org:443 (151.101.0.223)", "dns pypi.org"
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"` // the grant that would allow it
	Count  int    `json:"count,omitempty"`
}

// viewNetwork shows st with its newest n denials.
func viewNetwork(st contract.NetworkStatus, n int) networkView {
	v := networkView{Live: st.Live, Grants: []grantView{}, DeniedTotal: st.DeniedTotal, LimitHits: st.LimitHits, Connections: st.Connections}
	for _, g := range st.Grants {
		v.Grants = append(v.Grants, grantView(g))
	}
	for _, p := range st.Published {
		v.Published = append(v.Published, viewPublished(p))
	}
	ds := lastN(st.Denials, n)
	for _, d := range ds {
		v.Denials = append(v.Denials, viewDenial(d))
	}
	return v
}

func viewPublished(p contract.PublishedPort) publishedView {
	return publishedView{GuestPort: p.GuestPort, HostPort: p.HostPort, HostAddrs: p.HostAddrs, Connections: p.Connections, Error: clip(word(p.Error), 200)}
}

func viewDenial(d contract.Denial) denialView {
	what := d.Protocol + " "
	switch {
	case d.Protocol == "dns":
		what += d.Name
	case d.Name != "":
		what += fmt.Sprintf("%s:%d (%s)", d.Name, d.Port, d.Addr)
	default:
		what += fmt.Sprintf("%s:%d", d.Addr, d.Port)
	}
	v := denialView{Time: timeString(d.Time), What: clip(what, 300), Reason: clip(d.Reason, 200), Fix: d.Fix}
	if d.Count > 1 {
		v.Count = d.Count
	}
	return v
}

// maxBriefDenials bounds the refusals workspace_status shows; network_status
// has the rest.
const maxBriefDenials = 3

// networkBrief is the network section of a workspace view.
type networkBrief struct {
	Grants    []string     `json:"grants,omitempty"`
	Published []string     `json:"published,omitempty"` // "8080 -> 127.0.0.1:49152"
	Denials   []denialView `json:"last_denials,omitempty"`
}

func briefNetwork(st *contract.NetworkStatus) *networkBrief {
	if st == nil || len(st.Grants) == 0 && len(st.Published) == 0 && len(st.Denials) == 0 {
		return nil
	}
	b := &networkBrief{}
	for _, g := range st.Grants {
		b.Grants = append(b.Grants, g.Grant)
	}
	for _, p := range st.Published {
		s := fmt.Sprintf("%d -> 127.0.0.1:%d", p.GuestPort, p.HostPort)
		if p.Error != "" {
			s += " (" + strings.SplitN(p.Error, ";", 2)[0] + ")"
		}
		b.Published = append(b.Published, s)
	}
	for _, d := range lastN(st.Denials, maxBriefDenials) {
		v := viewDenial(d)
		v.Time = ""
		b.Denials = append(b.Denials, v)
	}
	return b
}

// networkArg checks the network grants of a create or run: nil when none.
func (h *handler) networkArg(specs []string) ([]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if _, err := h.netBackend(); err != nil {
		return nil, err
	}
	return grantArgs(specs)
}
