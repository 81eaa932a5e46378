package instance

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// A disk larger than the environment's image: the agent grows the root
// file system to it at boot, the room is usable, and the next boot on the
// same disk finds it grown already.
func TestRootGrowsToDiskVM(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	e := loadEnv(t, "minimal", "PYRO_TEST_ENV_MINIMAL")
	const size = 1 << 30
	d, err := disk.Create(filepath.Join(t.TempDir(), "disk"), e.Rootfs, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	// rootKiB is the root file system's size as df shows it, in KiB.
	rootKiB := func(vm *VM) int64 {
		t.Helper()
		out := mustSh(t, vm, "df -k / | tail -n 1")
		f := strings.Fields(out)
		if len(f) < 4 {
			t.Fatalf("df: %q", out)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("df: %q: %v", out, err)
		}
		t.Logf("df /: %s", strings.TrimSpace(out))
		return n
	}

	vm := start(t, e, d)
	got := rootKiB(vm)
	// ext4's own metadata (journal, inode tables) is not counted: allow
	// 15% of the disk for it.
	if got < size/1024*85/100 {
		t.Fatalf("root file system is %d KiB on a %d KiB disk: not grown\nconsole:\n%s", got, size/1024, consoleTail(vm))
	}
	if !strings.Contains(consoleTail(vm), "grew the root file system") {
		t.Errorf("the console does not say the root grew:\n%s", consoleTail(vm))
	}
	// The room is usable: twice the image's whole size (64 MiB) fits.
	mustSh(t, vm, "dd if=/dev/zero of=/big bs=1M count=128 2>/dev/null && sync && rm /big && sync")
	vm.Close()

	vm = start(t, e, d)
	if again := rootKiB(vm); again != got {
		t.Errorf("second boot: root is %d KiB, first boot %d", again, got)
	}
	if strings.Contains(consoleTail(vm), "grew the root file system") {
		t.Errorf("the second boot grew the root again:\n%s", consoleTail(vm))
	}
}
