package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	flag "github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/vmm"
)

// check is one line of the kvm-check report.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Warn marks a check that passed with a caveat (doctor's).
	Warn bool `json:"warn,omitempty"`
}

// kvmReport is what kvm-check found; --json prints it as is.
type kvmReport struct {
	OK       bool     `json:"ok"`
	Summary  string   `json:"summary"`
	Device   string   `json:"device"`
	HostKind string   `json:"host_kind"`
	CPUFlags []string `json:"cpu_flags"`
	Kernel   string   `json:"kernel,omitempty"`
	// Environments lists the built environments (pyro env list has more).
	Environments []string `json:"environments"`
	Checks       []check  `json:"checks"`
}

const kvmCheckHelp = `Usage: pyro kvm-check [--json] [--kernel PATH]

Checks, in plain words, whether this host can boot pyro's microVMs:
  - /dev/kvm exists and this user can read and write it
  - the KVM API version, and each KVM capability pyro's VMM uses
  - the kind of virtualization behind /dev/kvm: hardware (Intel VT-x or
    AMD-V) boots stock kernels; PVM (the kvm_pvm module) boots only
    PVM-enabled guest kernels, so pyro's Debian kernels do not boot there
  - whether a bootable guest kernel is present

Exits 0 only when a boot can work; otherwise 1, with what to fix.

Flags:
`

func kvmCheckMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvm-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	kernel := fs.String("kernel", "", "guest kernel to check (default: the one pyro built, in "+kernelCacheDir()+")")
	device := fs.String("device", kvm.DevicePath, "KVM device node")
	fs.Usage = func() { fmt.Fprint(stderr, kvmCheckHelp); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pyro kvm-check: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	r := probeHost(*device, "/sys", "/proc/cpuinfo", *kernel)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		printReport(stdout, r)
	}
	if !r.OK {
		return exitFailure
	}
	return exitOK
}

func printReport(w io.Writer, r kvmReport) {
	fmt.Fprintf(w, "pyro kvm-check: %s\n\n", r.Summary)
	printChecks(w, r.Checks)
}

// probeHost runs every check. Its inputs are paths so tests can point it at
// fake sysfs and cpuinfo trees.
func probeHost(device, sysfs, cpuinfo, kernel string) kvmReport {
	r := kvmReport{Device: device}
	add := func(c check) { r.Checks = append(r.Checks, c) }

	kind := kvm.DetectHost(sysfs)
	r.HostKind = string(kind)
	r.CPUFlags = kvm.CPUVirtFlags(cpuinfo)
	virt := check{Name: "virtualization", OK: kind.BootsStockKernels(), Detail: kind.Describe()}
	switch kind {
	case kvm.HostPVM:
		virt.Fix = "use a host with Intel VT-x or AMD-V (bare metal, or a cloud VM with nested virtualization); on this machine pyro's VM tests run in the nested-KVM harness (make test-vm)"
	case kvm.HostNone:
		if len(r.CPUFlags) > 0 {
			virt.Fix = fmt.Sprintf("the CPU has %s: load the module (sudo modprobe kvm_intel or kvm_amd)", r.CPUFlags[0])
		} else {
			virt.Fix = "this CPU offers no VT-x/AMD-V: enable it in the firmware, or on a VM enable nested virtualization"
		}
	}

	sysOK := checkDevice(device, add)
	add(virt)
	if sysOK != nil {
		checkCaps(sysOK, add)
		sysOK.Close()
	}
	if kernel != "" {
		r.Kernel = checkKernel(kernel, add)
	} else {
		r.Kernel, r.Environments = checkBootable(add)
	}

	r.OK = true
	for _, c := range r.Checks {
		r.OK = r.OK && c.OK
	}
	switch {
	case r.OK:
		r.Summary = "this host can boot pyro VMs"
	case kind == kvm.HostPVM:
		r.Summary = "this host cannot boot pyro VMs: its /dev/kvm is PVM, which runs only PVM-enabled guest kernels"
	default:
		r.Summary = "this host cannot boot pyro VMs yet; fix the failed checks below"
	}
	return r
}

