package patch

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/git/*/patch with the git binary")

// The fixtures under testdata/git are pairs of trees, NAME/before and
// NAME/after, and NAME/patch, the diff git made between them (go test
// -run TestGitFixtures -update regenerates it). NAME/modes, if present,
// lists "before PATH MODE" and "after PATH MODE" lines for files that are
// not 0644; NAME/error, if present, holds text Parse's or Apply's error
// must contain instead.

func TestGitFixtures(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob("testdata/git/*/patch")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, p := range dirs {
		dir := filepath.Dir(p)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			before, after := readTree(t, dir, "before"), readTree(t, dir, "after")
			wantErr := ""
			if b, err := os.ReadFile(filepath.Join(dir, "error")); err == nil {
				wantErr = strings.TrimSpace(string(b))
			}
			if _, err := exec.LookPath("git"); err == nil {
				live := gitDiff(t, before, after)
				if *update {
					if err := os.WriteFile(p, live, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				t.Run("live", func(t *testing.T) { checkPatch(t, before, after, live, wantErr) })
			}
			committed, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			checkPatch(t, before, after, committed, wantErr)
		})
	}
}

// checkPatch applies patch to before and compares with after, or checks
// that it fails with wantErr.
func checkPatch(t *testing.T, before, after memFS, patch []byte, wantErr string) {
	t.Helper()
	fps, err := Parse(patch)
	if err == nil {
		var res *Result
		res, err = Apply(before, fps)
		if err == nil {
			if wantErr != "" {
				t.Fatalf("patch applied; want error %q", wantErr)
			}
			if d := diffFS(perform(t, before, res.Changes), after); d != "" {
				t.Errorf("workspace after the patch:\n%s\npatch:\n%s", d, patch)
			}
			return
		}
	}
	if wantErr == "" || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error %v, want %q\npatch:\n%s", err, wantErr, patch)
	}
}

// readTree reads dir/side into a memFS, with modes from dir/modes.
func readTree(t *testing.T, dir, side string) memFS {
	t.Helper()
	m := memFS{}
	root := filepath.Join(dir, side)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		m[filepath.ToSlash(rel)] = memFile{data: string(b), mode: 0o644}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	modes, err := os.ReadFile(filepath.Join(dir, "modes"))
	if err != nil {
		return m
	}
	for _, l := range strings.Split(strings.TrimSpace(string(modes)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("modes line %q", l)
		}
		if f[0] != side {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			t.Fatal(err)
		}
		file, ok := m[f[1]]
		if !ok {
			t.Fatalf("modes names %s/%s, which does not exist", side, f[1])
		}
		file.mode = fs.FileMode(mode)
		m[f[1]] = file
	}
	return m
}

// gitDiff commits before in a fresh repository, stages after and returns
// git diff --cached -M, with the user's and the system's configuration
// shut out. It skips the test if git is not installed.
func gitDiff(t testing.TB, before, after memFS, extra ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) []byte {
		cmd := exec.Command("git", append([]string{"-c", "core.autocrlf=false", "-c", "core.fileMode=true",
			"-c", "core.quotePath=true", "-c", "color.ui=never", "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, stderr.Bytes())
		}
		return out
	}
	writeTree := func(m memFS) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != ".git" {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		for p, f := range m {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(f.data), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(full, f.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	git("init", "-q")
	writeTree(before)
	git("add", "-A")
	git("commit", "-q", "--allow-empty", "-m", "before")
	writeTree(after)
	git("add", "-A")
	return git(append([]string{"diff", "--cached", "-M"}, extra...)...)
}

// TestGitRandom diffs random workspaces with git and applies the result:
// edits, additions, deletions, renames, mode changes, empty files, CRLF
// files and files without a final newline.
func TestGitRandom(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 8))
	n := 0
	word := func() string {
		n++
		if r.IntN(3) == 0 {
			return []string{"}", "", "\treturn nil", "end"}[r.IntN(4)]
		}
		return fmt.Sprintf("line %d", n)
	}
	// A patch cannot change line endings, so each file keeps its own.
	eols := map[string]string{}
	text := func(name string, lines []string) string {
		eol, ok := eols[name]
		if !ok {
			eol = "\n"
			if r.IntN(5) == 0 {
				eol = "\r\n"
			}
			eols[name] = eol
		}
		return randomText(lines, eol, r.IntN(4) == 0)
	}
	iterations := 15
	if testing.Short() {
		iterations = 5
	}
	seen := map[string]bool{}
	for iter := range iterations {
		before, after := memFS{}, memFS{}
		content := map[string][]string{}
		for i := range 3 + r.IntN(6) {
			name := fmt.Sprintf("f%d.txt", i)
			if r.IntN(3) == 0 {
				name = "dir/" + name
			}
			lines := make([]string, r.IntN(25))
			for j := range lines {
				lines[j] = word()
			}
			content[name] = lines
			before[name] = memFile{data: text(name, lines), mode: 0o644}
			if r.IntN(6) == 0 {
				before[name] = memFile{data: before[name].data, mode: 0o755}
			}
		}
		for name, f := range before {
			switch r.IntN(6) {
			case 0: // deleted
			case 1: // renamed, a little changed, so git pairs it
				lines := content[name]
				if len(lines) > 4 {
					lines = append([]string(nil), lines...)
					lines[len(lines)/2] = word()
				}
				after["moved/"+strings.ReplaceAll(name, "/", "_")] = memFile{data: text(name, lines), mode: f.mode}
			case 2: // mode flipped
				after[name] = memFile{data: f.data, mode: f.mode ^ 0o111}
			default:
				after[name] = memFile{data: text(name, randomEdit(r, content[name], word)), mode: f.mode}
			}
		}
		if r.IntN(2) == 0 {
			after["new.txt"] = memFile{data: text("new.txt", randomEdit(r, nil, word)), mode: 0o644}
		}
		patch := gitDiff(t, before, after)
		fps, err := Parse(patch)
		if err != nil {
			if len(patch) == 0 {
				continue
			}
			t.Fatalf("iteration %d: %v\n%s", iter, err, patch)
		}
		res, err := Apply(before, fps)
		if err != nil {
			t.Fatalf("iteration %d: %v\n%s", iter, err, patch)
		}
		if d := diffFS(perform(t, before, res.Changes), after); d != "" {
			t.Fatalf("iteration %d: workspace after the patch:\n%s\npatch:\n%s", iter, d, patch)
		}
		for _, fp := range fps {
			seen[fp.Op.String()] = true
			seen["mode"] = seen["mode"] || fp.Op == OpModify && fp.NewMode != 0
			for _, h := range fp.Hunks {
				seen["no newline"] = seen["no newline"] || h.OldNoEOL || h.NewNoEOL
			}
		}
		seen["crlf"] = seen["crlf"] || bytes.Contains(patch, []byte("\r\n"))
	}
	for _, what := range []string{"add", "delete", "modify", "rename", "mode", "no newline", "crlf"} {
		if !seen[what] && !testing.Short() {
			t.Errorf("no patch had a %s", what)
		}
	}
}

// TestGitBinary: both forms git writes binary changes in are refused.
func TestGitBinary(t *testing.T) {
	t.Parallel()
	before := files("img.bin", "\x00\x01\x02\n")
	after := files("img.bin", "\x00\x01\x03\n")
	for _, extra := range [][]string{nil, {"--binary"}} {
		_, err := Parse(gitDiff(t, before, after, extra...))
		if err == nil || !strings.Contains(err.Error(), "binary patches are not supported; write the file with file_write instead") {
			t.Errorf("git diff %v: Parse error %v", extra, err)
		}
	}
}
