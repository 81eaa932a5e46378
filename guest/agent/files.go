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
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// fileInfo describes fi (from lstat) under name; full is its path, to
// read a symlink's target.
func fileInfo(name, full string, fi fs.FileInfo) proto.FileInfo {
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
		r.Target, _ = os.Readlink(full)
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

func (s *Server) stat(req *proto.Request) (any, error) {
	p, err := s.path(req.Path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	return fileInfo(filepath.Base(req.Path), p, fi), nil
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
func (s *Server) list(st *stream, req *proto.Request) (any, error) {
	p, err := s.path(req.Path)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = proto.DefaultListLimit
	}
	limit = min(limit, proto.MaxListLimit)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &fs.PathError{Op: "list", Path: req.Path, Err: syscall.ENOTDIR}
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
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		ents, err := os.ReadDir(dir)
		if err != nil && rel == "" {
			return err // only the listed directory itself must be readable
		}
		for _, e := range ents {
			name := e.Name()
			if rel != "" {
				name = rel + "/" + name
			}
			full := filepath.Join(dir, e.Name())
			info, err := e.Info()
			if err != nil {
				continue // vanished since readdir
			}
			if res.Count == limit {
				res.Truncated = true
				return errStopWalk
			}
			b, err := json.Marshal(fileInfo(name, full, info))
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
			if req.Recursive && e.IsDir() {
				if err := walk(full, name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(p, ""); err != nil && err != errStopWalk {
		return nil, err
	}
	return res, flush()
}

var errStopWalk = errors.New("stop walking")

// readFile sends up to max bytes of a regular file from offset as Data
// frames.
func (s *Server) readFile(st *stream, req *proto.Request) (any, error) {
	p, err := s.path(req.Path)
	if err != nil {
		return nil, err
	}
	if req.Offset < 0 {
		return nil, invalidf("read_file offset %d is negative", req.Offset)
	}
	max := req.Max
	if max <= 0 {
		max = proto.DefaultReadMax
	}
	max = min(max, proto.MaxReadFile)
	// O_NONBLOCK: opening a FIFO must not hang; regular files ignore it.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
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
	return res, nil
}

// writeFile replaces a file atomically with the uploaded bytes: a
// temporary file in the same directory, renamed over the target. A
// symlink at the path is followed, so its target is what changes.
func (s *Server) writeFile(st *stream, req *proto.Request) (any, error) {
	p, err := s.path(req.Path)
	if err != nil {
		return nil, err
	}
	if t, err := filepath.EvalSymlinks(p); err == nil {
		p = t
	}
	dir := filepath.Dir(p)
	if req.MkdirParents {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	mode := req.Mode & 0o7777
	old, err := os.Stat(p)
	var ost *syscall.Stat_t
	if err == nil {
		if old.IsDir() {
			return nil, &fs.PathError{Op: "write_file", Path: req.Path, Err: syscall.EISDIR}
		}
		ost, _ = old.Sys().(*syscall.Stat_t)
		if mode == 0 && ost != nil {
			mode = ost.Mode & 0o7777
		}
	}
	if mode == 0 {
		mode = 0o644
	}
	tmp, err := os.CreateTemp(dir, ".pyro-write-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !req.MkdirParents {
			return nil, &proto.Error{Code: "ENOENT", Message: fmt.Sprintf("write_file %s: directory %s does not exist (ask for mkdir_parents to create it)", req.Path, filepath.Dir(req.Path))}
		}
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
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
	if err := os.Rename(tmp.Name(), p); err != nil {
		return nil, err
	}
	ok = true
	return proto.WriteResult{N: n}, nil
}

// unixToFileMode converts st_mode permission bits (07777) to fs.FileMode.
func unixToFileMode(m uint32) fs.FileMode {
	return proto.FileInfo{Mode: m}.FileMode()
}
