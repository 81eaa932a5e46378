package vmm

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/vmm/acpi"
)

// Virtio-mmio placement: device i gets a page-sized register window at
// virtioMMIOBase + i*virtioMMIOStride and I/O APIC input virtioFirstGSI + i.
const (
	virtioMMIOStride = 0x1000
	virtioFirstGSI   = 5
	maxVirtioDevices = 24 - virtioFirstGSI // the in-kernel I/O APIC has 24 pins
)

// virtioSlot is one virtio device wired into the VM.
type virtioSlot struct {
	transport *virtio.MMIO
	base      uint64
	gsi       uint32
	irqfd     int
	notify    []*os.File // one ioeventfd per queue
}

// virtioLayout returns where the devices of cfg go, for the ACPI tables.
func virtioLayout(n int) []acpi.VirtioMMIODevice {
	var out []acpi.VirtioMMIODevice
	for i := 0; i < n; i++ {
		out = append(out, acpi.VirtioMMIODevice{
			Base: virtioMMIOBase + uint64(i)*virtioMMIOStride,
			Size: virtioMMIOStride,
			GSI:  uint32(virtioFirstGSI + i),
		})
	}
	return out
}

// addVirtio puts each device behind a virtio-mmio transport on the MMIO
// bus. Its interrupt is an irqfd, so raising it is one eventfd write with no
// exit; its queue notifications are ioeventfds (one per queue, matched on the
// queue index written to QueueNotify), so a guest kick does not exit either:
// a goroutine per queue waits on the eventfd and passes the kick on.
func (m *Machine) addVirtio(devs []virtio.Device, log *slog.Logger) error {
	if len(devs) > maxVirtioDevices {
		return inputErr("%d virtio devices: at most %d", len(devs), maxVirtioDevices)
	}
	for i, l := range virtioLayout(len(devs)) {
		s := &virtioSlot{base: l.Base, gsi: l.GSI, irqfd: -1}
		m.virtio = append(m.virtio, s)
		var err error
		if s.irqfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return fmt.Errorf("eventfd for virtio device %d: %w", i, err)
		}
		if err := m.vm.IRQFD(s.irqfd, s.gsi); err != nil {
			return err
		}
		fd := s.irqfd
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		s.transport = m.newTransport(devs[i], func() { unix.Write(fd, one) }, log)
		if err := m.mmio.Add(fmt.Sprintf("virtio-mmio-%d", i), s.base, virtioMMIOStride, s.transport); err != nil {
			return err
		}
		for q := 0; q < s.transport.NumQueues(); q++ {
			efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				return fmt.Errorf("eventfd for virtio device %d queue %d: %w", i, q, err)
			}
			f := os.NewFile(uintptr(efd), fmt.Sprintf("virtio-%d-queue-%d", i, q))
			s.notify = append(s.notify, f)
			if err := m.vm.IOEventFD(efd, s.base+virtio.QueueNotify, 4, uint64(q), kvm.IOEventFDDataMatch); err != nil {
				return err
			}
			go m.forwardKicks(f, s.transport, q)
		}
	}
	return nil
}

// newTransport puts dev behind a virtio-mmio transport over the VM's
// memory. A bug in the device (a panic the transport or the device's
// goroutine recovered) stops this VM as a crash, not the process.
func (m *Machine) newTransport(dev virtio.Device, irq func(), log *slog.Logger) *virtio.MMIO {
	t := virtio.NewMMIO(dev, m.mem, irq, log)
	t.OnCrash(func(err error) { m.stop(Result{Reason: StopCrash, Detail: err.Error()}) })
	return t
}

// forwardKicks passes queue q's notifications to the transport until f is
// closed.
func (m *Machine) forwardKicks(f *os.File, t *virtio.MMIO, q int) {
	defer m.recoverCrash(fmt.Sprintf("virtio kick forwarder (%s)", f.Name()))
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			return // closed with the VM
		}
		t.Notify(q)
	}
}

// closeVirtio stops the devices' workers and releases the eventfds.
func (m *Machine) closeVirtio() {
	for _, s := range m.virtio {
		if s.transport != nil {
			s.transport.Close()
		}
		for _, f := range s.notify {
			f.Close()
		}
		if s.irqfd >= 0 {
			unix.Close(s.irqfd)
		}
	}
}
