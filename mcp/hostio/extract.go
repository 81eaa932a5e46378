package hostio

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

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
	// LinksOutside lists (the first MaxReported of) the symlinks whose
	// target is absolute or climbs out of dest. They are written as the
	// guest had them and were never followed; they may point anywhere on
	// the host once dest is in place.
	LinksOutside      []string `json:"links_outside,omitempty"`
	LinksOutsideCount int      `json:"links_outside_count,omitempty"`
	// Warnings: problems that did not stop the export, such as an old
	// dest that could not be fully removed after it was replaced.
	Warnings []string `json:"warnings,omitempty"`
}

// Extract writes the tree in the tar stream r (the guest agent's
// tar_out) to the host path dest, or, with opts.File, the single file
// in it to dest.
//
// The stream is treated as hostile. It is extracted into a new
// temporary sibling of dest (".<name>.pyro-tmp-XXXX"), opened as an
// os.Root so no operation can resolve outside it, and no entry is ever
// created through a symlink: a name whose parent is a symlink (or a
// file) fails the export, whether the symlink came earlier in the
// archive or not. Absolute names, ".." escapes, hard links to anything
// but a regular file earlier in the archive, devices, FIFOs and unknown
// entry types fail it too, as do more than MaxTotal bytes or MaxEntries
// entries and a stream that ends without tar's end-of-archive marker.
// Files keep their permission bits only (no set-id or sticky bits);
// directories also get owner rwx, so the user can always remove what an
// export wrote; mtimes are kept, owners are not.
//
// Only when the whole stream has been read and written is the result
// renamed to dest; an existing dest (opts.Overwrite) is first renamed
// aside and removed afterwards. On any error dest is as it was and the
// temporary is removed. If dest exists and opts.Overwrite is false,
// Extract fails before reading anything.
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
			x := &extractor{root: root, opts: opts, rep: rep, kinds: make(map[string]byte), dirs: make(map[string]dirMeta)}
			return x.run(r)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("export to %s failed, and %s was left as it was: %w", t.dest, t.dest, err)
	}
	rep.Replaced, rep.Warnings = t.replaced, t.warnings
	return rep, nil
}

