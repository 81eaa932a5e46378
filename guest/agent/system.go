package agent

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// System performs the operations that act on the whole guest.
type System interface {
	Sync() error
	Freeze(mountpoint string) error
	Thaw(mountpoint string) error
	SetTime(t time.Time) error
	// Restored makes a guest just restored from a memory snapshot its
	// own (restored.go): the caller has checked a.
	Restored(a proto.RestoredArgs) (proto.RestoredResult, error)
	// Poweroff checks that the guest can be powered off and returns
	// the function that does it, which the server calls after answering.
	Poweroff() (func(), error)
}

// HostSystem is the System of an agent that is not a guest's PID 1 (tests,
// debugging on the host): Sync works, the rest would act on the host and
// answer CodeUnsupported instead.
type HostSystem struct{}

func (HostSystem) Sync() error               { unix.Sync(); return nil }
func (HostSystem) Freeze(string) error       { return notInGuest("freeze") }
func (HostSystem) Thaw(string) error         { return notInGuest("thaw") }
func (HostSystem) SetTime(time.Time) error   { return notInGuest("set_time") }
func (HostSystem) Poweroff() (func(), error) { return nil, notInGuest("poweroff") }
func (HostSystem) Restored(proto.RestoredArgs) (proto.RestoredResult, error) {
	return proto.RestoredResult{}, notInGuest("restored")
}

func notInGuest(op string) error {
	return &proto.Error{Code: proto.CodeUnsupported,
		Message: op + " acts on the whole machine; it is only served by the agent running as PID 1 in a pyro guest"}
}

// GuestSystem is the System of the agent running as the guest's PID 1.
type GuestSystem struct{}

func (GuestSystem) Sync() error { unix.Sync(); return nil }

// FIFREEZE and FITHAW are _IOWR('X', 119, int) and _IOWR('X', 120, int)
// from <linux/fs.h>.
const (
	fiFreeze = 0xC0045877
	fiThaw   = 0xC0045878
)

func (GuestSystem) Freeze(mountpoint string) error { return freezeIoctl(mountpoint, fiFreeze) }
func (GuestSystem) Thaw(mountpoint string) error   { return freezeIoctl(mountpoint, fiThaw) }

func freezeIoctl(mountpoint string, req uint) error {
	op, hint := "freeze", "it is already frozen; thaw it first"
	if req == fiThaw {
		op, hint = "thaw", "it is not frozen"
	}
	fd, err := unix.Open(mountpoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: op, Path: mountpoint, Err: err}
	}
	defer unix.Close(fd)
	err = unix.IoctlSetInt(fd, req, 0)
	switch {
	case err == nil:
		return nil
	case (req == fiFreeze && err == unix.EBUSY) || (req == fiThaw && err == unix.EINVAL):
		return fmt.Errorf("%s %s: %w (%s)", op, mountpoint, err, hint)
	case err == unix.EOPNOTSUPP || err == unix.ENOTTY:
		return fmt.Errorf("%s %s: %w (this file system cannot be frozen)", op, mountpoint, err)
	}
	return &os.PathError{Op: op, Path: mountpoint, Err: err}
}

func (GuestSystem) SetTime(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("setting the clock: %w", err)
	}
	return nil
}

func (GuestSystem) Poweroff() (func(), error) {
	if os.Getpid() != 1 {
		return nil, notInGuest("poweroff")
	}
	return func() { shutdown("poweroff requested by the host") }, nil
}

// shutdown stops every process, syncs, remounts the root read-only and
// powers the VM off. It does not return.
func shutdown(reason string) {
	consolef("pyro-agent: %s: stopping processes and powering off", reason)
	unix.Kill(-1, unix.SIGTERM) // as PID 1: every process but this one
	time.Sleep(200 * time.Millisecond)
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "") // best effort: files may still be open
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	panic(errors.Join(errors.New("pyro-agent: reboot(POWER_OFF) failed"), err))
}

// system is the System whole-guest operations go to.
func (s *Server) system() System {
	if s.System == nil {
		return HostSystem{}
	}
	return s.System
}

func (s *Server) sync(*stream, *proto.Empty) (*proto.Empty, error) {
	return &proto.Empty{}, s.system().Sync()
}

func (s *Server) freeze(_ *stream, a *proto.FreezeArgs) (*proto.Empty, error) {
	p, err := s.path(a.Mountpoint)
	if err != nil {
		return nil, err
	}
	return &proto.Empty{}, s.system().Freeze(p)
}

func (s *Server) thaw(_ *stream, a *proto.ThawArgs) (*proto.Empty, error) {
	p, err := s.path(a.Mountpoint)
	if err != nil {
		return nil, err
	}
	return &proto.Empty{}, s.system().Thaw(p)
}

func (s *Server) setTime(_ *stream, a *proto.SetTimeArgs) (*proto.Empty, error) {
	if a.TimeNs <= 0 {
		return nil, invalidf("set_time needs time_ns, the Unix time in nanoseconds")
	}
	return &proto.Empty{}, s.system().SetTime(time.Unix(0, a.TimeNs))
}

// poweroff answers, then powers the guest off (stream.after).
func (s *Server) poweroff(st *stream, _ *proto.Empty) (*proto.Empty, error) {
	off, err := s.system().Poweroff()
	st.after = off
	return &proto.Empty{}, err
}
