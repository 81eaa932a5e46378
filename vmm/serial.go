package vmm

import (
	"io"
	"sync"
)

// Serial is a 16550A-compatible UART (the "8250" Linux drives as ttyS0) at
// I/O ports base..base+7, enough for a console: transmit, receive, the
// interrupt identification the driver probes for, and the loopback test
// Linux runs at boot to confirm a UART is present.
//
// Register map (DLAB = LCR bit 7):
//
//	+0  RBR (read) / THR (write) / DLL (DLAB)
//	+1  IER / DLM (DLAB)
//	+2  IIR (read) / FCR (write)
//	+3  LCR   +4 MCR   +5 LSR   +6 MSR   +7 SCR
type Serial struct {
	// mu guards every field below and serialises the output writer.
	mu  sync.Mutex
	out io.Writer
	irq func() // raises the UART's interrupt line (edge)

	ier, lcr, mcr, scr, dll, dlm byte
	thrEmptyPending              bool
	rx                           []byte
}

// UART register offsets and bits.
const (
	uartData = 0
	uartIER  = 1
	uartIIR  = 2
	uartLCR  = 3
	uartMCR  = 4
	uartLSR  = 5
	uartMSR  = 6
	uartSCR  = 7

	ierRDI  = 1 << 0 // received data available
	ierTHRI = 1 << 1 // transmitter holding register empty

	iirNone     = 0x01
	iirTHRI     = 0x02
	iirRDI      = 0x04
	iirFIFOsOn  = 0xc0
	lcrDLAB     = 1 << 7
	lsrDR       = 1 << 0
	lsrTHRE     = 1 << 5
	lsrTEMT     = 1 << 6
	mcrDTR      = 1 << 0
	mcrRTS      = 1 << 1
	mcrOUT1     = 1 << 2
	mcrOUT2     = 1 << 3
	mcrLoop     = 1 << 4
	msrCTS      = 1 << 4
	msrDSR      = 1 << 5
	msrRI       = 1 << 6
	msrDCD      = 1 << 7
	serialRxMax = 4096
)

// NewSerial returns a UART that writes what the guest transmits to out and
// calls irq to raise its interrupt.
func NewSerial(out io.Writer, irq func()) *Serial {
	if irq == nil {
		irq = func() {}
	}
	return &Serial{out: out, irq: irq, mcr: mcrOUT2, dll: 0x0c /* 9600 baud */}
}

// Read handles a guest IN from register off.
func (s *Serial) Read(off uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := byte(0)
	switch off {
	case uartData:
		if s.lcr&lcrDLAB != 0 {
			v = s.dll
		} else if len(s.rx) > 0 {
			v, s.rx = s.rx[0], s.rx[1:]
		}
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			v = s.dlm
		} else {
			v = s.ier
		}
	case uartIIR:
		v = iirFIFOsOn | s.pendingInterrupt()
		if v&0x0f == iirTHRI {
			s.thrEmptyPending = false // reading IIR acknowledges THRE
		}
	case uartLCR:
		v = s.lcr
	case uartMCR:
		v = s.mcr
	case uartLSR:
		v = lsrTHRE | lsrTEMT
		if len(s.rx) > 0 {
			v |= lsrDR
		}
	case uartMSR:
		if s.mcr&mcrLoop != 0 {
			// Loopback: the modem outputs feed the modem inputs.
			if s.mcr&mcrRTS != 0 {
				v |= msrCTS
			}
			if s.mcr&mcrDTR != 0 {
				v |= msrDSR
			}
			if s.mcr&mcrOUT1 != 0 {
				v |= msrRI
			}
			if s.mcr&mcrOUT2 != 0 {
				v |= msrDCD
			}
		} else {
			v = msrDCD | msrDSR | msrCTS
		}
	case uartSCR:
		v = s.scr
	}
	for i := range data {
		data[i] = v
	}
}

// Write handles a guest OUT to register off.
func (s *Serial) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch off {
	case uartData:
		if s.lcr&lcrDLAB != 0 {
			s.dll = v
			return
		}
		if s.mcr&mcrLoop != 0 {
			s.receiveLocked([]byte{v})
		} else if s.out != nil {
			s.out.Write([]byte{v})
		}
		// The byte left at once: the holding register is empty again.
		s.thrEmptyPending = true
		s.updateIRQ()
	case uartIER:
		if s.lcr&lcrDLAB != 0 {
			s.dlm = v
			return
		}
		was := s.ier
		s.ier = v & 0x0f
		if s.ier&ierTHRI != 0 && was&ierTHRI == 0 {
			// Enabling THRE interrupts with an empty holding register
			// raises one at once; Linux relies on it to start sending.
			s.thrEmptyPending = true
		}
		s.updateIRQ()
	case uartLCR:
		s.lcr = v
	case uartMCR:
		s.mcr = v & 0x1f
	case uartSCR:
		s.scr = v
	}
}

// Receive queues input for the guest, as if typed on the serial line.
func (s *Serial) Receive(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.receiveLocked(p)
}

func (s *Serial) receiveLocked(p []byte) {
	n := min(len(p), serialRxMax-len(s.rx))
	s.rx = append(s.rx, p[:n]...)
	s.updateIRQ()
}

func (s *Serial) pendingInterrupt() byte {
	switch {
	case s.ier&ierRDI != 0 && len(s.rx) > 0:
		return iirRDI
	case s.ier&ierTHRI != 0 && s.thrEmptyPending:
		return iirTHRI
	}
	return iirNone
}

func (s *Serial) updateIRQ() {
	if s.pendingInterrupt() != iirNone {
		s.irq()
	}
}
