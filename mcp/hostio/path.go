package hostio

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
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
