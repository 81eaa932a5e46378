package patch

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "a.txt", want: "a.txt"},
		{in: "src/main.go", want: "src/main.go"},
		{in: "./src//main.go", want: "src/main.go"},
		{in: "src/../main.go", want: "main.go"},
		{in: "/workspace/src/main.go", want: "src/main.go"},
		{in: "/workspace/a/../b", want: "b"},
		{in: "..foo", want: "..foo"},
		{in: "", err: "empty path"},
		{in: "..", err: "escapes the workspace"},
		{in: "../x", err: "escapes the workspace"},
		{in: "a/../../x", err: "escapes the workspace"},
		{in: "/workspace/../etc/passwd", err: "escapes the workspace"},
		{in: "/etc/passwd", err: "absolute path \"/etc/passwd\" is outside /workspace"},
		{in: "/workspacex/a", err: "is outside /workspace"},
		{in: "/workspace", err: "is outside /workspace"},
		{in: "/workspace/", err: "names a directory"},
		{in: "/workspace//etc/x", err: "is outside /workspace"},
		{in: ".", err: "names the workspace root"},
		{in: "a/..", err: "names the workspace root"},
		{in: "dir/", err: "names a directory"},
		{in: "a\x00b", err: "NUL byte"},
	} {
		got, err := CleanPath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidPath) {
				t.Errorf("CleanPath(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// fileSummary is the shape of a FilePatch a test checks.
type fileSummary struct {
	Op               Op
	Old, New         string
	OldMode, NewMode fs.FileMode
	Hunks            int
}

func summarise(fps []FilePatch) []fileSummary {
	var out []fileSummary
	for _, fp := range fps {
		out = append(out, fileSummary{fp.Op, fp.OldPath, fp.NewPath, fp.OldMode, fp.NewMode, len(fp.Hunks)})
	}
	return out
}

func TestParseHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, patch string
		want        []fileSummary
	}{{
		name: "plain with prefixes and timestamps",
		patch: "--- a/src/x.go\t2024-01-01 00:00:00.000000000 +0000\n+++ b/src/x.go\t2024-01-02 00:00:00.000000000 +0000\n" +
			"@@ -1 +1 @@\n-a\n+b\n",
		want: []fileSummary{{Op: OpModify, Old: "src/x.go", New: "src/x.go", Hunks: 1}},
	}, {
		name:  "plain without prefixes",
		patch: "--- src/x.go\n+++ src/x.go\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "src/x.go", New: "src/x.go", Hunks: 1}},
	}, {
		name:  "only one side prefixed is not stripped",
		patch: "--- a/x\n+++ a/x\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "a/x", New: "a/x", Hunks: 1}},
	}, {
		name:  "absolute workspace paths",
		patch: "--- /workspace/x\n+++ /workspace/x\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name:  "plain add and delete",
		patch: "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+x\n+y\n--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-z\n",
		want: []fileSummary{
			{Op: OpAdd, New: "new.txt", Hunks: 1},
			{Op: OpDelete, Old: "old.txt", Hunks: 1},
		},
	}, {
		name: "leading junk, commit message and signature",
		patch: "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] fix\n\nThis fixes --- things.\n---\n x | 2 +-\n 1 file changed\n\n" +
			"diff --git a/x b/x\nindex 83db48f..bf269f4 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n-- \n2.43.0\n\n",
		want: []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name:  "markdown fence",
		patch: "Here is the fix:\n```diff\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n```\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name:  "git new empty file",
		patch: "diff --git a/e b/e\nnew file mode 100644\nindex 0000000..e69de29\n",
		want:  []fileSummary{{Op: OpAdd, New: "e", NewMode: 0o644}},
	}, {
		name:  "git new executable",
		patch: "diff --git a/run.sh b/run.sh\nnew file mode 100755\nindex 0000000..1234567\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+#!/bin/sh\n",
		want:  []fileSummary{{Op: OpAdd, New: "run.sh", NewMode: 0o755, Hunks: 1}},
	}, {
		name:  "git deleted empty file",
		patch: "diff --git a/e b/e\ndeleted file mode 100644\nindex e69de29..0000000\n",
		want:  []fileSummary{{Op: OpDelete, Old: "e", OldMode: 0o644}},
	}, {
		name:  "git mode change",
		patch: "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
		want:  []fileSummary{{Op: OpModify, Old: "run.sh", New: "run.sh", OldMode: 0o644, NewMode: 0o755}},
	}, {
		name:  "git pure rename",
		patch: "diff --git a/old name.txt b/new name.txt\nsimilarity index 100%\nrename from old name.txt\nrename to new name.txt\n",
		want:  []fileSummary{{Op: OpRename, Old: "old name.txt", New: "new name.txt"}},
	}, {
		name: "git rename with changes",
		patch: "diff --git a/a.txt b/b.txt\nsimilarity index 80%\nrename from a.txt\nrename to b.txt\nindex 1..2 100644\n" +
			"--- a/a.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n x\n-y\n+z\n",
		want: []fileSummary{{Op: OpRename, Old: "a.txt", New: "b.txt", Hunks: 1}},
	}, {
		name:  "git copy",
		patch: "diff --git a/a.txt b/c.txt\nsimilarity index 100%\ncopy from a.txt\ncopy to c.txt\n",
		want:  []fileSummary{{Op: OpCopy, Old: "a.txt", New: "c.txt"}},
	}, {
		name:  "git quoted names",
		patch: "diff --git \"a/t\\303\\251st\\tx\" \"b/t\\303\\251st\\tx\"\nnew file mode 100644\nindex 0000000..e69de29\n",
		want:  []fileSummary{{Op: OpAdd, New: "t\u00e9st\tx", NewMode: 0o644}},
	}, {
		name:  "git names with spaces, unquoted",
		patch: "diff --git a/my dir/my file b/my dir/my file\nold mode 100755\nnew mode 100644\n",
		want:  []fileSummary{{Op: OpModify, Old: "my dir/my file", New: "my dir/my file", OldMode: 0o755, NewMode: 0o644}},
	}, {
		name:  "git no-prefix",
		patch: "diff --git x/y x/y\nindex 1..2 100644\n--- x/y\n+++ x/y\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "x/y", New: "x/y", Hunks: 1}},
	}, {
		name:  "git mnemonic prefixes",
		patch: "diff --git i/x w/x\n--- i/x\n+++ w/x\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name:  "git header without --- lines",
		patch: "diff --git a/x b/x\n@@ -1 +1 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name: "multiple files and hunks, blank line between hunks",
		patch: "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n\n@@ -10 +10 @@\n-d\n+e\n" +
			"diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1,2 @@\n y\n+z\n",
		want: []fileSummary{
			{Op: OpModify, Old: "x", New: "x", Hunks: 2},
			{Op: OpModify, Old: "y", New: "y", Hunks: 1},
		},
	}, {
		name:  "CRLF patch",
		patch: "diff --git a/x b/x\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 1}},
	}, {
		name:  "body lines that look like a file header",
		patch: "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n--- x\n+++ y\n@@ -5 +5 @@\n-a\n+b\n",
		want:  []fileSummary{{Op: OpModify, Old: "x", New: "x", Hunks: 2}},
	}, {
		name:  "file named like a header line",
		patch: "--- a/--- x\n+++ b/--- x\n@@ -1 +1 @@\n--- removed\n+++ added\n",
		want:  []fileSummary{{Op: OpModify, Old: "--- x", New: "--- x", Hunks: 1}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fps, err := Parse([]byte(tc.patch))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summarise(fps); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseLines(t *testing.T) {
	for _, tc := range []struct {
		name, body       string
		hdr              string
		want             []Line
		oldNoEOL, newEOL bool
	}{{
		name: "omitted counts",
		hdr:  "@@ -1 +1 @@",
		body: "-a\n+b\n",
		want: []Line{{LineRemoved, "a", false}, {LineAdded, "b", false}},
	}, {
		name: "empty line is empty context",
		hdr:  "@@ -1,3 +1,3 @@",
		body: " a\n\n b\n",
		want: []Line{{LineContext, "a", false}, {LineContext, "", false}, {LineContext, "b", false}},
	}, {
		name:     "no newline on old side",
		hdr:      "@@ -1 +1 @@",
		body:     "-a\n\\ No newline at end of file\n+a\n",
		want:     []Line{{LineRemoved, "a", false}, {LineAdded, "a", false}},
		oldNoEOL: true,
	}, {
		name:   "no newline on new side",
		hdr:    "@@ -1 +1 @@",
		body:   "-a\n+a\n\\ No newline at end of file\n",
		want:   []Line{{LineRemoved, "a", false}, {LineAdded, "a", false}},
		newEOL: true,
	}, {
		name:     "no newline on a context line",
		hdr:      "@@ -1,2 +1,2 @@",
		body:     "-a\n+b\n c\n\\ No newline at end of file\n",
		want:     []Line{{LineRemoved, "a", false}, {LineAdded, "b", false}, {LineContext, "c", false}},
		oldNoEOL: true, newEOL: true,
	}, {
		name: "CRLF content under an LF header",
		hdr:  "@@ -1 +1 @@",
		body: "-a\r\n+b\r\n",
		want: []Line{{LineRemoved, "a", true}, {LineAdded, "b", true}},
	}, {
		name: "CRLF everywhere is transport",
		hdr:  "@@ -1 +1 @@\r",
		body: "-a\r\n+b\r\n",
		want: []Line{{LineRemoved, "a", false}, {LineAdded, "b", false}},
	}, {
		name: "the last line lacks a newline",
		hdr:  "@@ -1 +1 @@",
		body: "-a\n+b",
		want: []Line{{LineRemoved, "a", false}, {LineAdded, "b", false}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fps, err := Parse([]byte("--- a/x\n+++ b/x\n" + tc.hdr + "\n" + tc.body))
			if err != nil {
				t.Fatal(err)
			}
			h := fps[0].Hunks[0]
			if !reflect.DeepEqual(h.Lines, tc.want) {
				t.Errorf("lines %+v\nwant  %+v", h.Lines, tc.want)
			}
			if h.OldNoEOL != tc.oldNoEOL || h.NewNoEOL != tc.newEOL {
				t.Errorf("OldNoEOL %v NewNoEOL %v, want %v %v", h.OldNoEOL, h.NewNoEOL, tc.oldNoEOL, tc.newEOL)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, patch string
		line        int
		msg         string
		is          error
	}{{
		name:  "empty",
		patch: "",
		msg:   "patch: no file changes found",
	}, {
		name:  "prose only",
		patch: "I changed the function to return early.\n",
		msg:   "no file changes found",
	}, {
		name:  "git binary patch",
		patch: "diff --git a/img.png b/img.png\nindex 1..2 100644\nGIT binary patch\nliteral 5\nMcmZ?\n",
		line:  3, msg: "binary patches are not supported; write the file with file_write instead", is: ErrBinary,
	}, {
		name:  "binary files differ",
		patch: "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n",
		line:  3, msg: "binary patches are not supported", is: ErrBinary,
	}, {
		name:  "plain diff binary files differ",
		patch: "Binary files old/x.bin and new/x.bin differ\n",
		line:  1, msg: "binary patches are not supported", is: ErrBinary,
	}, {
		name:  "hunk without file header",
		patch: "@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "hunk header with no file header before it",
	}, {
		name:  "bare @@",
		patch: "--- a/x\n+++ b/x\n@@\n-a\n+b\n",
		line:  3, msg: `hunk 1: malformed hunk header "@@": expected "@@ -OLDSTART,OLDCOUNT +NEWSTART,NEWCOUNT @@"`,
	}, {
		name:  "non-numeric count",
		patch: "--- a/x\n+++ b/x\n@@ -1,x +1 @@\n-a\n+b\n",
		line:  3, msg: `old range: "x" is not a line number`,
	}, {
		name:  "missing hunk",
		patch: "--- a/x\n+++ b/x\nsome text\n",
		line:  3, msg: "expected a hunk header \"@@ -l,s +l,s @@\" after the \"+++\" line",
	}, {
		name:  "body shorter than header",
		patch: "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		line:  7, msg: "hunk 1 (@@ -1,3 +1,3 @@ at patch line 3): its header counts 3 old and 3 new lines, but its body has 2 old and 2 new lines; expected a body line starting with ' ', '-', '+' or '\\', found \"--- a/y\"",
	}, {
		name:  "body shorter than header, file header follows",
		patch: "--- a/x\n+++ b/x\n@@ -1,4 +1,3 @@\n a\n-b\n+c\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		line:  7, msg: "its header counts 4 old and 3 new lines, but its body has 2 old and 2 new lines; expected a body line starting with ' ', '-', '+' or '\\', found \"--- a/y\"",
	}, {
		name:  "body shorter than header at end of patch",
		patch: "--- a/x\n+++ b/x\n@@ -1,3 +1,4 @@\n a\n-b\n+c\n",
		line:  7, msg: "its header counts 3 old and 4 new lines, but its body has 2 old and 2 new lines; the patch ends inside the hunk",
	}, {
		name:  "body shorter than header before next hunk",
		patch: "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n@@ -9 +9 @@\n-a\n+b\n",
		line:  7, msg: "its header counts 3 old and 3 new lines, but its body has 2 old and 2 new lines; expected a body line",
	}, {
		name:  "body longer than header",
		patch: "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n d\n e\n",
		line:  7, msg: "hunk 1 (@@ -1,2 +1,2 @@ at patch line 3): its header counts 2 old and 2 new lines, but its body has 4 old and 4 new lines",
	}, {
		name:  "more added lines than counted",
		patch: "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n",
		line:  6, msg: "its header counts 1 old and 1 new lines, but its body has 1 old and 2 new lines",
	}, {
		name:  "second hunk miscounted",
		patch: "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n@@ -5,2 +5,2 @@\n-a\n+b\n",
		line:  9, msg: "hunk 2 (@@ -5,2 +5,2 @@ at patch line 6): its header counts 2 old and 2 new lines, but its body has 1 old and 1 new lines",
	}, {
		name:  "path escapes",
		patch: "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: `invalid path: "../etc/passwd" escapes the workspace`, is: ErrInvalidPath,
	}, {
		name:  "absolute path outside workspace",
		patch: "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "absolute path \"/etc/passwd\" is outside /workspace", is: ErrInvalidPath,
	}, {
		name:  "rename escapes",
		patch: "diff --git a/x b/y\nrename from x\nrename to ../../y\n",
		line:  1, msg: "escapes the workspace", is: ErrInvalidPath,
	}, {
		name:  "NUL in quoted name",
		patch: "--- \"a/x\\000y\"\n+++ \"b/x\\000y\"\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "NUL byte", is: ErrInvalidPath,
	}, {
		name:  "both dev null",
		patch: "--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+a\n",
		line:  1, msg: "both \"---\" and \"+++\" are /dev/null",
	}, {
		name:  "plain rename",
		patch: "--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "old and new names differ (\"x\", \"y\"): to rename a file use a git diff with \"rename from\" and \"rename to\" lines",
	}, {
		name:  "symlink",
		patch: "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+target\n\\ No newline at end of file\n",
		line:  2, msg: "symbolic links (mode 120000) are not supported",
	}, {
		name:  "submodule",
		patch: "diff --git a/m b/m\nindex 1..2 160000\n--- a/m\n+++ b/m\n@@ -1 +1 @@\n-Subproject commit 1\n+Subproject commit 2\ndiff --git a/s b/s\nnew file mode 160000\n",
		line:  9, msg: "submodules (mode 160000) are not supported",
	}, {
		name:  "bad mode",
		patch: "diff --git a/x b/x\nold mode 100644\nnew mode 10x755\n",
		line:  3, msg: "bad file mode \"10x755\"",
	}, {
		name:  "overlapping hunks",
		patch: "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n@@ -2,2 +2,2 @@\n-c\n+b\n d\n",
		line:  8, msg: "hunk 2 (@@ -2,2 +2,2 @@) starts before hunk 1 ends (old line 3): hunks must be in file order and must not overlap",
	}, {
		name:  "new file with old lines",
		patch: "--- /dev/null\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
		line:  3, msg: "hunk 1 (@@ -1 +1 @@) of a new file must have no old lines",
	}, {
		name:  "deleted file with new lines",
		patch: "--- a/x\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n",
		line:  3, msg: "of a deleted file must have no new lines",
	}, {
		name:  "line after no-newline marker",
		patch: "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n\\ No newline at end of file\n b\n+c\n",
		line:  6, msg: "a line follows \"\\ No newline at end of file\" on the same side",
	}, {
		name:  "marker first",
		patch: "--- a/x\n+++ b/x\n@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n",
		line:  4, msg: "must follow a line",
	}, {
		name:  "start zero with lines",
		patch: "--- a/x\n+++ b/x\n@@ -0,1 +1 @@\n-a\n+b\n",
		line:  3, msg: "old lines start at line 1, not 0",
	}, {
		name:  "huge line number",
		patch: "--- a/x\n+++ b/x\n@@ -99999999999 +1 @@\n-a\n+b\n",
		line:  3, msg: "is not a line number",
	}, {
		name:  "git names differ without rename",
		patch: "diff --git a/x b/y\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "old and new names differ (\"x\", \"y\") but there are no \"rename from\" and \"rename to\" lines",
	}, {
		name:  "git section that changes nothing",
		patch: "diff --git a/x b/x\nindex 1..2 100644\n",
		line:  1, msg: "changes nothing",
	}, {
		name:  "git both new and deleted",
		patch: "diff --git a/x b/x\nnew file mode 100644\ndeleted file mode 100644\n",
		line:  1, msg: "both new and deleted",
	}, {
		name:  "rename without to",
		patch: "diff --git a/x b/y\nrename from x\n",
		line:  2, msg: "rename needs both a \"rename from\" and a \"rename to\" line",
	}, {
		name:  "unsplittable git header",
		patch: "diff --git a/x b/y z\nnew file mode 100644\n",
		line:  1, msg: "cannot tell the file name",
	}, {
		name:  "bad quoting",
		patch: "--- \"a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
		line:  1, msg: "unterminated quoted name",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fps, err := Parse([]byte(tc.patch))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", summarise(fps))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", pe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestHunkHeaderOfBuiltHunk(t *testing.T) {
	h := Hunk{OldStart: 1, OldLines: 1, NewStart: 1, NewLines: 2}
	if got := h.Header(); got != "@@ -1 +1,2 @@" {
		t.Errorf("Header() = %q", got)
	}
}

func TestUnquote(t *testing.T) {
	for _, tc := range []struct{ in, want, rest, err string }{
		{in: `"a\tb\\c\"d" tail`, want: "a\tb\\c\"d", rest: " tail"},
		{in: `"\a\b\n\v\f\r"`, want: "\a\b\n\v\f\r"},
		{in: `"caf\303\251"`, want: "café"},
		{in: `"x\q"`, err: `unknown escape \q`},
		{in: `"x\30"`, err: "bad octal escape"},
		{in: `"x\`, err: "unterminated"},
		{in: `"x`, err: "unterminated"},
	} {
		got, rest, err := unquote(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("unquote(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || rest != tc.rest {
			t.Errorf("unquote(%q) = %q, %q, %v; want %q, %q", tc.in, got, rest, err, tc.want, tc.rest)
		}
	}
}
