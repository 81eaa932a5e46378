package hostio

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrTooBig is wrapped by the errors of an export that passed one of
// its bounds (bytes, entries, names): exporting less may succeed.
var ErrTooBig = errors.New("export too big")

// ExtractOptions shape a guest → host export.
type ExtractOptions struct {
	// Overwrite lets the export replace an existing dest (file,
	// directory or symlink; a symlink is replaced, not followed).
	// Without it an existing dest is an error and nothing is read.
	Overwrite bool
	// File asks for a file export: the archive must hold exactly one
	// regular file (directory entries aside), which is written to dest
	// itself.
	File bool
	// MaxTotal caps the file bytes written (counting sparse files at
	// their full size). Zero means DefaultMaxTotal.
	MaxTotal int64
	// MaxEntries caps the archive's entries. Zero means
	// DefaultMaxEntries.
	MaxEntries int
}

// ExtractReport says what an export wrote.
type ExtractReport struct {
	Dest      string `json:"dest"`
	Files     int    `json:"files"`
	Dirs      int    `json:"dirs"`
	Symlinks  int    `json:"symlinks"`
	HardLinks int    `json:"hard_links,omitempty"`
	Bytes     int64  `json:"bytes"`
	Replaced  bool   `json:"replaced,omitempty"` // dest existed and was replaced
	// Backup is where the replaced dest was moved (beside it, named
	// NAME.pyro-backup-YYYYMMDDTHHMMSS, UTC); "" if nothing was replaced.
	Backup string `json:"backup,omitempty"`
	// SweptTemps counts the temporaries of killed exports removed from
	// dest's directory before this export began.
	SweptTemps int `json:"swept_temps,omitempty"`
	// LinksOutside lists (the first MaxReported of) the symlinks whose
	// target is absolute or climbs out of dest. They are written as the
	// guest had them and were never followed; they may point anywhere on
	// the host once dest is in place.
	LinksOutside      []string `json:"links_outside,omitempty"`
	LinksOutsideCount int      `json:"links_outside_count,omitempty"`
	// Warnings: problems that did not stop the export, such as
	// temporaries of killed exports that could not be removed.
	Warnings []string `json:"warnings,omitempty"`
}

