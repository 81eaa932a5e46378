package hostio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoGit is returned (wrapped) when the git command is not installed.
var ErrNoGit = errors.New("git is not installed (not found in PATH); seed from the directory instead")

// ErrNotCheckout is returned (wrapped) when a directory is not inside a
// git checkout.
var ErrNotCheckout = errors.New("not inside a git checkout")

// FindGitRoot returns the nearest directory at or above dir that holds a
// .git entry (a directory, or the file a worktree or submodule has),
// made absolute. It does not need git.
func FindGitRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("%s: %w (no .git found here or above)", abs, ErrNotCheckout)
		}
		d = parent
	}
}

// gitSafeConfig switches off, on git's command line (which outranks every
// config file, including files the repository's config includes), each
// setting of a checkout's own .git/config that makes git run a command
// or write while it only lists files: a checkout may come from anywhere,
// even from a guest through an export, and seeding must not run it.
var gitSafeConfig = []string{
	"-c", "core.fsmonitor=false", // a command git runs on every index read
	"-c", "core.hooksPath=/dev/null", // no hooks, wherever they are
	"-c", "core.untrackedCache=false", // no index writes to record it
	"-c", "core.splitIndex=false",
	"-c", "index.skipHash=false",
	"-c", "core.pager=cat",
	"-c", "core.sshCommand=false",
	"-c", "core.askPass=false",
	"-c", "protocol.allow=never", // no fetch of any kind
	"-c", "submodule.recurse=false",
	"-c", "gc.auto=0",
	"-c", "maintenance.auto=false",
	"--no-pager",
	"--no-optional-locks", // list without taking index.lock or refreshing the index
}

// git runs git -C dir with args. Only the repository's own config is
// read (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null), with
// gitSafeConfig over it, and every GIT_* variable of the server's
// environment is dropped (they may point git at another repository,
// config, hook or program).
func git(dir string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("git")
	if err != nil {
		return nil, ErrNoGit
	}
	argv := append([]string{"-C", dir}, gitSafeConfig...)
	cmd := exec.Command(bin, append(argv, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "EDITOR=") || strings.HasPrefix(kv, "PAGER=")
	})
	cmd.Env = append(cmd.Env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_OPTIONAL_LOCKS=0", "GIT_PAGER=cat")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "not a git repository") {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotCheckout)
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("git %s in %s: %s", args[0], dir, msg)
	}
	return out, nil
}

// GitFiles lists the files a git checkout would share: tracked files and
// untracked files that are not ignored (git ls-files --cached --others
// --exclude-standard), as sorted, slash-separated paths relative to dir,
// each once. Only files at or below dir are listed; dir may be anywhere
// inside a checkout. Tracked files deleted from the working tree are
// still listed (TarGit skips them); a submodule is listed as its
// directory, and an untracked nested repository as its name with a
// trailing "/". It fails with ErrNoGit or ErrNotCheckout (wrapped) when
// it cannot ask git.
func GitFiles(dir string) ([]string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	out, err := git(dir, "rev-parse", "--is-inside-work-tree")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(out)) != "true" {
		return nil, fmt.Errorf("%s: %w (it is inside a .git directory)", dir, ErrNotCheckout)
	}
	out, err = git(dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// TarGit writes the files GitFiles lists under dir to w as a tar stream
// for the guest agent's tar_in, with the directories that lead to them,
// normalised as TarDir does. Ignored files and .git are not sent.
// Skipped and reported: tracked files deleted from the working tree,
// submodules and nested repositories (their files are not included),
// files whose parent directory has become a symlink or a file, and
// everything TarDir skips. Limits and Exclude work as in TarDir.
func TarGit(ctx context.Context, w io.Writer, dir string, opts SeedOptions) (*Report, error) {
	files, err := GitFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("seed from git checkout: %w", err)
	}
	s := newSeeder(ctx, w, opts)
	g := gitSeed{s: s, dir: dir, dirs: make(map[string]bool)}
	for _, rel := range files {
		if err := g.file(rel); err != nil {
			return s.rep, fmt.Errorf("seed from git checkout %s: %w", dir, err)
		}
	}
	return s.rep, s.finish()
}

type gitSeed struct {
	s   *seeder
	dir string
	// dirs records the directories looked at: true if sent, false if
	// left out (excluded, or not a directory any more).
	dirs map[string]bool
}

func (g *gitSeed) file(rel string) error {
	s := g.s
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if strings.HasSuffix(rel, "/") {
		s.rep.skip(rel, "nested git repository; its files are not included")
		return nil
	}
	if rel != path.Clean(rel) || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		s.rep.skip(rel, "git listed an unexpected path")
		return nil
	}
	if ok, err := g.parents(rel); !ok || err != nil {
		return err
	}
	abs := filepath.Join(g.dir, filepath.FromSlash(rel))
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		s.rep.skip(rel, "tracked by git but deleted from the working tree")
		return nil
	}
	if err != nil {
		s.rep.skip(rel, openReason(err))
		return nil
	}
	if s.opts.Exclude != nil && s.opts.Exclude(rel, fi) {
		s.rep.Excluded++
		return nil
	}
	m := fi.Mode()
	switch {
	case m.IsDir():
		s.rep.skip(rel+"/", "git submodule; its files are not included")
		return nil
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			s.rep.skip(rel, openReason(err))
			return nil
		}
		return s.symlink(rel, target, fi.ModTime())
	case m.IsRegular():
		return s.hostFile(rel, abs)
	}
	s.rep.skip(rel, kindName(m))
	return nil
}

// parents sends the directories leading to rel that have not been sent
// yet, and reports whether rel can be sent beneath them.
func (g *gitSeed) parents(rel string) (bool, error) {
	s := g.s
	var d string
	for _, c := range strings.Split(path.Dir(rel), "/") {
		if c == "." {
			break
		}
		d = path.Join(d, c)
		sent, seen := g.dirs[d]
		if seen {
			if !sent {
				return false, nil // already skipped or excluded, with a reason if any
			}
			continue
		}
		fi, err := os.Lstat(filepath.Join(g.dir, filepath.FromSlash(d)))
		g.dirs[d] = false
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.rep.skip(rel, "tracked by git but deleted from the working tree")
			delete(g.dirs, d) // each file below is reported
			return false, nil
		case err != nil:
			s.rep.skip(d+"/", openReason(err))
			return false, nil
		case !fi.IsDir():
			s.rep.skip(d+"/", "git lists files under it, but it is now a "+kindName(fi.Mode())+"; they are not included")
			return false, nil
		case s.opts.Exclude != nil && s.opts.Exclude(d, fi):
			s.rep.Excluded++
			return false, nil
		}
		if err := s.dir(d, fi.Mode(), fi.ModTime()); err != nil {
			return false, err
		}
		g.dirs[d] = true
	}
	return true, nil
}
