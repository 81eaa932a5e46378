package virtio

// Pausing, saving and restoring a transport for memory snapshots.
//
// The VMM pauses the vCPUs, then every transport (Pause: the device's
// workers finish the chain in hand and stop), copies guest memory and
// saves each transport (SaveState). It then either resumes the same VM
// (Resume) or builds a new one over a copy of the memory, with new
// transports and devices, restores each (RestoreState, before any vCPU
// runs) and resumes them. The rings are in guest memory; what the
// transport adds is the registers, each queue's configuration and the
// device's ring indices, so a restored device pops the next chain the old
// one would have popped and pushes where it would have pushed. Chains the
// driver made available and the old device never popped are served by
// the new one.

import "fmt"

// Pause stops the device using its queues without dropping any state:
// its workers finish the chain in hand and stop (Pauser). The VMM calls
// it with the vCPUs paused, before SaveState. Idempotent; for a device the
// driver has not activated it only marks the transport paused. It fails,
// naming the device, if an active device does not implement Pauser.
func (t *MMIO) Pause() error {
	var p *PanicError
	defer t.crashAfter(&p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.paused {
		return nil
	}
	if t.active {
		dev, ok := t.dev.(Pauser)
		if !ok {
			return fmt.Errorf("virtio: %v (%T) cannot pause: it does not implement virtio.Pauser", t.dev.ID(), t.dev)
		}
		if p = callDevice(t.dev.ID(), "pause", dev.Pause); p != nil {
			return p
		}
	}
	t.paused = true
	return nil
}

// Resume restarts a paused device on the same queues, and raises the
// transport's interrupt if InterruptStatus is not zero (the driver may
// not have seen it: a spurious interrupt is harmless on virtio-mmio). A
// device marked DEVICE_NEEDS_RESET stays stopped. A no-op if the
// transport is not paused.
func (t *MMIO) Resume() error {
	var p *PanicError
	defer t.crashAfter(&p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.paused {
		return nil
	}
	if t.active && !t.needsReset.Load() {
		if dev, ok := t.dev.(Pauser); ok {
			if p = callDevice(t.dev.ID(), "resume", dev.Resume); p != nil {
				return p
			}
		}
	}
	t.paused = false
	if t.intStatus.Load() != 0 {
		t.irq()
	}
	return nil
}

// Paused reports whether the transport is paused (Pause or RestoreState,
// and no Resume since).
func (t *MMIO) Paused() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.paused
}

// SaveState returns the transport's state and its device's
// (StatefulDevice). The transport must be paused; a device that crashed
// is not saved.
func (t *MMIO) SaveState() (*TransportState, error) {
	var p *PanicError
	defer t.crashAfter(&p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.paused {
		return nil, fmt.Errorf("virtio: %v: SaveState while the transport is running; Pause it first", t.dev.ID())
	}
	if c := t.crashed.Load(); c != nil {
		return nil, fmt.Errorf("virtio: %v crashed; its state is not worth saving: %w", t.dev.ID(), c)
	}
	s := &TransportState{
		DeviceID:    t.dev.ID(),
		Status:      t.status,
		DevFeatSel:  t.devFeatSel,
		DrvFeatSel:  t.drvFeatSel,
		QueueSel:    t.queueSel,
		DrvFeatures: t.drvFeatures,
		Ring:        t.ring,
		IntStatus:   t.intStatus.Load(),
		ConfigGen:   t.configGen.Load(),
		NeedsReset:  t.needsReset.Load(),
		Queues:      make([]QueueState, len(t.queue)),
	}
	for i := range t.queue {
		q := &t.queue[i]
		s.Queues[i] = QueueState{
			Size: q.Size, Ready: q.Ready,
			DescAddr: q.DescAddr, AvailAddr: q.AvailAddr, UsedAddr: q.UsedAddr,
			LastAvail: q.lastAvail, UsedIdx: q.usedIdx,
		}
	}
	if sd, ok := t.dev.(StatefulDevice); ok {
		var b []byte
		var err error
		if p = callDevice(t.dev.ID(), "save", func() { b, err = sd.SaveState() }); p != nil {
			return nil, p
		}
		if err != nil {
			return nil, fmt.Errorf("virtio: %v: saving the device: %w", t.dev.ID(), err)
		}
		s.Device = b
	}
	return s, nil
}

// RestoreState loads s into a fresh transport, one no driver has
// programmed, before the guest runs. It checks s against this transport's
// device (its ID, queue count, queue sizes against their maxima, the
// features the driver accepted against those offered) and sets the
// registers. If the saved device was running (DRIVER_OK, not marked
// DEVICE_NEEDS_RESET) it checks each ready queue's layout against guest
// memory, activates the device paused with every queue at its saved ring
// indices, and calls its Restored hook (Restorer). The transport is then
// paused, whether or not the device runs: Resume starts it.
//
// On error nothing is restored: the transport stays at its power-on
// state, and the error (ErrState, but for a device's panic) says what did
// not match. The device's own state (StatefulDevice) is loaded before
// activation; a device whose activation then fails is best discarded
// with its transport.
func (t *MMIO) RestoreState(s *TransportState) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.restoreLocked(s)
}

// Reload is RestoreState for a transport a driver has programmed, in a VM
// rewound in place: it resets the transport and its device first (as a
// driver's reset would: the device stops and drops what it held, a vsock
// device its streams) and then loads s. The transport must be paused. On
// error the transport is left reset, or part loaded: the VM must not run
// on.
func (t *MMIO) Reload(s *TransportState) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.paused {
		return fmt.Errorf("virtio: %v: Reload while the transport is running; Pause it first", t.dev.ID())
	}
	var p *PanicError
	if p = callDevice(t.dev.ID(), "reset", t.resetLocked); p != nil {
		return p
	}
	return t.restoreLocked(s)
}

