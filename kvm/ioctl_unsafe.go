package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues request req on fd with an integer argument. Every KVM ioctl
// goes through it or through ioctlPtr and ioctlBytes, which share its
// handling of the result (ioctlDone).
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if done, err := ioctlDone(req, errno); done {
			return r, err
		}
	}
}

// ioctlDone says whether an ioctl's errno ends it, and with which error:
// EINTR is retried (except for KVM_RUN, where it is the signal that kicks a
// vCPU out of the guest), and an error names the ioctl.
func ioctlDone(req uintptr, errno unix.Errno) (bool, error) {
	switch {
	case errno == 0:
		return true, nil
	case errno == unix.EINTR && req != kvmRun:
		return false, nil
	}
	return true, &Error{Op: ioctlName(req), Err: errno}
}

// ioctlPtr issues req with a pointer to *arg, which the kernel reads or
// writes according to req's direction bits.
//
// The pointer is converted to a uintptr in unix.Syscall's own argument
// list, never earlier: only there does the compiler keep the value it
// points to in place until the call returns. *arg may live on the
// caller's stack, and a stack can move while a Go function (an ioctl
// helper taking a uintptr, say) grows it; the kernel then wrote a
// KVM_GET_* result to the stack's old copy, and the caller read zeros.
// A snapshot lost its vCPU's XCR0 that way, now and then, and the guest
// it resumed died of #UD on its first AVX instruction.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (uintptr, error) {
	for {
		// SAFETY: arg points to a live Go value whose layout matches
		// the kernel struct that req names (sizes asserted in
		// types_unsafe_test.go), held in place for the call as above.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
		if done, err := ioctlDone(req, errno); done {
			return r, err
		}
	}
}

// ioctlBytes issues req with a pointer to buf[0]; buf holds a kernel struct
// with a variable-length tail (kvm_cpuid2, kvm_msrs), encoded by the caller.
// Like ioctlPtr, it converts the pointer only in the syscall's arguments.
func ioctlBytes(fd int, req uintptr, buf []byte) (uintptr, error) {
	if len(buf) == 0 {
		panic("kvm: ioctlBytes with an empty buffer")
	}
	for {
		// SAFETY: buf is a live Go slice at least as long as the
		// struct the kernel accesses: callers size it from the
		// header's entry count, which the kernel bounds by that same
		// count.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		if done, err := ioctlDone(req, errno); done {
			return r, err
		}
	}
}

// sliceAddr returns the user-space address of b's first byte, for
// KVM_SET_USER_MEMORY_REGION.
func sliceAddr(b []byte) uint64 {
	// SAFETY: only the address is taken; b must stay mapped for as long as
	// KVM uses it, which the VM's memory owner guarantees by unmapping only
	// after the VM fd is closed. It is never Go memory: guest RAM is mmap'd.
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}
