// Package env builds and finds pyro's environments: what a workspace VM
// boots. An environment is a kernel (bzImage), an initramfs whose /init is
// the pyro binary itself (its PID-1 mode is the guest agent) plus the kernel
// modules the agent loads before it mounts the root disk, and a root
// filesystem image (ext4).
//
// Environments are built on the user's machine from Debian packages, never
// downloaded prebuilt: the kernel is the current Debian cloud kernel
// (linux-image-cloud-amd64, resolved at build time, never pinned), the
// root filesystem is either busybox (the "minimal" environment, for fast
// tests) or a Debian bookworm tree made by mmdebstrap. Package versions and
// mirrors come from the host's apt configuration.
//
// # Cache layout
//
//	CACHE/                       DefaultCacheRoot(): $XDG_CACHE_HOME/pyro or ~/.cache/pyro
//	  debs/                      downloaded .debs (kernel, busybox-static), reused
//	  envs/
//	    .NAME.lock               flock(2) held by the build of NAME
//	    .NAME.build-XXXX/        a build in progress (removed if it fails; stale ones are cleaned)
//	    NAME/
//	      vmlinuz                bzImage from the kernel package's /boot
//	      initrd.cpio            uncompressed newc: /init = pyro, modules, modules.order
//	      rootfs.ext4            root filesystem image, label pyro-root
//	      build.log              what the build tools printed (informational)
//	      manifest.json          written last: versions, packages, sizes, sha256s
//
// A build happens in .NAME.build-XXXX and is renamed to NAME only when
// complete (an existing NAME is swapped out atomically with
// renameat2(RENAME_EXCHANGE)), so NAME is either a complete environment or
// absent. Load checks the manifest and every file's size (cheap, on every
// use); Verify checks the sha256s.
package env

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Base says what an environment's root filesystem is made from.
type Base string

const (
	BaseBusybox Base = "busybox" // busybox-static: /bin/busybox and its applet links
	BaseDebian  Base = "debian"  // mmdebstrap --variant=minbase plus Spec.Packages
)

// Spec describes an environment pyro knows how to build.
type Spec struct {
	Name          string
	Description   string
	Base          Base
	Suite         string   // Debian suite of a BaseDebian root filesystem: bookworm
	Packages      []string // installed on top of minbase (BaseDebian)
	KernelPackage string   // Debian kernel package or metapackage, resolved at build time
	// The root filesystem image is sized content*HeadroomPct/100 +
	// HeadroomBytes, at least MinBytes. A workspace's disk can be larger
	// than its base image later.
	HeadroomPct   int64
	HeadroomBytes int64
	MinBytes      int64
}

const (
	mib = 1 << 20

	// KernelMeta is the kernel every environment boots: the current Debian
	// cloud kernel, resolved to linux-image-6.1.0-NN-cloud-amd64 at build
	// time.
	KernelMeta = "linux-image-cloud-amd64"
)

// debianPackages is what a coding agent expects to find on a Debian system
// beyond minbase (which already has bash, coreutils, findutils, grep, sed,
// tar, gzip, diffutils, mawk, util-linux, apt and dpkg; they are listed again
// so this list documents the environment). No init system: pyro's agent is
// PID 1. No ssh: the agent is the way in.
var debianPackages = []string{
	// shell and core tools
	"bash", "coreutils", "findutils", "grep", "sed", "diffutils", "patch", "less", "file", "tree",
	"procps", "psmisc",
	// archives and compression
	"tar", "gzip", "bzip2", "xz-utils", "zstd", "unzip", "zip",
	// network (the agent configures eth0 when a network is granted)
	"ca-certificates", "curl", "iproute2", "iputils-ping", "netbase",
	// development
	"git", "jq", "ripgrep", "vim-tiny", "nano",
	"python3", "python3-venv", "python3-pip", "python-is-python3",
}

