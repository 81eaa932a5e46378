package vsock

import (
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// A bug on the worker goroutine (here in the interrupt it raises) crashes
// that device's VM with the panic described, and nothing else: the streams
// fail once the VM's device is closed, and a second device keeps working.
func TestWorkerPanicCrashesOnlyItsVM(t *testing.T) {
	var armed atomic.Bool
	dev, g := setup(t, Options{}, guestOpts{irqHook: func() {
		if armed.Load() {
			panic("injected interrupt bug")
		}
	}})
	crashed := make(chan error, 1)
	g.drv.MMIO.OnCrash(func(err error) { crashed <- err })
	g.listen(1000)
	armed.Store(true)
	dialed := make(chan error, 1)
	go func() {
		_, err := dev.Dial(ctxTimeout(t, time.Minute), 1000)
		dialed <- err
	}()
	err := <-crashed
	var pe *virtio.PanicError
	if !errors.As(err, &pe) || pe.Where != "virtio-vsock worker" || pe.Value != "injected interrupt bug" ||
		!strings.Contains(err.Error(), "(*worker).run") {
		t.Fatalf("crash: %v", err)
	}
	dev.Close() // what instance does once the crashed VM has stopped
	if err := <-dialed; err == nil {
		t.Fatal("a Dial on the crashed device succeeded")
	}

	dev2, g2 := setup(t, Options{}, guestOpts{})
	ln := g2.listen(1000)
	c := dial(t, dev2, 1000)
	go echo(g2.accept(ln))
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 10)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "still here" {
		t.Fatalf("second device: %q, %v", got, err)
	}
	c.Close()
}
