package agent

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow the
// mounted file system to the block count the argument points to.
const ext4IocResizeFS = 0x40086610

// growRoot grows the root file system, mounted read-write at mnt, to fill
// its device when the device is larger. Failures are logged, never fatal:
// a workspace with its image's size still boots.
func growRoot(params map[string]string, mnt string) {
	dev := params["pyro.root"]
	if dev == "" {
		dev = DefaultRoot
	}
	fstype := params["pyro.rootfstype"]
	if fstype == "" {
		fstype = DefaultRootFS
	}
	if flags, _ := rootFlags(params); fstype != "ext4" || flags&unix.MS_RDONLY != 0 {
		return
	}
	oldB, newB, err := growExt4(dev, mnt)
	switch {
	case err != nil:
		consolef("pyro-agent: warning: growing the root file system to its disk: %v", err)
	case newB > oldB:
		consolef("pyro-agent: grew the root file system from %d to %d blocks", oldB, newB)
	}
}

// growExt4 grows the ext4 file system on dev, mounted at mnt, to the
// device's size, and returns its block counts before and after.
func growExt4(dev, mnt string) (oldBlocks, newBlocks uint64, err error) {
	// dev may be a symlink (/dev/disk/by-label/...): sysfs is keyed by
	// the kernel's name.
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile("/sys/class/block/" + filepath.Base(real) + "/size")
	if err != nil {
		return 0, 0, err
	}
	devBytes, err := parseSectors(b)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Open(real)
	if err != nil {
		return 0, 0, err
	}
	sb := make([]byte, ext4SuperSize)
	_, err = f.ReadAt(sb, ext4SuperOffset)
	f.Close()
	if err != nil && err != io.EOF {
		return 0, 0, fmt.Errorf("reading the superblock of %s: %w", dev, err)
	}
	newBlocks, oldBlocks, grow, err := growTarget(sb, devBytes)
	if err != nil || !grow {
		return oldBlocks, oldBlocks, err
	}
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return oldBlocks, oldBlocks, fmt.Errorf("opening %s: %w", mnt, err)
	}
	defer unix.Close(fd)
	// The ioctl reads a __u64 through its pointer argument: pass the 8
	// bytes as a string (x/sys/unix's pointer-passing helper without
	// unsafe here).
	var arg [8]byte
	binary.NativeEndian.PutUint64(arg[:], newBlocks)
	if err := unix.IoctlSetString(fd, ext4IocResizeFS, string(arg[:])); err != nil {
		return oldBlocks, oldBlocks, fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", newBlocks, err)
	}
	return oldBlocks, newBlocks, nil
}
