package treediff

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Options tune Diff. The zero value gives the defaults.
type Options struct {
	// Context is the number of unchanged lines around each change in
	// the patch: 0 means the default, 3; a negative value means none.
	Context int
	// MaxFileBytes is the largest file given a line diff; a larger one
	// is treated as binary and summarised in one line. 0 means 1 MiB.
	MaxFileBytes int64
	// MaxPatchBytes bounds Result.Patch. When the patch would be longer,
	// it keeps the files that fit in path order and marks the others
	// PatchOmitted; their FileDiffs and counts are still exact.
	// 0 means 8 MiB.
	MaxPatchBytes int
	// Prefix limits the diff to one path and what is below it ("src"
	// or "./src/"). Empty means the whole tree.
	Prefix string
	// MaxChanges bounds the changed paths one Diff records, and
	// MaxPathBytes the sum of their lengths: past either, Diff fails
	// with an error wrapping ErrTooManyChanges. 0 means
	// DefaultMaxChanges and DefaultMaxPathBytes.
	MaxChanges   int
	MaxPathBytes int
}

// Defaults applied for zero Options fields.
const (
	DefaultContext       = 3
	DefaultMaxFileBytes  = 1 << 20
	DefaultMaxPatchBytes = 8 << 20
	// DefaultMaxChanges and DefaultMaxPathBytes bound what Diff holds
	// for the changed paths, since the tree comes from the guest: about
	// 0.35 KiB per path plus 1.3 times its length (measured by
	// TestDiffEndlessTreeBounded: 44 MiB at the first bound, 42 MiB at
	// the second), so a guest that creates millions of long-named
	// files costs one diff about 100 MiB at most, not many GiB. The
	// same idea as the host-side archive extraction's name and entry
	// caps (mcp/hostio), sized for what a diff keeps per path. A diff
	// of more changes than a reader can use is narrowed with Prefix.
	DefaultMaxChanges   = 1 << 17
	DefaultMaxPathBytes = 32 << 20
)

// ErrTooManyChanges is wrapped by the error Diff returns when the changes
// pass Options.MaxChanges or Options.MaxPathBytes.
var ErrTooManyChanges = errors.New("too many changes")

// Status says how a path changed.
type Status string

// The statuses of a FileDiff.
const (
	Added       Status = "added"
	Modified    Status = "modified"
	Deleted     Status = "deleted"
	TypeChanged Status = "type_changed" // file, dir and symlink, one into another
)

// FileDiff is one changed path.
type FileDiff struct {
	Path   string `json:"path"`
	Status Status `json:"status"`
	// OldType and NewType are the path's type before and after; the side
	// where the path does not exist is empty.
	OldType Type `json:"old_type,omitempty"`
	NewType Type `json:"new_type,omitempty"`
	// OldMode and NewMode are set for an added or deleted path (its one
	// side) and when the mode changed (both).
	OldMode Mode `json:"old_mode,omitempty"`
	NewMode Mode `json:"new_mode,omitempty"`
	// Binary is set when either version is binary (a NUL byte in the
	// first 8000 bytes) or over Options.MaxFileBytes: no line diff.
	Binary bool `json:"binary,omitempty"`
	// Additions and Deletions count the patch's lines for this path.
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
	// Summary describes a change that has no line diff: binary or large
	// content, directories, and permission changes.
	Summary string `json:"summary,omitempty"`
	// PatchOmitted is set when Options.MaxPatchBytes left this path's
	// text out of Result.Patch.
	PatchOmitted bool `json:"patch_omitted,omitempty"`
}

// Totals sums a Result.
type Totals struct {
	// FilesChanged counts changed paths other than directories whose
	// only change is being added, deleted or re-moded, as git counts.
	FilesChanged int `json:"files_changed"`
	Insertions   int `json:"insertions"`
	Deletions    int `json:"deletions"`
}

// String is git's --shortstat line: "2 files changed, 3 insertions(+),
// 1 deletion(-)".
func (t Totals) String() string {
	var b strings.Builder
	plural := func(n int, one, many string) {
		b.WriteString(strconv.Itoa(n))
		if n == 1 {
			b.WriteString(one)
		} else {
			b.WriteString(many)
		}
	}
	plural(t.FilesChanged, " file changed", " files changed")
	if t.FilesChanged == 0 {
		return b.String()
	}
	if t.Insertions > 0 || t.Deletions == 0 {
		b.WriteString(", ")
		plural(t.Insertions, " insertion(+)", " insertions(+)")
	}
	if t.Deletions > 0 || t.Insertions == 0 {
		b.WriteString(", ")
		plural(t.Deletions, " deletion(-)", " deletions(-)")
	}
	return b.String()
}

