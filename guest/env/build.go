package env

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/guest/debian"
	"golang.org/x/sys/unix"
)

// BuildOptions says what to build and how.
type BuildOptions struct {
	CacheRoot   string    // "" means DefaultCacheRoot()
	Name        string    // environment name: minimal, debian-12, ...
	AgentBinary string    // host path of the pyro binary that becomes /init (os.Executable())
	Progress    io.Writer // step lines and durations; nil discards them
	Verbose     bool      // also copy the build tools' output (mmdebstrap's) to Progress
	Force       bool      // rebuild even if a verified, current build exists
	// Mirrors are apt sources for Debian environments, one-line
	// sources.list entries ("deb [signed-by=...] URI SUITE COMPONENTS") or
	// bare URIs. Empty means the host's apt sources for the suite.
	Mirrors     []string
	PyroVersion string // recorded in the manifest
}

// buildHooks let tests replace the package source and fail a build midway.
type buildHooks struct {
	debs      debSource
	afterStep func(step int) error
	fakeroot  bool // take the non-root path (mmdebstrap tarball + fakeroot) even as root
}

// Build builds environment opts.Name under opts.CacheRoot and returns it.
//
// If the environment is already built, Build verifies its checksums and
// returns it when it is intact, current and holds opts.AgentBinary; when only
// the agent differs it rebuilds just the initramfs (RefreshInitrd); anything
// else (damage, an older recipe, Force) rebuilds everything. Builds of the
// same environment are serialized by a lock file; a build that fails or is
// interrupted leaves no environment behind (nor replaces a working one).
func Build(ctx context.Context, opts BuildOptions) (*Env, error) {
	return build(ctx, opts, buildHooks{})
}

// prepare resolves what a build or refresh needs and takes the
// environment's lock; the caller releases it.
func prepare(ctx context.Context, opts BuildOptions) (spec Spec, root string, agent FileInfo, p *progress, release func(), err error) {
	if spec, err = Lookup(opts.Name); err != nil {
		return
	}
	root = opts.CacheRoot
	if root == "" {
		root = DefaultCacheRoot()
	}
	if agent, err = inspectAgent(opts.AgentBinary); err != nil {
		return
	}
	p = newProgress(opts.Progress)
	release, err = lockEnv(ctx, root, spec.Name, p)
	return
}

func build(ctx context.Context, opts BuildOptions, hooks buildHooks) (*Env, error) {
	spec, root, agent, p, release, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()

	if !opts.Force {
		if e, err := Load(root, spec.Name); err == nil {
			p.info("%s is built (kernel %s, built %s): verifying checksums…",
				spec.Name, e.Manifest.Kernel.Release, e.Manifest.BuiltAt.Local().Format(time.DateTime))
			t0 := time.Now()
			switch verr := e.Verify(); {
			case verr != nil:
				p.info("rebuilding %s: %v", spec.Name, verr)
			case e.outdated(spec) != "":
				p.info("rebuilding %s: %s", spec.Name, e.outdated(spec))
			case e.Manifest.Agent.SHA256 != agent.SHA256:
				p.info("checksums good (%.1fs); the pyro binary changed: rebuilding the initramfs only", time.Since(t0).Seconds())
				return refreshLocked(ctx, e, root, agent, opts.PyroVersion, p)
			default:
				p.info("%s is up to date (checksums verified in %.1fs): %s", spec.Name, time.Since(t0).Seconds(), e.Dir)
				return e, nil
			}
		} else if nb := (*NotBuiltError)(nil); errors.As(err, &nb) && nb.Reason != "" {
			p.info("rebuilding %s: %s", spec.Name, nb.Reason)
		}
	}

	if hooks.debs == nil {
		hooks.debs = aptDebs{cache: filepath.Join(root, "debs")}
	}
	b := &builder{
		spec: spec, opts: opts, agent: agent, p: p, hooks: hooks,
		asRoot: os.Geteuid() == 0 && !hooks.fakeroot,
	}
	if err := b.checkTools(); err != nil {
		return nil, err
	}
	start := time.Now()
	err = buildAtomically(root, spec.Name, func(tmp string) error { return b.run(ctx, tmp, start) })
	if err != nil {
		return nil, fmt.Errorf("building environment %s: %w", spec.Name, err)
	}
	e, err := Load(root, spec.Name)
	if err != nil {
		return nil, err
	}
	p.info("%s built in %s: %s (rootfs %s, %d packages)", spec.Name, time.Since(start).Round(100*time.Millisecond),
		e.Dir, humanBytes(e.Manifest.Files[RootfsName].Size), len(e.Manifest.Packages))
	return e, nil
}

