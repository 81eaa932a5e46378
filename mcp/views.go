package mcp

import (
	"fmt"
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Views are the JSON shapes the model sees. They are separate from the
// Backend types so that the wire contract is decided here, compact, with
// snake_case keys, and stable when the backend's structs change.

type workspaceView struct {
	ID           string            `json:"id"`
	Name         string            `json:"name,omitempty"`
	State        contract.State    `json:"state"`
	Env          string            `json:"env,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	VCPUs        int               `json:"vcpus,omitempty"`
	MemMiB       int               `json:"mem_mib,omitempty"`
	DiskMiB      int               `json:"disk_mib,omitempty"`
	CreatedAt    string            `json:"created_at,omitempty"`
	LastActiveAt string            `json:"last_active_at,omitempty"`
	ExpiresAt    string            `json:"expires_at,omitempty"`
	TTLSeconds   int               `json:"ttl_seconds,omitempty"`
	Seed         *seedView         `json:"seed,omitempty"`
	// Boot: how the guest started (cold boot, warm snapshot, memory
	// snapshot, fork); BootNote why it booted when meant to resume.
	Boot      contract.BootKind `json:"boot,omitempty"`
	BootNote  string            `json:"boot_note,omitempty"`
	Snapshots int               `json:"snapshots"`
	LastSeq   int64             `json:"last_seq"`
	Failure   string            `json:"failure,omitempty"`
	// DiskDeleteAt and DiskDeletedAt: an expired workspace's disk's
	// scheduled and done deletion; Note says what it means for the agent.
	DiskDeleteAt  string `json:"disk_delete_at,omitempty"`
	DiskDeletedAt string `json:"disk_deleted_at,omitempty"`
	Note          string `json:"note,omitempty"`
	// Network: grants, published ports and the last refusals, when any.
	Network *networkBrief `json:"network,omitempty"`
	// Secrets: names and sources, never values.
	Secrets []secretView `json:"secrets,omitempty"`
	// Background: the commands running in the background (exec_status
	// follows each by seq).
	Background []bgBrief `json:"background,omitempty"`
	// Services: the workspace's services, when it has any (tools_service.go).
	Services []serviceBrief `json:"services,omitempty"`
	Shells   []shellView    `json:"shells,omitempty"` // the running workspace's interactive shells
}

// bgBrief is a running background command in a workspace view.
type bgBrief struct {
	Seq        int64  `json:"seq"`
	Command    string `json:"command"`
	StartedAt  string `json:"started_at,omitempty"`
	DurationMs int64  `json:"duration_ms"`
}

type seedView struct {
	Kind         contract.SeedKind `json:"kind"`
	Source       string            `json:"source,omitempty"`
	Files        int               `json:"files"`
	Bytes        int64             `json:"bytes"`
	SkippedTotal int               `json:"skipped_total,omitempty"`
	Skipped      []skippedView     `json:"skipped,omitempty"`
}

type skippedView struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// maxSkippedShown bounds skipped entries listed in a workspace view.
const maxSkippedShown = 10

func viewWorkspace(w contract.Workspace) workspaceView {
	v := workspaceView{
		ID: w.ID, Name: w.Name, State: w.State, Env: w.Env, Labels: w.Labels,
		VCPUs: w.VCPUs, MemMiB: w.MemMiB, DiskMiB: w.DiskMiB,
		CreatedAt: timeString(w.CreatedAt), LastActiveAt: timeString(w.LastActiveAt),
		ExpiresAt: timeString(w.ExpiresAt), TTLSeconds: w.TTLSeconds,
		Boot: w.Boot, BootNote: w.BootNote,
		Snapshots: w.Snapshots, LastSeq: w.LastSeq, Failure: clip(word(w.Error), 500),
		DiskDeleteAt: timeString(w.DiskDeleteAt), DiskDeletedAt: timeString(w.DiskDeletedAt),
		Network: briefNetwork(w.Network), Secrets: viewSecrets(w.Secrets),
		Services: briefServices(w.Services), Shells: viewShells(w.Shells),
	}
	for _, b := range w.Background {
		v.Background = append(v.Background, bgBrief{Seq: b.Seq, Command: clip(b.Command, 100),
			StartedAt: timeString(b.StartedAt), DurationMs: b.Result.Duration.Milliseconds()})
	}
	switch {
	case !w.DiskDeletedAt.IsZero():
		v.Note = "Its idle TTL expired and, after the retention period, its disk was deleted: the files are gone. workspace_delete removes the record; workspace_create makes a new one."
	case !w.DiskDeleteAt.IsZero():
		v.Note = "Its idle TTL expired: the VM is stopped, the disk kept until disk_delete_at. workspace_start boots it again."
	}
	if w.Seed.Kind != "" && w.Seed.Kind != contract.SeedNone {
		v.Seed = &seedView{Kind: w.Seed.Kind, Source: w.Seed.Source, Files: w.Seed.Files, Bytes: w.Seed.Bytes,
			SkippedTotal: len(w.Seed.Skipped), Skipped: viewSkipped(w.Seed.Skipped, maxSkippedShown)}
	}
	return v
}

func viewSkipped(s []contract.SkippedEntry, n int) []skippedView {
	if len(s) < n {
		n = len(s)
	}
	out := make([]skippedView, 0, n)
	for _, e := range s[:n] {
		out = append(out, skippedView{Path: clip(e.Path, 200), Reason: clip(e.Reason, 100)})
	}
	return out
}

// workspaceItem is a workspace in a list.
type workspaceItem struct {
	ID           string            `json:"id"`
	Name         string            `json:"name,omitempty"`
	State        contract.State    `json:"state"`
	Env          string            `json:"env,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	LastActiveAt string            `json:"last_active_at,omitempty"`
	ExpiresAt    string            `json:"expires_at,omitempty"`
}

func itemWorkspace(w contract.Workspace) workspaceItem {
	return workspaceItem{ID: w.ID, Name: w.Name, State: w.State, Env: w.Env, Labels: w.Labels,
		LastActiveAt: timeString(w.LastActiveAt), ExpiresAt: timeString(w.ExpiresAt)}
}

type changeView struct {
	Path      string `json:"path"`
	Status    string `json:"status"`
	Additions int    `json:"additions,omitempty"`
	Deletions int    `json:"deletions,omitempty"`
	Binary    bool   `json:"binary,omitempty"`
	Summary   string `json:"summary,omitempty"`
}

func viewChanges(cs []contract.FileChange) []changeView {
	out := make([]changeView, len(cs))
	for i, c := range cs {
		out[i] = changeView{Path: c.Path, Status: c.Status, Additions: c.Additions, Deletions: c.Deletions,
			Binary: c.Binary, Summary: clip(c.Summary, 200)}
	}
	return out
}

type statsView struct {
	Files     int `json:"files"`
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
}

func viewStats(s contract.DiffStats) statsView {
	return statsView(s)
}

type logView struct {
	Seq        int64            `json:"seq"`
	Time       string           `json:"time,omitempty"`
	Kind       contract.LogKind `json:"kind"`
	Command    string           `json:"command"`
	ExitCode   *int             `json:"exit_code,omitempty"`
	DurationMs int64            `json:"duration_ms"`
	Detail     string           `json:"detail,omitempty"`
}

// maxLoggedCommand bounds a command line shown in logs and summaries.
const maxLoggedCommand = 300

func viewLog(e contract.LogEntry) logView {
	return logView{Seq: e.Seq, Time: timeString(e.Time), Kind: e.Kind, Command: clip(e.Command, maxLoggedCommand),
		ExitCode: e.ExitCode, DurationMs: e.Duration.Milliseconds(), Detail: clip(e.Detail, 200)}
}

type snapshotView struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at,omitempty"`
	Seq       int64  `json:"seq"`
	Bytes     int64  `json:"bytes,omitempty"`
	// Memory: the snapshot holds the running guest's memory too, and a
	// reset to it resumes its processes.
	Memory      bool   `json:"memory"`
	MemoryBytes int64  `json:"memory_bytes,omitempty"`
	Note        string `json:"note,omitempty"`
}

