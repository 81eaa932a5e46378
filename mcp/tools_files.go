package mcp

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// File tools: file_list, file_read, file_write, patch_apply. They act on the
// guest file system of a running workspace.

type fileListIn struct {
	ID        string `json:"id" jsonschema:"workspace id (or name)"`
	Path      string `json:"path,omitempty" jsonschema:"directory to list (default /workspace)"`
	Recursive bool   `json:"recursive,omitempty" jsonschema:"include subdirectories (default false)"`
	Cursor    string `json:"cursor,omitempty" jsonschema:"next_cursor from the previous page"`
	Limit     int    `json:"limit,omitempty" jsonschema:"max entries (default 200, max 1000)"`
}

type entryView struct {
	Path   string            `json:"path"`
	Type   contract.FileType `json:"type"`
	Size   *int64            `json:"size,omitempty"`
	Target string            `json:"target,omitempty"`
}

type fileListOut struct {
	Path       string      `json:"path"`
	Entries    []entryView `json:"entries"`
	NextCursor string      `json:"next_cursor,omitempty"`
	Hint       string      `json:"hint,omitempty"`
}

type fileReadIn struct {
	ID       string `json:"id" jsonschema:"workspace id (or name)"`
	Path     string `json:"path" jsonschema:"file to read"`
	Offset   int64  `json:"offset,omitempty" jsonschema:"byte offset to start at (default 0); pass next_offset to continue"`
	MaxBytes int    `json:"max_bytes,omitempty" jsonschema:"max bytes to return (default and cap: what fits one result, about 9 KiB)"`
}

type fileReadOut struct {
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Offset     int64  `json:"offset"`
	Bytes      int    `json:"bytes"`
	NextOffset *int64 `json:"next_offset,omitempty"`
	EOF        bool   `json:"eof"`
	Binary     bool   `json:"binary,omitempty"`
	Content    string `json:"content"`
	Hint       string `json:"hint,omitempty"`
}

type fileWriteIn struct {
	ID      string `json:"id" jsonschema:"workspace id (or name)"`
	Path    string `json:"path" jsonschema:"file to create or replace"`
	Content string `json:"content" jsonschema:"full new text content (max 1 MiB)"`
	Mode    string `json:"mode,omitempty" jsonschema:"octal permissions such as 0755 (default: keep, or 0644 for a new file)"`
}

type fileWriteOut struct {
	Path    string `json:"path"`
	Bytes   int64  `json:"bytes"`
	Created bool   `json:"created"`
}

type patchIn struct {
	ID    string `json:"id" jsonschema:"workspace id (or name)"`
	Patch string `json:"patch" jsonschema:"unified diff; paths relative to /workspace (a/ b/ prefixes allowed)"`
}

type patchFileView struct {
	Path      string `json:"path"`
	Op        string `json:"op"`
	OK        bool   `json:"ok"`
	Additions int    `json:"additions,omitempty"`
	Deletions int    `json:"deletions,omitempty"`
	Error     string `json:"error,omitempty"`
}

type patchOut struct {
	Applied    bool            `json:"applied"`
	Files      []patchFileView `json:"files"`
	FilesTotal int             `json:"files_total"`
	Hint       string          `json:"hint,omitempty"`
}

func fileTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "file_list", group: "files", core: true, readOnly: true,
			summary:     "List a guest directory (optionally recursive) with types and sizes, paged by cursor.",
			description: "List a directory in the workspace (default /workspace): path, type, size. recursive=false by default. Paged: pass next_cursor to continue.",
			tune:        func(s *jsonschema.Schema) { bounds(s, "limit", 1, contract.MaxListLimit) },
		}, toolFileList),
		defTool(toolDef{
			name: "file_read", group: "files", core: true, readOnly: true,
			summary:     "Read a guest file as text from an offset; returns next_offset and eof to page through large files.",
			description: "Read a text file in the workspace from offset (default 0), as much as fits one result (about 9 KiB by default). Returns next_offset and eof; call again with offset=next_offset for more.",
			tune: func(s *jsonschema.Schema) {
				bounds(s, "max_bytes", 1, contract.MaxReadBytes)
				bounds(s, "offset", 0, 1<<53)
			},
		}, toolFileRead),
		defTool(toolDef{
			name: "file_write", group: "files", core: true, destructive: true, idempotent: true,
			summary:     "Create or replace a guest text file (max 1 MiB), creating parent directories.",
			description: "Create or replace a text file in the workspace with content (max 1 MiB); parent directories are created. For small edits to existing files prefer patch_apply.",
		}, toolFileWrite),
		defTool(toolDef{
			name: "patch_apply", group: "files", core: true, destructive: true,
			summary:     "Apply a unified diff under /workspace, all or nothing, no fuzz; per-file outcome.",
			description: "Apply a unified diff (add, modify, delete files) under /workspace. All or nothing, no fuzz: if any hunk does not match, nothing is written and each file's error is reported.",
		}, toolPatchApply),
	}
}

