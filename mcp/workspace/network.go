package workspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/netstack"
	vnet "github.com/pyro-mcp/pyro/virtio/net"
)

// A workspace's network: while its VM runs it has a netstack.Stack, made
// before the boot and closed when the VM goes (stop, reset, delete, crash),
// whose link endpoint is the VM's virtio-net backend. Grants and published
// ports live in the record (record.Network, record.Published), so reset,
// restart and a new server keep them; each new stack gets them at boot, and
// the network tools change record and live stack together.

// newLinkFunc makes the two faces of a new workspace network's wire: the
// gVisor link endpoint the stack runs on and the virtio-net backend the
// VM's device drives (nil: the VM gets no network card).
type newLinkFunc func() (stack.LinkEndpoint, vnet.Backend)

// defaultLink is the wire of a real workspace: a netstack.Link, the
// virtio-net backend of the VM's card, and its gVisor endpoint.
func defaultLink() (stack.LinkEndpoint, vnet.Backend) {
	l := netstack.NewLink()
	return l.Endpoint(), l
}

// workspaceNet is a running workspace's network.
type workspaceNet struct {
	stack *netstack.Stack
	// pubErrs says, by guest port, why a recorded published port is not
	// listening (its host port was taken at boot). Written before the
	// handle is shared, then only read.
	pubErrs map[uint16]string
}

// publishRecord is one published port in the record.
type publishRecord struct {
	GuestPort uint16 `json:"guest_port"`
	HostPort  uint16 `json:"host_port"`
}

// startNet makes the network for a boot of rec: a stack on a new link,
// with rec's grants and published ports. It returns the virtio-net
// backend for the VM.
func (m *Manager) startNet(rec record) (*workspaceNet, vnet.Backend, error) {
	newLink := m.opts.hooks.newLink
	if newLink == nil {
		newLink = defaultLink
	}
	link, backend := newLink()
	st, err := netstack.New(netstack.Config{Link: link, Dialer: m.opts.hooks.netDialer, Resolver: m.opts.hooks.netResolver})
	if err != nil {
		return nil, nil, fmt.Errorf("starting the workspace network: %w", err)
	}
	n := &workspaceNet{stack: st, pubErrs: map[uint16]string{}}
	for _, s := range rec.Network {
		g, err := netstack.ParseGrant(s)
		if err != nil {
			// Only a record edited by hand holds one: say so, boot anyway.
			m.log.Warn("skipping a bad grant in the record", "id", rec.ID, "grant", s, "err", err)
			continue
		}
		if _, err := st.Grant(g); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("starting the workspace network: %w", err)
		}
	}
	for _, p := range rec.Published {
		if _, err := st.Publish(p.GuestPort, p.HostPort); err != nil {
			n.pubErrs[p.GuestPort] = fmt.Sprintf("not listening: host port %d was taken when the workspace booted; "+
				"{{port.unpublish}} and {{port.publish}} it again ({{-host_port}} 0 lets pyro pick one)", p.HostPort)
			m.log.Warn("re-publishing a port", "id", rec.ID, "guest_port", p.GuestPort, "host_port", p.HostPort, "err", err)
		}
	}
	return n, backend, nil
}

// portDialer is what published ports need of the guest agent:
// *proto.Client's DialPort, a connection to a port on the guest's loopback.
type portDialer interface {
	DialPort(ctx context.Context, port uint16) (net.Conn, error)
}

