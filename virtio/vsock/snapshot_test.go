package vsock

import (
	"bytes"
	"io"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
)

// pauseAndSave pauses the guest's transport and returns its state,
// through its encoding.
func pauseAndSave(t *testing.T, g *guest) *virtio.TransportState {
	t.Helper()
	if err := g.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	s, err := g.drv.MMIO.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back virtio.TransportState
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &back
}

// fork stops g and returns it as a guest restored from a snapshot onto
// dev sees itself: a copy of its memory, the same ring state, sockets
// and listeners, and a new transport, into which it restores s. The
// device is left paused and the guest's loop stopped: start runs both.
func (g *guest) fork(dev *Device, s *virtio.TransportState) *guest {
	g.t.Helper()
	g.halt()
	n := &guest{
		t: g.t, dev: dev, cid: g.cid, o: g.o,
		irq:  make(chan struct{}, 1),
		wake: make(chan struct{}, 1),
		rng:  rand.New(rand.NewPCG(g.o.seed, 8)),
	}
	n.cond = sync.NewCond(&n.mu)
	n.drv = g.drv.Fork(dev)
	n.drv.MMIO = virtio.NewMMIO(dev, n.drv.Mem, n.interrupt, nil)
	n.rxq, n.txq, n.evq = n.drv.Queues[rxQueue], n.drv.Queues[txQueue], n.drv.Queues[eventQueue]
	n.rx, n.rxByHead, n.txAddr, n.evAddr = g.rx, g.rxByHead, g.txAddr, g.evAddr
	n.txFree = append([]uint16(nil), g.txFree...)
	n.txChains = maps.Clone(g.txChains)
	g.mu.Lock()
	n.socks = make(map[gkey]*gsock)
	for k, s := range g.socks {
		c := *s
		c.g = n
		n.socks[k] = &c
	}
	n.listeners, n.blackhole = maps.Clone(g.listeners), maps.Clone(g.blackhole)
	n.out, n.events, n.ops = append([]gpacket(nil), g.out...), append([]uint32(nil), g.events...), maps.Clone(g.ops)
	n.rsts, n.nextPort = append([]header(nil), g.rsts...), g.nextPort
	g.mu.Unlock()
	n.t.Cleanup(func() {
		n.halt()
		dev.Close()
		n.drv.MMIO.Close()
	})
	if err := n.drv.MMIO.RestoreState(s); err != nil {
		n.t.Fatal(err)
	}
	return n
}

// start resumes the device, then the guest's loop, as a VMM resumes
// devices before vCPUs.
func (g *guest) start() {
	g.t.Helper()
	if err := g.drv.MMIO.Resume(); err != nil {
		g.t.Fatal(err)
	}
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go g.loop(g.stop, g.done)
}

// sock returns the guest's socket for host port host and guest port
// local, as the guest now has it.
func (g *guest) sock(local, host uint32) *gsock {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.socks[gkey{local, host}]
}