func toolFileList(ctx context.Context, h *handler, in fileListIn) (fileListOut, error) {
	path := in.Path
	if path == "" {
		path = contract.DefaultWorkdir
	}
	if err := contract.ValidatePath("path", path, true); err != nil {
		return fileListOut{}, err
	}
	limit, err := contract.LimitOrDefault("limit", in.Limit, contract.DefaultListLimit, contract.MaxListLimit)
	if err != nil {
		return fileListOut{}, err
	}
	offset := 0
	if in.Cursor != "" {
		offset, err = strconv.Atoi(in.Cursor)
		if err != nil || offset < 0 {
			return fileListOut{}, contract.Invalid("cursor %.40q is not a next_cursor from file_list", in.Cursor)
		}
		if offset > contract.MaxListOffset {
			return fileListOut{}, contract.Invalid("cursor %d is past the first %d entries file_list pages through", offset, contract.MaxListOffset).
				WithHint("List a subdirectory (path), or list without recursive.")
		}
	}
	var l contract.FileListing
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		l, err = h.b.ListFiles(ctx, contract.ListFilesRequest{ID: id, Path: path, Recursive: in.Recursive, Offset: offset, Limit: limit})
		return err
	})
	if err != nil {
		return fileListOut{}, err
	}
	entries := make([]entryView, len(l.Entries))
	for i, e := range l.Entries {
		v := entryView{Path: SafeText([]byte(e.Path)).S, Type: e.Type}
		if e.Type == contract.FileRegular {
			size := e.Size
			v.Size = &size
		}
		if e.Type == contract.FileSymlink {
			v.Target = clip(e.LinkTarget, 200)
		}
		entries[i] = v
	}
	if l.Path == "" {
		l.Path = path
	}
	build := func(n int) fileListOut {
		o := fileListOut{Path: l.Path, Entries: firstN(entries, n)}
		if n < len(entries) || l.More {
			o.NextCursor = strconv.Itoa(offset + n)
			o.Hint = "More entries: call again with cursor=next_cursor."
		} else if len(entries) == 0 && offset == 0 {
			o.Hint = "Empty directory."
		}
		return o
	}
	data, n, err := fit(h, len(entries), build)
	if err == nil && n == 0 && len(entries) > 0 {
		return fileListOut{}, contract.Internal("a file entry does not fit the result budget", nil)
	}
	return data, err
}

func toolFileRead(ctx context.Context, h *handler, in fileReadIn) (fileReadOut, error) {
	if err := contract.ValidatePath("path", in.Path, true); err != nil {
		return fileReadOut{}, err
	}
	if in.Offset < 0 {
		return fileReadOut{}, contract.Invalid("offset must be >= 0 (got %d)", in.Offset)
	}
	if in.MaxBytes < 0 || in.MaxBytes > contract.MaxReadBytes {
		return fileReadOut{}, contract.Invalid("max_bytes must be between 1 and %d (got %d)", contract.MaxReadBytes, in.MaxBytes)
	}
	want := in.MaxBytes
	if want == 0 || want > h.budget() {
		want = h.budget() // more can never fit in one result
	}
	var fc contract.FileContent
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		fc, err = h.b.ReadFile(ctx, contract.ReadFileRequest{ID: id, Path: in.Path, Offset: in.Offset, MaxBytes: want})
		return err
	})
	if err != nil {
		return fileReadOut{}, err
	}
	if fc.Path == "" {
		fc.Path = in.Path
	}
	content := fc.Content
	if len(content) > want {
		content = content[:want]
	}
	build := func(n int) fileReadOut {
		c := content
		if n < len(c) {
			c = trimPartialRune(c[:n])
		}
		t := SafeText(c)
		end := fc.Offset + int64(len(c))
		eof := fc.EOF && len(c) == len(fc.Content)
		o := fileReadOut{Path: fc.Path, Size: fc.Size, Offset: fc.Offset, Bytes: len(c), EOF: eof,
			Binary: t.Binary, Content: t.S}
		if !eof {
			o.NextOffset = &end
			o.Hint = fmt.Sprintf("Read %d of %d bytes; call again with offset=%d for more.", end, fc.Size, end)
		}
		if t.Binary {
			o.Hint = strings.TrimSpace(o.Hint + " Not UTF-8 text: invalid bytes show as U+FFFD; inspect it with workspace_exec (file, xxd, base64).")
		}
		return o
	}
	data, n, err := fit(h, len(content), build)
	if err == nil && n == 0 && len(content) > 0 {
		return fileReadOut{}, contract.Internal("file content does not fit the result budget", nil)
	}
	return data, err
}

