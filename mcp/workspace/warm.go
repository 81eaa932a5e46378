package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
	"github.com/pyro-mcp/pyro/vmm/snapshot"
)

// Warm snapshots. The first create of an environment at a VM shape boots
// the guest, and once its agent answers (before seeds or secrets reach
// it) makes an empty /workspace, reads its index, syncs, and takes a
// memory snapshot of the guest with the disk layer frozen at that
// instant: the warm snapshot, kept beside the environments
// (CACHE/warm/ENV/KEY/; Options.WarmRoot/ENV/KEY/ when set). Later creates
// of that shape resume it instead of booting, then seed /workspace as
// usual; an unseeded one takes the snapshot's layer and index as its
// baseline and asks the guest nothing more. KEY hashes everything the
// guest's state at that point depends on: the environment's files (their
// sizes and modification times: env build replaces them), the agent's
// protocol version, the snapshot format, and the shape (vCPUs, memory,
// disk size); a change to any of them selects another key, and a stale
// snapshot is simply never used again, and goes once warmKeep newer ones
// of its environment exist.
//
// A warm snapshot directory holds warmInfo (warm.json), disk/ (a stack
// sharing the frozen layer by hard link), memory/ (the image) and
// baseline.tar (/workspace as the guest's tar stream gave it). It is
// made under a temporary name and renamed into place whole, so a reader
// finds a complete one or none.

const (
	warmDirName  = "warm"
	warmInfoName = "warm.json"
	warmBaseName = "baseline.tar"
	// warmFormat changes when what a warm snapshot holds changes (2:
	// /workspace and its baseline.tar; 3: warm.json records the shape, so
	// that pyro doctor can tell a current one from a stale one).
	warmFormat = 3
	// maxWarmBaseline bounds baseline.tar: an empty directory's tar
	// stream is a few blocks.
	maxWarmBaseline = 1 << 20
	// warmKeep is how many warm snapshots an environment keeps (shapes
	// in use, and the stale ones of an environment rebuilt since).
	warmKeep = 3
)

// warmInfo is warm.json. The shape is there for pyro doctor (the key
// hashes it).
type warmInfo struct {
	Format  int       `json:"format"`
	Key     string    `json:"key"`
	Layer   string    `json:"layer"`
	Created time.Time `json:"created"`
	VCPUs   int       `json:"vcpus,omitempty"`
	MemMiB  int       `json:"mem_mib,omitempty"`
	DiskMiB int       `json:"disk_mib,omitempty"`
}

// warmSnap is a usable warm snapshot.
type warmSnap struct {
	dir  string
	info warmInfo
}

func (s *warmSnap) disk() string     { return filepath.Join(s.dir, diskDir) }
func (s *warmSnap) memory() string   { return filepath.Join(s.dir, memoryDir) }
func (s *warmSnap) baseline() string { return filepath.Join(s.dir, warmBaseName) }

// warmKey names the warm snapshot of environment e at a VM shape.
func warmKey(e *env.Env, vcpus, memMiB, diskMiB int) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "warm %d snapshot %d agent %d\nenv %s\nshape %d %d %d\n",
		warmFormat, snapshot.Version, proto.Version, e.Name, vcpus, memMiB, diskMiB)
	for _, p := range []string{e.Kernel, e.Initrd, e.Rootfs} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", filepath.Base(p), fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// warmEnvDir holds environment e's warm snapshots.
func (m *Manager) warmEnvDir(e *env.Env) string { return warmEnvDir(m.opts.WarmRoot, e) }

// warmEnvDir is where environment e's warm snapshots are kept under root
// (Options.WarmRoot; "" is beside the environments).
func warmEnvDir(root string, e *env.Env) string {
	if root == "" {
		root = filepath.Join(filepath.Dir(filepath.Dir(e.Dir)), warmDirName) // CACHE/envs/NAME -> CACHE/warm
	}
	return filepath.Join(root, e.Name)
}

