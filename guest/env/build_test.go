package env

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDebs stands in for apt: a made-up kernel package (modules with
// .modinfo but no modules.dep, like Debian's; one gzip-compressed) and a
// busybox that is a shell script.
type fakeDebs struct {
	kernels atomic.Int32
	block   chan struct{} // if set, kernel unpacks wait for it
}

const fakeRelease = "6.1.0-99-test-amd64"

func (f *fakeDebs) unpack(ctx context.Context, name, dir string) (string, string, error) {
	write := func(rel string, data []byte, mode os.FileMode) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, mode)
	}
	switch name {
	case KernelMeta:
		f.kernels.Add(1)
		if f.block != nil {
			select {
			case <-f.block:
			case <-ctx.Done():
				return "", "", ctx.Err()
			}
		}
		bz := make([]byte, 4096)
		copy(bz[0x202:], "HdrS")
		mods := "lib/modules/" + fakeRelease + "/"
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(fakeKo("depends=", "name=vsock"))
		zw.Close()
		files := map[string][]byte{
			"boot/vmlinuz-" + fakeRelease: bz,
			"boot/config-" + fakeRelease: []byte("CONFIG_VIRTIO=m\nCONFIG_VIRTIO_MMIO=m\nCONFIG_VIRTIO_BLK=m\n" +
				"CONFIG_FAILOVER=m\nCONFIG_NET_FAILOVER=m\nCONFIG_VIRTIO_NET=m\nCONFIG_VSOCKETS=m\n" +
				"CONFIG_VIRTIO_VSOCKETS_COMMON=m\nCONFIG_VIRTIO_VSOCKETS=m\nCONFIG_CRC16=y\nCONFIG_CRYPTO_CRC32C=y\n" +
				"CONFIG_FS_MBCACHE=y\nCONFIG_JBD2=y\nCONFIG_EXT4_FS=y\n"),
			mods + "modules.builtin": []byte("kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\nkernel/fs/mbcache.ko\n" +
				"kernel/lib/crc16.ko\nkernel/crypto/crc32c_generic.ko\n"),
			mods + "kernel/drivers/virtio/virtio_ring.ko":                      fakeKo("depends=", "name=virtio_ring"),
			mods + "kernel/drivers/virtio/virtio.ko":                           fakeKo("depends=virtio_ring", "name=virtio"),
			mods + "kernel/drivers/virtio/virtio_mmio.ko":                      fakeKo("depends=virtio,virtio_ring", "name=virtio_mmio"),
			mods + "kernel/drivers/block/virtio_blk.ko":                        fakeKo("depends=virtio,virtio_ring", "name=virtio_blk"),
			mods + "kernel/net/core/failover.ko":                               fakeKo("depends=", "name=failover"),
			mods + "kernel/drivers/net/net_failover.ko":                        fakeKo("depends=failover", "name=net_failover"),
			mods + "kernel/drivers/net/virtio_net.ko":                          fakeKo("depends=virtio_ring,virtio,net_failover", "name=virtio_net"),
			mods + "kernel/net/vmw_vsock/vsock.ko.gz":                          gz.Bytes(),
			mods + "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko": fakeKo("depends=vsock", "name=vmw_vsock_virtio_transport_common"),
			mods + "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko":        fakeKo("depends=virtio,vmw_vsock_virtio_transport_common,virtio_ring,vsock"),
			mods + "kernel/arch/x86/kvm/kvm.ko":                                fakeKo("depends="),
		}
		for rel, data := range files {
			if err := write(rel, data, 0o644); err != nil {
				return "", "", err
			}
		}
		return "linux-image-" + fakeRelease, "6.1.999-1", nil
	case "busybox-static":
		var list strings.Builder
		list.WriteString("linuxrc\nbin/sh\nbin/ls\nusr/bin/[\nsbin/init\n")
		for i := 0; i < 60; i++ {
			fmt.Fprintf(&list, "usr/bin/applet%d\n", i)
		}
		script := "#!/bin/sh\n[ \"$1\" = --list-full ] || exit 1\ncat <<'EOF'\n" + list.String() + "EOF\n"
		return "busybox-static", "1:1.35.0-4", write("bin/busybox", []byte(script), 0o755)
	}
	return "", "", fmt.Errorf("fake apt: no package %s", name)
}

// offlineBuild builds minimal from fakeDebs.
func offlineBuild(t *testing.T, ctx context.Context, debs *fakeDebs, opts BuildOptions, afterStep func(int) error) (*Env, error) {
	t.Helper()
	return build(ctx, opts, buildHooks{debs: debs, afterStep: afterStep})
}

