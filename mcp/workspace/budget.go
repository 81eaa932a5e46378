package workspace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Host resources shared by every server on a state directory.
//
// Memory. Guest memory is an anonymous private mapping that the host
// backs page by page as the guest touches it, so a VM that has booted
// holds little and can later hold all of its MemMiB. Each server writes
// what its running VMs may come to hold into one ledger file in the state
// directory (memLedgerName: JSON, replaced atomically under a flock on
// memLockName), one entry per VM keyed by server pid (with the process's start
// time, so a reused pid is not mistaken for the server) and workspace ID.
// Entries of dead servers are dropped whenever the ledger is read, so a
// killed server's promises go with it. A VM of mem MiB may boot when
//
//  1. every VM on the ledger plus this one fits the host's RAM less
//     hostReserveMiB (promises never exceed physical memory), and
//  2. this VM plus what the ledger's VMs have yet to touch fits the
//     memory available now (MemAvailable) less hostReserveMiB. What a
//     server's VMs have yet to touch is its entries' sum less its
//     anonymous resident memory (RssAnon, which the guests' touched pages
//     are part of; counting the server's own heap there errs by a few
//     tens of MiB, which the reserve covers).
//
// So a guest touching all its memory, with every other VM doing the same,
// finds the host's memory there, whatever other host processes held when
// it booted; only a host process growing later can overcommit it.
//
// Disk. Creates, snapshots and exports need minFreeBytes free on the
// state directory's file system (exports also write to the target's,
// which hostio checks as it writes).

// Bounds on host resources.
const (
	// hostReserveMiB is memory never promised to guests: the host
	// kernel, page cache for the workspaces' disk files, this server's
	// heap. 256 MiB keeps a small host (CI runner, laptop) usable while
	// one default-sized VM still fits a 1 GiB machine.
	hostReserveMiB = 256
	// minFreeBytes is the free space a create, snapshot or export needs on
	// the state directory's file system: a fresh disk layer, a baseline
	// index and an export's temporary files all land there, and a host
	// whose disk fills fails in ways no tool error explains. 512 MiB holds
	// a seed and a first package install, and still lets pyro run where
	// the state directory is a small tmpfs (the nested-KVM test harness's
	// is 2 GiB, with the environment's image in it).
	minFreeBytes = 512 << 20
	// maxSnapshots caps a workspace's snapshots: each pins a disk layer
	// (up to the whole disk's size), and 32 is far more than an agent's
	// "before I try X" checkpoints need.
	maxSnapshots = 32
	// keptOutputs is how many execs' full-output files out/ keeps (the
	// latest ones; each is up to 2 × outFileCap, so at most 2 GiB).
	keptOutputs = 32
)

// The memory ledger and its lock, in the state directory.
const (
	memLedgerName = "memory.json"
	memLockName   = "memory.lock"
)

// memSource reads the host's memory; tests inject one.
type memSource struct {
	// meminfo returns MemTotal and MemAvailable in MiB.
	meminfo func() (total, avail uint64, err error)
	// held returns the anonymous resident memory of pid in MiB (0 when
	// unknown).
	held func(pid int) uint64
}

// hostMem reads /proc; a variable for tests.
var hostMem = memSource{meminfo: procMeminfo, held: procRssAnon}

// procMeminfo reads MemTotal and MemAvailable from /proc/meminfo.
func procMeminfo() (total, avail uint64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	var haveT, haveA bool
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "MemTotal":
			total, haveT = n>>10, true
		case "MemAvailable":
			avail, haveA = n>>10, true
		}
	}
	if !haveT || !haveA {
		return 0, 0, errors.New("/proc/meminfo has no MemTotal or MemAvailable")
	}
	return total, avail, nil
}

// procRssAnon reads RssAnon of pid from /proc/PID/status, in MiB.
func procRssAnon(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "RssAnon:"); ok {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				n, _ := strconv.ParseUint(fs[0], 10, 64)
				return n >> 10
			}
		}
	}
	return 0
}

// procStart returns the start time of pid (field 22 of /proc/PID/stat),
// or "" when the process does not exist.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22: fields 3.. start at f[0]
}

