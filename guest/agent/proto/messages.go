package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Limits both sides apply.
const (
	DefaultListLimit = 10000     // list entries when ListArgs.Limit is 0
	MaxListLimit     = 1000000   // the most entries one list may return
	DefaultReadMax   = 1 << 20   // read_file bytes when ReadFileArgs.Max is 0
	MaxReadFile      = 256 << 20 // the most bytes one read_file may return
)

// Request is the JSON payload of the Request frame: the operation's name
// and its arguments, a JSON object of the operation's argument type (see
// Op). Args is absent for an operation that takes none.
type Request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Op is one operation: its name on the wire (Request.Op), the type A of
// its arguments (Request.Args) and the type R of its answer (the Result
// frame's payload). The Client and the agent's dispatcher both go through
// these values, so an operation's name and its types cannot come apart.
// Adding an operation is: its argument and answer types, a row below, a
// Client method, a handler in the agent, a row in the package doc.
type Op[A, R any] struct{ Name string }

func (o Op[A, R]) String() string { return o.Name }

// The operations; the package doc says what each sends and streams
// besides its arguments and its answer.
var (
	OpPing      = Op[Empty, PingResult]{"ping"}
	OpExec      = Op[ExecArgs, ExecResult]{"exec"}
	OpStat      = Op[StatArgs, FileInfo]{"stat"}
	OpList      = Op[ListArgs, ListResult]{"list"}
	OpReadFile  = Op[ReadFileArgs, ReadResult]{"read_file"}
	OpWriteFile = Op[WriteFileArgs, WriteResult]{"write_file"}
	OpTarOut    = Op[TarOutArgs, TarResult]{"tar_out"}
	OpTarIn     = Op[TarInArgs, TarResult]{"tar_in"}
	OpSync      = Op[Empty, Empty]{"sync"}
	OpFreeze    = Op[FreezeArgs, Empty]{"freeze"}
	OpThaw      = Op[ThawArgs, Empty]{"thaw"}
	OpSetTime   = Op[SetTimeArgs, Empty]{"set_time"}
	OpPoweroff  = Op[Empty, Empty]{"poweroff"}
	OpDial      = Op[DialArgs, DialResult]{"dial"}
	OpRestored  = Op[RestoredArgs, RestoredResult]{"restored"}
)

// NewRequest returns the Request for op with args.
func NewRequest[A, R any](op Op[A, R], args A) (Request, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return Request{}, fmt.Errorf("proto: encoding %s arguments: %w", op, err)
	}
	if string(b) == "{}" {
		b = nil // nothing to say: leave args out
	}
	return Request{Op: op.Name, Args: b}, nil
}

// DecodeArgs decodes r's arguments as op's (the caller has matched r.Op
// to op). Absent or null arguments are the zero A; arguments that are not
// a JSON object of A's shape are a CodeProtocol *Error. Unknown fields
// are ignored.
func DecodeArgs[A, R any](op Op[A, R], r *Request) (A, error) {
	var a A
	if len(r.Args) > 0 {
		if err := json.Unmarshal(r.Args, &a); err != nil {
			return a, protoErrorf("bad %s arguments: %v", op, err)
		}
	}
	return a, nil
}

// Empty is the arguments or the answer of an operation that has none.
type Empty struct{}

// Confined is implemented by the arguments of the operations that a
// directory may confine (PathArgs.Beneath, ExecArgs.Beneath).
// Confinement returns that directory ("" for none), the path to check
// ("" for none) and whether a final symlink in it is followed. The Client
// sets the directory (Client.Beneath) on every request whose arguments
// are Confined; the agent checks the path before the operation runs.
type Confined interface {
	Confinement() (beneath, path string, follow bool)
	confine(beneath string)
}

// PathArgs are the arguments every file operation has: the path it works
// on, and the directory that confines it.
type PathArgs struct {
	Path string `json:"path"` // an absolute guest path
	// Beneath, when set, confines the request: Path must resolve inside
	// this directory, through ".." and symlinks alike, or the request
	// fails with EXDEV before touching anything. Absolute symlinks
	// count as leaving it.
	Beneath string `json:"beneath,omitempty"`
}

// Confinement implements Confined; the final symlink is followed.
func (a *PathArgs) Confinement() (string, string, bool) { return a.Beneath, a.Path, true }
func (a *PathArgs) confine(beneath string)              { a.Beneath = beneath }