// Extract writes the tree in the tar stream r (the guest agent's
// tar_out) to the host path dest, or, with opts.File, the single file
// in it to dest.
//
// The stream is treated as hostile. It is extracted into a new
// temporary sibling of dest (".<name>.pyro-tmp-XXXX", locked while the
// export runs; see SweepTemps), opened as an os.Root so no operation
// can resolve outside it, and no entry is ever created through a
// symlink: a name whose parent is a symlink (or a file) fails the
// export, whether the symlink came earlier in the archive or not.
// Absolute names, ".." escapes, hard links to anything but a regular
// file earlier in the archive, devices, FIFOs and unknown entry types
// fail it too, as do more than MaxTotal bytes or MaxEntries entries and
// a stream that ends without tar's end-of-archive marker. Files keep
// their permission bits only (no set-id or sticky bits); directories
// also get owner rwx, so the user can always remove what an export
// wrote; mtimes are kept, owners are not.
//
// Only when the whole stream has been read and written is the result
// renamed to dest; an existing dest (opts.Overwrite) is moved to a
// dated backup beside it (ExtractReport.Backup), never deleted. On any
// error dest is as it was and the temporary is removed. If dest exists
// and opts.Overwrite is false, Extract fails before reading anything.
func Extract(ctx context.Context, r io.Reader, dest string, opts ExtractOptions) (*ExtractReport, error) {
	if opts.MaxTotal <= 0 {
		opts.MaxTotal = DefaultMaxTotal
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	t, err := prepare(dest, opts.Overwrite)
	if err != nil {
		return nil, err
	}
	rep := &ExtractReport{Dest: t.dest}
	r = ctxReader{ctx, r}
	if opts.File {
		err = t.writeFile(func(f *os.File) (time.Time, error) { return extractOne(r, f, opts, rep) })
	} else {
		err = t.writeDir(func(root *os.Root) error {
			return newExtractor(&rootSink{root: root}, opts, rep).run(r)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("export to %s failed, and %s was left as it was: %w", t.dest, t.dest, err)
	}
	t.report(rep)
	return rep, nil
}

// MaxArchiveOverhead bounds the bytes a saved export archive may hold
// besides its files' content: headers, PAX and GNU long-name records,
// padding and the end marker. Without it a stream of entries carrying
// large PAX records (up to 1 MiB each) and no content could write
// terabytes while its files total nothing. 1 GiB leaves room for the
// headers and padding of DefaultMaxEntries small files (at most 1 KiB
// each) and names of the longest kind.
const MaxArchiveOverhead int64 = 1 << 30

// ArchiveOptions shape WriteTar.
type ArchiveOptions struct {
	// Overwrite lets the archive replace an existing file (the old one
	// goes to a backup, as with Extract).
	Overwrite bool
	// Gzip compresses the saved archive.
	Gzip bool
	// MaxTotal and MaxEntries bound the archive's files as they bound
	// Extract's (zero: the defaults).
	MaxTotal   int64
	MaxEntries int
	// MaxBytes caps the raw (uncompressed) bytes of the whole stream,
	// everything counted. Zero means MaxTotal + MaxArchiveOverhead.
	MaxBytes int64
}

// WriteTar saves the tar stream r (the guest agent's tar_out) unchanged
// (gzip-compressed with opts.Gzip) as the host file destTarPath,
// atomically, as Extract writes a file. The stream is checked entry by
// entry by the same code, with the same rules and bounds, as Extract
// checks a tree it writes, and its raw bytes are capped at MaxBytes:
// whatever Extract would refuse, or a stream past a bound, and nothing
// is written. The saved archive is as safe to extract later as Extract
// found it. An existing file is replaced (and kept as a backup) only
// with opts.Overwrite.
func WriteTar(ctx context.Context, r io.Reader, destTarPath string, opts ArchiveOptions) (*ExtractReport, error) {
	xo := ExtractOptions{MaxTotal: opts.MaxTotal, MaxEntries: opts.MaxEntries}
	if xo.MaxTotal <= 0 {
		xo.MaxTotal = DefaultMaxTotal
	}
	if xo.MaxEntries <= 0 {
		xo.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = xo.MaxTotal + MaxArchiveOverhead
	}
	t, err := prepare(destTarPath, opts.Overwrite)
	if err != nil {
		return nil, err
	}
	rep := &ExtractReport{Dest: t.dest}
	err = t.writeFile(func(f *os.File) (time.Time, error) {
		bw := bufio.NewWriterSize(f, copyBuf)
		var out io.Writer = bw
		var zw *gzip.Writer
		if opts.Gzip {
			zw = gzip.NewWriter(bw)
			out = zw
		}
		tee := &teeReader{r: ctxReader{ctx, r}, w: out, max: opts.MaxBytes}
		if err := newExtractor(checkSink{}, xo, rep).run(tee); err != nil {
			if tee.err != nil {
				return time.Time{}, tee.err
			}
			return time.Time{}, err
		}
		if zw != nil {
			if err := zw.Close(); err != nil {
				return time.Time{}, err
			}
		}
		if err := bw.Flush(); err != nil {
			return time.Time{}, err
		}
		return time.Time{}, f.Chmod(0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("saving the archive as %s failed, and %s was left as it was: %w", t.dest, t.dest, err)
	}
	t.report(rep)
	return rep, nil
}

// report copies what committing the target did into rep.
func (t *target) report(rep *ExtractReport) {
	rep.Replaced, rep.Backup, rep.Warnings = t.replaced, t.backup, t.warnings
	rep.SweptTemps = t.swept
}

// teeReader is io.TeeReader that counts the bytes it passes, fails once
// they pass max, and keeps a write (or count) error apart from the read
// errors the tar reader reports.
type teeReader struct {
	r   io.Reader
	w   io.Writer
	n   int64
	max int64
	err error
}

func (t *teeReader) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.n += int64(n)
		if t.n > t.max {
			t.err = fmt.Errorf("%w: the archive is more than %d bytes, headers and names counted", ErrTooBig, t.max)
			return 0, t.err
		}
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.err = werr
			return 0, werr
		}
	}
	return n, err
}

// extractOne writes the one regular file in the stream to f.
func extractOne(r io.Reader, f *os.File, opts ExtractOptions, rep *ExtractReport) (time.Time, error) {
	tr := newTarReader(r)
	var mtime time.Time
	found := ""
	buf := make([]byte, copyBuf)
	for entries := 0; ; entries++ {
		hdr, err := tr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return mtime, fmt.Errorf("not a valid tar stream: %w", err)
		}
		if entries >= opts.MaxEntries {
			return mtime, fmt.Errorf("%w: the archive has more than %d entries", ErrTooBig, opts.MaxEntries)
		}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader, tar.TypeDir:
			continue
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		default:
			return mtime, fmt.Errorf("a file export needs an archive holding exactly one regular file, and %q is a %s", hdr.Name, typeName(hdr.Typeflag))
		}
		if found != "" {
			return mtime, fmt.Errorf("a file export needs an archive holding exactly one regular file, and it holds %q and %q; export a directory instead", found, hdr.Name)
		}
		found = hdr.Name
		if hdr.Size > opts.MaxTotal {
			return mtime, fmt.Errorf("%q is %d bytes, more than the %d-byte limit", hdr.Name, hdr.Size, opts.MaxTotal)
		}
		n, rerr, werr := copySparse(f, tr, buf)
		if rerr != nil {
			return mtime, fmt.Errorf("not a valid tar stream: %w", rerr)
		}
		if werr != nil {
			return mtime, werr
		}
		if err := f.Chmod(os.FileMode(hdr.Mode) & fs.ModePerm); err != nil {
			return mtime, err
		}
		mtime = hdr.ModTime
		rep.Files, rep.Bytes = 1, n
	}
	if found == "" {
		return mtime, errors.New("a file export needs an archive holding exactly one regular file, and it holds none")
	}
	return mtime, nil
}

