package kvm

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// burn uses about n KiB of the goroutine's stack, then calls f: the call
// after it is as close to the stack's end as n makes it.
//
//go:noinline
func burn(n int, f func()) {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n > 0 {
		burn(n-1, f)
		return
	}
	f()
	_ = pad[0]
}

// The kernel must write an ioctl's result where the caller reads it, even
// when the caller's value is on a goroutine stack that grows during the
// call. A pipe's FIONREAD (TIOCINQ) (the bytes waiting in it) stands in for
// KVM_GET_*: each fresh goroutine starts with a small stack and ioctlPtr
// runs at a different depth in it, so one of them meets the stack's end at
// the call. Converting the pointer before a Go helper's prologue grew the
// stack lost the result there (a snapshot lost its XCR0 so).
func TestIoctlPtrStackGrowth(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const waiting = 5
	if _, err := w.Write(make([]byte, waiting)); err != nil {
		t.Fatal(err)
	}
	fd := int(r.Fd())
	for depth := range 64 {
		got := make(chan int32)
		go burn(depth, func() {
			var n int32
			if _, err := ioctlPtr(fd, unix.TIOCINQ, &n); err != nil {
				t.Error(err)
			}
			got <- n
		})
		if n := <-got; n != waiting {
			t.Fatalf("FIONREAD at stack depth %d KiB read %d, want %d: the kernel wrote elsewhere", depth, n, waiting)
		}
		gotB := make(chan uint32)
		go burn(depth, func() {
			b := [8]byte{}
			if _, err := ioctlBytes(fd, unix.TIOCINQ, b[:]); err != nil {
				t.Error(err)
			}
			gotB <- uint32(b[0]) | uint32(b[1])<<8
		})
		if n := <-gotB; n != waiting {
			t.Fatalf("ioctlBytes FIONREAD at stack depth %d KiB read %d, want %d", depth, n, waiting)
		}
	}
}
