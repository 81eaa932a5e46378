package vmm

import (
	"bytes"
	"testing"
)

func serialIO(s *Serial) (rd func(off uint64) byte, wr func(off uint64, v byte)) {
	rd = func(off uint64) byte { b := []byte{0}; s.Read(off, b); return b[0] }
	wr = func(off uint64, v byte) { s.Write(off, []byte{v}) }
	return rd, wr
}

// busySerial is a UART the guest has programmed away from every default:
// a divisor, 7E2 framing, loopback, interrupts on, input waiting and a THRE
// interrupt not yet acknowledged.
func busySerial(t *testing.T) *Serial {
	t.Helper()
	s := NewSerial(nil, nil)
	rd, wr := serialIO(s)
	wr(uartLCR, lcrDLAB)
	wr(uartData, 0x01)
	wr(uartIER, 0x02)
	wr(uartLCR, 0x0e)
	wr(uartMCR, mcrLoop|mcrOUT2|mcrRTS)
	wr(uartSCR, 0x5a)
	wr(uartIER, ierRDI|ierTHRI)
	wr(uartData, 'x') // loops back into rx
	s.Receive([]byte("input"))
	if rd(uartLSR)&lsrDR == 0 || !s.thrEmptyPending {
		t.Fatal("setting up the UART")
	}
	return s
}

func TestSerialStateRoundTrip(t *testing.T) {
	s := busySerial(t)
	b := s.SaveState()
	if len(b) != serialStateHdr+6 {
		t.Fatalf("state of %d bytes", len(b))
	}
	r := NewSerial(nil, nil)
	if err := r.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	if r.ier != s.ier || r.lcr != s.lcr || r.mcr != s.mcr || r.scr != s.scr || r.dll != s.dll || r.dlm != s.dlm ||
		r.thrEmptyPending != s.thrEmptyPending || string(r.rx) != "xinput" {
		t.Fatalf("restored %+v\nsaved %+v", r, s)
	}
	if !bytes.Equal(r.SaveState(), b) {
		t.Fatal("state changed in the round trip")
	}
	// The restored UART owns its buffer.
	b[serialStateHdr] = 'y'
	if r.rx[0] != 'x' {
		t.Fatal("restored receive buffer aliases the blob")
	}
	// A fresh UART's state round-trips too.
	f := NewSerial(nil, nil)
	if err := r.RestoreState(f.SaveState()); err != nil || !bytes.Equal(r.SaveState(), f.SaveState()) {
		t.Fatalf("default state: %v", err)
	}
}

// TestSerialRestoredAnswersAlike drives a saved UART and its restored copy
// the same way and checks that the guest would see the same registers.
func TestSerialRestoredAnswersAlike(t *testing.T) {
	for _, setup := range []struct {
		name string
		f    func(s *Serial)
	}{
		{"busy", func(*Serial) {}},
		{"dlab", func(s *Serial) { s.Write(uartLCR, []byte{lcrDLAB | 0x03}) }},
		{"thre only", func(s *Serial) { s.Write(uartMCR, []byte{mcrOUT2}); s.Write(uartIER, []byte{ierTHRI}); s.rx = nil }},
		{"rx only", func(s *Serial) { s.thrEmptyPending = false }},
	} {
		s := busySerial(t)
		setup.f(s)
		var irqs int
		r := NewSerial(nil, func() { irqs++ })
		if err := r.RestoreState(s.SaveState()); err != nil {
			t.Fatal(err)
		}
		if irqs != 0 {
			t.Errorf("%s: restoring raised an interrupt", setup.name)
		}
		srd, _ := serialIO(s)
		rrd, _ := serialIO(r)
		// Read every register until the input is drained and the
		// interrupts acknowledged: IIR and LSR reads change state, so
		// both UARTs must move in step.
		for round := 0; round < 10; round++ {
			for off := uint64(0); off < 8; off++ {
				if a, b := srd(off), rrd(off); a != b {
					t.Fatalf("%s: round %d: register %d reads %#x saved, %#x restored", setup.name, round, off, a, b)
				}
			}
		}
		if len(r.rx) != 0 && r.lcr&lcrDLAB == 0 {
			t.Errorf("%s: input left after draining", setup.name)
		}
		// The restored UART raises its own interrupt line.
		r.Write(uartLCR, []byte{0x03})
		r.Write(uartIER, []byte{ierRDI})
		r.Receive([]byte("z"))
		if irqs == 0 || rrd(uartIIR)&0x0f != iirRDI {
			t.Errorf("%s: restored UART does not interrupt on input", setup.name)
		}
	}
}