// findWarm returns the warm snapshot for e at a shape, or nil.
func (m *Manager) findWarm(e *env.Env, vcpus, memMiB, diskMiB int) *warmSnap {
	if !m.opts.WarmSnapshots {
		return nil
	}
	key, err := warmKey(e, vcpus, memMiB, diskMiB)
	if err != nil {
		return nil
	}
	ws, err := readWarm(filepath.Join(m.warmEnvDir(e), key))
	if err != nil || ws.info.Key != key {
		return nil
	}
	return ws
}

// readWarm reads the warm snapshot in dir, named by its key: an error when
// it is not a complete one of this format.
func readWarm(dir string) (*warmSnap, error) {
	b, err := os.ReadFile(filepath.Join(dir, warmInfoName))
	if err != nil {
		return nil, err
	}
	var info warmInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", warmInfoName, err)
	}
	if info.Format != warmFormat || info.Key != filepath.Base(dir) || info.Layer == "" {
		return nil, fmt.Errorf("%s: format %d, key %q, layer %q: not a warm snapshot of this pyro's format %d",
			warmInfoName, info.Format, info.Key, info.Layer, warmFormat)
	}
	ws := &warmSnap{dir: dir, info: info}
	for _, p := range []string{filepath.Join(ws.memory(), vmm.StateFile), ws.baseline()} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// WarmStatus is one of an environment's warm snapshots, as pyro doctor
// reports it.
type WarmStatus struct {
	// The VM shape whose creates resume it; zero for one of another
	// format.
	VCPUs   int       `json:"vcpus,omitempty"`
	MemMiB  int       `json:"mem_mib,omitempty"`
	DiskMiB int       `json:"disk_mib,omitempty"`
	Created time.Time `json:"created"`
	// Bytes is the host disk it holds: the memory image (sparse), the
	// frozen disk layer and the baseline.
	Bytes int64 `json:"bytes"`
	// Current: creates of its shape resume it. Otherwise it is stale
	// (the environment was rebuilt, or another pyro took it) and goes
	// once newer ones replace it.
	Current bool `json:"current"`
}

// WarmSnapshots lists environment e's warm snapshots in root (as
// Options.WarmRoot: "" is beside the environments), newest first.
func WarmSnapshots(root string, e *env.Env) []WarmStatus {
	dir := warmEnvDir(root, e)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []WarmStatus
	for _, d := range ents {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			continue
		}
		sd := filepath.Join(dir, d.Name())
		s := WarmStatus{Bytes: allocated(sd)}
		if fi, err := d.Info(); err == nil {
			s.Created = fi.ModTime().UTC()
		}
		if ws, err := readWarm(sd); err == nil {
			s.VCPUs, s.MemMiB, s.DiskMiB, s.Created = ws.info.VCPUs, ws.info.MemMiB, ws.info.DiskMiB, ws.info.Created
			if s.VCPUs > 0 {
				key, err := warmKey(e, s.VCPUs, s.MemMiB, s.DiskMiB)
				s.Current = err == nil && key == ws.info.Key
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b WarmStatus) int { return b.Created.Compare(a.Created) })
	return out
}

