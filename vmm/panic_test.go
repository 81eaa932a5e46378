package vmm

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
)

// buggyDevice is a virtio device whose configuration read panics.
type buggyDevice struct{ virtio.Device }

func (buggyDevice) ID() virtio.DeviceID              { return virtio.IDBlock }
func (buggyDevice) QueueSizes() []uint16             { return []uint16{8} }
func (buggyDevice) ReadConfig(uint64, []byte)        { panic("injected config bug") }
func (buggyDevice) WriteConfig(uint64, []byte)       {}
func (buggyDevice) Notify(int)                       {}
func (buggyDevice) Features() uint64                 { return 0 }
func (buggyDevice) Activate(virtio.Activation) error { return nil }
func (buggyDevice) Reset()                           {}

// A device that panics on a vCPU's access crashes its own VM, with the
// panic and the stack as the crash's detail, and the vCPU goes on.
func TestDevicePanicCrashesTheVM(t *testing.T) {
	m := &Machine{stopped: make(chan struct{})}
	tr := m.newTransport(buggyDevice{}, func() {}, nil)
	tr.Read(virtio.Config, make([]byte, 4)) // returns: recovered
	<-m.stopped
	if m.result.Reason != StopCrash || !strings.Contains(m.result.Detail, "panicked: injected config bug") ||
		!strings.Contains(m.result.Detail, "buggyDevice.ReadConfig") {
		t.Fatalf("result %v: %s", m.result.Reason, m.result.Detail)
	}
}

// A panic at the top of one of the VM's goroutines (a vCPU, a kick
// forwarder) stops that VM as a crash; the process goes on.
func TestGoroutinePanicCrashesTheVM(t *testing.T) {
	m := &Machine{stopped: make(chan struct{})}
	go func() {
		defer m.recoverCrash("test goroutine")
		var bus *Bus
		bus.Read(0, nil) // a nil bus: a bug
	}()
	<-m.stopped
	if m.result.Reason != StopCrash || !strings.Contains(m.result.Detail, "test goroutine panicked: runtime error") {
		t.Fatalf("result %v: %s", m.result.Reason, m.result.Detail)
	}
}
