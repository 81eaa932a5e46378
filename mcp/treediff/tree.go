package treediff

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Type is the kind of a tree entry.
type Type string

// The entry types a tree holds.
const (
	File    Type = "file"
	Dir     Type = "dir"
	Symlink Type = "symlink"
)

// Mode is a file's type and permission bits as stat(2) and git write them
// (0o100644, 0o100755, 0o120777, 0o40755). It prints, and marshals to
// text and JSON, in octal: "100644".
type Mode uint32

// Type bits of a Mode.
const (
	modeDir     Mode = 0o040000
	modeFile    Mode = 0o100000
	modeSymlink Mode = 0o120000
)

func (m Mode) String() string { return strconv.FormatUint(uint64(m), 8) }

// MarshalText writes the mode in octal.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a mode written in octal.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil {
		return fmt.Errorf("treediff: bad mode %q", b)
	}
	*m = Mode(v)
	return nil
}

// Entry is one path of a tree.
type Entry struct {
	Path   string   // normalised: slash-separated, relative, no "." or ".." parts
	Type   Type     // File, Dir or Symlink
	Perm   uint32   // permission bits, 07777
	Size   int64    // regular files: content length
	Sum    [32]byte // regular files: SHA-256 of the content (the blob's name)
	GitID  [20]byte // regular files: git's blob object name for the content
	Target string   // symlinks: the link target
}

// gitID is the name git gives a blob: the SHA-1 of "blob <size>\x00"
// and the content.
func gitID(content []byte) [20]byte {
	h := newGitHash(int64(len(content)))
	h.Write(content)
	var id [20]byte
	h.Sum(id[:0])
	return id
}

// newGitHash starts git's blob hash for content of the given size.
func newGitHash(size int64) hash.Hash {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
	return h
}

// Mode is the entry's type and permission bits.
func (e *Entry) Mode() Mode {
	switch e.Type {
	case Dir:
		return modeDir | Mode(e.Perm)
	case Symlink:
		return modeSymlink | Mode(e.Perm)
	}
	return modeFile | Mode(e.Perm)
}

// gitMode is the mode git records: 100644 or 100755 for files (the owner
// execute bit decides), 120000 for symlinks.
func (e *Entry) gitMode() Mode {
	if e.Type == Symlink {
		return modeSymlink
	}
	if e.Perm&0o100 != 0 {
		return modeFile | 0o755
	}
	return modeFile | 0o644
}

// Index is a tree's metadata: every path with its type, mode, size,
// content hash and link target, sorted by path. It does not hold file
// content; that lives in a [BlobSource]. An Index is immutable and safe
// for concurrent use.
type Index struct {
	entries []Entry
	byPath  map[string]int32
}

// Entries returns the entries sorted by path. The slice must not be
// modified.
func (ix *Index) Entries() []Entry { return ix.entries }

// Len is the number of entries.
func (ix *Index) Len() int { return len(ix.entries) }

// Lookup returns the entry for a normalised path.
func (ix *Index) Lookup(path string) (Entry, bool) {
	i, ok := ix.byPath[path]
	if !ok {
		return Entry{}, false
	}
	return ix.entries[i], true
}

// newIndex sorts entries, rejects duplicates and builds the path map.
func newIndex(entries []Entry) (*Index, error) {
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	ix := &Index{entries: entries, byPath: make(map[string]int32, len(entries))}
	for i := range entries {
		if i > 0 && entries[i].Path == entries[i-1].Path {
			return nil, fmt.Errorf("treediff: duplicate path %q", entries[i].Path)
		}
		ix.byPath[entries[i].Path] = int32(i)
	}
	return ix, nil
}

// maxEntries bounds the entries of one tree, so a hostile archive of
// empty headers cannot make the host build an unbounded index.
const maxEntries = 1 << 22

// maxIndexPathBytes bounds the sum of an index's path lengths (an index
// holds every path of the tree), as mcp/hostio's extraction bounds an
// archive's names: 4M entries of 4 KiB paths would be 16 GiB.
const maxIndexPathBytes = 256 << 20

