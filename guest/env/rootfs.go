package env

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Hostname is the guest's default host name.
const Hostname = "pyro"

// stageBusybox fills staging with busybox-static's binary, a symlink for
// each applet (the list comes from running that very binary with
// --list-full on the host: it is static x86-64) and the base files of a
// tiny system.
func stageBusybox(ctx context.Context, debs debSource, work, staging string) (pkg, ver string, err error) {
	dir := filepath.Join(work, "busybox")
	if pkg, ver, err = debs.unpack(ctx, "busybox-static", dir); err != nil {
		return "", "", err
	}
	bb := filepath.Join(dir, "bin", "busybox")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bb, "--list-full")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --list-full: %v: %s", bb, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.MkdirAll(filepath.Join(staging, "bin"), 0o755); err != nil {
		return "", "", err
	}
	if err := copyFile(filepath.Join(staging, "bin", "busybox"), bb, 0o755); err != nil {
		return "", "", err
	}
	applets := 0
	for _, rel := range strings.Fields(string(out)) {
		rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
		if !strings.Contains(rel, "/") || rel == "bin/busybox" {
			continue // linuxrc: an initrd convention this root does not need
		}
		p := filepath.Join(staging, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", "", err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return "", "", err
		}
		applets++
	}
	if applets < 50 {
		return "", "", fmt.Errorf("%s --list-full listed only %d applets", bb, applets)
	}
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755}, {"mnt", 0o755},
		{"tmp", 0o777 | fs.ModeSticky}, {"var/tmp", 0o777 | fs.ModeSticky}, {"root", 0o700},
		{"etc", 0o755}, {"usr/local/bin", 0o755}, {"home", 0o755},
	} {
		p := filepath.Join(staging, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", "", err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return "", "", err
		}
	}
	version := ver
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:]
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group": "root:x:0:\nnogroup:x:65534:\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\n" +
			"nobody:*:19000:0:99999:7:::\n",
		"etc/shells": "/bin/sh\n/bin/ash\n",
		"etc/profile": "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
			"export HOME=${HOME:-/root}\n" +
			"PS1='\\u@\\h:\\w\\$ '\n",
		"etc/os-release": "PRETTY_NAME=\"pyro minimal (busybox " + version + ")\"\n" +
			"NAME=\"pyro minimal\"\n" +
			"ID=pyro\n" +
			"VARIANT_ID=minimal\n" +
			"VERSION_ID=" + strconv.Quote(version) + "\n",
	}
	for name, content := range files {
		mode := fs.FileMode(0o644)
		if name == "etc/shadow" {
			mode = 0o600
		}
		if err := writeFile(filepath.Join(staging, name), content, mode); err != nil {
			return "", "", err
		}
	}
	return pkg, ver, nil
}

// writeEnvFiles writes what every environment's root has: the host name,
// /etc/hosts, a placeholder resolv.conf (the agent writes the real one when
// a network is granted), /workspace, and /etc/pyro-environment.
func writeEnvFiles(staging string, spec Spec) error {
	files := []struct {
		name, content string
	}{
		{"etc/hostname", Hostname + "\n"},
		{"etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\t" + Hostname + "\n" +
			"::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"},
		{"etc/resolv.conf", "# pyro: the guest agent writes the name servers here when the workspace is granted a network.\n"},
		{"etc/pyro-environment", "PYRO_ENV=" + spec.Name + "\n"},
	}
	for _, f := range files {
		p := filepath.Join(staging, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		os.Remove(p) // mmdebstrap may leave the host's file or a symlink here
		if err := writeFile(p, f.content, 0o644); err != nil {
			return err
		}
	}
	ws := filepath.Join(staging, "workspace")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return err
	}
	return os.Chmod(ws, 0o755)
}

