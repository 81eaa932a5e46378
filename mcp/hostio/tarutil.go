package hostio

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// cleanName checks a tar entry's name and returns it clean and relative;
// "" means the archive's root itself. Absolute names and names that
// climb out through ".." are errors.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("an entry has an empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("entry %q has a NUL byte in its name", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q has an absolute name; archive names must be relative", name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("entry %q leads outside the archive root through \"..\"", name)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// linkEscapes reports whether a symlink named name with the given target
// points outside the archive root (absolute, or climbing out by "..").
func linkEscapes(name, target string) bool {
	if path.IsAbs(target) {
		return true
	}
	c := path.Join(path.Dir(name), target)
	return c == ".." || strings.HasPrefix(c, "../")
}

// tarReader wraps tar.Reader to insist on the end-of-archive marker (two
// zero blocks): tar.Reader alone takes a stream cut at a block boundary
// for a complete archive, which would turn a dropped connection into a
// silently partial export.
type tarReader struct {
	*tar.Reader
	cr *countingReader
}

func newTarReader(r io.Reader) *tarReader {
	cr := &countingReader{r: r}
	return &tarReader{Reader: tar.NewReader(cr), cr: cr}
}

// errNoEnd is returned when a stream ends without the end-of-archive
// marker.
var errNoEnd = errors.New("the stream ends without tar's end-of-archive marker (truncated, or not a tar stream)")

// next is tar.Reader.Next that reads what is left of the current entry
// first and returns errNoEnd in place of io.EOF for a truncated stream.
func (t *tarReader) next() (*tar.Header, error) {
	if _, err := io.Copy(io.Discard, t.Reader); err != nil {
		return nil, err
	}
	before := t.cr.n
	hdr, err := t.Next()
	if err == io.EOF {
		// A complete archive ends with two zero blocks, read by this
		// Next (after at most 511 bytes of padding). Fewer bytes, or a
		// shorter run of zeros, means the stream stopped at a block
		// boundary: between entries, or after a PAX or long-name header.
		if t.cr.n-before < 2*512 || t.cr.zeros < 2*512 {
			return nil, errNoEnd
		}
	}
	return hdr, err
}

// countingReader counts the bytes read, and how many of the last ones
// were zeros.
type countingReader struct {
	r     io.Reader
	n     int64
	zeros int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	i := n - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		c.zeros += int64(n)
	} else {
		c.zeros = int64(n - 1 - i)
	}
	return n, err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// typeName names a tar entry type in messages.
func typeName(t byte) string {
	switch t {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return "regular file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe (FIFO)"
	}
	return fmt.Sprintf("tar type %q", string(t))
}
