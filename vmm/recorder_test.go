package vmm

import (
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm"
)

func TestExitRecorder(t *testing.T) {
	var r exitRecorder
	if got := r.String(); got != "no exits yet" {
		t.Fatalf("empty: %q", got)
	}
	for i := range 20 {
		r.add(exitRecord{reason: kvm.ExitMMIO, addr: uint64(0x1000 + i), size: 4, write: i%2 == 1})
	}
	r.add(exitRecord{reason: kvm.ExitIO, addr: 0x3f8, size: 1, write: true})
	got := r.String()
	if !strings.HasPrefix(got, "last 16 of 21 exits:") {
		t.Fatalf("header: %q", got)
	}
	// The oldest kept is the 6th (0x1005); the newest the port write.
	if !strings.Contains(got, "@0x1005") || strings.Contains(got, "@0x1004") || !strings.HasSuffix(got, "w1@0x3f8") {
		t.Fatalf("ring order: %q", got)
	}
}