// buildPackages are added by debian-12-build: a C/C++ toolchain, the usual
// build systems, a debugger and Python headers for native extensions.
var buildPackages = []string{
	"build-essential", "pkg-config", "make", "cmake", "ninja-build",
	"autoconf", "automake", "libtool", "gdb", "python3-dev",
}

// specs is the table of environments. Add an entry to add an environment.
var specs = []Spec{
	{
		Name:          "minimal",
		Description:   "busybox only, for fast tests",
		Base:          BaseBusybox,
		KernelPackage: KernelMeta,
		HeadroomPct:   130,
		HeadroomBytes: 32 * mib,
		MinBytes:      64 * mib,
	},
	{
		Name:          "debian-12",
		Description:   "Debian 12 (bookworm) with git, curl, python3 and the usual command-line tools",
		Base:          BaseDebian,
		Suite:         "bookworm",
		Packages:      debianPackages,
		KernelPackage: KernelMeta,
		HeadroomPct:   130,
		HeadroomBytes: 256 * mib,
		MinBytes:      256 * mib,
	},
	{
		Name:          "debian-12-build",
		Description:   "debian-12 plus build-essential, cmake, autotools, gdb and python3-dev",
		Base:          BaseDebian,
		Suite:         "bookworm",
		Packages:      append(append([]string{}, debianPackages...), buildPackages...),
		KernelPackage: KernelMeta,
		HeadroomPct:   130,
		HeadroomBytes: 256 * mib,
		MinBytes:      256 * mib,
	},
}

// Specs returns the environments pyro knows how to build.
func Specs() []Spec {
	out := make([]Spec, len(specs))
	for i, s := range specs {
		s.Packages = append([]string(nil), s.Packages...)
		out[i] = s
	}
	return out
}

// Lookup returns the spec of the environment called name.
func Lookup(name string) (Spec, error) {
	var names []string
	for _, s := range Specs() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Spec{}, fmt.Errorf("unknown environment %q (pyro knows: %s)", name, strings.Join(names, ", "))
}

