package agent

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// superblock builds an ext4 superblock with the fields growTarget reads.
func superblock(blocks uint64, logBlock uint32, is64 bool) []byte {
	sb := make([]byte, ext4SuperSize)
	le := binary.LittleEndian
	le.PutUint16(sb[sbMagic:], ext4Magic)
	le.PutUint32(sb[sbLogBlockSize:], logBlock)
	le.PutUint32(sb[sbBlocksCountLo:], uint32(blocks))
	if is64 {
		le.PutUint32(sb[sbFeatureIncompat:], ext4Incompat64Bit)
		le.PutUint32(sb[sbBlocksCountHi:], uint32(blocks>>32))
	}
	return sb
}

func TestGrowTarget(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name     string
		sb       []byte
		dev      uint64
		newB     uint64
		oldB     uint64
		grow     bool
		wantFail bool
	}{
		{"580 MiB image on an 8 GiB disk", superblock(580<<8, 2, true), 8 * gib, 8 * gib / 4096, 580 << 8, true, false},
		{"fills its disk", superblock(580<<8, 2, true), 580 << 20, 580 << 8, 580 << 8, false, false},
		{"partial last block is not used", superblock(256, 2, true), 256*4096 + 4095, 256, 256, false, false},
		{"larger than the disk: never shrink", superblock(1000, 2, true), 100 * 4096, 100, 1000, false, false},
		{"1 KiB blocks", superblock(1024, 0, true), 4 << 20, 4096, 1024, true, false},
		{"64-bit block count", superblock(5<<32, 2, true), 6 << 44, 6 << 32, 5 << 32, true, false},
		{"32-bit fs stops at 2^32-1 blocks", superblock(1<<20, 2, false), 32 << 40, maxExt4Blocks32, 1 << 20, true, false},
		{"not ext4", make([]byte, ext4SuperSize), 8 * gib, 0, 0, false, true},
		{"short", superblock(1, 2, true)[:100], 8 * gib, 0, 0, false, true},
		{"absurd block size", superblock(1, 40, true), 8 * gib, 0, 0, false, true},
	} {
		newB, oldB, grow, err := growTarget(c.sb, c.dev)
		if (err != nil) != c.wantFail {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		if c.wantFail {
			continue
		}
		if newB != c.newB || oldB != c.oldB || grow != c.grow {
			t.Errorf("%s: got new %d old %d grow %v, want %d %d %v", c.name, newB, oldB, grow, c.newB, c.oldB, c.grow)
		}
	}
}

// A superblock mkfs.ext4 wrote, with the features environments use, reads
// as the size mkfs was asked for.
func TestExt4GeometryOfRealImage(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("no mkfs.ext4 on this host")
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 96<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-F", "-q", "-b", "4096", "-O", "64bit,resize_inode,flex_bg", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, ext4SuperSize)
	if _, err := f.ReadAt(sb, ext4SuperOffset); err != nil {
		t.Fatal(err)
	}
	blocks, bs, is64, err := ext4Geometry(sb)
	if err != nil || blocks != 96<<8 || bs != 4096 || !is64 {
		t.Fatalf("geometry: %d blocks of %d, 64bit %v, err %v; want %d of 4096, 64bit", blocks, bs, is64, err, 96<<8)
	}
	newB, _, grow, err := growTarget(sb, 1<<30)
	if err != nil || !grow || newB != 1<<18 {
		t.Fatalf("growTarget to 1 GiB: %d %v %v", newB, grow, err)
	}
}

func TestParseSectors(t *testing.T) {
	if n, err := parseSectors([]byte("16777216\n")); err != nil || n != 8<<30 {
		t.Fatalf("parseSectors: %d %v", n, err)
	}
	for _, bad := range []string{"", "x", "-1", "99999999999999999999"} {
		if _, err := parseSectors([]byte(bad)); err == nil {
			t.Errorf("parseSectors(%q) succeeded", bad)
		}
	}
}