// Ensure returns environment opts.Name ready to boot with opts.AgentBinary:
// Load, then RefreshInitrd if the agent changed, or Build if the
// environment is not usable. It does not verify checksums (Build does).
// Building a Debian environment takes minutes; callers that must not block
// that long should call Load and report its error instead.
func Ensure(ctx context.Context, opts BuildOptions) (*Env, error) {
	root := opts.CacheRoot
	if root == "" {
		root = DefaultCacheRoot()
	}
	e, err := Load(root, opts.Name)
	var nb *NotBuiltError
	switch {
	case errors.As(err, &nb):
		return Build(ctx, opts)
	case err != nil:
		return nil, err
	}
	ok, err := e.AgentMatches(opts.AgentBinary)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	if ok {
		return e, nil
	}
	return RefreshInitrd(ctx, opts)
}

// RefreshInitrd rebuilds only the initramfs of a built environment, with
// opts.AgentBinary as /init: what a pyro upgrade needs. The kernel modules
// come from the existing initramfs, so it takes no download and no
// mmdebstrap. It does nothing if the agent already matches, unless
// opts.Force.
func RefreshInitrd(ctx context.Context, opts BuildOptions) (*Env, error) {
	spec, root, agent, p, release, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	e, err := Load(root, spec.Name)
	if err != nil {
		return nil, err
	}
	if e.Manifest.Agent.SHA256 == agent.SHA256 && !opts.Force {
		return e, nil
	}
	return refreshLocked(ctx, e, root, agent, opts.PyroVersion, p)
}

// refreshLocked writes a copy of e with a new initramfs and swaps it in.
// The kernel and root filesystem image are hard links, not copies.
func refreshLocked(ctx context.Context, e *Env, root string, agent FileInfo, pyroVersion string, p *progress) (*Env, error) {
	p.total, p.n = 1, 0
	p.begin("initramfs for %s with %s", e.Name, agent.Path)
	err := buildAtomically(root, e.Name, func(tmp string) error {
		want := e.Manifest.Files[InitrdName]
		got, err := hashFile(e.Initrd)
		if err != nil {
			return err
		}
		if got != want {
			return &NotBuiltError{Name: e.Name, Reason: InitrdName + " is damaged"}
		}
		for _, f := range []string{KernelName, RootfsName, LogName} {
			if err := linkOrCopy(filepath.Join(e.Dir, f), filepath.Join(tmp, f)); err != nil && f != LogName {
				return err
			}
		}
		old, err := os.ReadFile(e.Initrd)
		if err != nil {
			return err
		}
		entries, err := ReadInitrd(strings.NewReader(string(old)))
		if err != nil {
			return err
		}
		if err := writeFileWith(filepath.Join(tmp, InitrdName), func(w io.Writer) error {
			return rewriteInitrd(w, entries, agent.Path)
		}); err != nil {
			return err
		}
		m := e.Manifest
		m.Files = map[string]File{}
		for k, v := range e.Manifest.Files {
			m.Files[k] = v
		}
		if m.Files[InitrdName], err = hashFile(filepath.Join(tmp, InitrdName)); err != nil {
			return err
		}
		m.Agent, m.InitrdBuiltAt = agent, time.Now().UTC()
		if pyroVersion != "" {
			m.PyroVersion = pyroVersion
		}
		return writeManifest(tmp, &m)
	})
	if err != nil {
		return nil, fmt.Errorf("rebuilding the initramfs of %s: %w", e.Name, err)
	}
	p.end("")
	return Load(root, e.Name)
}

// lockEnv takes environment name's build lock, saying so if it must wait.
func lockEnv(ctx context.Context, root, name string, p *progress) (func(), error) {
	return acquireLock(ctx, lockPath(root, name), func(pid int) {
		who := "another pyro"
		if pid > 0 {
			who = fmt.Sprintf("pyro (pid %d)", pid)
		}
		p.info("waiting for %s, which is building %s…", who, name)
	})
}

