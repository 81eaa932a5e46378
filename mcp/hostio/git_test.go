package hostio

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runGit(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "init.defaultBranch=main"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// gitCheckout makes a checkout with tracked, untracked, ignored and
// deleted files, a submodule and an untracked nested repository.
func gitCheckout(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	runGit(t, dir, "init", "-q")
	writeFile(t, filepath.Join(dir, ".gitignore"), "*.log\nbuild/\n", 0o644)
	writeFile(t, filepath.Join(dir, "tracked.txt"), "t", 0o644)
	writeFile(t, filepath.Join(dir, "tool.sh"), "#!/bin/sh", 0o755)
	writeFile(t, filepath.Join(dir, "src/lib/a.go"), "package lib", 0o644)
	writeFile(t, filepath.Join(dir, "deleted.txt"), "gone", 0o644)
	writeFile(t, filepath.Join(dir, "gone/only.txt"), "gone", 0o644)
	must(t, os.Symlink("tracked.txt", filepath.Join(dir, "link")))
	runGit(t, dir, "add", ".")
	must(t, os.Remove(filepath.Join(dir, "deleted.txt")))
	must(t, os.RemoveAll(filepath.Join(dir, "gone")))
	writeFile(t, filepath.Join(dir, "untracked.txt"), "u", 0o644)
	writeFile(t, filepath.Join(dir, "debug.log"), "ignored", 0o644)
	writeFile(t, filepath.Join(dir, "build/out.bin"), "ignored", 0o644)
	writeFile(t, filepath.Join(dir, "src/lib/force.log"), "tracked though ignored", 0o644)
	runGit(t, dir, "add", "-f", "src/lib/force.log")
	// A submodule: a gitlink in the index and its directory.
	must(t, os.MkdirAll(filepath.Join(dir, "sub/mod"), 0o755))
	writeFile(t, filepath.Join(dir, "sub/mod/inner.txt"), "inner", 0o644)
	runGit(t, dir, "update-index", "--add", "--cacheinfo", "160000,e69de29bb2d1d6434b8b29ae775ad8c2e48c5391,sub/mod")
	// An untracked repository inside.
	must(t, os.MkdirAll(filepath.Join(dir, "nested"), 0o755))
	runGit(t, filepath.Join(dir, "nested"), "init", "-q")
	writeFile(t, filepath.Join(dir, "nested/n.txt"), "n", 0o644)
	return dir
}

func TestGitFiles(t *testing.T) {
	dir := gitCheckout(t)
	got, err := GitFiles(dir)
	must(t, err)
	want := []string{".gitignore", "deleted.txt", "gone/only.txt", "link", "nested/", "src/lib/a.go", "src/lib/force.log", "sub/mod", "tool.sh", "tracked.txt", "untracked.txt"}
	if !slices.Equal(got, want) {
		t.Errorf("GitFiles = %q\nwant %q", got, want)
	}
	// From a subdirectory: only what is below it, relative to it.
	got, err = GitFiles(filepath.Join(dir, "src"))
	must(t, err)
	if want := []string{"lib/a.go", "lib/force.log"}; !slices.Equal(got, want) {
		t.Errorf("GitFiles(src) = %q, want %q", got, want)
	}
	root, err := FindGitRoot(filepath.Join(dir, "src/lib"))
	must(t, err)
	if root != dir {
		t.Errorf("FindGitRoot = %q, want %q", root, dir)
	}
}

func TestTarGit(t *testing.T) {
	dir := gitCheckout(t)
	var b bytes.Buffer
	rep, err := TarGit(context.Background(), &b, dir, SeedOptions{})
	must(t, err)
	want := []string{
		`.gitignore 644 "*.log\nbuild/\n"`,
		"link -> tracked.txt",
		"src/ 755",
		"src/lib/ 755",
		`src/lib/a.go 644 "package lib"`,
		`src/lib/force.log 644 "tracked though ignored"`,
		"sub/ 755", // the submodule's parent, without the submodule
		`tool.sh 755 "#!/bin/sh"`,
		`tracked.txt 644 "t"`,
		`untracked.txt 644 "u"`,
	}
	if got := listTar(t, b.Bytes()); !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for p, why := range map[string]string{
		"deleted.txt": "deleted from the working tree", "gone/only.txt": "deleted from the working tree",
		"sub/mod/": "submodule", "nested/": "nested git repository",
	} {
		if !hasSkip(rep, p, why) {
			t.Errorf("%s not skipped for %q: %+v", p, why, rep.Skipped)
		}
	}
	// Same bytes twice.
	var b2 bytes.Buffer
	_, err = TarGit(context.Background(), &b2, dir, SeedOptions{})
	must(t, err)
	if !bytes.Equal(b.Bytes(), b2.Bytes()) {
		t.Error("two seeds of the same checkout differ")
	}
	// A directory git lists files under that became a symlink: its
	// files are not sent through it (the symlink itself is now an
	// untracked file, and is sent as a symlink).
	must(t, os.RemoveAll(filepath.Join(dir, "src")))
	must(t, os.Symlink("/etc", filepath.Join(dir, "src")))
	b.Reset()
	rep, err = TarGit(context.Background(), &b, dir, SeedOptions{})
	must(t, err)
	if got := listTar(t, b.Bytes()); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "src/") }) {
		t.Errorf("sent through a symlink: %q", got)
	}
	if !hasSkip(rep, "src/", "now a symlink") {
		t.Errorf("symlinked parent not reported: %+v", rep.Skipped)
	}
}

func TestGitErrors(t *testing.T) {
	plain := t.TempDir()
	if _, err := FindGitRoot(plain); !errors.Is(err, ErrNotCheckout) {
		t.Errorf("FindGitRoot(plain) = %v", err)
	}
	if _, err := exec.LookPath("git"); err == nil {
		_, err := GitFiles(plain)
		if !errors.Is(err, ErrNotCheckout) {
			t.Errorf("GitFiles(plain) = %v, want ErrNotCheckout", err)
		}
		_, err = TarGit(context.Background(), &bytes.Buffer{}, plain, SeedOptions{})
		wantErr(t, err, "not inside a git checkout")
	}
	t.Setenv("PATH", t.TempDir()) // no git here
	if _, err := GitFiles(plain); !errors.Is(err, ErrNoGit) {
		t.Errorf("without git: %v, want ErrNoGit", err)
	}
}