func viewSnapshot(s contract.Snapshot) snapshotView {
	return snapshotView{Name: s.Name, CreatedAt: timeString(s.CreatedAt), Seq: s.Seq, Bytes: s.Bytes,
		Memory: s.Memory, MemoryBytes: s.MemoryBytes, Note: s.Note}
}

type exportView struct {
	HostPath string                `json:"host_path"`
	Format   contract.ExportFormat `json:"format"`
	Files    int                   `json:"files"`
	Bytes    int64                 `json:"bytes"`
	Backup   string                `json:"backup,omitempty"` // the overwritten host path, moved here
}

func viewExport(e contract.ExportResult) exportView {
	return exportView(e)
}

// clip shortens s to at most n bytes (on a UTF-8 boundary), marking the cut.
func clip(s string, n int) string {
	s = SafeText([]byte(s)).S
	if len(s) <= n {
		return s
	}
	b := trimPartialRune([]byte(s[:n-3]))
	return string(b) + "..."
}

// execView is the result of workspace_exec and vm_run.
type execView struct {
	ID               string `json:"id,omitempty"` // workspace; empty for vm_run
	Seq              int64  `json:"seq,omitempty"`
	ExitCode         int    `json:"exit_code"`
	Signal           string `json:"signal,omitempty"`
	TimedOut         bool   `json:"timed_out"`
	DurationMs       int64  `json:"duration_ms"`
	Stdout           string `json:"stdout"`
	Stderr           string `json:"stderr"`
	StdoutTruncated  bool   `json:"stdout_truncated"`
	StderrTruncated  bool   `json:"stderr_truncated"`
	StdoutTotalBytes int64  `json:"stdout_total_bytes"`
	StderrTotalBytes int64  `json:"stderr_total_bytes"`
	StdoutPath       string `json:"stdout_path,omitempty"`
	StderrPath       string `json:"stderr_path,omitempty"`
	StdoutBinary     bool   `json:"stdout_binary,omitempty"`
	StderrBinary     bool   `json:"stderr_binary,omitempty"`
	Limited          string `json:"limited,omitempty"` // what the guest's limits did
	Hint             string `json:"hint,omitempty"`
}

