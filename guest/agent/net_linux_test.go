package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteResolvConfKeepsTheUsersFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, old string
		exists    bool
		want      string // "" means resolvConf()
	}{
		{name: "missing"},
		{name: "env placeholder", old: "# pyro: the guest agent writes the name servers here when the workspace is granted a network.\n", exists: true},
		{name: "ours from the last boot", old: string(resolvConf()), exists: true},
		{name: "the user's", old: "nameserver 192.0.2.53\n", exists: true, want: "nameserver 192.0.2.53\n"},
		{name: "user removed the marker", old: "# written by hand\nnameserver 192.0.2.53\n", exists: true, want: "# written by hand\nnameserver 192.0.2.53\n"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		if c.exists {
			if err := os.WriteFile(p, []byte(c.old), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := writeResolvConf(p); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := c.want
		if want == "" {
			want = string(resolvConf())
		}
		if string(got) != want {
			t.Errorf("%s: resolv.conf = %q, want %q", c.name, got, want)
		}
	}
	if !strings.Contains(string(resolvConf()), "nameserver 10.0.2.2\n") {
		t.Errorf("resolvConf() = %q, want the gateway as name server", resolvConf())
	}
	// A symlink (a resolver daemon's file) is left alone.
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/nonexistent/stub-resolv.conf", link); err != nil {
		t.Fatal(err)
	}
	if err := writeResolvConf(link); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != "/nonexistent/stub-resolv.conf" {
		t.Errorf("symlinked resolv.conf replaced: %q, %v", target, err)
	}
}
