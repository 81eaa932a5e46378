package workspace

import (
	"errors"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// A workspace's disk is DefaultDiskMiB unless the request names a size; the
// record and the view keep it, and stop/start, reset and a new server keep
// the disk's size.
func TestDiskSize(t *testing.T) {
	h := newHarness(t)
	def := h.create(contract.CreateRequest{})
	if def.DiskMiB != DefaultDiskMiB {
		t.Fatalf("default disk: %d MiB, want %d", def.DiskMiB, DefaultDiskMiB)
	}
	if got := h.vm(def.ID).stack.Size(); got != DefaultDiskMiB<<20 {
		t.Fatalf("default disk's stack: %d bytes, want %d", got, int64(DefaultDiskMiB)<<20)
	}
	w := h.create(contract.CreateRequest{DiskMiB: 64})
	size := func(what string) {
		t.Helper()
		if got := h.vm(w.ID).stack.Size(); got != 64<<20 {
			t.Fatalf("%s: disk %d bytes, want 64 MiB", what, got)
		}
		st, err := h.m.Status(bg, w.ID)
		if err != nil || st.DiskMiB != 64 {
			t.Fatalf("%s: status disk %d MiB, %v", what, st.DiskMiB, err)
		}
	}
	size("create")
	rec, err := readRecord(h.m.root + "/" + w.ID)
	if err != nil || rec.DiskMiB != 64 {
		t.Fatalf("record: %+v %v", rec, err)
	}
	if _, err := h.m.Stop(bg, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(bg, w.ID); err != nil {
		t.Fatal(err)
	}
	size("restart")
	if _, err := h.m.Reset(bg, w.ID, ""); err != nil {
		t.Fatal(err)
	}
	size("reset")
	h.m.Close()
	h.open()
	if _, err := h.m.Start(bg, w.ID); err != nil {
		t.Fatal(err)
	}
	size("a new server")
}

// A size below the environment's image (the harness's is 16 MiB) or above
// contract.MaxDiskMiB is refused before anything is made, saying the bounds.
func TestDiskSizeRefused(t *testing.T) {
	h := newHarness(t)
	for _, n := range []int{15, contract.MaxDiskMiB + 1} {
		_, err := h.m.Create(bg, contract.CreateRequest{DiskMiB: n, TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
		e := wantCode(t, err, contract.CodeInvalid)
		if !strings.Contains(e.Msg, "16 MiB") || !strings.Contains(e.Hint, "disk_mib") {
			t.Errorf("disk_mib %d: %q / %q", n, e.Msg, e.Hint)
		}
	}
	if n := len(h.workspaceDirs()); n != 0 {
		t.Fatalf("refused creates left %d directories", n)
	}
	// The image's own size is the least.
	if w := h.create(contract.CreateRequest{DiskMiB: 16}); w.DiskMiB != 16 {
		t.Fatalf("disk_mib 16: %d", w.DiskMiB)
	}
}

// defaultMem is DefaultMemMiB where three of those fit the budget, else a
// third of what guests may have; three default workspaces always fit.
func TestDefaultMem(t *testing.T) {
	for _, c := range []struct {
		total uint64
		want  int
	}{
		{64 << 10, DefaultMemMiB},
		{7880, 2048}, // an 8 GiB host's MemTotal
		{3930, 1152}, // a 4 GiB host (the nested test harness's L1)
		{1960, 512},
		{900, minDefaultMemMiB},
	} {
		src := (&fakeMem{total: c.total, avail: c.total}).source()
		got := defaultMem(src)
		if got != c.want {
			t.Errorf("%d MiB host: default %d, want %d", c.total, got, c.want)
		}
		if c.total >= 3*minDefaultMemMiB+hostReserveMiB && uint64(3*got+hostReserveMiB) > c.total {
			t.Errorf("%d MiB host: three %d MiB workspaces do not fit", c.total, got)
		}
	}
	bad := memSource{meminfo: func() (uint64, uint64, error) { return 0, 0, errors.New("no /proc") }}
	if got := defaultMem(bad); got != DefaultMemMiB {
		t.Errorf("unknown host memory: %d", got)
	}
	// Two default workspaces run on an 8 GiB host; the refusal of a third
	// names mem_mib.
	h := newHarness(t, withMem(&fakeMem{total: 7880, avail: 5000}))
	for range 2 {
		if w := h.create(contract.CreateRequest{}); w.MemMiB != 2048 || w.VCPUs < 1 {
			t.Fatalf("default VM: %d MiB, %d vCPUs", w.MemMiB, w.VCPUs)
		}
	}
	_, err := h.tryCreate(0)
	if e := wantCode(t, err, contract.CodeLimit); !strings.Contains(e.Hint, "mem_mib") {
		t.Fatalf("third default workspace: %q", e.Hint)
	}
}

// A workspace's default vCPUs are half the host's, 1 to DefaultVCPUs: a
// two-core laptop (or CI runner) keeps a core for the chat host.
func TestVCPUsFor(t *testing.T) {
	for ncpu, want := range map[int]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 16: DefaultVCPUs} {
		if got := VCPUsFor(ncpu); got != want {
			t.Errorf("VCPUsFor(%d) = %d, want %d", ncpu, got, want)
		}
	}
}
