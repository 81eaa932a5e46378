package mcptest

import (
	"context"
	"fmt"
	"slices"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

var _ contract.NetworkBackend = (*Backend)(nil)

// netStatus is a copy of the workspace's network. Called with mu held.
func (w *workspace) netStatus() contract.NetworkStatus {
	st := w.net
	st.Live = w.w.State == contract.StateRunning
	st.Grants = slices.Clone(w.net.Grants)
	st.Published = slices.Clone(w.net.Published)
	st.Denials = slices.Clone(w.net.Denials)
	return st
}

// AddDenial records a refused attempt in a workspace's network, as the
// real one does when the guest is refused.
func (b *Backend) AddDenial(id string, d contract.Denial) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.ws[id]; w != nil {
		w.net.Denials = append(w.net.Denials, d)
		w.net.DeniedTotal++
	}
}

// NetworkGrant implements contract.NetworkBackend.
func (b *Backend) NetworkGrant(ctx context.Context, id string, grants []string) (contract.NetworkStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("NetworkGrant"); err != nil {
		return contract.NetworkStatus{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	for _, g := range grants {
		if !slices.ContainsFunc(w.net.Grants, func(s contract.GrantStatus) bool { return s.Grant == g }) {
			w.net.Grants = append(w.net.Grants, contract.GrantStatus{Grant: g})
		}
	}
	return w.netStatus(), nil
}

// NetworkRevoke implements contract.NetworkBackend.
func (b *Backend) NetworkRevoke(ctx context.Context, id string, grants []string) (contract.RevokeResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("NetworkRevoke"); err != nil {
		return contract.RevokeResult{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.RevokeResult{}, err
	}
	for _, g := range grants {
		i := slices.IndexFunc(w.net.Grants, func(s contract.GrantStatus) bool { return s.Grant == g })
		if i < 0 {
			return contract.RevokeResult{}, contract.Invalid("the workspace has no grant %s", g)
		}
		w.net.Grants = slices.Delete(w.net.Grants, i, i+1)
	}
	return contract.RevokeResult{Revoked: grants, Status: w.netStatus()}, nil
}

// NetworkStatus implements contract.NetworkBackend.
func (b *Backend) NetworkStatus(ctx context.Context, id string) (contract.NetworkStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("NetworkStatus"); err != nil {
		return contract.NetworkStatus{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.NetworkStatus{}, err
	}
	return w.netStatus(), nil
}

// PortPublish implements contract.NetworkBackend: host port 0 becomes 40000 plus
// the guest port's last digits; nothing listens.
func (b *Backend) PortPublish(ctx context.Context, req contract.PublishRequest) (contract.PublishedPort, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("PortPublish"); err != nil {
		return contract.PublishedPort{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.PublishedPort{}, err
	}
	for _, p := range w.net.Published {
		if p.GuestPort == req.GuestPort {
			return p, nil
		}
	}
	hp := req.HostPort
	if hp == 0 {
		hp = 40000 + req.GuestPort%10000
	}
	p := contract.PublishedPort{GuestPort: req.GuestPort, HostPort: hp, HostAddrs: []string{fmt.Sprintf("127.0.0.1:%d", hp)}}
	w.net.Published = append(w.net.Published, p)
	return p, nil
}

// PortUnpublish implements contract.NetworkBackend.
func (b *Backend) PortUnpublish(ctx context.Context, id string, guestPort int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("PortUnpublish"); err != nil {
		return err
	}
	w, err := b.get(id, false)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(w.net.Published, func(p contract.PublishedPort) bool { return p.GuestPort == guestPort })
	if i < 0 {
		return contract.Invalid("guest port %d is not published", guestPort)
	}
	w.net.Published = slices.Delete(w.net.Published, i, i+1)
	return nil
}
