// Package hostio is the host side of every crossing between the user's
// machine and a workspace's /workspace: the only code in pyro that reads
// or writes host files on a tool's behalf.
//
// Data path: files move between host and guest only as tar streams.
// Host → guest (seeding a workspace, sync_push), TarDir, TarGit and
// TarArchive turn a host directory, a git checkout's files or a host
// archive into a normalised tar stream that the MCP layer hands to the
// guest agent's tar_in. Guest → host (export), the guest agent's tar_out
// stream arrives here and Extract, or WriteTar, puts it on the host
// disk. GuestPath and HostPath clean the paths a tool call names before
// either direction starts.
//
// Trust: the host directory and the user's archives are trusted but
// messy (sockets, loops, huge files, files that change while read), so
// the seeding side skips what it cannot send and says so in a Report
// rather than failing. The guest's stream is hostile: Extract treats
// every name, link, size and mode in it as an attack on the host. It
// writes only beneath a fresh temporary sibling of the destination,
// opened as an os.Root, refuses to pass through any symlink while it
// extracts, refuses devices, FIFOs, escaping names and escaping hard
// links, caps the bytes it writes, strips set-id bits, and renames the
// result into place only after the whole stream has been read and
// checked, so a failed or malicious export leaves the destination as it
// was. A destination the export replaces is moved to a dated backup
// beside it, never deleted. WriteTar saves the stream as an archive
// after the same checks (the same code, with nothing created) and caps
// its raw bytes, headers and names counted. Temporaries are locked
// while in use, and the next export into a directory sweeps those a
// killed export left.
package hostio
