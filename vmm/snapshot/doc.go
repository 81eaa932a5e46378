// Package snapshot is the state file of a VM snapshot: everything about a
// paused VM except its RAM, in one documented, versioned binary format.
//
// A snapshot is two files: this state file and the guest's RAM, which
// vmm/memory saves as a sparse image of its own (memory.Guest.Save) and maps
// back copy-on-write (memory.Open). The VMM fills a State from its parts
// when it takes a snapshot (the KVM VM and vCPU state, the UART, each virtio
// device's transport) and hands each part its blob back on restore. This
// package reads and writes the container only: it imports nothing of kvm/
// or virtio/, and the blobs (CPUID, VM, CPUs, Serial, Device.Transport) are
// opaque here; each owner versions and checks its own.
//
//	vmm (take)  -> State -> Encode -> state file (Write: tmp, fsync, rename)
//	vmm (restore) <- State <- Decode <- state file (Read)
//
// # Format, version 1
//
// Integers are little-endian. The file is a header, sections, and a
// checksum:
//
//	offset   size  field
//	0        8     magic "PYROSNAP"
//	8        4     u32 format version (Version, 1)
//	12       8     u64 length of the whole file in bytes, header and checksum included
//	20       ...   sections
//	len-4    4     u32 CRC-32C (Castagnoli) of every byte before it
//
// A section is a u32 tag, a u64 payload length and the payload. Sections come
// in ascending tag order. Each appears exactly once, except cpu (exactly once
// per vCPU, in vCPU order) and device (0 to MaxDevices times, in the order
// the VMM gave them); a file that lacks one, repeats one, has them out of
// order or holds a tag not listed here is rejected:
//
//	tag  section  payload
//	1    arch     the architecture name ("x86_64"), 1 to 32 bytes
//	2    vcpus    u32 number of vCPUs, 1 to MaxVCPUs
//	3    memory   u64 RAM size in bytes, u64 start of the 32-bit MMIO hole
//	4    cpuid    the CPUID table of vCPU 0 (opaque)
//	5    vm       the KVM VM state (opaque)
//	6    cpu      one vCPU's KVM state (opaque)
//	7    serial   the UART's state (opaque)
//	8    device   u32 device ID (unique in the file), then its transport state (opaque)
//	9    genid    the 16-byte VM generation ID the guest saw
//	10   created  i64 seconds and u32 nanoseconds (below 1e9) since the Unix epoch, UTC
//	11   note     free text saying what took the snapshot, at most MaxNote bytes
//
// The whole file is at most MaxSize bytes. The encoding is canonical: a State
// has exactly one encoding, so what Decode accepts Encode writes back byte
// for byte.
//
// Decoding fails with an error that wraps ErrFormat, and says which of these
// it met: ErrNotSnapshot (the magic is wrong: not a snapshot state file), a
// *VersionError (a snapshot of another format version: a different pyro wrote
// it), ErrTruncated (the file is shorter than its header says), ErrChecksum
// (the bytes were damaged), or a malformed content (ErrFormat alone). A
// version change is any change to this layout; a reader accepts exactly its
// own version.
package snapshot
