package vmm

import (
	"bytes"
	"testing"
)

func TestSerialLinuxProbe(t *testing.T) {
	s := NewSerial(nil, nil)
	rd := func(off uint64) byte { b := []byte{0}; s.Read(off, b); return b[0] }
	wr := func(off uint64, v byte) { s.Write(off, []byte{v}) }
	// The 8250 driver's autoconfig: IER read-back...
	wr(uartIER, 0)
	if rd(uartIER) != 0 {
		t.Fatal("IER not cleared")
	}
	wr(uartIER, 0x0f)
	if rd(uartIER)&0x0f != 0x0f {
		t.Fatal("IER does not hold its value")
	}
	wr(uartIER, 0)
	// ...the scratch register...
	wr(uartSCR, 0xa5)
	if rd(uartSCR) != 0xa5 {
		t.Fatal("scratch register")
	}
	// ...and the loopback test: modem outputs appear on the modem inputs.
	wr(uartMCR, mcrLoop|0x0a)
	if got := rd(uartMSR) & 0xf0; got != 0x90 {
		t.Fatalf("loopback MSR %#x, want 0x90", got)
	}
	wr(uartMCR, mcrLoop|0x0f)
	if got := rd(uartMSR) & 0xf0; got != 0xf0 {
		t.Fatalf("loopback MSR %#x, want 0xf0", got)
	}
	// In loopback, transmitted bytes come back as received data.
	wr(uartData, 'x')
	if rd(uartLSR)&lsrDR == 0 || rd(uartData) != 'x' || rd(uartLSR)&lsrDR != 0 {
		t.Fatal("loopback data path")
	}
	wr(uartMCR, mcrOUT2)
	// DLAB switches the first two registers to the divisor latch.
	wr(uartLCR, lcrDLAB)
	wr(uartData, 0x01)
	wr(uartIER, 0x02)
	if rd(uartData) != 1 || rd(uartIER) != 2 {
		t.Fatal("divisor latch")
	}
	wr(uartLCR, 0x03)
	if rd(uartIER) != 0 {
		t.Fatal("divisor write leaked into IER")
	}
}

func TestSerialTransmitAndInterrupts(t *testing.T) {
	var out bytes.Buffer
	irqs := 0
	s := NewSerial(&out, func() { irqs++ })
	rd := func(off uint64) byte { b := []byte{0}; s.Read(off, b); return b[0] }
	wr := func(off uint64, v byte) { s.Write(off, []byte{v}) }
	if rd(uartIIR)&0x0f != iirNone || rd(uartLSR)&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatal("idle UART state")
	}
	wr(uartData, 'h')
	if irqs != 0 {
		t.Fatal("interrupt raised with IER clear")
	}
	wr(uartIER, ierTHRI)
	if irqs != 1 || rd(uartIIR)&0x0f != iirTHRI {
		t.Fatalf("enabling THRE interrupts: %d irqs", irqs)
	}
	if rd(uartIIR)&0x0f != iirNone {
		t.Fatal("reading IIR did not acknowledge THRE")
	}
	wr(uartData, 'i')
	if irqs != 2 || out.String() != "hi" {
		t.Fatalf("after transmit: %d irqs, output %q", irqs, out.String())
	}
	wr(uartIER, ierTHRI|ierRDI)
	s.Receive([]byte("ok"))
	if rd(uartIIR)&0x0f != iirRDI || rd(uartData) != 'o' || rd(uartData) != 'k' {
		t.Fatal("receive path")
	}
	// Input beyond the buffer is dropped, not grown without bound.
	s.Receive(make([]byte, 2*serialRxMax))
	if len(s.rx) != serialRxMax {
		t.Fatalf("rx buffer %d bytes", len(s.rx))
	}
}

func TestBus(t *testing.T) {
	var b Bus
	s := NewSerial(nil, nil)
	if err := b.Add("a", 0x3f8, 8, s); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]uint64{{0x3f0, 9}, {0x3ff, 1}, {0x3fa, 2}, {0, 0}, {^uint64(0), 2}} {
		if err := b.Add("b", r[0], r[1], s); err == nil {
			t.Errorf("range %#x+%d accepted", r[0], r[1])
		}
	}
	if err := b.Add("c", 0x400, 1, s); err != nil {
		t.Fatal(err)
	}
	b.Write(0x3f8+uartSCR, []byte{0x42})
	d := []byte{0}
	b.Read(0x3f8+uartSCR, d)
	if d[0] != 0x42 {
		t.Fatal("dispatch by offset")
	}
	d = []byte{0, 0}
	b.Read(0x80, d)
	if d[0] != 0xff || d[1] != 0xff || b.Unhandled() != 1 {
		t.Fatalf("unclaimed port read %x, %d unhandled", d, b.Unhandled())
	}
}

func TestConsoleLogTail(t *testing.T) {
	var out bytes.Buffer
	c := &consoleLog{out: &out}
	for i := 0; i < consoleTailLines+5; i++ {
		c.Write([]byte("line\r\n"))
	}
	c.Write([]byte("partial"))
	c.Flush()
	tail := c.Tail()
	if len(tail) != consoleTailLines || tail[len(tail)-1] != "partial" || tail[0] != "line" {
		t.Fatalf("tail %q", tail)
	}
	if out.Len() != (consoleTailLines+5)*6+7 {
		t.Fatalf("console passed %d bytes", out.Len())
	}
}
