package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Across the host boundary: diff, export and sync push.

func hostCommands() []*wsCommand {
	return []*wsCommand{
		{name: "diff", args: "ID [PATH] [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpDiff},
			summary: "what changed under /workspace since the baseline, as a unified diff",
			help: `Prints what changed under /workspace since the baseline (the seed) as a
unified diff, or with --stat the changed files with their line counts.
PATH narrows it to a file or directory. The patch applies with git apply
or patch -p1 in a checkout of the seed.

Examples:
  pyro workspace diff fix-123
  pyro workspace diff fix-123 --stat
  pyro workspace diff fix-123 src/ > fix.patch
`,
			run: wsDiff},
		{name: "export", args: "ID [GUEST_PATH] HOST_PATH [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpExport},
			summary: "copy a guest file or directory (default /workspace) out to the host",
			help: `Copies a guest file or directory (default /workspace) to the host: as a
tree, or as a tar archive when HOST_PATH ends in .tar, .tar.gz or .tgz
(or --format tar). An existing HOST_PATH is refused unless --overwrite,
which moves it aside (NAME.pyro-backup-TIME) rather than deleting it.

Host paths are sent as absolute paths; the server that owns the
workspace only writes beneath the directories it allows.

Examples:
  pyro workspace export fix-123 ./result
  pyro workspace export fix-123 /workspace/dist ./dist.tar.gz
  pyro workspace export fix-123 report.html /tmp/report.html --overwrite
`,
			run: wsExport},
		{name: "sync push", args: "ID HOST_PATH [GUEST_DEST] [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpSyncPush},
			summary: "copy a host file or directory into the guest (default /workspace)",
			help: `Copies a host file or directory into a guest directory (default
/workspace). Special files and symlinks leading outside are skipped, and
listed.

Examples:
  pyro workspace sync push fix-123 ./testdata
  pyro workspace sync push fix-123 ~/fixtures/big.json /workspace/data
`,
			run: wsSyncPush},
	}
}

func wsDiff(c *wsCall) int {
	stat := c.fs.Bool("stat", false, "list the changed files with their line counts instead of the patch")
	nameOnly := c.fs.Bool("name-only", false, "list only the changed files' paths")
	color := c.fs.String("color", "auto", "color the patch: auto (on a terminal), always or never")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 2)
	if !ok {
		return exitUsage
	}
	var path string
	if len(a) == 2 {
		path = a[1]
	}
	if err := contract.ValidatePath("PATH", path, false); err != nil {
		return c.badArg(err)
	}
	var useColor bool
	switch *color {
	case "auto":
		useColor = isTerminal(c.stdout) && os.Getenv("NO_COLOR") == ""
	case "always":
		useColor = true
	case "never":
	default:
		return c.usageError("--color must be auto, always or never")
	}
	d, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.DiffResult, error) {
		return b.Diff(c.ctx, contract.DiffRequest{ID: id, Path: path})
	})
	if code >= 0 {
		return code
	}
	switch {
	case c.asJSON:
		if d.Files == nil {
			d.Files = []contract.FileChange{}
		}
		return c.printJSON(d)
	case *nameOnly:
		for _, f := range d.Files {
			fmt.Fprintln(c.stdout, clean(f.Path))
		}
		return exitOK
	case *stat:
		printChanges(c, d.Files)
		fmt.Fprintf(c.stdout, "%d files changed, +%d -%d\n", d.Stats.Files, d.Stats.Additions, d.Stats.Deletions)
		return exitOK
	}
	if len(d.Files) == 0 && d.Patch == "" {
		fmt.Fprintln(c.stderr, "No changes since the baseline.")
		return exitOK
	}
	writePatch(c.stdout, d.Patch, useColor)
	var other []string
	for _, f := range d.Files {
		if f.Binary || (f.Summary != "" && f.Additions == 0 && f.Deletions == 0) {
			other = append(other, fmt.Sprintf("  %s %s: %s", f.Status, clean(f.Path), orDash(clean(f.Summary))))
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(c.stderr, "Not in the patch (binary, type or mode changes):\n%s\n", strings.Join(other, "\n"))
	}
	return exitOK
}

