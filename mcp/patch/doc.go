// Package patch is the unified-diff engine behind the patch_apply MCP tool: it
// parses a diff a coding agent sends and works out, in memory, what the
// diff does to the files under the workspace root, all or nothing.
//
// # Where it sits
//
//	agent ─▶ MCP patch_apply ─▶ Parse ─▶ Apply(FS) ─▶ []Change ─▶ caller writes files in the guest
//
// The package does no I/O of its own. Apply reads files through the
// one-method FS interface and returns the changes to make (add, modify,
// delete, each with full new content and mode); the caller performs them.
// If any file of a patch fails, Apply returns no changes at all, and the
// Result says, file by file and hunk by hunk, what applied and what did not
// and why, in words meant for the agent to act on.
//
// # The accepted dialect
//
// Plain unified diffs (diff -u) and git's extended form (git diff,
// git format-patch), any number of files and hunks:
//
//   - Text before the first file header (a commit message, a mail header,
//     a Markdown fence) and between file sections is ignored; so is git's
//     "-- " signature. A hunk header ("@@ -") outside any file is an error.
//   - A file section starts with "--- OLD" then "+++ NEW", or with
//     "diff --git a/OLD b/NEW" followed by git's extended header lines: "old
//     mode", "new mode", "new file mode", "deleted file mode", "rename
//     from/to", "copy from/to", "similarity index", "dissimilarity index"
//     and "index". /dev/null on one side adds or deletes the file. Names may
//     be C-quoted as git quotes them; a tab ends a name (diff -u puts
//     timestamps after one).
//   - Prefixes: "a/" and "b/" (or git's mnemonic i/, w/, c/, o/) are
//     stripped only when both sides carry them, as in "--- a/x" "+++ b/x";
//     with one side /dev/null, "a/" is stripped from the old name and "b/"
//     from the new. Patches made with --no-prefix apply as they are.
//   - Paths are relative to the workspace root; an absolute path is
//     accepted only under /workspace/. See CleanPath.
//   - Hunk headers are "@@ -l,s +l,s @@" with an omitted count meaning 1.
//     Each hunk's body must hold exactly the lines its header counts: a
//     mismatch is an error that gives both counts. An empty line inside a
//     hunk is an empty context line (editors strip the lone space).
//   - "\ No newline at end of file" may follow the last old-side line, the
//     last new-side line, or both.
//   - Renames and copies apply as an add of the (possibly patched) content,
//     plus a delete of the source for a rename. A mode change with no hunks
//     is a Modify with the new mode. A new file with no hunk (git's "new
//     file mode" alone, or "--- /dev/null" "+++ b/x" alone) is empty; a
//     deleted file with no hunk ("deleted file mode" alone) must be empty.
//   - Binary patches ("GIT binary patch", "Binary files ... differ"),
//     symbolic links (mode 120000) and submodules (160000) are refused.
//
// # How hunks apply
//
// There is no fuzz factor: every context and removed line must equal the
// file's line exactly, with one exception: line endings are not compared.
// A CRLF file matches an LF patch (and the reverse), and an edited file
// keeps its own convention: added lines end in CRLF when most of the old
// file's lines do. Lines added to a new (or empty) file end as the patch
// line did, CRLF only when the patch line ended in CRLF and its @@ header
// did not (a patch whose every line ends in CRLF was converted in transit).
// So a patch cannot change line endings alone; file_write can.
//
// A hunk may apply at a different line than its header says, since the
// file may have moved under the agent's feet. Like git apply, Apply looks
// for the hunk's old lines nearest the stated line first, one line down,
// then one up, and so on, after carrying over the offset the previous hunk
// of the file needed; it reports the offset it used. Hunks apply in order
// and must not overlap. A hunk with no old lines (a pure insertion) has
// nothing to search by and goes exactly where its header (plus the carried
// offset) says. A hunk carrying a "\ No newline" marker must end at the end
// of the file. When a hunk reaches the end of the file, its markers decide
// whether the new file ends in a newline; a hunk with no marker leaves
// that as it was.
//
// A file patched twice in one patch (git allows it) is patched in
// sequence: the second section applies to the result of the first, and the
// file yields one Change with the net effect. The same holds for renames:
// the target of one rename may be the source of the next. A delete must
// match the file's whole content: after its hunks apply nothing may be
// left.
package patch
