package hostio

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Limits that apply when an option is left zero.
const (
	// DefaultMaxFileSize is the largest single file seeding sends; larger
	// files are skipped and reported.
	DefaultMaxFileSize int64 = 256 << 20
	// DefaultMaxTotal caps the file bytes one crossing moves, either way.
	DefaultMaxTotal int64 = 2 << 30
	// DefaultMaxEntries caps the entries one crossing moves, either way.
	DefaultMaxEntries = 1 << 20
	// MaxReported is how many skipped entries a Report lists by name;
	// the rest are only counted.
	MaxReported = 100
)

// SeedOptions shape a host → guest tar stream.
type SeedOptions struct {
	// MaxFileSize: files larger than this are skipped and reported.
	// Zero means DefaultMaxFileSize; negative means no limit.
	MaxFileSize int64
	// MaxTotal: if the files sent would exceed this many bytes, seeding
	// stops with an error. Zero means DefaultMaxTotal.
	MaxTotal int64
	// MaxEntries: more entries than this stop seeding with an error.
	// Zero means DefaultMaxEntries.
	MaxEntries int
	// Exclude, if set, is asked about every entry by its slash-separated
	// name relative to the source; returning true leaves it out (a
	// directory with all it holds). Excluded entries are counted, not
	// listed.
	Exclude func(rel string, fi fs.FileInfo) bool
}

func (o SeedOptions) withDefaults() SeedOptions {
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxTotal <= 0 {
		o.MaxTotal = DefaultMaxTotal
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Skip names an entry that was left out, or sent altered, and why.
type Skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Report says what a host → guest stream carried and what it left out.
type Report struct {
	Files     int   `json:"files"`
	Dirs      int   `json:"dirs"`
	Symlinks  int   `json:"symlinks"`
	HardLinks int   `json:"hard_links,omitempty"`
	Bytes     int64 `json:"bytes"` // file content sent
	Excluded  int   `json:"excluded,omitempty"`
	// Skipped lists the first MaxReported entries left out and why;
	// SkippedCount counts them all.
	Skipped      []Skip `json:"skipped,omitempty"`
	SkippedCount int    `json:"skipped_count,omitempty"`
	// Changed lists files that changed size while they were read: the
	// stream holds exactly the size first seen, cut short or padded
	// with zeros, so the guest's copy may differ from the host's.
	Changed []Skip `json:"changed,omitempty"`
}

func (r *Report) skip(name, reason string) {
	r.SkippedCount++
	if len(r.Skipped) < MaxReported {
		r.Skipped = append(r.Skipped, Skip{name, reason})
	}
}

// seeder writes a normalised tar stream: names relative and clean,
// modes reduced to permission bits, owners zeroed, mtimes in whole
// seconds, so the same tree gives the same bytes.
type seeder struct {
	ctx     context.Context
	tw      *tar.Writer
	opts    SeedOptions
	rep     *Report
	entries int
	buf     []byte
}

func newSeeder(ctx context.Context, w io.Writer, opts SeedOptions) *seeder {
	return &seeder{ctx: ctx, tw: tar.NewWriter(w), opts: opts.withDefaults(), rep: &Report{}}
}

func (s *seeder) header(h *tar.Header) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if s.entries >= s.opts.MaxEntries {
		return fmt.Errorf("more than %d entries; exclude some paths or seed a smaller directory", s.opts.MaxEntries)
	}
	s.entries++
	h.ModTime = h.ModTime.Truncate(time.Second)
	if err := s.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("writing tar header for %s: %w", h.Name, err)
	}
	return nil
}

func (s *seeder) dir(rel string, mode fs.FileMode, mtime time.Time) error {
	s.rep.Dirs++
	return s.header(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: int64(mode.Perm()), ModTime: mtime})
}

func (s *seeder) symlink(rel, target string, mtime time.Time) error {
	s.rep.Symlinks++
	return s.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: target, Mode: 0o777, ModTime: mtime})
}

// tooBig reports whether a file of size bytes is skipped, and fails if
// sending it would pass MaxTotal.
func (s *seeder) tooBig(rel string, size int64) (bool, error) {
	if s.opts.MaxFileSize >= 0 && size > s.opts.MaxFileSize {
		s.rep.skip(rel, fmt.Sprintf("%d bytes, larger than the %d-byte file limit", size, s.opts.MaxFileSize))
		return true, nil
	}
	if size > s.opts.MaxTotal-s.rep.Bytes {
		return false, fmt.Errorf("the files would pass the %d-byte limit at %s (%d bytes); exclude large paths or seed a smaller directory", s.opts.MaxTotal, rel, size)
	}
	return false, nil
}

// hostFile sends the regular file at abs. Problems opening it skip it;
// a file that changes while read is sent at the size first seen.
func (s *seeder) hostFile(rel, abs string) error {
	f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		s.rep.skip(rel, openReason(err))
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.rep.skip(rel, err.Error())
		return nil
	}
	if !fi.Mode().IsRegular() {
		s.rep.skip(rel, "replaced by a "+kindName(fi.Mode())+" while being read")
		return nil
	}
	size := fi.Size()
	if skip, err := s.tooBig(rel, size); skip || err != nil {
		return err
	}
	if err := s.header(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Size: size, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	if err := s.copyExact(rel, f, size); err != nil {
		return err
	}
	s.rep.Files++
	s.rep.Bytes += size
	return nil
}

