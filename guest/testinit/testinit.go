// Package testinit builds the smallest useful guest: an initramfs whose
// /init (a busybox shell script) prints a marker line with the CPUs the
// kernel brought up, then powers the VM off.
//
// It is what the VMM's end-to-end tests, its boot benchmark and `make demo`
// boot: it proves the kernel reached user space, saw every vCPU, and that
// ACPI poweroff ends the VM, with nothing else in the way.
package testinit

import (
	"fmt"
	"io"
	"regexp"
	"strconv"

	"github.com/pyro-mcp/pyro/guest/initramfs"
)

// Marker starts the line /init prints.
const Marker = "PYRO-INIT-MARKER"

const script = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "` + Marker + ` cpus=$(/bin/busybox nproc) online=$(/bin/busybox cat /sys/devices/system/cpu/online)"
/bin/busybox poweroff -f
`

// Write writes the initramfs to w, taking the static busybox binary from
// the host path busybox.
func Write(w io.Writer, busybox string) error {
	a := initramfs.NewWriter(w)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp"} {
		a.Dir(d, 0o755)
	}
	a.CharDev("/dev/console", 0o600, 5, 1)
	a.AddHost("/bin/busybox", busybox)
	a.File("/init", 0o755, []byte(script))
	return a.Close()
}

var lineRE = regexp.MustCompile(Marker + ` cpus=(\d+) online=(\S+)`)

// Parse finds the marker line in console output and returns the CPU count
// and the online-CPU list ("0-1") it reports.
func Parse(console string) (cpus int, online string, err error) {
	m := lineRE.FindStringSubmatch(console)
	if m == nil {
		return 0, "", fmt.Errorf("no %s line on the console", Marker)
	}
	cpus, err = strconv.Atoi(m[1])
	return cpus, m[2], err
}
