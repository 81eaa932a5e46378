package contract

import (
	"context"
	"strconv"
	"time"
)

// MaxForks bounds ForkRequest.Count.
const MaxForks = 8

// ForkRequest asks for new workspaces cloned from a running one (or from one of its snapshots).
type ForkRequest struct {
	ID       string            // source workspace
	Snapshot string            // fork from this snapshot of the source instead of its current state ("" : now)
	Count    int               // how many forks, 1..MaxForks; 0 means 1
	Names    []string          // optional: one per fork, each a valid unique workspace name
	Labels   map[string]string // added to (and overriding) the source's labels
}

// ForkResult reports a fork.
type ForkResult struct {
	Source   string        // the source workspace's ID
	Snapshot string        // the snapshot forked from; "" for the running state
	Forks    []Workspace   // the new workspaces, running
	Memory   bool          // the forks resumed from memory (processes as they were); false: they booted from the disk
	Note     string        // why they booted instead, when they did
	Duration time.Duration // the whole fork
}

// Forker is the optional backend interface for forks: each fork is a new
// workspace with its own copy-on-write disk and memory, so that what one
// changes never reaches its parent or its siblings. The faces offer forks
// only when their Backend has it.
type Forker interface {
	Fork(ctx context.Context, req ForkRequest) (ForkResult, error)
}

// ValidateFork checks a fork and fills in Count (1 for 0). The source
// workspace reference (ID) is checked where it is resolved (OnWorkspace).
func ValidateFork(req *ForkRequest) error {
	if req.Count == 0 {
		req.Count = 1
	}
	if req.Count < 1 || req.Count > MaxForks {
		return Invalid("count must be between 1 and %d (got %d)", MaxForks, req.Count).
			WithHint("Fork again from the same workspace (or from one of the forks) for more.")
	}
	if len(req.Names) != 0 && len(req.Names) != req.Count {
		return Invalid("%d names given for %d forks: give one name per fork, or none", len(req.Names), req.Count)
	}
	seen := make(map[string]int, len(req.Names))
	for i, n := range req.Names {
		field := "names[" + strconv.Itoa(i) + "]"
		if err := ValidateName(field, n); err != nil {
			return err
		}
		if j, dup := seen[n]; dup {
			return Invalid("%s %q repeats names[%d]: each fork needs a name of its own", field, n, j)
		}
		seen[n] = i
	}
	if err := ValidateLabels(req.Labels); err != nil {
		return err
	}
	if req.Snapshot != "" {
		if err := ValidateName("snapshot", req.Snapshot); err != nil {
			return err
		}
	}
	return nil
}
