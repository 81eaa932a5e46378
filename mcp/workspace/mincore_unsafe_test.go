package workspace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mincore reports which pages of [addr, addr+length) are resident, one
// byte per page in vec (bit 0), for the memory benchmark.
func mincore(addr, length uintptr, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, addr, length, uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}
