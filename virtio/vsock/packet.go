package vsock

import "encoding/binary"

// The packet header (virtio 1.2 §5.10.6), 44 bytes, little endian:
//
//	struct virtio_vsock_hdr {
//		le64 src_cid;    //  0
//		le64 dst_cid;    //  8
//		le32 src_port;   // 16
//		le32 dst_port;   // 20
//		le32 len;        // 24  payload bytes after the header
//		le16 type;       // 28  VIRTIO_VSOCK_TYPE_*
//		le16 op;         // 30  VIRTIO_VSOCK_OP_*
//		le32 flags;      // 32  VIRTIO_VSOCK_SHUTDOWN_* for OP_SHUTDOWN
//		le32 buf_alloc;  // 36  sender's receive buffer for this stream
//		le32 fwd_cnt;    // 40  bytes the sender's application has consumed
//	};
//
// The guest writes headers we read, so they are parsed at these named
// offsets into a value, never overlaid on guest memory.
const (
	hdrSrcCID   = 0
	hdrDstCID   = 8
	hdrSrcPort  = 16
	hdrDstPort  = 20
	hdrLenField = 24
	hdrType     = 28
	hdrOp       = 30
	hdrFlags    = 32
	hdrBufAlloc = 36
	hdrFwdCnt   = 40

	// HeaderSize is the size of struct virtio_vsock_hdr.
	HeaderSize = 44
)

// Feature bits (§5.10.3).
const (
	VIRTIO_VSOCK_F_STREAM    = 0
	VIRTIO_VSOCK_F_SEQPACKET = 1 // not offered
)

// Socket types (§5.10.6.2).
const (
	VIRTIO_VSOCK_TYPE_STREAM    = 1
	VIRTIO_VSOCK_TYPE_SEQPACKET = 2 // not supported
)

// Operations (§5.10.6).
const (
	VIRTIO_VSOCK_OP_INVALID        = 0
	VIRTIO_VSOCK_OP_REQUEST        = 1
	VIRTIO_VSOCK_OP_RESPONSE       = 2
	VIRTIO_VSOCK_OP_RST            = 3
	VIRTIO_VSOCK_OP_SHUTDOWN       = 4
	VIRTIO_VSOCK_OP_RW             = 5
	VIRTIO_VSOCK_OP_CREDIT_UPDATE  = 6
	VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7
)

// Shutdown flags (§5.10.6.5), as masks: bits VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE
// (0) and VIRTIO_VSOCK_SHUTDOWN_F_SEND (1). Linux calls them
// VIRTIO_VSOCK_SHUTDOWN_RCV and VIRTIO_VSOCK_SHUTDOWN_SEND.
const (
	VIRTIO_VSOCK_SHUTDOWN_RCV  = 1
	VIRTIO_VSOCK_SHUTDOWN_SEND = 2
	shutdownBoth               = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND
)

// Events (§5.10.6.7): struct virtio_vsock_event { le32 id; }.
const (
	VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0
	eventSize                          = 4
)

// Well-known CIDs (§5.10.4).
const (
	VMADDR_CID_HYPERVISOR = 0
	VMADDR_CID_LOCAL      = 1
	VMADDR_CID_HOST       = 2
	VMADDR_CID_ANY        = 0xffffffff
	VMADDR_PORT_ANY       = 0xffffffff
)

// maxPayload bounds one packet's payload in either direction; it is
// Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, the most its driver ever sends.
const maxPayload = 64 << 10

// header is a parsed struct virtio_vsock_hdr.
type header struct {
	srcCID, dstCID   uint64
	srcPort, dstPort uint32
	len              uint32
	typ, op          uint16
	flags            uint32
	bufAlloc, fwdCnt uint32
}

// parseHeader reads a header from the first HeaderSize bytes of b.
func parseHeader(b []byte) header {
	le := binary.LittleEndian
	_ = b[HeaderSize-1]
	return header{
		srcCID:   le.Uint64(b[hdrSrcCID:]),
		dstCID:   le.Uint64(b[hdrDstCID:]),
		srcPort:  le.Uint32(b[hdrSrcPort:]),
		dstPort:  le.Uint32(b[hdrDstPort:]),
		len:      le.Uint32(b[hdrLenField:]),
		typ:      le.Uint16(b[hdrType:]),
		op:       le.Uint16(b[hdrOp:]),
		flags:    le.Uint32(b[hdrFlags:]),
		bufAlloc: le.Uint32(b[hdrBufAlloc:]),
		fwdCnt:   le.Uint32(b[hdrFwdCnt:]),
	}
}

// encode writes h into the first HeaderSize bytes of b.
func (h *header) encode(b []byte) {
	le := binary.LittleEndian
	_ = b[HeaderSize-1]
	le.PutUint64(b[hdrSrcCID:], h.srcCID)
	le.PutUint64(b[hdrDstCID:], h.dstCID)
	le.PutUint32(b[hdrSrcPort:], h.srcPort)
	le.PutUint32(b[hdrDstPort:], h.dstPort)
	le.PutUint32(b[hdrLenField:], h.len)
	le.PutUint16(b[hdrType:], h.typ)
	le.PutUint16(b[hdrOp:], h.op)
	le.PutUint32(b[hdrFlags:], h.flags)
	le.PutUint32(b[hdrBufAlloc:], h.bufAlloc)
	le.PutUint32(b[hdrFwdCnt:], h.fwdCnt)
}

// opName names an operation for logs.
func opName(op uint16) string {
	switch op {
	case VIRTIO_VSOCK_OP_REQUEST:
		return "REQUEST"
	case VIRTIO_VSOCK_OP_RESPONSE:
		return "RESPONSE"
	case VIRTIO_VSOCK_OP_RST:
		return "RST"
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		return "SHUTDOWN"
	case VIRTIO_VSOCK_OP_RW:
		return "RW"
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		return "CREDIT_UPDATE"
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		return "CREDIT_REQUEST"
	}
	return "INVALID"
}
