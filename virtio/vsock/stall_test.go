package vsock

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// Guest → host streams under tight credit: a small host buffer, a small
// queue, guest packets of any size up to the credit, and a host reader
// that takes odd amounts with pauses. Every byte must arrive; a lost
// credit update or wake-up shows as a read that times out.
func TestStressGuestToHost(t *testing.T) {
	for _, bs := range []int{7, 100, 4096} {
		for _, qs := range []uint16{4, 16} {
			t.Run(fmt.Sprintf("buf=%d/q=%d", bs, qs), func(t *testing.T) {
				dev, g := setup(t, Options{BufferSize: bs}, guestOpts{qsize: qs, txMax: maxPayload, bufAlloc: 2048, seed: uint64(bs) + uint64(qs)})
				ln := g.listen(3300)
				rng := rand.New(rand.NewPCG(uint64(bs), uint64(qs)))
				for round := 0; round < 5; round++ {
					c := dial(t, dev, 3300)
					s := g.accept(ln)
					data := randomBytes(1+rng.IntN(16<<10), uint64(round))
					back := randomBytes(1+rng.IntN(8<<10), uint64(round)+100)
					s.write(data)
					s.shutdown(VIRTIO_VSOCK_SHUTDOWN_SEND)
					wdone := make(chan error, 1)
					go func() { _, err := c.Write(back); wdone <- err }()
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					var got bytes.Buffer
					buf := make([]byte, 7919)
					for {
						n, err := c.Read(buf[:1+rng.IntN(len(buf))])
						got.Write(buf[:n])
						if err == io.EOF {
							break
						}
						if err != nil {
							g.mu.Lock()
							t.Logf("guest: txCnt %d peerFwdCnt %d peerBufAlloc %d out %d gout %d txFree %d", s.txCnt, s.peerFwdCnt, s.peerBufAlloc, len(s.out), len(g.out), len(g.txFree))
							g.mu.Unlock()
							dev.mu.Lock()
							t.Fatalf("round %d: read after %d of %d bytes: %v (fwdCnt %d lastFwdSent %d sendCredit %v queued %v buffered %d)",
								round, got.Len(), len(data), err, c.fwdCnt, c.lastFwdSent, c.sendCredit, c.queued, c.rx.len())
						}
						if rng.IntN(8) == 0 {
							time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
						}
					}
					if !bytes.Equal(got.Bytes(), data) {
						t.Fatalf("round %d: data differs", round)
					}
					if rb := s.readN(len(back)); !bytes.Equal(rb, back) {
						t.Fatalf("round %d: host → guest data differs", round)
					}
					if err := <-wdone; err != nil {
						t.Fatal(err)
					}
					c.Close()
				}
			})
		}
	}
}
