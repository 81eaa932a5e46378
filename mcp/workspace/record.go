package workspace

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Files and directories of one workspace, under StateDir/workspaces/ID/.
const (
	recordName   = "record.json"   // the record, replaced atomically
	diskDir      = "disk"          // the disk.Stack over the environment's rootfs
	baselineDir  = "baseline"      // treediff index and blobs of /workspace after seeding
	journalName  = "journal.jsonl" // append-only journal
	outDir       = "out"           // SEQ.stdout, SEQ.stderr: full exec output
	diffsDir     = "diffs"         // NNNNNN.patch: patches too large for a tool result
	consoleName  = "console.log"   // the guest's serial console, current boot
	recordFormat = 1
)

// record is a workspace's metadata: record.json. Everything a restart
// needs to list the workspace and boot it again lives here; the journal
// holds the history.
type record struct {
	Format     int               `json:"format"`
	ID         string            `json:"id"`
	Name       string            `json:"name,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Env        string            `json:"env"`
	State      contract.State    `json:"state"` // last state written; running means "was running" after a crash
	Error      string            `json:"error,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	LastActive time.Time         `json:"last_active_at"`
	TTLSeconds int               `json:"ttl_seconds"`
	VCPUs      int               `json:"vcpus"`
	MemMiB     int               `json:"mem_mib"`
	// DiskMiB is the disk's size (the guest grows its root file system
	// to it); 0 in records written before disks had a size: the
	// environment image's. The disk stack records the size itself, so
	// reset and restart keep it.
	DiskMiB int                 `json:"disk_mib,omitempty"`
	Seed    contract.SeedReport `json:"seed"`
	// Boot and BootNote: how the guest last started, and why it booted
	// when it was meant to resume a memory image.
	Boot     contract.BootKind `json:"boot,omitempty"`
	BootNote string            `json:"boot_note,omitempty"`
	// BaselineLayer is the disk layer frozen right after seeding.
	BaselineLayer string `json:"baseline_layer"`
	// BaselineMemory is the memory image that goes with BaselineLayer,
	// if any (a directory under the workspace's, as snapRecord.Memory):
	// an unseeded create from a warm snapshot links that snapshot's
	// image, so a reset to the baseline resumes instead of booting.
	BaselineMemory string `json:"baseline_memory,omitempty"`
	// Snapshots, oldest first; each names a frozen disk layer.
	Snapshots []snapRecord `json:"snapshots,omitempty"`
	// ResetPending is a reset that began (saved before its disk checkout)
	// and has not been recorded as done; the next Open completes it
	// (recover). Replaced, never changed in place.
	ResetPending *pendingReset `json:"reset_pending,omitempty"`
	// ResetAt, ResetFrom and ResetSeq describe the last reset (zero: none):
	// when, to which snapshot ("" for the baseline), and its journal seq.
	ResetAt   time.Time `json:"reset_at,omitzero"`
	ResetFrom string    `json:"reset_from,omitempty"`
	ResetSeq  int64     `json:"reset_seq,omitempty"`
	// ExpiredAt is when the idle TTL stopped the workspace (zero: it is
	// not expired); its disk is kept for the retention period after it.
	ExpiredAt time.Time `json:"expired_at,omitzero"`
	// DiskDeletedAt is when the retention period's end deleted the disk
	// (zero: the disk is there). The record and journal stay.
	DiskDeletedAt time.Time `json:"disk_deleted_at,omitzero"`
	// Network is the workspace's grants in their canonical spellings, in
	// the order given; Published its published ports (network.go). Every
	// boot applies both to the new stack.
	Network   []string        `json:"network,omitempty"`
	Published []publishRecord `json:"published,omitempty"`
}

// snapRecord is one named snapshot.
type snapRecord struct {
	Name      string    `json:"name"`
	Layer     string    `json:"layer"` // disk layer ID
	CreatedAt time.Time `json:"created_at"`
	Seq       int64     `json:"seq"`
	Bytes     int64     `json:"bytes,omitempty"`
	// Memory is the memory image taken with the layer (a directory under
	// the workspace's, relative to it; "" for a disk-only snapshot), and
	// MemoryBytes the host disk space it uses.
	Memory      string `json:"memory,omitempty"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	// Quiet: no service had been started in the VM when Memory was
	// taken (memImage.quiet). False in records from before it was kept.
	Quiet bool `json:"quiet,omitempty"`
}

func (r *record) clone() record {
	c := *r
	if r.Labels != nil {
		c.Labels = make(map[string]string, len(r.Labels))
		for k, v := range r.Labels {
			c.Labels[k] = v
		}
	}
	c.Snapshots = append([]snapRecord(nil), r.Snapshots...)
	c.Network = append([]string(nil), r.Network...)
	c.Published = append([]publishRecord(nil), r.Published...)
	c.Seed.Skipped = append([]contract.SkippedEntry(nil), r.Seed.Skipped...)
	return c
}

// writeRecord replaces dir/record.json atomically.
func writeRecord(dir string, r *record) error {
	r.Format = recordFormat
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, recordName, append(b, '\n'))
}

// readRecord reads dir/record.json.
func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordName))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordName), err)
	}
	if r.Format != recordFormat {
		return nil, fmt.Errorf("%s: format %d, want %d", filepath.Join(dir, recordName), r.Format, recordFormat)
	}
	if r.ID == "" || r.ID != filepath.Base(dir) {
		return nil, fmt.Errorf("%s: id %q does not match its directory", filepath.Join(dir, recordName), r.ID)
	}
	return &r, nil
}

// writeFileAtomic replaces dir/name with data so that a crash at any point
// leaves either the old file or the new one, whole: write a temporary file,
// fsync it, rename it over name, fsync the directory.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	crashAt("atomic:" + name + ":tmp-written")
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
