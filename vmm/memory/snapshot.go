package memory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A memory snapshot file is the guest's RAM as one flat image: its regions
// back to back (RAM below the MMIO hole, then RAM from 4 GiB), Size() bytes,
// with no header. Pages that hold only zeros are holes in the file, so a
// guest that touched 100 MiB of a 2 GiB RAM makes a file that occupies
// about 100 MiB of disk. The layout (size and hole) is kept elsewhere, in the
// snapshot's state file; Open needs it to split the image again.

// pageSize is the unit Save scans and counts in: the x86 base page.
const pageSize = 4096

// saveBatch is how many pages Save asks /proc/self/pagemap about at once (64
// KiB of pagemap for 32 MiB of guest memory).
const saveBatch = 8192

// maxRun bounds one pwrite, so the bytes just checked for zeros are still in
// the cache when they are written.
const maxRun = 1 << 20

var zeroPage [pageSize]byte

// SaveStats says what Save did with each 4 KiB page of the guest's RAM:
// Pages = Written + ZeroSkipped + Untouched.
type SaveStats struct {
	Pages       uint64 // pages in the guest's RAM
	Written     uint64 // pages that held data, written to the file
	ZeroSkipped uint64 // pages read and found all zeros, left as holes
	Untouched   uint64 // pages skipped unread: never touched, so zeros
	Bytes       int64  // bytes written to the file
}

// Save writes the guest's RAM (its whole mapping, regions back to back,
// Size() bytes) to a new sparse file at path, replacing any file there.
//
// The file is created as path+".tmp" (O_EXCL: a leftover from a save that
// crashed, or one still running, makes Save fail and is left alone), sized to
// Size(), and only pages holding non-zero bytes are written, consecutive ones
// with one pwrite. It is fsync'd and renamed to path, and the directory
// fsync'd. On error nothing is left at path or at path+".tmp".
//
// Pages the guest never touched are skipped without reading them (which
// would fault them in): /proc/self/pagemap says which pages of the mapping
// are present or swapped out. For memory opened from a file (Open) a page
// that is neither still holds the file's bytes, so it is skipped only where
// that file has a hole (SEEK_DATA), and read otherwise. Every other page is
// read and checked for zeros.
//
// Call Save only while nothing writes the guest's memory: no vCPU runs and
// no device works on it.
func (g *Guest) Save(path string) (st SaveStats, err error) {
	for _, r := range g.regions {
		if hostAddr(r.Host)%pageSize != 0 || len(r.Host)%pageSize != 0 {
			return st, fmt.Errorf("save guest memory: region at %#x is not whole 4 KiB pages", r.GuestAddr)
		}
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return st, fmt.Errorf("save guest memory: %s already exists: another save is writing it, or one was interrupted (remove it if none runs)", tmp)
	}
	if err != nil {
		return st, fmt.Errorf("save guest memory: %w", err)
	}
	renamed := false
	defer func() {
		if err == nil {
			return
		}
		f.Close()
		if renamed {
			os.Remove(path)
		} else {
			os.Remove(tmp)
		}
		err = fmt.Errorf("save guest memory to %s: %w", path, err)
	}()
	if err := f.Truncate(int64(g.Size())); err != nil {
		return st, err
	}
	pm := openPagemap()
	defer pm.Close()
	s := saver{g: g, out: f, pm: pm, touched: make([]bool, saveBatch)}
	if g.file != nil {
		s.holes = &holeFinder{f: g.file, size: int64(g.Size())}
	}
	var off int64
	for _, r := range g.regions {
		if err := s.region(r.Host, off); err != nil {
			return s.st, err
		}
		off += int64(len(r.Host))
	}
	st = s.st
	if err := f.Sync(); err != nil {
		return st, err
	}
	if err := f.Close(); err != nil {
		return st, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return st, err
	}
	renamed = true
	return st, syncDir(filepath.Dir(path))
}

// saver is one Save's scan of the guest's pages.
type saver struct {
	g       *Guest
	out     *os.File
	pm      *pagemap
	holes   *holeFinder // the backing file's holes, for memory from Open
	touched []bool
	st      SaveStats
}