// memEntry is one running VM's promise on the ledger.
type memEntry struct {
	PID       int    `json:"pid"`
	Start     string `json:"start"` // the pid's start time, against pid reuse
	Workspace string `json:"workspace"`
	MemMiB    int    `json:"mem_mib"`
	// Standby marks a standby VM's entry (standby.go): no server counts
	// its MemMiB as promised (it is idle, and given up when its own
	// server needs room; another cannot make it), only what it holds,
	// which the host's available memory already shows. A create that
	// takes it replaces the entry with a counted one.
	Standby bool `json:"standby,omitempty"`
}

// selfStart is this process's start time, read once.
var selfStart = sync.OnceValue(func() string { return procStart(os.Getpid()) })

// withLedger runs fn on the ledger's live entries under its lock and
// writes back what fn returns when it says so.
func (m *Manager) withLedger(fn func([]memEntry) ([]memEntry, bool, error)) error {
	dir := m.opts.StateDir
	lock, err := os.OpenFile(filepath.Join(dir, memLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening the memory ledger's lock: %w", err)
	}
	defer lock.Close() // and with it the flock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking the memory ledger: %w", err)
	}
	// A writer killed between its temporary file and the rename leaves
	// the temporary file; holding the lock, no one else is writing one.
	if stale, _ := filepath.Glob(filepath.Join(dir, "."+memLedgerName+".tmp-*")); len(stale) > 0 {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	var all []memEntry
	f, err := os.Open(filepath.Join(dir, memLedgerName))
	if err == nil {
		b, rerr := io.ReadAll(io.LimitReader(f, maxLedgerBytes))
		f.Close()
		// The file is replaced atomically, so it parses unless someone
		// else wrote it: start again, and say so.
		if rerr != nil || len(b) > 0 && json.Unmarshal(b, &all) != nil {
			m.log.Warn("the memory ledger was unreadable; starting it again", "path", f.Name())
			all = nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading the memory ledger: %w", err)
	}
	live := all[:0]
	for _, e := range all {
		if e.PID > 0 && e.Start != "" && procStart(e.PID) == e.Start {
			live = append(live, e)
		}
	}
	dropped := len(live) != len(all)
	out, write, err := fn(live)
	if err != nil {
		return err
	}
	if !write && !dropped {
		return nil
	}
	if !write {
		out = live
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, memLedgerName, b)
}

// maxLedgerBytes bounds the ledger read: far above what any number of
// running VMs writes (about 100 bytes each).
const maxLedgerBytes = 1 << 20

// reserveMem puts workspace id's VM of mem MiB on the ledger, or refuses
// it with a LimitReached that says what to do. The returned release takes
// it off (idempotent). A reservation for id replaces this server's
// earlier one (a reset boots again on the same promise).
func (m *Manager) reserveMem(id string, mem int) (release func(), err error) {
	release, err = m.budgetMem(id, mem, true, false)
	if contract.IsCode(err, contract.CodeLimit) && m.evictStandby() {
		release, err = m.budgetMem(id, mem, true, false)
	}
	return release, err
}

// reserveStandbyMem is reserveMem for a standby VM: its entry says so.
func (m *Manager) reserveStandbyMem(id string, mem int) (release func(), err error) {
	return m.budgetMem(id, mem, true, true)
}

// budgetMem is reserveMem (standby: reserveStandbyMem); with hold false it
// only checks, and writes nothing but the removal of dead servers' entries.
func (m *Manager) budgetMem(id string, mem int, hold, standby bool) (release func(), err error) {
	pid, start := os.Getpid(), selfStart()
	if start == "" {
		return nil, contract.Internal("reading this process's start time", errors.New("/proc/self/stat is unreadable"))
	}
	src := m.mem
	total, avail, merr := src.meminfo()
	err = m.withLedger(func(live []memEntry) ([]memEntry, bool, error) {
		out := live[:0:0]
		var promised uint64
		untouched := map[int]uint64{}
		for _, e := range live {
			if e.PID == pid && e.Workspace == id {
				continue // replaced below
			}
			out = append(out, e)
			if e.Standby {
				continue
			}
			promised += uint64(e.MemMiB)
			untouched[e.PID] += uint64(e.MemMiB)
		}
		if merr == nil {
			var yet uint64
			for p, n := range untouched {
				if h := src.held(p); h < n {
					yet += n - h
				}
			}
			want := uint64(mem)
			switch {
			case promised+want+hostReserveMiB > total:
				return nil, false, memRefused(mem, fmt.Sprintf("the running workspaces of every pyro server on this host already have %d MiB of its %d MiB RAM (%d MiB is kept for the host)",
					promised, total, hostReserveMiB))
			case yet+want+hostReserveMiB > avail:
				return nil, false, memRefused(mem, fmt.Sprintf("the host has %d MiB available, and running workspaces may still take %d MiB of it (%d MiB is kept for the host)",
					avail, yet, hostReserveMiB))
			}
		}
		if !hold {
			return nil, false, nil
		}
		return append(out, memEntry{PID: pid, Start: start, Workspace: id, MemMiB: mem, Standby: standby}), true, nil
	})
	if err != nil {
		if _, ok := contract.AsError(err); ok {
			return nil, err
		}
		return nil, contract.Internal("budgeting the VM's memory", err)
	}
	if merr != nil {
		m.log.Warn("host memory unknown; booting without a memory budget", "err", merr)
	}
	if !hold {
		return func() {}, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			err := m.withLedger(func(live []memEntry) ([]memEntry, bool, error) {
				out := live[:0:0]
				for _, e := range live {
					if e.PID != pid || e.Workspace != id {
						out = append(out, e)
					}
				}
				return out, len(out) != len(live), nil
			})
			if err != nil {
				m.log.Warn("taking a VM off the memory ledger", "id", id, "err", err)
			}
		})
	}, nil
}

