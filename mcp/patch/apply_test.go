package patch

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// numbered returns lines "line 1" to "line n", each ending in "\n".
func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

func TestApply(t *testing.T) {
	exec := func(m memFS, p string) memFS {
		f := m[p]
		f.mode = 0o755
		m[p] = f
		return m
	}
	for _, tc := range []struct {
		name    string
		before  memFS
		patch   string
		after   memFS    // the workspace after, when the patch applies
		errs    []string // substrings of Apply's error, when it fails
		offsets []int    // the offset of each hunk of the first file, if checked
	}{{
		name:   "modify",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
		after:  files("x", "a\nB\nc\n"),
	}, {
		name:   "old side has no newline",
		before: files("x", "a\nb"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n",
		after:  files("x", "a\nc\n"),
	}, {
		name:   "new side has no newline",
		before: files("x", "a\nb\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n",
		after:  files("x", "a\nc"),
	}, {
		name:   "neither side has a newline",
		before: files("x", "a\nb"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
		after:  files("x", "a\nc"),
	}, {
		name:   "only the final newline added",
		before: files("x", "a"),
		patch:  "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n",
		after:  files("x", "a\n"),
	}, {
		name:   "context line without newline stays last",
		before: files("x", "a\nb"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+A\n b\n\\ No newline at end of file\n",
		after:  files("x", "A\nb"),
	}, {
		name:   "patch without markers keeps a missing newline",
		before: files("x", "a\nb"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n",
		after:  files("x", "a\nc"),
	}, {
		name:   "append after an unterminated last line",
		before: files("x", "a\nb"),
		patch:  "--- a/x\n+++ b/x\n@@ -2 +2,2 @@\n b\n+c\n",
		after:  files("x", "a\nb\nc"),
	}, {
		name:    "no-newline marker anchors the hunk at the end",
		before:  files("x", "a\nb\na\nb"),
		patch:   "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
		after:   files("x", "a\nb\na\nc"),
		offsets: []int{2},
	}, {
		name:   "no-newline marker where the file goes on",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+B\n",
		errs:   []string{"x: hunk 1 (@@ -1,2 +1,2 @@): context does not match at line 2: expected \"a\", found \"b\"; the hunk must end at the end of the file because of its \"\\ No newline at end of file\" marker"},
	}, {
		name:   "CRLF file keeps CRLF",
		before: files("x", "one\r\ntwo\r\nthree\r\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,3 +1,4 @@\n one\n-two\n+TWO\n+two and a half\n three\n",
		after:  files("x", "one\r\nTWO\r\ntwo and a half\r\nthree\r\n"),
	}, {
		name:   "CRLF file, appending at the end",
		before: files("x", "one\r\ntwo"),
		patch:  "--- a/x\n+++ b/x\n@@ -2 +2,2 @@\n-two\n\\ No newline at end of file\n+two\n+three\n",
		after:  files("x", "one\r\ntwo\r\nthree\r\n"),
	}, {
		name:   "CRLF patch content against a CRLF file",
		before: files("x", "one\r\ntwo\r\n"),
		patch:  "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n one\r\n-two\r\n+2\r\n",
		after:  files("x", "one\r\n2\r\n"),
	}, {
		name:   "CRLF transport against an LF file",
		before: files("x", "one\ntwo\n"),
		patch:  "--- a/x\r\n+++ b/x\r\n@@ -1,2 +1,2 @@\r\n one\r\n-two\r\n+2\r\n",
		after:  files("x", "one\n2\n"),
	}, {
		name:   "CRLF content in a new file",
		before: files(),
		patch:  "--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+one\r\n+two\r\n",
		after:  files("x", "one\r\ntwo\r\n"),
	}, {
		name:   "CRLF transport of a new file",
		before: files(),
		patch:  "--- /dev/null\r\n+++ b/x\r\n@@ -0,0 +1,2 @@\r\n+one\r\n+two\r\n",
		after:  files("x", "one\ntwo\n"),
	}, {
		name:    "offset carried from hunk to hunk",
		before:  files("x", "new 1\nnew 2\nnew 3\n"+numbered(1, 30)),
		patch:   "--- a/x\n+++ b/x\n@@ -4,3 +4,3 @@\n line 4\n-line 5\n+LINE 5\n line 6\n@@ -20,3 +20,3 @@\n line 20\n-line 21\n+LINE 21\n line 22\n",
		after:   files("x", "new 1\nnew 2\nnew 3\n"+strings.NewReplacer("line 5\n", "LINE 5\n", "line 21\n", "LINE 21\n").Replace(numbered(1, 30))),
		offsets: []int{3, 3},
	}, {
		name:    "negative offset",
		before:  files("x", numbered(3, 30)),
		patch:   "--- a/x\n+++ b/x\n@@ -10,3 +10,2 @@\n line 10\n-line 11\n line 12\n",
		after:   files("x", strings.Replace(numbered(3, 30), "line 11\n", "", 1)),
		offsets: []int{-2},
	}, {
		name:    "nearest match wins",
		before:  files("x", "}\nx\n}\nx\n}\nx\n}\n"),
		patch:   "--- a/x\n+++ b/x\n@@ -4,2 +4,2 @@\n }\n-x\n+y\n",
		after:   files("x", "}\nx\n}\nx\n}\ny\n}\n"),
		offsets: []int{1},
	}, {
		name:   "hunks must not overlap after an offset",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -2 +2 @@\n-c\n+C\n@@ -3 +3 @@\n-b\n+B\n",
		errs:   []string{"hunk 2 (@@ -3 +3 @@): only 0 lines remain after line 3, where the previous hunk ends, fewer than this hunk's 1 old lines"},
	}, {
		name:   "mismatched context",
		before: files("x", numbered(1, 40)+"    return y\n"+numbered(42, 60)),
		patch: "--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4\n" +
			"@@ -40,6 +40,7 @@\n line 40\n     return x\n line 42\n line 43\n+inserted\n line 44\n line 45\n",
		errs: []string{"patch not applied; no files were changed:\n  x: hunk 2 (@@ -40,6 +40,7 @@): context does not match at line 41: expected \"    return x\", found \"    return y\"; the hunk's old lines match nowhere else after line 4 (the end of the previous hunk) either"},
	}, {
		name:   "mismatched removed line, whitespace only",
		before: files("x", "a\n\tb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-    b\n+B\n c\n",
		errs:   []string{`x: hunk 1 (@@ -1,3 +1,3 @@): line to remove does not match at line 2: expected "    b", found "\tb" (they differ only in whitespace)`},
	}, {
		name:   "every failing hunk is reported",
		before: files("x", numbered(1, 20)),
		patch:  "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-nope\n+a\n@@ -5 +5 @@\n-line 5\n+LINE 5\n@@ -9 +9 @@\n-nah\n+b\n",
		errs: []string{
			"x: hunk 1 (@@ -1 +1 @@): line to remove does not match at line 1: expected \"nope\", found \"line 1\"",
			"x: hunk 3 (@@ -9 +9 @@): line to remove does not match at line 9: expected \"nah\", found \"line 9\"",
		},
	}, {
		name:   "file too short",
		before: files("x", "a\nb\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
		errs:   []string{"hunk 1 (@@ -1,3 +1,3 @@): the file has 2 lines, fewer than the hunk's 3 old lines"},
	}, {
		name:   "pure insertion without context",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -2,0 +3,2 @@\n+x\n+y\n",
		after:  files("x", "a\nb\nx\ny\nc\n"),
	}, {
		name:   "pure insertion at the start",
		before: files("x", "a\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+first\n",
		after:  files("x", "first\na\n"),
	}, {
		name:   "pure insertion beyond the end",
		before: files("x", "a\nb\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -5,0 +6 @@\n+x\n",
		errs:   []string{"hunk 1 (@@ -5,0 +6 @@): inserts after line 5, but the file has only 2 lines"},
	}, {
		name:   "empty file gets content",
		before: files("x", ""),
		patch:  "--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+a\n",
		after:  files("x", "a\n"),
	}, {
		name:   "file emptied but kept",
		before: files("x", "a\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1 +0,0 @@\n-a\n",
		after:  files("x", ""),
	}, {
		name:   "context only changes nothing",
		before: files("x", "a\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1 +1 @@\n a\n",
		after:  files("x", "a\n"),
	}, {
		name:   "add",
		before: files("y", "y\n"),
		patch:  "--- /dev/null\n+++ b/dir/x\n@@ -0,0 +1,2 @@\n+a\n+b\n",
		after:  files("y", "y\n", "dir/x", "a\nb\n"),
	}, {
		name:   "add without trailing newline",
		before: files(),
		patch:  "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n\\ No newline at end of file\n",
		after:  files("x", "a"),
	}, {
		name:   "add an existing file",
		before: files("x", "a\n"),
		patch:  "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n",
		errs:   []string{"x: file to add already exists"},
	}, {
		name:   "add under a file",
		before: files("x", "a\n"),
		patch:  "--- /dev/null\n+++ b/x/y\n@@ -0,0 +1 @@\n+a\n",
		errs:   []string{"x/y: cannot create x/y: x is a file"},
	}, {
		name:   "add over a directory",
		before: files("d/x", "a\n"),
		patch:  "--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+a\n",
		errs:   []string{"d: cannot read d: is a directory"},
	}, {
		name:   "modify a missing file",
		before: files(),
		patch:  "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
		errs:   []string{"x: file to modify does not exist"},
	}, {
		name:   "add an empty file",
		before: files(),
		patch:  "diff --git a/e b/e\nnew file mode 100644\nindex 0000000..e69de29\n",
		after:  files("e", ""),
	}, {
		name:   "add an empty file, plain",
		before: files(),
		patch:  "--- /dev/null\n+++ b/e\n",
		after:  files("e", ""),
	}, {
		name:   "delete",
		before: files("x", "a\nb\n", "y", "y\n"),
		patch:  "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
		after:  files("y", "y\n"),
	}, {
		name:   "delete without trailing newline",
		before: files("x", "a\nb"),
		patch:  "diff --git a/x b/x\ndeleted file mode 100644\n--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n\\ No newline at end of file\n",
		after:  files(),
	}, {
		name:   "delete an empty file",
		before: files("e", ""),
		patch:  "diff --git a/e b/e\ndeleted file mode 100644\nindex e69de29..0000000\n",
		after:  files(),
	}, {
		name:   "delete as empty a file with content",
		before: files("e", "a\n"),
		patch:  "diff --git a/e b/e\ndeleted file mode 100644\nindex e69de29..0000000\n",
		errs:   []string{"e: file to delete does not match the patch's old content: the patch deletes an empty file, but the file has 1 line"},
	}, {
		name:   "delete with more content than the patch",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
		errs:   []string{"x: file to delete does not match the patch's old content: 1 line would remain after the patch's removals"},
	}, {
		name:   "delete with different content",
		before: files("x", "a\nB\n"),
		patch:  "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n",
		errs:   []string{"x: file to delete does not match the patch's old content: hunk 1 (@@ -1,2 +0,0 @@): line to remove does not match at line 2: expected \"b\", found \"B\""},
	}, {
		name:   "delete a missing file",
		before: files(),
		patch:  "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
		errs:   []string{"x: file to delete does not exist"},
	}, {
		name:   "mode change only",
		before: files("run.sh", "echo\n"),
		patch:  "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
		after:  exec(files("run.sh", "echo\n"), "run.sh"),
	}, {
		name:   "mode change with content",
		before: exec(files("run.sh", "echo\n"), "run.sh"),
		patch:  "diff --git a/run.sh b/run.sh\nold mode 100755\nnew mode 100644\nindex 1..2\n--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-echo\n+echo hi\n",
		after:  files("run.sh", "echo hi\n"),
	}, {
		name:   "new executable",
		before: files(),
		patch:  "diff --git a/run.sh b/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+echo\n",
		after:  exec(files("run.sh", "echo\n"), "run.sh"),
	}, {
		name:   "modify keeps the mode",
		before: exec(files("run.sh", "echo\n"), "run.sh"),
		patch:  "--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-echo\n+echo hi\n",
		after:  exec(files("run.sh", "echo hi\n"), "run.sh"),
	}, {
		name:   "pure rename keeps the mode",
		before: exec(files("a.sh", "echo\n"), "a.sh"),
		patch:  "diff --git a/a.sh b/bin/b.sh\nsimilarity index 100%\nrename from a.sh\nrename to bin/b.sh\n",
		after:  exec(files("bin/b.sh", "echo\n"), "bin/b.sh"),
	}, {
		name:   "rename with changes",
		before: files("a.txt", "1\n2\n3\n"),
		patch:  "diff --git a/a.txt b/b.txt\nsimilarity index 70%\nrename from a.txt\nrename to b.txt\n--- a/a.txt\n+++ b/b.txt\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n",
		after:  files("b.txt", "1\ntwo\n3\n"),
	}, {
		name:   "rename onto an existing file",
		before: files("a", "a\n", "b", "b\n"),
		patch:  "diff --git a/a b/b\nrename from a\nrename to b\n",
		errs:   []string{"b: rename target b already exists"},
	}, {
		name:   "rename a missing file",
		before: files(),
		patch:  "diff --git a/a b/b\nrename from a\nrename to b\n",
		errs:   []string{"b: file to rename (a) does not exist"},
	}, {
		name:   "rename a file into a directory of its own name",
		before: files("x", "a\n"),
		patch:  "diff --git a/x b/x/y\nrename from x\nrename to x/y\n",
		after:  files("x/y", "a\n"),
	}, {
		name:   "copy",
		before: files("a", "1\n"),
		patch:  "diff --git a/a b/c\nsimilarity index 50%\ncopy from a\ncopy to c\n--- a/a\n+++ b/c\n@@ -1 +1,2 @@\n 1\n+2\n",
		after:  files("a", "1\n", "c", "1\n2\n"),
	}, {
		name:   "same file twice applies in sequence",
		before: files("x", "a\nb\nc\n"),
		patch:  "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n--- a/x\n+++ b/x\n@@ -1,3 +1,4 @@\n a\n B\n+B2\n c\n",
		after:  files("x", "a\nB\nB2\nc\n"),
	}, {
		name:   "add then modify",
		before: files(),
		patch:  "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n a\n+b\n",
		after:  files("x", "a\nb\n"),
	}, {
		name:   "delete then add",
		before: files("x", "a\n"),
		patch:  "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+b\n",
		after:  files("x", "b\n"),
	}, {
		name:   "rename chain",
		before: files("a", "a\n", "b", "b\n"),
		patch:  "diff --git a/b b/c\nrename from b\nrename to c\ndiff --git a/a b/b\nrename from a\nrename to b\n",
		after:  files("b", "a\n", "c", "b\n"),
	}, {
		name:   "second file fails, nothing changes",
		before: files("a", "1\n", "b", "2\n"),
		patch:  "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-1\n+one\n--- a/b\n+++ b/b\n@@ -1 +1 @@\n-3\n+three\n",
		errs:   []string{"patch not applied; no files were changed:\n  b: hunk 1 (@@ -1 +1 @@): line to remove does not match at line 1: expected \"3\", found \"2\"; the hunk's old lines match nowhere else in the file either"},
	}, {
		name:   "path given as /workspace/",
		before: files("src/x", "a\n"),
		patch:  "--- /workspace/src/x\n+++ /workspace/src/x\n@@ -1 +1 @@\n-a\n+b\n",
		after:  files("src/x", "b\n"),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fps, err := Parse([]byte(tc.patch))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			res, err := Apply(tc.before, fps)
			if res == nil || len(res.Files) != len(fps) {
				t.Fatalf("result %+v for %d file patches", res, len(fps))
			}
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("Apply succeeded: %s", res)
				}
				if !errors.Is(err, ErrNotApplied) {
					t.Errorf("error %v is not ErrNotApplied", err)
				}
				for _, want := range tc.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error\n%s\ndoes not contain\n%s", err, want)
					}
				}
				if res.Changes != nil {
					t.Errorf("failed Apply returned changes %+v", res.Changes)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if d := diffFS(perform(t, tc.before, res.Changes), tc.after); d != "" {
				t.Errorf("workspace after:\n%s", d)
			}
			for i, f := range res.Files {
				if f.Err != nil || f.HunksApplied != f.HunksTotal || f.HunksTotal != len(fps[i].Hunks) {
					t.Errorf("file %d: %s", i, f.String())
				}
			}
			if tc.offsets != nil {
				var got []int
				for _, h := range res.Files[0].Hunks {
					got = append(got, h.Offset)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.offsets) {
					t.Errorf("offsets %v, want %v", got, tc.offsets)
				}
			}
		})
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	before := files("a", "1\n", "b", "2\n", "c", "3\n")
	patch := "--- a/a\n+++ b/a\n@@ -1 +1 @@\n-1\n+one\n" +
		"--- a/b\n+++ b/b\n@@ -1 +1 @@\n-two\n+TWO\n" +
		"--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+4\n" +
		"--- a/e\n+++ b/e\n@@ -1 +1 @@\n-5\n+five\n"
	fps, err := Parse([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Apply(before, fps)
	if err == nil || res.Changes != nil {
		t.Fatalf("Apply = %+v, %v; want failure and no changes", res.Changes, err)
	}
	want := "patch not applied; no files were changed:\n" +
		"  b: hunk 1 (@@ -1 +1 @@): line to remove does not match at line 1: expected \"two\", found \"2\"; the hunk's old lines match nowhere else in the file either\n" +
		"  e: file to modify does not exist; to create it, use \"--- /dev/null\""
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	type outcome struct {
		path, op         string
		applied, total   int
		failed           bool
		line, hunkOffset int
	}
	var got []outcome
	for _, f := range res.Files {
		o := outcome{path: f.Path, op: f.Op.String(), applied: f.HunksApplied, total: f.HunksTotal, failed: f.Err != nil}
		if len(f.Hunks) > 0 {
			o.line, o.hunkOffset = f.Hunks[0].Line, f.Hunks[0].Offset
		}
		got = append(got, o)
	}
	wantOutcomes := []outcome{
		{"a", "modify", 1, 1, false, 1, 0},
		{"b", "modify", 0, 1, true, 0, 0},
		{"d", "add", 1, 1, false, 0, 0},
		{"e", "modify", 0, 1, true, 0, 0},
	}
	if fmt.Sprint(got) != fmt.Sprint(wantOutcomes) {
		t.Errorf("outcomes\n%v\nwant\n%v", got, wantOutcomes)
	}
	var he *HunkError
	if !errors.As(res.Files[1].Err, &he) || he.Hunk != 1 || he.Header != "@@ -1 +1 @@" {
		t.Errorf("file b error %#v is not the hunk's *HunkError", res.Files[1].Err)
	}
	if s := res.String(); !strings.Contains(s, "a: modify, 1/1 hunks applied\n") || !strings.Contains(s, "b: modify, 0/1 hunks applied; FAILED: hunk 1") {
		t.Errorf("summary:\n%s", s)
	}
}

func TestApplyChanges(t *testing.T) {
	// Deletions come first, so a file can give way to a directory.
	before := files("x", "a\n", "keep", "k\n")
	patch := "diff --git a/keep b/keep\n--- a/keep\n+++ b/keep\n@@ -1 +1 @@\n-k\n+K\n" +
		"diff --git a/x b/x/y\nrename from x\nrename to x/y\n"
	fps, err := Parse([]byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Apply(before, fps)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, fmt.Sprintf("%v %s %q %v", c.Op, c.Path, c.Content, c.Mode))
	}
	want := []string{`delete x "" ----------`, `modify keep "K\n" -rw-r--r--`, `add x/y "a\n" -rw-r--r--`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes\n%q\nwant\n%q", got, want)
	}
	if s := res.Files[1].String(); s != "x/y: rename from x, 0/0 hunks applied" {
		t.Errorf("summary %q", s)
	}
}

func TestApplyOffsetSummary(t *testing.T) {
	_, res := parseApply(t, files("x", "0\n"+numbered(1, 9)), "--- a/x\n+++ b/x\n@@ -5 +5 @@\n-line 5\n+five\n")
	if s := res.String(); s != "x: modify, 1/1 hunks applied (hunk 1 at offset +1)\n" {
		t.Errorf("summary %q", s)
	}
	if h := res.Files[0].Hunks[0]; h.Line != 6 || h.Offset != 1 {
		t.Errorf("hunk applied at line %d offset %d, want 6 and +1", h.Line, h.Offset)
	}
}

// errFS fails every read with a permission error.
type errFS struct{}

func (errFS) ReadFile(string) ([]byte, fs.FileMode, error) { return nil, 0, fs.ErrPermission }

func TestApplyReadError(t *testing.T) {
	fps, err := Parse([]byte("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Apply(errFS{}, fps)
	if err == nil || !errors.Is(res.Files[0].Err, fs.ErrPermission) || !strings.Contains(err.Error(), "x: cannot read x: permission denied") {
		t.Errorf("Apply = %v, file error %v", err, res.Files[0].Err)
	}
}

func TestApplyRejectsUncleanPaths(t *testing.T) {
	// FilePatch is a plain struct; Apply does not trust its paths.
	res, err := Apply(files(), []FilePatch{{Op: OpAdd, NewPath: "../x"}})
	if err == nil || !errors.Is(res.Files[0].Err, ErrInvalidPath) {
		t.Errorf("Apply = %v, file error %v", err, res.Files[0].Err)
	}
}

// A mismatch quotes at most the start of each line: a file of one 1 MiB
// line must not turn into a megabyte-long error for the agent.
func TestApplyMismatchQuotesAreClipped(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	fps, err := Parse([]byte("--- a/a\n+++ b/a\n@@ -1 +1 @@\n-" + long + "y\n+z\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Apply(files("a", long+"\n"), fps)
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "does not match at line 1") {
		t.Fatalf("Apply error of %d bytes: %.300v", len(err.Error()), err)
	}
}