func needMkfs(t *testing.T) {
	t.Helper()
	tools := []string{"mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs"}
	if os.Geteuid() != 0 {
		tools = append(tools, "fakeroot")
	}
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			t.Skipf("%s not installed (apt-get install e2fsprogs fakeroot)", tool)
		}
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := lookTool(tool); err != nil {
			t.Skipf("%s not installed: checkTools insists on it", tool)
		}
	}
}

func TestBuildOffline(t *testing.T) {
	needMkfs(t)
	ctx := context.Background()
	root := t.TempDir()
	agent := scriptAgent(t, t.TempDir(), "v1")
	debs := &fakeDebs{}
	var log bytes.Buffer
	opts := BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent, Progress: &log, PyroVersion: "test"}
	e, err := offlineBuild(t, ctx, debs, opts, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("progress:\n%s", log.String())
	for _, want := range []string{"[1/5] kernel: linux-image-cloud-amd64…", "[5/5]", "minimal built in"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("progress lacks %q", want)
		}
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	m := e.Manifest
	if m.Kernel.Release != fakeRelease || m.Kernel.Package != "linux-image-"+fakeRelease || m.PyroVersion != "test" ||
		m.Agent.Path != agent || m.Rootfs.Label != RootfsLabel || m.BuildMode != "busybox" {
		t.Errorf("manifest: %+v", m)
	}
	if got := strings.Join(m.Kernel.BuiltinModules, " "); got != "crc16 crc32c_generic ext4 jbd2 mbcache" {
		t.Errorf("built in: %s", got)
	}
	if !slices.Contains(m.Kernel.InitrdModules, "/lib/modules/"+fakeRelease+"/kernel/net/vmw_vsock/vsock.ko") {
		t.Errorf("vsock.ko.gz not decompressed to vsock.ko: %v", m.Kernel.InitrdModules)
	}
	checkImage(t, e)
	checkInitrd(t, e, agent)
	if bin := debugfsLs(t, e.Rootfs, "/usr/bin"); bin["applet59"].mode&0o170000 != 0o120000 {
		t.Errorf("applet links: %+v", bin["applet59"])
	}
	if _, err := os.Stat(filepath.Join(e.Dir, LogName)); err != nil {
		t.Errorf("no build log: %v", err)
	}
	if ents, _ := os.ReadDir(e.Dir); len(ents) != 5 {
		t.Errorf("env dir holds %d entries (want vmlinuz, initrd, rootfs, log, manifest)", len(ents))
	}

	// Up to date: no second kernel unpack.
	if _, err := offlineBuild(t, ctx, debs, opts, nil); err != nil || debs.kernels.Load() != 1 {
		t.Errorf("second build: %v, %d kernel unpacks", err, debs.kernels.Load())
	}

	// A damaged environment is rebuilt.
	f, _ := os.OpenFile(e.Rootfs, os.O_RDWR, 0)
	f.WriteAt([]byte("damage"), 1<<20)
	f.Close()
	log.Reset()
	if _, err := offlineBuild(t, ctx, debs, opts, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "rebuilding minimal: environment \"minimal\" is not built (or is incomplete)") || debs.kernels.Load() != 2 {
		t.Errorf("damaged env not rebuilt (%d unpacks):\n%s", debs.kernels.Load(), log.String())
	}

	// A failure at any step leaves the working environment as it was and
	// no temporary directory.
	good, err := Load(root, "minimal")
	if err != nil {
		t.Fatal(err)
	}
	for step := 1; step <= 5; step++ {
		opts.Force = true
		_, err := offlineBuild(t, ctx, debs, opts, func(s int) error {
			if s == step {
				return fmt.Errorf("simulated failure after step %d", s)
			}
			return nil
		})
		if err == nil {
			t.Fatalf("step %d: build succeeded", step)
		}
		e, err := Load(root, "minimal")
		if err != nil {
			t.Fatalf("after failing step %d: %v", step, err)
		}
		if e.Manifest.BuiltAt != good.Manifest.BuiltAt {
			t.Errorf("failing step %d replaced the environment", step)
		}
		if left, _ := filepath.Glob(filepath.Join(root, "envs", ".minimal.*-*")); len(left) > 0 {
			t.Errorf("failing step %d left %v", step, left)
		}
	}
	// A failed first build leaves nothing usable.
	root2 := t.TempDir()
	_, err = offlineBuild(t, ctx, debs, BuildOptions{CacheRoot: root2, Name: "minimal", AgentBinary: agent}, func(s int) error {
		if s == 4 {
			return errors.New("simulated crash")
		}
		return nil
	})
	if err == nil {
		t.Fatal("build succeeded")
	}
	if _, err := Load(root2, "minimal"); err == nil {
		t.Errorf("Load found an environment after a failed first build")
	}
	if ents, _ := os.ReadDir(filepath.Join(root2, "envs")); len(ents) != 1 || ents[0].Name() != ".minimal.lock" {
		t.Errorf("envs after a failed build: %v", ents)
	}
}