// region saves the host bytes m, which go at file offset off.
func (s *saver) region(m []byte, off int64) error {
	runStart, runEnd := 0, 0 // the pending run of data pages, [start, end) in m
	flush := func() error {
		if runEnd > runStart {
			if _, err := s.out.WriteAt(m[runStart:runEnd], off+int64(runStart)); err != nil {
				return err
			}
			s.st.Bytes += int64(runEnd - runStart)
		}
		runStart, runEnd = 0, 0
		return nil
	}
	base := hostAddr(m)
	for first := 0; first < len(m); first += saveBatch * pageSize {
		touched := s.touched[:min(saveBatch, (len(m)-first)/pageSize)]
		if err := s.pm.touched(base+uintptr(first), touched); err != nil {
			return err
		}
		for i, t := range touched {
			p := first + i*pageSize
			s.st.Pages++
			if !t {
				hole := true
				if s.holes != nil {
					var err error
					if hole, err = s.holes.isHole(off + int64(p)); err != nil {
						return err
					}
				}
				if hole {
					s.st.Untouched++
					if err := flush(); err != nil {
						return err
					}
					continue
				}
			}
			if bytes.Equal(m[p:p+pageSize], zeroPage[:]) {
				s.st.ZeroSkipped++
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			s.st.Written++
			if runEnd != p || runEnd-runStart >= maxRun {
				if err := flush(); err != nil {
					return err
				}
				runStart = p
			}
			runEnd = p + pageSize
		}
	}
	return flush()
}

// holeFinder answers, for rising offsets, whether a page of a file lies in a
// hole, with SEEK_DATA and SEEK_HOLE. It remembers the last answer: the file
// has no data in [last query, dataStart) and data in [dataStart, dataEnd).
type holeFinder struct {
	f                  *os.File
	size               int64
	dataStart, dataEnd int64
}

func (h *holeFinder) isHole(off int64) (bool, error) {
	if off >= h.dataEnd {
		h.dataStart, h.dataEnd = h.size, h.size
		start, err := h.f.Seek(off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			// No data from off to the end of the file.
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
			// The file system cannot tell: take the rest as data.
			h.dataStart = off
		case err != nil:
			return false, fmt.Errorf("find data in %s: %w", h.f.Name(), err)
		default:
			h.dataStart = start
			end, err := h.f.Seek(start, unix.SEEK_HOLE)
			if err != nil {
				return false, fmt.Errorf("find holes in %s: %w", h.f.Name(), err)
			}
			h.dataEnd = end
		}
		if h.dataStart < off {
			h.dataStart = off
		}
		if h.dataEnd <= off {
			h.dataEnd = h.size
		}
	}
	return off+pageSize <= h.dataStart, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open maps the memory snapshot file at path as the guest's RAM, laid out by
// l. The file must be exactly l.Size bytes.
//
// The mapping is private (copy-on-write) and MAP_NORESERVE: the guest's
// writes go to anonymous pages of this process and never reach the file,
// which Open opens read-only. Pages the guest never writes stay shared, through
// the page cache, with every other mapping of the file, so several guests
// restored from one snapshot share the memory they only read. The file must
// not shrink while the guest runs (a page past its end would fault the host).
func Open(l Layout, path string) (*Guest, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open guest memory: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open guest memory: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open guest memory: %s is not a regular file", path)
	}
	if fi.Size() < 0 || uint64(fi.Size()) != l.Size {
		f.Close()
		return nil, fmt.Errorf("open guest memory: %s is %d bytes, the guest's RAM is %d bytes", path, fi.Size(), l.Size)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(l.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %d MiB of guest memory from %s: %w", l.Size>>20, path, err)
	}
	g := split(m, l)
	g.file, g.backing = f, path
	return g, nil
}

// Backing is the file the memory was opened from (Open), or "" for
// anonymous memory (New).
func (g *Guest) Backing() string { return g.backing }

// CachedPages is how many pages of the memory image at path the host's
// page cache holds now: what the guests restored from it share.
func CachedPages(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+pageSize-1)/pageSize)
	if err := mincore(m, vec); err != nil {
		return 0, err
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n, nil
}
