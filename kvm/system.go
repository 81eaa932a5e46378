package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM device node lives.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm: the fd for system-wide queries and for
// creating VMs.
type System struct {
	fd int
}

// Open opens the KVM device at path (normally DevicePath) and checks its API
// version.
func Open(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	s := &System{fd: fd}
	v, err := s.APIVersion()
	if err != nil {
		s.Close()
		return nil, err
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%s: KVM API version %d, want %d", path, v, APIVersion)
	}
	return s, nil
}

// Close closes the system fd. VMs created from it stay valid.
func (s *System) Close() error { return unix.Close(s.fd) }

// APIVersion returns KVM_GET_API_VERSION; it is 12 on every kernel since 2.6.22.
func (s *System) APIVersion() (int, error) {
	r, err := ioctl(s.fd, kvmGetAPIVersion, 0)
	return int(r), err
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 when unsupported,
// otherwise a positive, capability-specific value.
func (s *System) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(s.fd, kvmCheckExtension, uintptr(c))
	return int(r), err
}

// VCPUMmapSize returns the size of the shared kvm_run region of each vCPU.
func (s *System) VCPUMmapSize() (int, error) {
	r, err := ioctl(s.fd, kvmGetVCPUMmapSize, 0)
	return int(r), err
}

// maxCPUIDEntries bounds KVM_GET_SUPPORTED_CPUID's answer; KVM's own limit
// (KVM_MAX_CPUID_ENTRIES) is 256.
const maxCPUIDEntries = 256

// SupportedCPUID returns the CPUID leaves KVM can present to a guest on this
// host, the starting point for a guest's CPUID table.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	buf := make([]byte, sizeofCPUID2+maxCPUIDEntries*sizeofCPUIDEntry2)
	binary.LittleEndian.PutUint32(buf, maxCPUIDEntries)
	if _, err := ioctlBytes(s.fd, kvmGetSupportedCPUID, buf); err != nil {
		return nil, err
	}
	return decodeCPUID2(buf)
}

// MSRIndexList returns the MSRs KVM saves and restores for a guest.
func (s *System) MSRIndexList() ([]uint32, error) {
	n := 64
	for {
		buf := make([]byte, sizeofMSRList+4*n)
		binary.LittleEndian.PutUint32(buf, uint32(n))
		_, err := ioctlBytes(s.fd, kvmGetMSRIndexList, buf)
		if errors.Is(err, unix.E2BIG) && n < 4096 {
			n = int(binary.LittleEndian.Uint32(buf))
			continue
		}
		if err != nil {
			return nil, err
		}
		got := int(binary.LittleEndian.Uint32(buf))
		if got > n {
			return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: kernel reported %d entries in a buffer of %d", got, n)
		}
		out := make([]uint32, got)
		for i := range out {
			out[i] = binary.LittleEndian.Uint32(buf[sizeofMSRList+4*i:])
		}
		return out, nil
	}
}

// CreateVM creates an empty VM: no memory, no vCPUs.
func (s *System) CreateVM() (*VM, error) {
	runSize, err := s.VCPUMmapSize()
	if err != nil {
		return nil, err
	}
	if runSize < runMinSize {
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE is %d bytes, smaller than struct kvm_run (%d)", runSize, runMinSize)
	}
	r, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, err
	}
	return &VM{fd: int(r), runSize: runSize}, nil
}

// decodeCPUID2 parses a struct kvm_cpuid2 with its entries.
func decodeCPUID2(buf []byte) ([]CPUIDEntry, error) {
	n := int(binary.LittleEndian.Uint32(buf))
	if sizeofCPUID2+n*sizeofCPUIDEntry2 > len(buf) {
		return nil, fmt.Errorf("kvm_cpuid2 claims %d entries, buffer holds %d", n, (len(buf)-sizeofCPUID2)/sizeofCPUIDEntry2)
	}
	out := make([]CPUIDEntry, n)
	for i := range out {
		b := buf[sizeofCPUID2+i*sizeofCPUIDEntry2:]
		out[i] = CPUIDEntry{
			Function: binary.LittleEndian.Uint32(b[0:]),
			Index:    binary.LittleEndian.Uint32(b[4:]),
			Flags:    binary.LittleEndian.Uint32(b[8:]),
			EAX:      binary.LittleEndian.Uint32(b[12:]),
			EBX:      binary.LittleEndian.Uint32(b[16:]),
			ECX:      binary.LittleEndian.Uint32(b[20:]),
			EDX:      binary.LittleEndian.Uint32(b[24:]),
		}
	}
	return out, nil
}

// encodeCPUID2 lays entries out as a struct kvm_cpuid2.
func encodeCPUID2(entries []CPUIDEntry) []byte {
	buf := make([]byte, sizeofCPUID2+len(entries)*sizeofCPUIDEntry2)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for i, e := range entries {
		b := buf[sizeofCPUID2+i*sizeofCPUIDEntry2:]
		binary.LittleEndian.PutUint32(b[0:], e.Function)
		binary.LittleEndian.PutUint32(b[4:], e.Index)
		binary.LittleEndian.PutUint32(b[8:], e.Flags)
		binary.LittleEndian.PutUint32(b[12:], e.EAX)
		binary.LittleEndian.PutUint32(b[16:], e.EBX)
		binary.LittleEndian.PutUint32(b[20:], e.ECX)
		binary.LittleEndian.PutUint32(b[24:], e.EDX)
	}
	return buf
}

// encodeMSRs lays msrs out as a struct kvm_msrs.
func encodeMSRs(msrs []MSR) []byte {
	buf := make([]byte, sizeofMSRs+len(msrs)*sizeofMSREntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(msrs)))
	for i, m := range msrs {
		b := buf[sizeofMSRs+i*sizeofMSREntry:]
		binary.LittleEndian.PutUint32(b[0:], m.Index)
		binary.LittleEndian.PutUint64(b[8:], m.Data)
	}
	return buf
}

// decodeMSRs reads the n first entries of a struct kvm_msrs back into msrs.
func decodeMSRs(buf []byte, msrs []MSR, n int) {
	for i := 0; i < n && i < len(msrs); i++ {
		b := buf[sizeofMSRs+i*sizeofMSREntry:]
		msrs[i].Index = binary.LittleEndian.Uint32(b[0:])
		msrs[i].Data = binary.LittleEndian.Uint64(b[8:])
	}
}
