package net

import (
	"encoding/binary"
	"fmt"
)

// Feature bits (§5.1.3).
const (
	VIRTIO_NET_F_CSUM       = 0
	VIRTIO_NET_F_GUEST_CSUM = 1
	VIRTIO_NET_F_MTU        = 3
	VIRTIO_NET_F_MAC        = 5
	VIRTIO_NET_F_GUEST_TSO4 = 7
	VIRTIO_NET_F_GUEST_TSO6 = 8
	VIRTIO_NET_F_GUEST_ECN  = 9
	VIRTIO_NET_F_GUEST_UFO  = 10
	VIRTIO_NET_F_HOST_TSO4  = 11
	VIRTIO_NET_F_HOST_TSO6  = 12
	VIRTIO_NET_F_HOST_ECN   = 13
	VIRTIO_NET_F_HOST_UFO   = 14
	VIRTIO_NET_F_MRG_RXBUF  = 15
	VIRTIO_NET_F_STATUS     = 16
	VIRTIO_NET_F_CTRL_VQ    = 17
	VIRTIO_NET_F_MQ         = 22
)

// virtio_net_hdr flags and gso_type values (§5.1.6).
const (
	VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
	VIRTIO_NET_HDR_F_DATA_VALID = 2

	VIRTIO_NET_HDR_GSO_NONE  = 0
	VIRTIO_NET_HDR_GSO_TCPV4 = 1
	VIRTIO_NET_HDR_GSO_UDP   = 3
	VIRTIO_NET_HDR_GSO_TCPV6 = 4
	VIRTIO_NET_HDR_GSO_ECN   = 0x80
)

// VIRTIO_NET_S_LINK_UP is the link bit of the configuration's status.
const VIRTIO_NET_S_LINK_UP = 1

// HeaderSize is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1,
// which always carries num_buffers (§5.1.6.1):
//
//	u8   flags        @0
//	u8   gso_type     @1
//	le16 hdr_len      @2
//	le16 gso_size     @4
//	le16 csum_start   @6
//	le16 csum_offset  @8
//	le16 num_buffers  @10
const HeaderSize = 12

// GSOType is the segmentation a frame asks for.
type GSOType uint8

// GSO types the device carries. UDP fragmentation offload (UFO) and ECN
// are neither offered nor accepted.
const (
	GSONone  GSOType = VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 GSOType = VIRTIO_NET_HDR_GSO_TCPV4
	GSOTCPv6 GSOType = VIRTIO_NET_HDR_GSO_TCPV6
)

func (g GSOType) String() string {
	switch g {
	case GSONone:
		return "none"
	case GSOTCPv4:
		return "tcpv4"
	case GSOTCPv6:
		return "tcpv6"
	}
	return fmt.Sprintf("gso(%d)", uint8(g))
}

// Header is a frame's offload metadata: the virtio_net_hdr without
// num_buffers, which only the device uses. Offsets count from the first
// byte of the Ethernet header.
type Header struct {
	// NeedsCsum: the frame's L4 checksum is partial. The 16-bit field at
	// CsumStart+CsumOffset holds the folded pseudo-header sum, and the
	// checksum is the ones' complement of the sum of everything from
	// CsumStart to the end of the frame (Linux's CHECKSUM_PARTIAL).
	NeedsCsum bool
	// DataValid: the sender vouches for the checksums (received frames
	// only; tcpip's RXChecksumOffload).
	DataValid  bool
	CsumStart  uint16
	CsumOffset uint16
	// GSO, when not GSONone, makes the frame a TCP super-segment to be cut
	// into GSOSize-byte segments of payload after HdrLen bytes of headers.
	// NeedsCsum is then set too. HdrLen from the guest is a hint only
	// (§5.1.6.2: the device must not trust it).
	GSO     GSOType
	GSOSize uint16
	HdrLen  uint16
}

// parseHeader reads a virtio_net_hdr at named offsets.
func parseHeader(b []byte) (h Header, flags, gsoType uint8) {
	le := binary.LittleEndian
	flags, gsoType = b[0], b[1]
	h = Header{
		NeedsCsum:  flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0,
		DataValid:  flags&VIRTIO_NET_HDR_F_DATA_VALID != 0,
		GSO:        GSOType(gsoType),
		HdrLen:     le.Uint16(b[2:]),
		GSOSize:    le.Uint16(b[4:]),
		CsumStart:  le.Uint16(b[6:]),
		CsumOffset: le.Uint16(b[8:]),
	}
	return h, flags, gsoType
}

// putHeader writes h and numBuffers as a virtio_net_hdr into b.
func putHeader(b []byte, h Header, numBuffers uint16) {
	le := binary.LittleEndian
	var flags uint8
	if h.NeedsCsum {
		flags |= VIRTIO_NET_HDR_F_NEEDS_CSUM
	}
	if h.DataValid {
		flags |= VIRTIO_NET_HDR_F_DATA_VALID
	}
	b[0], b[1] = flags, uint8(h.GSO)
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[10:], numBuffers)
}

// completeChecksum finishes a partial checksum in frame as the guest
// would have, for a guest that did not accept VIRTIO_NET_F_GUEST_CSUM. It
// reports false when the offsets do not fit the frame.
func completeChecksum(frame []byte, start, offset uint16) bool {
	field := int(start) + int(offset)
	if int(start) > len(frame) || field+2 > len(frame) {
		return false
	}
	var sum uint32
	b := frame[start:]
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	if c == 0 {
		c = 0xffff // the same value in ones' complement, and what UDP needs
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return true
}