func writePatch(w io.Writer, patch string, color bool) {
	if !color {
		io.WriteString(w, patch)
		if patch != "" && !strings.HasSuffix(patch, "\n") {
			io.WriteString(w, "\n")
		}
		return
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for line := range strings.Lines(patch) {
		text := strings.TrimRight(line, "\n")
		var code string
		switch {
		case strings.HasPrefix(text, "+++"), strings.HasPrefix(text, "---"), strings.HasPrefix(text, "diff "):
			code = "1"
		case strings.HasPrefix(text, "@@"):
			code = "36"
		case strings.HasPrefix(text, "+"):
			code = "32"
		case strings.HasPrefix(text, "-"):
			code = "31"
		}
		text = cleanText(text) // guest bytes never reach the terminal as escapes
		if code != "" {
			fmt.Fprintf(bw, "\x1b[%sm%s\x1b[0m\n", code, text)
		} else {
			fmt.Fprintf(bw, "%s\n", text)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func printChanges(c *wsCall, files []contract.FileChange) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, f := range files {
		counts := fmt.Sprintf("+%d -%d", f.Additions, f.Deletions)
		if f.Binary || f.Summary != "" {
			counts = clean(f.Summary)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Status, clean(f.Path), counts)
	}
	tw.Flush()
}

func wsExport(c *wsCall) int {
	format := c.fs.String("format", "auto", "auto (tar when HOST_PATH ends in .tar/.tar.gz/.tgz), tree or tar")
	overwrite := c.fs.Bool("overwrite", false, "replace an existing HOST_PATH (it is moved aside, not deleted)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 3)
	if !ok {
		return exitUsage
	}
	guest, host := contract.DefaultWorkdir, a[1]
	if len(a) == 3 {
		guest, host = a[1], a[2]
	}
	f := contract.ExportFormat(*format)
	switch f {
	case contract.ExportAuto, contract.ExportTree, contract.ExportTar:
	default:
		return c.usageError("--format must be auto, tree or tar")
	}
	if err := contract.ValidatePath("GUEST_PATH", guest, true); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidatePath("HOST_PATH", host, true); err != nil {
		return c.badArg(err)
	}
	r, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.ExportResult, error) {
		return b.Export(c.ctx, contract.ExportRequest{ID: id, GuestPath: guest, HostPath: hostPath(host), Format: f, Overwrite: *overwrite})
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.stdout, "exported %s to %s (%s: %d files, %s)\n", clean(guest), clean(r.HostPath), r.Format, r.Files, humanBytes(r.Bytes))
	if r.Backup != "" {
		fmt.Fprintf(c.stdout, "the old %s was moved to %s\n", clean(r.HostPath), clean(r.Backup))
	}
	return exitOK
}

func wsSyncPush(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 3)
	if !ok {
		return exitUsage
	}
	dest := contract.DefaultWorkdir
	if len(a) == 3 {
		dest = a[2]
	}
	if err := contract.ValidatePath("HOST_PATH", a[1], true); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidatePath("GUEST_DEST", dest, true); err != nil {
		return c.badArg(err)
	}
	r, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.SyncResult, error) {
		return b.SyncPush(c.ctx, contract.SyncPushRequest{ID: id, HostPath: hostPath(a[1]), GuestDest: dest})
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.stdout, "pushed %s to %s (%d files, %s)\n", clean(r.HostPath), clean(r.GuestDest), r.Files, humanBytes(r.Bytes))
	for _, s := range r.Skipped {
		fmt.Fprintf(c.stdout, "  skipped %s: %s\n", clean(s.Path), clean(s.Reason))
	}
	return exitOK
}
