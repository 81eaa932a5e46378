package kvm

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues request req on fd with an integer argument. It is the single
// choke point for every KVM ioctl: it retries EINTR (except for KVM_RUN,
// where EINTR is the signal that kicks a vCPU out of the guest) and names the
// ioctl in its error.
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == 0 {
			return r, nil
		}
		if errno == unix.EINTR && req != kvmRun {
			continue
		}
		return r, &Error{Op: ioctlName(req), Err: errno}
	}
}

// ioctlPtr issues req with a pointer to *arg, which the kernel reads or
// writes according to req's direction bits.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (uintptr, error) {
	// SAFETY: arg points to a live Go value whose layout matches the kernel
	// struct that req names (sizes asserted in types_unsafe_test.go). Go's
	// collector does not move heap objects, and KeepAlive keeps arg
	// reachable until the syscall has returned.
	r, err := ioctl(fd, req, uintptr(unsafe.Pointer(arg)))
	runtime.KeepAlive(arg)
	return r, err
}

// ioctlBytes issues req with a pointer to buf[0]; buf holds a kernel struct
// with a variable-length tail (kvm_cpuid2, kvm_msrs), encoded by the caller.
func ioctlBytes(fd int, req uintptr, buf []byte) (uintptr, error) {
	if len(buf) == 0 {
		panic("kvm: ioctlBytes with an empty buffer")
	}
	// SAFETY: buf is a live Go slice at least as long as the struct the
	// kernel accesses: callers size it from the header's entry count, which
	// the kernel bounds by that same count.
	r, err := ioctl(fd, req, uintptr(unsafe.Pointer(&buf[0])))
	runtime.KeepAlive(buf)
	return r, err
}

// sliceAddr returns the user-space address of b's first byte, for
// KVM_SET_USER_MEMORY_REGION.
func sliceAddr(b []byte) uint64 {
	// SAFETY: only the address is taken; b must stay mapped for as long as
	// KVM uses it, which the VM's memory owner guarantees by unmapping only
	// after the VM fd is closed.
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