// relayThrough makes the published ports of a booted VM reach the guest
// through its agent (g), which connects to the guest's loopback: a dev
// server bound to 127.0.0.1 or ::1 in the guest is reached as well as one
// on 0.0.0.0. An agent too old to relay (an environment built before it)
// is logged once, with the fix, and its connections go through the stack
// to the guest's interface address as before.
func (n *workspaceNet) relayThrough(g guest, log *slog.Logger) {
	d, ok := g.(portDialer)
	if n == nil || !ok {
		return
	}
	var warned atomic.Bool
	n.stack.SetPublishDialer(func(ctx context.Context, port uint16) (net.Conn, error) {
		c, err := d.DialPort(ctx, port)
		var pe *proto.Error
		if errors.As(err, &pe) && pe.Code == proto.CodeUnsupported {
			if !warned.Swap(true) {
				log.Warn("published ports reach only guest services on 0.0.0.0", "err", err)
			}
			return nil, fmt.Errorf("%w: %v", netstack.ErrDialViaStack, err)
		}
		return c, err
	})
}

// close closes the stack: its listeners, connections and link.
func (n *workspaceNet) close() {
	if n != nil {
		n.stack.Close()
	}
}

// parseGrantArgs parses grants for a tool call: their canonical spellings.
func parseGrantArgs(specs []string) ([]netstack.Grant, error) {
	if len(specs) == 0 {
		return nil, contract.Invalid("no grants given").WithHint(contract.GrantForms)
	}
	return contract.ParseGrants(specs)
}

// canonicalGrants parses a create's grants into the record's spellings.
func canonicalGrants(specs []string) ([]string, error) {
	gs, err := contract.ParseGrants(specs)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range gs {
		out = append(out, g.String())
	}
	return out, nil
}

// netEnter holds the workspace for a network change: op shared (no boot,
// stop or reset meanwhile, so the record and the live stack change
// together) and netMu (network changes one at a time).
func (w *workspace) netEnter() (func(), error) {
	w.op.RLock()
	if err := w.alive(); err != nil {
		w.op.RUnlock()
		return nil, err
	}
	w.netMu.Lock()
	return func() { w.netMu.Unlock(); w.op.RUnlock() }, nil
}

// liveNet returns the running VM's network, or nil.
func (w *workspace) liveNet() *workspaceNet {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.vm == nil {
		return nil
	}
	return w.vm.net
}

// NetworkGrant implements contract.NetworkBackend.
func (m *Manager) NetworkGrant(ctx context.Context, id string, specs []string) (contract.NetworkStatus, error) {
	gs, err := parseGrantArgs(specs)
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	w, err := m.get(id)
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	w.touch()
	leave, err := w.netEnter()
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	defer leave()
	w.mu.Lock()
	old := slices.Clone(w.rec.Network)
	for _, g := range gs {
		if !slices.Contains(w.rec.Network, g.String()) {
			w.rec.Network = append(w.rec.Network, g.String())
		}
	}
	if len(w.rec.Network) > contract.MaxGrants {
		n := len(w.rec.Network)
		w.rec.Network = old
		w.mu.Unlock()
		return contract.NetworkStatus{}, contract.LimitReached("the workspace would have %d grants; the limit is %d", n, contract.MaxGrants).
			WithHint("Revoke grants it no longer needs ({{network.revoke}}), or cover several destinations with a wildcard or CIDR grant.")
	}
	if err := w.saveLocked(); err != nil {
		w.rec.Network = old
		w.mu.Unlock()
		return contract.NetworkStatus{}, contract.Internal("saving the workspace record", err)
	}
	w.mu.Unlock()
	if n := w.liveNet(); n != nil {
		for _, g := range gs {
			if _, err := n.stack.Grant(g); err != nil {
				return contract.NetworkStatus{}, contract.Internal("granting on the live network", err)
			}
		}
	}
	w.logLife(contract.LogLife, "network_grant", strings.Join(grantNames(gs), " "), m.now())
	return w.networkStatus(), nil
}

func grantNames(gs []netstack.Grant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.String()
	}
	return out
}

