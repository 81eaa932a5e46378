package agent

// PID 1 duties. Everything here runs once, in order, before the agent
// serves; any failure is fatal: the reason goes to the serial console,
// prefixed with proto.FatalMarker, and the VM powers off. It can only be
// exercised in a VM (cmd/pyro's VM tests boot it).

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Kernel command line parameters Main reads (and pyro.agent_port=,
// default proto.DefaultAgentPort).
const (
	DefaultRoot     = "/dev/vda" // pyro.root=
	DefaultRootFS   = "ext4"     // pyro.rootfstype=
	defaultRootWait = 10         // pyro.root_wait= (seconds)
)

// ModulesOrderPath lists, one absolute path a line in load order, the
// kernel modules the initramfs carries. guest/env writes it (its
// ModulesOrderPath; a test keeps the two equal without making the agent
// import the environment builder).
const ModulesOrderPath = "/lib/modules/pyro/modules.order"

const newRoot = "/newroot"

// Main is the guest's init: cmd/pyro calls it when it runs as PID 1. It
// mounts /dev, /proc and /sys, loads the initramfs's kernel modules,
// mounts the root disk named by pyro.root=, grows its ext4 file system to
// the disk (growRoot), and switches into it, mounts
// devpts, /dev/shm, /tmp and /run, sets the hostname (pyro.hostname=),
// brings up lo, and serves the host on vsock port pyro.agent_port=
// (default 52), reaping orphans all along. It never returns: a failure
// powers the VM off after saying why on the console.
func Main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pyro-agent: agent.Main is the guest's init and must run as PID 1; use agent.Serve elsewhere")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			fatal("panic: %v\n%s", r, debug.Stack())
		}
	}()
	// Go exits on SIGHUP, SIGINT, SIGTERM and SIGQUIT by default, which
	// as PID 1 panics the kernel. Notify keeps Go's handlers installed
	// (unlike signal.Ignore, whose SIG_IGN exec'd children would inherit).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGABRT, unix.SIGPWR)
	go func() {
		for s := range sigs {
			consolef("pyro-agent: ignoring %v sent to PID 1", s)
		}
	}()
	os.Setenv("PATH", DefaultPath)
	os.Setenv("HOME", "/root")

	mountEarly()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fatal("reading /proc/cmdline: %v", err)
	}
	params := parseCmdline(string(cmdline))
	modErrs := loadModules(ModulesOrderPath)
	mountRoot(params, modErrs)
	growRoot(params, newRoot)
	switchRoot()
	mountLate()
	if h, ok := params["pyro.hostname"]; ok && h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			consolef("pyro-agent: warning: sethostname %q: %v", h, err)
		}
	}
	if err := loopbackUp(); err != nil {
		consolef("pyro-agent: warning: bringing up lo: %v", err)
	}
	if err := networkUp(); err != nil {
		consolef("pyro-agent: warning: network: %v", err)
	}

	srv := &Server{System: GuestSystem{}, Logf: consolef, reaper: startReaper()}
	if meminfo, err := os.ReadFile("/proc/meminfo"); err != nil {
		consolef("pyro-agent: warning: %v: user commands run without limits", err)
	} else if total, err := memTotal(meminfo); err != nil {
		consolef("pyro-agent: warning: %v: user commands run without limits", err)
	} else if srv.cgroups, err = setupCgroups(cgroupRoot, total, consolef); err != nil {
		consolef("pyro-agent: warning: limiting user commands: %v", err)
	}
	port := uint32(proto.DefaultAgentPort)
	if p, ok := params["pyro.agent_port"]; ok {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			fatal("pyro.agent_port=%q is not a port number", p)
		}
		port = uint32(n)
	}
	l, err := ListenVsock(port)
	if err != nil {
		fatal("%v", err)
	}
	consolef("%s on vsock port %d after %v", proto.ReadyMarker, port, uptime().Round(time.Millisecond))
	err = srv.Serve(l)
	fatal("serving vsock port %d stopped: %v", port, err)
}

// consolef writes a line to the console (the agent's stderr, which the
// kernel opened on /dev/console).
func consolef(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// fatal reports why init failed and powers the VM off; if even that
// fails, it panics, and PID 1 exiting panics the kernel.
func fatal(format string, args ...any) {
	msg := fmt.Sprintf(proto.FatalMarker+" "+format+"\n", args...)
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		f.WriteString(msg)
		unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) // tcdrain: let the UART send it all
		f.Close()
	} else {
		os.Stderr.WriteString(msg)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	panic(msg)
}

