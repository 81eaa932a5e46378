package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Growing the root file system. The host may give a workspace a disk larger
// than the environment's image (the layered disk reads zeros past the
// image, and costs host space only where the guest writes), so at boot the
// agent grows the mounted ext4 root to the whole disk with the kernel's
// online resize (EXT4_IOC_RESIZE_FS): the guest's minimal userland has no
// resize2fs. This file is the pure part: reading the superblock and
// deciding the new size.

// ext4 superblock: where it lies on the device, its size, and the fields
// read (offsets within the superblock; see the kernel's struct ext4_super_block).
const (
	ext4SuperOffset   = 1024
	ext4SuperSize     = 1024
	ext4Magic         = 0xEF53
	ext4Incompat64Bit = 0x80

	sbBlocksCountLo   = 0x04
	sbLogBlockSize    = 0x18
	sbMagic           = 0x38
	sbFeatureIncompat = 0x60
	sbBlocksCountHi   = 0x150
)

// maxExt4Blocks32 is the most blocks an ext4 without the 64bit feature
// addresses.
const maxExt4Blocks32 = 1<<32 - 1

// ext4Geometry reads an ext4 superblock (the 1024 bytes at offset 1024 of
// the device): its size in blocks, its block size, and whether it has 64-bit
// block numbers.
func ext4Geometry(sb []byte) (blocks uint64, blockSize uint64, is64 bool, err error) {
	if len(sb) < ext4SuperSize {
		return 0, 0, false, fmt.Errorf("ext4 superblock: %d bytes, want %d", len(sb), ext4SuperSize)
	}
	le := binary.LittleEndian
	if m := le.Uint16(sb[sbMagic:]); m != ext4Magic {
		return 0, 0, false, fmt.Errorf("no ext4 superblock (magic %#x)", m)
	}
	logSize := le.Uint32(sb[sbLogBlockSize:])
	if logSize > 6 { // 1 KiB << 6 = 64 KiB, ext4's largest block
		return 0, 0, false, fmt.Errorf("ext4 superblock: block size 1024<<%d is out of range", logSize)
	}
	blockSize = 1024 << logSize
	blocks = uint64(le.Uint32(sb[sbBlocksCountLo:]))
	is64 = le.Uint32(sb[sbFeatureIncompat:])&ext4Incompat64Bit != 0
	if is64 {
		blocks |= uint64(le.Uint32(sb[sbBlocksCountHi:])) << 32
	}
	return blocks, blockSize, is64, nil
}

// growTarget returns the block count that fills a device of devBytes with
// the file system whose superblock is sb, and the count it has now; grow is
// false when the file system already fills the device (or is larger, which
// online resize cannot shrink).
func growTarget(sb []byte, devBytes uint64) (newBlocks, oldBlocks uint64, grow bool, err error) {
	oldBlocks, bs, is64, err := ext4Geometry(sb)
	if err != nil {
		return 0, 0, false, err
	}
	newBlocks = devBytes / bs
	if !is64 && newBlocks > maxExt4Blocks32 {
		newBlocks = maxExt4Blocks32
	}
	return newBlocks, oldBlocks, newBlocks > oldBlocks, nil
}

// parseSectors reads /sys/class/block/DEV/size: the device's size in
// 512-byte sectors, whatever its logical block size.
func parseSectors(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("device size %q: %w", s, err)
	}
	if n > 1<<54 { // 2^63 bytes: not a real device
		return 0, errors.New("device size out of range")
	}
	return n * 512, nil
}