// NetworkRevoke implements contract.NetworkBackend.
func (m *Manager) NetworkRevoke(ctx context.Context, id string, specs []string) (contract.RevokeResult, error) {
	gs, err := parseGrantArgs(specs)
	if err != nil {
		return contract.RevokeResult{}, err
	}
	w, err := m.get(id)
	if err != nil {
		return contract.RevokeResult{}, err
	}
	w.touch()
	leave, err := w.netEnter()
	if err != nil {
		return contract.RevokeResult{}, err
	}
	defer leave()
	w.mu.Lock()
	old := slices.Clone(w.rec.Network)
	for _, g := range gs {
		i := slices.Index(w.rec.Network, g.String())
		if i < 0 {
			have := strings.Join(old, ", ")
			if have == "" {
				have = "none"
			}
			w.rec.Network = old
			w.mu.Unlock()
			return contract.RevokeResult{}, contract.Invalid("the workspace has no grant %s", g).
				WithHint("Revoke a grant as the workspace lists it; its grants: " + have + ".")
		}
		w.rec.Network = slices.Delete(w.rec.Network, i, i+1)
	}
	if len(w.rec.Network) == 0 {
		w.rec.Network = nil
	}
	if err := w.saveLocked(); err != nil {
		w.rec.Network = old
		w.mu.Unlock()
		return contract.RevokeResult{}, contract.Internal("saving the workspace record", err)
	}
	w.mu.Unlock()
	res := contract.RevokeResult{Revoked: grantNames(gs)}
	if n := w.liveNet(); n != nil {
		for _, g := range gs {
			closed, err := n.stack.Revoke(g)
			if err != nil && !errors.Is(err, netstack.ErrNoSuchGrant) {
				return contract.RevokeResult{}, contract.Internal("revoking on the live network", err)
			}
			res.ClosedConns += closed
		}
	}
	w.logLife(contract.LogLife, "network_revoke", fmt.Sprintf("%s; closed %d connections", strings.Join(res.Revoked, " "), res.ClosedConns), m.now())
	res.Status = w.networkStatus()
	return res, nil
}

// NetworkStatus implements contract.NetworkBackend.
func (m *Manager) NetworkStatus(ctx context.Context, id string) (contract.NetworkStatus, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	w.touch()
	if err := w.alive(); err != nil {
		return contract.NetworkStatus{}, err
	}
	return w.networkStatus(), nil
}

// networkStatus reports the live network, or the record's grants and
// ports when the workspace is not running.
func (w *workspace) networkStatus() contract.NetworkStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.networkStatusLocked()
}

// The caller holds w.mu (the stack's own lock comes after it).
func (w *workspace) networkStatusLocked() contract.NetworkStatus {
	var out contract.NetworkStatus
	if w.vm == nil || w.vm.net == nil {
		for _, g := range w.rec.Network {
			kind := ""
			if pg, err := netstack.ParseGrant(g); err == nil {
				kind = pg.Kind.String()
			}
			out.Grants = append(out.Grants, contract.GrantStatus{Grant: g, Kind: kind})
		}
		for _, p := range w.rec.Published {
			out.Published = append(out.Published, contract.PublishedPort{GuestPort: int(p.GuestPort), HostPort: int(p.HostPort),
				Error: "not listening: the workspace is not running; {{start}} publishes it again"})
		}
		return out
	}
	n := w.vm.net
	st := n.stack.Status()
	out.Live, out.DeniedTotal, out.LimitHits, out.Connections = true, st.DeniedTotal, st.LimitHits, st.Connections
	for _, g := range st.Grants {
		out.Grants = append(out.Grants, contract.GrantStatus{Grant: g.Grant, Kind: g.Kind, Connections: g.Connections,
			TotalConnections: g.TotalConnections, BytesOut: g.BytesOut, BytesIn: g.BytesIn})
	}
	live := map[uint16]netstack.PublishedStatus{}
	for _, p := range st.Published {
		live[p.HostPort] = p
	}
	for _, p := range w.rec.Published {
		v := contract.PublishedPort{GuestPort: int(p.GuestPort), HostPort: int(p.HostPort), Error: n.pubErrs[p.GuestPort]}
		if ls, ok := live[p.HostPort]; ok && v.Error == "" {
			v.HostAddrs, v.Connections = ls.HostAddrs, ls.Connections
		}
		out.Published = append(out.Published, v)
	}
	for _, d := range st.Denials {
		out.Denials = append(out.Denials, viewDenial(d))
	}
	return out
}

