package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// bootTiming is one boot: time from process start to the init marker on the
// console, and to the process's exit after the guest powered off.
type bootTiming struct{ init, poweroff time.Duration }

// timeBoot runs cmd, which boots the marker initramfs with its console on
// stdout, and times it.
func timeBoot(b *testing.B, cmd *exec.Cmd) bootTiming {
	b.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var t bootTiming
	var console strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if t.init == 0 && strings.Contains(sc.Text(), initMarker) {
			t.init = time.Since(start)
		}
		console.WriteString(sc.Text() + "\n")
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	t.poweroff = time.Since(start)
	if err != nil || t.init == 0 {
		b.Fatalf("%s: %v (marker seen: %v)\nconsole:\n%s\nstderr:\n%s", cmd.Path, err, t.init != 0, console.String(), stderr.String())
	}
	return t
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkBootVsQEMU boots the Debian cloud kernel with the marker
// initramfs through pyro run and through QEMU's microvm machine on the same
// KVM, alternating, and reports the medians and their ratios. Under the
// nested-KVM harness only the ratio means anything: absolute times there are
// 20 to 25 times slower than on real hardware.
//
//	make bench   (runs it with -benchtime 5x: five boots of each)
func BenchmarkBootVsQEMU(b *testing.B) {
	kvmtest.RequireStockKernels(b)
	kernel := kvmtest.Path(b, "PYRO_TEST_KERNEL")
	initrd := markerInitramfs(b)
	qemu, qerr := exec.LookPath("qemu-system-x86_64")
	if qerr != nil {
		b.Logf("no qemu-system-x86_64 (%v): measuring pyro alone", qerr)
	}
	cmdline := "console=ttyS0 quiet loglevel=1 reboot=acpi panic=-1"
	var pyro, ref []bootTiming
	for b.Loop() {
		c := exec.Command(os.Args[0], "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline+" pci=off",
			"--vcpus", "1", "--mem-mib", "256", "--console", "--timeout", "300s", "--quiet")
		c.Env = append(os.Environ(), "PYRO_TEST_AS_PYRO=1")
		pyro = append(pyro, timeBoot(b, c))
		if qerr == nil {
			c = exec.Command(qemu, "-accel", "kvm", "-M", "microvm", "-cpu", "host", "-m", "256", "-smp", "1",
				"-no-user-config", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
				"-kernel", kernel, "-initrd", initrd, "-append", cmdline)
			ref = append(ref, timeBoot(b, c))
		}
	}
	b.StopTimer()
	get := func(ts []bootTiming, init bool) []time.Duration {
		var out []time.Duration
		for _, t := range ts {
			out = append(out, map[bool]time.Duration{true: t.init, false: t.poweroff}[init])
		}
		return out
	}
	pInit, pOff := median(get(pyro, true)), median(get(pyro, false))
	b.ReportMetric(ms(pInit), "pyro-init-ms")
	b.ReportMetric(ms(pOff), "pyro-poweroff-ms")
	report := fmt.Sprintf("%d boots each; medians: pyro run: init %.0f ms, poweroff %.0f ms", len(pyro), ms(pInit), ms(pOff))
	if len(ref) > 0 {
		qInit, qOff := median(get(ref, true)), median(get(ref, false))
		b.ReportMetric(ms(qInit), "qemu-init-ms")
		b.ReportMetric(ms(qOff), "qemu-poweroff-ms")
		b.ReportMetric(float64(pInit)/float64(qInit), "init-ratio")
		b.ReportMetric(float64(pOff)/float64(qOff), "poweroff-ratio")
		report += fmt.Sprintf("; qemu microvm: init %.0f ms, poweroff %.0f ms; pyro/qemu: init %.2f, poweroff %.2f",
			ms(qInit), ms(qOff), float64(pInit)/float64(qInit), float64(pOff)/float64(qOff))
	}
	b.Log(report)
	for i := range pyro {
		line := fmt.Sprintf("run %d: pyro init %.0f ms poweroff %.0f ms", i+1, ms(pyro[i].init), ms(pyro[i].poweroff))
		if i < len(ref) {
			line += fmt.Sprintf("; qemu init %.0f ms poweroff %.0f ms", ms(ref[i].init), ms(ref[i].poweroff))
		}
		b.Log(line)
	}
}