// ExecArgs are exec's arguments.
type ExecArgs struct {
	Argv        []string          `json:"argv,omitempty"`          // program and arguments, PATH searched
	Shell       string            `json:"shell,omitempty"`         // a /bin/sh -c script, instead of argv
	Env         map[string]string `json:"env,omitempty"`           // merged over the default environment
	Cwd         string            `json:"cwd,omitempty"`           // default "/"
	Beneath     string            `json:"beneath,omitempty"`       // confines Cwd, as PathArgs.Beneath does Path
	Stdin       bool              `json:"stdin,omitempty"`         // Data frames follow; else /dev/null
	TimeoutMs   int64             `json:"timeout_ms,omitempty"`    // 0 = no limit
	KillGraceMs int64             `json:"kill_grace_ms,omitempty"` // SIGTERM to SIGKILL; 0 = DefaultKillGrace
	User        string            `json:"user,omitempty"`          // name or uid[:gid]; default root
}

// Confinement implements Confined: the working directory, if set, must
// resolve beneath.
func (a *ExecArgs) Confinement() (string, string, bool) { return a.Beneath, a.Cwd, true }
func (a *ExecArgs) confine(beneath string)              { a.Beneath = beneath }

// StatArgs are stat's arguments.
type StatArgs struct{ PathArgs }

// Confinement implements Confined: stat does not follow a final symlink.
func (a *StatArgs) Confinement() (string, string, bool) { return a.Beneath, a.Path, false }

// ListArgs are list's arguments.
type ListArgs struct {
	PathArgs
	Recursive bool `json:"recursive,omitempty"`
	Limit     int  `json:"limit,omitempty"` // at most this many entries; 0 = DefaultListLimit
}

// ReadFileArgs are read_file's arguments.
type ReadFileArgs struct {
	PathArgs
	Offset int64 `json:"offset,omitempty"`
	Max    int64 `json:"max,omitempty"` // at most this many bytes; 0 = DefaultReadMax
}

// WriteFileArgs are write_file's arguments.
type WriteFileArgs struct {
	PathArgs
	Mode         uint32 `json:"mode,omitempty"` // permission bits; 0 keeps an existing file's, else 0644
	MkdirParents bool   `json:"mkdir_parents,omitempty"`
}

// TarOutArgs are tar_out's arguments: the directory to archive.
type TarOutArgs struct{ PathArgs }

// TarInArgs are tar_in's arguments: the directory to extract into.
type TarInArgs struct{ PathArgs }

// FreezeArgs are freeze's arguments.
type FreezeArgs struct {
	Mountpoint string `json:"mountpoint"` // where the file system to freeze is mounted
}

// ThawArgs are thaw's arguments.
type ThawArgs struct {
	Mountpoint string `json:"mountpoint"` // where the frozen file system is mounted
}

// SetTimeArgs are set_time's arguments.
type SetTimeArgs struct {
	TimeNs int64 `json:"time_ns"` // Unix time in nanoseconds
}

// RestoredArgs are restored's arguments: what the host gives a guest it
// has just restored from a memory snapshot, so that no two copies of one
// snapshot share their randomness or their identity. Check says what is
// accepted.
type RestoredArgs struct {
	TimeNs int64 `json:"time_ns"` // the host's wall clock now, Unix time in nanoseconds
	// Entropy is fresh random bytes from the host (MinRestoredEntropy to
	// MaxRestoredEntropy; base64 on the wire), mixed into the guest
	// kernel's pool and credited in full before its generator reseeds.
	Entropy []byte `json:"entropy"`
	// Hostname, when set, becomes the kernel's host name (files such as
	// /etc/hostname are left alone): letters, digits and inner hyphens,
	// at most 63, as the kernel command line's pyro.hostname.
	Hostname string `json:"hostname,omitempty"`
	// BootID, when set, is what /proc/sys/kernel/random/boot_id reads
	// from now on: a UUID in the kernel's form, 36 characters of
	// lowercase hex and hyphens (8-4-4-4-12), not all zero.
	BootID string `json:"boot_id,omitempty"`
	// MachineID, when set, replaces the contents of /etc/machine-id if
	// the guest has one (a non-empty regular file); else it is ignored.
	// 32 lowercase hex characters, not all zero.
	MachineID string `json:"machine_id,omitempty"`
}