func TestSnapshotRestoreIntoNewDevice(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(map[bool]string{false: "flags", true: "event-idx"}[eventIdx], func(t *testing.T) {
			dev, g := setup(t, Options{}, guestOpts{eventIdx: eventIdx})
			agent := g.listen(1000)
			c := dial(t, dev, 1000)
			s := g.accept(agent)
			if _, err := c.Write([]byte("before")); err != nil {
				t.Fatal(err)
			}
			if got := s.readN(6); string(got) != "before" {
				t.Fatalf("guest read %q", got)
			}

			// Paused, the guest still sends: the packet waits in the
			// tx ring, for a stream the new device will not know.
			if err := g.drv.MMIO.Pause(); err != nil {
				t.Fatal(err)
			}
			s.write([]byte("into the snapshot"))
			s.waitState("the packet published", func(s *gsock) bool { return len(s.out) == 0 && len(s.g.out) == 0 })
			state := pauseAndSave(t, g)
			if state.Queues[txQueue].LastAvail == uint16(g.txq.Size) {
				t.Fatal("unexpected tx index")
			}

			dev2, err := New(testCID, Options{})
			if err != nil {
				t.Fatal(err)
			}
			g2 := g.fork(dev2, state)
			if g2.sock(s.local, s.peer) == nil {
				t.Fatal("the guest lost its socket in the fork")
			}
			g2.start()

			// The guest hears of the reset, and its stale packet is
			// answered with RST.
			g2.mu.Lock()
			g2.waitLocked("the transport reset event", func() bool {
				for _, e := range g2.events {
					if e == VIRTIO_VSOCK_EVENT_TRANSPORT_RESET {
						return true
					}
				}
				return false
			})
			g2.mu.Unlock()
			if !g2.waitRst(c.LocalAddr().(Addr).Port, s.local) {
				t.Fatal("no RST for the packet left in the tx ring")
			}
			if g2.sock(s.local, s.peer) != nil {
				t.Fatal("the guest's connected socket survived the reset")
			}

			// The guest's listener survived: the host dials its agent
			// again, and the guest reaches the host.
			c2 := dial(t, dev2, 1000)
			s2 := g2.accept(agent)
			go echo(s2)
			msg := bytes.Repeat([]byte("after the restore "), 1000)
			go c2.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c2, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo after restore: %v", err)
			}
			hs, hc := guestConnect(t, dev2, g2, 2000)
			hs.write([]byte("guest to host"))
			buf := make([]byte, 13)
			if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "guest to host" {
				t.Fatalf("guest connection after restore: %q %v", buf, err)
			}
			c2.Close()
			hc.Close()
		})
	}
}

func TestPauseResumeKeepsStreams(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	agent := g.listen(1000)
	c := dial(t, dev, 1000)
	s := g.accept(agent)
	// A stream queued to send with nothing to send leaves the worker
	// holding an rx buffer it popped for it: Pause must hand it back.
	dev.mu.Lock()
	idle := dev.newConnLocked(5000, 5000, stateEstablished)
	dev.markReadyLocked(idle)
	dev.mu.Unlock()
	dev.wake()
	eventually(t, "the worker to hold a spare rx buffer", func() bool {
		return strings.Contains(dev.DebugState(), "spare true")
	})
	if err := g.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	if st := dev.DebugState(); !strings.Contains(st, "paused true") || !strings.Contains(st, "spare false") {
		t.Fatalf("after Pause: %s", st)
	}
	st, err := g.drv.MMIO.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range st.Queues[:2] {
		if q.LastAvail != q.UsedIdx {
			t.Errorf("queue %d: popped %d, returned %d: the rings do not describe the device", i, q.LastAvail, q.UsedIdx)
		}
	}

	// Both sides write while the device is paused; the host's Write
	// waits for it.
	msg := randomBytes(300<<10, 1)
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		wrote <- err
	}()
	s.write([]byte("sent while paused"))
	if streamCount(dev) != 2 {
		t.Fatalf("%d streams while paused", streamCount(dev))
	}
	if err := g.drv.MMIO.Resume(); err != nil {
		t.Fatal(err)
	}
	if got := s.readN(len(msg)); !bytes.Equal(got, msg) {
		t.Fatal("the host's write was not delivered whole across the pause")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 17)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "sent while paused" {
		t.Fatalf("host read %q, %v", buf, err)
	}
	dev.mu.Lock()
	dev.removeLocked(idle)
	dev.mu.Unlock()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a clean close", func() bool { return streamCount(dev) == 0 })
}

func TestResetWhilePaused(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	agent := g.listen(1000)
	c := dial(t, dev, 1000)
	g.accept(agent)
	g.halt()
	if err := g.drv.MMIO.Pause(); err != nil {
		t.Fatal(err)
	}
	g.drv.SetReg(virtio.Status, 0) // a reboot while paused must not hang
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a stream survived the reset")
	}
	g.drv.MMIO.Resume()
	g.boot()
	c2 := dial(t, dev, 1000)
	s2 := g.accept(agent)
	go echo(s2)
	c2.Write([]byte("x"))
	if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}
