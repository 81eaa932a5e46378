// Package disk is the copy-on-write block store behind a workspace's
// virtio-blk disk: a read-only base image shared by every VM of an
// environment, and a stack of layers above it that hold what one VM wrote.
// Snapshots are layers: Freeze makes the top layer immutable and starts a new
// one above it. Layers form a tree: each records its parent, the frozen
// layer it was started on (BaseID: the base image). Checkout discards the
// writable top and starts a new one on any frozen layer ("reset to
// snapshot", every snapshot kept); DeleteLayer deletes a frozen layer
// nothing is built on; CutBack drops a frozen layer's whole subtree. Fork
// starts a new stack on a frozen layer of another, sharing that layer and
// its ancestors by hard link. None copies data, so each costs a few fsyncs
// whatever the disk's size.
//
// It sits between the virtio-blk device model, which turns the guest's
// requests into byte ranges, and the host's files:
//
//	guest driver -> virtio-blk: IN, OUT, FLUSH, DISCARD, WRITE_ZEROES
//	             -> Stack: ReadAt, WriteAt, Flush, Discard, WriteZeroes
//	             -> base image (pread, opened O_RDONLY, never written)
//	                and layer files (pread, pwrite, fallocate, fdatasync)
//
// # Disk model
//
// The disk is Size bytes: a multiple of 512, at least the base image's size.
// It is cut into clusters of ClusterSize bytes (4 KiB, ext4's block size, so
// the guest's aligned block writes never need a read-modify-write); the last
// cluster is short when Size is not a multiple of ClusterSize. Byte b of the
// disk reads from the topmost layer of the current chain (the writable top,
// its parent, that layer's parent, and so on down to the base; other
// branches are never read) whose bitmap has cluster b/ClusterSize set, else
// from the base image, else (past the base's end, or when the stack
// has no base) as zero. Reads coalesce runs of clusters from one source into
// one pread.
//
// Only the top layer is written, and only while it is not frozen. A write
// that covers whole clusters goes straight to the top layer's data file; a
// write to part of a cluster the top layer does not hold first copies that
// cluster from below (read-modify-write). The cluster's bit is set after the
// data is written. Discard and WriteZeroes both leave their range reading as
// zeros: whole clusters are marked held by the top layer and their bytes
// punched out of its data file (FALLOC_FL_PUNCH_HOLE), partial clusters are
// written with zeros. Lower layers' data never shows through a discarded
// range.
//
// # On-disk format (version 2)
//
// A stack is a directory holding:
//
//	manifest.json  what the stack is; see below
//	<id>.data      one per layer: the layer's clusters
//	<id>.map       one per layer: which clusters the layer holds
//
// A layer ID is 16 lowercase hex digits, random, never reused in a stack.
//
// manifest.json is one JSON object: "format" ("pyro-disk-stack"), "version"
// (2), "cluster_size" (4096), "size" (the disk's size in bytes), "base"
// (absent for a disk that starts as zeros, else {"path": absolute path,
// "size": bytes, "mtime_ns": modification time in Unix nanoseconds}), and
// "layers": the frozen layers in the order they were frozen, then the
// writable top, each {"id", "parent" ("" for the base image, else the ID
// of a frozen layer listed before it), "name" (the caller's label),
// "frozen", "created", "frozen_at" (RFC 3339)}. Every layer but the last is
// frozen; the last is the writable top. Unknown fields are refused.
//
// Version 1, written before layers formed a tree, is the same without
// "parent": the layers are a chain, each on the one listed before it (the
// first on the base). Open reads it so; the next change to the layer set
// writes version 2. Map files are still version 1.
//
// <id>.data is a sparse file exactly Size rounded up to a whole cluster long
// (its length is set when the layer is created); cluster c is at offset
// c*ClusterSize. No table maps clusters to offsets, and clusters the layer
// never wrote cost no space. Bytes of clusters the map does not mark are
// ignored.
//
// <id>.map, integers little-endian:
//
//	offset  size  field
//	0       8     magic "PYRODMAP"
//	8       4     format version, 1
//	12      4     cluster size, 4096
//	16      8     disk size in bytes
//	24      16    the layer's ID, ASCII
//	40      B     bitmap, B = ceil(clusters/8): cluster c is bit c%8 of byte
//	              c/8; the bits after the last cluster are zero
//	40+B    4     CRC-32C (Castagnoli) of bytes [0, 40+B)
//
// The header repeats the disk size and the layer's ID so that a map cannot be
// paired with another stack's or another layer's data.
//
// # Crash consistency
//
// The invariant: a bit set in a map file on disk names a cluster whose data
// is durable in that layer's data file. Data is written before its bit is
// set; bits reach the map file only in Flush, after fdatasync of the data
// file; and the map file is replaced whole and atomically (write <id>.map.tmp,
// fsync, rename over <id>.map, fsync the directory), so the map on disk is
// always a complete, checksummed copy of the bitmap at some Flush. Hence after
// a host crash:
//
//   - a cluster first written since the last Flush has no bit on disk and
//     reads from the layers below, as it read at that Flush, whatever bytes
//     reached the data file;
//   - a cluster held by the top layer at the last Flush was overwritten in
//     place and may read old or new data sector by sector, which is what a
//     real disk promises for writes not followed by a flush.
//
// So every sector reads either its contents at the last completed Flush or
// data written to it after that Flush, never bytes from anywhere else; and
// everything written before a Flush returned survives. Guests rely on exactly
// this (ext4's journal issues a flush before it commits).
//
// Create, Freeze, Checkout, CutBack and DeleteLayer change the set of files.
// Each first makes the new layer's files durable (fsync them and the
// directory; DeleteLayer makes none), then commits by replacing
// manifest.json atomically the same way as a map, then deletes the files the
// new manifest no longer names. Freeze flushes the top layer
// before it commits, so a frozen layer's map is final. A crash leaves the old
// or the new manifest, each naming only durable files. Files named by no
// manifest (a new layer whose commit did not happen, a dropped layer not yet
// deleted, a *.tmp) are leftovers of an interrupted operation that hold no
// state, and Open deletes them.
//
// Fork builds its new directory the same way: the shared layers' links (or
// copies, fsynced), then the new top, then the manifest, which commits. A
// crash before that leaves a directory with no manifest.json, which Open
// refuses as an unfinished stack; it holds only links to files of other
// stacks, or copies, so deleting it whole (os.RemoveAll) loses nothing.
//
// Open trusts nothing and repairs nothing. It refuses a stack whose manifest
// does not parse or is inconsistent, whose layer files are missing or have the
// wrong length, whose maps fail their checksum or name another layer or disk
// size, or whose base image's size or modification time differ from the
// manifest (ErrBaseChanged: the layers are deltas against that exact image).
//
// If fdatasync of the top layer fails, the kernel may already have dropped the
// unwritten pages, so retrying cannot make them durable: the Stack then
// refuses every further write and Flush with that error until Checkout or
// CutBack discards the top layer or the stack is reopened.
//
// # Forks
//
// Fork(src, id, dst) makes a new stack in dst whose frozen layers are the
// frozen layer id of the stack in src and its ancestors, down to the base
// (other branches are not taken), with their IDs, names and times, and a
// new empty writable top on id; base image, disk size and cluster size are
// the source's. The new stack reads as the source did when id was frozen.
//
// The frozen layers' files are hard links to the source's. That is safe
// because a frozen layer's files are never written, truncated, punched or
// renamed over again (only the top's are, and Freeze makes its map final
// before it commits): CutBack, DeleteLayer and Remove only unlink them, so
// deleting a shared layer in one stack removes that stack's link and leaves
// every other stack's. Each stack writes only its own top, so a fork's
// writes never reach its source or its siblings, nor theirs the fork. Where
// the file system refuses the link (EXDEV: another file system; EPERM;
// EMLINK: too many links to one file) the files are copied, data extents
// only (found by SEEK_DATA and SEEK_HOLE), so holes stay holes. A fork of a
// fork is the same operation; its links reach the first stack's files.
//
// Layers reports Allocated for a shared layer in every stack that holds
// it; the space on the host is shared.
//
// # Design notes
//
// Choices beyond the plain layered design, and why:
//
//   - Each data file is given its full length when its layer is created, so
//     a read of a marked cluster is never short and Open can refuse a
//     truncated file; holes keep it free.
//   - Map headers carry the layer ID and disk size, so a map swapped between
//     layers or stacks fails Open instead of mislabeling data.
//   - Maps are rewritten whole, atomically, only when a Flush finds new bits:
//     overwrites of clusters the top layer already holds (most of a guest's
//     steady-state writes, its journal included) cost a Flush one fdatasync.
//     A map is 32 KiB per GiB of disk.
//   - Discard reads back as zeros, like WriteZeroes, rather than as whatever
//     lies below: deterministic, and it never exposes a frozen layer's or the
//     base's data through a range the guest freed.
//   - base "" is a disk that starts as zeros (a scratch disk).
//
// # Concurrency
//
// A Stack is safe for concurrent use. ReadAt calls run in parallel; WriteAt,
// Discard, WriteZeroes, Freeze, Checkout, CutBack and DeleteLayer are
// exclusive. Flush holds the exclusive lock only to copy the bitmap: its
// fdatasync and map write run while reads and writes go on, serialized only
// with other Flush, Freeze, Checkout, CutBack, DeleteLayer and Close calls.
// Between processes, Open takes an exclusive flock on the stack's directory
// and OpenReadOnly a shared one, so one stack is never written by two VMs,
// nor read for export while a VM writes it. Fork takes no lock on its
// source, which is usually open by its running VM: it reads only the
// manifest, replaced atomically, and frozen files, which never change, and
// checks each shared layer as Open does. A layer the source deletes while
// Fork runs makes Fork fail. The new stack is locked from its creation.
package disk
