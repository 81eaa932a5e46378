package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// fileInfo describes fi (from lstat) under name; target is a symlink's.
func fileInfo(name string, fi fs.FileInfo, target string) proto.FileInfo {
	r := proto.FileInfo{Name: name, Size: fi.Size(), MTime: fi.ModTime()}
	m := fi.Mode()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		r.Mode, r.UID, r.GID = st.Mode&0o7777, st.Uid, st.Gid
		r.MTime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	} else {
		r.Mode = uint32(m.Perm())
	}
	switch {
	case m.IsRegular():
		r.Type = proto.TypeFile
	case m.IsDir():
		r.Type = proto.TypeDir
	case m&fs.ModeSymlink != 0:
		r.Type = proto.TypeSymlink
		r.Target = target
	case m&fs.ModeNamedPipe != 0:
		r.Type = proto.TypeFIFO
	case m&fs.ModeSocket != 0:
		r.Type = proto.TypeSocket
	case m&fs.ModeCharDevice != 0:
		r.Type = proto.TypeChar
	default:
		r.Type = proto.TypeBlock
	}
	return r
}

func (s *Server) stat(_ *stream, req *proto.StatArgs) (*proto.FileInfo, error) {
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	fd, err := t.open(rel, req.Path, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	fi, err := statAt(fd, "")
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: req.Path, Err: err}
	}
	r := fileInfo(filepath.Base(req.Path), fi, readlinkAt(fd, ""))
	return &r, nil
}

// Entries batches: a batch is sent once its JSON passes batchBytes;
// entries whose own JSON exceeds maxEntryBytes (absurdly deep paths) are
// left out rather than break the frame limit.
const (
	batchBytes    = 256 << 10
	maxEntryBytes = 256 << 10
)