// digest identifies what a spec asks for, so that an environment built from
// an older recipe is noticed.
func (s Spec) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "builder=%d\nbase=%s\nsuite=%s\nkernel=%s\npackages=%s\n",
		BuilderVersion, s.Base, s.Suite, s.KernelPackage, strings.Join(s.Packages, ","))
	for _, m := range InitrdModules {
		fmt.Fprintf(h, "module=%s\n", m.Name)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

const (
	// FormatVersion is the manifest's layout version; Load rejects others.
	FormatVersion = 1
	// BuilderVersion changes whenever the build recipe changes in a way
	// that should rebuild existing environments.
	BuilderVersion = 1

	ManifestName = "manifest.json"
	KernelName   = "vmlinuz"
	InitrdName   = "initrd.cpio"
	RootfsName   = "rootfs.ext4"
	LogName      = "build.log"

	// RootfsLabel is the ext4 label of every root filesystem image.
	RootfsLabel = "pyro-root"
)

// requiredFiles are the files every environment has, in the order Load
// checks them.
var requiredFiles = []string{KernelName, InitrdName, RootfsName}

// Manifest describes a built environment; it is manifest.json.
type Manifest struct {
	Format        int       `json:"format"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	Builder       int       `json:"builder"` // BuilderVersion of the pyro that built it
	PyroVersion   string    `json:"pyro_version,omitempty"`
	SpecDigest    string    `json:"spec_digest"`
	BuiltAt       time.Time `json:"built_at"`
	BuildSeconds  float64   `json:"build_seconds"`
	InitrdBuiltAt time.Time `json:"initrd_built_at"`
	// BuildMode says how the root filesystem was made: "busybox",
	// "mmdebstrap unshare (root)" or "mmdebstrap unshare + fakeroot".
	BuildMode string          `json:"build_mode"`
	Kernel    KernelInfo      `json:"kernel"`
	Agent     FileInfo        `json:"agent"` // the pyro binary that is /init
	Packages  []Package       `json:"packages"`
	Rootfs    RootfsInfo      `json:"rootfs"`
	Files     map[string]File `json:"files"` // vmlinuz, initrd.cpio, rootfs.ext4
}

// KernelInfo records the kernel an environment boots.
type KernelInfo struct {
	Package        string   `json:"package"` // linux-image-6.1.0-NN-cloud-amd64
	Version        string   `json:"version"` // its Debian version
	Release        string   `json:"release"` // uname -r
	InitrdModules  []string `json:"initrd_modules"`
	BuiltinModules []string `json:"builtin_modules"` // wanted modules the kernel builds in
}

// FileInfo identifies a host file by content.
type FileInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Package is an installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// RootfsInfo describes the root filesystem image.
type RootfsInfo struct {
	Label        string `json:"label"`
	ContentBytes int64  `json:"content_bytes"` // what the files take, in 4 KiB blocks
	Files        int64  `json:"files"`         // inodes used by the content
	Inodes       int64  `json:"inodes"`        // inodes the image has
}

// File is the size and checksum of one file of an environment.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Env is a built environment.
type Env struct {
	Name     string
	Dir      string
	Kernel   string // vmlinuz
	Initrd   string // initrd.cpio
	Rootfs   string // rootfs.ext4
	Manifest Manifest
}

// NotBuiltError says an environment cannot be used: it is absent,
// incomplete or damaged. Its message names the command that fixes it.
type NotBuiltError struct {
	Name   string
	Reason string // what was found, or "" when the environment is absent
	Err    error  // underlying error, if any
}

func (e *NotBuiltError) Error() string {
	msg := fmt.Sprintf("environment %q is not built (or is incomplete): run pyro env build %s", e.Name, e.Name)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

func (e *NotBuiltError) Unwrap() error { return e.Err }

// DefaultCacheRoot returns $XDG_CACHE_HOME/pyro, or ~/.cache/pyro.
func DefaultCacheRoot() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "pyro")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "pyro")
	}
	return filepath.Join(os.TempDir(), "pyro-cache-"+fmt.Sprint(os.Getuid()))
}

// Dir returns the directory of environment name under cacheRoot.
func Dir(cacheRoot, name string) string {
	return filepath.Join(cacheRoot, "envs", name)
}

// Load returns the environment name built under cacheRoot. It checks that
// the manifest exists and that every file has the size it records;
// otherwise it returns a *NotBuiltError. Verify checks the contents.
func Load(cacheRoot, name string) (*Env, error) {
	spec, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	return loadDir(Dir(cacheRoot, spec.Name), spec.Name)
}

func loadDir(dir, name string) (*Env, error) {
	e, err := loadOnce(dir, name)
	var nb *NotBuiltError
	if errors.As(err, &nb) && nb.Reason != "" {
		// A rebuild may have swapped the directory between reading the
		// manifest and checking the files: look once more.
		return loadOnce(dir, name)
	}
	return e, err
}

func loadOnce(dir, name string) (*Env, error) {
	notBuilt := func(err error, format string, args ...any) error {
		return &NotBuiltError{Name: name, Reason: fmt.Sprintf(format, args...), Err: err}
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		if _, derr := os.Stat(dir); derr == nil {
			return nil, notBuilt(err, "%s has no %s", dir, ManifestName)
		}
		return nil, &NotBuiltError{Name: name, Err: err}
	}
	if err != nil {
		return nil, notBuilt(err, "%v", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, notBuilt(err, "%s: %v", filepath.Join(dir, ManifestName), err)
	}
	if m.Format != FormatVersion {
		return nil, notBuilt(nil, "its manifest has format %d; this pyro reads format %d", m.Format, FormatVersion)
	}
	if m.Name != name {
		return nil, notBuilt(nil, "its manifest names environment %q", m.Name)
	}
	for _, f := range requiredFiles {
		want, ok := m.Files[f]
		if !ok {
			return nil, notBuilt(nil, "its manifest lists no %s", f)
		}
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return nil, notBuilt(err, "%s is missing", f)
		}
		if fi.Size() != want.Size {
			return nil, notBuilt(nil, "%s is %d bytes; the manifest says %d", f, fi.Size(), want.Size)
		}
	}
	return &Env{
		Name:     name,
		Dir:      dir,
		Kernel:   filepath.Join(dir, KernelName),
		Initrd:   filepath.Join(dir, InitrdName),
		Rootfs:   filepath.Join(dir, RootfsName),
		Manifest: m,
	}, nil
}

// Verify checks the sha256 of every file the manifest lists (it reads the
// whole root filesystem image: seconds for a Debian environment).
func (e *Env) Verify() error {
	names := make([]string, 0, len(e.Manifest.Files))
	for n := range e.Manifest.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want := e.Manifest.Files[n]
		got, err := hashFile(filepath.Join(e.Dir, n))
		if err != nil {
			return &NotBuiltError{Name: e.Name, Reason: fmt.Sprintf("%s: %v", n, err), Err: err}
		}
		if got.Size != want.Size || got.SHA256 != want.SHA256 {
			return &NotBuiltError{Name: e.Name, Reason: fmt.Sprintf("%s is damaged: sha256 %s, the manifest says %s", n, got.SHA256, want.SHA256)}
		}
	}
	return nil
}

// AgentMatches reports whether the environment's initramfs holds the agent
// binary at path (compared by sha256). When it does not, RefreshInitrd
// rebuilds the initramfs alone, in well under a second.
func (e *Env) AgentMatches(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if fi.Size() != e.Manifest.Agent.Size {
		return false, nil
	}
	got, err := hashFile(path)
	if err != nil {
		return false, err
	}
	return got.SHA256 == e.Manifest.Agent.SHA256, nil
}

// outdated says why the environment should be rebuilt for spec, or "".
func (e *Env) outdated(spec Spec) string {
	switch {
	case e.Manifest.Builder != BuilderVersion:
		return fmt.Sprintf("built by build recipe %d; this pyro has recipe %d", e.Manifest.Builder, BuilderVersion)
	case e.Manifest.SpecDigest != spec.digest():
		return "this pyro's definition of the environment (packages, kernel, modules) changed since it was built"
	}
	return ""
}

// State is an environment's state in List.
type State string

const (
	StateBuilt    State = "built"
	StateNotBuilt State = "not built"
	StateBroken   State = "broken"
)

// Status describes one environment for List.
type Status struct {
	Spec     Spec
	State    State
	Env      *Env   // when built
	Size     int64  // total bytes of its files (apparent size) when built
	Disk     int64  // bytes they occupy on disk (the image is sparse)
	Reason   string // when broken: what is wrong and how to fix it
	Outdated string // when built from an older recipe: why to rebuild
	Building bool   // a build of it is running now
}

// List returns the state of every environment pyro knows, in Specs order.
// It checks sizes, not checksums.
func List(cacheRoot string) []Status {
	var out []Status
	for _, s := range Specs() {
		st := Status{Spec: s}
		st.Building = lockHeld(lockPath(cacheRoot, s.Name))
		e, err := Load(cacheRoot, s.Name)
		var nb *NotBuiltError
		switch {
		case err == nil:
			st.State, st.Env = StateBuilt, e
			for _, f := range requiredFiles {
				st.Size += e.Manifest.Files[f].Size
				if fi, err := os.Stat(filepath.Join(e.Dir, f)); err == nil {
					if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
						st.Disk += sys.Blocks * 512
					}
				}
			}
			st.Outdated = e.outdated(s)
		case errors.As(err, &nb) && nb.Reason == "":
			st.State = StateNotBuilt
		default:
			st.State, st.Reason = StateBroken, err.Error()
		}
		out = append(out, st)
	}
	return out
}

// hashFile returns the size and sha256 of a file.
func hashFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, err
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
