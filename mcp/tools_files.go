package mcp

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

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
	Encoding string `json:"encoding,omitempty" jsonschema:"auto (default: text; binary data base64 if it fits one result, else a summary), text or base64"`
}

// file_read's encodings: how content shows the bytes.
const (
	encodingAuto   = "auto"   // an argument only: text, or base64 or none for binary data
	encodingAsText = "text"   // an argument only: always text
	encodingText   = "utf-8"  // content is the text (bytes that are not UTF-8 as U+FFFD)
	encodingBase64 = "base64" // content is the bytes, base64-encoded
	encodingNone   = "none"   // binary data not shown: detected_type and head_hex say what it is
)

type fileReadOut struct {
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Offset     int64  `json:"offset"`
	Bytes      int    `json:"bytes"` // of the file, shown in content
	NextOffset *int64 `json:"next_offset,omitempty"`
	EOF        bool   `json:"eof"`
	Binary     bool   `json:"binary,omitempty"` // the bytes are data, not text
	Encoding   string `json:"encoding"`         // utf-8, base64, or none (binary data left out)
	Content    string `json:"content"`
	// DetectedType is what a binary file's first bytes say it is (from
	// offset 0); HeadHex, with encoding none, those bytes in hex.
	DetectedType string `json:"detected_type,omitempty"`
	HeadHex      string `json:"head_hex,omitempty"`
	Hint         string `json:"hint,omitempty"`
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
			summary:     "Read a guest file from an offset, paged by next_offset: text as it is; binary data base64-encoded when it fits one result, else a summary (type, size, first bytes).",
			description: "Read a file in the workspace from offset (default 0), as much as fits one result (about 9 KiB by default). Returns next_offset and eof; call again with offset=next_offset for more. Binary data comes base64-encoded if it fits, else as a summary; encoding says which.",
			tune: func(s *jsonschema.Schema) {
				bounds(s, "max_bytes", 1, contract.MaxReadBytes)
				bounds(s, "offset", 0, 1<<53)
				enum(s, "encoding", encodingAuto, encodingAsText, encodingBase64)
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
		if err := contract.ValidateListOffset(offset); err != nil {
			return fileListOut{}, err
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
	if err := contract.ValidateReadRange(in.Offset, in.MaxBytes); err != nil {
		return fileReadOut{}, err
	}
	switch in.Encoding {
	case "", encodingAuto, encodingAsText, encodingBase64:
	default:
		return fileReadOut{}, contract.Invalid("encoding %.20q must be auto, text or base64", in.Encoding)
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
	binary := looksBinary(content)
	base := fileReadOut{Path: fc.Path, Size: fc.Size, Offset: fc.Offset, Binary: binary}
	if fc.Offset == 0 && binary {
		base.DetectedType = detectedType(content)
	}
	// page is the result showing c, the first bytes of content, as text
	// or base64.
	page := func(c []byte, b64 bool) fileReadOut {
		o := base
		end := fc.Offset + int64(len(c))
		o.Bytes, o.EOF = len(c), fc.EOF && len(c) == len(fc.Content)
		if b64 {
			o.Encoding, o.Content = encodingBase64, base64.StdEncoding.EncodeToString(c)
		} else {
			o.Encoding, o.Content = encodingText, SafeText(c).S
		}
		var hints []string
		if !o.EOF {
			o.NextOffset = &end
			hints = append(hints, fmt.Sprintf("Read up to byte %d of %d; call again with offset=%d for more.", end, fc.Size, end))
		}
		switch {
		case b64 && binary:
			hints = append(hints, "Binary data: content is its bytes, base64-encoded.")
		case b64:
			hints = append(hints, "content is the bytes, base64-encoded.")
		case binary:
			hints = append(hints, "Binary data shown as text: bytes that are not UTF-8 show as U+FFFD. encoding=base64 returns them exactly.")
		case !utf8.Valid(c):
			hints = append(hints, "Some bytes are not UTF-8 and show as U+FFFD; encoding=base64 returns them exactly.")
		}
		o.Hint = strings.Join(hints, " ")
		return o
	}

	if in.Encoding == encodingAsText || (!binary && in.Encoding != encodingBase64) {
		o, n, err := fit(h, len(content), func(n int) fileReadOut {
			c := content[:n]
			if t := trimPartialRune(c); len(t) > 0 && !(fc.EOF && n == len(fc.Content)) {
				c = t // the next page starts on the character cut here
			}
			return page(c, false)
		})
		if err == nil && n == 0 && len(content) > 0 {
			return fileReadOut{}, contract.Internal("file content does not fit the result budget", nil)
		}
		return o, err
	}

	o, n, err := fit(h, len(content), func(n int) fileReadOut { return page(content[:n], true) })
	if err != nil {
		return fileReadOut{}, err
	}
	if n == 0 && len(content) > 0 {
		return fileReadOut{}, contract.Internal("file content does not fit the result budget", nil)
	}
	// Binary data found by a plain first read (no offset, no max_bytes)
	// whose rest does not fit one result: paging it in base64 would take
	// many calls for bytes a model rarely wants, so say what it is instead.
	if in.Encoding != encodingBase64 && !o.EOF && in.Offset == 0 && in.MaxBytes == 0 {
		return binarySummary(base, content, n), nil
	}
	return o, nil
}

// binarySummary is file_read's answer for a binary file too big for one
// result: its size, what its first bytes say it is, those bytes in hex,
// and how to get at the rest. perCall is the bytes a base64 page holds.
func binarySummary(o fileReadOut, head []byte, perCall int) fileReadOut {
	o.Encoding, o.Content, o.HeadHex = encodingNone, "", hexHead(head, 32)
	o.Hint = fmt.Sprintf("Binary file (%s, %s): content not shown. Copy it to the host with workspace_export; "+
		"inspect it with workspace_exec (file PATH, xxd PATH | head -n 20); or read its raw bytes with encoding=base64 (about %s per call, paged by offset).",
		o.DetectedType, humanBytes(o.Size), humanBytes(int64(perCall)))
	return o
}

func toolFileWrite(ctx context.Context, h *handler, in fileWriteIn) (fileWriteOut, error) {
	if err := contract.ValidatePath("path", in.Path, true); err != nil {
		return fileWriteOut{}, err
	}
	if err := contract.ValidateWriteContent(len(in.Content)); err != nil {
		return fileWriteOut{}, err
	}
	mode, err := contract.ParseMode(in.Mode)
	if err != nil {
		return fileWriteOut{}, err
	}
	var r contract.WriteResult
	err = h.onWorkspace(ctx, in.ID, func(id string) (err error) {
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
	if err := contract.ValidatePatch(in.Patch); err != nil {
		return patchOut{}, err
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
