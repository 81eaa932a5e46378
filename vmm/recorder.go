package vmm

import (
	"fmt"
	"strings"

	"github.com/pyro-mcp/pyro/kvm"
)

// exitRecorder keeps a vCPU's last few exits, so that a crash whose
// register state is lost (AMD re-initialises a vCPU after a triple fault)
// still says what the guest was last doing with its devices. One vCPU
// goroutine owns it; recording costs a few stores per exit.
type exitRecorder struct {
	ring [recorderSize]exitRecord
	n    uint64 // exits recorded
}

const recorderSize = 16

type exitRecord struct {
	reason kvm.ExitReason
	addr   uint64 // port or guest-physical address
	size   uint8
	write  bool
}

func (r *exitRecorder) add(e exitRecord) {
	r.ring[r.n%recorderSize] = e
	r.n++
}

// String lists the recorded exits, oldest first.
func (r *exitRecorder) String() string {
	if r.n == 0 {
		return "no exits yet"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last %d of %d exits:", min(r.n, recorderSize), r.n)
	for i := r.n - min(r.n, recorderSize); i < r.n; i++ {
		e := r.ring[i%recorderSize]
		b.WriteString(" ")
		switch e.reason {
		case kvm.ExitIO, kvm.ExitMMIO:
			dir := "r"
			if e.write {
				dir = "w"
			}
			fmt.Fprintf(&b, "%v:%s%d@%#x", e.reason, dir, e.size, e.addr)
		default:
			b.WriteString(e.reason.String())
		}
	}
	return b.String()
}