func TestBuildCancel(t *testing.T) {
	needMkfs(t)
	root := t.TempDir()
	agent := scriptAgent(t, t.TempDir(), "v1")
	debs := &fakeDebs{block: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := offlineBuild(t, ctx, debs, BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent}, nil)
		done <- err
	}()
	for debs.kernels.Load() == 0 {
		runtimeGosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "envs")); len(ents) != 1 {
		t.Errorf("cancelled build left %v", ents)
	}
}

func TestConcurrentBuilds(t *testing.T) {
	needMkfs(t)
	root := t.TempDir()
	agent := scriptAgent(t, t.TempDir(), "v1")
	debs := &fakeDebs{block: make(chan struct{})}
	var wg sync.WaitGroup
	var logs [2]bytes.Buffer
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = offlineBuild(t, context.Background(), debs,
				BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent, Progress: &logs[i]}, nil)
		}()
	}
	// One build holds the lock and waits in the kernel step; the other
	// waits for the lock.
	for !lockHeld(lockPath(root, "minimal")) || debs.kernels.Load() == 0 {
		runtimeGosched()
	}
	close(debs.block)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v\n%s", i, err, logs[i].String())
		}
	}
	if n := debs.kernels.Load(); n != 1 {
		t.Errorf("%d builds ran, want 1", n)
	}
	both := logs[0].String() + logs[1].String()
	if !strings.Contains(both, "waiting for ") || !strings.Contains(both, "is up to date") {
		t.Errorf("logs:\n%s\n---\n%s", logs[0].String(), logs[1].String())
	}
}

func TestEnsureAndRefresh(t *testing.T) {
	needMkfs(t)
	ctx := context.Background()
	root := t.TempDir()
	agent := scriptAgent(t, t.TempDir(), "v1")
	opts := BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent}
	// Ensure builds what is missing: through Build, so use the fake apt by
	// building first with it, then exercise Ensure's cheap paths.
	if _, err := offlineBuild(t, ctx, &fakeDebs{}, opts, nil); err != nil {
		t.Fatal(err)
	}
	e, err := Ensure(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, _ := os.Stat(e.Rootfs)
	agent2 := scriptAgent(t, t.TempDir(), "v2 with more bytes")
	if ok, _ := e.AgentMatches(agent2); ok {
		t.Errorf("AgentMatches(new agent) = true")
	}
	opts.AgentBinary = agent2
	e2, err := Ensure(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := e2.AgentMatches(agent2); !ok || err != nil {
		t.Errorf("after Ensure: AgentMatches = %v, %v", ok, err)
	}
	rootfs2, _ := os.Stat(e2.Rootfs)
	if !os.SameFile(rootfs, rootfs2) {
		t.Errorf("the root filesystem image was rewritten for a new agent")
	}
	if err := e2.Verify(); err != nil {
		t.Fatal(err)
	}
	checkInitrd(t, e2, agent2)
	// RefreshInitrd with the same agent is a no-op; Force rewrites it.
	e3, err := RefreshInitrd(ctx, opts)
	if err != nil || e3.Manifest.InitrdBuiltAt != e2.Manifest.InitrdBuiltAt {
		t.Errorf("no-op refresh: %v", err)
	}
	opts.Force = true
	if e3, err = RefreshInitrd(ctx, opts); err != nil || !e3.Manifest.InitrdBuiltAt.After(e2.Manifest.InitrdBuiltAt) {
		t.Errorf("forced refresh: %v", err)
	}
	// A damaged initramfs is not copied forward.
	os.WriteFile(e3.Initrd, bytes.Repeat([]byte{0}, int(e3.Manifest.Files[InitrdName].Size)), 0o644)
	if _, err := RefreshInitrd(ctx, opts); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("refresh of a damaged initrd: %v", err)
	}
	// Not built at all: RefreshInitrd says how to build.
	_, err = RefreshInitrd(ctx, BuildOptions{CacheRoot: t.TempDir(), Name: "minimal", AgentBinary: agent})
	wantNotBuilt(t, err, "minimal", "")
}

// runtimeGosched lets the build goroutines run while a test polls.
func runtimeGosched() { time.Sleep(time.Millisecond) }
