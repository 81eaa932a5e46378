package env

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// KernelModule is a kernel feature the guest needs before its root disk is
// mounted, named by its module name and the Kconfig symbol that builds it.
type KernelModule struct {
	Name   string // module name as modules.dep and modinfo spell it: virtio_mmio
	Config string // Kconfig symbol: CONFIG_VIRTIO_MMIO
}

// InitrdModules are what pyro's guest agent needs from the kernel before it
// can mount the root disk and talk to the host: the virtio-mmio transport
// (devices are described in the ACPI DSDT), the block, network and vsock
// devices, and ext4. Each is either built into the kernel (skipped) or a
// module (copied into the initramfs with its dependencies, in load order).
// Dependencies that modules.dep names need not be listed; the explicit
// entries for jbd2, mbcache, crc16 and crc32c document what ext4 needs and
// cover a kernel that builds them as modules (crc32c is requested through the
// crypto API, which modules.dep does not see).
var InitrdModules = []KernelModule{
	{"virtio_ring", "CONFIG_VIRTIO"},
	{"virtio", "CONFIG_VIRTIO"},
	{"virtio_mmio", "CONFIG_VIRTIO_MMIO"},
	{"virtio_blk", "CONFIG_VIRTIO_BLK"},
	{"failover", "CONFIG_FAILOVER"},
	{"net_failover", "CONFIG_NET_FAILOVER"},
	{"virtio_net", "CONFIG_VIRTIO_NET"},
	{"vsock", "CONFIG_VSOCKETS"},
	{"vmw_vsock_virtio_transport_common", "CONFIG_VIRTIO_VSOCKETS_COMMON"},
	{"vmw_vsock_virtio_transport", "CONFIG_VIRTIO_VSOCKETS"},
	{"crc16", "CONFIG_CRC16"},
	{"crc32c_generic", "CONFIG_CRYPTO_CRC32C"},
	{"mbcache", "CONFIG_FS_MBCACHE"},
	{"jbd2", "CONFIG_JBD2"},
	{"ext4", "CONFIG_EXT4_FS"},
}

// ModulesOrderPath is where the initramfs lists the modules /init loads, one
// absolute path a line, dependencies first.
const ModulesOrderPath = "/lib/modules/pyro/modules.order"

// moduleSuffixes are the file name endings of kernel modules, compressed or not.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleName returns the module name of a module file path:
// kernel/drivers/net/net_failover.ko -> net_failover; kvm-amd.ko.xz -> kvm_amd.
// It returns "" for paths that are not modules.
func moduleName(p string) string {
	base := path.Base(filepath.ToSlash(p))
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s) {
			return strings.ReplaceAll(strings.TrimSuffix(base, s), "-", "_")
		}
	}
	return ""
}

// normName spells a module name the way the kernel does (dashes and
// underscores are interchangeable in module names).
func normName(n string) string { return strings.ReplaceAll(n, "-", "_") }

// ParseKernelConfig reads a kernel .config (/boot/config-RELEASE): it maps
// each symbol to its value ("y", "m", a number or a string), and symbols
// marked "# CONFIG_X is not set" to "n".
func ParseKernelConfig(r io.Reader) (map[string]string, error) {
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if sym, ok := strings.CutPrefix(line, "# "); ok {
			if sym, ok = strings.CutSuffix(sym, " is not set"); ok && strings.HasPrefix(sym, "CONFIG_") {
				cfg[sym] = "n"
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		sym, val, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(sym, "CONFIG_") {
			return nil, fmt.Errorf("kernel config: unexpected line %q", line)
		}
		cfg[sym] = strings.Trim(val, `"`)
	}
	return cfg, sc.Err()
}

// moduleTree is the loadable-module graph of one kernel release's
// lib/modules/RELEASE directory.
type moduleTree struct {
	dir     string              // lib/modules/RELEASE on the host
	paths   map[string]string   // module name -> path relative to dir
	deps    map[string][]string // module name -> dependency names, once known
	builtin map[string]bool     // modules built into the kernel image
	fromDep bool                // deps came from modules.dep
}

// parseModulesDep reads depmod's modules.dep ("kernel/a.ko: kernel/b.ko
// kernel/c.ko") into module paths and dependency names.
func parseModulesDep(r io.Reader) (paths map[string]string, deps map[string][]string, err error) {
	paths, deps = map[string]string{}, map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		name := moduleName(mod)
		if !ok || name == "" {
			return nil, nil, fmt.Errorf("modules.dep line %d: not \"module.ko: deps\": %q", n, line)
		}
		if old, dup := paths[name]; dup && old != mod {
			return nil, nil, fmt.Errorf("modules.dep line %d: module %s at both %s and %s", n, name, old, mod)
		}
		paths[name] = mod
		list := []string{}
		for _, d := range strings.Fields(rest) {
			dn := moduleName(d)
			if dn == "" {
				return nil, nil, fmt.Errorf("modules.dep line %d: %q is not a module", n, d)
			}
			list = append(list, dn)
		}
		deps[name] = list
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	// A dependency must itself be a module that the file lists.
	for name, list := range deps {
		for _, d := range list {
			if _, ok := paths[d]; !ok {
				return nil, nil, fmt.Errorf("modules.dep: %s depends on %s, which has no entry", name, d)
			}
		}
	}
	return paths, deps, nil
}

// parseModuleList reads modules.order or modules.builtin (one module path a
// line) into a name -> path map.
func parseModuleList(r io.Reader) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || p[0] == '#' {
			continue
		}
		if n := moduleName(p); n != "" {
			m[n] = p
		}
	}
	return m, sc.Err()
}

