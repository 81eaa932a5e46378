package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Files and checkpoints: file list/read/write, patch apply, diff, export,
// sync push, snapshot create/list/delete and reset.

func fileCommands() []*wsCommand {
	return []*wsCommand{
		{name: "file list", args: "ID [PATH] [flags]", group: "Work inside", ops: []contract.Op{contract.OpFileList},
			summary: "list a guest directory (default /workspace)",
			help: `Lists a guest directory, or one file, like ls -l: type, mode, size,
modification time and path. Relative paths are under /workspace.

Examples:
  pyro workspace file list fix-123
  pyro workspace file list fix-123 src --recursive
`,
			run: wsFileList},
		{name: "file read", args: "ID PATH [flags]", group: "Work inside", ops: []contract.Op{contract.OpFileRead},
			summary: "print a guest file, all of it",
			help: `Writes a guest file's bytes to stdout, all of them (or --max-bytes from
--offset), as cat does. Relative paths are under /workspace.

Examples:
  pyro workspace file read fix-123 src/main.py
  pyro workspace file read fix-123 /var/log/app.log --offset 1000 --max-bytes 4096
  pyro workspace file read fix-123 build/out.bin > out.bin
`,
			run: wsFileRead},
		{name: "file write", args: "ID PATH (--text-file FILE | --text TEXT) [flags]", group: "Work inside", ops: []contract.Op{contract.OpFileWrite},
			summary: "create or replace a guest file from a host file, stdin or text",
			help: `Creates or replaces a guest file (parent directories are made) with the
bytes of a host file (--text-file FILE, or - for stdin) or of --text, up
to 1 MiB; for more, or for directories, use sync push.

Examples:
  pyro workspace file write fix-123 src/config.py --text-file ./config.py
  git show HEAD:app.py | pyro workspace file write fix-123 app.py --text-file -
  pyro workspace file write fix-123 run.sh --text 'make test' --mode 0755
`,
			run: wsFileWrite},
		{name: "patch apply", args: "ID --patch-file FILE [flags]", group: "Work inside", ops: []contract.Op{contract.OpPatchApply},
			summary: "apply a unified diff under /workspace, all or nothing",
			help: `Applies a unified diff (git diff or diff -u output: adds, modifies,
deletes, renames) under /workspace, all or nothing: if any file's hunks
do not apply, nothing is written, each failing file says why, and the
exit status is 1.

Examples:
  git diff | pyro workspace patch apply fix-123 --patch-file -
  pyro workspace patch apply fix-123 --patch-file fix.patch
`,
			run: wsPatchApply},
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
		{name: "snapshot create", args: "ID NAME [flags]", group: "Checkpoints", ops: []contract.Op{contract.OpSnapshotCreate},
			summary: "checkpoint the whole workspace under a name",
			help: `Checkpoints the whole workspace (disk) under NAME, unique within the
workspace; reset ID NAME returns to it.

Examples:
  pyro workspace snapshot create fix-123 before-upgrade
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
	}
}

func wsFileList(c *wsCall) int {
	recursive := c.fs.BoolP("recursive", "r", false, "descend into subdirectories")
	limit := c.fs.Int("limit", 0, "at most this many entries (default: all, up to 100000)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 2)
	if !ok {
		return exitUsage
	}
	path := contract.DefaultWorkdir
	if len(a) == 2 {
		path = a[1]
	}
	if err := contract.ValidatePath("PATH", path, true); err != nil {
		return c.badArg(err)
	}
	if *limit < 0 {
		return c.usageError("--limit must not be negative")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	all := contract.FileListing{Entries: []contract.FileEntry{}}
	err := c.onWorkspace(a[0], func(id string) error {
		for {
			n := contract.MaxListLimit
			if *limit > 0 {
				n = min(n, *limit-len(all.Entries))
			}
			l, err := b.ListFiles(c.ctx, contract.ListFilesRequest{ID: id, Path: path, Recursive: *recursive, Offset: len(all.Entries), Limit: n})
			if err != nil {
				return err
			}
			all.Path = l.Path
			all.Entries = append(all.Entries, l.Entries...)
			all.More = l.More
			if !l.More || len(l.Entries) == 0 || (*limit > 0 && len(all.Entries) >= *limit) || len(all.Entries) >= contract.MaxListOffset {
				return nil
			}
		}
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(all)
	}
	sizeWidth := 1
	for _, e := range all.Entries {
		sizeWidth = max(sizeWidth, len(strconv.FormatInt(e.Size, 10)))
	}
	for _, e := range all.Entries {
		size := ""
		if e.Type == contract.FileRegular {
			size = strconv.FormatInt(e.Size, 10)
		}
		name := clean(e.Path)
		switch e.Type {
		case contract.FileSymlink:
			name += " -> " + clean(e.LinkTarget)
		case contract.FileDir:
			name += "/"
		}
		mtime := "-"
		if !e.ModTime.IsZero() {
			mtime = e.ModTime.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(c.stdout, "%s %*s %16s %s\n", modeString(e.Type, e.Mode), sizeWidth, size, mtime, name)
	}
	if all.More {
		fmt.Fprintf(c.stderr, "(listing stopped after %d entries; narrow PATH, or drop --recursive)\n", len(all.Entries))
	}
	return exitOK
}

// modeString is an ls -l style mode: drwxr-xr-x.
func modeString(t contract.FileType, mode uint32) string {
	kind := map[contract.FileType]byte{contract.FileDir: 'd', contract.FileSymlink: 'l', contract.FileOther: '?'}[t]
	if kind == 0 {
		kind = '-'
	}
	b := []byte{kind}
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if mode&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}

// fileContentJSON is a FileContent in JSON with its content as text.
type fileContentJSON struct {
	contract.FileContent
	Content jsonText
}

func wsFileRead(c *wsCall) int {
	offset := c.fs.Int64("offset", 0, "first byte to read")
	maxBytes := c.fs.Int64("max-bytes", 0, "read at most this many bytes (default: to the end)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := contract.ValidatePath("PATH", a[1], true); err != nil {
		return c.badArg(err)
	}
	if *offset < 0 || *maxBytes < 0 {
		return c.usageError("--offset and --max-bytes must not be negative")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var out io.Writer = c.stdout
	var buf bytes.Buffer
	if c.asJSON {
		out = &buf
	}
	res := contract.FileContent{Offset: *offset}
	err := c.onWorkspace(a[0], func(id string) error {
		off, read := *offset, int64(0)
		for {
			want := int64(contract.MaxReadBytes)
			if *maxBytes > 0 {
				want = min(want, *maxBytes-read)
			}
			fc, err := b.ReadFile(c.ctx, contract.ReadFileRequest{ID: id, Path: a[1], Offset: off, MaxBytes: int(want)})
			if err != nil {
				return err
			}
			content := fc.Content
			if int64(len(content)) > want {
				content = content[:want]
			}
			if _, err := out.Write(content); err != nil {
				return err
			}
			res.Path, res.Size = fc.Path, fc.Size
			off, read = fc.Offset+int64(len(content)), read+int64(len(content))
			res.EOF = fc.EOF && len(content) == len(fc.Content)
			if res.EOF || len(content) == 0 || (*maxBytes > 0 && read >= *maxBytes) {
				return nil
			}
		}
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		res.Content = buf.Bytes()
		return c.printJSON(fileContentJSON{FileContent: res, Content: res.Content})
	}
	return exitOK
}

func wsFileWrite(c *wsCall) int {
	textFile := c.fs.String("text-file", "", "host `FILE` with the content (- for stdin)")
	text := c.fs.String("text", "", "the content itself")
	mode := c.fs.String("mode", "", "permission bits in octal, e.g. 0755 (default: an existing file's, or 0644)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := contract.ValidatePath("PATH", a[1], true); err != nil {
		return c.badArg(err)
	}
	var content []byte
	switch {
	case c.fs.Changed("text-file") && c.fs.Changed("text"):
		return c.usageError("give --text-file or --text, not both")
	case c.fs.Changed("text-file"):
		var err error
		if content, err = readInput("--text-file", *textFile, contract.MaxWriteBytes); err != nil {
			fmt.Fprintf(c.stderr, "pyro workspace file write: %v\n", err)
			if strings.Contains(err.Error(), "the limit") {
				fmt.Fprintf(c.stderr, "For bigger files use pyro workspace sync push %s HOST_PATH GUEST_DIR.\n", a[0])
			}
			return exitUsage
		}
	case c.fs.Changed("text"):
		content = []byte(*text)
		if len(content) > contract.MaxWriteBytes {
			return c.usageError("--text is %d bytes; the limit is %d", len(content), contract.MaxWriteBytes)
		}
	default:
		return c.usageError("give the content: --text-file FILE (- for stdin) or --text TEXT")
	}
	var perm uint32
	if *mode != "" {
		m, err := strconv.ParseUint(*mode, 8, 32)
		if err != nil || m > 0o7777 {
			return c.usageError("--mode %q must be octal permissions such as 0644 or 0755", *mode)
		}
		perm = uint32(m)
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var r contract.WriteResult
	err := c.onWorkspace(a[0], func(id string) (err error) {
		r, err = b.WriteFile(c.ctx, contract.WriteFileRequest{ID: id, Path: a[1], Content: content, Mode: perm})
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(r)
	}
	what := "replaced"
	if r.Created {
		what = "created"
	}
	fmt.Fprintf(c.stdout, "%s %s (%d bytes)\n", what, clean(orDash(r.Path)), r.Bytes)
	return exitOK
}

func wsPatchApply(c *wsCall) int {
	patchFile := c.fs.String("patch-file", "", "host `FILE` holding the unified diff (- for stdin)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	if !c.fs.Changed("patch-file") {
		return c.usageError("give the patch: --patch-file FILE (- for stdin)")
	}
	patch, err := readInput("--patch-file", *patchFile, contract.MaxPatchBytes)
	if err != nil {
		fmt.Fprintf(c.stderr, "pyro workspace patch apply: %v\n", err)
		return exitUsage
	}
	if len(bytes.TrimSpace(patch)) == 0 {
		return c.usageError("the patch is empty")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var r contract.PatchResult
	err = c.onWorkspace(a[0], func(id string) (err error) {
		r, err = b.ApplyPatch(c.ctx, id, string(patch))
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	code := exitOK
	if !r.Applied {
		code = exitFailure
	}
	if c.asJSON {
		c.printJSON(r)
		return code
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, f := range r.Files {
		status := "ok"
		if !f.OK {
			status = "FAILED"
		}
		line := fmt.Sprintf("  %s\t%s\t%s\t+%d -%d", status, f.Op, clean(f.Path), f.Additions, f.Deletions)
		if f.Error != "" {
			line += "\t" + clean(cliWord(f.Error))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	if r.Applied {
		fmt.Fprintf(c.stdout, "applied: %d files\n", len(r.Files))
	} else {
		fmt.Fprintf(c.stdout, "not applied: nothing was written (fix the failing files' hunks, or read the files with pyro workspace file read)\n")
	}
	return code
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
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var d contract.DiffResult
	err := c.onWorkspace(a[0], func(id string) (err error) {
		d, err = b.Diff(c.ctx, contract.DiffRequest{ID: id, Path: path})
		return err
	})
	if err != nil {
		return c.fail(err)
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

// writePatch writes a unified diff, its lines colored as git colors them.
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

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// printChanges prints changed files as a table.
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
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var r contract.ExportResult
	err := c.onWorkspace(a[0], func(id string) (err error) {
		r, err = b.Export(c.ctx, contract.ExportRequest{ID: id, GuestPath: guest, HostPath: hostPath(host), Format: f, Overwrite: *overwrite})
		return err
	})
	if err != nil {
		return c.fail(err)
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
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var r contract.SyncResult
	err := c.onWorkspace(a[0], func(id string) (err error) {
		r, err = b.SyncPush(c.ctx, contract.SyncPushRequest{ID: id, HostPath: hostPath(a[1]), GuestDest: dest})
		return err
	})
	if err != nil {
		return c.fail(err)
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

// snapshotDeletedJSON is snapshot delete's --json answer.
type snapshotDeletedJSON struct {
	Workspace string
	Deleted   string
}

func wsSnapshotCreate(c *wsCall) int {
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
	var s contract.Snapshot
	err := c.onWorkspace(a[0], func(id string) (err error) {
		s, err = b.SnapshotCreate(c.ctx, id, a[1])
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(s)
	}
	fmt.Fprintf(c.stdout, "snapshot %s of %s taken (at journal seq %d)\n", clean(s.Name), a[0], s.Seq)
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
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var list []contract.Snapshot
	err := c.onWorkspace(a[0], func(id string) (err error) {
		list, err = b.SnapshotList(c.ctx, id)
		return err
	})
	if err != nil {
		return c.fail(err)
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

// printSnapshots prints snapshots as a table.
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
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var r contract.ResetResult
	err := c.onWorkspace(a[0], func(id string) (err error) {
		r, err = b.Reset(c.ctx, id, snap)
		return err
	})
	if err != nil {
		return c.fail(err)
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
