package workspace

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// A workspace survives what untrusted code does to it: after a fork bomb,
// a process touching more memory than the VM has, and a disk filled to
// the last block, each in its own exec, the next exec answers (within
// its normal timeout, not after the host's stopped-answering guard) and
// says what was limited; a second workspace answers throughout.
func TestWorkspaceVMLimits(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	m := vmManager(t, "PYRO_TEST_ENV_MINIMAL", 128)
	ctx := t.Context()
	create := func(name string) string {
		ws, err := m.Create(ctx, contract.CreateRequest{Env: "minimal", Name: name, TTLSeconds: 3600})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return ws.ID
	}
	a, b := create("victim"), create("bystander")
	exec := func(id, cmd string, timeout int) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, TimeoutSeconds: timeout})
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		t.Logf("%q: exit %d %s in %v; limited: %q; stderr %.200q", cmd, r.ExitCode, r.Signal, r.Duration, r.Limited, r.Stderr)
		return r
	}
	// answers runs a trivial command in id and returns what it says was
	// limited.
	answers := func(id string) string {
		t.Helper()
		r := exec(id, "echo ok", 30)
		if r.ExitCode != 0 || string(r.Stdout) != "ok\n" {
			t.Fatalf("echo ok: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		return r.Limited
	}
	// The harness runs guests 20-25x slower: a small process limit makes
	// the bomb hit it at once (the limit itself is the agent's).
	if r := exec(a, "cat /sys/fs/cgroup/pyro-user/pids.max /sys/fs/cgroup/pyro-user/memory.max && echo 16 > /sys/fs/cgroup/pyro-user/pids.max", 30); r.ExitCode != 0 {
		t.Fatalf("the user commands' cgroup is missing: %q", r.Stderr)
	}
	answers(b)

	t.Run("fork bomb", func(t *testing.T) {
		// The bomb outlives its shell. The bomb's own exec or one of the
		// next says it hit the process limit (once it gets there: it grows
		// slowly next to them in the harness); every one answers.
		notes := []string{exec(a, "f(){ f|f& }; f", 10).Limited}
		for i := 0; i < 30 && !strings.Contains(strings.Join(notes, "\n"), "process limit"); i++ {
			notes = append(notes, answers(a))
		}
		if !strings.Contains(strings.Join(notes, "\n"), "process limit") {
			t.Errorf("no exec after the fork bomb said it hit the process limit: %q", notes)
		}
		answers(b)
		// Then the next exec kills what is left of it, and the one
		// after has nothing to report.
		clean := false
		for i := 0; i < 5 && !clean; i++ {
			clean = answers(a) == ""
		}
		if !clean {
			t.Error("the bomb is still around")
		}
	})

	t.Run("no room left", func(t *testing.T) {
		// Background processes that hit no limit fill the process limit
		// (15 of 16, then the limit drops to 15): not even a kill could
		// start, so the next exec kills them first and runs.
		exec(a, "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do sleep 1000 & done", 30)
		exec(a, "echo 15 > /sys/fs/cgroup/pyro-user/pids.max", 30)
		if n := answers(a); !strings.Contains(n, "killed 15 processes") {
			t.Errorf("with no room left: limited %q, want the 15 sleeps killed", n)
		}
		answers(b)
	})

	t.Run("memory hog", func(t *testing.T) {
		r := exec(a, "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done", 120)
		if r.Signal != "SIGKILL" || !strings.Contains(r.Limited, "out of memory") {
			t.Errorf("the hog ended with exit %d signal %q, limited %q; want SIGKILL by the memory limit", r.ExitCode, r.Signal, r.Limited)
		}
		answers(a)
		answers(b)
	})

	t.Run("disk full", func(t *testing.T) {
		r := exec(a, "cat /dev/zero > /workspace/fill; sync", 300)
		if !strings.Contains(r.Limited, "no disk space") {
			t.Errorf("filling the disk: limited %q, want a full disk", r.Limited)
		}
		if n := answers(a); !strings.Contains(n, "no disk space") {
			t.Errorf("with the disk full: limited %q", n)
		}
		// The agent's own file calls need no disk space.
		if l, err := m.ListFiles(ctx, contract.ListFilesRequest{ID: a, Path: "/workspace", Limit: 10}); err != nil || len(l.Entries) == 0 {
			t.Errorf("listing with the disk full: %+v %v", l, err)
		}
		if fc, err := m.ReadFile(ctx, contract.ReadFileRequest{ID: a, Path: "/workspace/fill", MaxBytes: 16}); err != nil || len(fc.Content) != 16 {
			t.Errorf("reading with the disk full: %v", err)
		}
		answers(b)
		exec(a, "rm /workspace/fill", 30)
		if n := answers(a); n != "" {
			t.Errorf("after freeing the disk: limited %q", n)
		}
	})
}

// The note says what each limit did, and nothing when none did.
func TestLimitedNote(t *testing.T) {
	if n := limitedNote(proto.ExecResult{ExitCode: 1}); n != "" {
		t.Errorf("nothing limited: %q", n)
	}
	n := limitedNote(proto.ExecResult{PidsLimited: 5, OOMKills: 2, EarlierKilled: 40, LeftRunning: 3, DiskFull: []string{"/"}})
	for _, want := range []string{"killed 40 processes earlier", "refused 5 forks", "out of memory", "killed 2 processes", "no disk space left on /", "3 processes left running"} {
		if !strings.Contains(n, want) {
			t.Errorf("note %q lacks %q", n, want)
		}
	}
	// A hostile guest's list is cut to the two file systems the agent
	// names, each to 256 bytes.
	n = limitedNote(proto.ExecResult{DiskFull: []string{strings.Repeat("/a", 1<<20), "/b", "/c"}})
	if len(n) > 700 || !strings.Contains(n, "/b") || strings.Contains(n, "/c") {
		t.Errorf("note for a hostile disk_full list: %d bytes, %.300q", len(n), n)
	}
}
