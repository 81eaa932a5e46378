package net

import (
	"time"

	"github.com/pyro-mcp/pyro/virtio"
)

// rxRing is the receive queue as place uses it: *virtio.Queue, or a fake
// in the fuzz test.
type rxRing interface {
	Pop() (virtio.Chain, bool, error)
	PushBatch([]virtio.UsedElement) (bool, error)
	Unpop(n int) error
}

// worker owns the queues of one activation.
type worker struct {
	d      *Device
	act    virtio.Activation
	rx     rxRing
	rxSize int // entries in the receive ring
	tx     *virtio.Queue
	guest  GuestOffloads
	// What the guest may send (VIRTIO_NET_F_CSUM, _HOST_TSO4, _HOST_TSO6).
	txCsum, tso4, tso6 bool

	// Used under d.memMu, by the worker only.
	//
	// spare are receive chains popped but not yet used, in ring order:
	// a frame waiting for more mergeable buffers, or one dropped for not
	// fitting, leaves them for the next frame. At most the ring's size.
	spare []virtio.Chain
	// txOwed counts tx completions whose interrupt waits (see pass).
	txOwed int
	// used collects the chains of one frame for PushBatch.
	used []virtio.UsedElement
}

func (w *worker) run(stop, done chan struct{}) {
	defer close(done)
	defer w.act.Recover("virtio-net worker")
	txTimer := time.NewTimer(time.Hour)
	txTimer.Stop()
	defer txTimer.Stop()
	txArmed := false
	for {
		select {
		case <-stop:
			return
		default:
		}
		select {
		case <-stop:
			return
		case <-w.d.kick:
		case <-txTimer.C:
			txArmed = false
			w.d.memMu.Lock()
			owed := w.txOwed > 0
			w.txOwed = 0
			w.d.memMu.Unlock()
			if owed {
				w.interrupt()
			}
			continue
		}
		for n := 0; ; n++ {
			progress, irq, err := w.pass()
			if irq {
				w.interrupt()
			}
			if err != nil {
				w.d.mu.Lock()
				w.d.deactivateLocked()
				w.d.mu.Unlock()
				w.act.Fail(err)
				return
			}
			if !progress {
				break
			}
			if n == passes {
				w.d.wake() // more to do, after a look at stop
				break
			}
			select {
			case <-stop: // a pause, say: the rest waits in the rings
				return
			default:
			}
		}
		w.d.memMu.Lock()
		owed := w.txOwed > 0
		w.d.memMu.Unlock()
		if owed && !txArmed {
			txTimer.Reset(w.d.txIRQDelay)
			txArmed = true
		}
	}
}

func (w *worker) interrupt() {
	w.d.stats.interrupts.Add(1)
	w.act.Interrupt()
}

// pass drains tx and fills rx, each up to a batch, and reports whether
// anything moved and whether to interrupt the driver now.
//
// An interrupt for tx completions alone can wait: the driver needs them
// only to reclaim its buffers, and the frames have reached the backend
// already. They are owed (txOwed) until txIRQBatch accumulate, the rx
// queue needs an interrupt (one serves both queues), or txIRQDelay passes.
// A guest streaming small frames then takes one interrupt per batch
// instead of one per frame. Received frames interrupt at once: the guest
// is waiting for them.
func (w *worker) pass() (progress, irq bool, err error) {
	w.d.memMu.Lock()
	defer w.d.memMu.Unlock()
	ntx, irqTx, err := w.drainTx()
	var nrx int
	var irqRx bool
	if err == nil {
		nrx, irqRx, err = w.fillRx()
	}
	if irqTx {
		w.txOwed += max(ntx, 1)
	}
	now := irqRx || (err != nil && w.txOwed > 0) // a failing device pays what it owes
	if now || w.txOwed >= txIRQBatch {
		w.txOwed = 0
		irq = true
	}
	return err == nil && ntx+nrx > 0, irq, err
}
