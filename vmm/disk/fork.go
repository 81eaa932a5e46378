package disk

// Fork: a new stack that starts on another stack's frozen layer and shares
// that layer and its ancestors' files by hard link.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// linkFile is os.Link; tests replace it to take the copy fallback.
var linkFile = os.Link

// Fork creates a new stack in dstDir, which must not exist (it is created
// 0700, with its parents if they are missing), that reads as the stack in
// srcDir did when its frozen layer id was frozen. Its layers are id and id's
// ancestors, with their IDs, names and times, plus a new empty writable top
// on id; its base image, disk size and cluster size are the source's. Other
// branches of the source are not taken. The frozen layers' files are hard
// links to the source's (frozen files never change, so the stacks share them
// safely and a write to either stack reaches only its own top), or copies,
// holes kept, where the file system refuses the link (another file system,
// links not permitted, too many links).
//
// The source may be open meanwhile, by its VM or anyone else: Fork takes no
// lock on it and reads only its manifest, which is replaced atomically, and
// its frozen layers' files. It checks each shared layer as Open does (map
// checksum, layer ID and disk size, data file length; ErrCorrupt) and the
// base image (ErrBaseChanged). A layer the source deletes while Fork runs
// makes Fork fail. Deleting a shared layer later, in either stack, removes
// only that stack's link.
//
// id must be a frozen layer of the source: not its writable top, not BaseID
// (Create makes a stack on a base image alone). On any error nothing is left
// in dstDir's place. The new stack is returned open, as Open returns it.
func Fork(srcDir, id, dstDir string) (_ *Stack, err error) {
	m, err := readManifest(srcDir)
	if err != nil {
		return nil, err
	}
	chain, err := forkChain(srcDir, m, id)
	if err != nil {
		return nil, err
	}
	if m.Base != nil {
		f, err := openBase(srcDir, m.Base)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	parent := filepath.Dir(filepath.Clean(dstDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("disk: Fork: %w", err)
	}
	if err := os.Mkdir(dstDir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("disk: Fork: %s already exists: fork into a new directory", dstDir)
		}
		return nil, fmt.Errorf("disk: Fork: %w", err)
	}
	if pf, err := os.Open(parent); err == nil {
		pf.Sync() // the directory's own entry
		pf.Close()
	}
	dirf, err := lockDir(dstDir, false)
	if err != nil {
		os.Remove(dstDir)
		return nil, err
	}
	defer func() {
		if err != nil {
			dirf.Close() // load closes it on its errors; closing twice is harmless
			os.RemoveAll(dstDir)
		}
	}()
	for _, l := range chain {
		if err := shareLayer(srcDir, dstDir, l.ID, m.Size); err != nil {
			return nil, err
		}
		hook("fork:shared")
	}
	// createLayer syncs the directory, which makes the links durable; the
	// linked files were made durable by the source's Freeze.
	top, err := createLayer(dirf, dstDir, m.Size)
	if err != nil {
		return nil, err
	}
	top.data.Close()
	top.info.Parent = id
	if err := writeManifest(dirf, dstDir, m.Size, m.Base, append(chain, top.info)); err != nil {
		return nil, err
	}
	return load(dirf, dstDir, false)
}

// forkChain is the frozen layer id of the stack in srcDir, whose manifest
// is m, and its ancestors, bottom first (the order they were frozen in).
func forkChain(srcDir string, m *manifest, id string) ([]LayerInfo, error) {
	byID := map[string]layerRecord{}
	for _, r := range m.Layers {
		byID[r.ID] = r
	}
	r, ok := byID[id]
	switch {
	case id == BaseID:
		return nil, fmt.Errorf("disk: Fork: name a frozen layer of stack %s; a stack on its base image alone is made by Create", srcDir)
	case !ok:
		return nil, fmt.Errorf("disk: Fork: stack %s has no layer %q (Layers lists them)", srcDir, id)
	case !r.Frozen:
		return nil, fmt.Errorf("disk: Fork: layer %s is the writable top of stack %s and still changes: Freeze it and fork the frozen layer", id, srcDir)
	}
	// readManifest checked that every parent is a frozen layer listed
	// before its child, so this walk ends at the base.
	var chain []LayerInfo
	for p := id; p != BaseID; p = *r.Parent {
		r = byID[p]
		chain = append(chain, LayerInfo{ID: r.ID, Parent: *r.Parent, Name: r.Name, Frozen: true, Created: r.Created, FrozenAt: r.FrozenAt})
	}
	slices.Reverse(chain)
	return chain, nil
}

// shareLayer links (or copies) frozen layer id's map and data files from
// srcDir into dstDir and checks them as load does, map first: it is small
// and says whether the layer is sound before a large data file is copied.
func shareLayer(srcDir, dstDir, id string, size int64) error {
	if err := shareFile(mapPath(srcDir, id), mapPath(dstDir, id)); err != nil {
		return shareError(srcDir, id, err)
	}
	b, err := os.ReadFile(mapPath(dstDir, id))
	if err != nil {
		return fmt.Errorf("disk: Fork: layer %s: %w", id, err)
	}
	if _, err := decodeMap(b, id, size); err != nil {
		return corrupt(srcDir, "layer %s: map file %v", id, err)
	}
	if err := shareFile(dataPath(srcDir, id), dataPath(dstDir, id)); err != nil {
		return shareError(srcDir, id, err)
	}
	fi, err := os.Lstat(dataPath(dstDir, id))
	if err != nil {
		return fmt.Errorf("disk: Fork: layer %s: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return corrupt(srcDir, "layer %s: data file is not a regular file", id)
	}
	if want := clustersOf(size) * ClusterSize; fi.Size() != want {
		return corrupt(srcDir, "layer %s: data file is %d bytes, want %d", id, fi.Size(), want)
	}
	return nil
}

// shareError explains a failure to link or copy a file of layer id: a file
// that is missing while the source's manifest still names the layer is
// damage; one whose layer is gone was deleted after Fork read the manifest.
func shareError(srcDir, id string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		if m, merr := readManifest(srcDir); merr == nil && !slices.ContainsFunc(m.Layers, func(r layerRecord) bool { return r.ID == id }) {
			return fmt.Errorf("disk: Fork: layer %s was deleted from stack %s while it was being forked: %w", id, srcDir, err)
		}
		return corrupt(srcDir, "layer %s: %v", id, err)
	}
	return fmt.Errorf("disk: Fork: layer %s of stack %s: %w", id, srcDir, err)
}

// shareFile makes dst a hard link to src, or a copy of it where the file
// system refuses the link: EXDEV (another file system), EPERM (links not
// supported, or refused by fs.protected_hardlinks) or EMLINK (too many).
func shareFile(src, dst string) error {
	err := linkFile(src, dst)
	if err == nil || !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EMLINK) {
		return err
	}
	return copyFile(src, dst)
}

