package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/pyro-mcp/pyro/virtio"
	"github.com/pyro-mcp/pyro/virtio/virtiotest"
	"github.com/pyro-mcp/pyro/vmm/disk"
)

// Over a layered disk larger than its base image (a workspace's disk), the
// device's capacity is the disk's size, not the image's, and the guest
// reads zeros past the image.
func TestCapacityOfLargerDisk(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base.img")
	if err := os.WriteFile(base, bytes.Repeat([]byte{0xaa}, 64<<10), 0o444); err != nil {
		t.Fatal(err)
	}
	st, err := disk.Create(filepath.Join(tmp, "stack"), base, 8<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dev, err := New(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := virtiotest.New(t, dev, 8<<20)
	d.Init(^uint64(0), 64)
	t.Cleanup(dev.Reset)
	cfg := make([]byte, 8)
	d.MMIO.Read(virtio.Config, cfg)
	if got := binary.LittleEndian.Uint64(cfg); got != 8<<30/512 {
		t.Fatalf("capacity %d sectors, want %d (8 GiB)", got, 8<<30/512)
	}
	// The last 4 KiB of the image, then the first 4 KiB past it.
	req, status, _ := do(t, d, [][]byte{header(VIRTIO_BLK_T_IN, (64<<10-4096)/512)}, []uint32{8192, 1})
	got := d.Bytes(req.Writable[0], 8192)
	if status != VIRTIO_BLK_S_OK || !bytes.Equal(got[:4096], bytes.Repeat([]byte{0xaa}, 4096)) || !bytes.Equal(got[4096:], make([]byte, 4096)) {
		t.Fatalf("read across the image's end: status %d", status)
	}
}