// minDefaultMemMiB is the least memory defaultMem picks, whatever the
// host: a distribution's userland with a test runner needs about this, and
// one such VM plus hostReserveMiB still fits a 1 GiB host.
const minDefaultMemMiB = 512

// defaultMem is DefaultMemMiB, or on a host where three of those would not
// fit the budget, a third of the RAM guests may have, in 128 MiB steps and
// at least minDefaultMemMiB. Unknown host memory gives DefaultMemMiB.
func defaultMem(src memSource) int {
	total, _, err := src.meminfo()
	if err != nil || total <= hostReserveMiB {
		return DefaultMemMiB
	}
	third := int((total-hostReserveMiB)/3) &^ 127
	return max(minDefaultMemMiB, min(DefaultMemMiB, third))
}

func memRefused(mem int, why string) error {
	return contract.LimitReached("a workspace VM of %d MiB would promise more memory than this host has: %s", mem, why).
		WithHint("Stop or delete a workspace you no longer need ({{stop}}, {{delete}}, in this or another chat session), or ask for less memory ({{-mem_mib}}), then retry.")
}

// hostStatfs reads a file system's free space; a variable for tests.
var hostStatfs = statfsFree

// statfsFree returns the bytes free to an unprivileged user on path's
// file system.
func statfsFree(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// checkFree refuses what (a create, snapshot or export) when the state
// directory's file system has less than minFreeBytes free.
func (m *Manager) checkFree(what string) error {
	free, err := m.statfs(m.opts.StateDir)
	if err != nil {
		m.log.Warn("reading the state directory's free space", "err", err)
		return nil // unknown: do not block the user on a statfs failure
	}
	if free < minFreeBytes {
		return contract.LimitReached("%s needs at least %d MiB free on the host's disk holding %s; %d MiB are free",
			what, minFreeBytes>>20, m.opts.StateDir, free>>20).
			WithHint("Delete workspaces or snapshots you no longer need ({{delete}}, {{snapshot.delete}}), or ask the user to free space on the host, then retry.")
	}
	return nil
}

// admitCreate is the check Create makes before any work: free disk
// space, and the memory budget as it stands (the VM's boot reserves it).
func (m *Manager) admitCreate(memMiB int) error {
	if err := m.checkFree("creating a workspace"); err != nil {
		return err
	}
	if memMiB <= 0 {
		memMiB = m.opts.DefaultMemMiB
	}
	_, err := m.budgetMem("", memMiB, false, false)
	if contract.IsCode(err, contract.CodeLimit) && m.evictStandby() {
		_, err = m.budgetMem("", memMiB, false, false)
	}
	return err
}
