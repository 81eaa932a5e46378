package hostio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Workspace is the guest directory every tool path lives under.
const Workspace = "/workspace"

// GuestPath cleans a path a tool call names inside the workspace and
// returns it absolute: a relative path is taken relative to /workspace,
// and an absolute one must be /workspace or beneath it. ".." may be used
// only while it stays inside /workspace. The check is lexical; the guest
// agent resolves symlinks inside the guest, where they can do the host no
// harm.
func GuestPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("path is empty; use a path under /workspace")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q contains a NUL byte; use a path under /workspace", p)
	}
	var c string
	if path.IsAbs(p) {
		c = path.Clean(p)
	} else {
		c = path.Join(Workspace, p)
	}
	if c != Workspace && !strings.HasPrefix(c, Workspace+"/") {
		return "", fmt.Errorf("path %q is outside /workspace; use a path under /workspace", p)
	}
	return c, nil
}

// HostPath makes a path the user names on the host absolute and clean,
// expanding a leading "~" or "~/" to the home directory ("~user" is not
// supported). Relative paths are relative to the server's working
// directory.
func HostPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("host path is empty; give an absolute host path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("host path %q contains a NUL byte", p)
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("host path %q: cannot expand ~: %w", p, err)
		}
		p = filepath.Join(home, p[1:])
	} else if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("host path %q: ~user is not supported; give the full path", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("host path %q: %w", p, err)
	}
	return abs, nil
}

// ResolveHostPath returns the absolute, clean host path abs with every
// symlink on it resolved, so that where it really leads can be checked
// against the directories a server may use. The longest part of it
// that exists is resolved; the rest, which does not exist yet, is
// appended as it is. With keepLast the last element is left as it is
// (an export replaces a symlink there; it never writes through it). A
// path through a symlink that points to nothing is an error: where it
// would lead is not known until something creates the target.
func ResolveHostPath(abs string, keepLast bool) (string, error) {
	abs = filepath.Clean(abs)
	if keepLast {
		dir, base := filepath.Split(abs)
		if base == "" {
			return abs, nil // the root
		}
		r, err := resolveExisting(filepath.Clean(dir))
		if err != nil {
			return "", err
		}
		return filepath.Join(r, base), nil
	}
	return resolveExisting(abs)
}

func resolveExisting(p string) (string, error) {
	var rest []string
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			slices.Reverse(rest)
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("host path %s: %w", p, err)
		}
		if _, lerr := os.Lstat(p); lerr == nil {
			return "", fmt.Errorf("host path %s is a symlink that points to nothing (or passes through one)", p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = append(rest, filepath.Base(p))
		p = parent
	}
}

// Within reports whether the clean absolute path p is dir or lies
// beneath it.
func Within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}
