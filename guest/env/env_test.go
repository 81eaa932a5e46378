package env

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/initramfs"
)

func sampleManifest() *Manifest {
	t := time.Date(2025, 5, 20, 12, 0, 0, 0, time.UTC)
	return &Manifest{
		Format: FormatVersion, Name: "minimal", Description: "d", Builder: BuilderVersion,
		PyroVersion: "v0.1", SpecDigest: "abc", BuiltAt: t, BuildSeconds: 5.5, InitrdBuiltAt: t.Add(time.Hour),
		BuildMode: "busybox",
		Kernel: KernelInfo{Package: "linux-image-6.1.0-56-cloud-amd64", Version: "6.1.192-2", Release: "6.1.0-56-cloud-amd64",
			InitrdModules: []string{"/lib/modules/r/kernel/a.ko"}, BuiltinModules: []string{"ext4"}},
		Agent:    FileInfo{Path: "/usr/bin/pyro", Size: 3, SHA256: "00"},
		Packages: []Package{{"busybox-static", "1:1.35.0-4"}},
		Rootfs:   RootfsInfo{Label: RootfsLabel, ContentBytes: 1, Files: 2, Inodes: 3},
		Files:    map[string]File{KernelName: {1, "a"}, InitrdName: {2, "b"}, RootfsName: {3, "c"}},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	b, err := jsonIndent(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*m, back) {
		t.Errorf("round trip:\n%+v\n%+v", *m, back)
	}
	for _, key := range []string{`"format": 1`, `"sha256": "a"`, `"release": "6.1.0-56-cloud-amd64"`, `"initrd_modules"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("manifest JSON lacks %s:\n%s", key, b)
		}
	}
}

// fakeEnv writes a complete environment with made-up contents.
func fakeEnv(t *testing.T, root, name string) *Env {
	t.Helper()
	dir := Dir(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := sampleManifest()
	m.Name = name
	spec, _ := Lookup(name)
	m.SpecDigest = spec.digest()
	m.Files = map[string]File{}
	for i, f := range requiredFiles {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := hashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m.Files[f] = h
	}
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	e, err := Load(root, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantNotBuilt(t *testing.T, err error, name, reason string) {
	t.Helper()
	var nb *NotBuiltError
	if !errors.As(err, &nb) {
		t.Fatalf("error %v (%T), want *NotBuiltError", err, err)
	}
	fix := fmt.Sprintf("environment %q is not built (or is incomplete): run pyro env build %s", name, name)
	if !strings.HasPrefix(err.Error(), fix) {
		t.Errorf("message %q does not start with %q", err, fix)
	}
	if !strings.Contains(nb.Reason, reason) {
		t.Errorf("reason %q, want it to mention %q", nb.Reason, reason)
	}
}

func TestLoadAndVerify(t *testing.T) {
	root := t.TempDir()
	_, err := Load(root, "debian-12")
	wantNotBuilt(t, err, "debian-12", "")
	if err.Error() != `environment "debian-12" is not built (or is incomplete): run pyro env build debian-12` {
		t.Errorf("absent env: %q", err)
	}
	if _, err := Load(root, "nosuch"); err == nil || !strings.Contains(err.Error(), "minimal, debian-12") {
		t.Errorf("unknown env: %v", err)
	}

	e := fakeEnv(t, root, "debian-12")
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	if e.Kernel != filepath.Join(root, "envs", "debian-12", "vmlinuz") || e.Rootfs == "" || e.Initrd == "" {
		t.Errorf("paths: %+v", e)
	}

	// A flipped byte keeps the size: Load passes, Verify fails.
	f, _ := os.OpenFile(e.Rootfs, os.O_RDWR, 0)
	f.WriteAt([]byte{'X'}, 1500)
	f.Close()
	if _, err := Load(root, "debian-12"); err != nil {
		t.Errorf("Load after a flipped byte: %v", err)
	}
	wantNotBuilt(t, e.Verify(), "debian-12", "rootfs.ext4 is damaged")

	// A truncated file fails Load.
	os.Truncate(e.Initrd, 10)
	_, err = Load(root, "debian-12")
	wantNotBuilt(t, err, "debian-12", "initrd.cpio is 10 bytes; the manifest says 2000")

	// A missing file fails Load.
	os.Remove(e.Kernel)
	_, err = Load(root, "debian-12")
	wantNotBuilt(t, err, "debian-12", "vmlinuz is missing")

	// No manifest (a directory someone made by hand) is incomplete.
	os.Remove(filepath.Join(e.Dir, ManifestName))
	_, err = Load(root, "debian-12")
	wantNotBuilt(t, err, "debian-12", "has no manifest.json")

	// A manifest from another format, or naming another environment.
	e = fakeEnv(t, root, "minimal")
	m := e.Manifest
	m.Format = 99
	writeManifest(e.Dir, &m)
	_, err = Load(root, "minimal")
	wantNotBuilt(t, err, "minimal", "format 99")
	m.Format, m.Name = FormatVersion, "debian-12"
	writeManifest(e.Dir, &m)
	_, err = Load(root, "minimal")
	wantNotBuilt(t, err, "minimal", `names environment "debian-12"`)
	os.WriteFile(filepath.Join(e.Dir, ManifestName), []byte("{"), 0o644)
	_, err = Load(root, "minimal")
	wantNotBuilt(t, err, "minimal", "manifest.json")
}

func TestList(t *testing.T) {
	root := t.TempDir()
	fakeEnv(t, root, "minimal")
	e := fakeEnv(t, root, "debian-12-build")
	os.Truncate(e.Rootfs, 1)
	st := List(root)
	if len(st) != len(Specs()) {
		t.Fatalf("List: %d entries", len(st))
	}
	byName := map[string]Status{}
	for _, s := range st {
		byName[s.Spec.Name] = s
	}
	if s := byName["minimal"]; s.State != StateBuilt || s.Size != 6000 || s.Env == nil || s.Outdated != "" {
		t.Errorf("minimal: %+v", s)
	}
	if s := byName["debian-12"]; s.State != StateNotBuilt {
		t.Errorf("debian-12: %+v", s)
	}
	if s := byName["debian-12-build"]; s.State != StateBroken || !strings.Contains(s.Reason, "pyro env build debian-12-build") {
		t.Errorf("debian-12-build: %+v", s)
	}
	// An environment built from another package list is outdated.
	m := byName["minimal"].Env.Manifest
	m.SpecDigest = "old"
	writeManifest(byName["minimal"].Env.Dir, &m)
	if s := List(root)[0]; s.State != StateBuilt || s.Outdated == "" {
		t.Errorf("outdated: %+v", s)
	}
}

func TestSpecs(t *testing.T) {
	names := map[string]bool{}
	for _, s := range Specs() {
		if names[s.Name] {
			t.Errorf("duplicate %s", s.Name)
		}
		names[s.Name] = true
		if s.KernelPackage != KernelMeta || s.MinBytes <= 0 || s.Description == "" {
			t.Errorf("%s: %+v", s.Name, s)
		}
		if s.Base == BaseDebian && (s.Suite != "bookworm" || !slices.Contains(s.Packages, "python3")) {
			t.Errorf("%s: %+v", s.Name, s)
		}
	}
	for _, n := range []string{"minimal", "debian-12", "debian-12-build"} {
		if !names[n] {
			t.Errorf("no %s", n)
		}
	}
	b, _ := Lookup("debian-12-build")
	if !slices.Contains(b.Packages, "build-essential") || !slices.Contains(b.Packages, "git") {
		t.Errorf("debian-12-build packages: %v", b.Packages)
	}
	d, _ := Lookup("debian-12")
	if slices.Contains(d.Packages, "build-essential") {
		t.Errorf("debian-12 has build-essential (shared slice?)")
	}
	Specs()[1].Packages[0] = "mutated"
	if d2, _ := Lookup("debian-12"); d2.Packages[0] == "mutated" {
		t.Errorf("Specs returns the table itself")
	}
	if d.digest() == b.digest() {
		t.Errorf("digests equal")
	}
}

func TestDefaultCacheRoot(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if got := DefaultCacheRoot(); got != "/x/cache/pyro" {
		t.Errorf("with XDG_CACHE_HOME: %s", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := DefaultCacheRoot(); got != "/home/u/.cache/pyro" {
		t.Errorf("without: %s", got)
	}
}

func TestLock(t *testing.T) {
	root := t.TempDir()
	path := lockPath(root, "minimal")
	release, err := acquireLock(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !lockHeld(path) {
		t.Errorf("lockHeld = false while held")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var waitedFor int
	if _, err := acquireLock(ctx, path, func(pid int) { waitedFor = pid }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second acquire: %v", err)
	}
	if waitedFor != os.Getpid() {
		t.Errorf("waiting callback got pid %d, want %d", waitedFor, os.Getpid())
	}

	// A waiter gets the lock as soon as it is released.
	got := make(chan error, 1)
	go func() {
		r, err := acquireLock(context.Background(), path, nil)
		if err == nil {
			r()
		}
		got <- err
	}()
	time.Sleep(150 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("waiter got the lock while it was held: %v", err)
	default:
	}
	release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got the lock")
	}
	if lockHeld(path) {
		t.Errorf("lockHeld = true after release")
	}

	// Another process holding it blocks us; its death releases it.
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), "PYRO_ENV_LOCK_HELPER="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !lockHeld(path) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !lockHeld(path) {
		t.Fatal("child never took the lock")
	}
	if pid := lockHolder(path); pid != cmd.Process.Pid {
		t.Errorf("lock file names pid %d, want the child's %d", pid, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	r, err := acquireLock(ctx2, path, nil)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	r()
}

// TestLockHelper is the other process of TestLock: it takes the lock and
// sleeps until killed.
func TestLockHelper(t *testing.T) {
	path := os.Getenv("PYRO_ENV_LOCK_HELPER")
	if path == "" {
		t.Skip("helper process for TestLock")
	}
	if _, err := acquireLock(context.Background(), path, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
}

func TestBuildAtomically(t *testing.T) {
	root := t.TempDir()
	envs := filepath.Join(root, "envs")

	// A failing fill leaves nothing: no environment, no temporary dir.
	err := buildAtomically(root, "minimal", func(tmp string) error {
		os.WriteFile(filepath.Join(tmp, KernelName), []byte("k"), 0o644)
		os.WriteFile(filepath.Join(tmp, ManifestName), []byte("{}"), 0o644)
		return errors.New("boom")
	})
	if err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(envs); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if _, err := Load(root, "minimal"); err == nil {
		t.Errorf("Load succeeded after a failed build")
	}

	// A crash mid-build leaves a temporary directory, even a complete
	// one: Load ignores it and the next build removes it.
	good := fakeEnv(t, t.TempDir(), "minimal")
	stale := filepath.Join(envs, ".minimal.build-crashed")
	os.MkdirAll(stale, 0o755)
	for _, f := range append(requiredFiles, ManifestName) {
		linkOrCopy(filepath.Join(good.Dir, f), filepath.Join(stale, f))
	}
	os.Chmod(stale, 0o500) // a non-root build may leave read-only dirs
	if _, err := Load(root, "minimal"); err == nil {
		t.Errorf("Load used a temporary build directory")
	}
	fill := func(content string) func(string) error {
		return func(tmp string) error {
			return os.WriteFile(filepath.Join(tmp, "marker"), []byte(content), 0o644)
		}
	}
	if err := buildAtomically(root, "minimal", fill("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale build directory not removed: %v", err)
	}
	// A rebuild replaces the directory in one step.
	if err := buildAtomically(root, "minimal", fill("two")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(envs, "minimal", "marker")); string(b) != "two" {
		t.Errorf("marker %q after rebuild", b)
	}
	if ents, _ := os.ReadDir(envs); len(ents) != 1 {
		t.Errorf("envs holds %d entries, want 1", len(ents))
	}
	// A failing rebuild keeps the old one.
	buildAtomically(root, "minimal", func(tmp string) error { return errors.New("boom") })
	if b, _ := os.ReadFile(filepath.Join(envs, "minimal", "marker")); string(b) != "two" {
		t.Errorf("marker %q after a failed rebuild", b)
	}
}

func TestMountsUnder(t *testing.T) {
	if m := mountsUnder("/proc"); len(m) == 0 || m[0] != "/proc" {
		t.Errorf("mountsUnder(/proc) = %v", m)
	}
	if m := mountsUnder(t.TempDir()); len(m) != 0 {
		t.Errorf("mounts under a fresh temp dir: %v", m)
	}
	if got := unescapeMountinfo(`/a\040b`); got != "/a b" {
		t.Errorf("unescape: %q", got)
	}
}

func TestInspectAgent(t *testing.T) {
	dir := t.TempDir()
	script := scriptAgent(t, dir, "x")
	fi, err := inspectAgent(script)
	if err != nil || fi.Size == 0 || len(fi.SHA256) != 64 {
		t.Errorf("script agent: %+v %v", fi, err)
	}
	if _, err := inspectAgent(""); err == nil || !strings.Contains(err.Error(), "os.Executable") {
		t.Errorf("empty: %v", err)
	}
	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("hello"), 0o755)
	if _, err := inspectAgent(data); err == nil {
		t.Errorf("accepted a data file")
	}
	os.Chmod(script, 0o644)
	if _, err := inspectAgent(script); err == nil {
		t.Errorf("accepted a non-executable file")
	}
	// The test binary itself is dynamically linked when built with -race
	// (cgo); a static one must pass.
	exe, _ := os.Executable()
	if _, err := inspectAgent(exe); err != nil && !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("test binary: %v", err)
	}
}

func TestReadInitrd(t *testing.T) {
	var buf bytes.Buffer
	a := initramfs.NewWriter(&buf)
	a.Dir("/tmp", 0o777|os.ModeSticky)
	a.CharDev("/dev/console", 0o600, 5, 1)
	a.File("/lib/modules/r/kernel/a.ko", 0o644, []byte("\x7fELF-a"))
	a.Symlink("/bin/sh", "busybox")
	a.File("/init", 0o755, []byte("old init"))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// A second archive appended (as early-microcode images are) is read too.
	b := initramfs.NewWriter(&buf)
	b.File("/extra", 0o600, []byte("x"))
	b.Close()

	entries, err := ReadInitrd(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, " "); got != "tmp dev dev/console lib lib/modules lib/modules/r lib/modules/r/kernel lib/modules/r/kernel/a.ko bin bin/sh init extra" {
		t.Errorf("entries: %s", got)
	}
	if entries[0].Mode != CpioDir|0o1777 {
		t.Errorf("tmp mode %o", entries[0].Mode)
	}

	agent := scriptAgent(t, t.TempDir(), "new agent")
	var out bytes.Buffer
	if err := rewriteInitrd(&out, entries, agent); err != nil {
		t.Fatal(err)
	}
	again, err := ReadInitrd(&out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(agent)
	if len(again) != len(entries) {
		t.Fatalf("rewritten: %d entries, want %d", len(again), len(entries))
	}
	if last := again[len(again)-1]; last.Name != "init" || !bytes.Equal(last.Data, want) || last.Mode != CpioFile|0o755 {
		t.Errorf("init not replaced: %+v", last)
	}
	byName := map[string]CpioEntry{}
	for _, e := range again {
		byName[e.Name] = e
	}
	for _, old := range entries {
		if old.Name == "init" {
			continue
		}
		if !reflect.DeepEqual(byName[old.Name], old) {
			t.Errorf("%s: %+v, was %+v", old.Name, byName[old.Name], old)
		}
	}
	if _, err := ReadInitrd(strings.NewReader("070701garbage")); err == nil {
		t.Errorf("accepted a truncated archive")
	}
	if _, err := ReadInitrd(strings.NewReader("\x1f\x8bgzip...")); err == nil {
		t.Errorf("accepted a compressed archive")
	}
}

func TestSources(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	write("etc/apt/sources.list.d/debian.sources", `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian
Suites: bookworm-backports
Components: main
Enabled: no
`)
	write("etc/apt/sources.list.d/node.sources", `Types: deb
URIs: https://node.example/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/other.gpg
`)
	write("etc/apt/sources.list.d/other.list", "deb https://cloud.example/apt cloud-sdk-bookworm main\n# deb http://x bookworm main\n")
	got, err := debianSources(root, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main",
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm-updates main",
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian-security bookworm-security main",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A trixie host lends its Debian archive, renamed to bookworm.
	root2 := t.TempDir()
	root = root2
	write("etc/apt/sources.list", "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ trixie main contrib\n"+
		"deb http://m.example/debian trixie-updates main\ndeb http://m.example/debian trixie-backports main\n"+
		"deb http://s.example/debian-security trixie-security main\n")
	got, err = debianSources(root2, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main",
		"deb http://m.example/debian bookworm-updates main",
		"deb http://s.example/debian-security bookworm-security main",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("derived sources:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// No Debian source at all: say what to do.
	root = t.TempDir()
	write("etc/apt/sources.list", "deb http://archive.example/ubuntu noble main\n")
	if _, err := debianSources(root, "bookworm"); err == nil || !strings.Contains(err.Error(), "Mirrors") {
		t.Errorf("no Debian source: %v", err)
	}
}

func TestTailBufferAndHumanBytes(t *testing.T) {
	tb := &tailBuffer{max: 2}
	fmt.Fprint(tb, "a\nb\nc\npartial")
	if got := tb.String(); got != "    b\n    c\n    partial" {
		t.Errorf("tail %q", got)
	}
	if humanBytes(606*mib) != "606.0 MiB" || humanBytes(3<<30) != "3.00 GiB" || humanBytes(12) != "12 B" {
		t.Errorf("humanBytes")
	}
}

func TestProgressConcurrent(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); p.info("x") }()
	}
	wg.Wait()
	if strings.Count(buf.String(), "x\n") != 4 {
		t.Errorf("progress: %q", buf.String())
	}
}

func TestCheckToolsMessage(t *testing.T) {
	t.Setenv("PATH", "")
	old := toolDirs
	toolDirs = nil
	defer func() { toolDirs = old }()
	spec, _ := Lookup("debian-12")
	err := (&builder{spec: spec, asRoot: false}).checkTools()
	if err == nil {
		t.Fatal("no error with an empty PATH")
	}
	want := "sudo apt-get install apt dpkg e2fsprogs mmdebstrap tar uidmap fakeroot"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "mmdebstrap") {
		t.Errorf("message %q lacks %q", err, want)
	}
	spec, _ = Lookup("minimal")
	err = (&builder{spec: spec, asRoot: true}).checkTools()
	if err == nil || strings.Contains(err.Error(), "mmdebstrap") || strings.Contains(err.Error(), "fakeroot") {
		t.Errorf("minimal as root: %v", err)
	}
}