func viewDenial(d netstack.Denial) contract.Denial {
	return contract.Denial{Time: d.Time, Protocol: d.Protocol, Addr: d.Addr, Port: int(d.Port), Name: d.Name,
		Reason: d.Reason, Fix: denialFix(d), Count: d.Count}
}

// denialFix is the grant that would have allowed d, or "" when no grant
// would (a limit, an address no grant opens). A refused DNS name gets its
// HTTPS grant, the port nearly every package index and API uses.
func denialFix(d netstack.Denial) string {
	if !strings.HasPrefix(d.Reason, "no grant") {
		return ""
	}
	suffix := ""
	if d.Protocol == "udp" {
		suffix = "/udp"
	}
	switch {
	case d.Protocol == "dns":
		if d.Name == "" {
			return ""
		}
		return d.Name + ":443"
	case d.Name != "":
		return fmt.Sprintf("%s:%d%s", d.Name, d.Port, suffix)
	case d.Addr != "":
		return fmt.Sprintf("%s:%d%s", d.Addr, d.Port, suffix)
	}
	return ""
}

// maxNetworkNotes bounds the refusals an exec's network note names.
const maxNetworkNotes = 3

// networkNote says what the workspace's network refused since t0, for a
// failing exec's result: one clause per refusal, newest last, with the
// grant that would allow each.
func networkNote(n *workspaceNet, t0 time.Time) string {
	if n == nil {
		return ""
	}
	var ds []netstack.Denial
	for _, d := range n.stack.Status().Denials {
		if !d.Time.Before(t0) {
			ds = append(ds, d)
		}
	}
	return noteFor(ds)
}