// cleanPath normalises an archive name: "./a/b", "a/b/", "/a//b" all
// become "a/b". It returns "" for the root. A ".." part, a NUL byte or an
// over-long name is an error: tar_out never writes one.
func cleanPath(name string) (string, error) {
	if len(name) > 4096 {
		return "", fmt.Errorf("treediff: path longer than 4096 bytes")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("treediff: path %q holds a NUL byte", name)
	}
	clean := true
	for part := range strings.SplitSeq(name, "/") {
		switch part {
		case "", ".":
			clean = false
		case "..":
			return "", fmt.Errorf("treediff: path %q leaves the tree", name)
		}
	}
	if clean {
		return name, nil // the common case: no copy
	}
	var b strings.Builder
	for part := range strings.SplitSeq(name, "/") {
		if part == "" || part == "." {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

// under reports whether path is prefix or below it.
func under(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	return path == prefix || len(path) > len(prefix) && path[len(prefix)] == '/' && strings.HasPrefix(path, prefix)
}

// tarStream reads entries from a guest's archive.
type tarStream struct {
	cr countingReader
	tr *tar.Reader
}

func newTarStream(r io.Reader) *tarStream {
	s := &tarStream{cr: countingReader{r: r}}
	s.tr = tar.NewReader(&s.cr)
	return s
}

// next returns the next supported entry with its path normalised, its
// content readable from s.tr, and Sum unset; io.EOF at the end.
//
// archive/tar takes a stream that stops at an entry boundary for a
// complete archive; a guest connection cut there would read as a tree with
// files missing. So next requires the end-of-archive marker (two zero
// blocks) right after the last entry.
func (s *tarStream) next() (Entry, error) {
	for {
		// Finish the previous entry, so its data ends at s.cr.n.
		if _, err := io.Copy(io.Discard, s.tr); err != nil {
			return Entry{}, fmt.Errorf("treediff: reading archive: %w", err)
		}
		end := (s.cr.n + 511) &^ 511
		hdr, err := s.tr.Next()
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // cleanPath below makes its own, stricter, check
		}
		if err == io.EOF {
			if s.cr.n-end != 1024 {
				return Entry{}, errors.New("treediff: archive truncated (no end-of-archive marker)")
			}
			return Entry{}, io.EOF
		}
		if err != nil {
			return Entry{}, fmt.Errorf("treediff: reading archive: %w", err)
		}
		var e Entry
		switch hdr.Typeflag {
		case tar.TypeReg:
			e.Type, e.Size = File, hdr.Size
		case tar.TypeDir:
			e.Type = Dir
		case tar.TypeSymlink:
			e.Type, e.Target = Symlink, hdr.Linkname
			if len(e.Target) > 4096 || strings.IndexByte(e.Target, 0) >= 0 {
				return Entry{}, fmt.Errorf("treediff: symlink %q: target over 4096 bytes or holding NUL", hdr.Name)
			}
		default:
			continue
		}
		if e.Path, err = cleanPath(hdr.Name); err != nil {
			return Entry{}, err
		}
		if e.Path == "" {
			continue // the root itself
		}
		e.Perm = uint32(hdr.Mode) & 0o7777
		return e, nil
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// blobSink keeps the content of a baseline's files.
type blobSink interface {
	// put reads exactly size bytes from r, stores them and returns their
	// SHA-256.
	put(r io.Reader, size int64) ([32]byte, error)
}

// buildIndex reads a whole archive into an Index, handing each file's
// content to sink (which may be nil: hash only).
func buildIndex(r io.Reader, sink blobSink) (*Index, error) {
	s := newTarStream(r)
	var entries []Entry
	var pathBytes int
	buf := make([]byte, 32<<10)
	for {
		e, err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(entries) == maxEntries {
			return nil, fmt.Errorf("treediff: more than %d entries", maxEntries)
		}
		if pathBytes += len(e.Path); pathBytes > maxIndexPathBytes {
			return nil, fmt.Errorf("treediff: the tree's paths total more than %d MiB", maxIndexPathBytes>>20)
		}
		if e.Type == File {
			g := newGitHash(e.Size)
			r := io.TeeReader(s.tr, g)
			if sink != nil {
				e.Sum, err = sink.put(r, e.Size)
			} else {
				h := sha256.New()
				var n int64
				n, err = io.CopyBuffer(h, r, buf)
				if err == nil && n != e.Size {
					err = io.ErrUnexpectedEOF
				}
				h.Sum(e.Sum[:0])
			}
			if err != nil {
				return nil, fmt.Errorf("treediff: reading %q: %w", e.Path, err)
			}
			g.Sum(e.GitID[:0])
		}
		entries = append(entries, e)
	}
	return newIndex(entries)
}

// IndexTar reads a tar archive into an Index without writing anything to
// disk. If blobs is not nil, every file's content is stored in it too, so
// it can serve as the BlobSource for [Diff] (tests, small trees).
func IndexTar(tarStream io.Reader, blobs MemBlobs) (*Index, error) {
	if blobs == nil {
		return buildIndex(tarStream, nil)
	}
	return buildIndex(tarStream, memSink(blobs))
}

// BlobSource gives the baseline content of a regular file by its SHA-256.
type BlobSource interface {
	Open(sum [32]byte) (io.ReadCloser, error)
}

// MemBlobs is a BlobSource held in memory.
type MemBlobs map[[32]byte][]byte

var _ BlobSource = MemBlobs(nil)

// Open returns the blob, or an error wrapping fs.ErrNotExist.
func (m MemBlobs) Open(sum [32]byte) (io.ReadCloser, error) {
	b, ok := m[sum]
	if !ok {
		return nil, fmt.Errorf("treediff: blob %x: %w", sum, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type memSink MemBlobs

func (m memSink) put(r io.Reader, size int64) ([32]byte, error) {
	var b bytes.Buffer
	if size < 1<<20 {
		b.Grow(int(size))
	}
	n, err := io.Copy(&b, r)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return [32]byte{}, err
	}
	sum := sha256.Sum256(b.Bytes())
	if _, ok := m[sum]; !ok {
		m[sum] = b.Bytes()
	}
	return sum, nil
}
