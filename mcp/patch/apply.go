package patch

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// FS is how Apply reads the workspace. Implementations read the guest's
// files; tests use a map.
type FS interface {
	// ReadFile returns the content and permission bits of the regular file
	// at name, a clean path relative to the workspace root (see CleanPath).
	// For a missing file the error satisfies errors.Is(err, fs.ErrNotExist);
	// any other error (a directory, say) fails that file's patch.
	ReadFile(name string) (data []byte, mode fs.FileMode, err error)
}

// Change is one file write the caller must perform.
type Change struct {
	Op      Op // OpAdd, OpModify or OpDelete
	Path    string
	Content []byte      // the whole new content; nil for OpDelete
	Mode    fs.FileMode // permission bits; zero for OpDelete
}

// Result reports what a patch did, or would have done, file by file.
type Result struct {
	// Files has one entry per FilePatch, in patch order.
	Files []FileResult
	// Changes is the net effect on the workspace, one Change per path:
	// deletions first, then additions and modifications in patch order,
	// so that performing them in order works when a file gives way to a
	// directory of the same name. A file patched but left byte-for-byte
	// and mode-for-mode as it was yields no Change. Changes is nil when any
	// file failed.
	Changes []Change
}

// FileResult is the outcome of one FilePatch.
type FileResult struct {
	Op      Op
	Path    string // FilePatch.Path()
	OldPath string // the source of a rename or copy; empty otherwise
	// HunksApplied of HunksTotal hunks matched. Hunks has one entry per hunk.
	HunksApplied, HunksTotal int
	Hunks                    []HunkResult
	// Err says why the file failed; nil when it applied. A file whose hunks
	// failed reports every failing hunk, as *HunkError values joined.
	Err error
}

// HunkResult is where one hunk applied, or why it did not.
type HunkResult struct {
	Header string // e.g. "@@ -40,6 +40,7 @@"
	// Line is the 1-based line of the old file where the hunk's old lines
	// start (for a pure insertion, the line it inserts after); Offset is
	// how far that is from where the header put it. Both are zero when Err
	// is set.
	Line, Offset int
	Err          error
}

// HunkError says why a hunk did not apply.
type HunkError struct {
	Hunk   int    // 1-based index of the hunk within its file
	Header string // the hunk header
	Msg    string
}

func (e *HunkError) Error() string {
	return fmt.Sprintf("hunk %d (%s): %s", e.Hunk, e.Header, e.Msg)
}

// ErrNotApplied is wrapped by the error Apply returns when any file fails.
var ErrNotApplied = errors.New("patch not applied; no files were changed")