const copyBuf = 128 << 10

var zeroBlock = make([]byte, copyBuf)

// copySparse copies r into the new, empty file f, leaving all-zero
// blocks as holes, and sets f's size; it tells archive (read) errors
// from host disk (write) errors.
func copySparse(f *os.File, r io.Reader, buf []byte) (n int64, readErr, writeErr error) {
	for readErr == nil {
		k := 0
		for k < len(buf) && readErr == nil {
			var m int
			m, readErr = r.Read(buf[k:])
			k += m
		}
		if chunk := buf[:k]; !bytes.Equal(chunk, zeroBlock[:k]) {
			if _, err := f.WriteAt(chunk, n); err != nil {
				return n, nil, err
			}
		}
		n += int64(k)
	}
	if readErr != io.EOF {
		return n, readErr, nil
	}
	return n, nil, f.Truncate(n)
}

// extractor checks a hostile archive's entries and creates them in
// its sink: the host file system beneath a new, empty directory
// (rootSink, for Extract), or nowhere (checkSink, for WriteTar, which
// saves the stream as it is and must refuse exactly what Extract
// refuses).
type extractor struct {
	sink entrySink
	opts ExtractOptions
	rep  *ExtractReport

	// kinds records every name created so far and what it is: 'd'
	// directory, 'f' regular file, 'h' hard link to one, 'l' symlink.
	// Because the sink starts empty and only the extractor writes to
	// it, kinds is exactly what is there, and parents are checked
	// against it, not by following anything. A create that finds a name
	// kinds does not know means the file system aliases names (case
	// folding), and fails.
	kinds map[string]byte
	// children counts the entries kinds holds directly beneath each
	// directory: a directory with any is not replaced.
	children map[string]int
	// dirs holds the mode and mtime to give each directory at the end.
	dirs map[string]dirMeta

	total     int64
	entries   int
	nameBytes int
}