// list walks a directory (following the path itself if it is a symlink,
// never the symlinks inside), sending Entries frames.
func (s *Server) list(st *stream, req *proto.ListArgs) (*proto.ListResult, error) {
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	limit := req.Limit
	if limit <= 0 {
		limit = proto.DefaultListLimit
	}
	limit = min(limit, proto.MaxListLimit)
	top, err := t.open(rel, req.Path, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	var res proto.ListResult
	batch := []byte{'['}
	flush := func() error {
		if len(batch) == 1 {
			return nil
		}
		batch = append(batch[:len(batch)-1], ']') // replace the trailing comma
		err := st.enc.WriteFrame(proto.FrameEntries, batch)
		batch = append(batch[:0], '[')
		return err
	}
	// walk lists the directory dirfd (and closes it); rel is its path
	// relative to the listed one.
	var walk func(dirfd int, rel string) error
	walk = func(dirfd int, rel string) error {
		defer unix.Close(dirfd)
		names, err := dirNames(dirfd)
		if err != nil && rel == "" {
			return &fs.PathError{Op: "list", Path: req.Path, Err: err} // only the listed directory itself must be readable
		}
		for _, base := range names {
			name := base
			if rel != "" {
				name = rel + "/" + base
			}
			info, err := statAt(dirfd, base)
			if err != nil {
				continue // vanished since readdir
			}
			if res.Count == limit {
				res.Truncated = true
				return errStopWalk
			}
			target := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				target = readlinkAt(dirfd, base)
			}
			b, err := json.Marshal(fileInfo(name, info, target))
			if err != nil || len(b) > maxEntryBytes {
				continue
			}
			res.Count++
			batch = append(append(batch, b...), ',')
			if len(batch) >= batchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			if req.Recursive && info.IsDir() {
				sub, err := openChildDir(dirfd, base)
				if err != nil {
					continue // replaced (by a symlink, say) since the stat, or unreadable
				}
				if err := walk(sub, name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(top, ""); err != nil && err != errStopWalk {
		return nil, err
	}
	return &res, flush()
}

var errStopWalk = errors.New("stop walking")

// readFile sends up to max bytes of a regular file from offset as Data
// frames.
func (s *Server) readFile(st *stream, req *proto.ReadFileArgs) (*proto.ReadResult, error) {
	if req.Offset < 0 {
		return nil, invalidf("read_file offset %d is negative", req.Offset)
	}
	max := req.Max
	if max <= 0 {
		max = proto.DefaultReadMax
	}
	max = min(max, proto.MaxReadFile)
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	// O_NONBLOCK: opening a FIFO must not hang; regular files ignore it.
	fd, err := t.open(rel, req.Path, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), req.Path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "read_file", Path: req.Path, Err: syscall.EISDIR}
	}
	if !fi.Mode().IsRegular() {
		return nil, invalidf("read_file %s: not a regular file (%v); read_file reads regular files only", req.Path, fi.Mode().Type())
	}
	w := bufio.NewWriterSize(frameWriter{st.enc, proto.FrameData}, proto.ChunkSize)
	n, err := io.Copy(w, io.NewSectionReader(f, req.Offset, max))
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return nil, err
	}
	res := proto.ReadResult{Size: fi.Size(), N: n, EOF: n < max}
	if !res.EOF {
		var b [1]byte
		k, err := f.ReadAt(b[:], req.Offset+n)
		res.EOF = k == 0 && err == io.EOF
	}
	return &res, nil
}

// writeFile replaces a file atomically with the uploaded bytes: a
// temporary file in the same directory, renamed over the target. A
// symlink at the path is followed, so its target is what changes. The
// directory is held open from its resolution to the rename.
func (s *Server) writeFile(st *stream, req *proto.WriteFileArgs) (*proto.WriteResult, error) {
	t, rel, err := s.tree(req.Beneath, req.Path)
	if err != nil {
		return nil, err
	}
	defer t.close()
	mode := req.Mode & 0o7777
	var ost *syscall.Stat_t
	// An existing file (through symlinks, inside the tree): the rename
	// goes where it really is.
	if fd, err := t.open(rel, req.Path, unix.O_PATH); err == nil {
		real, rerr := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		troot, terr := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", t.fd))
		fi, serr := statAt(fd, "")
		unix.Close(fd)
		if rerr != nil || terr != nil || serr != nil {
			return nil, errors.Join(rerr, terr, serr)
		}
		if fi.IsDir() {
			return nil, &fs.PathError{Op: "write_file", Path: req.Path, Err: syscall.EISDIR}
		}
		r, err := filepath.Rel(troot, real)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			return nil, t.outside(req.Path)
		}
		rel, ost = r, &fi.st
		if mode == 0 {
			mode = ost.Mode & 0o7777
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if mode == 0 {
		mode = 0o644
	}
	dirRel, base := filepath.Dir(rel), filepath.Base(rel)
	var dirfd int
	if req.MkdirParents {
		dirfd, err = t.mkdirAll(dirRel, filepath.Dir(req.Path))
	} else {
		dirfd, err = t.open(dirRel, filepath.Dir(req.Path), unix.O_PATH|unix.O_DIRECTORY)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !req.MkdirParents {
			return nil, &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("write_file %s: directory %s does not exist (ask for mkdir_parents to create it)", req.Path, filepath.Dir(req.Path))}
		}
		return nil, err
	}
	defer unix.Close(dirfd)
	var tmpName string
	var tfd int
	for i := 0; ; i++ {
		tmpName = fmt.Sprintf(".pyro-write-%d-%d", time.Now().UnixNano(), i)
		tfd, err = unix.Openat(dirfd, tmpName, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != unix.EEXIST || i == 100 {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: filepath.Join(filepath.Dir(req.Path), tmpName), Err: err}
	}
	tmp := os.NewFile(uintptr(tfd), tmpName)
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			unix.Unlinkat(dirfd, tmpName, 0)
		}
	}()
	n, err := io.Copy(tmp, &uploadReader{dec: st.dec})
	if err != nil {
		return nil, err
	}
	if ost != nil && os.Geteuid() == 0 {
		tmp.Chown(int(ost.Uid), int(ost.Gid)) // keep the owner of the file it replaces
	}
	// Chmod after Chown: chown clears setuid and setgid.
	if err := tmp.Chmod(unixToFileMode(mode)); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := unix.Renameat(dirfd, tmpName, dirfd, base); err != nil {
		return nil, &os.LinkError{Op: "rename", Old: tmpName, New: req.Path, Err: err}
	}
	ok = true
	return &proto.WriteResult{N: n}, nil
}

// unixToFileMode converts st_mode permission bits (07777) to fs.FileMode.
func unixToFileMode(m uint32) fs.FileMode {
	return proto.FileInfo{Mode: m}.FileMode()
}
