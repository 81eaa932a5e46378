package hostio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An export is written to a temporary sibling of its destination and
// renamed into place at the end. The temporary's name says whose it is
// (".NAME.pyro-tmp-RANDOM") and, while the export runs, it is held
// under an exclusive flock, so the next export into the same directory
// can tell the leftovers of a killed export (unlocked) from the work of
// a running one (locked) and remove them. An existing destination that
// an export replaces is never deleted: it is moved to
// NAME.pyro-backup-YYYYMMDDTHHMMSS (UTC) beside it.
const (
	// tmpMarker marks the temporaries of an export. oldMarker (a
	// replaced tree set aside) and tarMarker (a .tar.gz's uncompressed
	// stage) are only made by older pyro versions; they are swept all
	// the same.
	tmpMarker = ".pyro-tmp-"
	oldMarker = ".pyro-old-"
	tarMarker = ".pyro-tar-"
	// BackupMarker joins a replaced destination's name and the time of
	// the export that replaced it.
	BackupMarker = ".pyro-backup-"
	// backupTimeFormat stamps a backup's name, in UTC.
	backupTimeFormat = "20060102T150405"
	// maxBackupTries bounds the search for a free backup name when
	// several exports replace one destination within a second.
	maxBackupTries = 100
	// staleTempAge is how old an unlocked temporary must be before the
	// sweep removes it. A live export locks its temporary microseconds
	// after creating it; the margin only covers that gap.
	staleTempAge = time.Minute
	// maxTmpBase bounds the part of the destination's name that goes
	// into a temporary's name, so a long name (up to NAME_MAX) still
	// leaves room for the marker and random suffix.
	maxTmpBase = 128
)

// target is a host destination being written through a temporary
// sibling.
type target struct {
	dest, parent, base string
	overwrite          bool

	replaced bool
	backup   string // where the replaced dest went
	swept    int    // stale temporaries removed
	warnings []string
}

// prepare checks dest before anything is read or written, and sweeps
// the temporaries killed exports left beside it.
func prepare(dest string, overwrite bool) (*target, error) {
	abs, err := HostPath(dest)
	if err != nil {
		return nil, err
	}
	parent, base := filepath.Split(abs)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("%s cannot be a destination; name a file or directory to create", abs)
	}
	if _, err := os.Lstat(abs); err == nil {
		if !overwrite {
			return nil, fmt.Errorf("%s exists; pass overwrite: true to replace it", abs)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if fi, err := os.Stat(parent); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s: %s is not a directory", abs, parent)
	}
	t := &target{dest: abs, parent: filepath.Clean(parent), base: base, overwrite: overwrite}
	t.swept, err = SweepTemps(t.parent, time.Now())
	if err != nil {
		t.warnings = append(t.warnings, fmt.Sprintf("removing stale temporaries in %s: %v", t.parent, err))
	}
	return t, nil
}

func (t *target) tmpPattern() string {
	b := t.base
	if len(b) > maxTmpBase {
		b = b[:maxTmpBase]
	}
	return "." + b + tmpMarker
}

