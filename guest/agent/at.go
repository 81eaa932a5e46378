package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Paths are resolved when they are used, not only when checked.
//
// dispatch checks a confined request's path first (beneath), for a clear
// EXDEV; but a guest process could swap a directory for a symlink between
// that check and the operation. So each file operation opens its target
// itself with openat2 from a directory descriptor of the confining
// directory (RESOLVE_BENEATH: the kernel refuses any step outside at the
// moment of the open), then works on the descriptor, and walks trees with
// *at calls that never follow a symlink.

// maxOpenRetries bounds openat2's EAGAIN retries (a rename elsewhere in
// the file system raced the lookup).
const maxOpenRetries = 10

// pathTree is where a request's paths are resolved: the confining directory
// (PathArgs.Beneath) or, unconfined, the file system root.
type pathTree struct {
	fd      int    // O_PATH descriptor of the directory
	dir     string // its request path, for messages
	resolve uint64 // openat2 resolve flags
}

// tree opens the directory paths are resolved under (beneath, the
// request's confining directory, or the root) and returns p relative to
// it. Close the tree when done.
func (s *Server) tree(beneath, p string) (*pathTree, string, error) {
	full, err := s.path(p)
	if err != nil {
		return nil, "", err
	}
	full = filepath.Clean(full)
	t := &pathTree{dir: "/"}
	root := "/"
	if s.root != "" {
		// Tests and fuzzing: even absolute symlinks stay in root.
		root, t.resolve = s.root, unix.RESOLVE_IN_ROOT
	}
	if beneath != "" {
		if root, err = s.path(beneath); err != nil {
			return nil, "", err
		}
		t.dir, t.resolve = beneath, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_MAGICLINKS
	}
	rel, err := filepath.Rel(root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, "", t.outside(p)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", &fs.PathError{Op: "open", Path: t.dir, Err: err}
	}
	t.fd = fd
	return t, rel, nil
}

func (t *pathTree) close() { unix.Close(t.fd) }

func (t *pathTree) outside(p string) error {
	return &proto.Error{Code: "EXDEV", Message: fmt.Sprintf(
		"%s is outside %s (it leads out through .. or a symlink); use a path inside %s", p, t.dir, t.dir)}
}

// open opens rel (relative to the tree) with flags (O_CLOEXEC is added);
// p is its request path, for messages.
func (t *pathTree) open(rel, p string, flags uint64) (int, error) {
	how := &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: t.resolve}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(t.fd, rel, how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EAGAIN && i < maxOpenRetries:
			continue
		case (err == unix.EXDEV || err == unix.ELOOP) && t.resolve != 0:
			return -1, t.outside(p)
		case err == unix.ENOSYS:
			return -1, &proto.Error{Code: proto.CodeUnsupported, Message: "this guest kernel lacks openat2 (Linux 5.6+), needed to resolve paths safely"}
		}
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
}

// mkdirAll creates the directory rel and its missing parents inside the
// tree and returns an O_PATH descriptor of it.
func (t *pathTree) mkdirAll(rel, p string) (int, error) {
	fd, err := t.open(rel, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || rel == "." {
		return fd, err
	}
	parent, err := t.mkdirAll(filepath.Dir(rel), filepath.Dir(p))
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, filepath.Base(rel), 0o755)
	unix.Close(parent)
	if err != nil && err != unix.EEXIST {
		return -1, &fs.PathError{Op: "mkdir", Path: p, Err: err}
	}
	return t.open(rel, p, unix.O_PATH|unix.O_DIRECTORY)
}

// statInfo is an fs.FileInfo from a stat buffer.
type statInfo struct {
	name string
	st   syscall.Stat_t
}

func (fi *statInfo) Name() string       { return fi.name }
func (fi *statInfo) Size() int64        { return fi.st.Size }
func (fi *statInfo) ModTime() time.Time { return time.Unix(fi.st.Mtim.Sec, fi.st.Mtim.Nsec) }
func (fi *statInfo) IsDir() bool        { return fi.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (fi *statInfo) Sys() any           { return &fi.st }
func (fi *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.st.Mode & 0o777)
	switch fi.st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	}
	if fi.st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// statAt lstats name in the directory dirfd ("" for dirfd itself).
func statAt(dirfd int, name string) (*statInfo, error) {
	fi := &statInfo{name: name}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var u unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &u, flags); err != nil {
		return nil, err
	}
	// syscall's Stat_t, which archive/tar and fileInfo understand.
	fi.st = syscall.Stat_t{Dev: u.Dev, Ino: u.Ino, Nlink: u.Nlink, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid,
		Rdev: u.Rdev, Size: u.Size, Blksize: u.Blksize, Blocks: u.Blocks,
		Atim: syscall.Timespec{Sec: u.Atim.Sec, Nsec: u.Atim.Nsec},
		Mtim: syscall.Timespec{Sec: u.Mtim.Sec, Nsec: u.Mtim.Nsec},
		Ctim: syscall.Timespec{Sec: u.Ctim.Sec, Nsec: u.Ctim.Nsec}}
	return fi, nil
}

// readlinkAt reads the symlink name in dirfd ("" for dirfd itself, an
// O_PATH|O_NOFOLLOW descriptor of the link).
func readlinkAt(dirfd int, name string) string {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// dirNames returns the sorted names in the directory dirfd (opened
// O_RDONLY|O_DIRECTORY), reading through a duplicate so dirfd stays
// usable for *at calls.
func dirNames(dirfd int) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(dirfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// openChildDir opens the directory name in dirfd for reading, never
// through a symlink.
func openChildDir(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}
