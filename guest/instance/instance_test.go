package instance

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/vmm"
)

func TestCmdline(t *testing.T) {
	c := Cmdline("ws-1")
	for _, want := range []string{"console=ttyS0", "pyro.root=/dev/vda", "pyro.rootfstype=ext4", " rw ", "pyro.hostname=ws-1", "pyro.agent_port=52"} {
		if !strings.Contains(c, want) {
			t.Errorf("command line %q lacks %q", c, want)
		}
	}
	if !strings.Contains(Cmdline(""), "pyro.hostname=pyro") {
		t.Errorf("default hostname missing: %q", Cmdline(""))
	}
}

func TestValidHostname(t *testing.T) {
	for _, h := range []string{"", "pyro", "debian-12", "A1", strings.Repeat("a", 63)} {
		if err := validHostname(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{"-x", "a b", "a=b", "x;reboot", "é", strings.Repeat("a", 64), "a\x00"} {
		if err := validHostname(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	if _, err := Start(t.Context(), Config{}); err == nil || !strings.Contains(err.Error(), "no environment") {
		t.Errorf("no env: %v", err)
	}
}

// An agent that takes the clock request and never answers costs the start
// the clock timeout, not the caller's whole context (the workspace's
// lifecycle lock is held meanwhile).
func TestSetClockIsBounded(t *testing.T) {
	var mu sync.Mutex
	var ends []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range ends {
			c.Close()
		}
	})
	c := &proto.Client{Dial: func(context.Context) (net.Conn, error) {
		host, guest := net.Pipe()
		mu.Lock()
		ends = append(ends, guest) // read nothing, answer nothing
		mu.Unlock()
		return host, nil
	}}
	err := setClock(t.Context(), c, 50*time.Millisecond) // t.Context() never ends during the test
	if err == nil || !strings.Contains(err.Error(), "did not answer within 50ms") {
		t.Fatalf("err = %v", err)
	}
}

// A panic in the VM's run loop becomes that VM's error; the process goes
// on.
func TestRunRecovered(t *testing.T) {
	res, err := runRecovered(func() (vmm.Result, error) { panic("injected run bug") })
	var pe *virtio.PanicError
	if res.Reason != vmm.StopCrash || !errors.As(err, &pe) || pe.Value != "injected run bug" {
		t.Fatalf("res %v, err %v", res.Reason, err)
	}
}