// dpkgExcludes keep documentation, manual pages and translations out of a
// Debian root (copyright files stay). mmdebstrap also leaves them in
// /etc/dpkg/dpkg.cfg.d/99mmdebstrap, so packages installed later in a
// workspace skip them too.
var dpkgExcludes = []string{
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/locale/*",
	"path-include=/usr/share/locale/locale.alias",
	"path-exclude=/usr/share/lintian/*",
	"path-exclude=/usr/share/linda/*",
}

// mmdebstrap makes the Debian tree in b.staging. As root it writes the
// directory directly (--mode=unshare: in a private mount namespace, so a
// killed build leaves no mounts behind); as another user it writes a tarball
// from a user namespace, which is unpacked under fakeroot, whose saved
// state keeps the files root-owned for mkfs.ext4.
func (b *builder) mmdebstrap(ctx context.Context) error {
	mirrors := b.opts.Mirrors
	if len(mirrors) == 0 {
		var err error
		if mirrors, err = debianSources("/", b.spec.Suite); err != nil {
			return err
		}
	}
	fmt.Fprintf(b.log, "apt sources: %s\n", strings.Join(mirrors, " | "))
	args := []string{mustTool("mmdebstrap"), "--mode=unshare", "--variant=minbase",
		"--include=" + strings.Join(b.spec.Packages, ",")}
	for _, o := range dpkgExcludes {
		args = append(args, "--dpkgopt="+o)
	}
	if err := os.Mkdir(b.staging, 0o755); err != nil {
		return err
	}
	if b.asRoot {
		b.mode = "mmdebstrap --mode=unshare as root"
		args = append(args, "--format=directory", b.spec.Suite, b.staging)
		return runTool(ctx, b.log, nil, append(args, mirrors...)...)
	}
	b.mode = "mmdebstrap --mode=unshare (tarball) + fakeroot"
	tarball := filepath.Join(b.work, "rootfs.tar")
	args = append(args, "--format=tar", b.spec.Suite, tarball)
	if err := runTool(ctx, b.log, nil, append(args, mirrors...)...); err != nil {
		return fmt.Errorf("%w\n(as a non-root user mmdebstrap needs unprivileged user namespaces and entries for you in /etc/subuid and /etc/subgid; or build as root)", err)
	}
	// Without xattrs: fakeroot 1.31 records a file whose xattrs tar sets
	// (ping's security.capability) with no file type, and mkfs.ext4 then
	// fails on a "weird file". The guest runs as root, so the capability
	// is not missed.
	b.fakedb = filepath.Join(b.work, "fakeroot.state")
	err := runTool(ctx, b.log, nil, mustTool("fakeroot"), "-s", b.fakedb, "--",
		mustTool("tar"), "--numeric-owner", "--no-xattrs", "-xpf", tarball, "-C", b.staging)
	os.Remove(tarball)
	return err
}

// customizeDebian makes a fresh mmdebstrap tree a pyro root: pyro's files,
// pip allowed to install system-wide (PEP 668: a workspace is disposable,
// and agents run pip install), and no caches or logs from the build.
func customizeDebian(staging string, spec Spec) error {
	if err := writeEnvFiles(staging, spec); err != nil {
		return err
	}
	pip := "[global]\n# pyro: workspaces are disposable VMs; let pip install system-wide (PEP 668).\nbreak-system-packages = true\n"
	if err := writeFile(filepath.Join(staging, "etc", "pip.conf"), pip, 0o644); err != nil {
		return err
	}
	for _, pat := range []string{
		"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
		"var/lib/apt/lists/*_*", "var/log/apt/*", "var/log/dpkg.log", "var/log/alternatives.log",
		"var/log/bootstrap.log", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "root/.bash_history",
		"var/cache/ldconfig/aux-cache",
	} {
		m, _ := filepath.Glob(filepath.Join(staging, pat))
		for _, p := range m {
			os.RemoveAll(p)
		}
	}
	return nil
}

// installedPackages lists the packages of a Debian tree (dpkg-query -W).
func installedPackages(ctx context.Context, staging string) ([]Package, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, mustTool("dpkg-query"), "--admindir="+filepath.Join(staging, "var", "lib", "dpkg"),
		"-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-query: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 3 && strings.HasPrefix(f[2], "ii") {
			pkgs = append(pkgs, Package{Name: f[0], Version: f[1]})
		}
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("dpkg-query found no installed packages in %s", staging)
	}
	return pkgs, nil
}

// treeUsage is what a tree needs on an ext4 file system with 4 KiB blocks.
type treeUsage struct {
	Bytes int64 // data and directory blocks
	Files int64 // inodes
}

// measureTree adds up the blocks and inodes a tree will take (without
// following symlinks; hard links count once).
func measureTree(root string) (treeUsage, error) {
	const block = 4096
	var u treeUsage
	seen := map[[2]uint64]bool{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if id, ok := inodeID(fi); ok && !fi.IsDir() {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		u.Files++
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
			u.Bytes += (fi.Size() + block - 1) / block * block
		case fi.Mode()&fs.ModeSymlink != 0 && fi.Size() >= 60: // longer targets leave the inode
			u.Bytes += block
		}
		return nil
	})
	return u, err
}

// mke2fsConf pins the file system's features, whatever the host's
// /etc/mke2fs.conf says: Linux 6.1 (the guest kernel) supports all of them,
// and a newer host's defaults cannot slip in a feature it lacks.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// RootfsFeatures are the ext4 features of every root filesystem image.
var RootfsFeatures = []string{
	"has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent", "64bit",
	"flex_bg", "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum",
}

// mkfsExt4 makes img, size bytes with inodes inodes, holding the tree
// staging, all of it owned by root. Inode tables and the journal are
// initialized now (lazy_itable_init=0): otherwise the guest kernel would
// zero them in the background on first mount, writing megabytes into every
// workspace's copy-on-write layer. prefix runs mkfs under fakeroot.
func mkfsExt4(ctx context.Context, img, staging string, size, inodes int64, prefix []string, log io.Writer) error {
	conf := img + ".mke2fs.conf"
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		return err
	}
	defer os.Remove(conf)
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	argv := append(append([]string{}, prefix...), mustTool("mkfs.ext4"),
		"-F", "-q", "-t", "ext4", "-b", "4096", "-I", "256", "-N", strconv.FormatInt(inodes, 10),
		"-m", "0", "-L", RootfsLabel,
		"-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
		"-d", staging, img)
	return runTool(ctx, log, []string{"MKE2FS_CONFIG=" + conf}, argv...)
}

// copyFile copies src to dst (created or truncated) with mode.
func copyFile(dst, src string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFileWith(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}, mode)
}

// linkOrCopy hard-links src to dst, copying where linking fails.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	return copyFile(dst, src, fi.Mode().Perm())
}

// writeFileWith creates path (mode 0644 unless given) and fills it with fn.
func writeFileWith(path string, fn func(io.Writer) error, mode ...fs.FileMode) error {
	perm := fs.FileMode(0o644)
	if len(mode) > 0 {
		perm = mode[0]
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, perm)
	}
	return err
}

// writeFile writes content to path with exactly mode, whatever the umask.
func writeFile(path, content string, mode fs.FileMode) error {
	return writeFileWith(path, func(w io.Writer) error {
		_, err := io.WriteString(w, content)
		return err
	}, mode)
}

// inodeID identifies a file's inode, to count hard links once.
func inodeID(fi os.FileInfo) ([2]uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, true
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error { return syncFile(dir) }

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
