// Package initramfs writes Linux initramfs archives in the "newc" cpio format.
//
// It sits at the start of every guest boot: pyro's guest agent image and the
// nested-KVM test harness (cmd/vmtest) both hand the kernel an initramfs built
// here, which the kernel unpacks into its rootfs before running /init.
//
// The format is the one in the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst: each entry is a
// 110-byte ASCII header ("070701" followed by thirteen 8-digit hexadecimal
// fields), the NUL-terminated path name padded to a multiple of 4 bytes, and the
// file data padded to a multiple of 4 bytes. The archive ends with an entry
// named "TRAILER!!!". The archive is not compressed; wrap the io.Writer to
// compress it if you need to.
//
// Output is deterministic: every entry has mtime 0, uid 0 and gid 0, inode
// numbers are assigned in write order, and parent directories are emitted
// automatically (mode 0755) the first time a path needs them.
package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Mode bits of the cpio header (the S_IF* values of the kernel's stat.h).
const (
	modeFile    = 0o100000
	modeDir     = 0o040000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
	modePerm    = 0o7777 // permission, setuid, setgid and sticky bits
)

const (
	magic       = "070701"
	headerLen   = 110
	trailerName = "TRAILER!!!"
)

// Writer writes a newc archive. Its methods are not safe for concurrent use.
// After the first error every later call returns that error.
type Writer struct {
	w       io.Writer
	off     int64           // bytes written so far, for padding
	ino     uint32          // last inode number handed out
	entries map[string]bool // path -> is a directory, for every path written
	err     error
	closed  bool
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, entries: map[string]bool{}}
}

// Clean turns p into the form stored in the archive: relative to the root,
// without "." or ".." elements. It fails for the root itself and for paths
// that climb out of it.
func Clean(p string) (string, error) {
	c := path.Clean("/" + p)
	if c == "/" || strings.Contains(p, "\x00") {
		return "", fmt.Errorf("initramfs: invalid path %q", p)
	}
	return c[1:], nil
}

// Dir adds a directory. Adding a directory that is already in the archive is a
// no-op; add a directory before its contents if its mode matters.
func (w *Writer) Dir(p string, mode fs.FileMode) error {
	name, err := w.begin(p, true)
	if err != nil || name == "" {
		return err
	}
	return w.entry(name, modeDir|perm(mode), 2, 0, 0, nil, 0)
}

// File adds a regular file holding data.
func (w *Writer) File(p string, mode fs.FileMode, data []byte) error {
	return w.FileFrom(p, mode, int64(len(data)), bytes.NewReader(data))
}

// FileFrom adds a regular file of size bytes read from r. It fails if r
// yields fewer than size bytes; bytes after the first size are not read.
func (w *Writer) FileFrom(p string, mode fs.FileMode, size int64, r io.Reader) error {
	name, err := w.begin(p, false)
	if err != nil {
		return err
	}
	if size < 0 || size > 0xffffffff {
		return w.fail(fmt.Errorf("initramfs: %s: size %d does not fit the newc format (4 GiB max)", p, size))
	}
	return w.entry(name, modeFile|perm(mode), 1, 0, 0, r, size)
}

// Symlink adds a symbolic link at p pointing to target.
func (w *Writer) Symlink(p, target string) error {
	name, err := w.begin(p, false)
	if err != nil {
		return err
	}
	return w.entry(name, modeSymlink|0o777, 1, 0, 0, strings.NewReader(target), int64(len(target)))
}

// CharDev adds a character device node, such as dev/console (5, 1).
func (w *Writer) CharDev(p string, mode fs.FileMode, major, minor uint32) error {
	name, err := w.begin(p, false)
	if err != nil {
		return err
	}
	return w.entry(name, modeCharDev|perm(mode), 1, major, minor, nil, 0)
}

// AddHost copies the host file, symlink or directory tree at src into the
// archive at p, keeping permission bits. Symlinks are stored as symlinks;
// device nodes, sockets and pipes are skipped.
func (w *Writer) AddHost(p, src string) error {
	return filepath.WalkDir(src, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return w.fail(err)
		}
		rel, err := filepath.Rel(src, hp)
		if err != nil {
			return w.fail(err)
		}
		dst := path.Join(p, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return w.fail(err)
		}
		switch {
		case info.IsDir():
			return w.Dir(dst, info.Mode())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return w.fail(err)
			}
			return w.Symlink(dst, target)
		case info.Mode().IsRegular():
			f, err := os.Open(hp)
			if err != nil {
				return w.fail(err)
			}
			defer f.Close()
			return w.FileFrom(dst, info.Mode(), info.Size(), f)
		}
		return nil
	})
}

// Has reports whether p is already in the archive.
func (w *Writer) Has(p string) bool {
	name, err := Clean(p)
	if err != nil {
		return false
	}
	_, ok := w.entries[name]
	return ok
}

// Close writes the trailer and pads the archive to a multiple of 512 bytes.
// It does not close the underlying io.Writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.header(trailerName, 0, 0, 0, 0, 0, 0); err != nil {
		return err
	}
	return w.pad(512)
}

// begin validates p, creates its missing parents and records it. For a
// directory that already exists it returns an empty name and no error.
func (w *Writer) begin(p string, dir bool) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.closed {
		return "", errors.New("initramfs: write after Close")
	}
	name, err := Clean(p)
	if err != nil {
		return "", w.fail(err)
	}
	if isDir, ok := w.entries[name]; ok {
		if dir && isDir {
			return "", nil
		}
		return "", w.fail(fmt.Errorf("initramfs: %s: already in the archive", name))
	}
	if parent := path.Dir(name); parent != "." {
		if err := w.Dir(parent, 0o755); err != nil {
			return "", err
		}
		if !w.entries[parent] {
			return "", w.fail(fmt.Errorf("initramfs: %s: parent %s is not a directory", name, parent))
		}
	}
	w.entries[name] = dir
	return name, nil
}

func (w *Writer) entry(name string, mode, nlink, rmajor, rminor uint32, data io.Reader, size int64) error {
	if err := w.header(name, mode, nlink, uint32(size), rmajor, rminor, 0); err != nil {
		return err
	}
	if data != nil {
		n, err := io.CopyN(w.w, data, size)
		w.off += n
		if err == io.EOF {
			err = fmt.Errorf("initramfs: %s: short read: got %d of %d bytes", name, n, size)
		}
		if err != nil {
			return w.fail(err)
		}
	}
	return w.pad(4)
}

func (w *Writer) header(name string, mode, nlink, size, rmajor, rminor, check uint32) error {
	ino := uint32(0)
	if name != trailerName {
		w.ino++
		ino = w.ino
	}
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check.
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s\x00",
		magic, ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, check, name)
	if err := w.write([]byte(hdr)); err != nil {
		return err
	}
	return w.pad(4)
}

func (w *Writer) pad(align int64) error {
	var zeros [512]byte
	return w.write(zeros[:(align-w.off%align)%align])
}

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// perm converts m to cpio permission bits. Both fs.FileMode's flags and the
// octal literals people write (0o1777 for a sticky directory) are honoured.
func perm(m fs.FileMode) uint32 {
	p := uint32(m) & modePerm
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p & modePerm
}