// buildAtomically runs fill on a fresh temporary directory next to
// environment name's directory and, if fill succeeds, puts it in place of
// that directory in one step. On failure the temporary directory is removed
// and the existing environment, if any, is untouched. The caller holds the
// environment's lock; leftovers of builds that crashed are removed first.
func buildAtomically(root, name string, fill func(tmp string) error) error {
	envs := filepath.Join(root, "envs")
	if err := os.MkdirAll(envs, 0o755); err != nil {
		return err
	}
	cleanStale(envs, name)
	tmp, err := os.MkdirTemp(envs, "."+name+".build-")
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		if rerr := removeTree(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if err := syncDir(tmp); err != nil {
		removeTree(tmp)
		return err
	}
	final := filepath.Join(envs, name)
	if err := swapInto(tmp, final); err != nil {
		removeTree(tmp)
		return err
	}
	syncDir(envs)
	return nil
}

// swapInto renames dir to final. An existing final is exchanged with dir
// atomically (renameat2 RENAME_EXCHANGE) and then removed, so final never
// disappears; where the file system cannot exchange, it is moved aside
// first.
func swapInto(dir, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE); err == nil {
			return removeTree(dir) // dir now holds the old environment
		}
	} else if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	old := strings.Replace(dir, ".build-", ".old-", 1)
	if err := os.Rename(final, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(dir, final); err != nil {
		return err
	}
	return removeTree(old)
}

// cleanStale removes what crashed builds of name left in envs.
func cleanStale(envs, name string) {
	for _, pat := range []string{".build-*", ".old-*"} {
		m, _ := filepath.Glob(filepath.Join(envs, "."+name+pat))
		for _, d := range m {
			removeTree(d)
		}
	}
}

