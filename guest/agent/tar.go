package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// tarOut streams a directory as a tar archive in Data frames: directories,
// regular files and symlinks with their modes, owners and mtimes (to the
// second), names relative to the directory. Sockets, devices and FIFOs
// are left out, hard links are stored as separate files, and the walk
// stays on the directory's file system (like tar --one-file-system), so
// /proc and friends never end up in an archive of /.
func (s *Server) tarOut(st *stream, req *proto.TarOutArgs) (*proto.TarResult, error) {
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	top, err := t.open(rel, req.Path, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	rfi, err := statAt(top, "")
	if err != nil {
		unix.Close(top)
		return nil, &fs.PathError{Op: "tar_out", Path: req.Path, Err: err}
	}
	dev := rfi.st.Dev
	bw := bufio.NewWriterSize(frameWriter{st.enc, proto.FrameData}, proto.ChunkSize)
	tw := tar.NewWriter(bw)
	var res proto.TarResult
	// entry archives name in dirfd, rel its archive path; a directory's
	// contents follow it, in name order (as filepath.WalkDir).
	var walk func(dirfd int, rel string) error
	entry := func(dirfd int, name, rel string) error {
		fi, err := statAt(dirfd, name)
		if err != nil {
			return nil // vanished
		}
		var link string
		var f *os.File
		switch m := fi.Mode(); {
		case m.IsDir():
			if err := tw.WriteHeader(tarHeader(fi, rel, "")); err != nil {
				return err
			}
			res.Entries++
			if fi.st.Dev != dev {
				return nil // a mount point: the directory, not its contents
			}
			sub, err := openChildDir(dirfd, name)
			if err != nil {
				return nil // unreadable, or replaced since the stat
			}
			return walk(sub, rel+"/")
		case m&fs.ModeSymlink != 0:
			if link = readlinkAt(dirfd, name); link == "" {
				return nil
			}
		case m.IsRegular():
			fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				if err == unix.ENOENT {
					return nil
				}
				return fmt.Errorf("opening %s: %w", rel, err)
			}
			f = os.NewFile(uintptr(fd), rel)
			defer f.Close()
			// What was opened is what is archived: its size, not the
			// name's a moment before.
			if ffi, err := f.Stat(); err == nil && ffi.Mode().IsRegular() {
				fi.st.Size = ffi.Size()
			}
		default:
			return nil
		}
		hdr := tarHeader(fi, rel, link)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		res.Entries++
		if f != nil {
			// The file may change under us: send exactly the size in the
			// header, padding with zeros if it shrank.
			n, err := io.CopyN(tw, f, hdr.Size)
			if err != nil && err != io.EOF {
				return fmt.Errorf("reading %s: %w", rel, err)
			}
			if n < hdr.Size {
				if _, err := io.CopyN(tw, zeros{}, hdr.Size-n); err != nil {
					return err
				}
			}
			res.Bytes += hdr.Size
		}
		return nil
	}
	walk = func(dirfd int, prefix string) error {
		defer unix.Close(dirfd)
		names, err := dirNames(dirfd)
		if err != nil && prefix == "" {
			return &fs.PathError{Op: "tar_out", Path: req.Path, Err: err}
		}
		for _, name := range names {
			if err := entry(dirfd, name, prefix+name); err != nil {
				return err
			}
		}
		return nil
	}
	err = walk(top, "")
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func tarHeader(fi fs.FileInfo, name, link string) *tar.Header {
	hdr, _ := tar.FileInfoHeader(fi, link) // cannot fail for dirs, files and symlinks
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Mode = int64(fileInfo("", fi, "").Mode)
	return hdr
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// maxTarDirs bounds the directories whose mode and mtime tarIn applies at
// the end.
const maxTarDirs = 1 << 20

// tarIn extracts the uploaded tar archive into a directory. Every entry
// is created with *at system calls relative to a directory opened with
// openat2(RESOLVE_BENEATH), so no name, "..", absolute path or symlink
// (from the archive or already on disk) can make it land outside the
// target; such entries fail the request with a message naming them.
func (s *Server) tarIn(st *stream, req *proto.TarInArgs) (*proto.TarResult, error) {
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	rootfd, err := t.mkdirAll(rel, req.Path)
	t.close()
	if err != nil {
		return nil, err
	}
	x := &extractor{root: rootfd, dir: req.Path, maxEntry: s.maxTarEntry}
	defer x.close()
	up := &uploadReader{dec: st.dec}
	tr := tar.NewReader(up)
	var res proto.TarResult
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, x.tarError(err, up)
		}
		n, err := x.extract(hdr, tr)
		var se streamError
		if errors.As(err, &se) {
			return nil, x.tarError(se.err, up)
		}
		if err != nil {
			return nil, err
		}
		if n >= 0 {
			res.Entries++
			res.Bytes += n
		}
	}
	if err := x.finishDirs(); err != nil {
		return nil, err
	}
	// Consume the rest of the upload (tar padding) up to End.
	if _, err := io.CopyN(io.Discard, up, 1<<20); err != nil && err != io.EOF {
		return nil, err
	}
	return &res, nil
}

