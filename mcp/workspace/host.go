package workspace

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/mcp/treediff"
)

// Diff implements contract.Backend: the agent streams /workspace as a tar and
// treediff compares it with the baseline index and blobs on the host.
func (m *Manager) Diff(ctx context.Context, req contract.DiffRequest) (contract.DiffResult, error) {
	var prefix string
	if req.Path != "" {
		p, err := guestPath(req.Path)
		if err != nil {
			return contract.DiffResult{}, err
		}
		prefix = strings.TrimPrefix(strings.TrimPrefix(p, hostio.Workspace), "/")
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.DiffResult{}, err
	}
	defer c.end()
	return c.diff(prefix)
}

func (c *call) diff(prefix string) (contract.DiffResult, error) {
	w := c.w
	base := filepath.Join(w.dir, baselineDir)
	ix, err := treediff.LoadIndex(base)
	if err != nil {
		return contract.DiffResult{}, contract.Internal("loading the baseline", err)
	}
	rc, err := c.h.Files.TarOut(c.ctx, hostio.Workspace)
	if err != nil {
		return contract.DiffResult{}, c.guestErr("reading /workspace", hostio.Workspace, err)
	}
	res, err := treediff.Diff(ix, treediff.DirBlobs{Dir: base}, rc, treediff.Options{Prefix: prefix})
	rc.Close()
	if errors.Is(err, treediff.ErrTooManyChanges) && c.lost() == nil {
		where := "/workspace"
		if prefix != "" {
			where = hostio.Workspace + "/" + prefix
		}
		e := contract.LimitReached("too many changes; narrow with path: %s changed in more than %d paths (or %d MiB of path names) since the baseline",
			where, treediff.DefaultMaxChanges, treediff.DefaultMaxPathBytes>>20).
			WithHint("Pass path to diff one directory at a time (for example path: \"src\"); {{file.list}} shows the directories.")
		e.Err = err
		return contract.DiffResult{}, e
	}
	if err != nil {
		return contract.DiffResult{}, c.guestErr("comparing /workspace with the baseline", hostio.Workspace, err)
	}
	out := contract.DiffResult{Patch: string(res.Patch)}
	for _, f := range res.Files {
		if (f.OldType == treediff.Dir || f.OldType == "") && (f.NewType == treediff.Dir || f.NewType == "") {
			continue // directories show through the files in them
		}
		fc := contract.FileChange{Path: f.Path, Status: string(f.Status), Additions: f.Additions, Deletions: f.Deletions,
			Binary: f.Binary, Summary: f.Summary}
		if f.Status == treediff.Modified && f.OldMode != f.NewMode && f.Additions == 0 && f.Deletions == 0 && !f.Binary {
			fc.Status = "mode_changed"
		}
		out.Files = append(out.Files, fc)
		out.Stats.Files++
		out.Stats.Additions += f.Additions
		out.Stats.Deletions += f.Deletions
	}
	if len(res.Patch) > 0 {
		p, err := w.savePatch(res.Patch)
		if err != nil {
			w.m.log.Warn("writing the diff's patch file", "id", w.id, "err", err)
		}
		out.PatchPath = p
	}
	return out, nil
}

// savePatch writes a patch to diffs/NNNNNN.patch, keeping the latest
// keptDiffs, and returns its path.
func (w *workspace) savePatch(p []byte) (string, error) {
	w.mu.Lock()
	w.diffs++
	n := w.diffs
	w.mu.Unlock()
	dir := filepath.Join(w.dir, diffsDir)
	if n == 1 {
		// After a restart, continue after the files already there.
		if des, err := os.ReadDir(dir); err == nil {
			for _, de := range des {
				var k int
				if _, err := fmt.Sscanf(de.Name(), "%06d.patch", &k); err == nil && k >= n {
					n = k + 1
				}
			}
			w.mu.Lock()
			w.diffs = max(w.diffs, n)
			w.mu.Unlock()
		}
	}
	name := fmt.Sprintf("%06d.patch", n)
	if err := os.WriteFile(filepath.Join(dir, name), p, 0o600); err != nil {
		return "", err
	}
	if n > keptDiffs {
		os.Remove(filepath.Join(dir, fmt.Sprintf("%06d.patch", n-keptDiffs)))
	}
	return filepath.Join(dir, name), nil
}

