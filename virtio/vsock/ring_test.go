package vsock

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
)

// The receive ring against a plain slice, through growth and wrap-around.
func TestRing(t *testing.T) {
	const limit = 10000
	r := rand.New(rand.NewPCG(1, 2))
	var q ring
	var ref []byte
	next := byte(0)
	for i := 0; i < 20000; i++ {
		if r.IntN(2) == 0 {
			n := r.IntN(3000)
			if q.len()+n > limit {
				continue
			}
			data := make([]byte, n)
			for k := range data {
				data[k] = next
				next++
			}
			cut := r.IntN(n + 1)
			q.write([]virtio.Buffer{data[:cut], data[cut:]}, n, limit)
			ref = append(ref, data...)
		} else {
			b := make([]byte, r.IntN(4000))
			n := q.read(b)
			want := min(len(b), len(ref))
			if n != want || !bytes.Equal(b[:n], ref[:n]) {
				t.Fatalf("step %d: read %d bytes, want %d", i, n, want)
			}
			ref = ref[n:]
		}
		if q.len() != len(ref) || len(q.buf) > limit {
			t.Fatalf("step %d: %d buffered in %d, want %d", i, q.len(), len(q.buf), len(ref))
		}
	}
}
