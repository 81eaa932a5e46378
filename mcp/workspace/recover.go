package workspace

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Recovery after a crash. Killing the server at any step of create,
// snapshot, reset, export or delete leaves the record, the journal and the
// disk layers each whole (all are written atomically), but an operation
// that changes more than one of them can stop between two: a snapshot
// recorded but not journaled, a deleted snapshot's layer not yet freed, a
// record temporary never renamed. recover, run when a Manager adopts a
// workspace (no VM runs on it then), puts them back in agreement:
//
//   - temporary files of the record's atomic writes are removed;
//   - background commands journaled as running are journaled as lost
//     (recoverBackground);
//   - the disk is opened, which deletes the layer files and temporaries no
//     manifest names, and snapshots whose layers are gone are dropped from
//     the record (openStack);
//   - a reset that began (its record says so before the disk changes) is
//     completed: its layer checked out again, its journal line written
//     and the record updated, so the disk is never reset unbeknown to the
//     record and journal;
//   - frozen layers that neither the record nor another layer needs (an
//     orphan of a snapshot delete or reset cut short) are deleted
//     (pruneLayers);
//   - a snapshot in the record whose journal line was never written gets
//     it, with the sequence number the record gave it, and a journaled
//     snapshot that never reached the record gets a line saying so.
//
// A disk that does not open is left alone and logged: recovery never
// deletes what it cannot read.

// crashPoint, set only by tests (crash_test.go), is called at named steps
// of create, snapshot, reset, export and delete; the test kills the
// process there with SIGKILL and checks what the next Open makes of it.
var crashPoint func(name string)

// crashAt calls crashPoint, if set.
func crashAt(name string) {
	if crashPoint != nil {
		crashPoint(name)
	}
}

// crashAtRead returns r, or with crashPoint set, r calling crashAt(name)
// at its first Read: an export's writer reads once its temporary exists.
func crashAtRead(r io.ReadCloser, name string) io.ReadCloser {
	if crashPoint == nil {
		return r
	}
	return &readHook{ReadCloser: r, name: name}
}

type readHook struct {
	io.ReadCloser
	name string
	once sync.Once
}

func (h *readHook) Read(p []byte) (int, error) {
	h.once.Do(func() { crashAt(h.name) })
	return h.ReadCloser.Read(p)
}

// recover brings a workspace the Manager is adopting back into agreement
// after a crash (see above). The caller holds the workspace's ownership;
// the workspace is not yet published, so no call runs on it.
func (w *workspace) recover() {
	removeRecordTemps(w.dir)
	w.recoverBackground()
	w.pruneMemory()
	w.mu.Lock()
	created := w.rec.BaselineLayer != ""
	w.mu.Unlock()
	if _, err := os.Stat(filepath.Join(w.dir, diskDir)); !created || err != nil {
		return // a create that never made its disk, or a disk deleted on purpose
	}
	st, err := w.openStack()
	// The journal first: a recorded snapshot's line takes the seq the
	// record gave it before anything else is journaled.
	w.reconcileJournal()
	if err != nil {
		w.m.log.Warn("checking the workspace's disk after a restart", "id", w.id, "err", err)
		return
	}
	w.completeReset(st)
	if freed, bytes := w.pruneLayers(st); len(freed) > 0 {
		w.m.log.Info("freed disk layers an interrupted operation left", "id", w.id, "layers", len(freed), "bytes", bytes)
	}
	if err := st.Close(); err != nil {
		w.m.log.Warn("closing the workspace's disk", "id", w.id, "err", err)
	}
}