// Bounds of RestoredArgs.Entropy, in bytes: at least 256 bits, and far
// less than a frame.
const (
	MinRestoredEntropy = 32
	MaxRestoredEntropy = 512
)

// Check returns a CodeInvalid *Error naming the first field of a that is
// missing or malformed, or nil. The Client checks before sending and the
// agent before changing anything, so a refused request changes nothing.
func (a *RestoredArgs) Check() error {
	switch {
	case a.TimeNs <= 0:
		return errorf(CodeInvalid, "restored needs time_ns, the host's Unix time in nanoseconds")
	case len(a.Entropy) < MinRestoredEntropy || len(a.Entropy) > MaxRestoredEntropy:
		return errorf(CodeInvalid, "restored needs %d to %d bytes of fresh entropy, got %d", MinRestoredEntropy, MaxRestoredEntropy, len(a.Entropy))
	case a.Hostname != "" && !validHostname(a.Hostname):
		return errorf(CodeInvalid, "restored hostname %q: use at most 63 letters, digits and inner hyphens", clip(a.Hostname, 80))
	case a.BootID != "" && !validBootID(a.BootID):
		return errorf(CodeInvalid, "restored boot_id %q is not a UUID in lowercase hex (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, not all zero)", clip(a.BootID, 80))
	case a.MachineID != "" && !validMachineID(a.MachineID):
		return errorf(CodeInvalid, "restored machine_id %q is not 32 lowercase hex characters (not all zero)", clip(a.MachineID, 80))
	}
	return nil
}

// validHostname accepts what the host puts on the kernel command line
// (pyro.hostname): letters, digits and inner hyphens, at most 63.
func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 63 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// validBootID reports whether s is a boot id as the kernel writes one in
// /proc/sys/kernel/random/boot_id (without its newline): a UUID of
// lowercase hex, 8-4-4-4-12, not all zero.
func validBootID(s string) bool {
	if len(s) != 36 {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
			continue
		}
		if !isLowerHex(s[i]) {
			return false
		}
		zero = zero && s[i] == '0'
	}
	return !zero
}

// validMachineID accepts a machine-id(5): 32 lowercase hex, not all zero.
func validMachineID(s string) bool {
	if len(s) != 32 {
		return false
	}
	zero := true
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
		zero = zero && s[i] == '0'
	}
	return !zero
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// DialArgs are dial's arguments.
type DialArgs struct {
	Port uint16 `json:"port"` // the guest TCP port to connect to on its loopback
}

// DefaultKillGrace is how long a timed-out or cancelled exec's process
// group has between SIGTERM and SIGKILL, unless the request says.
const DefaultKillGrace = 2 * time.Second

// PingResult answers ping.
type PingResult struct {
	Version  string        `json:"version"`   // the agent's pyro version
	Protocol int           `json:"protocol"`  // Version
	Kernel   string        `json:"kernel"`    // uname -r
	Uptime   time.Duration `json:"uptime_ns"` // since the guest kernel booted
	PID      int           `json:"pid"`       // 1 in a guest
}

// ExecResult answers exec.
type ExecResult struct {
	// ExitCode is the process's exit status, or -1 if a signal killed it.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that killed the process ("SIGKILL"), or "".
	Signal string `json:"signal,omitempty"`
	// TimedOut says the timeout expired and the process group was killed.
	TimedOut bool `json:"timed_out,omitempty"`
	// Duration is from the start of the process to its exit.
	Duration time.Duration `json:"duration_ns"`

	// What the guest's limits on user commands did (zero where the guest
	// has none: an agent outside a VM, a kernel without cgroup v2).
	//
	// PidsLimited counts the forks the process limit refused to the
	// command's processes, and to processes earlier commands left
	// running, since the previous exec reported theirs.
	PidsLimited int64 `json:"pids_limited,omitempty"`
	// OOMKills counts, alike, the processes the OOM killer killed (on
	// the memory limit it kills all of one command's processes).
	OOMKills int64 `json:"oom_kills,omitempty"`
	// LeftRunning counts the command's processes still running when it
	// returned (background processes).
	LeftRunning int `json:"left_running,omitempty"`
	// EarlierRunning counts the processes earlier commands left running
	// when this one started; EarlierKilled those it killed first because
	// their command had hit a limit (a fork bomb outlives its shell).
	EarlierRunning int `json:"earlier_running,omitempty"`
	EarlierKilled  int `json:"earlier_killed,omitempty"`
	// DiskFull names the file systems (of / and the working directory)
	// with no space left after the command.
	DiskFull []string `json:"disk_full,omitempty"`
}