// Export implements contract.Backend. A directory leaves the guest as the
// agent's tar_out stream; a file is read through the agent and wrapped in
// a one-entry tar. Either way hostio writes it to the host, safely.
func (m *Manager) Export(ctx context.Context, req contract.ExportRequest) (contract.ExportResult, error) {
	if err := m.checkFree("exporting"); err != nil {
		return contract.ExportResult{}, err
	}
	gp, err := guestPath(orWorkspace(req.GuestPath))
	if err != nil {
		return contract.ExportResult{}, err
	}
	host, err := m.allowedHostPath("host_path", req.HostPath, true)
	if err != nil {
		return contract.ExportResult{}, err
	}
	format := req.Format
	if format == "" || format == contract.ExportAuto {
		format = contract.ExportTree
		if l := strings.ToLower(host); strings.HasSuffix(l, ".tar") || strings.HasSuffix(l, ".tar.gz") || strings.HasSuffix(l, ".tgz") {
			format = contract.ExportTar
		}
	}
	if format != contract.ExportTree && format != contract.ExportTar {
		return contract.ExportResult{}, contract.Invalid("format %q must be auto, tree or tar", req.Format)
	}
	if _, err := os.Lstat(host); err == nil && !req.Overwrite {
		return contract.ExportResult{}, contract.Exists(contract.ResourceHostPath, host).
			WithHint("Pass overwrite: true to replace it (the old one is moved to a dated backup beside it, not deleted), or choose another host path.")
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.ExportResult{}, err
	}
	defer c.end()
	start := m.now()
	t0 := time.Now()
	fi, err := c.h.Files.Stat(c.ctx, gp)
	if err != nil {
		return contract.ExportResult{}, c.guestErr("exporting", gp, err)
	}
	var (
		src  io.ReadCloser
		file bool
	)
	switch fi.Type {
	case proto.TypeDir:
		src, err = c.h.Files.TarOut(c.ctx, gp)
		if err != nil {
			return contract.ExportResult{}, c.guestErr("exporting", gp, err)
		}
	case proto.TypeFile:
		file = format == contract.ExportTree
		src = fileTar(c.ctx, c.h.Files, gp, fi)
	default:
		return contract.ExportResult{}, contract.Invalid("%s is a %s; export a regular file or a directory", gp, fi.Type)
	}
	defer src.Close()
	src = crashAtRead(src, "export:writing")
	var rep *hostio.ExtractReport
	l := strings.ToLower(host)
	switch {
	case format == contract.ExportTar:
		gz := strings.HasSuffix(l, ".gz") || strings.HasSuffix(l, ".tgz")
		rep, err = hostio.WriteTar(c.ctx, src, host, hostio.ArchiveOptions{Overwrite: req.Overwrite, Gzip: gz})
	default:
		rep, err = hostio.Extract(c.ctx, src, host, hostio.ExtractOptions{Overwrite: req.Overwrite, File: file})
	}
	if err == nil {
		crashAt("export:written")
	}
	if err != nil {
		if l := c.lost(); l != nil {
			return contract.ExportResult{}, l
		}
		var pe *proto.Error
		if errors.As(err, &pe) {
			return contract.ExportResult{}, c.guestErr("exporting", gp, err)
		}
		if errors.Is(err, hostio.ErrTooBig) {
			e := contract.LimitReached("exporting %s to %s: %v", gp, host, err).
				WithHint("Export less at a time: pass a guest_path below " + gp + ", or delete build output in the guest first.")
			e.Err = err
			return contract.ExportResult{}, e
		}
		e := contract.Invalid("exporting %s to %s: %v", gp, host, err)
		e.Err = err
		return contract.ExportResult{}, e
	}
	r := contract.ExportResult{HostPath: host, Format: format, Files: rep.Files, Bytes: rep.Bytes, Backup: rep.Backup}
	detail := fmt.Sprintf("%s, %d files, %d bytes", format, r.Files, r.Bytes)
	if r.Backup != "" {
		detail += "; the old " + host + " was moved to " + r.Backup
	}
	for _, w := range rep.Warnings {
		m.log.Warn("export", "id", c.w.id, "host_path", host, "warning", w)
	}
	c.w.journal.append(entry{Time: start, Kind: contract.LogExport, Command: "export " + gp + " -> " + host,
		Detail: detail, Duration: int64(time.Since(t0)),
		Export: &exportRec{HostPath: host, Format: format, Files: r.Files, Bytes: r.Bytes}})
	return r, nil
}