func TestSerialRestoreRejects(t *testing.T) {
	good := busySerial(t).SaveState()
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	long := make([]byte, serialStateHdr+serialRxMax+1)
	long[0], long[8], long[9] = serialStateVersion, byte((serialRxMax+1)&0xff), byte((serialRxMax+1)>>8)
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short header":  good[:serialStateHdr-1],
		"version 0":     edit(func(b []byte) []byte { b[0] = 0; return b }),
		"version 2":     edit(func(b []byte) []byte { b[0] = 2; return b }),
		"IER high bits": edit(func(b []byte) []byte { b[1] |= 0x10; return b }),
		"MCR high bits": edit(func(b []byte) []byte { b[3] |= 0x20; return b }),
		"unknown flag":  edit(func(b []byte) []byte { b[7] |= 2; return b }),
		"cut rx":        good[:len(good)-1],
		"extra byte":    append(append([]byte(nil), good...), 0),
		"rx too long":   long,
	} {
		s := NewSerial(nil, nil)
		s.Write(uartSCR, []byte{0x77})
		before := s.SaveState()
		if err := s.RestoreState(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if !bytes.Equal(s.SaveState(), before) {
			t.Errorf("%s: a rejected state changed the UART", name)
		}
	}
	// The largest receive buffer is accepted.
	full := make([]byte, serialStateHdr+serialRxMax)
	full[0], full[8], full[9] = serialStateVersion, byte(serialRxMax&0xff), byte(serialRxMax>>8)
	if err := NewSerial(nil, nil).RestoreState(full); err != nil {
		t.Fatal(err)
	}
}

// FuzzSerialRestore: any blob is either rejected or restores a UART that
// saves back the same bytes and that the guest can drive without a panic or
// an unbounded buffer.
func FuzzSerialRestore(f *testing.F) {
	f.Add(NewSerial(nil, nil).SaveState(), []byte{uartIIR, uartLSR})
	s := NewSerial(nil, nil)
	s.Write(uartIER, []byte{ierRDI | ierTHRI})
	s.Receive([]byte("abc"))
	f.Add(s.SaveState(), []byte{uartData, uartIIR, 0x80 | uartData, 0x80 | uartLCR})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, []byte{})
	f.Fuzz(func(t *testing.T, b, ops []byte) {
		s := NewSerial(nil, nil)
		if err := s.RestoreState(b); err != nil {
			if !bytes.Equal(s.SaveState(), NewSerial(nil, nil).SaveState()) {
				t.Fatal("a rejected state changed the UART")
			}
			return
		}
		if !bytes.Equal(s.SaveState(), b) {
			t.Fatalf("saved % x, restored from % x", s.SaveState(), b)
		}
		// Each op: bit 7 write (the next byte is the value), else read;
		// bits 0-2 the register; 0x40 input arrives instead.
		for i := 0; i < len(ops); i++ {
			op := ops[i]
			switch {
			case op&0x40 != 0:
				s.Receive(bytes.Repeat([]byte{op}, int(op)))
			case op&0x80 != 0 && i+1 < len(ops):
				i++
				s.Write(uint64(op&7), []byte{ops[i]})
			default:
				s.Read(uint64(op&7), []byte{0})
			}
			if len(s.rx) > serialRxMax {
				t.Fatalf("receive buffer of %d bytes", len(s.rx))
			}
		}
		if err := NewSerial(nil, nil).RestoreState(s.SaveState()); err != nil {
			t.Fatalf("a driven UART's state does not restore: %v", err)
		}
	})
}
