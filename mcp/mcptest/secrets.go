package mcptest

import (
	"context"
	"maps"
	"slices"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

var _ contract.SecretBackend = (*Backend)(nil)

// secretInfos lists the workspace's secrets by name. Called with mu held.
func (w *workspace) secretInfos() []contract.SecretInfo {
	var out []contract.SecretInfo
	for _, name := range slices.Sorted(maps.Keys(w.secrets)) {
		src := "value"
		if w.secrets[name].File != "" {
			src = "file"
		}
		out = append(out, contract.SecretInfo{Name: name, Source: src})
	}
	return out
}

// SecretSet implements contract.SecretBackend.
func (b *Backend) SecretSet(ctx context.Context, id, name string, src contract.SecretSource) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SecretSet"); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Workspace{}, err
	}
	if w.secrets == nil {
		w.secrets = map[string]contract.SecretSource{}
	}
	w.secrets[name] = src
	return w.snapshot(), nil
}

// SecretDelete implements contract.SecretBackend.
func (b *Backend) SecretDelete(ctx context.Context, id, name string) (contract.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SecretDelete"); err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return contract.Workspace{}, err
	}
	if _, ok := w.secrets[name]; !ok {
		return contract.Workspace{}, contract.Invalid("workspace %s has no secret %q", id, name)
	}
	delete(w.secrets, name)
	return w.snapshot(), nil
}
