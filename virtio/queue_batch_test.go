package virtio_test

import (
	"encoding/binary"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
)

// PushBatch writes every element before it moves used.idx, once, by the
// batch's length, wrapping the ring; a head outside the queue or a batch
// larger than it is refused and publishes nothing.
func TestPushBatch(t *testing.T) {
	mem := virtiotest.NewMemory(1 << 16)
	q := &virtio.Queue{MaxSize: 8, Size: 8, Ready: true, DescAddr: 0x1000, AvailAddr: 0x2000, UsedAddr: 0x3000}
	if err := virtio.ActivateForTest(q, mem, false); err != nil {
		t.Fatal(err)
	}
	usedIdx := func() uint16 { return binary.LittleEndian.Uint16(mem.B[0x3002:]) }
	elem := func(i uint16) (uint32, uint32) {
		b := mem.B[0x3004+8*uint64(i%8):]
		return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	}
	for round := uint16(0); round < 5; round++ { // 5 × 3 wraps the 8-entry ring
		base := usedIdx()
		irq, err := q.PushBatch([]virtio.UsedElement{{ID: 1, Len: 10}, {ID: 2, Len: 20}, {ID: 3, Len: 30}})
		if err != nil || !irq {
			t.Fatalf("round %d: irq %v, err %v", round, irq, err)
		}
		if got := usedIdx(); got != base+3 {
			t.Fatalf("round %d: used.idx %d, want %d", round, got, base+3)
		}
		for i := uint16(0); i < 3; i++ {
			if id, l := elem(base + i); id != uint32(i+1) || l != 10*uint32(i+1) {
				t.Fatalf("round %d element %d: {%d %d}", round, i, id, l)
			}
		}
	}
	before := usedIdx()
	if _, err := q.PushBatch([]virtio.UsedElement{{ID: 1}, {ID: 8}}); err == nil {
		t.Fatal("head 8 in a queue of 8 accepted")
	}
	if _, err := q.PushBatch(make([]virtio.UsedElement, 9)); err == nil {
		t.Fatal("9 elements in a queue of 8 accepted")
	}
	if usedIdx() != before {
		t.Fatal("a refused batch moved used.idx")
	}
}