func uptime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// mount mounts and says what failed, for fatal.
func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("creating mount point %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount -t %s %s %s (flags %#x, %q): %w", fstype, src, dst, flags, data, err)
	}
	return nil
}

// mountEarly mounts what the initramfs needs: /dev (devtmpfs: device
// nodes appear as drivers bind), /proc and /sys.
func mountEarly() {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	if err := mount("devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"); err != nil && !errors.Is(err, unix.EBUSY) {
		fatal("%v (the kernel needs CONFIG_DEVTMPFS)", err)
	}
	// The kernel opens /dev/console for init only if the initramfs has
	// the node; if it did not, stdio is closed: open it now.
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
		if fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0); err == nil {
			for i := 0; i < 3; i++ {
				if fd != i {
					unix.Dup3(fd, i, 0)
				}
			}
		}
	}
	if err := mount("proc", "/proc", "proc", nosuid|nodev|noexec, ""); err != nil {
		fatal("%v", err)
	}
	if err := mount("sysfs", "/sys", "sysfs", nosuid|nodev|noexec, ""); err != nil {
		fatal("%v", err)
	}
}

// parseCmdline splits the kernel command line into key=value parameters
// (a bare word maps to ""), honouring double quotes as the kernel does.
func parseCmdline(s string) map[string]string {
	m := map[string]string{}
	var cur strings.Builder
	quoted, have := false, false
	flush := func() {
		if have {
			k, v, _ := strings.Cut(cur.String(), "=")
			m[k] = v
		}
		cur.Reset()
		have = false
	}
	for _, r := range s {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	flush()
	return m
}

// loadModules loads the modules listed in the file at list, in order.
// Already loaded (or built-in) is fine. It returns the failures, which
// are reported only if the root disk then fails to appear.
func loadModules(list string) []string {
	f, err := os.Open(list)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a kernel with everything built in
		}
		return []string{err.Error()}
	}
	defer f.Close()
	var errs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if err := loadModule(p); err != nil {
			errs = append(errs, err.Error())
		}
	}
	return errs
}

func loadModule(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("module %s: %w", p, err)
	}
	defer unix.Close(fd)
	flags := 0
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ext) {
			flags = unix.MODULE_INIT_COMPRESSED_FILE // needs CONFIG_MODULE_DECOMPRESS
		}
	}
	for {
		err = unix.FinitModule(fd, "", flags)
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("module %s: finit_module: %w", p, err)
	}
	return nil
}

// mountRoot waits for the root block device and mounts it on /newroot.
func mountRoot(params map[string]string, modErrs []string) {
	dev := params["pyro.root"]
	if dev == "" {
		dev = DefaultRoot
	}
	fstype := params["pyro.rootfstype"]
	if fstype == "" {
		fstype = DefaultRootFS
	}
	wait := defaultRootWait * time.Second
	if w, err := strconv.ParseFloat(params["pyro.root_wait"], 64); err == nil && w > 0 {
		wait = time.Duration(w * float64(time.Second))
	}
	deadline := time.Now().Add(wait)
	for {
		var st unix.Stat_t
		if unix.Stat(dev, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			break
		}
		if time.Now().After(deadline) {
			fatal("root device %s (pyro.root=) did not appear within %v.\n%s", dev, wait, deviceReport(modErrs))
		}
		time.Sleep(time.Millisecond)
	}
	flags, data := rootFlags(params)
	if err := mount(dev, newRoot, fstype, flags, data); err != nil {
		fatal("mounting the root disk: %v (pyro.root=%s pyro.rootfstype=%s pyro.rootflags=%q)\n%s",
			err, dev, fstype, params["pyro.rootflags"], deviceReport(modErrs))
	}
}