func newExtractor(sink entrySink, opts ExtractOptions, rep *ExtractReport) *extractor {
	return &extractor{sink: sink, opts: opts, rep: rep, kinds: make(map[string]byte),
		children: make(map[string]int), dirs: make(map[string]dirMeta)}
}

// Bounds on names, so a hostile archive cannot make the host walk very
// deep paths or hold gigabytes of names.
const (
	maxNameLen      = 4096 // Linux's PATH_MAX; a symlink's target must be shorter
	maxComponentLen = 255  // Linux's NAME_MAX: a longer name element cannot be created
	maxTotalNameLen = 256 << 20
)

type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time // zero: leave it
}

// entrySink is where an extractor puts the entries it has checked.
// Names are clean, relative and slash-separated; an entry's parent is
// always a directory the sink made.
type entrySink interface {
	mkdir(name string) error
	symlink(target, name string) error
	link(target, name string) error
	// file writes a new regular file from r and returns its size,
	// telling archive (read) errors from host (write) errors.
	file(name string, mode fs.FileMode, mtime time.Time, r io.Reader) (n int64, readErr, writeErr error)
	remove(name string) error
	finishDir(name string, mode fs.FileMode, mtime time.Time) error
	close()
}

func (x *extractor) run(r io.Reader) error {
	defer x.sink.close()
	tr := newTarReader(r)
	x.dirs[""] = dirMeta{mode: 0o755}
	for {
		hdr, err := tr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a valid tar stream: %w", err)
		}
		if x.entries >= x.opts.MaxEntries {
			return fmt.Errorf("%w: the archive has more than %d entries", ErrTooBig, x.opts.MaxEntries)
		}
		x.entries++
		if err := x.extract(hdr, tr); err != nil {
			return err
		}
	}
	return x.finishDirs()
}

