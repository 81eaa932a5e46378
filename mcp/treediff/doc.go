// Package treediff is the engine behind the workspace_diff MCP tool: it
// shows a coding agent what changed under the guest's /workspace since the
// baseline taken right after the workspace was seeded.
//
// Where it sits in the data path: the guest agent's tar_out streams
// /workspace to the host as a tar archive. Right after seeding, the host
// passes that stream to [WriteBaseline], which keeps an [Index] of the tree
// and the content of every regular file in a content-addressed blob store
// on the host's disk. When the agent asks for a diff, the host streams
// tar_out again and passes it to [Diff] with the loaded index and the blob
// store; Diff reads the stream once, hashing every file, and reads a
// baseline blob only for files whose hash differs. The [Result] has one
// [FileDiff] per changed path, totals, and a git-compatible unified patch
// that `git apply` accepts against the baseline tree.
//
// Everything in the tar stream comes from the guest and is untrusted:
// paths are normalised and checked (no "..", no NUL, at most 4096 bytes),
// sizes bound what is buffered (Options.MaxFileBytes), the line diff has a
// work budget linear in its input so no file makes it quadratic (see
// linediff.go), and the patch held in memory is bounded
// (Options.MaxPatchBytes). A malformed stream is an error, never a panic;
// so is a stream cut short, even at an entry boundary, which archive/tar
// alone would take for a smaller tree: the end-of-archive marker must be
// there.
//
// # Trees
//
// A tree holds regular files, directories and symlinks, each with its
// permission bits. Paths in the archive may be written "./src/a.py",
// "src/a.py" or "/src/a.py"; all mean "src/a.py". The root entry ("./")
// is dropped, and other entry types (hard links, devices, FIFOs; tar_out
// emits none of them) are ignored. A path that appears twice is an error.
//
// # On-disk format (version 1)
//
// A baseline directory holds:
//
//	index            the index, described below
//	blobs/<sha256>   the content of regular files, named by the lowercase
//	                 hex SHA-256 of the content, one blob per distinct content
//
// The index is text, one record per line, sorted by path (bytewise):
//
//	pyro-treediff index v1 <number of entries>
//	f <perm> <size> <sha256> <gitid> <path>  regular file
//	d <perm> <path>                          directory
//	l <perm> <path> <target>                 symlink
//	sha256 <hex SHA-256 of every byte above this line>
//
// perm is the permission bits (07777) in octal; sha256 names the blob;
// gitid is git's blob object name (hex SHA-1 of "blob <size>\x00" and the
// content), kept for the patch's index lines; path and target are Go
// double-quoted strings (strconv.Quote), so paths that are not valid UTF-8
// or contain spaces or newlines round-trip exactly. The trailer detects a
// truncated or edited index. A reader rejects any other version.
//
// Crash safety: every blob is written to a temporary file in blobs/,
// fsynced, and renamed into place; the blobs directory is fsynced; only
// then is the index written the same way (temporary file, fsync, rename,
// fsync of the directory). So an index on disk never names a missing or
// partial blob: a crash before the rename leaves the previous index (or
// none: [LoadIndex] then reports [ErrNoBaseline]) plus unreferenced blobs,
// which the next WriteBaseline removes after its own index is in place.
// Callers must not run two WriteBaselines on one directory at once.
//
// # The patch
//
// Patch is what `git diff --no-renames` prints for the same change, byte
// for byte wherever the minimal line diff is unique (where several are,
// git's heuristics may slide a hunk to another of them): "diff --git"
// headers, new/deleted file mode and old/new mode lines, "index" lines
// with git's blob names abbreviated to 7 digits, "---"/"+++" lines (with
// a trailing tab when the name holds a space, as git does), hunks with
// three lines of context and git's default function context after the
// "@@", "\ No newline at end of file",
// "Binary files ... differ", symlinks as mode 120000 with the target as
// content, and a type change as a deletion followed by an addition. Paths
// are quoted as git quotes them with core.quotePath on: a name with a
// control character, '"', '\\' or a byte >= 0x80 is written in double
// quotes with C escapes and octal bytes. Directories produce no patch text.
//
// A file is binary, as in git, if a NUL byte appears in its first 8000
// bytes; a file larger than Options.MaxFileBytes is treated as binary too.
// A binary change is one "Binary files ... differ" line, as in git diff
// without --binary: git apply cannot apply it, so a patch holding one
// applies with `git apply --exclude=<path>` for each binary path.
// Permission changes git cannot express (any bit but the owner execute
// bit) appear in [FileDiff] only.
package treediff