// copySparse writes r into the new file f, leaving all-zero blocks as
// holes, and sets f's size: a sparse entry (or any run of zeros) takes no
// disk space, so a small archive cannot fill the disk with a huge hole.
// It tells read (archive) errors from write (disk) errors.
func (x *extractor) copySparse(f *os.File, r io.Reader) (n int64, readErr, writeErr error) {
	if x.buf == nil {
		x.buf = make([]byte, 128<<10)
	}
	for readErr == nil {
		k := 0
		for k < len(x.buf) && readErr == nil {
			var m int
			m, readErr = r.Read(x.buf[k:])
			k += m
		}
		if x.maxEntry > 0 && n+int64(k) > x.maxEntry {
			return n, nil, fmt.Errorf("entry larger than %d bytes", x.maxEntry)
		}
		if chunk := x.buf[:k]; !bytes.Equal(chunk, zeroBlock[:k]) {
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

var zeroBlock = make([]byte, 128<<10)

// streamError is an archive (or upload) failure met inside an entry.
type streamError struct{ err error }

func (e streamError) Error() string { return e.err.Error() }

// extractor creates tar entries beneath root.
type extractor struct {
	root int    // O_PATH fd of the target directory
	dir  string // its path, for messages
	dirs []dirMeta

	cacheRel string // the last parent directory opened, kept open
	cacheFd  int

	buf      []byte // copySparse's
	maxEntry int64  // if > 0, the largest file content accepted (fuzzing)
}

type dirMeta struct {
	rel   string
	mode  uint32
	mtime time.Time
}

func (x *extractor) close() {
	if x.cacheRel != "" {
		unix.Close(x.cacheFd)
	}
	unix.Close(x.root)
}

func (x *extractor) tarError(err error, up *uploadReader) error {
	if up.err != nil && up.err != io.EOF {
		return up.err // the stream failed, not the archive
	}
	return invalidf("tar_in %s: not a valid tar stream: %v", x.dir, err)
}

// cleanName checks an archive name and returns it cleaned, relative to
// the root; "" means the root itself.
func (x *extractor) cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", &proto.Error{Code: "EXDEV", Message: fmt.Sprintf("tar_in %s: entry %q has an absolute name; archive names must be relative", x.dir, name)}
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", &proto.Error{Code: "EXDEV", Message: fmt.Sprintf("tar_in %s: entry %q leads outside the directory through \"..\"", x.dir, name)}
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// openDir opens the directory rel beneath the root (O_PATH), creating
// missing components with mode 0755 if create. The caller must not close
// the fd: it is cached, or the root.
func (x *extractor) openDir(rel string, create bool) (int, error) {
	if rel == "" || rel == "." {
		return x.root, nil
	}
	if rel == x.cacheRel {
		return x.cacheFd, nil
	}
	fd, err := x.openBeneath(rel, create)
	if err != nil {
		return -1, err
	}
	if x.cacheRel != "" {
		unix.Close(x.cacheFd)
	}
	x.cacheRel, x.cacheFd = rel, fd
	return fd, nil
}

// openBeneath opens rel beneath the root and returns a new O_PATH fd.
func (x *extractor) openBeneath(rel string, create bool) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(x.root, rel, how)
		if err == nil {
			return fd, nil
		}
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err == unix.EXDEV:
			return -1, &proto.Error{Code: "EXDEV", Message: fmt.Sprintf("tar_in %s: %s resolves outside the directory (through a symlink); refusing to write there", x.dir, rel)}
		case err == unix.ENOSYS:
			return -1, &proto.Error{Code: proto.CodeUnsupported, Message: "tar_in needs openat2 (Linux 5.6 or later) to extract safely"}
		case err == unix.ENOENT && create && tries == 0:
			parent, base := path.Split(rel)
			pfd := x.root
			if parent != "" {
				if pfd, err = x.openBeneath(strings.TrimSuffix(parent, "/"), true); err != nil {
					return -1, err
				}
			}
			err = unix.Mkdirat(pfd, base, 0o755)
			if pfd != x.root {
				unix.Close(pfd)
			}
			if err != nil && err != unix.EEXIST {
				return -1, &fs.PathError{Op: "tar_in mkdir", Path: rel, Err: err}
			}
			continue
		}
		return -1, &fs.PathError{Op: "tar_in open", Path: rel, Err: err}
	}
}

