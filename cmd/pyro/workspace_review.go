package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Review: summary and logs; and env list.

func reviewCommands() []*wsCommand {
	return []*wsCommand{
		{name: "summary", args: "ID [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpSummary},
			summary: "what happened since the last reset: commands, changed files, snapshots, exports",
			help: `Summarizes the workspace since its last reset (or its creation): every
command with its exit code, the files changed against the baseline with
their line counts, snapshots, exports and services.

Examples:
  pyro workspace summary fix-123
`,
			run: wsSummary},
		{name: "logs", args: "ID [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpLogs},
			summary: "the workspace journal: every exec, write, snapshot, reset and export",
			help: `Prints the workspace journal: one line per exec, file write, patch,
snapshot, reset, export, sync and lifecycle event, with its sequence
number, exit code and duration.

Examples:
  pyro workspace logs fix-123
  pyro workspace logs fix-123 --after 40 --limit 10
`,
			run: wsLogs},
		{name: "env list", args: "[flags]", group: "Environments", ops: []contract.Op{contract.OpEnvList},
			summary: "the environments workspaces can boot, and whether each is built",
			help: `Lists the environments the backend can boot (--env of create), whether
each is built on this host, and the command that builds one that is not.

Examples:
  pyro workspace env list
`,
			run: wsEnvList},
	}
}

func wsSummary(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	s, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.Summary, error) {
		return b.Summary(c.ctx, id)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(s)
	}
	w := s.Workspace
	since := "created"
	if !s.Since.Equal(w.CreatedAt) {
		since = "reset to the baseline"
		if s.ResetFrom != "" {
			since = "reset to snapshot " + clean(s.ResetFrom)
		}
	}
	fmt.Fprintf(c.stdout, "%s  %s, %s %s\n", workspaceTitle(w), w.State, since, ago(s.Since))
	failed := 0
	for _, e := range s.Commands {
		if e.ExitCode != nil && *e.ExitCode != 0 {
			failed++
		}
	}
	fmt.Fprintf(c.stdout, "\nCommands: %d", len(s.Commands))
	if failed > 0 {
		fmt.Fprintf(c.stdout, " (%d failed)", failed)
	}
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if len(s.Commands) > 0 {
		fmt.Fprintln(tw, "  SEQ\tEXIT\tTIME\tCOMMAND")
	}
	for _, e := range s.Commands {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", e.Seq, exitString(e.ExitCode), fmtDuration(e.Duration), clean(clip(e.Command, 100)))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\nChanges: %d files, +%d -%d\n", s.Stats.Files, s.Stats.Additions, s.Stats.Deletions)
	printChanges(c, s.Changes)
	if len(s.Snapshots) > 0 {
		fmt.Fprintf(c.stdout, "\nSnapshots: %d\n", len(s.Snapshots))
		printSnapshots(c, s.Snapshots)
	}
	if len(s.Exports) > 0 {
		fmt.Fprintf(c.stdout, "\nExports: %d\n", len(s.Exports))
		for _, e := range s.Exports {
			fmt.Fprintf(c.stdout, "  %s (%s, %d files, %s)\n", clean(e.HostPath), e.Format, e.Files, humanBytes(e.Bytes))
		}
	}
	if len(w.Services) > 0 {
		fmt.Fprintf(c.stdout, "\nServices: %d\n", len(w.Services))
		for _, sv := range w.Services {
			fmt.Fprintf(c.stdout, "  %s\n", serviceLine(sv))
		}
	}
	return exitOK
}

func exitString(code *int) string {
	if code == nil {
		return "-"
	}
	return strconv.Itoa(*code)
}

func wsLogs(c *wsCall) int {
	after := c.fs.Int64("after", 0, "only entries after this sequence number")
	limit := c.fs.Int("limit", 0, "at most this many entries (default: all)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	if *after < 0 || *limit < 0 {
		return c.usageError("--after and --limit must not be negative")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	page := contract.LogPage{Entries: []contract.LogEntry{}}
	err := c.onWorkspace(a[0], func(id string) error {
		cur := *after
		for {
			n := contract.MaxLogsLimit
			if *limit > 0 {
				n = min(n, *limit-len(page.Entries))
			}
			p, err := b.Logs(c.ctx, contract.LogsRequest{ID: id, AfterSeq: cur, Limit: n})
			if err != nil {
				return err
			}
			page.Entries = append(page.Entries, p.Entries...)
			page.More = p.More
			if !p.More || len(p.Entries) == 0 || (*limit > 0 && len(page.Entries) >= *limit) {
				return nil
			}
			cur = p.Entries[len(p.Entries)-1].Seq
		}
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(page)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tEXIT\tDURATION\tWHAT")
	for _, e := range page.Entries {
		what := clean(clip(e.Command, 100))
		if e.Detail != "" {
			what += " (" + clean(clip(e.Detail, 80)) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format("15:04:05"), e.Kind, exitString(e.ExitCode), fmtDuration(e.Duration), what)
	}
	tw.Flush()
	if page.More {
		last := page.Entries[len(page.Entries)-1].Seq
		fmt.Fprintf(c.stdout, "More: pyro workspace logs %s --after %d\n", a[0], last)
	}
	return exitOK
}

func wsEnvList(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	if _, ok := c.positional(0, 0); !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	envs, err := b.Envs(c.ctx)
	if err != nil {
		return c.fail(err)
	}
	if envs == nil {
		envs = []contract.Environment{}
	}
	if c.asJSON {
		return c.printJSON(envs)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tBUILT\tDESCRIPTION")
	for _, e := range envs {
		built := "yes"
		if !e.Built {
			built = "no: " + e.BuildCommand
		}
		name := e.Name
		if e.Default {
			name += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, built, clean(e.Description))
	}
	tw.Flush()
	return exitOK
}
