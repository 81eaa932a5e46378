package vmm

// Linux x86 boot protocol, 64-bit entry (Documentation/arch/x86/boot.rst).
//
// A bzImage starts with the real-mode setup code: setup_sects+1 sectors of
// 512 bytes, holding at offset 0x1f1 the "setup header" that describes the
// kernel to its loader. The protected-mode kernel follows. pyro skips the
// real-mode and 32-bit stages entirely: it copies the protected-mode kernel
// to 1 MiB, builds the zero page (struct boot_params: the setup header plus
// the e820 memory map and pointers to the command line and initrd), enters
// long mode itself with identity-mapped page tables and a flat GDT, and
// jumps to the 64-bit entry point 0x200 bytes into the protected-mode
// kernel with RSI pointing at the zero page.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Setup header offsets within the bzImage and the zero page (they coincide).
const (
	hdrSetupSects      = 0x1f1
	hdrBootFlag        = 0x1fe
	hdrJump            = 0x200
	hdrMagic           = 0x202
	hdrVersion         = 0x206
	hdrTypeOfLoader    = 0x210
	hdrLoadFlags       = 0x211
	hdrRamdiskImage    = 0x218
	hdrRamdiskSize     = 0x21c
	hdrHeapEndPtr      = 0x224
	hdrCmdLinePtr      = 0x228
	hdrInitrdAddrMax   = 0x22c
	hdrKernelAlignment = 0x230
	hdrRelocatable     = 0x234
	hdrXLoadFlags      = 0x236
	hdrCmdlineSize     = 0x238
	hdrPrefAddress     = 0x258
	hdrInitSize        = 0x260

	bootFlagMagic = 0xaa55
	headerMagic   = 0x53726448 // "HdrS"

	loadFlagLoadedHigh  = 1 << 0
	loadFlagCanUseHeap  = 1 << 7
	xlfKernel64         = 1 << 0
	xlfCanBeLoadedAbove = 1 << 1

	// minProtocol is 2.12, the first version with xloadflags, which is
	// how a kernel says it has a 64-bit entry point.
	minProtocol = 0x020c

	// entry64Offset is where the 64-bit entry point sits in the
	// protected-mode kernel.
	entry64Offset = 0x200
)

// Kernel is a parsed bzImage.
type Kernel struct {
	// Setup is the setup header, copied verbatim into the zero page at
	// hdrSetupSects.
	Setup []byte
	// Payload is the protected-mode kernel, loaded at the kernel address.
	Payload []byte

	Version         uint16
	InitrdAddrMax   uint32
	CmdlineSize     uint32
	InitSize        uint32
	XLoadFlags      uint16
	KernelAlignment uint32
}

// ErrNotBzImage says a file is not a Linux x86 bzImage.
var ErrNotBzImage = errors.New("not a Linux x86 bzImage (expected a kernel such as /boot/vmlinuz-*; an ELF vmlinux or a compressed module will not do)")

// ParseBzImage checks that img is a bzImage this loader can boot and splits
// it into setup header and protected-mode payload. It trusts nothing in img:
// every offset is checked against its length.
func ParseBzImage(img []byte) (*Kernel, error) {
	if len(img) < 0x300 {
		return nil, fmt.Errorf("%w: only %d bytes", ErrNotBzImage, len(img))
	}
	le := binary.LittleEndian
	if le.Uint16(img[hdrBootFlag:]) != bootFlagMagic || le.Uint32(img[hdrMagic:]) != headerMagic {
		return nil, ErrNotBzImage
	}
	k := &Kernel{
		Version:         le.Uint16(img[hdrVersion:]),
		InitrdAddrMax:   le.Uint32(img[hdrInitrdAddrMax:]),
		KernelAlignment: le.Uint32(img[hdrKernelAlignment:]),
		XLoadFlags:      le.Uint16(img[hdrXLoadFlags:]),
		CmdlineSize:     le.Uint32(img[hdrCmdlineSize:]),
		InitSize:        le.Uint32(img[hdrInitSize:]),
	}
	if k.Version < minProtocol {
		return nil, fmt.Errorf("kernel speaks boot protocol %d.%02d; pyro needs 2.12 or later (Linux 3.8+)", k.Version>>8, k.Version&0xff)
	}
	if k.XLoadFlags&xlfKernel64 == 0 {
		return nil, errors.New("kernel has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64): pyro boots x86_64 kernels only")
	}
	if img[hdrLoadFlags]&loadFlagLoadedHigh == 0 {
		return nil, errors.New("kernel is a zImage that loads at 0x10000, not a bzImage")
	}
	// The header runs from 0x1f1 to the end of the jump at 0x200, whose
	// 8-bit displacement (at 0x201) lands right after the header.
	hdrEnd := 0x202 + int(img[hdrJump+1])
	if hdrEnd > len(img) || hdrEnd <= hdrInitSize+4 {
		return nil, fmt.Errorf("%w: setup header ends at %#x", ErrNotBzImage, hdrEnd)
	}
	k.Setup = img[hdrSetupSects:hdrEnd]
	sects := int(img[hdrSetupSects])
	if sects == 0 {
		sects = 4 // as the protocol says of very old kernels
	}
	off := (sects + 1) * 512
	if off+entry64Offset >= len(img) {
		return nil, fmt.Errorf("%w: %d setup sectors leave no protected-mode kernel in %d bytes", ErrNotBzImage, sects, len(img))
	}
	k.Payload = img[off:]
	return k, nil
}
