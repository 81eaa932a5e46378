package memory

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hostAddr is the host virtual address of b's first byte, as a number: Save
// uses it only to index /proc/self/pagemap, never to reach memory.
func hostAddr(b []byte) uintptr {
	// SAFETY: the pointer is turned into an integer and never back into a
	// pointer, so nothing is read or kept alive through it; b itself (a
	// region of the guest's mapping) is what Save reads, through the slice.
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}

// mincore fills vec (a byte per page) with the residency of the pages of
// mapping m (mincore(2)); bit 0 is set for a page in memory.
func mincore(m, vec []byte) error {
	// SAFETY: m is a live mapping for the whole call and vec holds one
	// byte per page of it, as the kernel writes.
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		return e
	}
	return nil
}

// mapOver maps fd (-1: anonymous memory) from offset 0 over the whole of the
// existing mapping m, at the same addresses (MAP_FIXED), with flags added.
func mapOver(m []byte, fd int, flags int) error {
	// SAFETY: m is a mapping this package made and still owns; the new
	// mapping takes exactly its place and length, so every slice into m
	// stays valid and reads the new mapping's bytes.
	_, err := unix.MmapPtr(fd, 0, unsafe.Pointer(unsafe.SliceData(m)), uintptr(len(m)),
		unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_FIXED)
	return err
}
