package disk

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzTmp is where FuzzStack makes its stacks: /dev/shm when it is a
// writable tmpfs, where creating files is about ten times cheaper than on a
// disk, else the test's temporary directory. The model checks logic, not
// durability, so tmpfs loses nothing.
func fuzzTmp() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}

// FuzzStack runs a byte string as a program of operations on a small stack
// (its last cluster short, its base ending mid-cluster before the disk
// does) and checks every step against the model: reads, the whole disk, the
// layer tree, Checkout and DeleteLayer, reopening, and what a crash would
// leave.
//
// Each operation is 4 bytes: an opcode and three operand bytes.
func FuzzStack(f *testing.F) {
	f.Add([]byte("\x00\x10\x00\x80\x03\x00\x00\x00\x04\x00\x00\x00\x01\x20\x01\x20\x05\x00\x00\x00\x08\x00\x00\x00"))
	f.Add([]byte("\x09\x01\x00\x02\x04\x00\x00\x00\x06\x00\x10\x40\x02\x00\x00\xff\x07\x00\x00\x00\x05\x01\x00\x00"))
	// Branches: freeze, checkout the base, write, freeze, checkout the
	// first, delete the second, checkout the base, cut back.
	f.Add([]byte("\x00\x10\x00\x80\x04\x00\x00\x00\x0b\x00\x00\x00\x00\x00\x20\x40\x04\x00\x00\x00\x0b\x00\x00\x01\x0c\x00\x00\x01\x0c\x00\x00\x00\x0b\x00\x00\x00\x07\x00\x00\x00\x05\x00\x00\x00"))
	f.Add([]byte("\x01\xff\xff\xff\x00\x7f\x00\x40\x08\x00\x00\x00\x04\x00\x00\x00\x09\x06\x00\x01\x05\x02\x00\x00\x0a\x00\x00\x00"))
	f.Fuzz(fuzzBody)
}

const (
	fuzzBase = 5*ClusterSize + 512
	fuzzSize = 7*ClusterSize + 1536
	fuzzSpan = fuzzSize + 2*ClusterSize // offsets reach past the end
)

func fuzzBody(t *testing.T, prog []byte) {
	if len(prog) > 4*64 {
		prog = prog[:4*64]
	}
	m := newModel(t, fuzzTmp(), fuzzBase, fuzzSize, 1)
	for i := 0; i+4 <= len(prog); i += 4 {
		op, a, b := prog[i], int64(binary.LittleEndian.Uint16(prog[i+1:]))%fuzzSpan, int64(prog[i+3])
		n := b * 67 // up to about 4 clusters
		switch op % 13 {
		case 0, 1:
			m.write(a, fill(int(n), byte(i)))
		case 2:
			m.read(a, int(n))
		case 3:
			m.flush()
		case 4:
			if len(m.frozen) < 8 {
				m.freeze("f")
			}
		case 5:
			m.cutBack(int(b)%(len(m.frozen)+2) - 1)
		case 6:
			m.zero(a, n, b&1 == 0)
		case 7:
			m.reopen()
		case 8:
			m.crash()
		case 9: // whole clusters
			m.write(a/ClusterSize*ClusterSize, fill(int(b%4+1)*ClusterSize, byte(i)))
		case 10:
			m.write(a-int64(prog[i+3]), fill(int(n)%ClusterSize, byte(i))) // negative offsets too
		case 11:
			m.checkout(int(b)%(len(m.frozen)+2) - 1)
		case 12:
			m.deleteLayer(int(b) % (len(m.frozen) + 1))
		}
		m.check()
	}
	m.crash()
}
