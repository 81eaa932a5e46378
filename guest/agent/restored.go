package agent

// Restoring a memory snapshot brings back the guest as it was saved: its
// kernel's random pool and generator, its boot id, host name and machine
// id. One snapshot may be restored many times (forks, a warm snapshot
// per environment), and every copy would draw the same "random" keys,
// nonces and UUIDs and call itself by the same ids. The host's first
// request to a restored guest, restored (proto.OpRestored), gives each
// copy its own; this file carries it out.
//
// The kernel parts, each needing root (CAP_SYS_ADMIN), which the agent
// as PID 1 has:
//   - RNDADDENTROPY on /dev/urandom writes the host's bytes into the
//     input pool and credits every bit (random(4), <linux/random.h>);
//     RNDRESEEDCRNG then makes the generator take them now rather than
//     at its next scheduled reseed (Linux 4.17+).
//   - /proc/sys/kernel/random/boot_id is fixed at boot and read-only, so
//     a file holding the new id, on /run (a tmpfs), is bind-mounted over
//     it. Each restore detaches the previous restore's mount before
//     mounting its own, so mounts never stack up.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

const (
	// bootIDPath is where the kernel shows its boot id.
	bootIDPath = "/proc/sys/kernel/random/boot_id"
	// bootIDFile holds a restored guest's boot id, mounted over
	// bootIDPath. /run is a tmpfs the agent mounts (mountLate).
	bootIDFile = "/run/pyro/boot_id"
	// machineIDPath is machine-id(5).
	machineIDPath = "/etc/machine-id"
	// maxBootIDMounts bounds the mounts setBootID detaches from
	// bootIDPath: one is what it leaves, more were not its doing.
	maxBootIDMounts = 16
)

func (s *Server) restored(_ *stream, a *proto.RestoredArgs) (*proto.RestoredResult, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	r, err := s.system().Restored(*a)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Restored implements System. The entropy goes in first: whatever fails
// later, the copy no longer shares its generator's state.
func (g GuestSystem) Restored(a proto.RestoredArgs) (proto.RestoredResult, error) {
	reseeded, err := addEntropy(a.Entropy)
	if err != nil {
		return proto.RestoredResult{}, err
	}
	if err := g.SetTime(time.Unix(0, a.TimeNs)); err != nil {
		return proto.RestoredResult{}, err
	}
	if a.BootID != "" {
		if err := setBootID(kernelMounts{}, bootIDFile, bootIDPath, a.BootID); err != nil {
			return proto.RestoredResult{}, err
		}
	}
	if a.Hostname != "" {
		if err := unix.Sethostname([]byte(a.Hostname)); err != nil {
			return proto.RestoredResult{}, fmt.Errorf("setting the host name to %q: %w", a.Hostname, err)
		}
	}
	if a.MachineID != "" {
		if _, err := replaceMachineID(machineIDPath, a.MachineID); err != nil {
			return proto.RestoredResult{}, err
		}
	}
	id, err := readBootID(bootIDPath)
	if err != nil {
		return proto.RestoredResult{}, err
	}
	if a.BootID != "" && id != a.BootID {
		return proto.RestoredResult{}, fmt.Errorf("%s reads %q after mounting %s over it, not the boot id %s", bootIDPath, id, bootIDFile, a.BootID)
	}
	return proto.RestoredResult{Reseeded: reseeded, BootID: id}, nil
}

// addEntropy mixes b into the kernel's input pool, crediting all its
// bits, and reseeds the kernel's generator. reseeded is false where the
// kernel cannot reseed on request: too old for RNDRESEEDCRNG (ENOTTY,
// EINVAL), or its generator not yet initialized (ENODATA, which the
// credit just given should rule out); the entropy is in the pool then,
// and the generator takes it at its next reseed.
func addEntropy(b []byte) (reseeded bool, err error) {
	fd, err := unix.Open("/dev/urandom", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: "/dev/urandom", Err: err}
	}
	defer unix.Close(fd)
	// The ioctl reads the struct through its pointer argument: pass its
	// bytes as a string (x/sys/unix's pointer-passing helper, which adds
	// a NUL the kernel does not read).
	if err := unix.IoctlSetString(fd, unix.RNDADDENTROPY, string(randPoolInfo(b))); err != nil {
		return false, fmt.Errorf("adding %d bytes of entropy to the kernel's pool (RNDADDENTROPY): %w", len(b), err)
	}
	switch err := unix.IoctlSetInt(fd, unix.RNDRESEEDCRNG, 0); err {
	case nil:
		return true, nil
	case unix.ENOTTY, unix.EINVAL, unix.ENODATA:
		return false, nil
	default:
		return false, fmt.Errorf("reseeding the kernel's random generator (RNDRESEEDCRNG): %w", err)
	}
}

