package vsock

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A guest whose notifications get lost still gets its data through: the
// watchdog notices the stalled stream, runs the worker, counts a rescue and
// logs the state it found.
func TestWatchdogRescuesLostKick(t *testing.T) {
	var lose atomic.Bool
	var logs syncBuffer
	dev, g := setup(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, guestOpts{loseKicks: &lose})
	l, err := dev.Listen(2100)
	if err != nil {
		t.Fatal(err)
	}
	s := g.connect(2100)
	if !s.connected {
		t.Fatal("guest connect was refused")
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n := dev.rescueCount.Load(); n != 0 {
		t.Fatalf("rescues before any loss: %d", n)
	}

	lose.Store(true)
	// Let the worker finish the passes the handshake started: one still
	// running would take the packet without a notification.
	time.Sleep(200 * time.Millisecond)
	s.write([]byte("after a lost kick"))
	got := make([]byte, len("after a lost kick"))
	c.SetReadDeadline(time.Now().Add(10 * watchdogPeriod))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "after a lost kick" {
		t.Fatalf("host read %q, %v: the watchdog did not move the stalled queue\n%s", got, err, dev.DebugState())
	}
	if n := dev.Rescues(); n != 1 {
		t.Fatalf("%d rescues, want 1\n%s", n, dev.DebugState())
	}
	if !strings.Contains(logs.String(), "lost notification") || !strings.Contains(logs.String(), "stream 2:2100->5:") {
		t.Errorf("the rescue's log line lacks the diagnosis or the state:\n%s", logs.String())
	}
	if st := dev.DebugState(); !strings.Contains(st, "rescues 1 ") || !strings.Contains(st, "tx queue(size 64") {
		t.Errorf("DebugState: %s", st)
	}
}

// An idle stream, or one whose peer does not read, gets one probe per
// stall and is never counted as a rescue.
func TestWatchdogLeavesIdleStreamsAlone(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	s, c := guestConnect(t, dev, g, 2101)
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	time.Sleep((probeAfter + 3) * watchdogPeriod)
	irqs := dev.irqCount.Load()
	time.Sleep(3 * watchdogPeriod)
	if n := dev.irqCount.Load(); n != irqs {
		t.Errorf("an idle stream kept getting interrupts: %d then %d", irqs, n)
	}
	s.write([]byte("x"))
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if n := dev.rescueCount.Load(); n != 0 {
		t.Errorf("an idle stream was counted as %d rescues", n)
	}
	if n := dev.probes.Load(); n != 1 {
		t.Errorf("an idle stream got %d probes, want 1", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// DebugState's flight recorder keeps the last packets each way, the
// stream's own after it left the table: its handshake, its data and its
// close.
func TestDebugStateTrace(t *testing.T) {
	dev, g := setup(t, Options{}, guestOpts{})
	s, c := guestConnect(t, dev, g, 2102)
	s.write([]byte("hello"))
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	s.shutdown(VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(dev.DebugState(), "SHUTDOWN") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := dev.DebugState()
	for _, want := range []string{"2102<-", " REQUEST len 0", "2102->", " RESPONSE len 0", " RW len 5 ", " SHUTDOWN len 0 flags 0x3"} {
		if !strings.Contains(st, want) {
			t.Errorf("DebugState lacks %q:\n%s", want, st)
		}
	}
	// A long stream's packets push the oldest out.
	for range traceLen {
		dev.mu.Lock()
		dev.trace.add(true, &header{op: VIRTIO_VSOCK_OP_CREDIT_UPDATE, srcPort: 9, dstPort: 9})
		dev.mu.Unlock()
	}
	if st := dev.DebugState(); strings.Contains(st, "REQUEST") || !strings.Contains(st, fmt.Sprintf("last %d of ", traceLen)) {
		t.Errorf("after %d more packets:\n%s", traceLen, st)
	}
}