// loadModuleTree indexes dir (lib/modules/RELEASE). Debian's kernel
// packages ship no modules.dep (depmod writes it when the package is
// installed), so without one the dependencies come from each module's
// .modinfo "depends=" field, which is what depmod itself turns into
// modules.dep; they are read only for the modules the guest needs.
func loadModuleTree(dir string) (*moduleTree, error) {
	t := &moduleTree{dir: dir, paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		b, err := parseModuleList(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s/modules.builtin: %w", dir, err)
		}
		for n := range b {
			t.builtin[n] = true
		}
	}
	if f, err := os.Open(filepath.Join(dir, "modules.dep")); err == nil {
		paths, deps, err := parseModulesDep(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		t.paths, t.deps, t.fromDep = paths, deps, true
		return t, nil
	}
	// No modules.dep: find every module file under kernel/ (modules.order
	// names the same files without their compression suffix).
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if n := moduleName(p); n != "" {
				rel, _ := filepath.Rel(dir, p)
				t.paths[n] = filepath.ToSlash(rel)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing kernel modules: %w", err)
	}
	return t, nil
}

// depsOf returns the modules name depends on.
func (t *moduleTree) depsOf(name string) ([]string, error) {
	if d, ok := t.deps[name]; ok {
		return d, nil
	}
	rel, ok := t.paths[name]
	if !ok {
		return nil, fmt.Errorf("kernel module %s not found", name)
	}
	info, err := readModinfo(filepath.Join(t.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, normName(d))
			}
		}
	}
	t.deps[name] = deps
	return deps, nil
}

// loadOrder returns roots and every module they depend on, each once,
// dependencies before the modules that need them. The order is
// deterministic: roots are visited in the order given and dependencies in
// the order listed.
func (t *moduleTree) loadOrder(roots []string) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kernel module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		}
		if _, ok := t.paths[name]; !ok {
			if len(chain) > 0 {
				return fmt.Errorf("kernel module %s (needed by %s) not found", name, chain[len(chain)-1])
			}
			return fmt.Errorf("kernel module %s not found", name)
		}
		state[name] = visiting
		deps, err := t.depsOf(name)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, r := range roots {
		if err := visit(normName(r), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modulePlan says how the kernel provides each wanted module.
type modulePlan struct {
	Builtin []string // wanted modules built into the kernel
	Load    []string // modules to load, dependencies first
	Paths   []string // their paths relative to lib/modules/RELEASE, in Load order
}

// planModules decides, for each wanted module, whether the kernel builds it
// in (modules.builtin lists it, or its config symbol is =y) or as a module
// (a .ko file exists), and orders the modules with their dependencies. A
// wanted module the kernel lacks is an error naming its config symbol.
func planModules(t *moduleTree, config map[string]string, wanted []KernelModule) (*modulePlan, error) {
	plan := &modulePlan{}
	var roots []string
	for _, w := range wanted {
		name := normName(w.Name)
		_, isMod := t.paths[name]
		val := config[w.Config]
		switch {
		case t.builtin[name]:
			plan.Builtin = append(plan.Builtin, name)
		case isMod:
			roots = append(roots, name)
		case val == "y" && len(t.builtin) == 0:
			plan.Builtin = append(plan.Builtin, name) // no modules.builtin to ask
		case val == "m":
			return nil, fmt.Errorf("the kernel builds %s as a module (%s=m) but its package has no %s.ko", name, w.Config, name)
		case val == "y":
			return nil, fmt.Errorf("the kernel config says %s=y but modules.builtin does not list %s and there is no %s.ko", w.Config, name, name)
		case config != nil:
			return nil, fmt.Errorf("the kernel lacks %s, which pyro's guest needs (%s is not set): choose a kernel that has it", name, w.Config)
		default:
			return nil, fmt.Errorf("the kernel has no module %s and the package has no modules.builtin or config to say whether it is built in", name)
		}
	}
	order, err := t.loadOrder(roots)
	if err != nil {
		return nil, err
	}
	plan.Load = order
	for _, n := range order {
		plan.Paths = append(plan.Paths, t.paths[n])
	}
	sort.Strings(plan.Builtin)
	return plan, nil
}

// readModinfo returns the .modinfo key=value pairs of a kernel module
// (compressed or not).
func readModinfo(file string) (map[string][]string, error) {
	data, err := readModule(context.Background(), file)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not an ELF kernel module: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", file)
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", file, err)
	}
	return parseModinfo(raw), nil
}

// parseModinfo splits a .modinfo section (NUL-separated key=value strings).
func parseModinfo(raw []byte) map[string][]string {
	info := map[string][]string{}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			info[k] = append(info[k], v)
		}
	}
	return info
}

// readModule returns a module file's contents, decompressed: the guest's
// /init loads modules with finit_module and no decompression flag.
func readModule(ctx context.Context, file string) ([]byte, error) {
	switch {
	case strings.HasSuffix(file, ".ko"):
		return os.ReadFile(file)
	case strings.HasSuffix(file, ".ko.gz"):
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(file, ".ko.xz"), strings.HasSuffix(file, ".ko.zst"):
		tool, pkg := "xz", "xz-utils"
		if strings.HasSuffix(file, ".zst") {
			tool, pkg = "zstd", "zstd"
		}
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is compressed and %s is not installed: run sudo apt-get install %s", file, tool, pkg)
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, tool, "-dc", file)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s -dc %s: %v: %s", tool, file, err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	return nil, errors.New(file + ": not a kernel module file")
}

// uncompressedName strips a module path's compression suffix: the
// initramfs holds plain .ko files.
func uncompressedName(p string) string {
	for _, s := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+s) {
			return strings.TrimSuffix(p, s)
		}
	}
	return p
}
