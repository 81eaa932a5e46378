package hostio

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A checkout carries configuration that runs commands: core.fsmonitor
// (git runs it on every index read), hooks in .git/hooks and in a
// core.hooksPath, and an include of a second config file that sets
// fsmonitor again. It may have been written by a guest and exported.
// Seeding from it lists and sends its files, and runs none of them.
func TestTarGitRunsNoRepoCommands(t *testing.T) {
	dir := gitCheckout(t)
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "evil.sh")
	writeFile(t, script, fmt.Sprintf("#!/bin/sh\necho \"$0 $*\" >> %s\nexit 1\n", marker), 0o755)
	hooks := filepath.Join(t.TempDir(), "hooks")
	for _, h := range []string{"pre-commit", "post-checkout", "post-index-change", "fsmonitor-watchman", "reference-transaction"} {
		writeFile(t, filepath.Join(hooks, h), fmt.Sprintf("#!/bin/sh\necho hook %s >> %s\n", h, marker), 0o755)
		writeFile(t, filepath.Join(dir, ".git/hooks", h), fmt.Sprintf("#!/bin/sh\necho githook %s >> %s\n", h, marker), 0o755)
	}
	included := filepath.Join(t.TempDir(), "included.config")
	writeFile(t, included, "[core]\n\tfsmonitor = "+script+"\n", 0o644)
	runGit(t, dir, "config", "core.fsmonitor", script)
	runGit(t, dir, "config", "core.hooksPath", hooks)
	runGit(t, dir, "config", "core.untrackedCache", "true")
	runGit(t, dir, "config", "include.path", included)
	// The environment may point git at a configuration too.
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
	t.Setenv("GIT_CONFIG_VALUE_0", script)

	got, err := GitFiles(dir)
	must(t, err)
	if want := []string{".gitignore", "deleted.txt", "gone/only.txt", "link", "nested/", "src/lib/a.go", "src/lib/force.log", "sub/mod", "tool.sh", "tracked.txt", "untracked.txt"}; !slices.Equal(got, want) {
		t.Errorf("GitFiles = %q\nwant %q", got, want)
	}
	var b bytes.Buffer
	rep, err := TarGit(context.Background(), &b, dir, SeedOptions{})
	must(t, err)
	if rep.Files != 6 || !slices.Contains(listTar(t, b.Bytes()), `tracked.txt 644 "t"`) {
		t.Errorf("seeded %d files: %q", rep.Files, listTar(t, b.Bytes()))
	}
	if out, err := os.ReadFile(marker); err == nil {
		t.Fatalf("seeding ran the checkout's commands:\n%s", strings.TrimSpace(string(out)))
	}
}