// copyExact sends exactly size bytes of r, which the file's header
// promised: a file that shrinks, or fails, is padded with zeros, and one
// that grows is cut short; either is noted in the Report, so a changing
// file never corrupts the stream.
func (s *seeder) copyExact(rel string, r io.Reader, size int64) error {
	if s.buf == nil {
		s.buf = make([]byte, 128<<10)
	}
	var n int64
	var rerr error
	for n < size && rerr == nil {
		var k int
		k, rerr = r.Read(s.buf[:min(int64(len(s.buf)), size-n)])
		if k > 0 {
			if _, err := s.tw.Write(s.buf[:k]); err != nil {
				return fmt.Errorf("writing %s: %w", rel, err)
			}
			n += int64(k)
		}
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	if n < size {
		clear(s.buf)
		for n < size {
			k := min(int64(len(s.buf)), size-n)
			if _, err := s.tw.Write(s.buf[:k]); err != nil {
				return fmt.Errorf("writing %s: %w", rel, err)
			}
			n += k
		}
		why := "shrank while being read"
		if rerr != nil && rerr != io.EOF {
			why = "read failed (" + rerr.Error() + ")"
		}
		s.rep.Changed = appendCapped(s.rep.Changed, Skip{rel, fmt.Sprintf("%s; sent %d bytes, the end as zeros", why, size)})
	} else if k, _ := r.Read(s.buf[:1]); k > 0 {
		s.rep.Changed = appendCapped(s.rep.Changed, Skip{rel, fmt.Sprintf("grew while being read; sent its first %d bytes", size)})
	}
	return nil
}

func appendCapped(l []Skip, s Skip) []Skip {
	if len(l) < MaxReported {
		l = append(l, s)
	}
	return l
}

func (s *seeder) finish() error {
	if err := s.tw.Close(); err != nil {
		return fmt.Errorf("finishing tar stream: %w", err)
	}
	return nil
}

func openReason(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, fs.ErrNotExist):
		return "removed while seeding"
	case errors.Is(err, syscall.ELOOP):
		return "replaced by a symlink while seeding"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// kindName names a file type that cannot be sent.
func kindName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "regular file"
	}
	return "file of an unsupported type"
}

// TarDir writes the tree under the host directory dir to w as a tar
// stream, names relative to dir, for the guest agent's tar_in. The walk
// is sorted, so the same tree gives the same bytes. Directories, regular
// files and symlinks are sent (symlinks as links, never followed, so
// loops cannot trap the walk; a symlink named as dir itself is
// followed); sockets, FIFOs, devices, unreadable files and directories
// and files over MaxFileSize are skipped and listed in the Report.
// Files hard-linked on the host are sent as separate copies. Modes
// keep their permission bits only, owners are zeroed and mtimes are
// kept to the second. Passing MaxTotal or MaxEntries is an error; the
// stream is then left unfinished (no end-of-archive marker), and the
// caller must abort the transfer rather than close it.
func TarDir(ctx context.Context, w io.Writer, dir string, opts SeedOptions) (*Report, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("seed from %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("seed from %s: not a directory", dir)
	}
	s := newSeeder(ctx, w, opts)
	names, err := readDirNames(dir, false)
	if err != nil {
		return s.rep, fmt.Errorf("seed from %s: %w", dir, err)
	}
	if err := s.walk(dir, "", names); err != nil {
		return s.rep, fmt.Errorf("seed from %s: %w", dir, err)
	}
	return s.rep, s.finish()
}

// readDirNames lists a directory, sorted.
func readDirNames(abs string, nofollow bool) ([]string, error) {
	flag := os.O_RDONLY | syscall.O_DIRECTORY
	if nofollow {
		flag |= syscall.O_NOFOLLOW
	}
	d, err := os.OpenFile(abs, flag, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// walk sends the entries of the directory abs (named rel in the stream),
// whose sorted names are given.
func (s *seeder) walk(abs, rel string, names []string) error {
	for _, name := range names {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		cabs, crel := filepath.Join(abs, name), path.Join(rel, name)
		fi, err := os.Lstat(cabs)
		if err != nil {
			s.rep.skip(crel, openReason(err))
			continue
		}
		if s.opts.Exclude != nil && s.opts.Exclude(crel, fi) {
			s.rep.Excluded++
			continue
		}
		m := fi.Mode()
		switch {
		case m.IsDir():
			sub, err := readDirNames(cabs, true)
			if err != nil {
				s.rep.skip(crel+"/", "directory not read: "+openReason(err))
				continue
			}
			if err := s.dir(crel, m, fi.ModTime()); err != nil {
				return err
			}
			if err := s.walk(cabs, crel, sub); err != nil {
				return err
			}
		case m&fs.ModeSymlink != 0:
			target, err := os.Readlink(cabs)
			if err != nil {
				s.rep.skip(crel, openReason(err))
				continue
			}
			if err := s.symlink(crel, target, fi.ModTime()); err != nil {
				return err
			}
		case m.IsRegular():
			if err := s.hostFile(crel, cabs); err != nil {
				return err
			}
		default:
			s.rep.skip(crel, kindName(m))
		}
	}
	return nil
}