// File types of FileInfo.Type.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	TypeFIFO    = "fifo"
	TypeSocket  = "socket"
	TypeChar    = "char"
	TypeBlock   = "block"
)

// FileInfo describes one file, as lstat(2) sees it: symlinks are reported
// as symlinks, never followed.
type FileInfo struct {
	// Name is the base name for stat, the path relative to the listed
	// directory ("a/b.txt", slash-separated) for list.
	Name   string    `json:"name"`
	Type   string    `json:"type"`             // one of the Type constants
	Mode   uint32    `json:"mode"`             // st_mode & 07777: permissions, setuid, setgid, sticky
	Size   int64     `json:"size"`             // bytes
	MTime  time.Time `json:"mtime"`            // RFC 3339 with nanoseconds on the wire
	UID    uint32    `json:"uid"`              //
	GID    uint32    `json:"gid"`              //
	Target string    `json:"target,omitempty"` // symlink target
}

// FileMode returns Mode and Type as an fs.FileMode.
func (fi FileInfo) FileMode() fs.FileMode {
	m := fs.FileMode(fi.Mode & 0o777)
	if fi.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if fi.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if fi.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch fi.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	case TypeFIFO:
		m |= fs.ModeNamedPipe
	case TypeSocket:
		m |= fs.ModeSocket
	case TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		m |= fs.ModeDevice
	}
	return m
}

// ListResult ends a list.
type ListResult struct {
	Count     int  `json:"count"`               // entries sent
	Truncated bool `json:"truncated,omitempty"` // the limit stopped the listing
}

// ReadResult ends a read_file.
type ReadResult struct {
	Size int64 `json:"size"`          // the file's size when opened (0 for most /proc files)
	N    int64 `json:"n"`             // bytes sent
	EOF  bool  `json:"eof,omitempty"` // the read reached the end of the file
}

// WriteResult answers write_file.
type WriteResult struct {
	N int64 `json:"n"` // bytes written
}

// RestoredResult answers restored.
type RestoredResult struct {
	// Reseeded says the guest kernel's random generator reseeded from
	// the new entropy at once (RNDRESEEDCRNG). False on a kernel without
	// that ioctl: the entropy is mixed in and credited all the same, and
	// the generator takes it at its next scheduled reseed.
	Reseeded bool `json:"reseeded"`
	// BootID is what /proc/sys/kernel/random/boot_id reads now: the
	// request's boot_id when it had one.
	BootID string `json:"boot_id"`
}

// DialResult ends a dial: the bytes relayed each way.
type DialResult struct {
	In  int64 `json:"in"`  // host to guest service
	Out int64 `json:"out"` // guest service to host
}

// TarResult answers tar_out and tar_in.
type TarResult struct {
	Entries int   `json:"entries"` // archive entries written or extracted
	Bytes   int64 `json:"bytes"`   // file content bytes
}

// Error codes that are not errno names.
const (
	CodeInvalid     = "invalid"     // the request is malformed or asks for something impossible
	CodeProtocol    = "protocol"    // a peer broke the wire protocol
	CodeBusy        = "busy"        // the agent is serving too many streams
	CodeUnsupported = "unsupported" // not available in this mode (e.g. poweroff outside a guest)
	CodeInternal    = "internal"    // a bug in the agent
)

// Error is the payload of an Error frame, and the error Client methods
// return for it (and for protocol violations they detect).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "guest agent: " + e.Message + " (" + e.Code + ")" }

// Is makes errors.Is(err, fs.ErrNotExist), fs.ErrExist and
// fs.ErrPermission hold for the matching errno codes.
func (e *Error) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == "ENOENT"
	case fs.ErrExist:
		return e.Code == "EEXIST" || e.Code == "ENOTEMPTY"
	case fs.ErrPermission:
		return e.Code == "EACCES" || e.Code == "EPERM"
	}
	return false
}

// IsProtocol reports whether err is a protocol violation (CodeProtocol).
func IsProtocol(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeProtocol
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