// rootFlags turns ro/rw and pyro.rootflags= into mount flags and the
// file-system-specific rest.
func rootFlags(params map[string]string) (uintptr, string) {
	var flags uintptr
	if _, ok := params["ro"]; ok {
		flags |= unix.MS_RDONLY
	}
	known := map[string]uintptr{"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
		"noexec": unix.MS_NOEXEC, "sync": unix.MS_SYNCHRONOUS, "noatime": unix.MS_NOATIME,
		"nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME, "lazytime": unix.MS_LAZYTIME}
	var data []string
	for _, o := range strings.Split(params["pyro.rootflags"], ",") {
		switch f, ok := known[o]; {
		case o == "":
		case o == "rw":
			flags &^= unix.MS_RDONLY
		case ok:
			flags |= f
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// deviceReport says what block and virtio devices the kernel has, and
// which modules failed, for a root device that never appeared.
func deviceReport(modErrs []string) string {
	var b strings.Builder
	ls := func(dir string) string {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err.Error()
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) == 0 {
			return "(none)"
		}
		return strings.Join(names, " ")
	}
	fmt.Fprintf(&b, "  block devices (/sys/block): %s\n", ls("/sys/block"))
	var virtio []string
	ents, _ := os.ReadDir("/sys/bus/virtio/devices")
	for _, e := range ents {
		id, _ := os.ReadFile(filepath.Join("/sys/bus/virtio/devices", e.Name(), "device"))
		drv, _ := os.Readlink(filepath.Join("/sys/bus/virtio/devices", e.Name(), "driver"))
		virtio = append(virtio, fmt.Sprintf("%s(id %s, driver %s)", e.Name(), strings.TrimSpace(string(id)), orNone(filepath.Base(drv))))
	}
	fmt.Fprintf(&b, "  virtio devices: %s\n", orNone(strings.Join(virtio, " ")))
	var disks []string
	ents, _ = os.ReadDir("/dev")
	for _, e := range ents {
		if e.Type()&os.ModeDevice != 0 && e.Type()&os.ModeCharDevice == 0 {
			disks = append(disks, "/dev/"+e.Name())
		}
	}
	sort.Strings(disks)
	fmt.Fprintf(&b, "  block nodes in /dev: %s\n", orNone(strings.Join(disks, " ")))
	if len(modErrs) > 0 {
		fmt.Fprintf(&b, "  module failures:\n    %s\n", strings.Join(modErrs, "\n    "))
	}
	b.WriteString("  Check that the VMM describes the virtio-blk device (ACPI DSDT) and that the initramfs carries virtio_mmio and virtio_blk (or the kernel has them built in).")
	return b.String()
}

func orNone(s string) string {
	if s == "" || s == "." {
		return "(none)"
	}
	return s
}

// switchRoot makes /newroot the root: moves /dev, /proc and /sys into it,
// frees the initramfs's files (like switch_root), then moves the new root
// over / and chroots into it.
func switchRoot() {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		dst := newRoot + m
		if err := os.MkdirAll(dst, 0o755); err != nil {
			fatal("the root disk has no %s and it cannot be created: %v", m, err)
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			fatal("moving %s to %s: %v", m, dst, err)
		}
	}
	freeInitramfs()
	if err := unix.Chdir(newRoot); err != nil {
		fatal("chdir %s: %v", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		fatal("moving %s to /: %v", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		fatal("chroot into the root disk: %v", err)
	}
	if err := unix.Chdir("/"); err != nil {
		fatal("chdir /: %v", err)
	}
}

// freeInitramfs deletes the initramfs's files (the pyro binary, modules),
// whose memory the guest would otherwise lose for good. It acts only on a
// ramfs or tmpfs root and never crosses into another mount.
func freeInitramfs() {
	var sfs unix.Statfs_t
	if unix.Statfs("/", &sfs) != nil || (sfs.Type != unix.RAMFS_MAGIC && sfs.Type != unix.TMPFS_MAGIC) {
		return
	}
	var st unix.Stat_t
	if unix.Lstat("/", &st) != nil {
		return
	}
	removeTree("/", st.Dev)
}

func removeTree(dir string, dev uint64) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue // a mount point (the new root): not ours
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			removeTree(p, dev)
			unix.Rmdir(p)
		} else {
			unix.Unlink(p)
		}
	}
}

// mountLate mounts, in the new root, what programs expect: devpts,
// /dev/shm, /tmp and /run (tmpfs), /run/pyro/secrets (a tmpfs of its
// own), and the /dev/fd links. Failures are
// warnings: a workspace without /dev/shm is still useful.
func mountLate() {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
		// The workspace's secrets: root's only, in memory, never on the
		// disk (the host writes them after boot; see mcp/workspace).
		{"pyro-secrets", "/run/pyro/secrets", "tmpfs", nosuid | nodev | noexec, "mode=0700,size=8m"},
		{"tmpfs", proto.ServiceLogDir, "tmpfs", nosuid | nodev | noexec, "mode=0755,size=" + serviceLogTmpfsSize}, // service.go
	} {
		if err := mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			consolef("pyro-agent: warning: %v", err)
		}
	}
	for name, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, name); err != nil && !errors.Is(err, os.ErrExist) {
			consolef("pyro-agent: warning: %v", err)
		}
	}
}

// loopbackUp sets IFF_UP on lo; the kernel then gives it 127.0.0.1/8 and ::1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}