// execResult shapes r into the budget: stdout and stderr share what the
// fixed fields leave, each cut to head+tail when too long.
func (h *handler) execResult(id string, r contract.ExecResult, timeout int) (execView, error) {
	outTotal := max(r.StdoutSize, int64(len(r.Stdout)))
	errTotal := max(r.StderrSize, int64(len(r.Stderr)))
	outCapped := outTotal > int64(len(r.Stdout))
	errCapped := errTotal > int64(len(r.Stderr))
	build := func(allow int) execView {
		a, b := splitAllowance(allow, len(r.Stdout), len(r.Stderr))
		so, se := MakeExcerpt(r.Stdout, a), MakeExcerpt(r.Stderr, b)
		v := execView{
			ID: id, Seq: r.Seq, ExitCode: r.ExitCode, Signal: r.Signal, TimedOut: r.TimedOut,
			DurationMs: r.Duration.Milliseconds(),
			Stdout:     so.Text, Stderr: se.Text,
			StdoutTruncated: so.Truncated || outCapped, StderrTruncated: se.Truncated || errCapped,
			StdoutTotalBytes: outTotal, StderrTotalBytes: errTotal,
			StdoutBinary: so.Binary, StderrBinary: se.Binary, Limited: r.Limited,
		}
		if v.StdoutTruncated {
			v.StdoutPath = r.StdoutPath
		}
		if v.StderrTruncated {
			v.StderrPath = r.StderrPath
		}
		v.Hint = execHint(v, r, timeout, outCapped || errCapped)
		return v
	}
	v, _, err := fit(h, min(len(r.Stdout)+len(r.Stderr), h.budget()), build)
	return v, err
}

func execHint(v execView, r contract.ExecResult, timeout int, capped bool) string {
	var parts []string
	if r.Network != "" {
		parts = append(parts, clip(word(strings.ToUpper(r.Network[:1])+r.Network[1:]), 600)+".")
	}
	if r.TimedOut {
		if v.ID != "" { // workspace_exec
			parts = append(parts, fmt.Sprintf("Killed after the %d s timeout (exit 124). Raise timeout_seconds (max %d), or run it with background:true (timeout up to %d s) and follow it with exec_status.", timeout, contract.MaxTimeoutSeconds, contract.MaxBackgroundTimeoutSeconds))
		} else {
			parts = append(parts, fmt.Sprintf("Killed after the %d s timeout (exit 124). Raise timeout_seconds (max %d), or start it in the background (nohup CMD > /tmp/job.log 2>&1 &) and poll the log.", timeout, contract.MaxTimeoutSeconds))
		}
	}
	if v.StdoutTruncated || v.StderrTruncated {
		var which []string
		var paths []string
		if v.StdoutTruncated {
			which = append(which, "stdout")
			if v.StdoutPath != "" {
				paths = append(paths, v.StdoutPath)
			}
		}
		if v.StderrTruncated {
			which = append(which, "stderr")
			if v.StderrPath != "" {
				paths = append(paths, v.StderrPath)
			}
		}
		s := strings.Join(which, " and ") + " cut to head+tail."
		if len(paths) > 0 {
			s += " Full text on the host: " + strings.Join(paths, ", ") + " (readable with your own file tools)."
			if capped {
				s += " The host copy stops at the capture limit."
			}
		}
		s += " Or rerun with output redirected (CMD > /tmp/out.txt 2>&1) and page it with file_read, or filter it (grep, tail -n 50)."
		parts = append(parts, s)
	}
	if v.StdoutBinary || v.StderrBinary {
		parts = append(parts, "Output is not UTF-8 text; invalid bytes show as U+FFFD. Pipe it through xxd or base64 to see the bytes.")
	}
	return strings.Join(parts, " ")
}
