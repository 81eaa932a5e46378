package kvm

import (
	"os"
	"path/filepath"
	"strings"
)

// HostKind says what kind of virtualization backs /dev/kvm.
type HostKind string

// Host kinds.
const (
	HostVMX  HostKind = "vmx" // Intel VT-x (kvm_intel)
	HostSVM  HostKind = "svm" // AMD-V (kvm_amd)
	HostPVM  HostKind = "pvm" // pagetable-based virtualization (kvm_pvm): PVM-enabled guest kernels only
	HostNone HostKind = "none"
)

// Describe says in plain words what k means for booting guests.
func (k HostKind) Describe() string {
	switch k {
	case HostVMX:
		return "hardware virtualization: Intel VT-x (kvm_intel)"
	case HostSVM:
		return "hardware virtualization: AMD-V (kvm_amd)"
	case HostPVM:
		return "PVM (kvm_pvm): no hardware virtualization; only PVM-enabled guest kernels boot, a stock distribution kernel does not"
	default:
		return "no KVM module loaded"
	}
}

// BootsStockKernels reports whether a stock (non-PVM) guest kernel can boot
// on a host of this kind.
func (k HostKind) BootsStockKernels() bool { return k == HostVMX || k == HostSVM }

// DetectHost tells which KVM flavour the running kernel has loaded, from
// /sys/module. sysfs is the root of sysfs, normally "/sys".
func DetectHost(sysfs string) HostKind {
	has := func(m string) bool {
		_, err := os.Stat(filepath.Join(sysfs, "module", m))
		return err == nil
	}
	switch {
	case has("kvm_intel"):
		return HostVMX
	case has("kvm_amd"):
		return HostSVM
	case has("kvm_pvm"):
		return HostPVM
	}
	return HostNone
}

// CPUVirtFlags returns which of the vmx and svm CPU flags /proc/cpuinfo
// lists (the processor's own capability, whether or not a module uses it).
func CPUVirtFlags(cpuinfo string) []string {
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				out = append(out, f)
			}
		}
		break
	}
	return out
}
