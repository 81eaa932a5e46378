package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Checkpoints: snapshot create, list and delete, and reset.

func snapshotCommands() []*wsCommand {
	return []*wsCommand{
		{name: "snapshot create", args: "ID NAME [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpSnapshotCreate},
			summary: "checkpoint the whole workspace under a name",
			help: `Checkpoints the whole workspace under NAME, unique within the
workspace; reset ID NAME returns to it. A running workspace's snapshot
keeps its memory too, so the reset resumes its processes (a server, a
warmed-up test runner) in milliseconds; --disk-only leaves memory out and
the reset boots again from the disk.

Examples:
  pyro workspace snapshot create fix-123 before-upgrade
  pyro workspace snapshot create fix-123 files-only --disk-only
`,
			run: wsSnapshotCreate},
		{name: "snapshot list", args: "ID [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpSnapshotList},
			summary: "list a workspace's snapshots, oldest first",
			help: `Lists a workspace's snapshots, oldest first.

Examples:
  pyro workspace snapshot list fix-123
`,
			run: wsSnapshotList},
		{name: "snapshot delete", args: "ID NAME [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpSnapshotDelete},
			summary: "delete a snapshot",
			help: `Deletes one snapshot of a workspace.

Examples:
  pyro workspace snapshot delete fix-123 before-upgrade
`,
			run: wsSnapshotDelete},
		{name: "reset", args: "ID [SNAPSHOT] [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpReset},
			summary: "rebuild a workspace from its baseline or a snapshot",
			help: `Rebuilds the workspace from its baseline (the seed), or from SNAPSHOT:
files go back, processes, services, shells and background commands end.
The id, name, labels, network grants, secrets and every snapshot stay.

Examples:
  pyro workspace reset fix-123
  pyro workspace reset fix-123 before-upgrade
`,
			run: wsReset},
		{name: "fork", args: "ID [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpFork},
			summary: "clone a running workspace into new ones, processes and all",
			help: `Forks a running workspace into --count new workspaces (default 1, or one
per --name), running at once: each gets its own copy-on-write disk and
memory, its processes as they were in the source, and a fork's changes
never reach its parent or its siblings. Try several fixes side by side,
or run one test suite against several candidates. --snapshot forks one
of the workspace's snapshots instead of its current state. The forks
keep the source's labels, with --label added over them. Prints each new
workspace's id and name, and whether they resumed from memory or booted
from the disk (and why).

Examples:
  pyro workspace fork fix-123 --name try-a --name try-b
  pyro workspace fork fix-123 --snapshot deps-installed --label batch=2
  for id in $(pyro workspace fork fix-123 --count 3 --id-only); do
    pyro workspace exec "$id" -- make test &
  done; wait
`,
			run: wsFork},
	}
}

type snapshotDeletedJSON struct {
	Workspace string
	Deleted   string
}

func wsSnapshotCreate(c *wsCall) int {
	diskOnly := c.fs.Bool("disk-only", false, "leave the guest's memory out: a reset to it boots from the disk")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := contract.ValidateName("NAME", a[1]); err != nil {
		return c.badArg(err)
	}
	s, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.Snapshot, error) {
		return b.SnapshotCreate(c.ctx, contract.SnapshotRequest{ID: id, Name: a[1], DiskOnly: *diskOnly})
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(s)
	}
	what := "disk only"
	if s.Memory {
		what = fmt.Sprintf("disk and memory, %s", humanBytes(s.MemoryBytes))
	}
	fmt.Fprintf(c.stdout, "snapshot %s of %s taken (%s; at journal seq %d)\n", clean(s.Name), a[0], what, s.Seq)
	if s.Note != "" {
		fmt.Fprintf(c.stdout, "note: %s\n", clean(s.Note))
	}
	return exitOK
}

