package patch

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// WorkspaceRoot is the guest directory patch paths are relative to. An
// absolute path in a patch is accepted only below it.
const WorkspaceRoot = "/workspace"

// ErrInvalidPath is wrapped by every error CleanPath returns.
var ErrInvalidPath = errors.New("invalid path")

// CleanPath turns a path an agent wrote into a clean path relative to the
// workspace root, or says why it cannot be one. It accepts relative paths
// and absolute ones under /workspace/ (the prefix is removed), cleans "."
// and ".." components that stay inside the workspace ("a/../b" is "b"),
// and rejects empty paths, the workspace root itself, paths that escape it
// ("../x", "a/../../x"), other absolute paths, names ending in "/" and NUL
// bytes. The result never starts with "/" or "..", and is never ".".
func CleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty path", ErrInvalidPath)
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidPath, p)
	case strings.HasSuffix(p, "/"):
		return "", fmt.Errorf("%w: %q names a directory, not a file", ErrInvalidPath, p)
	}
	rel := p
	if strings.HasPrefix(p, "/") {
		rest, ok := strings.CutPrefix(p, WorkspaceRoot+"/")
		if !ok {
			return "", fmt.Errorf("%w: absolute path %q is outside %s; use a path relative to the workspace root", ErrInvalidPath, p, WorkspaceRoot)
		}
		rel = rest
	}
	c := path.Clean(rel)
	switch {
	case c == ".":
		return "", fmt.Errorf("%w: %q names the workspace root, not a file", ErrInvalidPath, p)
	case c == ".." || strings.HasPrefix(c, "../"):
		return "", fmt.Errorf("%w: %q escapes the workspace", ErrInvalidPath, p)
	case strings.HasPrefix(c, "/"):
		// "/workspace//etc" cleans to "/etc".
		return "", fmt.Errorf("%w: absolute path %q is outside %s", ErrInvalidPath, p, WorkspaceRoot)
	}
	return c, nil
}