// Apply works out what patches do to the files fsys holds. It reads
// through fsys and writes nothing: the returned Result's Changes are for
// the caller to perform. Either every file patch applies and Changes holds
// the net effect, or Apply returns an error wrapping ErrNotApplied that
// lists each failing file and why, and Changes is nil. The Result is never
// nil and always reports every file. Patches apply in order, each to the
// result of those before it; see the package doc for how hunks match.
func Apply(fsys FS, patches []FilePatch) (*Result, error) {
	t := &tree{fsys: fsys, orig: map[string]fileState{}, cur: map[string]fileState{}, touched: map[string]bool{}}
	res := &Result{Files: make([]FileResult, len(patches))}
	var failed []string
	for i := range patches {
		fr := &res.Files[i]
		t.applyFile(&patches[i], fr)
		if fr.Err != nil {
			for _, line := range strings.Split(fr.Err.Error(), "\n") {
				failed = append(failed, "  "+fr.Path+": "+line)
			}
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%w:\n%s", ErrNotApplied, strings.Join(failed, "\n"))
	}
	res.Changes = t.changes()
	return res, nil
}

// String summarises the result for the agent, one line per file.
func (r *Result) String() string {
	var b strings.Builder
	for i := range r.Files {
		b.WriteString(r.Files[i].String())
		b.WriteByte('\n')
	}
	return b.String()
}

// String summarises one file's outcome, e.g.
// "src/a.go: modify, 2/2 hunks applied (hunk 2 at offset +3)".
func (f *FileResult) String() string {
	var b strings.Builder
	b.WriteString(f.Path)
	b.WriteString(": ")
	b.WriteString(f.Op.String())
	if f.OldPath != "" {
		b.WriteString(" from ")
		b.WriteString(f.OldPath)
	}
	fmt.Fprintf(&b, ", %d/%d hunks applied", f.HunksApplied, f.HunksTotal)
	var offs []string
	for i, h := range f.Hunks {
		if h.Err == nil && h.Offset != 0 {
			offs = append(offs, fmt.Sprintf("hunk %d at offset %+d", i+1, h.Offset))
		}
	}
	if len(offs) > 0 {
		b.WriteString(" (" + strings.Join(offs, ", ") + ")")
	}
	if f.Err != nil {
		b.WriteString("; FAILED: ")
		b.WriteString(strings.ReplaceAll(f.Err.Error(), "\n", "; "))
	}
	return b.String()
}

// fileState is a path's content as the patch has left it so far.
type fileState struct {
	exists bool
	data   []byte
	mode   fs.FileMode
}

// tree is the in-memory workspace: files as read, and as patched so far.
type tree struct {
	fsys    FS
	orig    map[string]fileState // as first read from fsys
	cur     map[string]fileState // after the file patches applied so far
	touched map[string]bool      // paths a file patch wrote
	order   []string             // touched paths, first touch first
}

func (t *tree) get(path string) (fileState, error) {
	if st, ok := t.cur[path]; ok {
		return st, nil
	}
	data, mode, err := t.fsys.ReadFile(path)
	var st fileState
	switch {
	case err == nil:
		st = fileState{exists: true, data: data, mode: mode.Perm()}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return st, fmt.Errorf("cannot read %s: %w", path, err)
	}
	t.orig[path], t.cur[path] = st, st
	return st, nil
}

func (t *tree) set(path string, st fileState) {
	if !t.touched[path] {
		t.touched[path] = true
		t.order = append(t.order, path)
	}
	t.cur[path] = st
}

// checkCreate says why path cannot be created as a file, if it cannot: a
// parent is a file, or files already live below it.
func (t *tree) checkCreate(path string) error {
	for i := 0; i < len(path); i++ {
		if path[i] != '/' {
			continue
		}
		if st, err := t.get(path[:i]); err == nil && st.exists {
			return fmt.Errorf("cannot create %s: %s is a file", path, path[:i])
		}
	}
	for p, st := range t.cur {
		if st.exists && strings.HasPrefix(p, path+"/") {
			return fmt.Errorf("cannot create %s: it is a directory holding %s", path, p)
		}
	}
	return nil
}

func (t *tree) applyFile(fp *FilePatch, fr *FileResult) {
	fr.Op, fr.Path, fr.HunksTotal = fp.Op, fp.Path(), len(fp.Hunks)
	if fp.Op == OpRename || fp.Op == OpCopy {
		fr.OldPath = fp.OldPath
	}
	var oldPath, newPath string
	var err error
	if fp.Op != OpAdd {
		if oldPath, err = CleanPath(fp.OldPath); err != nil {
			fr.Err = err
			return
		}
	}
	if fp.Op != OpDelete {
		if newPath, err = CleanPath(fp.NewPath); err != nil {
			fr.Err = err
			return
		}
	}

	switch fp.Op {
	case OpAdd:
		st, err := t.get(newPath)
		if err != nil {
			fr.Err = err
			return
		}
		if st.exists {
			fr.Err = errors.New("file to add already exists; patch it with a diff against its current content, or write it with file_write")
			return
		}
		if err := t.checkCreate(newPath); err != nil {
			fr.Err = err
			return
		}
		content, err := applyHunks(nil, fp.Hunks, fr)
		if err != nil {
			fr.Err = err
			return
		}
		t.set(newPath, fileState{exists: true, data: content, mode: modeOr(fp.NewMode, 0o644)})

	case OpModify:
		st, err := t.get(oldPath)
		if err != nil {
			fr.Err = err
			return
		}
		if !st.exists {
			fr.Err = errors.New("file to modify does not exist; to create it, use \"--- /dev/null\"")
			return
		}
		content, err := applyHunks(st.data, fp.Hunks, fr)
		if err != nil {
			fr.Err = err
			return
		}
		t.set(newPath, fileState{exists: true, data: content, mode: modeOr(fp.NewMode, st.mode)})

	case OpDelete:
		st, err := t.get(oldPath)
		if err != nil {
			fr.Err = err
			return
		}
		if !st.exists {
			fr.Err = errors.New("file to delete does not exist")
			return
		}
		content, err := applyHunks(st.data, fp.Hunks, fr)
		if err != nil {
			fr.Err = fmt.Errorf("file to delete does not match the patch's old content: %w", err)
			return
		}
		if len(content) > 0 {
			n := len(splitLines(content))
			if len(fp.Hunks) == 0 {
				fr.Err = fmt.Errorf("file to delete does not match the patch's old content: the patch deletes an empty file, but the file has %s", nLines(n))
			} else {
				fr.Err = fmt.Errorf("file to delete does not match the patch's old content: %s would remain after the patch's removals", nLines(n))
			}
			return
		}
		t.set(oldPath, fileState{})

	case OpRename, OpCopy:
		verb := "rename"
		if fp.Op == OpCopy {
			verb = "copy"
		}
		src, err := t.get(oldPath)
		if err != nil {
			fr.Err = err
			return
		}
		if !src.exists {
			fr.Err = fmt.Errorf("file to %s (%s) does not exist", verb, oldPath)
			return
		}
		content, err := applyHunks(src.data, fp.Hunks, fr)
		if err != nil {
			fr.Err = err
			return
		}
		if newPath != oldPath {
			dst, err := t.get(newPath)
			if err != nil {
				fr.Err = err
				return
			}
			if dst.exists {
				fr.Err = fmt.Errorf("%s target %s already exists", verb, newPath)
				return
			}
			if fp.Op == OpRename {
				t.set(oldPath, fileState{})
			}
			if err := t.checkCreate(newPath); err != nil {
				if fp.Op == OpRename {
					t.cur[oldPath] = src // undo, so later patches see the file
				}
				fr.Err = err
				return
			}
		}
		t.set(newPath, fileState{exists: true, data: content, mode: modeOr(fp.NewMode, src.mode)})

	default:
		fr.Err = fmt.Errorf("unknown operation %v", fp.Op)
	}
}

func modeOr(m, def fs.FileMode) fs.FileMode {
	if m != 0 {
		return m.Perm()
	}
	return def
}

// changes is the net effect of the patches: deletions, then the rest.
func (t *tree) changes() []Change {
	var dels, rest []Change
	for _, p := range t.order {
		o, c := t.orig[p], t.cur[p]
		switch {
		case o.exists && !c.exists:
			dels = append(dels, Change{Op: OpDelete, Path: p})
		case !o.exists && c.exists:
			rest = append(rest, Change{Op: OpAdd, Path: p, Content: nonNil(c.data), Mode: c.mode})
		case o.exists && c.exists && (!bytes.Equal(o.data, c.data) || o.mode != c.mode):
			rest = append(rest, Change{Op: OpModify, Path: p, Content: nonNil(c.data), Mode: c.mode})
		}
	}
	return append(dels, rest...)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// fline is one line of a file: its text and its ending ("\n", "\r\n", or
// "" for a last line without one).
type fline struct {
	text, eol string
}

func splitLines(b []byte) []fline {
	var out []fline
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, fline{text: string(b)})
			break
		}
		l := fline{text: string(b[:i]), eol: "\n"}
		if i > 0 && b[i-1] == '\r' {
			l = fline{text: string(b[:i-1]), eol: "\r\n"}
		}
		out = append(out, l)
		b = b[i+1:]
	}
	return out
}

