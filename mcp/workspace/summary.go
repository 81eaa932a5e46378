package workspace

import (
	"context"
	"fmt"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Logs implements contract.Backend.
func (m *Manager) Logs(ctx context.Context, req contract.LogsRequest) (contract.LogPage, error) {
	w, err := m.get(req.ID)
	if err != nil {
		return contract.LogPage{}, err
	}
	w.touch()
	entries, more := w.journal.page(req.AfterSeq, max(req.Limit, 1))
	return contract.LogPage{Entries: entries, More: more}, nil
}

// Summary implements contract.Backend. Files changed are a diff against the
// baseline, which needs the VM: a workspace that is not running reports
// none.
func (m *Manager) Summary(ctx context.Context, id string) (contract.Summary, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Summary{}, err
	}
	w.touch()
	w.mu.Lock()
	rec := w.rec.clone()
	running := w.vm != nil
	w.mu.Unlock()
	s := contract.Summary{Since: rec.CreatedAt, ResetFrom: rec.ResetFrom}
	if !rec.ResetAt.IsZero() {
		s.Since = rec.ResetAt
	}
	for _, e := range w.journal.since(rec.ResetSeq) {
		switch {
		case e.Kind == contract.LogExec:
			s.Commands = append(s.Commands, e.logEntry())
		case e.Kind == contract.LogExport && e.Export != nil:
			s.Exports = append(s.Exports, contract.ExportResult{HostPath: e.Export.HostPath, Format: e.Export.Format,
				Files: e.Export.Files, Bytes: e.Export.Bytes})
		}
	}
	for _, sn := range rec.Snapshots {
		s.Snapshots = append(s.Snapshots, sn.view())
	}
	if running {
		if c, err := w.enter(ctx); err == nil {
			d, err := c.diff("")
			c.end()
			if err != nil {
				return contract.Summary{}, err
			}
			s.Changes, s.Stats = d.Files, d.Stats
		}
	}
	s.Workspace = w.view()
	s.Workspace.Services = w.runningServices(ctx)
	return s, nil
}

// Envs implements contract.Backend.
func (m *Manager) Envs(ctx context.Context) ([]contract.Environment, error) {
	var out []contract.Environment
	for _, st := range env.List(m.opts.CacheRoot) {
		e := contract.Environment{Name: st.Spec.Name, Description: st.Spec.Description, Built: st.State == env.StateBuilt,
			BuildCommand: fmt.Sprintf("pyro env build %s", st.Spec.Name), Default: st.Spec.Name == m.opts.DefaultEnv}
		if st.State == env.StateBroken && st.Reason != "" {
			e.Description += " (broken: " + st.Reason + ")"
		}
		out = append(out, e)
	}
	return out, nil
}
