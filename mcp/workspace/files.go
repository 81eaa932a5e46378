package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/mcp/patch"
)

// Paths: every guest path a tool names goes through hostio.GuestPath
// (lexically inside /workspace) and then to the agent through the VM's
// Files client, whose requests carry Beneath "/workspace": the agent
// resolves the path with openat2(RESOLVE_BENEATH), so ".." and symlinks
// (absolute ones included) cannot lead out of /workspace, and a path that
// tries fails with EXDEV, reported as an invalid argument.

// guestPath confines a path a tool named.
func guestPath(p string) (string, error) {
	g, err := hostio.GuestPath(p)
	if err != nil {
		return "", contract.Invalid("%v", err)
	}
	return g, nil
}

// ListFiles implements contract.Backend.
func (m *Manager) ListFiles(ctx context.Context, req contract.ListFilesRequest) (contract.FileListing, error) {
	p, err := guestPath(orWorkspace(req.Path))
	if err != nil {
		return contract.FileListing{}, err
	}
	if req.Offset < 0 || req.Offset > contract.MaxListOffset {
		return contract.FileListing{}, listOffsetError(req.Offset)
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.FileListing{}, err
	}
	defer c.end()
	fi, err := c.h.Files.Stat(c.ctx, p)
	if err != nil {
		return contract.FileListing{}, c.guestErr("listing", p, err)
	}
	if fi.Type != proto.TypeDir && fi.Type != proto.TypeSymlink {
		if req.Offset > 0 {
			return contract.FileListing{Path: p}, nil
		}
		return contract.FileListing{Path: p, Entries: []contract.FileEntry{fileEntry(p, fi)}}, nil
	}
	limit := max(req.Limit, 1)
	want := min(req.Offset+limit+1, proto.MaxListLimit)
	list, truncated, err := c.h.Files.List(c.ctx, p, req.Recursive, want)
	if err != nil {
		var pe *proto.Error
		if fi.Type == proto.TypeSymlink && errors.As(err, &pe) && pe.Code == "ENOTDIR" {
			return contract.FileListing{Path: p, Entries: []contract.FileEntry{fileEntry(p, fi)}}, nil
		}
		if errors.As(err, &pe) && pe.Code == proto.CodeTooLarge && c.lost() == nil {
			e := contract.LimitReached("listing %s: the first %d entries hold more than %d MiB of names", p, want, proto.MaxListBytes>>20).
				WithHint("List a subdirectory, or list without recursive.")
			e.Err = err
			return contract.FileListing{}, e
		}
		return contract.FileListing{}, c.guestErr("listing", p, err)
	}
	// Depth-first, lexical within each directory: "a", "a/b", "a.txt".
	sort.Slice(list, func(i, j int) bool { return pathLess(list[i].Name, list[j].Name) })
	out := contract.FileListing{Path: p}
	for i := req.Offset; i < len(list) && len(out.Entries) < limit; i++ {
		out.Entries = append(out.Entries, fileEntry(path.Join(p, list[i].Name), list[i]))
	}
	out.More = req.Offset+len(out.Entries) < len(list) || (truncated && len(out.Entries) == limit)
	return out, nil
}

// listOffsetError refuses a file_list cursor past contract.MaxListOffset: the
// agent lists from the start for every page, so a far cursor would cost a
// listing that large.
func listOffsetError(off int) error {
	return contract.Invalid("cursor %d is past the first %d entries {{file.list}} pages through", off, contract.MaxListOffset).
		WithHint("List a subdirectory (path), or list without recursive.")
}

// pathLess orders slash-separated paths component by component.
func pathLess(a, b string) bool {
	return strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
}

func fileEntry(p string, fi proto.FileInfo) contract.FileEntry {
	e := contract.FileEntry{Path: p, Mode: fi.Mode & 0o7777, ModTime: fi.MTime, LinkTarget: fi.Target}
	switch fi.Type {
	case proto.TypeFile:
		e.Type, e.Size = contract.FileRegular, fi.Size
	case proto.TypeDir:
		e.Type = contract.FileDir
	case proto.TypeSymlink:
		e.Type = contract.FileSymlink
	default:
		e.Type = contract.FileOther
	}
	return e
}

func orWorkspace(p string) string {
	if p == "" {
		return hostio.Workspace
	}
	return p
}

// enterID finds workspace id and enters a call on its running VM.
func (m *Manager) enterID(ctx context.Context, id string) (*call, error) {
	w, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return w.enterLimit(ctx, agentCallTimeout)
}

// ReadFile implements contract.Backend.
func (m *Manager) ReadFile(ctx context.Context, req contract.ReadFileRequest) (contract.FileContent, error) {
	p, err := guestPath(req.Path)
	if err != nil {
		return contract.FileContent{}, err
	}
	if req.Offset < 0 {
		return contract.FileContent{}, contract.Invalid("offset must be >= 0")
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.FileContent{}, err
	}
	defer c.end()
	n := int64(max(req.MaxBytes, 1))
	data, rr, err := c.h.Files.ReadFile(c.ctx, p, req.Offset, min(n, maxReadSize))
	if err != nil {
		return contract.FileContent{}, c.guestErr("reading", p, err)
	}
	return contract.FileContent{Path: p, Size: rr.Size, Offset: req.Offset, Content: data, EOF: rr.EOF}, nil
}