// convention is the line ending most of the file's lines use, "" if none
// has one.
func convention(lines []fline) string {
	crlf, lf := 0, 0
	for _, l := range lines {
		switch l.eol {
		case "\r\n":
			crlf++
		case "\n":
			lf++
		}
	}
	switch {
	case crlf > lf:
		return "\r\n"
	case lf > 0:
		return "\n"
	}
	return ""
}

// sameLine compares a file line with a patch line, line endings aside: a
// lone CR left at the end of a file's unterminated last line is an ending.
func sameLine(file, patch string) bool {
	return file == patch || strings.TrimSuffix(file, "\r") == patch
}

// applyHunks applies hunks in order to old and returns the new content,
// recording each hunk's outcome in fr. On failure it goes on with the
// remaining hunks to report them too, and returns every hunk error.
func applyHunks(old []byte, hunks []Hunk, fr *FileResult) ([]byte, error) {
	lines := splitLines(old)
	conv := convention(lines)
	defEOL := conv
	if defEOL == "" {
		defEOL = "\n"
	}
	fr.Hunks = make([]HunkResult, len(hunks))
	var (
		out        []fline
		errs       []error
		cursor     int // next old line not yet copied
		lastOffset int
	)
	for k := range hunks {
		h := &hunks[k]
		hr := &fr.Hunks[k]
		hr.Header = h.Header()
		pos, stated, err := place(lines, h, k+1, cursor, lastOffset)
		if err != nil {
			hr.Err = err
			errs = append(errs, err)
			continue
		}
		hr.Line, hr.Offset = pos+1, pos-stated
		if oldCount(h) == 0 {
			hr.Line = pos // the line it inserts after
		}
		lastOffset = pos - stated
		out = append(out, lines[cursor:pos]...)
		oi := pos
		for _, l := range h.Lines {
			switch l.Kind {
			case LineContext:
				out = append(out, lines[oi])
				oi++
			case LineRemoved:
				oi++
			case LineAdded:
				eol := conv
				if eol == "" {
					eol = "\n"
					if l.CRLF {
						eol = "\r\n"
					}
				}
				out = append(out, fline{text: l.Text, eol: eol})
			}
		}
		cursor = oi
		if cursor == len(lines) && len(out) > 0 {
			// The hunk reaches the end of the file: its markers, or else the
			// old file, say whether the new one ends in a newline.
			noEOL := len(lines) > 0 && lines[len(lines)-1].eol == ""
			if h.OldNoEOL || h.NewNoEOL {
				noEOL = h.NewNoEOL
			}
			last := &out[len(out)-1]
			if noEOL {
				last.eol = ""
			} else if last.eol == "" {
				last.eol = defEOL
			}
		}
		fr.HunksApplied++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out = append(out, lines[cursor:]...)
	size := 0
	for i := range out {
		if out[i].eol == "" && i < len(out)-1 {
			out[i].eol = defEOL
		}
		size += len(out[i].text) + len(out[i].eol)
	}
	buf := make([]byte, 0, size)
	for _, l := range out {
		buf = append(buf, l.text...)
		buf = append(buf, l.eol...)
	}
	return buf, nil
}

func oldCount(h *Hunk) int {
	n := 0
	for _, l := range h.Lines {
		if l.Kind != LineAdded {
			n++
		}
	}
	return n
}

// matchAt reports whether h's old lines equal lines[pos:], returning the
// index into h.Lines of the first that differs (or runs past the end).
func matchAt(lines []fline, h *Hunk, pos int) (ok bool, bad int) {
	oi := pos
	for i, l := range h.Lines {
		if l.Kind == LineAdded {
			continue
		}
		if oi >= len(lines) || !sameLine(lines[oi].text, l.Text) {
			return false, i
		}
		oi++
	}
	return true, -1
}

// place finds where hunk number n applies: at or after line index lo (the
// end of the previous hunk), nearest first to where its header says plus
// the offset the previous hunk needed. It returns the 0-based position
// and the position the header states.
func place(lines []fline, h *Hunk, n, lo, lastOffset int) (pos, stated int, err error) {
	fail := func(format string, args ...any) (int, int, error) {
		return 0, 0, &HunkError{Hunk: n, Header: h.Header(), Msg: fmt.Sprintf(format, args...)}
	}
	cnt := oldCount(h)
	stated = h.OldStart - 1
	if cnt == 0 {
		stated = h.OldStart // a pure insertion goes after line OldStart
	}
	stated = max(stated, 0)
	if len(lines) == 0 {
		stated = 0
	}
	want := stated + lastOffset
	hi := len(lines) - cnt // the last position the hunk fits at

	if hi < lo {
		if lo == 0 {
			return fail("the file has %s, fewer than the hunk's %d old lines", nLines(len(lines)), cnt)
		}
		return fail("only %s remain after line %d, where the previous hunk ends, fewer than this hunk's %d old lines", nLines(len(lines)-lo), lo, cnt)
	}
	if h.OldNoEOL || h.NewNoEOL {
		// "\ No newline at end of file": the hunk must end the file.
		if ok, bad := matchAt(lines, h, hi); ok {
			return hi, stated, nil
		} else if cnt > 0 {
			return mismatch(lines, h, n, hi, bad, "; the hunk must end at the end of the file because of its \"\\ No newline at end of file\" marker")
		}
	}
	if cnt == 0 {
		switch {
		case want > hi:
			return fail("inserts after line %d, but the file has only %s", want, nLines(len(lines)))
		case want < lo:
			return fail("inserts after line %d, inside the previous hunk, which ends at line %d", want, lo)
		}
		return want, stated, nil
	}
	want = min(max(want, lo), hi)
	for d := 0; want+d <= hi || want-d >= lo; d++ {
		if p := want + d; p <= hi {
			if ok, _ := matchAt(lines, h, p); ok {
				return p, stated, nil
			}
		}
		if p := want - d; d > 0 && p >= lo {
			if ok, _ := matchAt(lines, h, p); ok {
				return p, stated, nil
			}
		}
	}
	_, bad := matchAt(lines, h, want)
	where := "in the file"
	if lo > 0 {
		where = fmt.Sprintf("after line %d (the end of the previous hunk)", lo)
	}
	return mismatch(lines, h, n, want, bad, "; the hunk's old lines match nowhere else "+where+" either")
}

// mismatch describes the first line where hunk n's old lines, placed at
// pos, differ from the file.
func mismatch(lines []fline, h *Hunk, n, pos, bad int, suffix string) (int, int, error) {
	oi := pos
	for i := 0; i < bad; i++ {
		if h.Lines[i].Kind != LineAdded {
			oi++
		}
	}
	l := h.Lines[bad]
	what := "context"
	if l.Kind == LineRemoved {
		what = "line to remove"
	}
	var msg string
	if oi >= len(lines) {
		msg = fmt.Sprintf("%s does not match at line %d: expected %q, found the end of the file", what, oi+1, truncate(l.Text))
	} else {
		found := strings.TrimSuffix(lines[oi].text, "\r")
		msg = fmt.Sprintf("%s does not match at line %d: expected %q, found %q", what, oi+1, truncate(l.Text), truncate(found))
		if strings.Join(strings.Fields(found), "") == strings.Join(strings.Fields(l.Text), "") {
			msg += " (they differ only in whitespace)"
		}
	}
	return 0, 0, &HunkError{Hunk: n, Header: h.Header(), Msg: msg + suffix}
}

// nLines says "1 line" or "N lines".
func nLines(n int) string {
	if n == 1 {
		return "1 line"
	}
	return fmt.Sprintf("%d lines", n)
}