// fileTar streams the guest file p as a one-entry tar archive.
func fileTar(ctx context.Context, g guest, p string, fi proto.FileInfo) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Base(p), Size: fi.Size,
			Mode: int64(fi.Mode & 0o777), ModTime: fi.MTime, Format: tar.FormatPAX})
		var off int64
		for err == nil && off < fi.Size {
			var b []byte
			var rr proto.ReadResult
			b, rr, err = g.ReadFile(ctx, p, off, min(fi.Size-off, exportChunk))
			if err != nil {
				break
			}
			if _, err = tw.Write(b); err != nil {
				break
			}
			off += int64(len(b))
			if len(b) == 0 || rr.EOF {
				if off < fi.Size {
					err = fmt.Errorf("%s shrank while it was exported", p)
				}
				break
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// SyncPush implements contract.Backend: a host directory is sent as a tree, a
// .tar/.tar.gz/.tgz is unpacked, any other file is copied into the
// destination directory.
func (m *Manager) SyncPush(ctx context.Context, req contract.SyncPushRequest) (contract.SyncResult, error) {
	dest, err := guestPath(orWorkspace(req.GuestDest))
	if err != nil {
		return contract.SyncResult{}, err
	}
	host, err := m.allowedHostPath("host_path", req.HostPath, false)
	if err != nil {
		return contract.SyncResult{}, err
	}
	fi, err := os.Stat(host)
	if errors.Is(err, fs.ErrNotExist) {
		return contract.SyncResult{}, contract.NotFound(contract.ResourceHostPath, host)
	}
	if err != nil {
		return contract.SyncResult{}, contract.Invalid("host path %s: %v", host, err)
	}
	var produce func(ctx context.Context, w io.Writer) (*hostio.Report, error)
	l := strings.ToLower(host)
	switch {
	case fi.IsDir():
		produce = func(ctx context.Context, w io.Writer) (*hostio.Report, error) {
			return hostio.TarDir(ctx, w, host, hostio.SeedOptions{})
		}
	case fi.Mode().IsRegular() && (strings.HasSuffix(l, ".tar") || strings.HasSuffix(l, ".tar.gz") || strings.HasSuffix(l, ".tgz")):
		produce = func(ctx context.Context, w io.Writer) (*hostio.Report, error) {
			return hostio.TarArchive(ctx, w, host, hostio.SeedOptions{})
		}
	case fi.Mode().IsRegular():
		produce = func(ctx context.Context, w io.Writer) (*hostio.Report, error) {
			return tarHostFile(w, host, fi)
		}
	default:
		return contract.SyncResult{}, contract.Invalid("host path %s is neither a file nor a directory", host)
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.SyncResult{}, err
	}
	defer c.end()
	c.w.writeMu.Lock()
	defer c.w.writeMu.Unlock()
	start := m.now()
	t0 := time.Now()
	rep, err := pushTar(c.ctx, c.h.Files, dest, func(w io.Writer) (*hostio.Report, error) { return produce(c.ctx, w) })
	if err != nil {
		if l := c.lost(); l != nil {
			return contract.SyncResult{}, l
		}
		return contract.SyncResult{}, hostErr("pushing "+host+" to "+dest, host, err)
	}
	c.durable()
	r := contract.SyncResult{HostPath: host, GuestDest: dest, Files: rep.Files, Bytes: rep.Bytes, Skipped: skipped(rep)}
	c.w.journal.append(entry{Time: start, Kind: contract.LogSync, Command: "sync " + host + " -> " + dest,
		Detail: fmt.Sprintf("%d files, %d bytes, %d skipped", r.Files, r.Bytes, rep.SkippedCount), Duration: int64(time.Since(t0))})
	return r, nil
}

// tarHostFile writes one host file as a one-entry tar stream.
func tarHostFile(w io.Writer, p string, fi fs.FileInfo) (*hostio.Report, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.Base(p), Size: fi.Size(),
		Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime().Truncate(time.Second)}); err != nil {
		return nil, err
	}
	n, err := io.Copy(tw, io.LimitReader(f, fi.Size()))
	if err != nil {
		return nil, err
	}
	if n != fi.Size() {
		return nil, fmt.Errorf("%s changed size while it was read", p)
	}
	return &hostio.Report{Files: 1, Bytes: n}, tw.Close()
}
