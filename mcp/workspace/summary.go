package workspace

import (
	"context"
	"fmt"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp"
)

// Logs implements mcp.Backend.
func (m *Manager) Logs(ctx context.Context, req mcp.LogsRequest) (mcp.LogPage, error) {
	w, err := m.get(req.ID)
	if err != nil {
		return mcp.LogPage{}, err
	}
	w.touch()
	entries, more := w.journal.page(req.AfterSeq, max(req.Limit, 1))
	return mcp.LogPage{Entries: entries, More: more}, nil
}

// Summary implements mcp.Backend. Files changed are a diff against the
// baseline, which needs the VM: a workspace that is not running reports
// none.
func (m *Manager) Summary(ctx context.Context, id string) (mcp.Summary, error) {
	w, err := m.get(id)
	if err != nil {
		return mcp.Summary{}, err
	}
	w.touch()
	w.mu.Lock()
	rec := w.rec.clone()
	running := w.vm != nil
	w.mu.Unlock()
	s := mcp.Summary{Since: rec.CreatedAt, ResetFrom: rec.ResetFrom}
	if !rec.ResetAt.IsZero() {
		s.Since = rec.ResetAt
	}
	for _, e := range w.journal.since(rec.ResetSeq) {
		switch {
		case e.Kind == mcp.LogExec:
			s.Commands = append(s.Commands, e.logEntry())
		case e.Kind == mcp.LogExport && e.Export != nil:
			s.Exports = append(s.Exports, mcp.ExportResult{HostPath: e.Export.HostPath, Format: e.Export.Format,
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
				return mcp.Summary{}, err
			}
			s.Changes, s.Stats = d.Files, d.Stats
		}
	}
	s.Workspace = w.view()
	s.Workspace.Services = w.runningServices(ctx)
	return s, nil
}

// Envs implements mcp.Backend.
func (m *Manager) Envs(ctx context.Context) ([]mcp.Environment, error) {
	var out []mcp.Environment
	for _, st := range env.List(m.opts.CacheRoot) {
		e := mcp.Environment{Name: st.Spec.Name, Description: st.Spec.Description, Built: st.State == env.StateBuilt,
			BuildCommand: fmt.Sprintf("pyro env build %s", st.Spec.Name), Default: st.Spec.Name == m.opts.DefaultEnv}
		if st.State == env.StateBroken && st.Reason != "" {
			e.Description += " (broken: " + st.Reason + ")"
		}
		out = append(out, e)
	}
	return out, nil
}
