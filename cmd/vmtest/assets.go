package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/guest/debian"
)

// Manifest describes an assets directory; paths are relative to it.
type Manifest struct {
	KernelPackage  string   `json:"kernel_package"`  // linux-image-6.1.0-NN-cloud-amd64
	KernelVersion  string   `json:"kernel_version"`  // its Debian version
	KernelRelease  string   `json:"kernel_release"`  // uname -r of the kernel
	BusyboxPackage string   `json:"busybox_package"` // busybox-static
	BusyboxVersion string   `json:"busybox_version"` // its Debian version
	Kernel         string   `json:"kernel"`          // bzImage
	Modules        string   `json:"modules"`         // the kernel's lib/modules/<release> tree
	Busybox        string   `json:"busybox"`         // static busybox binary
	KVMModules     []string `json:"kvm_modules"`     // uncompressed, in insmod order
}

const manifestName = "manifest.json"

// kvmModules are the L1 modules, in load order, relative to lib/modules/<release>/kernel.
var kvmModules = []string{"virt/lib/irqbypass.ko", "arch/x86/kvm/kvm.ko", "arch/x86/kvm/kvm-amd.ko"}

// readManifest loads dir's manifest and checks that every file it names exists.
func readManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", manifestName, err)
	}
	for _, p := range append([]string{m.Kernel, m.Modules, m.Busybox}, m.KVMModules...) {
		if p == "" {
			return nil, fmt.Errorf("%s: incomplete", manifestName)
		}
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return nil, err
		}
	}
	if len(m.KVMModules) != len(kvmModules) {
		return nil, fmt.Errorf("%s: want %d KVM modules", manifestName, len(kvmModules))
	}
	return &m, nil
}

func cmdAssets(args []string) error {
	fs := flag.NewFlagSet("assets", flag.ExitOnError)
	dir := fs.String("dir", "build/assets", "assets directory")
	kernelPkg := fs.String("kernel", "linux-image-cloud-amd64", "Debian kernel package or metapackage")
	_ = fs.Parse(args)
	if fs.NArg() != 0 {
		return fmt.Errorf("assets: unexpected arguments %q", fs.Args())
	}
	ctx, stop := signalContext()
	defer stop()
	if _, err := ensureAssets(ctx, *dir, *kernelPkg); err != nil {
		return err
	}
	return ensureQEMU(ctx, *dir)
}