// copyFile copies regular file src to a new file dst, durably, keeping its
// holes.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	if err := copySparse(out, in, fi.Size()); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Sync()
}

// copySparse copies the first size bytes of in to out, which is size bytes
// of hole: only the data extents SEEK_DATA and SEEK_HOLE find, so holes stay
// holes.
func copySparse(out, in *os.File, size int64) error {
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			return nil // a hole to the end
		}
		if err != nil { // no SEEK_DATA: copy the rest, skipping zeros
			return copyRange(out, in, off, size)
		}
		if start >= size {
			return nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		end = min(end, size)
		if err := copyRange(out, in, start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// copyRange copies bytes [off, end) of in to the same offsets of out, in the
// kernel where copy_file_range works between the two files.
func copyRange(out, in *os.File, off, end int64) error {
	for off < end {
		roff, woff := off, off
		n, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(end-off, 1<<30)), 0)
		if err != nil || n <= 0 {
			// Not between these files (EXDEV, EOPNOTSUPP, EINVAL, ENOSYS),
			// or a real error, which the plain copy reports.
			return copyRangeRW(out, in, off, end)
		}
		off += int64(n)
	}
	return nil
}

// copyRangeRW is copyRange by pread and pwrite. Clusters of zeros are not
// written: out is a hole there already.
func copyRangeRW(out, in *os.File, off, end int64) error {
	buf := make([]byte, len(zeroBuf))
	zero := func(b []byte) bool { return bytes.Equal(b, zeroBuf[:len(b)]) }
	for off < end {
		n := min(end-off, int64(len(buf)))
		if _, err := in.ReadAt(buf[:n], off); err != nil {
			return err
		}
		for i := int64(0); i < n; {
			j := i // [i, j): a run of clusters holding data
			for ; j < n && !zero(buf[j:min(j+ClusterSize, n)]); j += ClusterSize {
			}
			j = min(j, n)
			if j > i {
				if _, err := out.WriteAt(buf[i:j], off+i); err != nil {
					return err
				}
			}
			for ; j < n && zero(buf[j:min(j+ClusterSize, n)]); j += ClusterSize {
			}
			i = j
		}
		off += n
	}
	return nil
}