// noteFor words refusals for an exec's result.
func noteFor(ds []netstack.Denial) string {
	if len(ds) == 0 {
		return ""
	}
	var parts []string
	if len(ds) > maxNetworkNotes {
		parts = append(parts, fmt.Sprintf("%d more refusals ({{status}} shows the last three, {{network.status}} all)", len(ds)-maxNetworkNotes))
		ds = ds[len(ds)-maxNetworkNotes:]
	}
	for _, d := range ds {
		var what, why string
		if d.Protocol == "dns" {
			what, why = "to resolve "+d.Name, "no grant covers the name"
		} else {
			host := d.Name
			if host == "" {
				host = d.Addr
			}
			what = fmt.Sprintf("%s:%d", host, d.Port)
			if d.Protocol == "udp" {
				what += "/udp"
			}
			why, _, _ = strings.Cut(d.Reason, ";")
		}
		s := fmt.Sprintf("the workspace's network refused %s (%s)", what, why)
		if fix := denialFix(d); fix != "" {
			s += fmt.Sprintf("; {{network.grant}} with %q would allow it", fix)
			if d.Protocol == "dns" {
				s += " (or the port it connects to, if not HTTPS)"
			}
		} else if d.Reason != why {
			s = fmt.Sprintf("the workspace's network refused %s: %s", what, d.Reason)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// PortPublish implements contract.NetworkBackend.
func (m *Manager) PortPublish(ctx context.Context, req contract.PublishRequest) (contract.PublishedPort, error) {
	if req.GuestPort < 1 || req.GuestPort > 65535 {
		return contract.PublishedPort{}, contract.Invalid("guest_port must be 1-65535 (got %d)", req.GuestPort)
	}
	if req.HostPort < 0 || req.HostPort > 65535 {
		return contract.PublishedPort{}, contract.Invalid("host_port must be 1-65535, or 0 to let pyro pick (got %d)", req.HostPort)
	}
	gp, hp := uint16(req.GuestPort), uint16(req.HostPort)
	w, err := m.get(req.ID)
	if err != nil {
		return contract.PublishedPort{}, err
	}
	w.touch()
	leave, err := w.netEnter()
	if err != nil {
		return contract.PublishedPort{}, err
	}
	defer leave()
	w.mu.Lock()
	state := w.state
	var prev *publishRecord
	if i := slices.IndexFunc(w.rec.Published, func(p publishRecord) bool { return p.GuestPort == gp }); i >= 0 {
		p := w.rec.Published[i]
		prev = &p
	}
	w.mu.Unlock()
	n := w.liveNet()
	if n == nil {
		return contract.PublishedPort{}, contract.Stopped(w.id, state).
			WithHint("Publishing opens a host listener that needs the VM: call {{start}}, then {{port.publish}}.")
	}
	if prev != nil {
		if hp != 0 && hp != prev.HostPort {
			return contract.PublishedPort{}, contract.Conflict("guest port %d is already published on host port %d", gp, prev.HostPort).
				WithHint("{{port.unpublish}} it first to move it to another host port.")
		}
		return w.publishedView(gp), nil
	}
	port, err := n.stack.Publish(gp, hp)
	if err != nil {
		if errors.Is(err, netstack.ErrPortInUse) {
			return contract.PublishedPort{}, contract.Conflict("host port %d is taken on 127.0.0.1 (another program or workspace listens there)", hp).
				WithHint("Pass another host_port, or 0 to let pyro pick a free one.")
		}
		return contract.PublishedPort{}, contract.Internal("publishing the port", err)
	}
	w.mu.Lock()
	w.rec.Published = append(w.rec.Published, publishRecord{GuestPort: gp, HostPort: port})
	if err := w.saveLocked(); err != nil {
		w.rec.Published = w.rec.Published[:len(w.rec.Published)-1]
		w.mu.Unlock()
		n.stack.Unpublish(port)
		return contract.PublishedPort{}, contract.Internal("saving the workspace record", err)
	}
	w.mu.Unlock()
	w.logLife(contract.LogLife, "port_publish", fmt.Sprintf("guest port %d on host 127.0.0.1:%d", gp, port), m.now())
	return w.publishedView(gp), nil
}

// publishedView is guest port gp as status shows it.
func (w *workspace) publishedView(gp uint16) contract.PublishedPort {
	for _, p := range w.networkStatus().Published {
		if p.GuestPort == int(gp) {
			return p
		}
	}
	return contract.PublishedPort{GuestPort: int(gp)}
}

// PortUnpublish implements contract.NetworkBackend.
func (m *Manager) PortUnpublish(ctx context.Context, id string, guestPort int) error {
	w, err := m.get(id)
	if err != nil {
		return err
	}
	w.touch()
	leave, err := w.netEnter()
	if err != nil {
		return err
	}
	defer leave()
	w.mu.Lock()
	i := slices.IndexFunc(w.rec.Published, func(p publishRecord) bool { return int(p.GuestPort) == guestPort })
	if i < 0 {
		w.mu.Unlock()
		return contract.Invalid("guest port %d is not published", guestPort).WithHint("{{status}} lists the published ports.")
	}
	old := slices.Clone(w.rec.Published)
	p := w.rec.Published[i]
	w.rec.Published = slices.Delete(w.rec.Published, i, i+1)
	if len(w.rec.Published) == 0 {
		w.rec.Published = nil
	}
	if err := w.saveLocked(); err != nil {
		w.rec.Published = old
		w.mu.Unlock()
		return contract.Internal("saving the workspace record", err)
	}
	w.mu.Unlock()
	if n := w.liveNet(); n != nil {
		n.stack.Unpublish(p.HostPort) // not listening (taken at boot) is fine
	}
	w.logLife(contract.LogLife, "port_unpublish", fmt.Sprintf("guest port %d, host port %d", p.GuestPort, p.HostPort), m.now())
	return nil
}
