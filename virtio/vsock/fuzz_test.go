package vsock

import (
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
)

// fuzzDevice is a device with a listener on port 1234, an established
// guest stream 5000 → 1234 with a host Write pending on it, and a host
// stream 1024 → 80 waiting for the guest's RESPONSE.
func fuzzDevice(t *testing.T) (*Device, *Conn) {
	d, err := New(testCID, Options{MaxConns: 4, BufferSize: 4096, Backlog: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Listen(1234); err != nil {
		t.Fatal(err)
	}
	d.handleTx([]virtio.Buffer{encodePacket(fuzzHeader(5000, 1234, VIRTIO_VSOCK_OP_REQUEST, 8192, 0), nil)})
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.conns[connKey{1234, 5000}]
	if c == nil {
		t.Fatal("no stream from the guest's REQUEST")
	}
	c.pending = make([]byte, 10000)
	d.markReadyLocked(c)
	d.newConnLocked(1024, 80, stateConnecting) // REQUEST sent
	return d, c
}

func fuzzHeader(src, dst uint32, op uint16, bufAlloc, fwdCnt uint32) header {
	return header{srcCID: testCID, dstCID: VMADDR_CID_HOST, srcPort: src, dstPort: dst,
		typ: VIRTIO_VSOCK_TYPE_STREAM, op: op, bufAlloc: bufAlloc, fwdCnt: fwdCnt}
}

// FuzzTxPacket feeds arbitrary bytes to the device as two tx packets, the
// first split across up to three buffers at the given points, then drains
// everything the device wants to send. It must not panic, must keep its
// state within its bounds, and must send only well-formed packets within
// the guest's credit.
func FuzzTxPacket(f *testing.F) {
	rw := fuzzHeader(5000, 1234, VIRTIO_VSOCK_OP_RW, 8192, 0)
	f.Add(encodePacket(rw, []byte("hello")), uint16(44), uint16(46), encodePacket(fuzzHeader(5000, 1234, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 8192, 0), nil))
	f.Add(encodePacket(fuzzHeader(6000, 1234, VIRTIO_VSOCK_OP_REQUEST, 100, 0), nil), uint16(10), uint16(30), encodePacket(fuzzHeader(80, 1024, VIRTIO_VSOCK_OP_RESPONSE, 3000, 0), nil))
	f.Add(encodePacket(fuzzHeader(5000, 1234, VIRTIO_VSOCK_OP_SHUTDOWN, 8192, 0), nil), uint16(0), uint16(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, pkt []byte, cut1, cut2 uint16, next []byte) {
		d, c := fuzzDevice(t)
		a := min(int(cut1), len(pkt))
		b := min(max(int(cut2), a), len(pkt))
		d.handleTx([]virtio.Buffer{pkt[:a], pkt[a:b], pkt[b:]})
		d.handleTx([]virtio.Buffer{next})

		buf := make([]byte, HeaderSize+4096)
		for i := 0; ; i++ {
			if i == 1000 {
				t.Fatal("the device keeps producing packets")
			}
			d.mu.Lock()
			credit := c.creditLocked()
			n, ok := d.produceLocked([]virtio.Buffer{buf[:17], buf[17:]})
			d.mu.Unlock()
			if !ok {
				break
			}
			h := parseHeader(buf)
			if n < HeaderSize || n > len(buf) || int(h.len) != n-HeaderSize || h.dstCID != testCID {
				t.Fatalf("produced %d bytes: %+v", n, h)
			}
			if h.op != VIRTIO_VSOCK_OP_RST && (h.srcCID != VMADDR_CID_HOST || h.typ != VIRTIO_VSOCK_TYPE_STREAM) {
				t.Fatalf("produced %+v", h)
			}
			if h.op == VIRTIO_VSOCK_OP_RW && (h.srcPort != 1234 || h.dstPort != 5000 || h.len > credit) {
				t.Fatalf("RW of %d bytes with %d of credit: %+v", h.len, credit, h)
			}
		}

		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.conns) > d.maxConns || len(d.replies) > maxReplies {
			t.Fatalf("%d streams, %d replies", len(d.conns), len(d.replies))
		}
		ports := 0
		for k, c := range d.conns {
			ports++
			if c.state == stateGone || k != (connKey{c.local.Port, c.remote.Port}) {
				t.Fatalf("stream %v in state %d", k, c.state)
			}
			if c.rx.len() > int(d.bufSize) || len(c.rx.buf) > int(d.bufSize) {
				t.Fatalf("stream %v holds %d bytes in %d", k, c.rx.len(), len(c.rx.buf))
			}
		}
		used := 0
		for _, n := range d.ports {
			used += n
		}
		if used != ports {
			t.Fatalf("port counts %d for %d streams", used, ports)
		}
	})
}
