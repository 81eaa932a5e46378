// Package kvm is pyro's only door to /dev/kvm: typed wrappers over the raw KVM
// ioctls that the VMM issues, split by the file descriptor they act on.
//
// It sits at the bottom of the data path. vmm/ opens a System, creates a VM,
// registers guest memory and the in-kernel irqchip through it, and runs each
// vCPU on its own locked OS thread with (*VCPU).Run, which returns a typed
// Exit describing why the guest stopped (a port or MMIO access, a halt, a
// shutdown). Devices never reach this package; they get guest memory through
// vmm/ and see only decoded exits. For snapshots, (*VCPU).SaveState and
// (*VM).SaveState read everything KVM holds for a stopped VM into a
// VCPUState and a VMState, which MarshalBinary encodes for a file, and
// RestoreState writes them into a fresh VM; the guest's memory is vmm/'s
// to carry.
//
// Conventions, after rust-vmm's kvm-ioctls and cilium/ebpf:
//   - every ioctl number lives in ioctls.go, named as in <linux/kvm.h>;
//   - one helper issues every ioctl: it retries EINTR (except KVM_RUN, where
//     EINTR is the kick that stops a vCPU), keeps its argument alive and wraps
//     the errno in an *Error that names the ioctl;
//   - kernel ABI structs are declared once, in types.go, with their sizes
//     asserted by tests; the shared kvm_run page is read at named offsets;
//   - unsafe is confined to files named *_unsafe.go, each use justified by a
//     SAFETY comment.
//
// Reference: Documentation/virt/kvm/api.rst in the Linux tree.
package kvm
