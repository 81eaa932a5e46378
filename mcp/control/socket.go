package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxSocketPath is the longest path a unix socket may have on Linux
// (sun_path is 108 bytes, one of them the terminating NUL).
const MaxSocketPath = 107

// socketName is a server's socket file in Dir: its pid.
func socketName(pid int) string { return strconv.Itoa(pid) + ".sock" }

// Dir is the directory of this user's control sockets: pyro/control in
// $XDG_RUNTIME_DIR when that is set and usable (an absolute directory of
// this user's that others cannot write, short enough for a socket path),
// else control in stateDir, the pyro state directory ($PYRO_STATE_DIR or
// its default: every face must pass the same one to find each other).
func Dir(stateDir string) string {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" && runtimeDirUsable(rt) {
		d := filepath.Join(rt, "pyro", "control")
		if len(filepath.Join(d, socketName(1<<22))) <= MaxSocketPath {
			return d
		}
	}
	return filepath.Join(stateDir, "control")
}

func runtimeDirUsable(dir string) bool {
	if !filepath.IsAbs(dir) {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Uid == uint32(os.Getuid()) && st.Mode&0o022 == 0
}

// prepareDir creates dir (and the missing directories above it) with mode
// 0700 and checks that it is this user's and that no one else may enter
// it: the directory, not the socket's own mode, is what keeps other users
// out from the moment the socket exists.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the control socket directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("the control socket directory: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("the control socket directory %s is not a directory", dir)
	}
	if st.Uid != uint32(os.Getuid()) {
		return fmt.Errorf("the control socket directory %s belongs to uid %d, not to this user (uid %d)", dir, st.Uid, os.Getuid())
	}
	if st.Mode&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("making the control socket directory private: %w", err)
		}
	}
	return nil
}

// Listen creates this process's control socket in dir (see Dir): the
// directory mode 0700, the socket <pid>.sock mode 0600. Closing the
// listener removes the socket file.
func Listen(dir string) (net.Listener, string, error) {
	path := filepath.Join(dir, socketName(os.Getpid()))
	if len(path) > MaxSocketPath {
		return nil, "", fmt.Errorf("the control socket path %s is %d bytes, longer than the %d a unix socket may have: "+
			"set XDG_RUNTIME_DIR (or PYRO_STATE_DIR) to a shorter directory", path, len(path), MaxSocketPath)
	}
	if err := prepareDir(dir); err != nil {
		return nil, "", err
	}
	// A file of this pid is a dead process's: pids are unique among the
	// living.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("removing a stale control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("listening on the control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("making the control socket private: %w", err)
	}
	return ln, path, nil
}

// Server is a live `pyro mcp serve` found in the control directory.
type Server struct {
	Hello
	Path string // its control socket
}

// Scan is what Discover found in a control directory.
type Scan struct {
	Servers []Server // the live servers, oldest first
	// Removed are the socket files of servers that are gone, deleted.
	Removed []string
	// Unreachable are sockets whose server lives but did not answer
	// (busy, stopping, or another program), with why.
	Unreachable []string
}

// staleAge is how old a socket nobody listens on must be before Discover
// deletes it while a process with its pid lives (pid reuse): a server
// listens within moments of creating its socket.
const staleAge = 10 * time.Second

// helloTimeout bounds Discover's handshake with each server.
const helloTimeout = 3 * time.Second

// Discover returns every live server of dir, deleting the sockets of
// servers that are gone. A missing dir has none.
func Discover(dir string) ([]Server, error) {
	s, err := DiscoverAll(dir)
	return s.Servers, err
}

// DiscoverAll is Discover with what it cleaned and what did not answer.
func DiscoverAll(dir string) (Scan, error) {
	var s Scan
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading the control socket directory: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		pidText, ok := strings.CutSuffix(name, ".sock")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		path := filepath.Join(dir, name)
		h, err := hello(path, helloTimeout)
		if err == nil {
			s.Servers = append(s.Servers, Server{Hello: h, Path: path})
			continue
		}
		if stale(path, pid, err) {
			if rerr := os.Remove(path); rerr == nil {
				s.Removed = append(s.Removed, path)
			}
			continue
		}
		s.Unreachable = append(s.Unreachable, fmt.Sprintf("%s: %v", path, err))
	}
	sort.SliceStable(s.Servers, func(i, j int) bool { return s.Servers[i].Started.Before(s.Servers[j].Started) })
	return s, nil
}

// stale reports whether the socket at path, which dialErr says could not
// be reached, belongs to no server.
func stale(path string, pid int, dialErr error) bool {
	if !pidAlive(pid) {
		return true
	}
	if !errors.Is(dialErr, syscall.ECONNREFUSED) {
		return false
	}
	fi, err := os.Lstat(path)
	return err == nil && time.Since(fi.ModTime()) > staleAge
}

func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// hello asks the server at path who it is.
func hello(path string, timeout time.Duration) (Hello, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err != nil {
		return Hello{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	line, err := marshal(request{Op: OpHello})
	if err != nil {
		return Hello{}, err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return Hello{}, err
	}
	resp, err := readLine(bufio.NewReader(conn), 64<<10)
	if err != nil {
		return Hello{}, fmt.Errorf("no answer to hello: %w", err)
	}
	var r response
	if err := unmarshal(resp, &r, false); err != nil {
		return Hello{}, fmt.Errorf("a bad answer to hello: %w", err)
	}
	if r.Error != nil {
		return Hello{}, r.Error.contract()
	}
	var h Hello
	if err := unmarshal(r.Result, &h, false); err != nil {
		return Hello{}, fmt.Errorf("a bad answer to hello: %w", err)
	}
	return h, nil
}
