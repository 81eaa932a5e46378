package net

// Pausing for a snapshot. Pause stops the worker after its pass and keeps
// the frames Deliver queued, so a Resume of the same VM delivers them; a
// device restored into a new VM starts with none (a network loses
// packets, and TCP retransmits). The receive chains the worker holds for
// a frame still waiting for more buffers go back to the ring, so that the
// saved ring indices describe all the device did.

import (
	"encoding/binary"
	"fmt"

	"github.com/pyro-mcp/pyro/virtio"
)

var (
	_ virtio.Pauser         = (*Device)(nil)
	_ virtio.StatefulDevice = (*Device)(nil)
)

// Pause implements virtio.Pauser.
func (d *Device) Pause() {
	d.mu.Lock()
	if d.stop == nil || d.paused {
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

// settleForPause hands the spare receive chains back to the ring and
// raises the interrupt owed for tx completions. It runs after the worker
// stopped.
func (w *worker) settleForPause() {
	w.d.memMu.Lock()
	defer w.d.memMu.Unlock()
	if len(w.spare) > 0 && w.rx.Unpop(len(w.spare)) == nil {
		clear(w.spare)
		w.spare = w.spare[:0]
	}
	if w.txOwed > 0 {
		w.txOwed = 0
		w.interrupt()
	}
}

// Resume implements virtio.Pauser: a worker takes the same queues and
// delivers what was queued meanwhile. After a broken queue the device
// stays stopped until the reset.
func (d *Device) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop == nil || !d.paused || !d.active {
		return
	}
	d.paused = false
	d.startLocked()
	d.wake()
}

// The device's state for a snapshot (virtio.StatefulDevice): the guest
// keeps the MAC and MTU it read from the configuration, so a restore into
// a device with others fails.
//
//	version u8 (1)  mac [6]  mtu u32
const stateLen = 1 + 6 + 4

// SaveState implements virtio.StatefulDevice.
func (d *Device) SaveState() ([]byte, error) {
	b := make([]byte, stateLen)
	b[0] = 1
	copy(b[1:7], d.mac[:])
	binary.LittleEndian.PutUint32(b[7:], uint32(d.mtu))
	return b, nil
}

// RestoreState implements virtio.StatefulDevice.
func (d *Device) RestoreState(b []byte) error {
	if len(b) != stateLen || b[0] != 1 {
		return fmt.Errorf("virtio-net: saved state of %d bytes is not version 1 (%d bytes)", len(b), stateLen)
	}
	if mac := [6]byte(b[1:7]); mac != d.mac {
		return fmt.Errorf("virtio-net: the saved device had MAC %x, this one has %x", mac, d.mac)
	}
	if mtu := binary.LittleEndian.Uint32(b[7:]); mtu != uint32(d.mtu) {
		return fmt.Errorf("virtio-net: the saved device had MTU %d, this one has %d", mtu, d.mtu)
	}
	return nil
}
