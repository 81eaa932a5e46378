package workspace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Memory snapshots. A running workspace's snapshot keeps, beside its frozen
// disk layer, the guest's whole state: vCPUs, interrupt controllers,
// devices and a sparse image of its RAM (vmm.Machine.Snapshot), all taken
// while the guest is paused, at the same instant as the layer. A reset to
// it resumes that guest on a new top over the layer: processes, their
// memory and open files as they were, in the time it takes to map the
// image. Each image is a directory memoryDir/<random> in the workspace's
// directory, named by its snapshot's record; it is deleted with the
// snapshot or the workspace.
//
// The guest is not frozen for it (its processes must go on after the
// resume), so the layer alone is what a power cut at that instant would
// leave: the guest syncs just before, which makes it clean but for what
// was written in between, and ext4's journal makes it consistent. That is
// what a reset boots from when the image cannot be resumed.

// memoryDir holds a workspace's memory images.
const memoryDir = "memory"

// memResult is what a memory snapshot produced: the image's directory
// relative to the workspace's ("" when memory was not kept), its size on
// the host, and why memory was not kept when it was not.
type memResult struct {
	rel   string
	bytes int64
	stats vmm.SnapshotStats
	note  string
	quiet bool // no service had been started in the VM (memImage.quiet)
}

// memorySnapshot freezes the disk layer labelled label together with a
// memory image of the running guest. When the image cannot be taken (a
// machine that cannot, not enough host disk, a failure writing it), the
// snapshot is the disk layer alone and the result's note says why.
func (w *workspace) memorySnapshot(ctx context.Context, h *vmHandle, label string) (disk.LayerInfo, memResult, error) {
	sn, ok := h.VM.(snapshotter)
	if !ok {
		layer, err := freezeLayer(ctx, h, label)
		return layer, memResult{note: "memory not kept: this VM cannot be snapshotted"}, err
	}
	if len(w.secrets()) > 0 {
		// The guest's memory holds the secrets' values (its tmpfs, the
		// environments of processes given them): an image would write
		// them to the host's disk in the clear, where only secrets.json
		// may hold them.
		layer, err := freezeLayer(ctx, h, label)
		return layer, memResult{note: "memory not kept: this workspace holds secrets, which a memory image would write to the host's disk " +
			"in the clear; the snapshot holds the disk only, and a reset to it boots"}, err
	}
	// The image holds the pages the guest has touched, which only the
	// save knows: it needs the free space every write does (checkFree,
	// already passed), and one that fills the disk fails cleanly, leaving
	// a disk-only snapshot.
	if free, err := statfsFree(w.dir); err == nil && free < minFreeBytes {
		layer, err := freezeLayer(ctx, h, label)
		return layer, memResult{note: fmt.Sprintf("memory not kept: the state directory's file system has only %d MiB free; "+
			"the snapshot holds the disk only", free>>20)}, err
	}
	// Write the guest's dirty pages out first, so the layer is clean as
	// of (nearly) now, should it ever be booted from without the image.
	sctx, cancel := context.WithTimeout(ctx, agentCallTimeout)
	if err := h.Agent.Sync(sctx); err != nil {
		w.m.log.Warn("syncing the guest before a memory snapshot", "id", w.id, "err", err)
	}
	cancel()
	rel := filepath.Join(memoryDir, randomName())
	dir := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		layer, ferr := freezeLayer(ctx, h, label)
		return layer, memResult{note: "memory not kept: " + err.Error()}, ferr
	}
	var layer disk.LayerInfo
	stats, err := sn.Snapshot(dir, label, func() error {
		var err error
		layer, err = h.stack.Freeze(label)
		return err
	})
	if err != nil {
		os.RemoveAll(dir)
		w.m.log.Warn("memory snapshot failed", "id", w.id, "err", err)
		note := "memory not kept (" + firstLine(err.Error()) + "); the snapshot holds the disk only"
		if layer.ID != "" {
			return layer, memResult{note: note}, nil
		}
		layer, err = freezeLayer(ctx, h, label)
		return layer, memResult{note: note}, err
	}
	return layer, memResult{rel: rel, bytes: allocated(dir), stats: stats, quiet: !h.services.Load()}, nil
}

// memoryImage returns the memory image rel of a snapshot on layer, or
// nil and why not when rel is "" or the image is gone. quiet is
// memImage.quiet.
func (w *workspace) memoryImage(rel, layer string, quiet bool) (*memImage, string) {
	if rel == "" {
		return nil, ""
	}
	dir := filepath.Join(w.dir, rel)
	if _, err := os.Stat(filepath.Join(dir, vmm.StateFile)); err != nil {
		return nil, "the snapshot's memory image is missing; the guest booted from the snapshot's disk instead"
	}
	return &memImage{dir: dir, layer: layer, quiet: quiet}, ""
}

// removeMemory deletes memory image rel ("" does nothing).
func (w *workspace) removeMemory(rel string) {
	if rel == "" || !strings.HasPrefix(rel, memoryDir+string(filepath.Separator)) {
		return
	}
	if err := os.RemoveAll(filepath.Join(w.dir, rel)); err != nil {
		w.m.log.Warn("deleting a memory image", "id", w.id, "image", rel, "err", err)
	}
}

// pruneMemory deletes the memory images no snapshot names: leftovers of a
// snapshot whose record was never saved.
func (w *workspace) pruneMemory() {
	ents, err := os.ReadDir(filepath.Join(w.dir, memoryDir))
	if err != nil {
		return
	}
	w.mu.Lock()
	keep := map[string]bool{w.rec.BaselineMemory: true}
	for _, s := range w.rec.Snapshots {
		keep[s.Memory] = true
	}
	w.mu.Unlock()
	for _, e := range ents {
		if rel := filepath.Join(memoryDir, e.Name()); !keep[rel] {
			w.removeMemory(rel)
		}
	}
}

// linkImage links the memory image in dir (a warm snapshot's) into the
// workspace's memory images and returns its name there. The files are
// read only, never written: the warm snapshot and the workspace share
// them, and either may be deleted first.
func (w *workspace) linkImage(dir string) (string, error) {
	rel := filepath.Join(memoryDir, randomName())
	dst := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	// The state file last: an image without one is never resumed.
	for _, f := range []string{vmm.MemoryFile, vmm.StateFile} {
		if err := os.Link(filepath.Join(dir, f), filepath.Join(dst, f)); err != nil {
			os.RemoveAll(dst)
			return "", err
		}
	}
	return rel, nil
}

// allocated is the host disk space the files under dir use.
func allocated(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

func randomName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