// WriteFile implements contract.Backend.
func (m *Manager) WriteFile(ctx context.Context, req contract.WriteFileRequest) (contract.WriteResult, error) {
	p, err := guestPath(req.Path)
	if err != nil {
		return contract.WriteResult{}, err
	}
	if p == hostio.Workspace {
		return contract.WriteResult{}, contract.Invalid("/workspace is a directory; name a file in it")
	}
	c, err := m.enterID(ctx, req.ID)
	if err != nil {
		return contract.WriteResult{}, err
	}
	defer c.end()
	c.w.writeMu.Lock()
	defer c.w.writeMu.Unlock()
	start := c.w.m.now()
	t0 := time.Now()
	created := false
	fi, err := c.h.Files.Stat(c.ctx, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		created = true
	case err != nil:
		return contract.WriteResult{}, c.guestErr("writing", p, err)
	case fi.Type == proto.TypeDir:
		return contract.WriteResult{}, contract.Invalid("%s is a directory", p)
	}
	if err := c.h.Files.WriteFile(c.ctx, p, bytes.NewReader(req.Content), fs.FileMode(req.Mode&0o7777), true); err != nil {
		return contract.WriteResult{}, c.guestErr("writing", p, err)
	}
	c.durable()
	detail := fmt.Sprintf("%d bytes", len(req.Content))
	if created {
		detail += ", new file"
	}
	c.w.journal.append(entry{Time: start, Kind: contract.LogWrite, Command: "write " + p, Detail: detail, Duration: int64(time.Since(t0))})
	return contract.WriteResult{Path: p, Bytes: int64(len(req.Content)), Created: created}, nil
}

// Bounds on what patch_apply reads from the guest: mcp/patch holds every
// file it reads, and its patched content, in memory until all of them
// apply, so a guest file made huge (truncate -s 1T) or an agent that lies
// about a file's size must not decide how much that is. Source files a
// patch changes are far below these; larger files are edited in the
// guest.
const (
	maxPatchFile  = 16 << 20 // bytes of one file patch_apply reads
	maxPatchTotal = 64 << 20 // bytes of all the files one patch reads
	// maxPatchLines bounds the lines of all the files one patch reads:
	// mcp/patch keeps about 64 bytes of records per line (a file of
	// 16 MiB of empty lines would cost it 1 GiB), so lines cost more
	// than bytes. A million lines is about 64 MiB of records.
	maxPatchLines = 1 << 20
)

// patchReadError says a file is over a patch_apply read bound.
type patchReadError struct {
	name  string
	size  int64 // the size the guest reported, or the lines read
	limit int64
	what  string // "file", "total" or "lines"
}

func (e *patchReadError) Error() string {
	switch e.what {
	case "total":
		return fmt.Sprintf("%s (%d bytes) would take the files this patch reads past %d MiB", e.name, e.size, e.limit>>20)
	case "lines":
		return fmt.Sprintf("%s (%d lines) would take the files this patch reads past %d lines", e.name, e.size, e.limit)
	}
	return fmt.Sprintf("%s is %d bytes, over the %d MiB {{patch.apply}} reads", e.name, e.size, e.limit>>20)
}

// guestFS is patch.FS over the guest's /workspace. left and lines are
// what maxPatchTotal and maxPatchLines leave for further reads.
type guestFS struct {
	ctx   context.Context
	g     guest
	left  *int64
	lines *int64
}

