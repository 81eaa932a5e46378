package virtiotest

import "github.com/pyro-mcp/pyro/virtio"

// Fork returns the driver as a guest restored from a snapshot sees it: a
// copy of d's guest memory, a new transport for dev over the copy, and
// d's side of every queue (what it published, what it took from the used
// rings, its allocator), so that the test keeps driving the same rings
// where d left off. The transport is fresh, at its power-on state: the
// test restores the saved state into it (MMIO.RestoreState). Take the
// copy only where the old device cannot be writing guest memory (paused).
func (d *Driver) Fork(dev virtio.Device) *Driver {
	n := &Driver{T: d.T, Mem: &Memory{B: append([]byte(nil), d.Mem.B...)}, Negotiated: d.Negotiated, next: d.next}
	n.MMIO = virtio.NewMMIO(dev, n.Mem, n.IRQ, nil)
	for _, q := range d.Queues {
		c := *q
		c.d = n
		c.seenIRQs = 0 // the new driver counts its own interrupts
		n.Queues = append(n.Queues, &c)
	}
	return n
}
