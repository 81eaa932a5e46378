package mcptest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

var _ contract.Forker = (*Backend)(nil)

// Fork implements contract.Forker. Each fork is a new workspace with the
// source's settings, labels (with req.Labels over them), grants, secrets
// and baseline, and a copy of its files (or of the snapshot's), so that
// writes to one never show in another. A fork of the current state
// "resumes from memory": the source's services run in it too. A fork of
// a snapshot, which the fake takes without memory, boots: no services,
// and a Note says why. The forks have no snapshots and no published
// ports (a host port is the source's). It is all or nothing.
func (b *Backend) Fork(ctx context.Context, req contract.ForkRequest) (contract.ForkResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("Fork"); err != nil {
		return contract.ForkResult{}, err
	}
	if err := contract.ValidateFork(&req); err != nil {
		return contract.ForkResult{}, err
	}
	src, err := b.get(req.ID, true)
	if err != nil {
		return contract.ForkResult{}, err
	}
	files, memory, note := src.files, true, ""
	if req.Snapshot != "" {
		i := slices.IndexFunc(src.snaps, func(s snap) bool { return s.s.Name == req.Snapshot })
		if i < 0 {
			return contract.ForkResult{}, contract.NotFound(contract.ResourceSnapshot, req.Snapshot)
		}
		files, memory = src.snaps[i].files, src.snaps[i].s.Memory
		if !memory {
			note = fmt.Sprintf("snapshot %s holds the disk only: the forks booted from it", req.Snapshot)
		}
	}
	for _, n := range req.Names {
		for _, w := range b.ws {
			if w.w.Name == n {
				return contract.ForkResult{}, contract.Exists(contract.ResourceWorkspace, n)
			}
		}
	}
	if b.MaxRunning > 0 {
		n := 0
		for _, w := range b.ws {
			if w.w.State == contract.StateRunning {
				n++
			}
		}
		if n+req.Count > b.MaxRunning {
			return contract.ForkResult{}, contract.LimitReached("%d workspaces are running and %d more would pass the host limit of %d", n, req.Count, b.MaxRunning)
		}
	}
	res := contract.ForkResult{Source: src.w.ID, Snapshot: req.Snapshot, Memory: memory, Note: note}
	for i := range req.Count {
		contract.Progress(ctx, "forking "+src.w.ID, float64(i), float64(req.Count))
		b.seq++
		f := &workspace{
			w:        src.w,
			files:    maps.Clone(files),
			baseline: maps.Clone(src.baseline),
			secrets:  maps.Clone(src.secrets),
			since:    b.now,
		}
		f.w.ID, f.w.Name = fmt.Sprintf("ws-%d", b.seq), ""
		f.w.Network, f.w.Secrets, f.w.Background, f.w.Services, f.w.Shells = nil, nil, nil, nil, nil // snapshot fills them in
		if len(req.Names) > 0 {
			f.w.Name = req.Names[i]
		}
		f.w.Labels = maps.Clone(src.w.Labels)
		if len(req.Labels) > 0 && f.w.Labels == nil {
			f.w.Labels = map[string]string{}
		}
		maps.Copy(f.w.Labels, req.Labels)
		f.w.CreatedAt, f.w.LastActiveAt, f.w.LastSeq = b.now, b.now, 0
		if f.w.TTLSeconds > 0 {
			f.w.ExpiresAt = b.now.Add(time.Duration(f.w.TTLSeconds) * time.Second)
		}
		f.net.Grants = slices.Clone(src.net.Grants)
		if memory {
			f.svcs = make(map[string]*fakeService, len(src.svcs))
			for n, s := range src.svcs {
				c := *s
				c.out, c.err = slices.Clone(s.out), slices.Clone(s.err)
				f.svcs[n] = &c
			}
		}
		detail := "from " + src.w.ID
		if req.Snapshot != "" {
			detail += " snapshot " + req.Snapshot
		}
		f.log(b.now, contract.LogLife, "fork", nil, detail)
		b.ws[f.w.ID] = f
		res.Forks = append(res.Forks, f.snapshot())
	}
	if !memory {
		reportBoot(ctx)
	}
	res.Duration = time.Duration(req.Count) * 40 * time.Millisecond
	return res, nil
}