// removeRecordTemps deletes the temporaries of writeFileAtomic in dir
// (".NAME.tmp-*"), which a crash between write and rename leaves.
func removeRecordTemps(dir string) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") && de.Type().IsRegular() {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// reconcileJournal makes the journal and the record's snapshots agree.
// SnapshotCreate records a snapshot before it journals it, so a crash
// between leaves a recorded snapshot without its line: it is appended,
// under the sequence number the record holds. Such a snapshot's seq is
// above every line's (SnapshotCreate excludes every other call between
// reserving the seq and writing the line), which tells it from one whose
// line an older part of the journal held. A journaled snapshot that is
// neither recorded nor deleted later (a crash between the journal and the
// record under an older order, or a record write that failed) gets a line
// saying it was not kept.
func (w *workspace) reconcileJournal() {
	w.mu.Lock()
	snaps := slices.Clone(w.rec.Snapshots)
	w.mu.Unlock()
	ents := w.journal.since(0)
	last, _ := w.journal.last()
	for _, s := range snaps {
		if s.Seq <= last {
			continue
		}
		w.appendRecovered(entry{Seq: s.Seq, Time: s.CreatedAt, Kind: contract.LogSnapshot, Command: "snapshot " + s.Name,
			Detail: fmt.Sprintf("disk layer %s, %d bytes (journaled at restart: the server stopped before it wrote this line)", s.Layer, s.Bytes)})
	}
	recorded := map[int64]bool{}
	for _, s := range snaps {
		recorded[s.Seq] = true
	}
	for i, e := range ents {
		name, ok := strings.CutPrefix(e.Command, "snapshot ")
		if e.Kind != contract.LogSnapshot || !ok || strings.HasPrefix(name, "delete ") || strings.HasPrefix(name, "lost ") || recorded[e.Seq] {
			continue
		}
		if slices.ContainsFunc(ents[i+1:], func(l entry) bool {
			return l.Kind == contract.LogSnapshot && (l.Command == "snapshot delete "+name || l.Command == "snapshot lost "+name)
		}) {
			continue
		}
		w.appendRecovered(entry{Time: w.m.now(), Kind: contract.LogSnapshot, Command: "snapshot lost " + name,
			Detail: fmt.Sprintf("snapshot %s (seq %d) was not kept: the server stopped before it was recorded, or it was deleted; its disk layer is freed once nothing builds on it", name, e.Seq)})
	}
}

func (w *workspace) appendRecovered(e entry) {
	if _, err := w.journal.append(e); err != nil {
		w.m.log.Warn("writing the journal", "id", w.id, "err", err)
	}
}

// pendingReset is a reset in progress: its target layer, the snapshot
// named ("" for the baseline) and when it began.
type pendingReset struct {
	Layer string    `json:"layer"`
	From  string    `json:"from,omitempty"`
	At    time.Time `json:"at"`
}

// beginReset records, before Reset changes the disk, that a reset to
// layer (snapshot from, "" for the baseline) began; recover completes it
// if the server stops before Reset records it done.
func (w *workspace) beginReset(layer, from string, at time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.rec.ResetPending
	w.rec.ResetPending = &pendingReset{Layer: layer, From: from, At: at}
	err := w.saveLocked()
	if err != nil {
		w.rec.ResetPending = old
	}
	return err
}

// endReset forgets a reset that failed before it changed the disk; the
// caller saves the record (w.failed does).
func (w *workspace) endReset() {
	w.mu.Lock()
	w.rec.ResetPending = nil
	w.mu.Unlock()
}

// completeReset finishes a reset that did not: the server stopped in it,
// or the VM did not boot after it (then the next start completes it,
// before anyone can write to the disk). The target layer is checked out
// again (the VM never ran on the new top, or ran in a boot nobody saw
// answer, so nothing of value is discarded), journaled and recorded like
// Reset does. The caller holds op, or the workspace is not yet published.
func (w *workspace) completeReset(st *disk.Stack) {
	w.mu.Lock()
	p := w.rec.ResetPending
	w.mu.Unlock()
	if p == nil {
		return
	}
	detail := "baseline"
	if p.From != "" {
		detail = "snapshot " + p.From
	}
	err := st.Checkout(p.Layer)
	if err != nil {
		w.m.log.Warn("completing an interrupted reset", "id", w.id, "layer", p.Layer, "err", err)
		detail += fmt.Sprintf("; the server stopped during this reset and completing it failed (%v): the disk may be as before it", err)
	} else {
		detail += "; completed later: the reset did not finish (the server stopped, or the VM did not boot after it)"
	}
	seq, jerr := w.journal.append(entry{Time: p.At, Kind: contract.LogReset, Command: "reset", Detail: detail})
	if jerr != nil {
		w.m.log.Warn("writing the journal", "id", w.id, "err", jerr)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rec.ResetPending = nil
	if err == nil {
		w.rec.ResetAt, w.rec.ResetFrom, w.rec.ResetSeq = p.At, p.From, seq
	}
	if err := w.saveLocked(); err != nil {
		w.m.log.Warn("saving the record", "id", w.id, "err", err)
	}
}
