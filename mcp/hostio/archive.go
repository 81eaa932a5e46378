package hostio

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
)

// TarArchive re-streams the host archive at file (.tar, or gzip-
// compressed .tar.gz/.tgz; gzip is recognised by its magic bytes, not the
// name) to w as a normalised tar stream for the guest agent's tar_in.
//
// Every entry is checked and rewritten the way TarDir writes a
// directory: names cleaned and relative ("./a" becomes "a"), modes cut
// to permission bits, owners zeroed, mtimes in whole seconds. An
// absolute name, a name that climbs out through "..", or a hard link
// whose target does either, fails the whole archive: it would land
// outside the workspace directory. Hard links are kept as hard links
// when their target is a regular file sent earlier in the same stream
// (the agent links them beneath its directory); a hard link to anything
// else (absent, skipped, a directory, a symlink) is skipped and
// reported. Devices, FIFOs, unknown entry types and files over
// MaxFileSize are skipped and reported; symlinks are sent as they are.
// A truncated archive (no end-of-archive marker) is an error, and the
// limits are those of TarDir.
func TarArchive(ctx context.Context, w io.Writer, file string, opts SeedOptions) (*Report, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("seed from archive: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("seed from archive %s: bad gzip data: %w", file, err)
		}
		defer gz.Close()
		r = gz
	case bytes.HasPrefix(magic, []byte("BZh")):
		return nil, fmt.Errorf("seed from archive %s: bzip2 is not supported; use a .tar or .tar.gz", file)
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, fmt.Errorf("seed from archive %s: xz is not supported; use a .tar or .tar.gz", file)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return nil, fmt.Errorf("seed from archive %s: zstd is not supported; use a .tar or .tar.gz", file)
	}
	s := newSeeder(ctx, w, opts)
	if err := s.archive(newTarReader(ctxReader{ctx, r})); err != nil {
		return s.rep, fmt.Errorf("seed from archive %s: %w", file, err)
	}
	return s.rep, s.finish()
}

func (s *seeder) archive(tr *tarReader) error {
	files := make(map[string]bool) // regular files sent so far: hard-link targets
	excluded := make(map[string]bool)
	for {
		hdr, err := tr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root: the target directory's own mode stays
		}
		if s.opts.Exclude != nil {
			if s.underExcluded(name, excluded) {
				s.rep.Excluded++
				continue
			}
			out := s.opts.Exclude(name, hdr.FileInfo())
			if hdr.Typeflag == tar.TypeDir {
				excluded[name] = out
			}
			if out {
				s.rep.Excluded++
				continue
			}
		}
		delete(files, name) // replaced, whatever it becomes
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = s.dir(name, os.FileMode(hdr.Mode), hdr.ModTime)
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			var sent bool
			sent, err = s.stream(name, hdr, tr)
			files[name] = sent
		case tar.TypeSymlink:
			err = s.symlink(name, hdr.Linkname, hdr.ModTime)
		case tar.TypeLink:
			target, lerr := cleanName(hdr.Linkname)
			switch {
			case lerr != nil || target == "":
				return fmt.Errorf("hard link %q points to %q, outside the archive", hdr.Name, hdr.Linkname)
			case !files[target]:
				s.rep.skip(name, fmt.Sprintf("hard link to %q, which is not a regular file sent earlier in the archive", hdr.Linkname))
			default:
				s.rep.HardLinks++
				files[name] = true
				err = s.header(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: hdr.ModTime})
			}
		default:
			s.rep.skip(name, typeName(hdr.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

// underExcluded reports whether an ancestor directory of name is
// excluded, asking Exclude about ancestors the archive has no entry for
// (as a directory with mode 0755) and remembering each answer.
func (s *seeder) underExcluded(name string, excluded map[string]bool) bool {
	var dirs []string
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		out, seen := excluded[d]
		if !seen {
			out = s.opts.Exclude(d, (&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}).FileInfo())
			excluded[d] = out
		}
		if out {
			return true
		}
	}
	return false
}

// stream sends a regular file's content from an archive; it reports
// whether the file was sent (not skipped).
func (s *seeder) stream(name string, hdr *tar.Header, r io.Reader) (bool, error) {
	if skip, err := s.tooBig(name, hdr.Size); skip || err != nil {
		return false, err
	}
	if err := s.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: hdr.Size, Mode: hdr.Mode & 0o777, ModTime: hdr.ModTime}); err != nil {
		return false, err
	}
	if s.buf == nil {
		s.buf = make([]byte, 128<<10)
	}
	n, err := io.CopyBuffer(s.tw, io.LimitReader(r, hdr.Size), s.buf)
	if err == nil && n < hdr.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return false, fmt.Errorf("copying %s: %w", name, err)
	}
	s.rep.Files++
	s.rep.Bytes += hdr.Size
	return true, nil
}