// WriteTar saves the tar stream r (the guest agent's tar_out) unchanged
// as the host file destTarPath, atomically, as Extract writes a file.
// The whole stream must parse as tar, end with the end-of-archive
// marker, stay within DefaultMaxTotal file bytes and DefaultMaxEntries
// entries, hold only directories, regular files and links, and name
// nothing absolute or outside its root, or nothing is written: the
// saved archive is as safe to extract later as Extract would find it.
// An existing file is replaced only if overwrite.
func WriteTar(ctx context.Context, r io.Reader, destTarPath string, overwrite bool) (*ExtractReport, error) {
	t, err := prepare(destTarPath, overwrite)
	if err != nil {
		return nil, err
	}
	rep := &ExtractReport{Dest: t.dest}
	err = t.writeFile(func(f *os.File) (time.Time, error) {
		bw := bufio.NewWriterSize(f, 128<<10)
		tee := &teeReader{r: ctxReader{ctx, r}, w: bw}
		tr := newTarReader(tee)
		for entries := 0; ; entries++ {
			hdr, err := tr.next()
			if tee.err != nil {
				return time.Time{}, tee.err
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return time.Time{}, fmt.Errorf("not a valid tar stream: %w", err)
			}
			if entries >= DefaultMaxEntries {
				return time.Time{}, fmt.Errorf("the archive has more than %d entries", DefaultMaxEntries)
			}
			if hdr.Typeflag == tar.TypeXGlobalHeader {
				continue
			}
			if _, err := cleanName(hdr.Name); err != nil {
				return time.Time{}, err
			}
			switch hdr.Typeflag {
			case tar.TypeDir:
				rep.Dirs++
			case tar.TypeSymlink:
				rep.Symlinks++
			case tar.TypeLink:
				if t, err := cleanName(hdr.Linkname); err != nil || t == "" {
					return time.Time{}, fmt.Errorf("hard link %q points to %q, outside the archive", hdr.Name, hdr.Linkname)
				}
				rep.HardLinks++
			case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
				rep.Files++
			default:
				return time.Time{}, fmt.Errorf("entry %q is a %s; exports carry only files, directories and links", hdr.Name, typeName(hdr.Typeflag))
			}
			rep.Bytes += hdr.Size
			if rep.Bytes > DefaultMaxTotal {
				return time.Time{}, fmt.Errorf("the archive holds more than %d bytes of files", DefaultMaxTotal)
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
	rep.Replaced, rep.Warnings = t.replaced, t.warnings
	return rep, nil
}

// teeReader is io.TeeReader that keeps a write error apart from the
// read errors the tar reader reports.
type teeReader struct {
	r   io.Reader
	w   io.Writer
	err error
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 && t.err == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.err = werr
			return n, werr
		}
	}
	return n, err
}

// target is a host destination being written through a temporary
// sibling.
type target struct {
	dest, parent, base string
	overwrite          bool

	replaced bool
	warnings []string
}

// prepare checks dest before anything is read or written.
func prepare(dest string, overwrite bool) (*target, error) {
	abs, err := HostPath(dest)
	if err != nil {
		return nil, err
	}
	parent, base := filepath.Split(abs)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("%s cannot be a destination; name a file or directory to create", abs)
	}
	if _, err := os.Lstat(abs); err == nil {
		if !overwrite {
			return nil, fmt.Errorf("%s exists; pass overwrite: true to replace it", abs)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if fi, err := os.Stat(parent); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s: %s is not a directory", abs, parent)
	}
	return &target{dest: abs, parent: filepath.Clean(parent), base: base, overwrite: overwrite}, nil
}

func (t *target) tmpPattern() string { return "." + t.base + ".pyro-tmp-" }

// writeDir runs fill on a new temporary directory and moves it to dest.
func (t *target) writeDir(fill func(*os.Root) error) error {
	if err := os.MkdirAll(t.parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(t.parent, t.tmpPattern())
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	err = fill(root)
	if cerr := root.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := t.commit(tmp, true); err != nil {
		return err
	}
	done = true
	return nil
}

// writeFile runs fill on a new temporary file and moves it to dest; fill
// returns the mtime to give it (zero: leave it).
func (t *target) writeFile(fill func(*os.File) (time.Time, error)) error {
	if err := os.MkdirAll(t.parent, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(t.parent, t.tmpPattern()+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			os.Remove(tmp)
		}
	}()
	mtime, err := fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(tmp, mtime, mtime)
	}
	if err != nil {
		return err
	}
	if err := t.commit(tmp, false); err != nil {
		return err
	}
	done = true
	return nil
}

// commit renames tmp to dest. A file replaces a file in one rename;
// otherwise an existing dest is first renamed into a new temporary
// directory beside it, restored if the rename of tmp fails, and removed
// once tmp is in place.
func (t *target) commit(tmp string, isDir bool) error {
	old, err := os.Lstat(t.dest)
	if errors.Is(err, fs.ErrNotExist) {
		return os.Rename(tmp, t.dest)
	}
	if err != nil {
		return err
	}
	if !t.overwrite {
		return fmt.Errorf("%s appeared while exporting; pass overwrite: true to replace it", t.dest)
	}
	t.replaced = true
	if !isDir && old.Mode().IsRegular() {
		return os.Rename(tmp, t.dest)
	}
	aside, err := os.MkdirTemp(t.parent, "."+t.base+".pyro-old-")
	if err != nil {
		return err
	}
	asideDest := filepath.Join(aside, t.base)
	if err := os.Rename(t.dest, asideDest); err != nil {
		os.Remove(aside)
		return fmt.Errorf("moving the old %s aside: %w", t.dest, err)
	}
	if err := os.Rename(tmp, t.dest); err != nil {
		if rerr := os.Rename(asideDest, t.dest); rerr != nil {
			return fmt.Errorf("%w; and restoring the old %s failed (%v): it is in %s", err, t.dest, rerr, aside)
		}
		os.Remove(aside)
		return err
	}
	if err := removeAllWritable(aside); err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("the old %s was replaced but not fully removed from %s: %v", t.dest, aside, err))
	}
	return nil
}

