package treediff

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// The kitchen sink: one baseline and one current tree covering every kind
// of text change. binaries adds binary and oversized files, which git
// apply cannot take without binary data.
func sinkTrees(binaries bool) (base, cur []ent) {
	mod := strings.Replace(numbered(1, 20), "line 10\n", "line ten\n", 1)
	base = []ent{
		dir("./"),
		dir("./src"),
		file("./src/mod.py", numbered(1, 20)),
		file("del.txt", "gone\n"),
		file("run.sh", "#!/bin/sh\necho hi\n"),
		file("run2.sh", "echo a\n"),
		link("link", "src/mod.py"),
		file("README", "readme\n"),
		file("f2d", "was a file\n"),
		dir("d2f"),
		file("d2f/x", "x\n"),
		file("f2l", "to link\n"),
		link("l2f", "README"),
		file("empty", ""),
		file("empty_del", ""),
		file("becomes_empty", "a\nb\n"),
		file("from_empty", ""),
		file("nonl_old", "a\nb"),
		file("nonl_new", "a\nb\n"),
		file("nonl_both", "1\n2\n3"),
		file("crlf.txt", "one\r\ntwo\r\nthree\r\n"),
		dir("uni"),
		file("uni/héllo wörld.txt", "hallo\n"),
		file("sp ace.txt", "a\n"),
		file("q\"b\\s.txt", "a\n"),
		file("tab\tname", "a\n"),
		file("perm600", "p\n"),
		dir("emptydir"),
		withPerm(dir("moddir"), 0o755),
		dir("a"),
		file("a/b", "1\n"),
		file("a-c", "1\n"),
	}
	cur = []ent{
		dir("."),
		dir("src"),
		file("src/mod.py", mod),
		file("src/add.py", "print(1)\n"),
		exe("run.sh", "#!/bin/sh\necho hi\n"),
		exe("run2.sh", "echo b\n"),
		link("link", "README"),
		file("README", "readme\n"),
		dir("f2d"),
		file("f2d/inner.txt", "inner\n"),
		file("d2f", "now a file\n"),
		link("f2l", "README"),
		file("l2f", "from link\n"),
		file("empty", ""),
		file("empty_new", ""),
		file("becomes_empty", ""),
		file("from_empty", "x\ny\n"),
		file("nonl_old", "a\nb\n"),
		file("nonl_new", "a\nb"),
		file("nonl_both", "1\nX\n3"),
		file("crlf.txt", "one\r\nTWO\r\nthree\r\n"),
		dir("uni"),
		file("uni/héllo wörld.txt", "hello\n"),
		file("sp ace.txt", "b\n"),
		file("q\"b\\s.txt", "b\n"),
		file("new\nline", "n\n"),
		withPerm(file("perm600", "p\n"), 0o600),
		dir("newdir"),
		withPerm(dir("moddir"), 0o700),
		dir("a"),
		file("a/b", "2\n"),
		file("a-c", "2\n"),
	}
	if binaries {
		bin := "\x00\x01binary"
		base = append(base, file("bin.dat", bin), file("bin_del", bin), file("big.txt", strings.Repeat("x\n", 200)))
		cur = append(cur, file("bin.dat", bin+"!"), file("bin_new", bin), file("big.txt", strings.Repeat("y\n", 200)))
	}
	return base, cur
}