func (x *extractor) extract(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("entry %.100q... has a name longer than %d bytes", name, maxNameLen)
	}
	for rest := name; rest != ""; {
		elem, after, _ := strings.Cut(rest, "/")
		if len(elem) > maxComponentLen {
			return fmt.Errorf("entry %.100q... has a name element longer than %d bytes", name, maxComponentLen)
		}
		rest = after
	}
	if x.nameBytes += len(name) + len(hdr.Linkname); x.nameBytes > maxTotalNameLen {
		return fmt.Errorf("%w: the archive's names total more than %d bytes", ErrTooBig, maxTotalNameLen)
	}
	mode := os.FileMode(hdr.Mode) & fs.ModePerm
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q is a %s but names the export's root", hdr.Name, typeName(hdr.Typeflag))
		}
		x.dirs[""] = dirMeta{mode | 0o700, hdr.ModTime}
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("entry %q is a %s; exports carry only files, directories and links", hdr.Name, typeName(hdr.Typeflag))
	default:
		return fmt.Errorf("entry %q has %s, which exports do not carry", hdr.Name, typeName(hdr.Typeflag))
	}
	if err := x.parents(name); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		if x.kinds[name] != 'd' {
			if err := x.replace(name); err != nil {
				return err
			}
			if err := x.mkdir(name); err != nil {
				return err
			}
		}
		x.dirs[name] = dirMeta{mode | 0o700, hdr.ModTime}
		return nil
	}
	if err := x.replace(name); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("symlink %q has an empty target", hdr.Name)
		}
		if len(hdr.Linkname) >= maxNameLen {
			return fmt.Errorf("symlink %q has a target of %d bytes or more", hdr.Name, maxNameLen)
		}
		if err := x.sink.symlink(hdr.Linkname, name); err != nil {
			return x.createErr(name, "symlink", err)
		}
		x.add(name, 'l')
		x.rep.Symlinks++
		if linkEscapes(name, hdr.Linkname) {
			x.rep.LinksOutsideCount++
			if len(x.rep.LinksOutside) < MaxReported {
				x.rep.LinksOutside = append(x.rep.LinksOutside, name+" -> "+hdr.Linkname)
			}
		}
		return nil
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("hard link %q points to %q, outside the archive", hdr.Name, hdr.Linkname)
		}
		if k := x.kinds[target]; k != 'f' && k != 'h' {
			return fmt.Errorf("hard link %q points to %q, which is not a regular file earlier in the archive", hdr.Name, hdr.Linkname)
		}
		if err := x.sink.link(target, name); err != nil {
			return x.createErr(name, "link", err)
		}
		x.add(name, 'h')
		x.rep.HardLinks++
		return nil
	}
	// A regular file.
	if hdr.Size > x.opts.MaxTotal-x.total {
		return fmt.Errorf("%w: the archive holds more than %d bytes of files (at %q, %d bytes)", ErrTooBig, x.opts.MaxTotal, hdr.Name, hdr.Size)
	}
	x.total += hdr.Size
	x.add(name, 'f') // even if it fails: the sink may have created it
	n, rerr, werr := x.sink.file(name, mode, hdr.ModTime, r)
	if rerr != nil {
		return fmt.Errorf("not a valid tar stream: %q: %w", hdr.Name, rerr)
	}
	if werr != nil {
		if errors.Is(werr, fs.ErrExist) {
			return x.createErr(name, "create", werr)
		}
		return fmt.Errorf("writing %s: %w", name, werr)
	}
	x.rep.Files++
	x.rep.Bytes += n
	return nil
}

// add records that name was created as kind.
func (x *extractor) add(name string, kind byte) {
	x.kinds[name] = kind
	x.children[parentName(name)]++
}

// parentName is the directory holding name ("" for the root).
func parentName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return ""
}

// parents makes sure every ancestor of name is a directory this
// extraction made, creating missing ones; an ancestor that is a
// symlink or a file fails the export: the archive is trying to write
// through it.
func (x *extractor) parents(name string) error {
	i := 0
	for {
		j := strings.IndexByte(name[i:], '/')
		if j < 0 {
			return nil
		}
		d := name[:i+j]
		i += j + 1
		switch x.kinds[d] {
		case 'd':
			continue
		case 'l':
			return fmt.Errorf("entry %q would be written through the symlink %q; exports never follow links", name, d)
		case 'f', 'h':
			return fmt.Errorf("entry %q would be written beneath %q, which is a file", name, d)
		}
		if err := x.mkdir(d); err != nil {
			return err
		}
		x.dirs[d] = dirMeta{mode: 0o755}
	}
}

// mkdir creates the directory name, owner-only until finishDirs.
func (x *extractor) mkdir(name string) error {
	if err := x.sink.mkdir(name); err != nil {
		return x.createErr(name, "mkdir", err)
	}
	x.add(name, 'd')
	x.rep.Dirs++
	return nil
}

// replace removes name, if an earlier entry created it, so a later
// entry can take its place, as tar does. A directory is replaced only
// while it is empty.
func (x *extractor) replace(name string) error {
	kind := x.kinds[name]
	if kind == 0 {
		return nil
	}
	if kind == 'd' && x.children[name] > 0 {
		return fmt.Errorf("entry %q would replace a directory the archive has filled", name)
	}
	if err := x.sink.remove(name); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	switch kind {
	case 'd':
		delete(x.dirs, name)
		delete(x.children, name)
		x.rep.Dirs--
	case 'l':
		x.rep.Symlinks--
	case 'f':
		x.rep.Files--
	case 'h':
		x.rep.HardLinks--
	}
	delete(x.kinds, name)
	x.children[parentName(name)]--
	return nil
}