func (t *MMIO) restoreLocked(s *TransportState) (err error) {
	oldRing, oldGen, oldPaused := t.ring, t.configGen.Load(), t.paused
	committed := false
	defer func() {
		if r := recover(); r != nil {
			err = NewPanicError(fmt.Sprintf("%v: restore", t.dev.ID()), r)
		}
		if err != nil && committed {
			t.resetLocked()
			t.ring, t.paused = oldRing, oldPaused
			t.configGen.Store(oldGen)
		}
	}()
	run, err := t.checkRestoreLocked(s)
	if err != nil {
		return err
	}
	if sd, ok := t.dev.(StatefulDevice); ok {
		if err := sd.RestoreState(s.Device); err != nil {
			return fmt.Errorf("%w: %v: restoring the device: %w", ErrState, t.dev.ID(), err)
		}
	}

	committed = true
	t.status, t.devFeatSel, t.drvFeatSel, t.queueSel = s.Status, s.DevFeatSel, s.DrvFeatSel, s.QueueSel
	t.drvFeatures, t.ring = s.DrvFeatures, s.Ring
	t.intStatus.Store(s.IntStatus)
	t.configGen.Store(s.ConfigGen)
	t.needsReset.Store(s.NeedsReset)
	t.paused = true
	eventIdx := s.DrvFeatures&(1<<VIRTIO_F_EVENT_IDX) != 0
	for i, qs := range s.Queues {
		q := &t.queue[i]
		*q = Queue{MaxSize: q.MaxSize, Size: qs.Size, Ready: qs.Ready,
			DescAddr: qs.DescAddr, AvailAddr: qs.AvailAddr, UsedAddr: qs.UsedAddr,
			lastAvail: qs.LastAvail, usedIdx: qs.UsedIdx}
		if run && q.Ready {
			if err := q.restore(t.mem, eventIdx, qs.LastAvail, qs.UsedIdx); err != nil {
				return fmt.Errorf("%w: %v: queue %d: %w", ErrState, t.dev.ID(), i, err)
			}
		}
	}
	if !run {
		return nil
	}
	if err := t.startLocked(); err != nil {
		return fmt.Errorf("%w: %v: activation: %w", ErrState, t.dev.ID(), err)
	}
	if r, ok := t.dev.(Restorer); ok {
		r.Restored()
	}
	return nil
}

