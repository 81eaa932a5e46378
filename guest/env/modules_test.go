package env

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const syntheticDep = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/vmw_vsock/vsock.ko:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/net/vmw_vsock/vsock.ko
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/fs/jbd2/jbd2.ko.xz:
kernel/fs/mbcache.ko.xz:
kernel/lib/crc16.ko.xz:
kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko
kernel/arch/x86/kvm/kvm.ko:
`

func treeFromDep(t *testing.T, dep string) *moduleTree {
	t.Helper()
	paths, deps, err := parseModulesDep(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	return &moduleTree{paths: paths, deps: deps, builtin: map[string]bool{}, fromDep: true}
}

// checkOrder fails unless every module appears once and after all of its
// dependencies.
func checkOrder(t *testing.T, tree *moduleTree, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, n := range order {
		if _, dup := pos[n]; dup {
			t.Errorf("%s appears twice in %v", n, order)
		}
		pos[n] = i
	}
	for _, n := range order {
		for _, d := range tree.deps[n] {
			if p, ok := pos[d]; !ok || p > pos[n] {
				t.Errorf("%s is loaded before its dependency %s: %v", n, d, order)
			}
		}
	}
}

func TestModulesDepOrder(t *testing.T) {
	tree := treeFromDep(t, syntheticDep)
	if got := tree.paths["kvm_amd"]; got != "kernel/arch/x86/kvm/kvm-amd.ko" {
		t.Errorf("kvm-amd.ko indexed as kvm_amd -> %q", got)
	}
	if got := tree.paths["ext4"]; got != "kernel/fs/ext4/ext4.ko.xz" {
		t.Errorf("ext4 -> %q", got)
	}
	order, err := tree.loadOrder([]string{"virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport", "ext4", "kvm-amd"})
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, tree, order)
	want := "virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net vsock " +
		"vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport crc16 mbcache jbd2 ext4 kvm kvm_amd"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order\n got %s\nwant %s", got, want)
	}
	// Deterministic: the same call gives the same order.
	again, _ := treeFromDep(t, syntheticDep).loadOrder([]string{"virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport", "ext4", "kvm-amd"})
	if strings.Join(order, " ") != strings.Join(again, " ") {
		t.Errorf("order not deterministic: %v vs %v", order, again)
	}
	if order[0] != "virtio_ring" || order[1] != "virtio" || order[2] != "virtio_mmio" {
		t.Errorf("order starts %v, want virtio_ring virtio virtio_mmio", order[:3])
	}
}

func TestModulesDepErrors(t *testing.T) {
	for name, dep := range map[string]string{
		"no colon":        "kernel/a.ko kernel/b.ko\n",
		"unknown dep":     "kernel/a.ko: kernel/b.ko\n",
		"not a module":    "kernel/a.ko: kernel/b.txt\n",
		"duplicate names": "kernel/a/x.ko:\nkernel/b/x.ko:\n",
	} {
		if _, _, err := parseModulesDep(strings.NewReader(dep)); err == nil {
			t.Errorf("%s: parsed %q without error", name, dep)
		}
	}
	cyc := treeFromDep(t, "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko: kernel/a.ko\n")
	if _, err := cyc.loadOrder([]string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	tree := treeFromDep(t, syntheticDep)
	if _, err := tree.loadOrder([]string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("missing module: %v", err)
	}
}

func TestParseKernelConfig(t *testing.T) {
	cfg, err := ParseKernelConfig(strings.NewReader(`#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_VIRTIO=m
CONFIG_EXT4_FS=y
# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set
CONFIG_LOCALVERSION=""
CONFIG_NR_CPUS=64
CONFIG_DEFAULT_HOSTNAME="(none)"