// Result is what changed between the baseline and the current tree.
type Result struct {
	Files  []FileDiff `json:"files"` // sorted by path
	Totals Totals     `json:"totals"`
	// Patch is the git-compatible unified patch from the baseline to
	// the current tree, files in path order.
	Patch []byte `json:"-"`
	// Truncated is set when some files' text was left out of Patch
	// (see Options.MaxPatchBytes).
	Truncated bool `json:"truncated,omitempty"`
}

// Diff compares the current tree, read once from a tar stream, with the
// baseline index. Every current file is hashed; only a file whose hash
// differs from the baseline's has its content kept and its baseline blob
// read from blobs. The result is deterministic: it depends on the two
// trees, not on the order of the stream.
func Diff(base *Index, blobs BlobSource, current io.Reader, opts Options) (*Result, error) {
	if base == nil {
		base = &Index{} // no baseline: everything is added
	}
	d, err := newDiffer(base, blobs, opts)
	if err != nil {
		return nil, err
	}
	s := newTarStream(current)
	seenBase := make([]bool, len(base.entries))
	seenNew := make(map[string]bool)
	for n := 0; ; n++ {
		e, err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if n == maxEntries {
			return nil, fmt.Errorf("treediff: more than %d entries", maxEntries)
		}
		if !under(e.Path, d.prefix) {
			continue
		}
		bi, inBase := base.byPath[e.Path]
		if inBase && !seenBase[bi] {
			seenBase[bi] = true
		} else if inBase || seenNew[e.Path] {
			return nil, fmt.Errorf("treediff: duplicate path %q in archive", e.Path)
		} else {
			seenNew[e.Path] = true
		}
		var old *Entry
		if inBase {
			old = &base.entries[bi]
		}
		if err := d.entry(s, old, &e); err != nil {
			return nil, err
		}
	}
	for i := range base.entries {
		if e := &base.entries[i]; !seenBase[i] && under(e.Path, d.prefix) {
			if err := d.emit(e.Path, d.oldSide(e), side{}, true); err != nil {
				return nil, err
			}
		}
	}
	return d.result(), nil
}

type differ struct {
	base    *Index
	blobs   BlobSource
	context int
	maxFile int64
	prefix  string
	buf     []byte // the current file's content, reused

	maxChanges, maxPathBytes int
	pathBytes                int // the sum of len(files[i].Path)

	files   []FileDiff
	patches patchSet
}

func newDiffer(base *Index, blobs BlobSource, opts Options) (*differ, error) {
	d := &differ{base: base, blobs: blobs, context: opts.Context, maxFile: opts.MaxFileBytes}
	switch {
	case d.context == 0:
		d.context = DefaultContext
	case d.context < 0:
		d.context = 0
	}
	if d.maxFile <= 0 {
		d.maxFile = DefaultMaxFileBytes
	}
	d.maxChanges, d.maxPathBytes = opts.MaxChanges, opts.MaxPathBytes
	if d.maxChanges <= 0 {
		d.maxChanges = DefaultMaxChanges
	}
	if d.maxPathBytes <= 0 {
		d.maxPathBytes = DefaultMaxPathBytes
	}
	d.patches.budget = opts.MaxPatchBytes
	if d.patches.budget <= 0 {
		d.patches.budget = DefaultMaxPatchBytes
	}
	var err error
	if d.prefix, err = cleanPath(opts.Prefix); err != nil {
		return nil, fmt.Errorf("treediff: Options.Prefix: %w", err)
	}
	return d, nil
}

