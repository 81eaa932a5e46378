package agent

import "testing"

// ext4IocResizeFS is _IOW('f', 16, __u64) on Linux's generic ioctl
// encoding (x86 and arm64): dir 1 (write) << 30, size << 16, type << 8, nr.
func TestResizeIoctlNumber(t *testing.T) {
	const iow = 1<<30 | 8<<16 | 'f'<<8 | 16
	if ext4IocResizeFS != iow {
		t.Fatalf("EXT4_IOC_RESIZE_FS %#x, want %#x", ext4IocResizeFS, iow)
	}
}
