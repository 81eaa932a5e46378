package testinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteHoldsInitAndBusybox(t *testing.T) {
	bb := filepath.Join(t.TempDir(), "busybox")
	os.WriteFile(bb, []byte("#!fake busybox"), 0o755)
	var buf bytes.Buffer
	if err := Write(&buf, bb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "bin/busybox", "dev/console", Marker, "poweroff -f", "#!fake busybox"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("archive lacks %q", want)
		}
	}
	if err := Write(&buf, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing busybox was accepted")
	}
}

// The script's marker line, run by a real shell, parses back.
func TestScriptOutputParses(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	s := strings.NewReplacer("/bin/busybox mount", "true", "/bin/busybox poweroff -f", "true",
		"$(/bin/busybox nproc)", "2", "$(/bin/busybox cat /sys/devices/system/cpu/online)", "0-1").Replace(script)
	out, err := exec.Command(sh, "-c", s).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cpus, online, err := Parse("noise\n" + string(out) + "more noise\n")
	if err != nil || cpus != 2 || online != "0-1" {
		t.Fatalf("parsed %d %q %v from %q", cpus, online, err, out)
	}
	if _, _, err := Parse("[ 1.0] reboot: Power down\n"); err == nil {
		t.Fatal("parsed a marker from a console without one")
	}
}