func wsSnapshotList(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	list, code := wsOn(c, a[0], func(b contract.Backend, id string) ([]contract.Snapshot, error) {
		return b.SnapshotList(c.ctx, id)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		if list == nil {
			list = []contract.Snapshot{}
		}
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(c.stdout, "No snapshots. pyro workspace snapshot create %s NAME takes one.\n", a[0])
		return exitOK
	}
	printSnapshots(c, list)
	return exitOK
}

func printSnapshots(c *wsCall, list []contract.Snapshot) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTAKEN\tSEQ\tSIZE")
	for _, s := range list {
		size := "-"
		if s.Bytes > 0 {
			size = humanBytes(s.Bytes)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", clean(s.Name), ago(s.CreatedAt), s.Seq, size)
	}
	tw.Flush()
}

func wsSnapshotDelete(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := contract.ValidateName("NAME", a[1]); err != nil {
		return c.badArg(err)
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var ws string
	err := c.onWorkspace(a[0], func(id string) error {
		ws = id
		return b.SnapshotDelete(c.ctx, id, a[1])
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(snapshotDeletedJSON{Workspace: ws, Deleted: a[1]})
	}
	fmt.Fprintf(c.stdout, "deleted snapshot %s of %s\n", a[1], ws)
	return exitOK
}

func wsReset(c *wsCall) int {
	snapshot := c.fs.String("snapshot", "", "the snapshot to return to (or give it as the second argument; default: the baseline)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 2)
	if !ok {
		return exitUsage
	}
	snap := *snapshot
	if len(a) == 2 {
		if snap != "" && snap != a[1] {
			return c.usageError("two different snapshots given")
		}
		snap = a[1]
	}
	if snap != "" {
		if err := contract.ValidateName("SNAPSHOT", snap); err != nil {
			return c.badArg(err)
		}
	}
	r, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.ResetResult, error) {
		return b.Reset(c.ctx, id, snap)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(r)
	}
	to := "the baseline"
	if r.Snapshot != "" {
		to = "snapshot " + clean(r.Snapshot)
	}
	fmt.Fprintf(c.stdout, "reset %s to %s in %s: %s\n", workspaceTitle(r.Workspace), to, fmtDuration(r.Duration.Round(time.Millisecond)), r.Workspace.State)
	return exitOK
}

func wsFork(c *wsCall) int {
	count := c.fs.Int("count", 0, "how many forks, 1-8 (default 1, or one per --name)")
	names := c.fs.StringArray("name", nil, "a fork's `NAME` (repeatable: one per fork, in order)")
	labels := c.fs.StringArray("label", nil, "label `KEY=VALUE` for the forks, over the source's (repeatable)")
	snapshot := c.fs.String("snapshot", "", "fork the workspace's snapshot `NAME` instead of its current state")
	idOnly := c.fs.Bool("id-only", false, "print only the new workspaces' ids, one a line")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	if *idOnly && c.asJSON {
		return c.usageError("--id-only and --json exclude each other")
	}
	req := contract.ForkRequest{Count: *count, Names: *names, Snapshot: *snapshot}
	if req.Count == 0 {
		req.Count = len(req.Names) // one per name; none: ValidateFork's 1
	}
	var err error
	if req.Labels, err = keyValues("label", *labels); err != nil {
		return c.usageError("%v", err)
	}
	for _, n := range req.Names {
		if err := contract.ValidateName("--name", n); err != nil {
			return c.badArg(err)
		}
	}
	if req.Snapshot != "" {
		if err := contract.ValidateName("--snapshot", req.Snapshot); err != nil {
			return c.badArg(err)
		}
	}
	if err := contract.ValidateFork(&req); err != nil {
		return c.badArg(err)
	}
	r, code := wsOn(c, a[0], func(f contract.Forker, id string) (contract.ForkResult, error) {
		req.ID = id
		return f.Fork(c.ctx, req)
	})
	if code >= 0 {
		return code
	}
	switch {
	case *idOnly:
		for _, w := range r.Forks {
			fmt.Fprintln(c.stdout, w.ID)
		}
		return exitOK
	case c.asJSON:
		return c.printJSON(r)
	}
	from := r.Source
	if a[0] != r.Source {
		from += " (" + clean(a[0]) + ")"
	}
	if r.Snapshot != "" {
		from += " at snapshot " + clean(r.Snapshot)
	}
	how := "booted from the disk"
	if r.Memory {
		how = "resumed from memory, processes as they were"
	}
	into := fmt.Sprintf("%d workspaces", len(r.Forks))
	if len(r.Forks) == 1 {
		into = "1 workspace"
	}
	fmt.Fprintf(c.stdout, "forked %s into %s in %s, %s:\n", from, into, fmtDuration(r.Duration.Round(time.Millisecond)), how)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, w := range r.Forks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", w.ID, orDash(clean(w.Name)), w.State)
	}
	tw.Flush()
	if r.Note != "" {
		fmt.Fprintf(c.stdout, "note: %s\n", clean(cliWord(r.Note)))
	}
	if len(r.Forks) > 0 {
		fmt.Fprintf(c.stdout, "\nEach is a workspace of its own: pyro workspace exec %s -- COMMAND; delete each when done.\n", refOf(r.Forks[0]))
	}
	return exitOK
}