// extract creates one entry and returns the content bytes written (-1
// for entries it skips).
func (x *extractor) extract(hdr *tar.Header, r io.Reader) (int64, error) {
	rel, err := x.cleanName(hdr.Name)
	if err != nil {
		return 0, err
	}
	if rel == "" || hdr.Typeflag == tar.TypeXGlobalHeader {
		return -1, nil // the root itself, or metadata
	}
	parent, base := path.Split(rel)
	dfd, err := x.openDir(strings.TrimSuffix(parent, "/"), true)
	if err != nil {
		return 0, err
	}
	mode := uint32(hdr.Mode) & 0o7777
	if x.cacheRel == rel || strings.HasPrefix(x.cacheRel, rel+"/") {
		unix.Close(x.cacheFd) // the entry may replace the cached directory
		x.cacheRel = ""
	}
	fail := func(op string, err error) (int64, error) {
		return 0, &fs.PathError{Op: "tar_in " + op, Path: path.Join(x.dir, rel), Err: err}
	}
	var n int64
	switch hdr.Typeflag {
	case tar.TypeDir:
		err := unix.Mkdirat(dfd, base, 0o700)
		if err == unix.EEXIST {
			var st unix.Stat_t
			if err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err = x.remove(dfd, base); err == nil {
					err = unix.Mkdirat(dfd, base, 0o700)
				}
			}
		}
		if err != nil {
			return fail("mkdir", err)
		}
		if len(x.dirs) >= maxTarDirs {
			return 0, invalidf("tar_in %s: more than %d directories in one archive", x.dir, maxTarDirs)
		}
		x.dirs = append(x.dirs, dirMeta{rel, mode, hdr.ModTime})
		return 0, nil
	case tar.TypeReg, tar.TypeRegA:
		fd, err := x.create(dfd, base, func() (int, error) {
			return unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		if err != nil {
			return fail("create", err)
		}
		f := os.NewFile(uintptr(fd), rel)
		var rerr error
		n, rerr, err = x.copySparse(f, r)
		if rerr != nil {
			f.Close()
			return 0, streamError{rerr}
		}
		if err == nil {
			err = unix.Fchmod(fd, mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail("write", err)
		}
	case tar.TypeSymlink:
		if _, err := x.create(dfd, base, func() (int, error) { return 0, unix.Symlinkat(hdr.Linkname, dfd, base) }); err != nil {
			return fail("symlink", err)
		}
	case tar.TypeLink:
		target, err := x.cleanName(hdr.Linkname)
		if err != nil || target == "" {
			return 0, &proto.Error{Code: "EXDEV", Message: fmt.Sprintf("tar_in %s: hard link %q points to %q, outside the directory", x.dir, hdr.Name, hdr.Linkname)}
		}
		tparent, tbase := path.Split(target)
		var tfd int
		if tparent == "" {
			tfd, err = unix.Dup(x.root)
		} else {
			tfd, err = x.openBeneath(strings.TrimSuffix(tparent, "/"), false)
		}
		if err != nil {
			return 0, err
		}
		_, err = x.create(dfd, base, func() (int, error) { return 0, unix.Linkat(tfd, tbase, dfd, base, 0) })
		unix.Close(tfd)
		if err != nil {
			return fail("link", err)
		}
		return 0, nil // a hard link shares its target's mode and times
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		kind := map[byte]uint32{tar.TypeFifo: unix.S_IFIFO, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if _, err := x.create(dfd, base, func() (int, error) { return 0, unix.Mknodat(dfd, base, kind|mode, dev) }); err != nil {
			return fail("mknod", err)
		}
	default:
		return 0, invalidf("tar_in %s: entry %q has tar type %q, which tar_in does not extract", x.dir, hdr.Name, string(hdr.Typeflag))
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("utimes", err)
	}
	return n, nil
}

// create runs mk, which creates base in dfd; if base exists it is
// removed first, as tar does.
func (x *extractor) create(dfd int, base string, mk func() (int, error)) (int, error) {
	fd, err := mk()
	if err == unix.EEXIST {
		if err := x.remove(dfd, base); err != nil {
			return -1, err
		}
		fd, err = mk()
	}
	return fd, err
}

// remove deletes a file, symlink or empty directory in dfd.
func (x *extractor) remove(dfd int, base string) error {
	err := unix.Unlinkat(dfd, base, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
	}
	return err
}

// finishDirs applies the archive's modes and mtimes to its directories,
// deepest first, now that nothing more is written into them.
func (x *extractor) finishDirs() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		// Not following a final symlink: a later entry may have
		// replaced the directory with one.
		fd, err := unix.Openat2(x.root, d.rel, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
		if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT || err == unix.EXDEV {
			continue // replaced or removed since
		}
		if err == nil {
			err = unix.Fchmod(fd, d.mode)
			if err == nil {
				ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
				err = unix.UtimesNanoAt(fd, ".", ts, 0)
			}
			unix.Close(fd)
		}
		if err != nil {
			return &fs.PathError{Op: "tar_in chmod", Path: path.Join(x.dir, d.rel), Err: err}
		}
	}
	return nil
}