// checkDevice checks the KVM node and returns it open, or nil.
func checkDevice(device string, add func(check)) *kvm.System {
	st, err := os.Stat(device)
	if err != nil {
		add(check{Name: "device", Detail: fmt.Sprintf("%s: %v", device, errors.Unwrap(err)),
			Fix: "load KVM (sudo modprobe kvm_intel or kvm_amd); inside a VM, enable nested virtualization"})
		return nil
	}
	if st.Mode()&os.ModeCharDevice == 0 {
		add(check{Name: "device", Detail: device + " is not a character device", Fix: "remove it and reload the kvm module"})
		return nil
	}
	add(check{Name: "device", OK: true, Detail: device + " is present"})
	if err := unix.Access(device, unix.R_OK|unix.W_OK); err != nil {
		add(check{Name: "access", Detail: fmt.Sprintf("%s is not readable and writable by uid %d: %v", device, os.Getuid(), err),
			Fix: "sudo usermod -aG kvm $USER, then log in again (pyro never needs root)"})
		return nil
	}
	sys, err := kvm.Open(device)
	if err != nil {
		add(check{Name: "access", Detail: err.Error(), Fix: "check that " + device + " is KVM's device node"})
		return nil
	}
	add(check{Name: "access", OK: true, Detail: fmt.Sprintf("readable and writable by uid %d", os.Getuid())})
	add(check{Name: "api version", OK: true, Detail: fmt.Sprintf("%d", kvm.APIVersion)})
	return sys
}

func checkCaps(sys *kvm.System, add func(check)) {
	for _, c := range kvm.RequiredCaps {
		v, err := sys.CheckExtension(c)
		switch {
		case err != nil:
			add(check{Name: c.String(), Detail: err.Error(), Fix: "upgrade the host kernel"})
		case v <= 0:
			add(check{Name: c.String(), Detail: "not supported", Fix: "upgrade the host kernel (pyro needs Linux 4.14 or later)"})
		default:
			add(check{Name: c.String(), OK: true, Detail: "supported"})
		}
	}
}

// kernelCacheDir is where make puts the guest kernel it builds.
func kernelCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pyro", "kernel")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pyro", "kernel")
}

// checkBootable checks that something bootable is here: a built
// environment (what pyro run ENV and workspaces boot), or else the kernel
// make kernel installs for the debugging entry.
func checkBootable(add func(check)) (string, []string) {
	var built []string
	var kernel string
	for _, st := range env.List(cacheRoot()) {
		if st.State == env.StateBuilt && st.Env != nil {
			built = append(built, st.Spec.Name)
			if kernel == "" {
				kernel = st.Env.Kernel
			}
		}
	}
	if len(built) > 0 {
		add(check{Name: "environments", OK: true, Detail: strings.Join(built, ", ") + " built (pyro env list)"})
		return kernel, built
	}
	if _, err := os.Stat(defaultKernel()); err == nil {
		return checkKernel("", add), nil
	}
	add(check{Name: "environments", Detail: "none built, and no guest kernel at " + defaultKernel(),
		Fix: "pyro env build debian-12 (or minimal, in seconds)"})
	return "", nil
}

// defaultKernel is the kernel pyro boots when none is named.
func defaultKernel() string { return filepath.Join(kernelCacheDir(), "vmlinuz") }

func checkKernel(path string, add func(check)) string {
	if path == "" {
		path = defaultKernel()
	}
	img, err := os.ReadFile(path)
	if err != nil {
		add(check{Name: "guest kernel", Detail: fmt.Sprintf("%s: %v", path, errors.Unwrap(err)),
			Fix: "build it: make kernel (fetches the Debian cloud kernel), or pass --kernel PATH"})
		return path
	}
	k, err := vmm.ParseBzImage(img)
	if err != nil {
		add(check{Name: "guest kernel", Detail: fmt.Sprintf("%s: %v", path, err), Fix: "rebuild it: make kernel"})
		return path
	}
	add(check{Name: "guest kernel", OK: true, Detail: fmt.Sprintf("%s (bzImage, boot protocol %d.%02d)", path, k.Version>>8, k.Version&0xff)})
	return path
}

// parseFlags parses args into fs. It returns -1 to go on, or the exit code
// to return: 0 after --help, exitUsage after a bad flag, which it explains
// in one line that says where the flags are listed.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintf(stderr, "pyro %s: %v (pyro %s --help lists the flags)\n", fs.Name(), err, fs.Name())
	return exitUsage
}
