package memory

import "unsafe"

// hostAddr is the host virtual address of b's first byte, as a number: Save
// uses it only to index /proc/self/pagemap, never to reach memory.
func hostAddr(b []byte) uintptr {
	// SAFETY: the pointer is turned into an integer and never back into a
	// pointer, so nothing is read or kept alive through it; b itself (a
	// region of the guest's mapping) is what Save reads, through the slice.
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}
