package workspace

import (
	"os"
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
)

// DefaultAllowHostPaths are the directories tools may read and write on
// the host when Options.AllowHostPaths names none: the server's working
// directory (where its chat host started it, normally the user's
// project) and the system temporary directory.
func DefaultAllowHostPaths() []string {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	return append(dirs, os.TempDir())
}

// hostRoots returns the allowed directories, each absolute with its
// symlinks resolved, as the paths checked against them are.
func (m *Manager) hostRoots() []string {
	dirs := m.opts.AllowHostPaths
	if len(dirs) == 0 {
		dirs = DefaultAllowHostPaths()
	}
	roots := make([]string, 0, len(dirs))
	for _, d := range dirs {
		abs, err := hostio.HostPath(d)
		if err != nil {
			continue
		}
		if r, err := hostio.ResolveHostPath(abs, false); err == nil {
			abs = r
		}
		roots = append(roots, abs)
	}
	return roots
}

// allowedHostPath cleans the host path p a tool call names (what says
// which argument it is), resolves its symlinks and refuses it unless it
// lies within an allowed directory: a client, or a prompt it read, may
// name any host file, and a symlink an export wrote may lead anywhere.
// For an export destination (write) the last element is not resolved
// (a symlink there is replaced, not followed), and the path must lie
// strictly beneath an allowed directory, so an export never replaces
// one. It returns the resolved path, which the caller then uses.
func (m *Manager) allowedHostPath(what, p string, write bool) (string, error) {
	abs, err := hostio.HostPath(p)
	if err != nil {
		return "", contract.Invalid("%s: %v", what, err)
	}
	resolved, err := hostio.ResolveHostPath(abs, write)
	if err != nil {
		return "", contract.Invalid("%s: %v", what, err).
			WithHint("Name a host path whose symlinks lead to existing directories.")
	}
	if write {
		state := m.opts.StateDir
		if r, err := hostio.ResolveHostPath(state, false); err == nil {
			state = r
		}
		if hostio.Within(resolved, state) {
			return "", contract.Invalid("%s %s is inside pyro's state directory %s, which holds the workspaces' disks", what, abs, state).
				WithHint("Export somewhere else, such as a directory in the user's project.")
		}
	}
	roots := m.hostRoots()
	for _, r := range roots {
		if write && resolved == r {
			return "", contract.Invalid("%s %s is an allowed host directory itself; an export would replace it", what, abs).
				WithHint("Export to a new path beneath it, such as " + abs + "/export.")
		}
	}
	for _, r := range roots {
		if hostio.Within(resolved, r) {
			return resolved, nil
		}
	}
	leads := ""
	if resolved != abs {
		leads = " (through symlinks, " + resolved + ")"
	}
	return "", contract.Invalid("%s %s%s is outside the host directories this server may use: %s",
		what, abs, leads, strings.Join(roots, ", ")).
		WithHint("Use a host path beneath one of those directories. To allow another, the user restarts the server with `pyro mcp serve --allow-host-path DIR` (repeatable).")
}
