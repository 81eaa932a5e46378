package virtio

// A bug in a device model must cost its VM, not the server: every VM of a
// `pyro mcp serve` lives in one process, and a panic nobody recovers ends
// them all. Each device goroutine defers Activation.Recover at its top, and
// the transport recovers around every call it makes into the device from a
// vCPU, a kick forwarder or the VMM's Close. A recovered panic marks the
// device DEVICE_NEEDS_RESET and goes to the transport's crash handler,
// which vmm/ turns into a crash of that VM (StopCrash) whose detail is the
// panic and its stack.
//
// What a recovered panic cannot undo is a lock the device held without a
// deferred unlock: the VM stops, but a later call that needs that lock
// waits. Devices keep their critical sections short and free of calls
// that may panic; recovery is the backstop, not the design.

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic recovered in a device: a bug on the host side, not
// the guest's doing. Its message carries the panic value and the stack.
type PanicError struct {
	// Where names the goroutine or call that panicked.
	Where string
	// Value is what was passed to panic.
	Value any
	// Stack is the panicking goroutine's stack at recovery.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("bug: %s panicked: %v\n%s", e.Where, e.Value, e.Stack)
}

// NewPanicError describes a recovered panic v in where, with the current
// goroutine's stack; call it from the deferred function that recovered.
func NewPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

// Recover, deferred directly at the top of a device goroutine
// (defer a.Recover("virtio-blk worker")), turns a panic there into a
// crash of the device's VM through a.Crash (a.Fail when there is none)
// and lets the goroutine end. Deferred after the goroutine's own cleanup
// (closing its done channel), it runs first.
func (a Activation) Recover(where string) {
	r := recover()
	if r == nil {
		return
	}
	err := NewPanicError(where, r)
	if a.Crash != nil {
		a.Crash(err)
	} else if a.Fail != nil {
		a.Fail(err)
	}
}

// OnCrash sets the function that stops the transport's VM after a device
// panicked (a *PanicError); vmm/ records it as the VM's crash. Call it
// before the driver starts. Without one a panic only marks the device
// DEVICE_NEEDS_RESET.
func (t *MMIO) OnCrash(f func(err error)) { t.crashFn.Store(&f) }

// Crashed returns the panic that crashed the device, or nil.
func (t *MMIO) Crashed() error {
	if p := t.crashed.Load(); p != nil {
		return p
	}
	return nil
}

// crash records the first panic, marks the device as needing a reset and
// hands the panic to the crash handler. Safe from any goroutine, with or
// without mu held. It raises no interrupt, unlike fail: the VM is
// stopping, and the interrupt path may be what panicked.
func (t *MMIO) crash(err *PanicError) {
	t.crashed.CompareAndSwap(nil, err)
	t.log.Error("virtio: device panicked; stopping its VM", "device", t.dev.ID(), "where", err.Where, "panic", err.Value, "stack", string(err.Stack))
	t.needsReset.Store(true)
	if f := t.crashFn.Load(); f != nil {
		(*f)(err)
	}
}

// recoverCall, deferred directly in a transport method that calls into the
// device, turns the device's panic into a crash.
func (t *MMIO) recoverCall(where string) {
	if r := recover(); r != nil {
		t.crash(NewPanicError(fmt.Sprintf("virtio device %d: %s", t.dev.ID(), where), r))
	}
}