func (x *extractor) createErr(name, op string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("entry %q collides with an earlier entry whose name differs (does the destination's file system fold case?)", name)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// finishDirs gives the directories their modes and mtimes, now that
// nothing more is written into them (children first).
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirs))
	for d := range x.dirs {
		names = append(names, d)
	}
	slices.Sort(names)
	for _, d := range slices.Backward(names) {
		m := x.dirs[d]
		if err := x.sink.finishDir(d, m.mode, m.mtime); err != nil {
			return err
		}
	}
	return nil
}

// rootSink writes entries beneath root, a new, empty directory that
// nothing else writes to.
type rootSink struct {
	root *os.Root
	// pdir is the directory last written into, kept open as proot so
	// that creating its entries does not walk the whole path each time.
	pdir  string
	proot *os.Root
	buf   []byte
}

// at returns the root to operate on name in (its parent directory,
// which the extractor has checked is a directory it made) and name's
// last element.
func (s *rootSink) at(name string) (*os.Root, string, error) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return s.root, name, nil
	}
	dir, base := name[:i], name[i+1:]
	if dir != s.pdir || s.proot == nil {
		s.close()
		r, err := s.root.OpenRoot(dir)
		if err != nil {
			return nil, "", fmt.Errorf("open %s: %w", dir, err)
		}
		s.pdir, s.proot = dir, r
	}
	return s.proot, base, nil
}

func (s *rootSink) close() {
	if s.proot != nil {
		s.proot.Close()
		s.proot, s.pdir = nil, ""
	}
}

func (s *rootSink) mkdir(name string) error {
	pr, base, err := s.at(name)
	if err != nil {
		return err
	}
	return pr.Mkdir(base, 0o700)
}

func (s *rootSink) symlink(target, name string) error {
	pr, base, err := s.at(name)
	if err != nil {
		return err
	}
	return pr.Symlink(target, base)
}

func (s *rootSink) link(target, name string) error { return s.root.Link(target, name) }

func (s *rootSink) file(name string, mode fs.FileMode, mtime time.Time, r io.Reader) (int64, error, error) {
	pr, base, err := s.at(name)
	if err != nil {
		return 0, nil, err
	}
	f, err := pr.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, nil, err
	}
	if s.buf == nil {
		s.buf = make([]byte, copyBuf)
	}
	n, rerr, werr := copySparse(f, r, s.buf)
	if werr == nil && rerr == nil {
		werr = f.Chmod(mode)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil && rerr == nil {
		werr = pr.Chtimes(base, mtime, mtime) // a regular file the extractor made
	}
	return n, rerr, werr
}

func (s *rootSink) remove(name string) error {
	if s.pdir == name || strings.HasPrefix(s.pdir, name+"/") {
		s.close()
	}
	pr, base, err := s.at(name)
	if err != nil {
		return err
	}
	return pr.Remove(base)
}

func (s *rootSink) finishDir(name string, mode fs.FileMode, mtime time.Time) error {
	if name == "" {
		name = "."
	}
	if err := s.root.Chmod(name, mode); err != nil {
		return err
	}
	if !mtime.IsZero() {
		return s.root.Chtimes(name, mtime, mtime)
	}
	return nil
}

// checkSink creates nothing: file content is read and counted only.
type checkSink struct{}

func (checkSink) mkdir(string) error           { return nil }
func (checkSink) symlink(string, string) error { return nil }
func (checkSink) link(string, string) error    { return nil }
func (checkSink) remove(string) error          { return nil }
func (checkSink) close()                       {}

func (checkSink) file(_ string, _ fs.FileMode, _ time.Time, r io.Reader) (int64, error, error) {
	n, err := io.Copy(io.Discard, r)
	return n, err, nil
}

func (checkSink) finishDir(string, fs.FileMode, time.Time) error { return nil }