func toolFileWrite(ctx context.Context, h *handler, in fileWriteIn) (fileWriteOut, error) {
	if err := contract.ValidatePath("path", in.Path, true); err != nil {
		return fileWriteOut{}, err
	}
	if len(in.Content) > contract.MaxWriteBytes {
		return fileWriteOut{}, contract.Invalid("content is %d bytes; the limit is %d: split the file, or use workspace_sync_push for large files", len(in.Content), contract.MaxWriteBytes)
	}
	var mode uint32
	if in.Mode != "" {
		m, err := strconv.ParseUint(in.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return fileWriteOut{}, contract.Invalid("mode %.20q must be octal permissions such as 0644 or 0755", in.Mode)
		}
		mode = uint32(m)
	}
	var r contract.WriteResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		r, err = h.b.WriteFile(ctx, contract.WriteFileRequest{ID: id, Path: in.Path, Content: []byte(in.Content), Mode: mode})
		return err
	})
	if err != nil {
		return fileWriteOut{}, err
	}
	if r.Path == "" {
		r.Path = in.Path
	}
	return fileWriteOut(r), nil
}

func toolPatchApply(ctx context.Context, h *handler, in patchIn) (patchOut, error) {
	if strings.TrimSpace(in.Patch) == "" {
		return patchOut{}, contract.Invalid("patch is empty: pass a unified diff (--- a/FILE, +++ b/FILE, @@ hunks)")
	}
	if len(in.Patch) > contract.MaxPatchBytes {
		return patchOut{}, contract.Invalid("patch is %d bytes; the limit is %d: split it into several calls", len(in.Patch), contract.MaxPatchBytes)
	}
	var r contract.PatchResult
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		r, err = h.b.ApplyPatch(ctx, id, in.Patch)
		return err
	})
	if err != nil {
		return patchOut{}, err
	}
	files := make([]patchFileView, len(r.Files))
	failedN := 0
	for i, f := range r.Files {
		files[i] = patchFileView{Path: f.Path, Op: f.Op, OK: f.OK, Additions: f.Additions, Deletions: f.Deletions, Error: clip(word(f.Error), 300)}
		if !f.OK {
			failedN++
		}
	}
	// Failed files first, so that a cut list keeps what the agent must fix.
	if !r.Applied {
		ordered := make([]patchFileView, 0, len(files))
		for _, f := range files {
			if !f.OK {
				ordered = append(ordered, f)
			}
		}
		for _, f := range files {
			if f.OK {
				ordered = append(ordered, f)
			}
		}
		files = ordered
	}
	build := func(n int) patchOut {
		o := patchOut{Applied: r.Applied, Files: firstN(files, n), FilesTotal: len(files)}
		if !r.Applied {
			o.Hint = fmt.Sprintf("Nothing was written: %d file(s) do not apply. Re-read them with file_read and rebuild the patch against their current content, or use file_write.", failedN)
		} else if n < len(files) {
			o.Hint = "File list cut to fit; workspace_diff shows every change."
		}
		return o
	}
	data, _, err := fit(h, len(files), build)
	if err != nil {
		return patchOut{}, err
	}
	if !r.Applied {
		return data, errFailed
	}
	return data, nil
}
