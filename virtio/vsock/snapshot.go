package vsock

// Pausing for a snapshot, and waking in a new VM.
//
// Pause stops the worker after its current pass; streams, listeners and
// queued packets stay, so a Resume of the same VM carries on where it
// stopped. A device restored into a new VM has no streams: the host end of
// every connection stayed with the old process. Restored tells the guest
// so with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.7) in the first
// event buffer of the restored ring once the device runs; the driver then
// resets its connected sockets and keeps its listening ones, so the host
// can dial the guest's agent again. Packets the guest left in the tx ring
// for streams the new device does not know are answered with RST, as any
// such packet is.

import "github.com/pyro-mcp/pyro/virtio"

var (
	_ virtio.Pauser   = (*Device)(nil)
	_ virtio.Restorer = (*Device)(nil)
)

// Pause implements virtio.Pauser: the worker finishes its pass and stops.
// An rx buffer it holds with nothing to put in it goes back to the ring,
// and tx completions still owed an interrupt get it now.
func (d *Device) Pause() {
	d.mu.Lock()
	if !d.active || d.paused {
		d.mu.Unlock()
		return
	}
	d.paused = true
	close(d.stop)
	done, w := d.done, d.w
	d.mu.Unlock()
	<-done
	w.settleForPause()
}

// settleForPause leaves the rings describing all the worker did: the
// spare rx chain is unpopped and owed interrupts are raised. It runs
// after the worker stopped.
func (w *worker) settleForPause() {
	w.d.memMu.Lock()
	defer w.d.memMu.Unlock()
	if w.spare != nil && w.rx.Unpop(1) == nil {
		w.spare = nil
	}
	if w.txOwed > 0 {
		w.txOwed = 0
		w.interrupt()
	}
}

// Resume implements virtio.Pauser: a new worker takes the same queues
// and catches up with what the guest and the host queued meanwhile. A
// device whose driver broke a queue stays stopped until the reset.
func (d *Device) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active || !d.paused || d.broken {
		return
	}
	d.paused = false
	d.startLocked()
	d.wake()
}

// Restored implements virtio.Restorer: the device was activated on the
// queues of a snapshot, in a new VM, and has none of the streams the
// guest still believes in, so it tells the guest (TransportReset). The
// event goes out once Resume starts the worker.
func (d *Device) Restored() { d.TransportReset() }
