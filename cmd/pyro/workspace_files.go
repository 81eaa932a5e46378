package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Files: file list, file read, file write and patch apply.

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
	}
}

// Files and checkpoints: file list/read/write, patch apply, diff, export,
// sync push, snapshot create/list/delete and reset.

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
	r, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.WriteResult, error) {
		return b.WriteFile(c.ctx, contract.WriteFileRequest{ID: id, Path: a[1], Content: content, Mode: perm})
	})
	if code >= 0 {
		return code
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
	r, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.PatchResult, error) {
		return b.ApplyPatch(c.ctx, id, string(patch))
	})
	if code >= 0 {
		return code
	}
	code = exitOK
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

// writePatch writes a unified diff, its lines colored as git colors them.
// isTerminal reports whether w is a terminal.
// printChanges prints changed files as a table.
// snapshotDeletedJSON is snapshot delete's --json answer.
// printSnapshots prints snapshots as a table.
