package vsock

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// DebugState describes the device for diagnosing a stream that stopped
// moving: the worker's counters, the three rings as both sides see them,
// the host's queued packets, and every stream's credit accounting. It
// waits for the worker's current pass, so it is cheap but not free.
func (d *Device) DebugState() string {
	d.memMu.Lock()
	defer d.memMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "virtio-vsock cid %d: active %v paused %v broken %v; kicks %d passes %d interrupts %d; watchdog rescues %d probes %d hits %d; ready %d replies %d",
		d.cid, d.active, d.paused, d.broken, d.kickCount.Load(), d.passCount.Load(), d.irqCount.Load(), d.rescueCount.Load(), d.probes.Load(), d.probeHits.Load(), len(d.ready), len(d.replies))
	if w := d.w; w != nil {
		fmt.Fprintf(&b, "\n  rx %v spare %v\n  tx %v, completions awaiting their interrupt %d\n  event %v", w.rx, w.spare != nil, w.tx, w.txOwed, w.ev)
	}
	keys := make([]connKey, 0, len(d.conns))
	for k := range d.conns {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].local < keys[j].local })
	for _, k := range keys {
		c := d.conns[k]
		fmt.Fprintf(&b, "\n  stream %v->%v state %d queued %v: host sent %d (guest fwd_cnt %d, buf_alloc %d, credit %d), pending %d, credit request sent %v; "+
			"host read %d (fwd_cnt last sent %d, buffered %d), credit update due %v; shut local %d sent %d peer %d; waits for credit %d",
			c.local, c.remote, c.state, c.queued, c.txCnt, c.peerFwdCnt, c.peerBufAlloc, c.creditLocked(), len(c.pending), c.creditReqSent,
			c.fwdCnt, c.lastFwdSent, c.rx.len(), c.sendCredit, c.localShut, c.shutSent, c.peerShut, c.stalls)
	}
	d.trace.format(&b)
	return b.String()
}

// traceLen is how many packets the flight recorder keeps.
const traceLen = 48

// packetTrace is a flight recorder of the last packets either way, so
// that a stream that ended oddly can be told from its last packets even
// after it left the stream table.
type packetTrace struct {
	n    uint64 // packets recorded so far
	last [traceLen]tracedPacket
}

type tracedPacket struct {
	toGuest bool
	h       header
}

func (t *packetTrace) add(toGuest bool, h *header) {
	t.last[t.n%traceLen] = tracedPacket{toGuest: toGuest, h: *h}
	t.n++
}

func (t *packetTrace) format(b *strings.Builder) {
	if t.n == 0 {
		return
	}
	first := t.n - min(t.n, traceLen)
	fmt.Fprintf(b, "\n  last %d of %d packets (host port:guest port):", t.n-first, t.n)
	for i := first; i < t.n; i++ {
		p := &t.last[i%traceLen]
		dir, local, peer := "<-", p.h.dstPort, p.h.srcPort
		if p.toGuest {
			dir, local, peer = "->", p.h.srcPort, p.h.dstPort
		}
		fmt.Fprintf(b, "\n    #%d %d%s%d %s len %d flags %#x buf_alloc %d fwd_cnt %d",
			i, local, dir, peer, opName(p.h.op), p.h.len, p.h.flags, p.h.bufAlloc, p.h.fwdCnt)
	}
}

// watchdogPeriod is how often the worker looks for a stall; a waiting
// stream is probed after probeAfter periods without movement, long
// enough that a guest merely busy with a request rarely looks stalled.
const (
	watchdogPeriod  = time.Second
	probeAfter      = 10
	lostKickPeriods = 2
	quietReport     = 60 // periods: when a waiting stream's state is logged
)

// watchdog notices a device that stopped moving, in two cases.
//
// The guest made tx packets available and lostKickPeriods whole periods
// passed without a pass of the worker: a lost notification, always a bug. The watchdog
// runs the pass, counts a rescue (DebugState's rescues), and logs the
// state it found.
//
// A stream waits (a Read for the guest's data, a Write for its credit,
// a packet for an rx buffer) and nothing moved for probeAfter periods: perhaps a
// guest that is busy or does not read, perhaps an interrupt the guest
// missed. The watchdog raises one interrupt, which a driver takes in its
// stride if all is well, and counts a probe; if things move within the
// next period it counts a probe hit and logs the state it found. A stream
// that stays idle gets one probe per stall, no more.
type watchdog struct {
	last   progressMark
	still  int  // periods without movement while a stream waited
	probed bool // this stall got its interrupt
	// txWaited counts the ticks in a row at which the guest's tx
	// packets waited for the device with no pass in between.
	txWaited int
	state    string // DebugState when it was probed
}

// progressMark changes whenever a packet moves either way or a stream's
// counters change.
type progressMark struct {
	txPopped, rxPopped, txUsed, rxUsed uint16
	passes                             uint64
	bytes                              uint32
}

// check runs on every tick; it reports whether the worker should run a
// pass now.
func (g *watchdog) check(w *worker) bool {
	d := w.d
	d.memMu.Lock()
	d.mu.Lock()
	var mark progressMark
	mark.txPopped, mark.txUsed = w.tx.Progress()
	mark.rxPopped, mark.rxUsed = w.rx.Progress()
	mark.passes = d.passCount.Load()
	lostKick := w.tx.Pending() && len(d.replies) < maxReplies
	waiting := len(d.ready) > 0 || len(d.replies) > 0
	for _, c := range d.conns {
		mark.bytes += c.txCnt + c.fwdCnt + c.peerFwdCnt + uint32(c.rx.len())
		if len(c.pending) > 0 || (c.readWaiting && c.rx.len() == 0 && c.state == stateEstablished) {
			waiting = true
		}
	}
	d.mu.Unlock()
	d.memMu.Unlock()

	moved := mark != g.last
	if moved && g.probed && g.still == probeAfter {
		d.probeHits.Add(1)
		d.log.Info("virtio-vsock: a stalled stream moved again right after the watchdog's interrupt: a missed interrupt, or a guest that was busy", "state", g.state)
	}
	if lostKick && mark.passes == g.last.passes {
		g.txWaited++
	} else if lostKick {
		g.txWaited = 1
	} else {
		g.txWaited = 0
	}
	if g.txWaited > lostKickPeriods {
		// The guest's packets waited lostKickPeriods whole periods
		// and no pass ran.
		d.rescueCount.Add(1)
		d.log.Warn("virtio-vsock: the guest's packets waited seconds for the device: a lost notification; the watchdog ran the device", "state", d.DebugState())
		*g = watchdog{last: mark}
		return true
	}
	if moved || !waiting {
		*g = watchdog{last: mark, txWaited: g.txWaited}
		return false
	}
	g.still++
	if g.still == quietReport {
		// Often a command that prints nothing for a minute; if not,
		// this is the state a stall report needs.
		d.log.Info("virtio-vsock: nothing has moved for a minute while a stream waits", "state", d.DebugState())
	}
	if g.still == probeAfter && !g.probed {
		// The interrupt alone: a pass would count as movement.
		g.state, g.probed = d.DebugState(), true
		d.probes.Add(1)
		d.irqCount.Add(1)
		w.act.Interrupt()
	}
	return false
}

// Rescues reports how many times the watchdog found the guest's packets
// waiting a whole period for the device: each is a lost notification, a
// bug somewhere between the guest's kick and the worker.
func (d *Device) Rescues() uint64 { return d.rescueCount.Load() }