// entry compares one current entry, whose content is readable from s,
// with its baseline entry old (nil if none).
func (d *differ) entry(s *tarStream, old, e *Entry) error {
	cur := side{e: e}
	if e.Type == File {
		// Hash with SHA-256 only when it can show the file unchanged;
		// read content only when a line diff may need it.
		sameSize := old != nil && old.Type == File && old.Size == e.Size
		if e.Size <= d.maxFile {
			if int64(cap(d.buf)) < e.Size {
				d.buf = make([]byte, e.Size)
			}
			cur.data = d.buf[:e.Size]
			if _, err := io.ReadFull(s.tr, cur.data); err != nil {
				return fmt.Errorf("treediff: reading %q: %w", e.Path, noEOF(err))
			}
			if sameSize {
				e.Sum = sha256.Sum256(cur.data)
			}
			if !sameSize || e.Sum != old.Sum {
				cur.id = gitID(cur.data)
			}
		} else {
			// Too big to keep: hash what the patch may need on the way.
			cur.big = true
			g := newGitHash(e.Size)
			var w io.Writer = g
			h := sha256.New()
			if sameSize {
				w = io.MultiWriter(g, h)
			}
			n, err := io.Copy(w, s.tr)
			if err == nil && n != e.Size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return fmt.Errorf("treediff: reading %q: %w", e.Path, err)
			}
			if sameSize {
				h.Sum(e.Sum[:0])
			}
			g.Sum(cur.id[:0])
		}
	} else if e.Type == Symlink {
		cur.data = []byte(e.Target)
	}
	if old == nil {
		return d.emit(e.Path, side{}, cur, true)
	}
	if old.Type != e.Type {
		return d.emit(e.Path, d.oldSide(old), cur, true)
	}
	var changed bool
	switch e.Type {
	case File:
		changed = old.Size != e.Size || old.Sum != e.Sum
	case Symlink:
		changed = old.Target != e.Target
	}
	if !changed && old.Perm == e.Perm {
		return nil
	}
	prev := side{e: old, id: old.GitID}
	if changed {
		prev = d.oldSide(old)
	}
	return d.emit(e.Path, prev, cur, changed)
}

// oldSide describes a baseline entry, reading its content from the blob
// store when a line diff may need it.
func (d *differ) oldSide(e *Entry) side {
	s := side{e: e, id: e.GitID}
	switch e.Type {
	case Symlink:
		s.data = []byte(e.Target)
	case File:
		s.big = e.Size > d.maxFile
	}
	return s
}

// loadOld reads a baseline file's content if the patch needs it.
func (d *differ) loadOld(s *side) error {
	if s.e == nil || s.e.Type != File || s.big || s.data != nil {
		return nil
	}
	data, err := readBlob(d.blobs, s.e, d.maxFile)
	if err != nil {
		return err
	}
	s.data = data
	return nil
}

// emit records a changed path: its FileDiff and its patch text.
func (d *differ) emit(path string, old, cur side, changed bool) error {
	if len(d.files) == d.maxChanges {
		return fmt.Errorf("treediff: %w: more than %d changed paths", ErrTooManyChanges, d.maxChanges)
	}
	if d.pathBytes += len(path); d.pathBytes > d.maxPathBytes {
		return fmt.Errorf("treediff: %w: the changed paths total more than %d MiB", ErrTooManyChanges, d.maxPathBytes>>20)
	}
	fd := FileDiff{Path: path}
	switch {
	case old.e == nil:
		fd.Status = Added
	case cur.e == nil:
		fd.Status = Deleted
	case old.e.Type != cur.e.Type:
		fd.Status = TypeChanged
	default:
		fd.Status = Modified
	}
	if old.e != nil {
		fd.OldType, fd.OldMode = old.e.Type, old.e.Mode()
	}
	if cur.e != nil {
		fd.NewType, fd.NewMode = cur.e.Type, cur.e.Mode()
	}
	if fd.Status == Modified && old.e.Perm == cur.e.Perm {
		fd.OldMode, fd.NewMode = 0, 0
	}
	// Only a text diff needs the baseline content; a binary current
	// side makes the pair binary without it.
	if changed && !cur.binary() {
		if err := d.loadOld(&old); err != nil {
			return err
		}
	}
	var w bytes.Buffer
	var st patchStats
	if fd.Status == TypeChanged {
		// As git: the old one deleted, then the new one added.
		// A directory side has no text.
		var a, b patchStats
		if old.exists() {
			a = writeBlock(&w, path, old, side{}, true, d.context)
		}
		if cur.exists() {
			b = writeBlock(&w, path, side{}, cur, true, d.context)
		}
		st = patchStats{ins: a.ins + b.ins, del: a.del + b.del, binary: a.binary || b.binary}
	} else if old.exists() || cur.exists() {
		st = writeBlock(&w, path, old, cur, changed, d.context)
	}
	fd.Additions, fd.Deletions, fd.Binary = st.ins, st.del, st.binary
	fd.Summary = summary(&fd, old, cur, changed)
	d.files = append(d.files, fd)
	if w.Len() > 0 {
		d.patches.add(path, w.Bytes())
	}
	return nil
}

