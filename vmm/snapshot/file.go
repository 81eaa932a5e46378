package snapshot

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write encodes s to the state file at path, atomically: a temporary file in
// the same directory (mode 0600: the state holds the guest's registers),
// fsync'd and renamed over path, then the directory fsync'd. On error nothing
// of it is left, neither the temporary file nor a file at path.
func Write(path string, s *State) (err error) {
	b, err := Encode(s)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	renamed := false
	defer func() {
		if err != nil {
			f.Close()
			if renamed {
				os.Remove(path)
			} else {
				os.Remove(f.Name())
			}
			err = fmt.Errorf("write snapshot state %s: %w", path, err)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	renamed = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Read reads and decodes the state file at path. A file that is not a valid
// state file gives an error wrapping ErrFormat (see Decode).
func Read(path string) (*State, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read snapshot state: %s is not a regular file", path)
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("read snapshot state %s: %w: %d bytes, more than a state file may hold (%d)", path, ErrFormat, fi.Size(), MaxSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read snapshot state %s: %w", path, err)
	}
	s, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("read snapshot state %s: %w", path, err)
	}
	return s, nil
}