func (f guestFS) ReadFile(name string) ([]byte, fs.FileMode, error) {
	p := hostio.Workspace + "/" + name
	fi, err := f.g.Stat(f.ctx, p)
	if err != nil {
		return nil, 0, err
	}
	switch fi.Type {
	case proto.TypeFile:
	case proto.TypeSymlink:
		return nil, 0, fmt.Errorf("%s is a symbolic link; patches change regular files only", name)
	case proto.TypeDir:
		return nil, 0, fmt.Errorf("%s is a directory", name)
	default:
		return nil, 0, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size < 0 || fi.Size > maxPatchFile {
		return nil, 0, &patchReadError{name: name, size: fi.Size, limit: maxPatchFile, what: "file"}
	}
	if fi.Size > *f.left {
		return nil, 0, &patchReadError{name: name, size: fi.Size, limit: maxPatchTotal, what: "total"}
	}
	// Read at most the reported size and one byte more, which shows the
	// file grew (or the agent lied) without reading what it grew by.
	var data []byte
	for int64(len(data)) <= fi.Size {
		b, rr, err := f.g.ReadFile(f.ctx, p, int64(len(data)), fi.Size+1-int64(len(data)))
		if err != nil {
			return nil, 0, err
		}
		data = append(data, b...)
		if rr.EOF || len(b) == 0 {
			break
		}
	}
	if int64(len(data)) > fi.Size {
		return nil, 0, fmt.Errorf("%s grew while it was read; apply the patch again", name)
	}
	n := int64(bytes.Count(data, []byte("\n")) + 1)
	if n > *f.lines {
		return nil, 0, &patchReadError{name: name, size: n, limit: maxPatchLines, what: "lines"}
	}
	*f.left -= int64(len(data))
	*f.lines -= n
	return data, fs.FileMode(fi.Mode & 0o777), nil
}

// ApplyPatch implements contract.Backend: mcp/patch works out the new content
// of every file (reading through the agent), and only if every file
// applies are the changes written.
func (m *Manager) ApplyPatch(ctx context.Context, id string, text string) (contract.PatchResult, error) {
	fps, err := patch.Parse([]byte(text))
	if err != nil {
		return contract.PatchResult{}, contract.Invalid("malformed patch: %v", err).
			WithHint("Send a unified diff (diff -u or git diff) with --- and +++ headers and @@ hunks.")
	}
	if len(fps) == 0 {
		return contract.PatchResult{}, contract.Invalid("the patch holds no file sections (--- a/PATH, +++ b/PATH)")
	}
	c, err := m.enterID(ctx, id)
	if err != nil {
		return contract.PatchResult{}, err
	}
	defer c.end()
	c.w.writeMu.Lock()
	defer c.w.writeMu.Unlock()
	start := c.w.m.now()
	t0 := time.Now()

	left, lines := int64(maxPatchTotal), int64(maxPatchLines)
	res, aerr := patch.Apply(guestFS{c.ctx, c.h.Files, &left, &lines}, fps)
	if l := c.lost(); l != nil {
		return contract.PatchResult{}, l
	}
	for _, fr := range res.Files {
		var re *patchReadError
		if errors.As(fr.Err, &re) {
			hint := fmt.Sprintf("Nothing was changed. Edit %s in the guest with {{exec}} (sed -i, or a script), "+
				"or replace it whole with {{file.write}}.", re.name)
			if re.what != "file" {
				hint += " Or split the patch into smaller ones, a few files each."
			}
			return contract.PatchResult{}, contract.LimitReached("patch not applied: %v", re).WithHint(hint)
		}
	}
	out := contract.PatchResult{Applied: aerr == nil}
	for i, fr := range res.Files {
		fp := contract.FilePatch{Path: fr.Path, OK: fr.Err == nil}
		switch fr.Op {
		case patch.OpAdd, patch.OpCopy:
			fp.Op = "add"
		case patch.OpDelete:
			fp.Op = "delete"
		case patch.OpRename:
			fp.Op = "rename"
		default:
			fp.Op = "modify"
		}
		if fr.Err != nil {
			fp.Error = fr.Err.Error()
		}
		if i < len(fps) {
			for _, h := range fps[i].Hunks {
				for _, l := range h.Lines {
					switch l.Kind {
					case patch.LineAdded:
						fp.Additions++
					case patch.LineRemoved:
						fp.Deletions++
					}
				}
			}
		}
		out.Files = append(out.Files, fp)
	}
	if aerr != nil {
		if !errors.Is(aerr, patch.ErrNotApplied) {
			return contract.PatchResult{}, contract.Internal("applying the patch", aerr)
		}
		return out, nil
	}

	var done []string
	for _, ch := range res.Changes {
		p := hostio.Workspace + "/" + ch.Path
		var err error
		if ch.Op == patch.OpDelete {
			err = c.remove(p)
		} else {
			err = c.h.Files.WriteFile(c.ctx, p, bytes.NewReader(ch.Content), ch.Mode&fs.ModePerm, true)
		}
		if err != nil {
			e := c.guestErr("writing "+p, p, err)
			if me, ok := contract.AsError(e); ok && len(done) > 0 {
				me.Msg += fmt.Sprintf(" (after %d of %d changes were written: %s)", len(done), len(res.Changes), strings.Join(done, ", "))
			}
			return contract.PatchResult{}, e
		}
		done = append(done, ch.Path)
	}
	c.durable()
	var names []string
	for _, f := range out.Files {
		names = append(names, f.Path+" ("+f.Op+")")
	}
	c.w.journal.append(entry{Time: start, Kind: contract.LogWrite, Command: "patch",
		Detail: fmt.Sprintf("%d files: %s", len(out.Files), strings.Join(names, ", ")), Duration: int64(time.Since(t0))})
	return out, nil
}

// remove deletes a guest file under /workspace. The confined Stat checks
// that the path's directories resolve inside /workspace; rm then removes
// the entry itself (a symlink, not its target).
func (c *call) remove(p string) error {
	if _, err := c.h.Files.Stat(c.ctx, p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var stderr bytes.Buffer
	res, err := c.h.Agent.Exec(c.ctx, proto.ExecRequest{Argv: []string{"rm", "-f", "--", p}, Timeout: time.Minute}, nil, &stderr)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("rm %s: %s", p, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// durable asks the guest to sync after a file tool wrote, so that what the
// tool reported written survives a crash of the server (a few
// milliseconds: one guest sync, one disk flush).
func (c *call) durable() {
	if err := c.h.Agent.Sync(c.ctx); err != nil && c.lost() == nil {
		c.w.m.log.Warn("syncing the guest after a write", "id", c.w.id, "err", err)
	}
}
