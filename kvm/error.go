package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Error is a failed KVM ioctl. Op is the ioctl's name from <linux/kvm.h>.
type Error struct {
	Op  string
	Err unix.Errno
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap lets errors.Is match the errno (unix.EINTR, unix.EEXIST...).
func (e *Error) Unwrap() error { return e.Err }

// IsInterrupted reports whether err is a KVM_RUN that a signal cut short:
// the way another thread stops a running vCPU.
func IsInterrupted(err error) bool { return errors.Is(err, unix.EINTR) }

func ioctlName(req uintptr) string {
	if n, ok := ioctlNames[req]; ok {
		return n
	}
	return fmt.Sprintf("ioctl(%#x)", req)
}