// checkRestoreLocked checks s against the transport and its device,
// changing nothing, and says whether the device is to run.
func (t *MMIO) checkRestoreLocked(s *TransportState) (run bool, err error) {
	id := t.dev.ID()
	switch {
	case s == nil:
		return false, stateErr("nil state for %v", id)
	case t.status != 0 || t.active:
		return false, stateErr("%v: restore into a transport a driver has programmed (status %#x)", id, t.status)
	case s.DeviceID != id:
		return false, stateErr("saved %v restored into %v", s.DeviceID, id)
	case len(s.Queues) != len(t.queue):
		return false, stateErr("%v: %d queues saved, the device has %d", id, len(s.Queues), len(t.queue))
	case s.Ring&^(1<<VIRTIO_F_EVENT_IDX) != 0:
		return false, stateErr("%v: unknown ring features %#x", id, s.Ring)
	case s.Status&DEVICE_NEEDS_RESET != 0:
		return false, stateErr("%v: status %#x carries DEVICE_NEEDS_RESET, which is the device's", id, s.Status)
	}
	if s.Status&FEATURES_OK != 0 {
		offered := t.dev.Features() | 1<<VIRTIO_F_VERSION_1 | s.Ring
		if extra := s.DrvFeatures &^ offered; extra != 0 {
			return false, stateErr("%v: the driver accepted features %#x this device does not offer (it offers %#x)", id, extra, offered)
		}
		if s.DrvFeatures&(1<<VIRTIO_F_VERSION_1) == 0 {
			return false, stateErr("%v: FEATURES_OK without VIRTIO_F_VERSION_1", id)
		}
	}
	for i, qs := range s.Queues {
		if limit := t.queue[i].MaxSize; qs.Size > limit {
			return false, stateErr("%v: queue %d has size %d, more than the device's %d", id, i, qs.Size, limit)
		}
	}
	if _, ok := t.dev.(StatefulDevice); !ok && len(s.Device) > 0 {
		return false, stateErr("%v: %d bytes of device state, but %T keeps none", id, len(s.Device), t.dev)
	}
	run = s.Status&DRIVER_OK != 0 && !s.NeedsReset
	if !run {
		return false, nil
	}
	if s.Status&FEATURES_OK == 0 {
		return false, stateErr("%v: DRIVER_OK without FEATURES_OK", id)
	}
	if _, ok := t.dev.(Pauser); !ok {
		return false, stateErr("%v (%T) cannot be restored running: it does not implement virtio.Pauser", id, t.dev)
	}
	for i, qs := range s.Queues {
		if !qs.Ready {
			continue
		}
		q := Queue{MaxSize: t.queue[i].MaxSize, Size: qs.Size,
			DescAddr: qs.DescAddr, AvailAddr: qs.AvailAddr, UsedAddr: qs.UsedAddr}
		// Without event indices bind writes nothing to guest memory.
		if err := q.bind(t.mem, false, qs.LastAvail, qs.UsedIdx); err != nil {
			return false, fmt.Errorf("%w: %v: queue %d does not fit guest memory: %w", ErrState, id, i, err)
		}
	}
	return true, nil
}

// callDevice calls f, a call into device id, and returns the panic it
// recovered, if f panicked.
func callDevice(id DeviceID, where string, f func()) (p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			p = NewPanicError(fmt.Sprintf("%v: %s", id, where), r)
		}
	}()
	f()
	return nil
}

// crashAfter, deferred before a method takes mu, hands the panic *p the
// method recovered from its device to the crash handler once mu is
// released: the handler stops the VM, which closes the transport.
func (t *MMIO) crashAfter(p **PanicError) {
	if *p != nil {
		t.crash(*p)
	}
}