// lock takes the exclusive flock that marks a temporary as in use.
func lock(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// writeDir runs fill on a new temporary directory and moves it to dest.
func (t *target) writeDir(fill func(*os.Root) error) error {
	if err := os.MkdirAll(t.parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(t.parent, t.tmpPattern())
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			removeAllWritable(tmp)
		}
	}()
	held, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer held.Close() // after the rename or the removal: deferred first
	if err := lock(held); err != nil {
		return fmt.Errorf("locking %s: %w", tmp, err)
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	err = fill(root)
	if cerr := root.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := t.commit(tmp, true); err != nil {
		return err
	}
	done = true
	return nil
}

// writeFile runs fill on a new temporary file and moves it to dest; fill
// returns the mtime to give it (zero: leave it).
func (t *target) writeFile(fill func(*os.File) (time.Time, error)) error {
	if err := os.MkdirAll(t.parent, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(t.parent, t.tmpPattern()+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		f.Close()
		if !done {
			os.Remove(tmp)
		}
	}()
	if err := lock(f); err != nil {
		return fmt.Errorf("locking %s: %w", tmp, err)
	}
	mtime, err := fill(f)
	if err == nil {
		err = f.Sync()
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(tmp, mtime, mtime)
	}
	if err != nil {
		return err
	}
	// The file stays open, and locked, until it has its final name.
	if err := t.commit(tmp, false); err != nil {
		return err
	}
	done = true
	return nil
}

// commit renames tmp to dest. An existing dest (allowed only with
// overwrite) is moved to a new backup name beside it first, and moved
// back if tmp cannot take its place; a regular file replaced by a file
// is hard-linked to its backup instead, so dest never goes missing.
func (t *target) commit(tmp string, isDir bool) error {
	old, err := os.Lstat(t.dest)
	if errors.Is(err, fs.ErrNotExist) {
		err = renameNoReplace(tmp, t.dest)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s appeared while exporting; pass overwrite: true to replace it", t.dest)
		}
		return err
	}
	if err != nil {
		return err
	}
	if !t.overwrite {
		return fmt.Errorf("%s appeared while exporting; pass overwrite: true to replace it", t.dest)
	}
	now := time.Now().UTC()
	if !isDir && old.Mode().IsRegular() {
		backup, err := t.toBackup(now, os.Link)
		if err == nil {
			if err := os.Rename(tmp, t.dest); err != nil {
				os.Remove(backup)
				return err
			}
			t.replaced, t.backup = true, backup
			return nil
		}
		// A file system without hard links: move it, as a directory.
	}
	backup, err := t.toBackup(now, renameNoReplace)
	if err != nil {
		return fmt.Errorf("moving the old %s aside: %w", t.dest, err)
	}
	if err := renameNoReplace(tmp, t.dest); err != nil {
		if rerr := renameNoReplace(backup, t.dest); rerr != nil {
			return fmt.Errorf("%w; and moving the old %s back failed (%v): it is at %s", err, t.dest, rerr, backup)
		}
		return err
	}
	t.replaced, t.backup = true, backup
	return nil
}

// toBackup gives dest a backup name with op (a rename or a link), the
// first of NAME.pyro-backup-STAMP, NAME.pyro-backup-STAMP-2, ... that is
// free, and returns it.
func (t *target) toBackup(now time.Time, op func(oldname, newname string) error) (string, error) {
	stamp := t.dest + BackupMarker + now.Format(backupTimeFormat)
	for i := 1; i <= maxBackupTries; i++ {
		name := stamp
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		err := op(t.dest, name)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s-2 to -%d are all taken", stamp, maxBackupTries)
}

// renameNoReplace renames oldname to newname, failing with an
// fs.ErrExist error if newname exists, atomically where the file
// system supports it.
func renameNoReplace(oldname, newname string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldname, unix.AT_FDCWD, newname, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	// No RENAME_NOREPLACE here: check, then rename.
	if _, err := os.Lstat(newname); err == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EEXIST}
	}
	return os.Rename(oldname, newname)
}

// IsTemp reports whether name (a base name) is one of an export's
// temporaries.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && (strings.Contains(name, tmpMarker) || strings.Contains(name, oldMarker) || strings.Contains(name, tarMarker))
}

// SweepTemps removes from dir the temporaries of exports that were
// killed midway: entries IsTemp names that no running export holds
// locked and that are at least staleTempAge old (by now). It returns how
// many it removed. Backups are never touched.
func SweepTemps(dir string, now time.Time) (int, error) {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var stale []string
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if IsTemp(n) {
				stale = append(stale, n)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	swept := 0
	var errs []error
	for _, n := range stale {
		p := filepath.Join(dir, n)
		ok, err := unused(p, now)
		if err == nil && ok {
			if err = removeAllWritable(p); err == nil {
				swept++
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return swept, errors.Join(errs...)
}

// unused reports whether the temporary p is old enough and unlocked.
// Symlinks are never followed (a temporary is never one).
func unused(p string, now time.Time) (bool, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	if now.Sub(fi.ModTime()) < staleTempAge {
		return false, nil
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return true, nil // not one of ours to lock, and nothing to write through
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = lock(f)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil // an export is writing it
	}
	return err == nil, err
}

// removeAllWritable is os.RemoveAll that first makes directories
// writable, so a read-only directory in the old tree does not keep it.
func removeAllWritable(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