// ensureAssets makes dir hold the current Debian kernel, its KVM modules and
// busybox. Versions are resolved with apt-cache on every run (cheap, local);
// when they match the manifest nothing else happens.
func ensureAssets(ctx context.Context, dir, kernelMeta string) (*Manifest, error) {
	start := time.Now()
	old, oldErr := readManifest(dir)
	mpath := filepath.Join(dir, manifestName)
	if oldErr == nil && newerThanAptLists(mpath) {
		logf("assets up to date in %s: %s %s (%s), busybox %s (apt lists unchanged since)",
			dir, old.KernelPackage, old.KernelVersion, old.KernelRelease, old.BusyboxVersion)
		return old, nil
	}
	var kpkg, kver, bver string
	var kerr, berr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, bver, berr = debian.Resolve(ctx, "busybox-static")
	}()
	kpkg, kver, kerr = debian.Resolve(ctx, kernelMeta)
	<-done
	err := errors.Join(kerr, berr)
	if err != nil {
		if oldErr == nil {
			logf("cannot resolve current packages (%v); keeping %s %s", err, old.KernelPackage, old.KernelVersion)
			return old, nil
		}
		return nil, err
	}
	if oldErr == nil && old.KernelPackage == kpkg && old.KernelVersion == kver && old.BusyboxVersion == bver {
		now := time.Now()
		_ = os.Chtimes(mpath, now, now) // checked against the current apt lists
		logf("assets up to date in %s: %s %s (%s), busybox %s", dir, kpkg, kver, old.KernelRelease, bver)
		return old, nil
	}

	debs := filepath.Join(dir, "debs")
	roots := filepath.Join(dir, "root")
	unpack := func(pkg, ver string) (string, error) {
		logf("fetching %s %s", pkg, ver)
		deb, err := debian.Fetch(ctx, debs, pkg, ver)
		if err != nil {
			return "", err
		}
		root := filepath.Join(roots, strings.TrimSuffix(filepath.Base(deb), ".deb"))
		if _, err := os.Stat(root); err == nil {
			return root, nil
		}
		logf("unpacking %s", filepath.Base(deb))
		return root, debian.Extract(ctx, deb, root)
	}
	kroot, err := unpack(kpkg, kver)
	if err != nil {
		return nil, err
	}
	broot, err := unpack("busybox-static", bver)
	if err != nil {
		return nil, err
	}

	images, _ := filepath.Glob(filepath.Join(kroot, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: found %d boot/vmlinuz-* files, want 1", kpkg, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	m := &Manifest{
		KernelPackage: kpkg, KernelVersion: kver, KernelRelease: release,
		BusyboxPackage: "busybox-static", BusyboxVersion: bver,
		Kernel: "vmlinuz", Busybox: "busybox",
	}
	modTree := filepath.Join(kroot, "lib", "modules", release)
	if m.Modules, err = filepath.Rel(dir, modTree); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(dir, m.Kernel), images[0], 0o644); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(dir, m.Busybox), filepath.Join(broot, "bin", "busybox"), 0o755); err != nil {
		return nil, err
	}
	for _, mod := range kvmModules {
		dst := filepath.Join("kvm", filepath.Base(mod))
		if err := installModule(ctx, filepath.Join(dir, dst), filepath.Join(modTree, "kernel", mod)); err != nil {
			return nil, err
		}
		m.KVMModules = append(m.KVMModules, dst)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeAtomic(mpath, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	prune(debs, filepath.Base(kroot)+".deb", filepath.Base(broot)+".deb")
	prune(roots, filepath.Base(kroot), filepath.Base(broot))
	logf("assets ready in %s (%.1fs): %s %s (%s), busybox %s", dir, time.Since(start).Seconds(), kpkg, kver, release, bver)
	return m, nil
}

// aptLists is where `apt-get update` stores the package lists; candidate
// versions change only when it does.
const aptLists = "/var/lib/apt/lists"

// newerThanAptLists reports whether path was written after apt's package
// lists last changed, so the versions it records are still the candidates.
func newerThanAptLists(path string) bool {
	fi, err1 := os.Stat(path)
	li, err2 := os.Stat(aptLists)
	return err1 == nil && err2 == nil && fi.ModTime().After(li.ModTime())
}

// installModule copies a kernel module to dst, decompressing .ko.xz and
// .ko.zst variants (busybox insmod loads only plain .ko files).
func installModule(ctx context.Context, dst, src string) error {
	if _, err := os.Stat(src); err == nil {
		return copyFile(dst, src, 0o644)
	}
	for ext, tool := range map[string]string{".xz": "xz", ".zst": "zstd"} {
		if _, err := os.Stat(src + ext); err != nil {
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is compressed and %s is not installed (apt-get install %s)", src+ext, tool, map[string]string{"xz": "xz-utils", "zstd": "zstd"}[tool])
		}
		out, err := exec.CommandContext(ctx, tool, "-dc", src+ext).Output()
		if err != nil {
			return fmt.Errorf("%s -dc %s: %v", tool, src+ext, err)
		}
		return writeAtomic(dst, out, 0o644)
	}
	return fmt.Errorf("kernel module %s not found (nor .xz/.zst): does this kernel build KVM as modules?", src)
}

// prune removes the entries of dir other than keep (old versions).
func prune(dir string, keep ...string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, ".") && !slices.Contains(keep, name) {
			logf("removing old %s", filepath.Join(dir, name))
			_ = os.RemoveAll(filepath.Join(dir, name))
		}
	}
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomicFrom(dst, in, mode)
}

func writeAtomic(dst string, data []byte, mode os.FileMode) error {
	return writeAtomicFrom(dst, strings.NewReader(string(data)), mode)
}

// writeAtomicFrom writes r to a temporary file next to dst and renames it.
func writeAtomicFrom(dst string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("writing %s", dst), err)
	}
	return os.Rename(f.Name(), dst)
}