// captureWarm takes the warm snapshot of e at a shape from guest b that
// has just booted on st, whose agent answered and holds nothing of any
// workspace yet. Failing to take one costs the next create a boot, no
// more: errors are logged, never returned.
func (m *Manager) captureWarm(e *env.Env, vcpus, memMiB, diskMiB int, b *booted, sn snapshotter, st *disk.Stack, stackDir string) {
	if !m.opts.WarmSnapshots {
		return
	}
	key, err := warmKey(e, vcpus, memMiB, diskMiB)
	if err != nil {
		return
	}
	final := filepath.Join(m.warmEnvDir(e), key)
	if _, err := os.Stat(final); err == nil {
		return // another create took it meanwhile
	}
	if err := os.MkdirAll(m.warmEnvDir(e), 0o700); err != nil {
		m.log.Warn("no warm snapshot", "env", e.Name, "err", err)
		return
	}
	if free, err := statfsFree(m.warmEnvDir(e)); err != nil || free < minFreeBytes {
		m.log.Info("no warm snapshot: too little free disk for it", "env", e.Name)
		return
	}
	begin := time.Now()
	tmp := filepath.Join(m.warmEnvDir(e), ".tmp-"+key+"-"+strconv.Itoa(os.Getpid())+"-"+randomName())
	fail := func(what string, err error) {
		m.log.Warn("taking the warm snapshot", "env", e.Name, "step", what, "err", err)
		os.RemoveAll(tmp)
	}
	if err := os.MkdirAll(filepath.Join(tmp, memoryDir), 0o700); err != nil {
		fail("directory", err)
		return
	}
	// What every create does first, done once here: /workspace, and
	// its index as the baseline of a create with no seed. The sync
	// leaves the layer frozen below whole on its own (a create's
	// baseline, booted from by a reset), not only with the image.
	ctx, cancel := context.WithTimeout(context.Background(), agentCallTimeout)
	defer cancel()
	if res, err := b.Agent.Exec(ctx, execMkdir(hostio.Workspace), nil, nil); err != nil || res.ExitCode != 0 {
		fail("creating /workspace", errors.Join(err, fmt.Errorf("mkdir exit %d", res.ExitCode)))
		return
	}
	if err := saveTarOut(ctx, b.Files, filepath.Join(tmp, warmBaseName)); err != nil {
		fail("reading /workspace", err)
		return
	}
	if err := b.Agent.Sync(ctx); err != nil {
		fail("syncing the guest", err)
		return
	}
	var layer disk.LayerInfo
	stats, err := sn.Snapshot(filepath.Join(tmp, memoryDir), "warm "+e.Name, func() error {
		var err error
		layer, err = st.Freeze(warmDirName)
		return err
	})
	if err != nil {
		fail("snapshot", err)
		return
	}
	ds, err := disk.Fork(stackDir, layer.ID, filepath.Join(tmp, diskDir))
	if err != nil {
		fail("disk", err)
		return
	}
	if err := ds.Close(); err != nil {
		fail("disk", err)
		return
	}
	info, _ := json.Marshal(warmInfo{Format: warmFormat, Key: key, Layer: layer.ID, Created: time.Now().UTC(),
		VCPUs: vcpus, MemMiB: memMiB, DiskMiB: diskMiB})
	if err := os.WriteFile(filepath.Join(tmp, warmInfoName), info, 0o600); err != nil {
		fail("info", err)
		return
	}
	if err := os.Rename(tmp, final); err != nil {
		fail("rename", err) // another create's is there: keep that one
		return
	}
	m.log.Info("warm snapshot taken", "env", e.Name, "key", key, "memory_pages", stats.Memory.Written, "took", time.Since(begin))
	m.pruneWarm(e)
}

// pruneWarm deletes environment e's warm snapshots beyond the warmKeep
// newest, and temporaries a crash left over an hour ago. Workspaces that
// started from a deleted one keep running: they hold its files open or
// linked.
func (m *Manager) pruneWarm(e *env.Env) {
	dir := m.warmEnvDir(e)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type snap struct {
		name string
		at   time.Time
	}
	var snaps []snap
	for _, d := range ents {
		fi, err := d.Info()
		if err != nil || !d.IsDir() {
			continue
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			if time.Since(fi.ModTime()) > time.Hour {
				os.RemoveAll(filepath.Join(dir, d.Name()))
			}
			continue
		}
		snaps = append(snaps, snap{d.Name(), fi.ModTime()})
	}
	slices.SortFunc(snaps, func(a, b snap) int { return b.at.Compare(a.at) })
	for _, s := range snaps[min(len(snaps), warmKeep):] {
		if err := os.RemoveAll(filepath.Join(dir, s.name)); err != nil {
			m.log.Warn("deleting an old warm snapshot", "env", e.Name, "dir", s.name, "err", err)
		}
	}
}

// saveTarOut writes g's tar stream of /workspace to path, at most
// maxWarmBaseline bytes of it.
func saveTarOut(ctx context.Context, g guest, path string) error {
	rc, err := g.TarOut(ctx, hostio.Workspace)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxWarmBaseline+1))
	if err != nil {
		return err
	}
	if len(b) > maxWarmBaseline {
		return fmt.Errorf("/workspace's tar stream is over %d bytes", maxWarmBaseline)
	}
	return os.WriteFile(path, b, 0o600)
}