// summary describes in one line a change without a line diff.
func summary(fd *FileDiff, old, cur side, changed bool) string {
	size := func(s side) string {
		if s.e == nil || s.e.Type != File {
			return ""
		}
		return strconv.FormatInt(s.e.Size, 10)
	}
	kind := func(s side) string {
		if s.big {
			return "large file"
		}
		return "binary file"
	}
	switch {
	case fd.Binary && fd.Status == Added:
		return kind(cur) + " added, " + size(cur) + " bytes"
	case fd.Binary && fd.Status == Deleted:
		return kind(old) + " deleted, " + size(old) + " bytes"
	case fd.Binary && fd.Status == Modified:
		k := kind(cur)
		if old.big {
			k = kind(old)
		}
		return k + " changed, " + size(old) + " -> " + size(cur) + " bytes"
	case fd.Binary:
		return string(fd.OldType) + " -> " + string(fd.NewType) + ", binary"
	case fd.Status == TypeChanged:
		return string(fd.OldType) + " -> " + string(fd.NewType)
	case fd.OldType == Dir || fd.NewType == Dir:
		if fd.Status == Modified {
			return "directory mode " + fd.OldMode.String() + " -> " + fd.NewMode.String()
		}
		return "directory " + string(fd.Status)
	case fd.Status == Modified && !changed:
		return "mode " + fd.OldMode.String() + " -> " + fd.NewMode.String()
	}
	return ""
}

func (d *differ) result() *Result {
	slices.SortFunc(d.files, func(a, b FileDiff) int { return strings.Compare(a.Path, b.Path) })
	r := &Result{Files: d.files}
	if r.Files == nil {
		r.Files = []FileDiff{}
	}
	omitted := d.patches.omitted()
	for i := range r.Files {
		f := &r.Files[i]
		if omitted(f.Path) {
			f.PatchOmitted = true
			r.Truncated = true
		}
		if f.OldType == Dir && f.NewType == Dir || f.OldType == Dir && f.NewType == "" || f.OldType == "" && f.NewType == Dir {
			continue
		}
		r.Totals.FilesChanged++
		r.Totals.Insertions += f.Additions
		r.Totals.Deletions += f.Deletions
	}
	r.Patch = d.patches.join()
	return r
}

// patchSet holds per-path patch text within a byte budget. Whatever the
// order paths arrive in, it ends up holding the longest run of paths, in
// path order, whose text fits: when over budget it drops the last path
// held and every later path that arrives.
type patchSet struct {
	budget  int
	total   int
	held    pathHeap // max-heap by path
	cut     string   // paths >= cut are dropped
	hasCut  bool
	dropped map[string]bool
}

type patchText struct {
	path string
	text []byte
}

func (p *patchSet) add(path string, text []byte) {
	if p.hasCut && path >= p.cut {
		p.drop(path)
		return
	}
	heap.Push(&p.held, patchText{path, text})
	p.total += len(text)
	for p.total > p.budget {
		last := heap.Pop(&p.held).(patchText)
		p.total -= len(last.text)
		p.cut, p.hasCut = last.path, true
		p.drop(last.path)
	}
}

func (p *patchSet) drop(path string) {
	if p.dropped == nil {
		p.dropped = make(map[string]bool)
	}
	p.dropped[path] = true
}

func (p *patchSet) omitted() func(string) bool {
	return func(path string) bool { return p.dropped[path] }
}

func (p *patchSet) join() []byte {
	texts := []patchText(p.held)
	slices.SortFunc(texts, func(a, b patchText) int { return strings.Compare(a.path, b.path) })
	out := make([]byte, 0, p.total)
	for _, t := range texts {
		out = append(out, t.text...)
	}
	return out
}

type pathHeap []patchText

func (h pathHeap) Len() int           { return len(h) }
func (h pathHeap) Less(i, j int) bool { return h[i].path > h[j].path }
func (h pathHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pathHeap) Push(x any)        { *h = append(*h, x.(patchText)) }
func (h *pathHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