`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"CONFIG_VIRTIO": "m", "CONFIG_EXT4_FS": "y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "n",
		"CONFIG_LOCALVERSION": "", "CONFIG_NR_CPUS": "64", "CONFIG_DEFAULT_HOSTNAME": "(none)",
	} {
		if got, ok := cfg[k]; !ok || got != v {
			t.Errorf("%s = %q (%v), want %q", k, got, ok, v)
		}
	}
	if _, ok := cfg["CONFIG_VSOCKETS"]; ok {
		t.Errorf("absent symbol present")
	}
	if _, err := ParseKernelConfig(strings.NewReader("VIRTIO=m\n")); err == nil {
		t.Errorf("accepted a line without CONFIG_")
	}
}

func TestPlanModules(t *testing.T) {
	tree := treeFromDep(t, syntheticDep)
	// ext4 and its helpers are built in here, though modules.dep has them
	// (as a distribution kernel never would): modules.builtin wins.
	tree.builtin = map[string]bool{"ext4": true, "jbd2": true, "mbcache": true, "crc16": true, "crc32c_generic": true}
	cfg := map[string]string{
		"CONFIG_VIRTIO": "m", "CONFIG_VIRTIO_MMIO": "m", "CONFIG_VIRTIO_BLK": "m", "CONFIG_FAILOVER": "m",
		"CONFIG_NET_FAILOVER": "m", "CONFIG_VIRTIO_NET": "m", "CONFIG_VSOCKETS": "m",
		"CONFIG_VIRTIO_VSOCKETS_COMMON": "m", "CONFIG_VIRTIO_VSOCKETS": "m", "CONFIG_CRC16": "y",
		"CONFIG_CRYPTO_CRC32C": "y", "CONFIG_FS_MBCACHE": "y", "CONFIG_JBD2": "y", "CONFIG_EXT4_FS": "y",
	}
	plan, err := planModules(tree, cfg, InitrdModules)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Builtin, " "); got != "crc16 crc32c_generic ext4 jbd2 mbcache" {
		t.Errorf("built in: %s", got)
	}
	if got := strings.Join(plan.Load, " "); got != "virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport" {
		t.Errorf("load: %s", got)
	}
	if plan.Paths[2] != "kernel/drivers/virtio/virtio_mmio.ko" {
		t.Errorf("paths: %v", plan.Paths)
	}

	// The same kernel with ext4 as modules: they are loaded, deps first.
	tree2 := treeFromDep(t, syntheticDep)
	tree2.builtin = map[string]bool{"crc32c_generic": true}
	plan, err = planModules(tree2, nil, InitrdModules)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, tree2, plan.Load)
	if !slices.Contains(plan.Load, "ext4") || !slices.Contains(plan.Load, "jbd2") {
		t.Errorf("ext4 as a module: load %v", plan.Load)
	}

	// No modules.builtin: the config decides what is built in.
	tree3 := treeFromDep(t, syntheticDep)
	delete(tree3.paths, "crc16")
	if _, err := planModules(tree3, map[string]string{"CONFIG_CRYPTO_CRC32C": "y"}, []KernelModule{{"crc32c_generic", "CONFIG_CRYPTO_CRC32C"}}); err != nil {
		t.Errorf("=y without modules.builtin: %v", err)
	}
	// A feature the kernel lacks names its config symbol.
	_, err = planModules(tree3, map[string]string{"CONFIG_CRC16": "n"}, []KernelModule{{"crc16", "CONFIG_CRC16"}})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_CRC16 is not set") {
		t.Errorf("missing feature: %v", err)
	}
	_, err = planModules(tree3, map[string]string{"CONFIG_CRC16": "m"}, []KernelModule{{"crc16", "CONFIG_CRC16"}})
	if err == nil || !strings.Contains(err.Error(), "=m") {
		t.Errorf("=m without a .ko: %v", err)
	}
}

// fakeKo returns a minimal ELF64 relocatable object whose .modinfo section
// holds info, like a kernel module.
func fakeKo(info ...string) []byte {
	modinfo := []byte(strings.Join(info, "\x00") + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := ehsize
	strOff := modOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	buf := make([]byte, shOff+3*shentsize)
	copy(buf, "\x7fELF")
	buf[4], buf[5], buf[6] = 2, 1, 1 // 64-bit, little endian, version 1
	le := binary.LittleEndian
	le.PutUint16(buf[16:], 1)  // ET_REL
	le.PutUint16(buf[18:], 62) // EM_X86_64
	le.PutUint32(buf[20:], 1)
	le.PutUint64(buf[40:], uint64(shOff))
	le.PutUint16(buf[52:], ehsize)
	le.PutUint16(buf[58:], shentsize)
	le.PutUint16(buf[60:], 3) // shnum
	le.PutUint16(buf[62:], 2) // shstrndx
	copy(buf[modOff:], modinfo)
	copy(buf[strOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		b := buf[shOff+i*shentsize:]
		le.PutUint32(b[0:], name)
		le.PutUint32(b[4:], typ)
		le.PutUint64(b[24:], uint64(off))
		le.PutUint64(b[32:], uint64(size))
		le.PutUint64(b[48:], 1)
	}
	sh(1, 1, 1, modOff, len(modinfo)) // .modinfo, SHT_PROGBITS
	sh(2, 10, 3, strOff, len(shstr))  // .shstrtab, SHT_STRTAB
	return buf
}

// TestModinfoDeps covers kernels shipped without modules.dep (Debian's:
// depmod writes it at install time): dependencies come from .modinfo.
func TestModinfoDeps(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kernel/drivers/virtio/virtio_ring.ko", fakeKo("license=GPL", "depends=", "name=virtio_ring"))
	write("kernel/drivers/virtio/virtio.ko", fakeKo("depends=virtio_ring", "name=virtio"))
	write("kernel/drivers/virtio/virtio_mmio.ko", fakeKo("depends=virtio,virtio_ring", "name=virtio_mmio"))
	write("kernel/drivers/block/virtio_blk.ko", fakeKo("depends=virtio,virtio_ring", "name=virtio_blk"))
	write("kernel/arch/x86/kvm/kvm-amd.ko", fakeKo("depends=kvm", "name=kvm_amd"))
	write("kernel/arch/x86/kvm/kvm.ko", fakeKo("depends=", "name=kvm"))
	write("modules.builtin", []byte("kernel/fs/ext4/ext4.ko\n"))
	tree, err := loadModuleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tree.fromDep || !tree.builtin["ext4"] {
		t.Fatalf("tree: fromDep %v, builtin %v", tree.fromDep, tree.builtin)
	}
	order, err := tree.loadOrder([]string{"virtio_blk", "virtio_mmio", "kvm_amd"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "virtio_ring virtio virtio_blk virtio_mmio kvm kvm_amd" {
		t.Errorf("order %s", got)
	}
	if info := parseModinfo([]byte("a=1\x00b=x=y\x00a=2\x00")); strings.Join(info["a"], ",") != "1,2" || info["b"][0] != "x=y" {
		t.Errorf("parseModinfo: %v", info)
	}
	write("kernel/bad.ko", []byte("not elf"))
	if _, err := readModinfo(filepath.Join(dir, "kernel/bad.ko")); err == nil {
		t.Errorf("readModinfo accepted a non-ELF file")
	}
}

// TestRealKernelModules plans the initramfs modules of the Debian kernel
// that `make kernel` unpacked into build/assets, when it is there.
func TestRealKernelModules(t *testing.T) {
	m, _ := filepath.Glob("../../build/assets/root/linux-image-*/lib/modules/*")
	if len(m) == 0 {
		t.Skip("no unpacked Debian kernel in build/assets (make kernel)")
	}
	dir := m[0]
	tree, err := loadModuleTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := filepath.Glob(filepath.Join(dir, "..", "..", "..", "boot", "config-*"))
	var cfg map[string]string
	if len(cfgs) == 1 {
		b, _ := os.ReadFile(cfgs[0])
		if cfg, err = ParseKernelConfig(bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := planModules(tree, cfg, InitrdModules)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, tree, plan.Load)
	t.Logf("%s: load %v; built in %v", filepath.Base(dir), plan.Load, plan.Builtin)
	mmio, blk := -1, -1
	for i, n := range plan.Load {
		switch n {
		case "virtio_mmio":
			mmio = i
		case "virtio_blk":
			blk = i
		}
	}
	if (mmio >= 0) != (blk >= 0) || mmio > blk {
		t.Errorf("virtio_mmio at %d, virtio_blk at %d", mmio, blk)
	}
}
