package mcptest

import (
	"context"
	"maps"
	"slices"

	"github.com/pyro-mcp/pyro/mcp"
)

var _ mcp.SecretBackend = (*Backend)(nil)

// secretInfos lists the workspace's secrets by name. Called with mu held.
func (w *workspace) secretInfos() []mcp.SecretInfo {
	var out []mcp.SecretInfo
	for _, name := range slices.Sorted(maps.Keys(w.secrets)) {
		src := "value"
		if w.secrets[name].File != "" {
			src = "file"
		}
		out = append(out, mcp.SecretInfo{Name: name, Source: src})
	}
	return out
}

// SecretSet implements mcp.SecretBackend.
func (b *Backend) SecretSet(ctx context.Context, id, name string, src mcp.SecretSource) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SecretSet"); err != nil {
		return mcp.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Workspace{}, err
	}
	if w.secrets == nil {
		w.secrets = map[string]mcp.SecretSource{}
	}
	w.secrets[name] = src
	return w.snapshot(), nil
}

// SecretDelete implements mcp.SecretBackend.
func (b *Backend) SecretDelete(ctx context.Context, id, name string) (mcp.Workspace, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("SecretDelete"); err != nil {
		return mcp.Workspace{}, err
	}
	w, err := b.get(id, false)
	if err != nil {
		return mcp.Workspace{}, err
	}
	if _, ok := w.secrets[name]; !ok {
		return mcp.Workspace{}, mcp.Invalid("workspace %s has no secret %q", id, name)
	}
	delete(w.secrets, name)
	return w.snapshot(), nil
}
