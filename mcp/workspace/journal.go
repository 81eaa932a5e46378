package workspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// entry is one journal line.
type entry struct {
	Seq      int64            `json:"seq"`
	Time     time.Time        `json:"time"`
	Kind     contract.LogKind `json:"kind"`
	Command  string           `json:"command"`
	ExitCode *int             `json:"exit_code,omitempty"`
	Duration int64            `json:"duration_ns"`
	Detail   string           `json:"detail,omitempty"`
	Export   *exportRec       `json:"export,omitempty"` // for LogExport

	gen int // the file generation that holds it (not stored): see journal
}

// exportRec is an export as the journal keeps it (for Summary).
type exportRec struct {
	HostPath string                `json:"host_path"`
	Format   contract.ExportFormat `json:"format"`
	Files    int                   `json:"files"`
	Bytes    int64                 `json:"bytes"`
}

func (e *entry) logEntry() contract.LogEntry {
	l := contract.LogEntry{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Command: e.Command,
		Duration: time.Duration(e.Duration), Detail: e.Detail}
	if e.ExitCode != nil {
		c := *e.ExitCode
		l.ExitCode = &c
	}
	return l
}

// journal is a workspace's append-only command journal, journal.jsonl: one
// JSON object a line, each line fsynced before the call that made it
// returns. A crash can leave at most a torn last line, which loading drops.
//
// Once journal.jsonl passes journalRotateBytes it is renamed to
// journal.1.jsonl (replacing the one before) and a new one started, so a
// workspace's journal holds at most two generations on disk and in memory:
// logs and summaries reach back over the last journalRotateBytes or more,
// and the oldest entries go. Sequence numbers carry on across rotations.
type journal struct {
	path string
	// redact, if set, is applied to every entry's command and detail
	// before it is kept (the workspace's secrets); set before first use.
	redact func(string) string

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	gen int // generation of journal.jsonl; journal.1.jsonl's is gen-1
	// Guarded by mu.
	f *os.File // opened for appending on the first append
	// Guarded by mu.
	validLen int64 // bytes of whole lines in the file as loaded
	// Guarded by mu.
	entries []entry // sorted by Seq
	// Guarded by mu.
	next int64 // next sequence number to hand out
}

// journalRotateBytes is the size past which journal.jsonl is rotated to
// journal.1.jsonl: about 20,000 exec entries, far more than a summary
// needs, while a workspace's journal stays under 2 × 8 MiB on disk and
// in memory.
const journalRotateBytes = 8 << 20

// rotatedPath is the previous generation of the journal at path.
func rotatedPath(path string) string {
	return strings.TrimSuffix(path, ".jsonl") + ".1.jsonl"
}

// loadJournal reads the journal at path, after its previous generation;
// a missing file is an empty journal.
func loadJournal(path string) (*journal, error) {
	old, err := os.ReadFile(rotatedPath(path))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	j := &journal{path: path, next: 1}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.load(old) // generation 0
	j.validLen, j.gen = 0, 1
	j.load(b)
	return j, nil
}

// load adds the whole lines of b, a journal file of generation j.gen.
// The caller holds j.mu.
func (j *journal) load(b []byte) {
	for off := 0; off < len(b); {
		nl := bytes.IndexByte(b[off:], '\n')
		if nl < 0 {
			break // a torn last line: the append that wrote it never returned
		}
		line := b[off : off+nl]
		off += nl + 1
		j.validLen = int64(off)
		var e entry
		if json.Unmarshal(line, &e) != nil || e.Seq <= 0 {
			continue
		}
		e.gen = j.gen
		j.insert(e)
	}
}

// The caller holds j.mu.
func (j *journal) insert(e entry) {
	i := sort.Search(len(j.entries), func(i int) bool { return j.entries[i].Seq >= e.Seq })
	if i < len(j.entries) && j.entries[i].Seq == e.Seq {
		j.entries[i] = e
	} else {
		j.entries = slices.Insert(j.entries, i, e)
	}
	if e.Seq >= j.next {
		j.next = e.Seq + 1
	}
}

// reserve hands out the next sequence number, for an operation whose entry
// is appended when it ends (an exec names its output files by it).
func (j *journal) reserve() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.next
	j.next++
	return s
}

// append writes e (with a reserved Seq, or 0 for the next one) durably and
// returns its sequence number.
func (j *journal) append(e entry) (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.Seq == 0 {
		e.Seq = j.next
		j.next++
	}
	e.gen = j.gen
	if j.redact != nil {
		e.Command, e.Detail = j.redact(e.Command), j.redact(e.Detail)
	}
	if j.f == nil {
		f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return 0, err
		}
		// Drop a torn last line so the next entry starts on a line of its own.
		if err := f.Truncate(j.validLen); err != nil {
			f.Close()
			return 0, err
		}
		if _, err := f.Seek(j.validLen, 0); err != nil {
			f.Close()
			return 0, err
		}
		j.f = f
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	n, err := j.f.Write(append(b, '\n'))
	if err != nil {
		// A partial line may be there: cut it before the next append.
		j.f.Close()
		j.f = nil
		return 0, err
	}
	if err := j.f.Sync(); err != nil {
		return 0, err
	}
	j.validLen += int64(n)
	j.insert(e)
	if j.validLen >= journalRotateBytes {
		j.rotate()
	}
	return e.Seq, nil
}

// rotate renames journal.jsonl to journal.1.jsonl and forgets the
// generation that replaces. The entry just written is durable either
// way; a failed rotation is retried by the next append.
// The caller holds j.mu.
func (j *journal) rotate() {
	j.f.Close()
	j.f = nil
	if err := os.Rename(j.path, rotatedPath(j.path)); err != nil {
		return // the next append reopens the file and tries again
	}
	syncDir(filepath.Dir(j.path))
	j.validLen = 0
	j.entries = slices.DeleteFunc(j.entries, func(e entry) bool { return e.gen < j.gen })
	j.gen++
}

// page returns up to limit entries with Seq > after, and whether more follow.
func (j *journal) page(after int64, limit int) ([]contract.LogEntry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := sort.Search(len(j.entries), func(i int) bool { return j.entries[i].Seq > after })
	var out []contract.LogEntry
	for ; i < len(j.entries) && len(out) < limit; i++ {
		out = append(out, j.entries[i].logEntry())
	}
	return out, i < len(j.entries)
}

// since returns the entries with Seq > after, copied.
func (j *journal) since(after int64) []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := sort.Search(len(j.entries), func(i int) bool { return j.entries[i].Seq > after })
	return slices.Clone(j.entries[i:])
}

// last returns the highest sequence number written and the time of the
// latest entry.
func (j *journal) last() (int64, time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) == 0 {
		return 0, time.Time{}
	}
	var t time.Time
	for _, e := range j.entries[max(0, len(j.entries)-16):] {
		if end := e.Time.Add(time.Duration(e.Duration)); end.After(t) {
			t = end
		}
	}
	return j.entries[len(j.entries)-1].Seq, t
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
