package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/debian"
)

// L1 runs under QEMU's TCG, which emulates the AMD SVM that L1's KVM uses to
// run L2. Debian 12's QEMU 7.2 does that badly. Measured here with the
// minimal environment's exec test in a loop (about 40 s of L2 work each):
// with two L1 vCPUs one run in five to seven failed, the L2 kernel dying of
// a fault loop on a per-CPU (%gs) access in interrupt entry, triple faulting
// amid interrupt acknowledgements, or going silent; with one L1 vCPU L1
// itself went idle for good within seconds of L2's first busy stream; with
// kvm-amd's vgif=0, L1's own kernel died of the same kind of fault loop (a
// stack guard hit in exc_page_fault). QEMU 10.0 ran 11 of 12 clean (the 12th
// a boot triple fault of L2), and whole CI runs still see an L2 guest die
// now and then (retry.go). What the dead guests look like, from pyro's vCPU
// reports (vmm.Machine.DebugVCPUs): a triple fault amid the virtio interrupt
// handler's status reads and acknowledgements (AMD resets the vCPU, so no
// registers), or a vCPU runnable with interrupts on, re-taking a page fault
// on an instruction fetch from valid module text (cr2 == rip, the same
// instruction in two boots): the L2 kernel finds the page present, returns,
// and faults again. Both come under heavy interrupt load (a stream of small
// writes: ten thousand packets). The fault loop is on a mapping the guest's
// own page tables hold valid, which no device model can bring about. An L2
// guest with 5-level paging hidden, KVM's paravirtual features off, or PCID
// off died the same way. L1's kvm-amd with npt=0 (shadow paging, no emulated
// nested paging) could not boot L2 at all. With all of that, THP off in L1
// and the vsock device batching tx interrupts, the loop lost L1 itself after
// five streams: L1's kernel looping on a page fault on its own per-CPU data
// inside svm_vcpu_run, until its stack ran out. So the harness wants at
// least minQEMUMajor: the host's QEMU when new enough, else the one the
// release's backports suite carries, unpacked into the assets directory
// (nothing is installed).
const minQEMUMajor = 10

// qemuInstall is an unpacked QEMU, recorded in ASSETS/qemu/qemu.json.
type qemuInstall struct {
	Version string   `json:"version"` // its Debian version
	Bin     string   `json:"bin"`     // qemu-system-x86_64, relative to the assets directory
	Data    []string `json:"data"`    // firmware directories for -L, absolute or relative
}

const qemuDirName = "qemu"

// qemuMajor returns the upstream major version in a Debian version
// ("1:10.0.2+ds-2~bpo12+1" is 10) or in `qemu-system-x86_64 --version`'s
// first line ("QEMU emulator version 7.2.22 (Debian ...)" is 7).
func qemuMajor(v string) (int, error) {
	if rest, ok := strings.CutPrefix(v, "QEMU emulator version "); ok {
		v = rest
	}
	if epoch, after, ok := strings.Cut(v, ":"); ok {
		if _, err := strconv.Atoi(epoch); err == nil {
			v = after
		}
	}
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("QEMU version %q: no major version", v)
	}
	return n, nil
}