// removeAllWritable is os.RemoveAll that first makes directories
// writable, so a read-only directory in the old tree does not keep it.
func removeAllWritable(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
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
			return mtime, fmt.Errorf("the archive has more than %d entries", opts.MaxEntries)
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

// extractor creates a hostile archive's entries beneath root, a new,
// empty directory that nothing else writes to.
type extractor struct {
	root *os.Root
	opts ExtractOptions
	rep  *ExtractReport

	// kinds records every name created so far beneath root and what it
	// is: 'd' directory, 'f' regular file, 'h' hard link to one, 'l'
	// symlink. Because root
	// starts empty and only the extractor writes to it, kinds is exactly
	// what is on disk, and parents are checked against it, not by
	// following anything. A create that finds a name kinds does not know
	// means the file system aliases names (case folding), and fails.
	kinds map[string]byte
	// dirs holds the mode and mtime to give each directory at the end.
	dirs map[string]dirMeta

	// pdir is the directory last written into, kept open as proot so
	// that creating its entries does not walk the whole path each time.
	pdir  string
	proot *os.Root

	total     int64
	entries   int
	nameBytes int
	buf       []byte
}

// Bounds on names, so a hostile archive cannot make the host walk very
// deep paths or hold gigabytes of names.
const (
	maxNameLen      = 4096 // Linux's PATH_MAX
	maxTotalNameLen = 256 << 20
)

// at returns the root to operate on name in (its parent directory,
// which parents has checked is a directory this extraction made) and
// name's last element.
func (x *extractor) at(name string) (*os.Root, string, error) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return x.root, name, nil
	}
	dir, base := name[:i], name[i+1:]
	if dir != x.pdir || x.proot == nil {
		x.closeParent()
		r, err := x.root.OpenRoot(dir)
		if err != nil {
			return nil, "", fmt.Errorf("open %s: %w", dir, err)
		}
		x.pdir, x.proot = dir, r
	}
	return x.proot, base, nil
}

func (x *extractor) closeParent() {
	if x.proot != nil {
		x.proot.Close()
		x.proot, x.pdir = nil, ""
	}
}

type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time // zero: leave it
}

func (x *extractor) run(r io.Reader) error {
	defer x.closeParent()
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
			return fmt.Errorf("the archive has more than %d entries", x.opts.MaxEntries)
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
	if x.nameBytes += len(name); x.nameBytes > maxTotalNameLen {
		return fmt.Errorf("the archive's names total more than %d bytes", maxTotalNameLen)
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
	pr, base, err := x.at(name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("symlink %q has an empty target", hdr.Name)
		}
		if err := pr.Symlink(hdr.Linkname, base); err != nil {
			return x.createErr(name, "symlink", err)
		}
		x.kinds[name] = 'l'
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
		if err := x.root.Link(target, name); err != nil {
			return x.createErr(name, "link", err)
		}
		x.kinds[name] = 'h'
		x.rep.HardLinks++
		return nil
	}
	// A regular file.
	if hdr.Size > x.opts.MaxTotal-x.total {
		return fmt.Errorf("the archive holds more than %d bytes of files (at %q, %d bytes)", x.opts.MaxTotal, hdr.Name, hdr.Size)
	}
	x.total += hdr.Size
	f, err := pr.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return x.createErr(name, "create", err)
	}
	x.kinds[name] = 'f'
	if x.buf == nil {
		x.buf = make([]byte, copyBuf)
	}
	n, rerr, werr := copySparse(f, r, x.buf)
	if werr == nil && rerr == nil {
		werr = f.Chmod(mode)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if rerr != nil {
		return fmt.Errorf("not a valid tar stream: %q: %w", hdr.Name, rerr)
	}
	if werr == nil {
		werr = pr.Chtimes(base, hdr.ModTime, hdr.ModTime) // a regular file, per kinds
	}
	if werr != nil {
		return fmt.Errorf("writing %s: %w", name, werr)
	}
	x.rep.Files++
	x.rep.Bytes += n
	return nil
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
		case 'f':
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
	pr, base, err := x.at(name)
	if err != nil {
		return err
	}
	if err := pr.Mkdir(base, 0o700); err != nil {
		return x.createErr(name, "mkdir", err)
	}
	x.kinds[name] = 'd'
	x.rep.Dirs++
	return nil
}

// replace removes name, if an earlier entry created it, so a later
// entry can take its place, as tar does. A directory is replaced only
// while it is empty.
func (x *extractor) replace(name string) error {
	if x.kinds[name] == 0 {
		return nil
	}
	if x.pdir == name || strings.HasPrefix(x.pdir, name+"/") {
		x.closeParent()
	}
	pr, base, err := x.at(name)
	if err != nil {
		return err
	}
	if err := pr.Remove(base); err != nil {
		if x.kinds[name] == 'd' {
			return fmt.Errorf("entry %q would replace a directory the archive has filled", name)
		}
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	switch x.kinds[name] {
	case 'd':
		delete(x.dirs, name)
		x.rep.Dirs--
	case 'l':
		x.rep.Symlinks--
	case 'f':
		x.rep.Files--
	case 'h':
		x.rep.HardLinks--
	}
	delete(x.kinds, name)
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
		name := d
		if name == "" {
			name = "."
		}
		if err := x.root.Chmod(name, m.mode); err != nil {
			return err
		}
		if !m.mtime.IsZero() {
			if err := x.root.Chtimes(name, m.mtime, m.mtime); err != nil {
				return err
			}
		}
	}
	return nil
}
