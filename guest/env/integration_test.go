package env

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/initramfs"
)

// needRealBuild gates the tests that build environments from real Debian
// packages: they run when PYRO_TEST_ENV_BUILD=1 (they need apt, a Debian
// mirror and e2fsprogs) and, under CI=true, fail rather than skip when
// they cannot.
func needRealBuild(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv("PYRO_TEST_ENV_BUILD") != "1" {
		t.Skip("set PYRO_TEST_ENV_BUILD=1 to build environments from Debian packages (needs apt and network)")
	}
	var missing []string
	for _, tool := range append([]string{"apt-get", "apt-cache", "dpkg-deb", "mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs"}, tools...) {
		if _, err := lookTool(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		if _, err := exec.Command("apt-cache", "show", "--no-all-versions", KernelMeta).Output(); err != nil {
			missing = append(missing, "apt-cache show "+KernelMeta+" (run apt-get update?)")
		}
	}
	if len(missing) > 0 {
		msg := "PYRO_TEST_ENV_BUILD=1 but this host lacks: " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// scriptAgent writes a stand-in for the pyro binary.
func scriptAgent(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n# "+text+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// debugfsEntry is one line of debugfs's "ls -l".
type debugfsEntry struct {
	mode     uint64
	uid, gid int
	name     string
}

func debugfsLs(t *testing.T, img, dir string) map[string]debugfsEntry {
	t.Helper()
	out := tool(t, "debugfs", "-R", "ls -l "+dir, img)
	entries := map[string]debugfsEntry{}
	for _, line := range strings.Split(out, "\n") {
		// " 12   40755 (2)      0      0    4096 26-Nov-2025 20:05 bin"
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasPrefix(f[2], "(") {
			continue
		}
		mode, err1 := strconv.ParseUint(f[1], 8, 32)
		uid, err2 := strconv.Atoi(f[3])
		gid, err3 := strconv.Atoi(f[4])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		name := f[len(f)-1]
		entries[name] = debugfsEntry{mode, uid, gid, name}
	}
	if len(entries) == 0 {
		t.Fatalf("debugfs ls -l %s: no entries:\n%s", dir, out)
	}
	return entries
}

// checkImage runs the checks every built root filesystem image must pass.
func checkImage(t *testing.T, e *Env) {
	t.Helper()
	tool(t, "e2fsck", "-fn", e.Rootfs)
	hdr := tool(t, "dumpe2fs", "-h", e.Rootfs)
	for _, line := range strings.Split(hdr, "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "Filesystem volume name":
			if strings.TrimSpace(v) != RootfsLabel {
				t.Errorf("label %q, want %q", strings.TrimSpace(v), RootfsLabel)
			}
		case "Filesystem features":
			for _, f := range strings.Fields(v) {
				if !slices.Contains(RootfsFeatures, f) {
					t.Errorf("image has ext4 feature %s, not in RootfsFeatures (what Linux 6.1 is known to mount)", f)
				}
			}
		}
	}
	// Everything is owned by root; groups are root or system groups
	// (Debian's /etc/shadow is root:shadow).
	for _, dir := range []string{"/", "/etc", "/usr/bin", "/root"} {
		for name, ent := range debugfsLs(t, e.Rootfs, dir) {
			if ent.uid != 0 || ent.gid >= 1000 {
				t.Errorf("%s/%s is owned by %d:%d, want root", dir, name, ent.uid, ent.gid)
			}
		}
	}
	root := debugfsLs(t, e.Rootfs, "/")
	for _, d := range []string{"workspace", "tmp", "proc", "sys", "dev", "etc"} {
		if _, ok := root[d]; !ok {
			t.Errorf("rootfs has no /%s", d)
		}
	}
	if tmp := root["tmp"]; tmp.mode&0o1777 != 0o1777 {
		t.Errorf("/tmp has mode %o, want 1777", tmp.mode)
	}
	if got := tool(t, "debugfs", "-R", "cat /etc/hostname", e.Rootfs); !strings.Contains(got, Hostname) {
		t.Errorf("/etc/hostname: %q", got)
	}
}

// checkInitrd checks the initramfs's layout and module order.
func checkInitrd(t *testing.T, e *Env, agent string) {
	t.Helper()
	data, err := os.ReadFile(e.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ReadInitrd(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]CpioEntry{}
	for _, en := range entries {
		byName[en.Name] = en
	}
	want, _ := os.ReadFile(agent)
	if in := byName["init"]; !bytes.Equal(in.Data, want) || in.Mode != CpioFile|0o755 {
		t.Errorf("/init is not the agent (mode %o, %d bytes)", in.Mode, len(in.Data))
	}
	if c := byName["dev/console"]; c.Mode != CpioCharDev|0o600 || c.RMajor != 5 || c.RMin != 1 {
		t.Errorf("/dev/console: %+v", c)
	}
	for _, d := range []string{"proc", "sys", "dev", "newroot"} {
		if byName[d].Mode&CpioTypeMask != CpioDir {
			t.Errorf("no /%s directory", d)
		}
	}
	order := strings.Fields(string(byName[strings.TrimPrefix(ModulesOrderPath, "/")].Data))
	if len(order) == 0 {
		t.Fatalf("empty %s", ModulesOrderPath)
	}
	if strings.Join(order, " ") != strings.Join(e.Manifest.Kernel.InitrdModules, " ") {
		t.Errorf("modules.order %v, manifest %v", order, e.Manifest.Kernel.InitrdModules)
	}
	pos := map[string]int{}
	for i, p := range order {
		en, ok := byName[strings.TrimPrefix(p, "/")]
		if !ok || !bytes.HasPrefix(en.Data, []byte("\x7fELF")) {
			t.Errorf("modules.order lists %s, which the initramfs lacks or is not ELF", p)
		}
		if !strings.HasPrefix(p, "/lib/modules/"+e.Manifest.Kernel.Release+"/") {
			t.Errorf("module %s is not under /lib/modules/%s", p, e.Manifest.Kernel.Release)
		}
		pos[moduleName(p)] = i
	}
	before := [][2]string{
		{"virtio_ring", "virtio"}, {"virtio", "virtio_mmio"}, {"virtio_mmio", "virtio_blk"},
		{"failover", "net_failover"}, {"net_failover", "virtio_net"},
		{"vsock", "vmw_vsock_virtio_transport_common"}, {"vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
	}
	for _, pair := range before {
		a, aok := pos[pair[0]]
		b, bok := pos[pair[1]]
		builtinA := slices.Contains(e.Manifest.Kernel.BuiltinModules, pair[0])
		builtinB := slices.Contains(e.Manifest.Kernel.BuiltinModules, pair[1])
		if (!aok && !builtinA) || (!bok && !builtinB) {
			t.Errorf("%s or %s is neither in modules.order nor built in", pair[0], pair[1])
			continue
		}
		if aok && bok && a > b {
			t.Errorf("modules.order loads %s before %s", pair[1], pair[0])
		}
	}
}

func TestBuildMinimalReal(t *testing.T) {
	needRealBuild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := t.TempDir()
	agent := scriptAgent(t, t.TempDir(), "agent v1")
	var log bytes.Buffer
	start := time.Now()
	e, err := Build(ctx, BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent, Progress: &log})
	t.Logf("build output:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("minimal built in %s: kernel %s, initrd %d bytes, rootfs %d bytes, modules %v, built in %v",
		time.Since(start).Round(time.Millisecond), e.Manifest.Kernel.Package, e.Manifest.Files[InitrdName].Size,
		e.Manifest.Files[RootfsName].Size, e.Manifest.Kernel.InitrdModules, e.Manifest.Kernel.BuiltinModules)
	if !strings.Contains(log.String(), "[2/5]") {
		t.Errorf("no step lines in the progress output")
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	checkImage(t, e)
	bin := debugfsLs(t, e.Rootfs, "/bin")
	for name, ent := range bin {
		if ent.uid != 0 || ent.gid != 0 {
			t.Errorf("/bin/%s is owned by %d:%d, want 0:0", name, ent.uid, ent.gid)
		}
	}
	if bin["busybox"].mode&0o170000 != 0o100000 {
		t.Errorf("/bin/busybox is missing or not a file: %+v", bin["busybox"])
	}
	if osr := tool(t, "debugfs", "-R", "cat /etc/os-release", e.Rootfs); !strings.Contains(osr, "pyro minimal") {
		t.Errorf("/etc/os-release: %q", osr)
	}
	checkInitrd(t, e, agent)
	if len(e.Manifest.Packages) != 1 || e.Manifest.Packages[0].Name != "busybox-static" {
		t.Errorf("packages %+v", e.Manifest.Packages)
	}
	bootCheck(t, e)

	// A second build finds it built and verified.
	log.Reset()
	t0 := time.Now()
	e2, err := Build(ctx, BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent, Progress: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "up to date") || e2.Manifest.BuiltAt != e.Manifest.BuiltAt {
		t.Errorf("second build rebuilt:\n%s", log.String())
	}
	t.Logf("up-to-date check: %s", time.Since(t0).Round(time.Millisecond))

	// A new agent rebuilds only the initramfs: same rootfs inode.
	before, _ := os.Stat(e.Rootfs)
	agent2 := scriptAgent(t, t.TempDir(), "agent v2, a bit longer")
	log.Reset()
	t0 = time.Now()
	e3, err := Build(ctx, BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent2, Progress: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd refresh: %s\n%s", time.Since(t0).Round(time.Millisecond), log.String())
	after, _ := os.Stat(e3.Rootfs)
	if !os.SameFile(before, after) {
		t.Errorf("rootfs.ext4 was rebuilt for a new agent")
	}
	if e3.Manifest.BuiltAt != e.Manifest.BuiltAt || e3.Manifest.Agent.SHA256 == e.Manifest.Agent.SHA256 {
		t.Errorf("manifest after refresh: built %v (was %v), agent %s", e3.Manifest.BuiltAt, e.Manifest.BuiltAt, e3.Manifest.Agent.SHA256)
	}
	if err := e3.Verify(); err != nil {
		t.Fatal(err)
	}
	checkInitrd(t, e3, agent2)
	if ok, err := e3.AgentMatches(agent2); !ok || err != nil {
		t.Errorf("AgentMatches(new agent) = %v, %v", ok, err)
	}

	// A forced rebuild that fails midway leaves the working environment
	// alone and no temporary directory behind.
	_, err = build(ctx, BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: agent2, Force: true},
		buildHooks{afterStep: func(step int) error {
			if step == 4 {
				return errors.New("simulated failure")
			}
			return nil
		}})
	if err == nil || !strings.Contains(err.Error(), "simulated failure") {
		t.Fatalf("build with a failing step: %v", err)
	}
	e4, err := Load(root, "minimal")
	if err != nil {
		t.Fatal(err)
	}
	if e4.Manifest.Files[RootfsName] != e3.Manifest.Files[RootfsName] {
		t.Errorf("failed build replaced the environment")
	}
	if left, _ := filepath.Glob(filepath.Join(root, "envs", ".minimal.*-*")); len(left) > 0 {
		t.Errorf("failed build left %v", left)
	}
	st := List(root)
	if st[0].State != StateBuilt || st[1].State != StateNotBuilt {
		t.Errorf("List: %+v %+v", st[0].State, st[1].State)
	}
}

// TestBuildDebianReal builds a Debian environment: it takes minutes, so it
// runs only when PYRO_TEST_ENV_BUILD_DEBIAN names one (debian-12 or
// debian-12-build). PYRO_TEST_ENV_CACHE keeps the result in that cache root.
func TestBuildDebianReal(t *testing.T) {
	name := os.Getenv("PYRO_TEST_ENV_BUILD_DEBIAN")
	if name == "" {
		t.Skip("set PYRO_TEST_ENV_BUILD_DEBIAN=debian-12 (and PYRO_TEST_ENV_BUILD=1) to build a Debian environment (minutes)")
	}
	needRealBuild(t, "mmdebstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root := os.Getenv("PYRO_TEST_ENV_CACHE")
	if root == "" {
		root = t.TempDir()
	}
	agent := scriptAgent(t, t.TempDir(), "agent")
	start := time.Now()
	e, err := Build(ctx, BuildOptions{CacheRoot: root, Name: name, AgentBinary: agent, Progress: testWriter{t},
		Verbose: os.Getenv("PYRO_TEST_ENV_VERBOSE") == "1", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s built in %s: vmlinuz %d, initrd %d, rootfs %d bytes (content %d bytes, %d files, %d inodes), %d packages",
		name, time.Since(start).Round(time.Second), e.Manifest.Files[KernelName].Size, e.Manifest.Files[InitrdName].Size,
		e.Manifest.Files[RootfsName].Size, e.Manifest.Rootfs.ContentBytes, e.Manifest.Rootfs.Files, e.Manifest.Rootfs.Inodes,
		len(e.Manifest.Packages))
	t0 := time.Now()
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Verify: %s", time.Since(t0).Round(time.Millisecond))
	checkImage(t, e)
	checkInitrd(t, e, agent)
	bootCheck(t, e)
	// Group ownership set by maintainer scripts survives (root:shadow, 42).
	if sh := debugfsLs(t, e.Rootfs, "/etc")["shadow"]; sh.uid != 0 || sh.gid != 42 {
		t.Errorf("/etc/shadow owned by %d:%d, want 0:42", sh.uid, sh.gid)
	}
	for _, p := range []string{"/usr/bin/git", "/usr/bin/python3", "/usr/bin/curl", "/usr/bin/rg", "/usr/bin/jq"} {
		out := tool(t, "debugfs", "-R", "stat "+p, e.Rootfs)
		if !strings.Contains(out, "Inode:") {
			t.Errorf("%s missing from the image", p)
		}
	}
	spec, _ := Lookup(name)
	for _, pkg := range spec.Packages {
		found := false
		for _, p := range e.Manifest.Packages {
			found = found || p.Name == pkg
		}
		if !found {
			t.Errorf("package %s not in the manifest's package list", pkg)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// bootScript is the test /init for bootCheck: it does what pyro's agent
// does before switching root (load the modules in modules.order, mount the
// root disk) and reports what it found.
const bootScript = `#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /lib/modules/pyro/modules.order); do $B insmod $m || echo "INSMOD-FAIL $m"; done
echo "BLOCK: $($B ls /sys/block)"
echo "NET: $($B ls /sys/class/net | $B tr '\n' ' ')"
$B test -c /dev/vsock && echo VSOCK-OK
$B mount -t ext4 -o ro /dev/vda /newroot && echo MOUNT-OK
$B test -d /newroot/workspace && echo WORKSPACE-OK
$B dmesg | $B grep -i -E "EXT4-fs (error|warning)"
$B chroot /newroot /bin/sh -c 'echo CHROOT-OK $(cat /etc/hostname)'
$B poweroff -f
`

// bootCheck boots the environment's kernel and initramfs under QEMU (TCG,
// microvm with ACPI: virtio-mmio devices in the DSDT, as pyro's VMM
// describes them) with a test /init that loads the modules and mounts the
// root filesystem image. It runs when PYRO_TEST_ENV_BOOT=1.
func bootCheck(t *testing.T, e *Env) {
	t.Helper()
	if os.Getenv("PYRO_TEST_ENV_BOOT") != "1" {
		t.Log("boot check skipped: set PYRO_TEST_ENV_BOOT=1 (needs qemu-system-x86_64)")
		return
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("PYRO_TEST_ENV_BOOT=1: qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
	}
	dir := t.TempDir()
	// The test /init runs the busybox of the minimal environment built in
	// the same cache root (built now if it is not there).
	bb := filepath.Join(dir, "busybox")
	root := filepath.Dir(filepath.Dir(e.Dir))
	minimal, err := Load(root, "minimal")
	if err != nil {
		if minimal, err = Build(context.Background(), BuildOptions{CacheRoot: root, Name: "minimal", AgentBinary: scriptAgent(t, dir, "x")}); err != nil {
			t.Fatal(err)
		}
	}
	tool(t, "debugfs", "-R", "dump /bin/busybox "+bb, minimal.Rootfs)
	if fi, err := os.Stat(bb); err != nil || fi.Size() == 0 {
		t.Fatalf("boot check needs the minimal environment's busybox: %v", err)
	}
	bbData, _ := os.ReadFile(bb)
	initrd, _ := os.ReadFile(e.Initrd)
	var over bytes.Buffer
	a := initramfs.NewWriter(&over)
	a.File("/bin/busybox", 0o755, bbData)
	a.File("/init", 0o755, []byte(bootScript)) // replaces the agent: later entries win
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	cpio := filepath.Join(dir, "boot.cpio")
	os.WriteFile(cpio, append(initrd, over.Bytes()...), 0o644)
	// QEMU's TCG microvm now and then hangs early in the kernel's boot
	// (timer calibration; nothing of ours has run yet): such an attempt is
	// retried.
	var out []byte
	for attempt := 1; attempt <= 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		out, err = exec.CommandContext(ctx, qemu, "-accel", "tcg", "-M", "microvm,acpi=on,pit=on,pic=on,rtc=on",
			"-cpu", "max", "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
			"-no-reboot", "-serial", "stdio", "-kernel", e.Kernel, "-initrd", cpio,
			"-append", "console=ttyS0 panic=-1 quiet lpj=1671168",
			"-drive", "id=d,file="+e.Rootfs+",format=raw,if=none,snapshot=on,readonly=on",
			"-device", "virtio-blk-device,drive=d",
			"-netdev", "user,id=n", "-device", "virtio-net-device,netdev=n").CombinedOutput()
		cancel()
		t.Logf("QEMU boot of %s, attempt %d: %s", e.Name, attempt, time.Since(start).Round(100*time.Millisecond))
		if ctx.Err() == nil || bytes.Contains(out, []byte("BLOCK:")) {
			break
		}
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	for _, want := range []string{"BLOCK: vda", "NET: eth0", "VSOCK-OK", "MOUNT-OK", "WORKSPACE-OK", "CHROOT-OK " + Hostname} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("boot output lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("INSMOD-FAIL")) || bytes.Contains(out, []byte("EXT4-fs error")) {
		t.Errorf("boot reported failures")
	}
	if t.Failed() {
		t.Logf("console:\n%s", out)
	}
}