// hostQEMU returns the host's qemu-system-x86_64 and its major version.
func hostQEMU(ctx context.Context) (string, int, error) {
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", 0, fmt.Errorf("%v: vmtest boots L1 with QEMU (apt-get install qemu-system-x86)", err)
	}
	out, err := exec.CommandContext(ctx, q, "--version").Output()
	if err != nil {
		return q, 0, fmt.Errorf("%s --version: %v", q, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	major, err := qemuMajor(line)
	return q, major, err
}

// ensureQEMU makes sure the harness has a QEMU of at least minQEMUMajor:
// the host's, or one unpacked from the backports suite into dir/qemu. A
// QEMU fetched before is kept (make clean fetches afresh). If neither is
// possible it warns and leaves the host's QEMU to be used.
func ensureQEMU(ctx context.Context, dir string) error {
	if _, major, err := hostQEMU(ctx); err == nil && major >= minQEMUMajor {
		logf("QEMU: the host's (version %d) is new enough for the harness", major)
		return nil
	}
	qdir := filepath.Join(dir, qemuDirName)
	if q, err := readQEMU(dir); err == nil {
		logf("QEMU %s for the harness in %s", q.Version, qdir)
		return nil
	}
	start := time.Now()
	q, err := fetchQEMU(ctx, dir)
	if err != nil {
		logf("WARNING: cannot fetch QEMU %d+ for the harness (%v); the host's older QEMU will run L1, "+
			"and its nested-SVM emulation crashes L2 guests now and then", minQEMUMajor, err)
		return nil
	}
	logf("QEMU %s for the harness ready in %s (%.1fs)", q.Version, qdir, time.Since(start).Seconds())
	return nil
}

// fetchQEMU unpacks qemu-system-x86 and its firmware from the release's
// backports suite.
func fetchQEMU(ctx context.Context, dir string) (*qemuInstall, error) {
	code, err := debian.Codename()
	if err != nil {
		return nil, err
	}
	qdir := filepath.Join(dir, qemuDirName)
	suite := code + "-backports"
	logf("QEMU: reading %s's package lists", suite)
	a, err := debian.Suite(ctx, filepath.Join(qdir, "apt"), suite)
	if err != nil {
		return nil, err
	}
	q := &qemuInstall{}
	roots := map[string]string{}
	for _, pkg := range []string{"qemu-system-x86", "qemu-system-data"} {
		_, ver, err := a.Resolve(ctx, pkg)
		if err != nil {
			return nil, err
		}
		if pkg == "qemu-system-x86" {
			major, err := qemuMajor(ver)
			if err != nil {
				return nil, err
			}
			if major < minQEMUMajor {
				return nil, fmt.Errorf("%s has qemu-system-x86 %s, older than %d", suite, ver, minQEMUMajor)
			}
			q.Version = ver
		}
		logf("fetching %s %s", pkg, ver)
		deb, err := a.Fetch(ctx, filepath.Join(qdir, "debs"), pkg, ver)
		if err != nil {
			return nil, err
		}
		root := filepath.Join(qdir, "root", strings.TrimSuffix(filepath.Base(deb), ".deb"))
		if _, err := os.Stat(root); err != nil {
			if err := debian.Extract(ctx, deb, root); err != nil {
				return nil, err
			}
		}
		roots[pkg] = root
	}
	bin := filepath.Join(roots["qemu-system-x86"], "usr", "bin", "qemu-system-x86_64")
	if q.Bin, err = filepath.Rel(dir, bin); err != nil {
		return nil, err
	}
	data, err := filepath.Rel(dir, filepath.Join(roots["qemu-system-data"], "usr", "share", "qemu"))
	if err != nil {
		return nil, err
	}
	// The firmware package links its BIOS images to SeaBIOS's files,
	// which the host's qemu-system-x86 brought along.
	q.Data = []string{data, "/usr/share/seabios", "/usr/share/qemu"}
	if out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("the unpacked %s does not run on this host: %v: %s", bin, err, strings.TrimSpace(string(out)))
	}
	b, _ := json.MarshalIndent(q, "", "  ")
	if err := writeAtomic(filepath.Join(qdir, "qemu.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return q, nil
}

// readQEMU loads dir/qemu/qemu.json and checks that its binary is there.
func readQEMU(dir string) (*qemuInstall, error) {
	b, err := os.ReadFile(filepath.Join(dir, qemuDirName, "qemu.json"))
	if err != nil {
		return nil, err
	}
	var q qemuInstall
	if err := json.Unmarshal(b, &q); err != nil {
		return nil, err
	}
	if q.Bin == "" || filepath.IsAbs(q.Bin) {
		return nil, errors.New("qemu.json: bad bin")
	}
	if _, err := os.Stat(filepath.Join(dir, q.Bin)); err != nil {
		return nil, err
	}
	return &q, nil
}

// harnessQEMU returns the QEMU to boot L1 with and the arguments that must
// come first (firmware directories): the one ensureQEMU unpacked into
// assets, else the host's, with a warning when that is too old.
func harnessQEMU(ctx context.Context, assets string) (string, []string, error) {
	if q, err := readQEMU(assets); err == nil {
		var pre []string
		for _, d := range q.Data {
			if !filepath.IsAbs(d) {
				d = filepath.Join(assets, d)
			}
			pre = append(pre, "-L", d)
		}
		return filepath.Join(assets, q.Bin), pre, nil
	}
	bin, major, err := hostQEMU(ctx)
	if bin == "" {
		return "", nil, err
	}
	if err == nil && major < minQEMUMajor {
		logf("WARNING: QEMU %d runs L1; its nested-SVM emulation crashes L2 guests now and then (run `vmtest assets` to fetch QEMU %d+)", major, minQEMUMajor)
	}
	return bin, nil, nil
}