// randPoolInfo lays out struct rand_pool_info (<linux/random.h>) holding
// b, credited in full: int entropy_count (bits), int buf_size (bytes),
// then the bytes.
func randPoolInfo(b []byte) []byte {
	p := make([]byte, 8+len(b))
	binary.NativeEndian.PutUint32(p[0:4], uint32(8*len(b)))
	binary.NativeEndian.PutUint32(p[4:8], uint32(len(b)))
	copy(p[8:], b)
	return p
}

// mountTable is what setBootID changes in the mount table: the guest's
// (kernelMounts), or a test's.
type mountTable interface {
	// Detach lazily unmounts the topmost mount at target, and fails
	// with unix.EINVAL when target is not a mount point.
	Detach(target string) error
	// BindReadOnly bind-mounts the file source over target, read-only.
	BindReadOnly(source, target string) error
}

// setBootID makes target (bootIDPath) read id: it writes id and a newline
// to file, detaches every mount at target, at most maxBootIDMounts (the
// previous restore's: one), and bind-mounts file over it. The file is
// replaced by a rename, never rewritten, so a mount detached but still
// open somewhere keeps the id it had.
func setBootID(m mountTable, file, target, id string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	os.Remove(tmp) // an earlier try's, read-only
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o444); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the boot id: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the boot id: %w", err)
	}
	for n := 0; ; n++ {
		if n == maxBootIDMounts {
			return fmt.Errorf("%s still has mounts over it after %d unmounts", target, n)
		}
		err := m.Detach(target)
		if errors.Is(err, unix.EINVAL) {
			break // nothing (more) mounted there
		}
		if err != nil {
			return fmt.Errorf("unmounting the previous boot id from %s: %w", target, err)
		}
	}
	if err := m.BindReadOnly(file, target); err != nil {
		return fmt.Errorf("mounting %s over %s: %w", file, target, err)
	}
	return nil
}

// kernelMounts is the guest's mount table.
type kernelMounts struct{}

func (kernelMounts) Detach(target string) error {
	return unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
}

func (kernelMounts) BindReadOnly(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	// A bind mount copies the flags of the mount it comes from (/run's,
	// read-write); read-only takes a remount of the bind.
	const flags = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		return fmt.Errorf("making the bind mount read-only: %w", err)
	}
	return nil
}

// readBootID reads a boot id file: one line.
func readBootID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// replaceMachineID writes id and a newline to path (machine-id(5)) if the
// guest has one: a non-empty regular file, whose mode and owner the new
// one keeps. Anything else (none, empty, a symlink) is left alone, and
// replaced is false. The new file is renamed over the old one, unsynced:
// an fsync would put a disk flush, through the host, on every restore's
// path, for a file that a guest crash before the next writeback loses
// to the old id at worst (ext4 orders a replacing rename after the data
// it points at).
func replaceMachineID(path, id string) (replaced bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return false, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("replacing the machine id: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Chmod(fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && err == nil {
		err = f.Chown(int(st.Uid), int(st.Gid))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return false, fmt.Errorf("replacing the machine id: %w", err)
	}
	return true, nil
}
