package agent

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// logStream is one stream (stdout or stderr) of a service's log: the
// bytes the agent pumps from the service's pipe, kept in two generations
// of files on a tmpfs, path (the current one) and path.1 (the one
// before), each at most proto.ServiceLogGeneration bytes. Offsets count
// every byte kept since the stream began, so a reader's cursor stays
// valid across rotations: bytes older than the kept window are reported
// as skipped, never silently.
type logStream struct {
	path string

	mu sync.Mutex // guards the fields below and the files
	// Guarded by mu.
	f *os.File // path, open for appending; nil after close or a failed rotation
	// Guarded by mu.
	cur, old int64 // bytes in path and path.1
	// Guarded by mu.
	total int64 // every byte written, kept or since rotated away
	// Guarded by mu.
	lost int64 // bytes the service wrote that could not be written (ENOSPC)
}

// openLog starts a stream's log at path, replacing an earlier one.
func openLog(path string) (*logStream, error) {
	os.Remove(path + ".1")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &logStream{path: path, f: f}, nil
}

// Write keeps p in the log. It never fails, so the pump goes on reading
// the service's pipe (a service blocked on a full pipe would hang): what
// the file system does not take is counted as lost.
func (l *logStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil && l.cur > 0 && l.cur+int64(len(p)) > proto.ServiceLogGeneration {
		l.rotateLocked()
	}
	if l.f == nil {
		l.lost += int64(len(p))
		return len(p), nil
	}
	n, _ := l.f.Write(p)
	l.cur += int64(n)
	l.total += int64(n)
	l.lost += int64(len(p) - n)
	return len(p), nil
}

// rotateLocked makes the current generation the old one and starts a new
// one. The caller holds l.mu.
func (l *logStream) rotateLocked() {
	l.f.Close()
	l.f = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return
	}
	l.old, l.cur = l.cur, 0
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err == nil {
		l.f = f
	}
}

func (l *logStream) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// firstLocked is the oldest offset the files still hold.
func (l *logStream) firstLocked() int64 { return l.total - l.old - l.cur }

// readLocked reads the kept bytes [off, off+n) from the two generations.
func (l *logStream) readLocked(off, n int64) []byte {
	first := l.firstLocked()
	out := make([]byte, 0, n)
	read := func(path string, at, k int64) {
		if k <= 0 {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, k)
		m, err := f.ReadAt(buf, at)
		if err != nil && !errors.Is(err, io.EOF) {
			m = 0
		}
		out = append(out, buf[:m]...)
	}
	// The old generation covers [first, first+old), the current one the rest.
	if rel := off - first; rel < l.old {
		k := min(n, l.old-rel)
		read(l.path+".1", rel, k)
		off, n = off+k, n-k
	}
	read(l.path, off-first-l.old, min(n, l.total-off))
	return out
}

// read returns up to max bytes from off (a cursor). An offset before
// the kept window starts at its first byte and says how much was skipped;
// one past the end returns nothing at the end.
func (l *logStream) read(off, max int64) proto.LogChunk {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.firstLocked()
	c := proto.LogChunk{Total: l.total, First: first, Lost: l.lost}
	off = min(off, l.total)
	if off < first {
		c.Skipped = first - off
		off = first
	}
	c.Data = l.readLocked(off, min(max, l.total-off))
	c.Offset, c.Next = off, off+int64(len(c.Data))
	return c
}

// tail returns the last lines lines of the stream, in at most max bytes
// (the newest ones when they do not all fit).
func (l *logStream) tail(lines int, max int64) proto.LogChunk {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.firstLocked()
	off := l.total - min(max, l.total-first)
	data := l.readLocked(off, l.total-off)
	cut := tailLines(data, lines)
	data = data[cut:]
	off += int64(cut)
	return proto.LogChunk{Data: data, Offset: off, Next: off + int64(len(data)), Total: l.total, First: first, Lost: l.lost}
}

// tailLines returns where the last n lines of b begin (a last line
// without its newline counts as a line).
func tailLines(b []byte, n int) int {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for ; n > 0; n-- {
		i := bytes.LastIndexByte(b[:end], '\n')
		if i < 0 {
			return 0
		}
		end = i
	}
	return end + 1
}

// size is the bytes the stream has written.
func (l *logStream) size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// removeLogs deletes a service's log directory.
func removeLogs(dir string) {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}
