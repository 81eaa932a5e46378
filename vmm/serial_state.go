package vmm

import (
	"encoding/binary"
	"fmt"
)

// The UART's state in a snapshot (SaveState, RestoreState): what the guest
// programmed and what it has not read yet. Version 1, 10 bytes and the
// receive buffer:
//
//	0  version (1)
//	1  IER  2  LCR  3  MCR  4  SCR  5  DLL  6  DLM
//	7  flags: bit 0 a THRE interrupt is pending (not yet acknowledged)
//	8  u16 little-endian length of the receive buffer, at most serialRxMax
//	10 the receive buffer: input the guest has not read
//
// The output writer and the interrupt line are the restoring VMM's own,
// not state.
const (
	serialStateVersion = 1
	serialStateHdr     = 10
	serialStateTHRE    = 1 << 0
)

// SaveState returns the UART's state (see above) for a snapshot.
func (s *Serial) SaveState() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := make([]byte, serialStateHdr, serialStateHdr+len(s.rx))
	b[0] = serialStateVersion
	b[1], b[2], b[3], b[4], b[5], b[6] = s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm
	if s.thrEmptyPending {
		b[7] |= serialStateTHRE
	}
	binary.LittleEndian.PutUint16(b[8:], uint16(len(s.rx)))
	return append(b, s.rx...)
}

// RestoreState sets the UART's state to one SaveState returned. It checks
// the whole blob first and on error leaves the UART as it was. It raises no
// interrupt: one the saved UART had raised is part of the interrupt
// controller's saved state.
func (s *Serial) RestoreState(b []byte) error {
	if len(b) < serialStateHdr {
		return fmt.Errorf("serial state: %d bytes, want at least %d", len(b), serialStateHdr)
	}
	if b[0] != serialStateVersion {
		return fmt.Errorf("serial state: version %d, want %d", b[0], serialStateVersion)
	}
	ier, lcr, mcr, scr, dll, dlm, flags := b[1], b[2], b[3], b[4], b[5], b[6], b[7]
	n := int(binary.LittleEndian.Uint16(b[8:]))
	switch {
	case ier&^0x0f != 0:
		return fmt.Errorf("serial state: IER %#x has bits a guest cannot set", ier)
	case mcr&^0x1f != 0:
		return fmt.Errorf("serial state: MCR %#x has bits a guest cannot set", mcr)
	case flags&^serialStateTHRE != 0:
		return fmt.Errorf("serial state: unknown flags %#x", flags)
	case n > serialRxMax:
		return fmt.Errorf("serial state: receive buffer of %d bytes, at most %d", n, serialRxMax)
	case len(b) != serialStateHdr+n:
		return fmt.Errorf("serial state: %d bytes, want %d for a %d-byte receive buffer", len(b), serialStateHdr+n, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm = ier, lcr, mcr, scr, dll, dlm
	s.thrEmptyPending = flags&serialStateTHRE != 0
	s.rx = append([]byte(nil), b[serialStateHdr:]...)
	return nil
}
