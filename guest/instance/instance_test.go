package instance

import (
	"strings"
	"testing"
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