func TestDiffKitchenSink(t *testing.T) {
	base, cur := sinkTrees(true)
	r := diffTrees(t, base, cur, Options{MaxFileBytes: 300})
	got := make(map[string]FileDiff)
	var paths []string
	for _, f := range r.Files {
		got[f.Path] = f
		paths = append(paths, f.Path)
	}
	if !slices.IsSorted(paths) {
		t.Errorf("files not sorted: %q", paths)
	}
	want := map[string]FileDiff{
		"src/mod.py":          {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"src/add.py":          {Status: Added, NewType: File, NewMode: 0o100644, Additions: 1},
		"del.txt":             {Status: Deleted, OldType: File, OldMode: 0o100644, Deletions: 1},
		"run.sh":              {Status: Modified, OldType: File, NewType: File, OldMode: 0o100644, NewMode: 0o100755, Summary: "mode 100644 -> 100755"},
		"run2.sh":             {Status: Modified, OldType: File, NewType: File, OldMode: 0o100644, NewMode: 0o100755, Additions: 1, Deletions: 1},
		"link":                {Status: Modified, OldType: Symlink, NewType: Symlink, Additions: 1, Deletions: 1},
		"f2d":                 {Status: TypeChanged, OldType: File, NewType: Dir, OldMode: 0o100644, NewMode: 0o40755, Deletions: 1, Summary: "file -> dir"},
		"f2d/inner.txt":       {Status: Added, NewType: File, NewMode: 0o100644, Additions: 1},
		"d2f":                 {Status: TypeChanged, OldType: Dir, NewType: File, OldMode: 0o40755, NewMode: 0o100644, Additions: 1, Summary: "dir -> file"},
		"d2f/x":               {Status: Deleted, OldType: File, OldMode: 0o100644, Deletions: 1},
		"f2l":                 {Status: TypeChanged, OldType: File, NewType: Symlink, OldMode: 0o100644, NewMode: 0o120777, Additions: 1, Deletions: 1, Summary: "file -> symlink"},
		"l2f":                 {Status: TypeChanged, OldType: Symlink, NewType: File, OldMode: 0o120777, NewMode: 0o100644, Additions: 1, Deletions: 1, Summary: "symlink -> file"},
		"empty_del":           {Status: Deleted, OldType: File, OldMode: 0o100644},
		"empty_new":           {Status: Added, NewType: File, NewMode: 0o100644},
		"becomes_empty":       {Status: Modified, OldType: File, NewType: File, Deletions: 2},
		"from_empty":          {Status: Modified, OldType: File, NewType: File, Additions: 2},
		"nonl_old":            {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"nonl_new":            {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"nonl_both":           {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"crlf.txt":            {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"uni/héllo wörld.txt": {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"sp ace.txt":          {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"q\"b\\s.txt":         {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"tab\tname":           {Status: Deleted, OldType: File, OldMode: 0o100644, Deletions: 1},
		"new\nline":           {Status: Added, NewType: File, NewMode: 0o100644, Additions: 1},
		"perm600":             {Status: Modified, OldType: File, NewType: File, OldMode: 0o100644, NewMode: 0o100600, Summary: "mode 100644 -> 100600"},
		"emptydir":            {Status: Deleted, OldType: Dir, OldMode: 0o40755, Summary: "directory deleted"},
		"newdir":              {Status: Added, NewType: Dir, NewMode: 0o40755, Summary: "directory added"},
		"moddir":              {Status: Modified, OldType: Dir, NewType: Dir, OldMode: 0o40755, NewMode: 0o40700, Summary: "directory mode 40755 -> 40700"},
		"a/b":                 {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"a-c":                 {Status: Modified, OldType: File, NewType: File, Additions: 1, Deletions: 1},
		"bin.dat":             {Status: Modified, OldType: File, NewType: File, Binary: true, Summary: "binary file changed, 8 -> 9 bytes"},
		"bin_del":             {Status: Deleted, OldType: File, OldMode: 0o100644, Binary: true, Summary: "binary file deleted, 8 bytes"},
		"bin_new":             {Status: Added, NewType: File, NewMode: 0o100644, Binary: true, Summary: "binary file added, 8 bytes"},
		"big.txt":             {Status: Modified, OldType: File, NewType: File, Binary: true, Summary: "large file changed, 400 -> 400 bytes"},
	}
	for p, w := range want {
		w.Path = p
		if g, ok := got[p]; !ok {
			t.Errorf("%q: not in the result", p)
		} else if g != w {
			t.Errorf("%q:\n got %+v\nwant %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%q: unexpected in the result: %+v", p, got[p])
		}
	}
	// Directories' own changes are not counted, as in git.
	var ins, del int
	for _, w := range want {
		ins, del = ins+w.Additions, del+w.Deletions
	}
	if wt := (Totals{FilesChanged: len(want) - 3, Insertions: ins, Deletions: del}); r.Totals != wt {
		t.Errorf("totals %+v, want %+v", r.Totals, wt)
	}
	// Index lines are checked against git in TestPatchMatchesGitDiff.
	noIndex := regexp.MustCompile(`(?m)^index [0-9a-f]{7}\.\.[0-9a-f]{7}( 1[02]0[0-7]{3})?\n`).ReplaceAll(r.Patch, nil)
	for _, frag := range []string{
		"diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\ndiff --git",
		"diff --git a/run2.sh b/run2.sh\nold mode 100644\nnew mode 100755\n--- a/run2.sh\n+++ b/run2.sh\n@@ -1 +1 @@\n-echo a\n+echo b\n",
		"diff --git a/link b/link\n--- a/link\n+++ b/link\n@@ -1 +1 @@\n-src/mod.py\n\\ No newline at end of file\n+README\n\\ No newline at end of file\n",
		"diff --git a/empty_new b/empty_new\nnew file mode 100644\ndiff --git",
		"diff --git a/empty_del b/empty_del\ndeleted file mode 100644\ndiff --git",
		"diff --git a/f2d b/f2d\ndeleted file mode 100644\n--- a/f2d\n+++ /dev/null\n@@ -1 +0,0 @@\n-was a file\n",
		"diff --git a/f2l b/f2l\ndeleted file mode 100644\n--- a/f2l\n+++ /dev/null\n@@ -1 +0,0 @@\n-to link\ndiff --git a/f2l b/f2l\nnew file mode 120000\n--- /dev/null\n+++ b/f2l\n@@ -0,0 +1 @@\n+README\n\\ No newline at end of file\n",
		"--- a/becomes_empty\n+++ b/becomes_empty\n@@ -1,2 +0,0 @@\n-a\n-b\n",
		"--- a/from_empty\n+++ b/from_empty\n@@ -0,0 +1,2 @@\n+x\n+y\n",
		"@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
		"@@ -1,3 +1,3 @@\n 1\n-2\n+X\n 3\n\\ No newline at end of file\n",
		"@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r\n",
		"diff --git \"a/uni/h\\303\\251llo w\\303\\266rld.txt\" \"b/uni/h\\303\\251llo w\\303\\266rld.txt\"\n--- \"a/uni/h\\303\\251llo w\\303\\266rld.txt\"\t\n+++ \"b/uni/h\\303\\251llo w\\303\\266rld.txt\"\t\n",
		"diff --git a/sp ace.txt b/sp ace.txt\n--- a/sp ace.txt\t\n+++ b/sp ace.txt\t\n",
		"diff --git \"a/q\\\"b\\\\s.txt\" \"b/q\\\"b\\\\s.txt\"\n",
		"diff --git \"a/tab\\tname\" \"b/tab\\tname\"\ndeleted file mode 100644\n--- \"a/tab\\tname\"\n+++ /dev/null\n",
		"diff --git \"a/new\\nline\" \"b/new\\nline\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/new\\nline\"\n",
		"diff --git a/bin.dat b/bin.dat\nBinary files a/bin.dat and b/bin.dat differ\n",
		"diff --git a/bin_del b/bin_del\ndeleted file mode 100644\nBinary files a/bin_del and /dev/null differ\n",
		"diff --git a/bin_new b/bin_new\nnew file mode 100644\nBinary files /dev/null and b/bin_new differ\n",
		"diff --git a/big.txt b/big.txt\nBinary files a/big.txt and b/big.txt differ\n",
		"@@ -7,7 +7,7 @@ line 6\n line 7\n line 8\n line 9\n-line 10\n+line ten\n line 11\n line 12\n line 13\n",
	} {
		if !bytes.Contains(noIndex, []byte(frag)) {
			t.Errorf("patch lacks %q", frag)
		}
	}
	for _, absent := range []string{"perm600", "moddir", "emptydir", "newdir", "README\n+++", "a/empty b/empty\n"} {
		if bytes.Contains(r.Patch, []byte("diff --git a/"+absent)) {
			t.Errorf("patch mentions %q", absent)
		}
	}
	// Patch order is path order: "a-c" sorts before "a/b".
	if i, j := bytes.Index(r.Patch, []byte("a/a-c")), bytes.Index(r.Patch, []byte("a/a/b")); i < 0 || j < 0 || i > j {
		t.Errorf("patch not in path order (a-c at %d, a/b at %d)", i, j)
	}
}

// The patch, applied by a strict pure-Go applier to the baseline, gives
// the current tree.
func TestPatchAppliesPureGo(t *testing.T) {
	base, cur := sinkTrees(false)
	for _, ctx := range []int{0, 1, -1, 5} {
		r := diffTrees(t, base, cur, Options{Context: ctx})
		got, err := applyPatch(gitView(t, base), r.Patch)
		if err != nil {
			t.Fatalf("context %d: %v\n%s", ctx, err, r.Patch)
		}
		if d := diffViews(gitView(t, cur), got); d != "" {
			t.Errorf("context %d: applied tree differs:\n%s", ctx, d)
		}
	}
}

func requireGit(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	return git
}

func runGit(t *testing.T, git, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(git, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// git apply takes the patch and turns the baseline into the current tree.
func TestPatchAppliesWithGit(t *testing.T) {
	git := requireGit(t)
	base, cur := sinkTrees(false)
	r := diffTrees(t, base, cur, Options{})
	root := t.TempDir()
	work := filepath.Join(root, "w")
	writeTree(t, work, base)
	patch := filepath.Join(root, "p.diff")
	if err := os.WriteFile(patch, r.Patch, 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, git, work, "apply", "--whitespace=nowarn", patch)
	if d := diffViews(gitView(t, cur), readGitView(t, work)); d != "" {
		t.Errorf("after git apply the tree differs:\n%s", d)
	}
	// And back: git apply -R restores the baseline.
	runGit(t, git, work, "apply", "-R", "--whitespace=nowarn", patch)
	if d := diffViews(gitView(t, base), readGitView(t, work)); d != "" {
		t.Errorf("after git apply -R the tree differs:\n%s", d)
	}

	// With binary changes, git apply takes the rest once they are
	// excluded (it cannot apply them: the patch has no binary data).
	base, cur = sinkTrees(true)
	r = diffTrees(t, base, cur, Options{MaxFileBytes: 300})
	if err := os.WriteFile(patch, r.Patch, 0o644); err != nil {
		t.Fatal(err)
	}
	work = filepath.Join(root, "w2")
	writeTree(t, work, base)
	args := []string{"apply", "--whitespace=nowarn"}
	want := gitView(t, cur)
	for _, f := range r.Files {
		if f.Binary {
			args = append(args, "--exclude="+f.Path)
			delete(want, f.Path)
			if g, ok := gitView(t, base)[f.Path]; ok {
				want[f.Path] = g
			}
		}
	}
	runGit(t, git, work, append(args, patch)...)
	if d := diffViews(want, readGitView(t, work)); d != "" {
		t.Errorf("after git apply --exclude=<binaries> the tree differs:\n%s", d)
	}
}

// For the unambiguous changes of the kitchen sink, the patch is exactly
// what git diff prints.
func TestPatchMatchesGitDiff(t *testing.T) {
	git := requireGit(t)
	// git diffs big.txt as text; leave it out.
	notBig := func(e ent) bool { return e.name == "big.txt" }
	base, cur := sinkTrees(true)
	base, cur = slices.DeleteFunc(base, notBig), slices.DeleteFunc(cur, notBig)
	r := diffTrees(t, base, cur, Options{})
	work := filepath.Join(t.TempDir(), "repo")
	writeTree(t, work, base)
	runGit(t, git, work, "init", "-q")
	runGit(t, git, work, "add", "-A")
	runGit(t, git, work, "commit", "-qm", "base")
	runGit(t, git, work, "rm", "-rq", "--cached", ".")
	for _, e := range base {
		if p := entPath(t, e); p != "" {
			os.RemoveAll(filepath.Join(work, p))
		}
	}
	writeTree(t, work, cur)
	runGit(t, git, work, "add", "-A")
	out := runGit(t, git, work, "-c", "core.quotePath=true", "diff", "--cached", "--no-renames", "--no-color", "--no-ext-diff")
	want := []string{out}
	if got := string(r.Patch); got != strings.Join(want, "") {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "ours"), []byte(got), 0o644)
		os.WriteFile(filepath.Join(dir, "git"), []byte(strings.Join(want, "")), 0o644)
		out, _ := exec.Command("diff", "-u", filepath.Join(dir, "git"), filepath.Join(dir, "ours")).CombinedOutput()
		t.Errorf("patch differs from git diff:\n%s", out)
	}
}

// The result depends on the trees, not on the order of the archives.
func TestDiffDeterministic(t *testing.T) {
	base, cur := sinkTrees(true)
	want := diffTrees(t, base, cur, Options{MaxFileBytes: 300})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b, c := slices.Clone(base), slices.Clone(cur)
		rng.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
		rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		got := diffTrees(t, b, c, Options{MaxFileBytes: 300})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("result changed with archive order")
		}
	}
	j1, _ := json.Marshal(want)
	j2, _ := json.Marshal(diffTrees(t, base, cur, Options{MaxFileBytes: 300}))
	if !bytes.Equal(j1, j2) {
		t.Fatal("JSON differs between runs")
	}
}

func TestNoChanges(t *testing.T) {
	base, _ := sinkTrees(true)
	// The same tree written with other spellings of its paths.
	var cur []ent
	for _, e := range base {
		p := entPath(t, e)
		switch len(cur) % 3 {
		case 0:
			e.name = "./" + p
		case 1:
			e.name = "/" + p
		default:
			e.name = p
		}
		cur = append(cur, e)
	}
	r := diffTrees(t, base, cur, Options{})
	if len(r.Files) != 0 || len(r.Patch) != 0 || r.Totals != (Totals{}) {
		t.Fatalf("unchanged tree gave %+v\n%s", r, r.Patch)
	}
	if r.Files == nil {
		t.Error("Files is nil; want an empty list (JSON [])")
	}
}

func TestNoBaseline(t *testing.T) {
	r, err := Diff(nil, nil, bytes.NewReader(mkTar(t, dir("d"), file("d/a", "x\n"))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 2 || r.Files[0].Status != Added || r.Files[1].Status != Added || r.Totals.FilesChanged != 1 {
		t.Errorf("%+v", r)
	}
}

// countingBlobs records which blobs Diff reads.
type countingBlobs struct {
	BlobSource
	opened map[[32]byte]int
}

func (c *countingBlobs) Open(sum [32]byte) (io.ReadCloser, error) {
	c.opened[sum]++
	return c.BlobSource.Open(sum)
}

// Only changed text files have their baseline read; unchanged, binary
// (when the new side shows it) and oversized ones do not.
func TestDiffReadsOnlyChangedBlobs(t *testing.T) {
	var base, cur []ent
	for i := range 200 {
		body := numbered(i, i+50)
		base = append(base, file(fmt.Sprintf("f%03d", i), body))
		if i%50 == 7 {
			body = strings.Replace(body, fmt.Sprintf("line %d\n", i+25), "changed\n", 1)
		}
		cur = append(cur, file(fmt.Sprintf("f%03d", i), body))
	}
	base = append(base, file("big", strings.Repeat("a", 5000)), file("tobin", "text\n"))
	cur = append(cur, file("big", strings.Repeat("b", 5000)), file("tobin", "\x00"))
	blobs := MemBlobs{}
	ix, err := IndexTar(bytes.NewReader(mkTar(t, base...)), blobs)
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBlobs{blobs, map[[32]byte]int{}}
	r, err := Diff(ix, cb, bytes.NewReader(mkTar(t, cur...)), Options{MaxFileBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 6 {
		t.Fatalf("%d files changed, want 6", len(r.Files))
	}
	if len(cb.opened) != 4 {
		t.Errorf("read %d blobs, want the 4 changed text files'", len(cb.opened))
	}
	for _, p := range []string{"big", "tobin"} {
		e, _ := ix.Lookup(p)
		if cb.opened[e.Sum] != 0 {
			t.Errorf("read the baseline of %q", p)
		}
	}
}

func TestBinaryRule(t *testing.T) {
	late := strings.Repeat("a", 8000) + "\x00\n"
	r := diffTrees(t, []ent{file("late", late+"x\n"), file("early", "a\x00\n")},
		[]ent{file("late", late+"y\n"), file("early", "b\x00\n")}, Options{})
	if r.Files[0].Path != "early" || !r.Files[0].Binary {
		t.Errorf("NUL in the first 8000 bytes: %+v", r.Files[0])
	}
	if r.Files[1].Path != "late" || r.Files[1].Binary || r.Files[1].Additions != 1 {
		t.Errorf("NUL after 8000 bytes is text, as in git: %+v", r.Files[1])
	}
}

func TestPrefix(t *testing.T) {
	base, cur := sinkTrees(true)
	for _, prefix := range []string{"src", "./src/", "/src"} {
		r := diffTrees(t, base, cur, Options{Prefix: prefix})
		var paths []string
		for _, f := range r.Files {
			paths = append(paths, f.Path)
		}
		if want := []string{"src/add.py", "src/mod.py"}; !slices.Equal(paths, want) {
			t.Errorf("prefix %q: %q, want %q", prefix, paths, want)
		}
	}
	r := diffTrees(t, base, cur, Options{Prefix: "d2f"})
	if len(r.Files) != 2 || r.Files[0].Path != "d2f" || r.Files[1].Path != "d2f/x" {
		t.Errorf("prefix d2f: %+v", r.Files)
	}
	if _, err := Diff(&Index{}, MemBlobs{}, bytes.NewReader(mkTar(t)), Options{Prefix: "../x"}); err == nil {
		t.Error("prefix ../x accepted")
	}
}

// Over MaxPatchBytes, the patch keeps the files that fit in path order,
// whatever order they arrive in.
func TestMaxPatchBytes(t *testing.T) {
	var base, cur []ent
	for i := range 50 {
		p := fmt.Sprintf("f%02d", i)
		base = append(base, file(p, "old\n"))
		cur = append(cur, file(p, "new\n"))
	}
	full := diffTrees(t, base, cur, Options{})
	per := len(full.Patch) / 50
	rng := rand.New(rand.NewPCG(3, 4))
	for _, keep := range []int{0, 1, 17, 49} {
		rng.Shuffle(len(cur), func(i, j int) { cur[i], cur[j] = cur[j], cur[i] })
		r := diffTrees(t, base, cur, Options{MaxPatchBytes: keep*per + per/2})
		if !r.Truncated || !bytes.Equal(r.Patch, full.Patch[:keep*per]) {
			t.Errorf("keep %d: truncated=%v, patch %d bytes, want the first %d", keep, r.Truncated, len(r.Patch), keep*per)
		}
		for i, f := range r.Files {
			if f.PatchOmitted != (i >= keep) || f.Additions != 1 {
				t.Errorf("keep %d: %+v", keep, f)
			}
		}
		if r.Totals != full.Totals {
			t.Errorf("keep %d: totals %+v, want %+v", keep, r.Totals, full.Totals)
		}
	}
}

func TestBadArchives(t *testing.T) {
	ix, _ := IndexTar(bytes.NewReader(mkTar(t, file("a", "x\n"))), nil)
	good := mkTar(t, file("a", "y\n"), file("b", "z\n"))
	for name, data := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("this is not a tar archive, not at all, no......"),
		"truncated":      good[:600],
		"no marker":      good[:len(good)-1024],
		"half marker":    good[:len(good)-512],
		"dotdot":         mkTar(t, file("../etc/passwd", "x")),
		"inner dotdot":   mkTar(t, file("a/../../b", "x")),
		"duplicate":      mkTar(t, file("b", "1"), file("./b", "2")),
		"duplicate base": mkTar(t, file("a", "1"), file("a", "1")),
	} {
		if _, err := Diff(ix, MemBlobs{}, bytes.NewReader(data), Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := IndexTar(bytes.NewReader(data), nil); err == nil && name != "duplicate base" {
			t.Errorf("%s: IndexTar: no error", name)
		}
	}
	// Entries other than files, directories and symlinks are ignored.
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("x\n"))
	tw.WriteHeader(&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "a"})
	tw.WriteHeader(&tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o644})
	tw.WriteHeader(&tar.Header{Name: "dev", Typeflag: tar.TypeChar, Mode: 0o644})
	tw.Close()
	if r, err := Diff(ix, MemBlobs{}, &b, Options{}); err != nil || len(r.Files) != 0 {
		t.Errorf("other entry types: %v %+v", err, r)
	}
}

func TestMissingOrCorruptBlob(t *testing.T) {
	base := []ent{file("a", "x\n")}
	ix, _ := IndexTar(bytes.NewReader(mkTar(t, base...)), nil)
	cur := mkTar(t, file("a", "y\n"))
	if _, err := Diff(ix, MemBlobs{}, bytes.NewReader(cur), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing blob: %v", err)
	}
	e, _ := ix.Lookup("a")
	_, err := Diff(ix, MemBlobs{e.Sum: []byte("z\n")}, bytes.NewReader(cur), Options{})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt blob: %v", err)
	}
}

func TestQuoteName(t *testing.T) {
	for name, want := range map[string]string{
		"plain/x.go":                  "a/plain/x.go",
		"sp ace":                      "a/sp ace",
		"t é st":                      `"a/t \303\251 st"`,
		"q\"b\\s":                     `"a/q\"b\\s"`,
		"c\a\b\t\n\v\f\r\x01\x1b\x7f": `"a/c\a\b\t\n\v\f\r\001\033\177"`,
		"\xff":                        `"a/\377"`,
	} {
		if got := quoteName("a/", name); got != want {
			t.Errorf("quoteName(%q) = %s, want %s", name, got, want)
		}
	}
}

func TestTotalsString(t *testing.T) {
	for tt, want := range map[Totals]string{
		{}:        "0 files changed",
		{1, 1, 0}: "1 file changed, 1 insertion(+)",
		{2, 0, 3}: "2 files changed, 3 deletions(-)",
		{3, 2, 1}: "3 files changed, 2 insertions(+), 1 deletion(-)",
		{1, 0, 0}: "1 file changed, 0 insertions(+), 0 deletions(-)",
	} {
		if got := tt.String(); got != want {
			t.Errorf("%+v: %q, want %q", tt, got, want)
		}
	}
}

func TestResultJSON(t *testing.T) {
	r := diffTrees(t, []ent{file("x", "a\n")}, []ent{exe("x", "b\n")}, Options{})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"files":[{"path":"x","status":"modified","old_type":"file","new_type":"file","old_mode":"100644","new_mode":"100755","additions":1,"deletions":1}],"totals":{"files_changed":1,"insertions":1,"deletions":1}}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}