// removeTree removes a build directory. It refuses to descend into mount
// points (a killed chroot tool could leave /proc or /dev mounted there), and
// makes directories writable when a non-root build left some read-only.
func removeTree(dir string) error {
	if mounts := mountsUnder(dir); len(mounts) > 0 {
		return fmt.Errorf("not removing %s: %s is mounted inside it; unmount it (umount -R) and remove the directory", dir, mounts[0])
	}
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// builder carries one full build.
type builder struct {
	spec   Spec
	opts   BuildOptions
	agent  FileInfo
	p      *progress
	hooks  buildHooks
	asRoot bool // root: mmdebstrap writes the tree directly; else tarball + fakeroot

	dir, work string    // the environment's temporary directory, and scratch inside it
	log       io.Writer // build.log (and Progress when verbose)
	kernel    kernelTree
	mods      *modulePlan
	staging   string // root filesystem tree
	fakedb    string // fakeroot state of the tree (non-root Debian builds)
	packages  []Package
	rootfs    RootfsInfo
	mode      string
}

// kernelTree is an unpacked kernel package.
type kernelTree struct {
	Package, Version, Release string
	Vmlinuz, ModDir           string
	Config                    map[string]string
}

func (b *builder) run(ctx context.Context, tmp string, start time.Time) error {
	b.dir, b.work = tmp, filepath.Join(tmp, ".work")
	if err := os.Mkdir(b.work, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(tmp, LogName))
	if err != nil {
		return err
	}
	defer logf.Close()
	b.log = logf
	if b.opts.Verbose {
		b.log = io.MultiWriter(logf, b.p.w)
	}
	b.p.log = logf
	defer func() { b.p.log = nil }()
	b.p.total, b.p.n = 5, 0

	rootfsStep := "rootfs: busybox-static"
	if b.spec.Base == BaseDebian {
		rootfsStep = fmt.Sprintf("rootfs: mmdebstrap %s (minbase + %d packages)", b.spec.Suite, len(b.spec.Packages))
	}
	steps := []struct {
		title string
		fn    func(context.Context) (string, error)
	}{
		{"kernel: " + b.spec.KernelPackage, b.stepKernel},
		{"initramfs: /init + guest kernel modules", b.stepInitrd},
		{rootfsStep, b.stepTree},
		{"rootfs.ext4: mkfs.ext4 -d", b.stepImage},
		{"checksums and manifest", func(context.Context) (string, error) { return "", b.stepManifest(start) }},
	}
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.p.begin("%s", s.title)
		detail, err := s.fn(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		b.p.end(detail)
		if b.hooks.afterStep != nil {
			if err := b.hooks.afterStep(i + 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// stepKernel fetches and unpacks the kernel package and picks its bzImage.
func (b *builder) stepKernel(ctx context.Context) (string, error) {
	dir := filepath.Join(b.work, "kernel")
	pkg, ver, err := b.hooks.debs.unpack(ctx, b.spec.KernelPackage, dir)
	if err != nil {
		return "", err
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return "", fmt.Errorf("%s %s has %d boot/vmlinuz-* files, want 1", pkg, ver, len(images))
	}
	if err := checkBzImage(images[0]); err != nil {
		return "", err
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	k := kernelTree{Package: pkg, Version: ver, Release: release, Vmlinuz: images[0],
		ModDir: filepath.Join(dir, "lib", "modules", release)}
	if f, err := os.Open(filepath.Join(dir, "boot", "config-"+release)); err == nil {
		k.Config, err = ParseKernelConfig(f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	b.kernel = k
	if err := copyFile(filepath.Join(b.dir, KernelName), k.Vmlinuz, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s (%s)", pkg, ver, release), nil
}

// checkBzImage checks the Linux boot protocol's "HdrS" magic.
func checkBzImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0x202); err != nil || string(magic[:]) != "HdrS" {
		return fmt.Errorf("%s is not a bzImage (no HdrS header)", path)
	}
	return nil
}

// stepInitrd writes initrd.cpio: the agent as /init and the modules the
// kernel does not build in, with their dependencies, in load order.
func (b *builder) stepInitrd(ctx context.Context) (string, error) {
	tree, err := loadModuleTree(b.kernel.ModDir)
	if err != nil {
		return "", err
	}
	plan, err := planModules(tree, b.kernel.Config, InitrdModules)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.kernel.Package, err)
	}
	b.mods = plan
	var mods []initrdModule
	for _, rel := range plan.Paths {
		mods = append(mods, initrdModule{Rel: rel, Src: filepath.Join(b.kernel.ModDir, filepath.FromSlash(rel))})
	}
	var order []string
	err = writeFileWith(filepath.Join(b.dir, InitrdName), func(w io.Writer) error {
		var err error
		order, err = writeInitrd(ctx, w, b.agent.Path, b.kernel.Release, mods)
		return err
	})
	if err != nil {
		return "", err
	}
	b.mods.Paths = order
	return fmt.Sprintf("%d modules (%s); built in: %s", len(plan.Load), strings.Join(plan.Load, " "),
		strings.Join(plan.Builtin, " ")), nil
}

// stepTree makes the root filesystem tree in b.staging.
func (b *builder) stepTree(ctx context.Context) (string, error) {
	b.staging = filepath.Join(b.work, "rootfs")
	switch b.spec.Base {
	case BaseBusybox:
		b.mode = "busybox"
		pkg, ver, err := stageBusybox(ctx, b.hooks.debs, b.work, b.staging)
		if err != nil {
			return "", err
		}
		b.packages = []Package{{Name: pkg, Version: ver}}
		if err := writeEnvFiles(b.staging, b.spec); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s", pkg, ver), nil
	case BaseDebian:
		if err := b.mmdebstrap(ctx); err != nil {
			return "", err
		}
		if err := customizeDebian(b.staging, b.spec); err != nil {
			return "", err
		}
		pkgs, err := installedPackages(ctx, b.staging)
		if err != nil {
			return "", err
		}
		b.packages = pkgs
		return fmt.Sprintf("%d packages installed", len(pkgs)), nil
	}
	return "", fmt.Errorf("unknown base %q", b.spec.Base)
}

// stepImage turns the tree into rootfs.ext4.
func (b *builder) stepImage(ctx context.Context) (string, error) {
	usage, err := measureTree(b.staging)
	if err != nil {
		return "", err
	}
	size := usage.Bytes*b.spec.HeadroomPct/100 + b.spec.HeadroomBytes
	size = max(size, b.spec.MinBytes)
	size = (size + mib - 1) / mib * mib
	inodes := max(2*usage.Files+8192, size/16384)
	b.rootfs = RootfsInfo{Label: RootfsLabel, ContentBytes: usage.Bytes, Files: usage.Files, Inodes: inodes}
	img := filepath.Join(b.dir, RootfsName)
	if err := mkfsExt4(ctx, img, b.staging, size, inodes, b.fakeroot(), b.log); err != nil {
		return "", err
	}
	// The tree is no longer needed; free the space before checksumming.
	removeTree(b.staging)
	return fmt.Sprintf("%s image for %s in %d files", humanBytes(size), humanBytes(usage.Bytes), usage.Files), nil
}

// fakeroot returns the fakeroot invocation mkfs runs under, or nil as root.
func (b *builder) fakeroot() []string {
	if b.asRoot {
		return nil
	}
	args := []string{mustTool("fakeroot")}
	if b.fakedb != "" {
		args = append(args, "-i", b.fakedb)
	}
	return append(args, "--")
}

func (b *builder) stepManifest(start time.Time) error {
	m := &Manifest{
		Format:       FormatVersion,
		Name:         b.spec.Name,
		Description:  b.spec.Description,
		Builder:      BuilderVersion,
		PyroVersion:  b.opts.PyroVersion,
		SpecDigest:   b.spec.digest(),
		BuildMode:    b.mode,
		Agent:        b.agent,
		Packages:     b.packages,
		Rootfs:       b.rootfs,
		Files:        map[string]File{},
		BuiltAt:      time.Now().UTC(),
		BuildSeconds: 0,
		Kernel: KernelInfo{
			Package: b.kernel.Package, Version: b.kernel.Version, Release: b.kernel.Release,
			InitrdModules: b.mods.Paths, BuiltinModules: b.mods.Builtin,
		},
	}
	m.InitrdBuiltAt = m.BuiltAt
	if err := removeTree(b.work); err != nil {
		return err
	}
	for _, f := range requiredFiles {
		p := filepath.Join(b.dir, f)
		if err := syncFile(p); err != nil {
			return err
		}
		h, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files[f] = h
	}
	m.BuildSeconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	return writeManifest(b.dir, m)
}

// writeManifest writes dir's manifest.json, synced: the last file of a build.
func writeManifest(dir string, m *Manifest) error {
	data, err := jsonIndent(m)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, ManifestName)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return err
	}
	return syncFile(p)
}

// inspectAgent checks that path can be the initramfs's /init (a static
// x86-64 executable, or a script for tests) and returns its checksum.
func inspectAgent(path string) (FileInfo, error) {
	if path == "" {
		return FileInfo{}, errors.New("no agent binary given: pass the pyro binary (os.Executable()) as BuildOptions.AgentBinary")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return FileInfo{}, fmt.Errorf("agent binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return FileInfo{}, fmt.Errorf("agent binary %s is not an executable file", abs)
	}
	if f, err := elf.Open(abs); err == nil {
		defer f.Close()
		if f.Machine != elf.EM_X86_64 {
			return FileInfo{}, fmt.Errorf("agent binary %s is for %s; the guest is x86-64", abs, f.Machine)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				return FileInfo{}, fmt.Errorf("agent binary %s is dynamically linked; the initramfs has no C library: build pyro with CGO_ENABLED=0", abs)
			}
		}
	} else {
		head := make([]byte, 2)
		if r, err := os.Open(abs); err == nil {
			io.ReadFull(r, head)
			r.Close()
		}
		if string(head) != "#!" {
			return FileInfo{}, fmt.Errorf("agent binary %s is neither an ELF executable nor a script", abs)
		}
	}
	h, err := hashFile(abs)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Path: abs, Size: h.Size, SHA256: h.SHA256}, nil
}

// Host tools and the Debian package that provides each.
var toolPackages = map[string]string{
	"apt-get":    "apt",
	"apt-cache":  "apt",
	"dpkg-deb":   "dpkg",
	"dpkg-query": "dpkg",
	"mkfs.ext4":  "e2fsprogs",
	"mmdebstrap": "mmdebstrap",
	"fakeroot":   "fakeroot",
	"tar":        "tar",
	"newuidmap":  "uidmap",
}

// toolDirs are searched for host tools after PATH.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// lookTool finds a host tool on PATH or in the sbin directories, which a
// non-root user's PATH often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range toolDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func mustTool(name string) string {
	if p, err := lookTool(name); err == nil {
		return p
	}
	return name
}

// checkTools fails with the apt-get command to run if a host tool the
// build needs is missing.
func (b *builder) checkTools() error {
	tools := []string{"apt-get", "apt-cache", "dpkg-deb", "mkfs.ext4"}
	if b.spec.Base == BaseDebian {
		tools = append(tools, "mmdebstrap", "dpkg-query")
		if !b.asRoot {
			tools = append(tools, "tar", "newuidmap")
		}
	}
	if !b.asRoot {
		tools = append(tools, "fakeroot")
	}
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := lookTool(t); err != nil {
			missing = append(missing, t)
			if !slices.Contains(pkgs, toolPackages[t]) {
				pkgs = append(pkgs, toolPackages[t])
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("building environment %s needs %s, not found on this host: install with\n    sudo apt-get install %s",
		b.spec.Name, strings.Join(missing, ", "), strings.Join(pkgs, " "))
}

// debSource unpacks Debian packages for a build.
type debSource interface {
	// unpack resolves name (a package or a kernel metapackage) to a package
	// and its candidate version and unpacks it into dir, which must not
	// exist.
	unpack(ctx context.Context, name, dir string) (pkg, version string, err error)
}

// aptDebs is the real debSource: the host's apt, with .debs kept in cache.
type aptDebs struct{ cache string }

func (a aptDebs) unpack(ctx context.Context, name, dir string) (string, string, error) {
	pkg, ver, err := debian.Resolve(ctx, name)
	if err != nil {
		return "", "", err
	}
	deb, err := debian.Fetch(ctx, a.cache, pkg, ver)
	if err != nil {
		return "", "", err
	}
	if err := debian.Extract(ctx, deb, dir); err != nil {
		return "", "", err
	}
	pruneDebs(a.cache, pkg, deb)
	return pkg, ver, nil
}

var digits = regexp.MustCompile(`[0-9]+`)

// pruneDebs removes older .debs of pkg from cache, and of the packages that
// differ from pkg only in their numbers (the previous kernel ABI,
// linux-image-6.1.0-55-cloud-amd64, when pkg is ...-56-...).
func pruneDebs(cache, pkg, keep string) {
	re, err := regexp.Compile("^" + digits.ReplaceAllString(regexp.QuoteMeta(pkg), `[0-9]+`) + "_.*\\.deb$")
	if err != nil {
		return
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		p := filepath.Join(cache, e.Name())
		if e.Type().IsRegular() && re.MatchString(e.Name()) && p != keep {
			os.Remove(p)
		}
	}
}

// progress prints step lines: "[2/5] title…" and, when the step ends,
// "      detail (12.3s)". Everything also goes to the build log.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	log      io.Writer
	total, n int
	t0       time.Time
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf(format, args...) + "\n"
	io.WriteString(p.w, line)
	if p.log != nil {
		io.WriteString(p.log, "==> "+line)
	}
}

func (p *progress) begin(format string, args ...any) {
	p.n++
	p.t0 = time.Now()
	p.printf("[%d/%d] %s…", p.n, p.total, fmt.Sprintf(format, args...))
}

func (p *progress) end(detail string) {
	d := time.Since(p.t0).Round(100 * time.Millisecond)
	if detail != "" {
		p.printf("      %s (%s)", detail, d)
	} else {
		p.printf("      done (%s)", d)
	}
}

func (p *progress) info(format string, args ...any) { p.printf(format, args...) }

// runTool runs a build tool, sending its output to log. On failure the
// error carries the output's last lines. Cancellation sends SIGTERM first
// (mmdebstrap cleans up on it) and SIGKILL 30 seconds later.
func runTool(ctx context.Context, log io.Writer, env []string, argv ...string) error {
	tail := &tailBuffer{max: 40}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = io.MultiWriter(log, tail)
	cmd.Stderr = cmd.Stdout
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = a
		if strings.ContainsAny(a, " \t'\"*[]") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	fmt.Fprintf(log, "$ %s\n", strings.Join(quoted, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", filepath.Base(argv[0]), ctx.Err())
		}
		return fmt.Errorf("%s failed (%v); its last output:\n%s", filepath.Base(argv[0]), err, tail.String())
	}
	return nil
}

// tailBuffer keeps the last max lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.part + string(b)
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	for _, l := range parts[:len(parts)-1] {
		t.lines = append(t.lines, l)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := append([]string{}, t.lines...)
	if t.part != "" {
		lines = append(lines, t.part)
	}
	return "    " + strings.Join(lines, "\n    ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
