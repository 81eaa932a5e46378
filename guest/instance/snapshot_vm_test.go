package instance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/vmm"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// counterScript keeps a count in a shell variable (guest memory only) and
// publishes it to a tmpfs file; after a restore it must go on from where
// it was, not from 1.
const counterScript = `i=0; while :; do i=$((i+1)); echo $i >/tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.05; done`

func readCount(t *testing.T, vm *VM) int {
	t.Helper()
	out := strings.TrimSpace(mustSh(t, vm, "cat /tmp/count"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("/tmp/count holds %q", out)
	}
	return n
}

// waitCount waits until the counter passes n and returns its value.
func waitCount(t *testing.T, vm *VM, n int) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c := readCount(t, vm)
		if c > n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter stayed at %d (want more than %d)", c, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func restore(t *testing.T, e *env.Env, d *disk.Stack, dir string) *VM {
	t.Helper()
	console := new(countingBuffer)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := Restore(ctx, Config{Env: e, Disk: d, Console: console, Logger: testLogger(t)}, dir)
	if err != nil {
		t.Fatalf("restoring %s: %v\nconsole:\n%s", dir, err, console.String())
	}
	t.Logf("restored: agent ready after %v", vm.Ready)
	consoles.Store(vm, console)
	t.Cleanup(func() {
		consoles.Delete(vm)
		vm.Close()
	})
	return vm
}

// A running guest is snapshotted (memory and the disk layer frozen at the
// same instant), changed, and restored twice into new VMs: each resumes
// with the process and its in-memory state as they were, the disk as it
// was, and its own randomness and boot ID.
func TestSnapshotRestoreVM(t *testing.T) {
	e := loadEnv(t, "minimal", "PYRO_TEST_ENV_MINIMAL")
	d := newDisk(t, e)
	vm := start(t, e, d)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := vm.Agent.ServiceStart(ctx, proto.ServiceStartArgs{Name: "counter", Shell: counterScript, Cwd: "/tmp"}); err != nil {
		t.Fatal(err)
	}
	mustSh(t, vm, "echo before >/snap-before; sync")
	parentBoot := mustSh(t, vm, "cat /proc/sys/kernel/random/boot_id")
	before := waitCount(t, vm, 5)

	dir := t.TempDir()
	var layer string
	stats, err := vm.Snapshot(dir, "test", func() error {
		li, err := d.Freeze("snap")
		layer = li.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %+v", stats)
	if stats.Memory.Written == 0 || stats.Memory.Written >= stats.Memory.Pages {
		t.Errorf("memory image wrote %d of %d pages: want some, and fewer than all (zero and untouched pages are skipped)", stats.Memory.Written, stats.Memory.Pages)
	}
	fi, err := os.Stat(filepath.Join(dir, vmm.MemoryFile))
	if err != nil {
		t.Fatal(err)
	}
	// The parent runs on after its snapshot, and changes its disk.
	after := waitCount(t, vm, before)
	mustSh(t, vm, "echo after >/snap-after; sync")
	vm.Close()
	t.Logf("memory image: %d bytes, counter %d before the snapshot, %d after", fi.Size(), before, after)

	var boots, randoms []string
	for i := range 2 {
		if err := d.Checkout(layer); err != nil {
			t.Fatal(err)
		}
		r := restore(t, e, d, dir)
		c := readCount(t, r)
		if c < before {
			t.Errorf("restore %d: the counter reads %d, less than the %d it had passed before the snapshot: the process did not resume", i, c, before)
		}
		waitCount(t, r, c) // it is still counting
		if got := mustSh(t, r, "cat /snap-before"); got != "before\n" {
			t.Errorf("restore %d: /snap-before = %q", i, got)
		}
		if got := sh(t, r, "test -e /snap-after"); got.ExitCode == 0 {
			t.Errorf("restore %d: /snap-after, written after the snapshot, is there", i)
		}
		boots = append(boots, mustSh(t, r, "cat /proc/sys/kernel/random/boot_id"))
		randoms = append(randoms, mustSh(t, r, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"))
		if n := strings.Count(mustSh(t, r, "cat /proc/self/mountinfo"), " /proc/sys/kernel/random/boot_id "); n != 1 {
			t.Errorf("restore %d: %d mounts over boot_id, want 1", i, n)
		}
		if i == 1 {
			rewindInPlace(t, r, d, dir, layer, before)
		}
		r.Close()
	}
	if boots[0] == parentBoot || boots[1] == parentBoot || boots[0] == boots[1] {
		t.Errorf("boot IDs: parent %q, restores %q: want all different", parentBoot, boots)
	}
	if randoms[0] == randoms[1] {
		t.Errorf("two restores of one snapshot read the same /dev/urandom bytes %s", randoms[0])
	}
}

// rewindInPlace runs restored VM r on (counting, writing its disk), then
// rewinds it in place to the snapshot it was restored from: the counter
// goes back, the disk is the snapshot's, the boot ID is new, and the
// process counts on.
func rewindInPlace(t *testing.T, r *VM, d *disk.Stack, dir, layer string, before int) {
	t.Helper()
	if !r.CanRewind(dir) || r.CanRewind(t.TempDir()) {
		t.Fatalf("CanRewind: %v for the image the VM runs on, %v for another", r.CanRewind(dir), r.CanRewind(t.TempDir()))
	}
	boot := mustSh(t, r, "cat /proc/sys/kernel/random/boot_id")
	mustSh(t, r, "echo later >/snap-later; sync")
	// Far enough past the snapshot's count that the rewound one, which
	// counts on while the test reads it, cannot have caught up.
	ran := waitCount(t, r, before+60)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := r.Rewind(ctx, dir, func() error { return d.Checkout(layer) }); err != nil {
		t.Fatalf("rewind: %v", err)
	}
	c := readCount(t, r)
	if c < before || c >= ran {
		t.Errorf("after the rewind the counter reads %d: want it back near %d, below the %d it had reached", c, before, ran)
	}
	waitCount(t, r, c)
	if got := sh(t, r, "test -e /snap-later"); got.ExitCode == 0 {
		t.Error("/snap-later, written before the rewind, is there after it")
	}
	if got := mustSh(t, r, "cat /snap-before"); got != "before\n" {
		t.Errorf("after the rewind /snap-before = %q", got)
	}
	if b := mustSh(t, r, "cat /proc/sys/kernel/random/boot_id"); b == boot {
		t.Errorf("the rewound guest kept its boot ID %s", b)
	}
}

// A damaged memory image is refused before anything runs.
func TestRestoreRefusesDamagedSnapshotVM(t *testing.T) {
	e := loadEnv(t, "minimal", "PYRO_TEST_ENV_MINIMAL")
	d := newDisk(t, e)
	vm := start(t, e, d)
	dir := t.TempDir()
	if _, err := vm.Snapshot(dir, "test", nil); err != nil {
		t.Fatal(err)
	}
	vm.Close()
	// Truncate the memory image: the sizes no longer agree.
	if err := os.Truncate(filepath.Join(dir, vmm.MemoryFile), 4096); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Restore(ctx, Config{Env: e, Disk: d}, dir)
	var se *vmm.SnapshotError
	if !errors.As(err, &se) {
		t.Fatalf("restore of a truncated image: %v, want a *vmm.SnapshotError", err)
	}
	t.Log(err)
}
