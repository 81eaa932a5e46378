package contract

import (
	"context"
	"time"
)

// Backend is what the tool layer drives: the workspace manager. The tool
// layer validates arguments, fills in documented defaults, shapes results for
// a model and turns errors into tool results; the Backend does the work.
//
// Contract for every method:
//   - ctx is cancelled when the client cancels the call or the server stops;
//     long operations (boot, exec, export) must honour it.
//   - Expected failures are returned as *Error (see errors.go) so the tool
//     layer can tell the agent what to do next; anything else is reported as
//     an internal error.
//   - Workspace IDs are what Create returns. The tool layer also accepts a
//     workspace's unique name: when a method returns an *Error with Code
//     NotFound and Resource "workspace", the tool layer looks the reference up
//     by name in List and retries once with the ID. Backends need not resolve
//     names themselves.
//   - Guest paths may be absolute or relative; relative paths are relative to
//     /workspace. Host paths may be absolute or relative to the directory the
//     server was started in.
//   - Methods may be called concurrently, also for the same workspace.
//
// Later tool groups (interactive shells, services, network grants) will add
// optional interfaces next to this one (for example ShellBackend), detected
// with a type assertion, so that Backend itself stays the everyday loop.
type Backend interface {
	// Create boots a new workspace from req.Env, seeds /workspace from
	// req.Seed, records that content as the immutable baseline, and returns
	// it running. The tool layer passes a concrete TTLSeconds.
	Create(ctx context.Context, req CreateRequest) (Workspace, error)
	// List returns every workspace the manager knows, most recently active
	// first, including stopped and expired ones that have not been deleted.
	List(ctx context.Context) ([]Workspace, error)
	// Status returns one workspace.
	Status(ctx context.Context, id string) (Workspace, error)
	// Update renames a workspace and edits its labels; it never touches the VM.
	Update(ctx context.Context, id string, req UpdateRequest) (Workspace, error)
	// Stop shuts the VM down, keeping its disk, baseline and snapshots.
	// Stopping a stopped workspace is not an error.
	Stop(ctx context.Context, id string) (Workspace, error)
	// Start boots a stopped workspace from its disk. Starting a running
	// workspace is not an error.
	Start(ctx context.Context, id string) (Workspace, error)
	// Delete stops the VM if needed and removes the workspace with its disk,
	// baseline, snapshots and journal. Host files it wrote (exports, output
	// files) are left alone.
	Delete(ctx context.Context, id string) error

	// Exec runs one command in a running workspace and journals it. A command
	// that runs and fails is not an error: it is an ExecResult with a non-zero
	// ExitCode. A timeout is not an error either: TimedOut, ExitCode 124.
	Exec(ctx context.Context, req ExecRequest) (ExecResult, error)

	// ListFiles lists a guest directory (or one file) in a stable order:
	// lexical by path, depth-first when recursive, so Offset paging is exact.
	ListFiles(ctx context.Context, req ListFilesRequest) (FileListing, error)
	// ReadFile reads up to req.MaxBytes bytes of a guest file from req.Offset.
	ReadFile(ctx context.Context, req ReadFileRequest) (FileContent, error)
	// WriteFile creates or replaces a guest file, creating parent directories.
	WriteFile(ctx context.Context, req WriteFileRequest) (WriteResult, error)
	// ApplyPatch applies a unified diff (add, modify, delete; no fuzz) under
	// /workspace, all or nothing. A patch that does not apply is not an error:
	// Applied is false and each FilePatch says why. Malformed patches are
	// *Error Invalid.
	ApplyPatch(ctx context.Context, id string, patch string) (PatchResult, error)

	// Diff compares /workspace with the baseline recorded at create.
	Diff(ctx context.Context, req DiffRequest) (DiffResult, error)
	// Export copies a guest path out to the host.
	Export(ctx context.Context, req ExportRequest) (ExportResult, error)
	// SyncPush copies a host file or directory into the guest.
	SyncPush(ctx context.Context, req SyncPushRequest) (SyncResult, error)

	// SnapshotCreate checkpoints the whole workspace under a name unique
	// within the workspace (*Error Exists otherwise): its disk, and, for a
	// running workspace unless req.DiskOnly, its memory (running processes
	// included), which a reset to it resumes.
	SnapshotCreate(ctx context.Context, req SnapshotRequest) (Snapshot, error)
	// SnapshotList returns the workspace's snapshots, oldest first.
	SnapshotList(ctx context.Context, id string) ([]Snapshot, error)
	// SnapshotDelete removes one snapshot.
	SnapshotDelete(ctx context.Context, id string, name string) error
	// Reset rebuilds the workspace from the baseline (snapshot == "") or a
	// named snapshot. It keeps the ID, name, labels, baseline and every
	// snapshot, those taken after the target included.
	Reset(ctx context.Context, id string, snapshot string) (ResetResult, error)

	// Logs pages through the workspace journal in sequence order.
	Logs(ctx context.Context, req LogsRequest) (LogPage, error)
	// Summary reports what happened since the last reset (or create).
	Summary(ctx context.Context, id string) (Summary, error)

	// Run is the one-shot path: create a workspace, exec one command, delete
	// the workspace (also on failure), return the command's result.
	Run(ctx context.Context, req RunRequest) (ExecResult, error)
	// Envs lists the environments the host knows, built or not.
	Envs(ctx context.Context) ([]Environment, error)
}

// State is a workspace's lifecycle state.
type State string

// Workspace states.
const (
	StateCreating State = "creating" // booting or seeding
	StateRunning  State = "running"  // VM up, accepts exec and file calls
	StateStopped  State = "stopped"  // VM down, disk kept; Start boots it
	StateExpired  State = "expired"  // TTL passed; VM down, awaiting cleanup
	StateFailed   State = "failed"   // boot or reset failed; see Workspace.Error
)

// Workspace describes one disposable workspace.
type Workspace struct {
	ID           string            // stable, unique, assigned by the backend
	Name         string            // optional, unique among workspaces
	Labels       map[string]string // free-form discovery tags
	Env          string            // environment it was created from, e.g. "debian-12"
	State        State             // lifecycle state
	Error        string            // last boot/reset failure, for StateFailed
	CreatedAt    time.Time         // when Create was called
	LastActiveAt time.Time         // last call that used the workspace
	ExpiresAt    time.Time         // when it will be reclaimed if idle; zero: never
	TTLSeconds   int               // idle lifetime; every call pushes ExpiresAt forward
	VCPUs        int               // virtual CPUs
	MemMiB       int               // guest memory in MiB
	DiskMiB      int               // disk size in MiB (0: the environment image's, for workspaces made before disks had a size)
	Seed         SeedReport        // what /workspace was seeded with
	// Boot says how the running guest started: BootCold, BootWarm,
	// BootMemory or BootFork; BootNote why it booted when it was meant to
	// resume a memory image.
	Boot      BootKind
	BootNote  string
	Snapshots int   // number of snapshots
	LastSeq   int64 // sequence number of the last journal entry
	// DiskDeleteAt is when an expired workspace's disk will be deleted
	// (zero: not expired, or kept for ever); DiskDeletedAt is when it was.
	DiskDeleteAt  time.Time
	DiskDeletedAt time.Time
	// Network is the workspace's grants, published ports and last
	// refusals (see NetworkBackend); nil from a backend without one.
	Network *NetworkStatus
	// Secrets are the workspace's secrets by name, sorted; never their
	// values (see SecretBackend).
	Secrets []SecretInfo
	// Background is the workspace's background commands running now
	// (see BackgroundBackend), without output; nil when none.
	Background []BackgroundExec
	// Services are the workspace's services (see ServiceBackend), in
	// Status and Summary of a running workspace that has any; nil else.
	Services []ServiceStatus
	// Shells are the running workspace's interactive shells (see
	// ShellBackend); nil from a backend without them, or none open.
	Shells []ShellInfo
}

// SeedKind says where a workspace's initial /workspace content comes from.
type SeedKind string

// Seed kinds.
const (
	SeedNone    SeedKind = "none"    // empty /workspace
	SeedDir     SeedKind = "dir"     // a host directory, copied
	SeedArchive SeedKind = "archive" // a host .tar, .tar.gz or .tgz file, unpacked
	SeedGit     SeedKind = "git"     // tracked and untracked-not-ignored files of a host git checkout
)

// SeedSpec is the seed asked for at create.
type SeedSpec struct {
	Kind SeedKind // never empty when it reaches the backend
	Path string   // host path; for SeedGit "" means the server's working directory
}

// SeedReport says what seeding did.
type SeedReport struct {
	Kind    SeedKind       // as requested
	Source  string         // resolved absolute host path; "" for SeedNone
	Files   int            // regular files written
	Bytes   int64          // bytes written
	Skipped []SkippedEntry // entries not copied (special files, too big, outside the root)
}

// SkippedEntry is one host entry that a copy into the guest left out.
type SkippedEntry struct {
	Path   string // host path, relative to the copy's root
	Reason string // short reason, e.g. "symlink outside root", "device file"
}

// CreateRequest asks for a new workspace.
type CreateRequest struct {
	Env        string            // environment name; "" means the backend's default
	Name       string            // optional unique name (validated by the tool layer)
	Labels     map[string]string // optional labels (validated by the tool layer)
	VCPUs      int               // 0 means the backend's default
	MemMiB     int               // 0 means the backend's default
	DiskMiB    int               // disk size in MiB; 0 means the backend's default
	TTLSeconds int               // idle lifetime in seconds, always > 0
	Seed       SeedSpec          // what to put in /workspace
	Network    []string          // network grants, in netstack.ParseGrant's spellings (validated by the tool layer)
	// Secrets by name (see SecretBackend); validated by the tool layer,
	// files read by the backend.
	Secrets map[string]SecretSource
}

// UpdateRequest edits a workspace's metadata. Zero fields change nothing.
type UpdateRequest struct {
	Name         *string           // new name; pointer to "" clears it
	Labels       map[string]string // labels to set or overwrite
	RemoveLabels []string          // label keys to delete (applied before Labels)
}

// ExecRequest runs one command in a workspace. Exactly one of Command and
// Argv is set.
type ExecRequest struct {
	ID             string            // workspace ID
	Command        string            // shell command line, run with /bin/sh -c
	Argv           []string          // program and arguments, run without a shell
	Cwd            string            // working directory; the tool layer defaults it to /workspace
	EnvVars        map[string]string // extra environment variables
	TimeoutSeconds int               // wall-clock limit, always 1..3600 when it reaches the backend (1..MaxBackgroundTimeoutSeconds for ExecStart)
	Stdin          string            // bytes fed to stdin; "" means stdin is empty (EOF)
	// SecretEnv maps environment variable names to the names of the
	// workspace's secrets whose values they get (see SecretBackend).
	SecretEnv map[string]string
}

// ExecResult is one command's outcome.
type ExecResult struct {
	Seq        int64         // journal sequence number of this command
	ExitCode   int           // exit status; 124 on timeout; 128+N when killed by signal N
	Signal     string        // signal name when killed by one, e.g. "SIGKILL"
	TimedOut   bool          // the timeout fired and the command was killed
	Duration   time.Duration // wall-clock run time
	Stdout     []byte        // captured stdout (all of it, up to the backend's capture cap)
	Stderr     []byte        // captured stderr (all of it, up to the backend's capture cap)
	StdoutSize int64         // bytes the command wrote to stdout (>= len(Stdout))
	StderrSize int64         // bytes the command wrote to stderr (>= len(Stderr))
	StdoutPath string        // host file holding the captured stdout; "" if not kept
	StderrPath string        // host file holding the captured stderr; "" if not kept
	// OutputTruncated reports that the backend's capture cap dropped output,
	// so Stdout/Stderr and the host files hold less than StdoutSize/StderrSize.
	OutputTruncated bool
	// Limited says in a sentence what the guest's limits on user commands
	// did (a process limit, an OOM kill, a full disk, processes left
	// running or killed); "" when nothing.
	Limited string
	// Network says in a sentence what the workspace's network refused
	// while a failing command ran, and which grant would allow it; ""
	// when nothing.
	Network string
}

// RunRequest is the one-shot path: a workspace that lives for one command.
type RunRequest struct {
	Env            string            // environment name; "" means the backend's default
	Command        string            // shell command line; exactly one of Command and Argv
	Argv           []string          // program and arguments
	Cwd            string            // working directory, default /workspace
	EnvVars        map[string]string // extra environment variables
	TimeoutSeconds int               // 1..3600
	Stdin          string            // bytes fed to stdin
	VCPUs          int               // 0 means the backend's default
	MemMiB         int               // 0 means the backend's default
	Seed           SeedSpec          // what to put in /workspace first
	Network        []string          // network grants for its workspace
}

// FileType is the kind of a guest file system entry.
type FileType string

// File types.
const (
	FileRegular FileType = "file"
	FileDir     FileType = "dir"
	FileSymlink FileType = "symlink"
	FileOther   FileType = "other" // device, fifo, socket
)

// ListFilesRequest lists a guest directory.
type ListFilesRequest struct {
	ID        string // workspace ID
	Path      string // directory (or file) to list; the tool layer defaults it to /workspace
	Recursive bool   // descend into subdirectories (not through symlinks)
	Offset    int    // entries to skip in the stable order
	Limit     int    // maximum entries to return, >= 1
}

// FileListing is one page of a listing.
type FileListing struct {
	Path    string      // the listed path, absolute
	Entries []FileEntry // at most Limit entries
	More    bool        // entries exist after this page
}

// FileEntry is one guest file system entry.
type FileEntry struct {
	Path       string    // absolute guest path
	Type       FileType  // entry kind
	Size       int64     // bytes, for regular files
	Mode       uint32    // permission bits (0o7777)
	ModTime    time.Time // modification time
	LinkTarget string    // for symlinks
}

// ReadFileRequest reads part of a guest file.
type ReadFileRequest struct {
	ID       string // workspace ID
	Path     string // guest file
	Offset   int64  // first byte to read, >= 0
	MaxBytes int    // maximum bytes to return, >= 1
}

// FileContent is part of a guest file.
type FileContent struct {
	Path    string // absolute guest path
	Size    int64  // whole file size
	Offset  int64  // offset of Content[0]
	Content []byte // raw bytes, at most MaxBytes
	EOF     bool   // Content reaches the end of the file
}

// WriteFileRequest creates or replaces a guest file.
type WriteFileRequest struct {
	ID      string // workspace ID
	Path    string // guest file; parent directories are created
	Content []byte // new content, at most 1 MiB
	Mode    uint32 // permission bits; 0 keeps an existing file's mode, or 0644 for a new file
}

// WriteResult reports a write.
type WriteResult struct {
	Path    string // absolute guest path
	Bytes   int64  // bytes written
	Created bool   // the file did not exist before
}

// PatchResult reports an ApplyPatch call.
type PatchResult struct {
	Applied bool        // every file applied and was written; false: nothing was written
	Files   []FilePatch // one per file in the patch, in patch order
}

// FilePatch is the outcome for one file of a patch.
type FilePatch struct {
	Path      string // guest path, relative to /workspace
	Op        string // "add", "modify", "delete" or "rename"
	OK        bool   // this file's hunks apply
	Additions int    // lines added
	Deletions int    // lines removed
	Error     string // why it does not apply, e.g. "hunk 2 does not match at line 40"
}

// DiffRequest asks for the changes since the baseline.
type DiffRequest struct {
	ID   string // workspace ID
	Path string // optional path (file or directory under /workspace) to limit the diff to
}

// DiffResult is what changed under /workspace since the baseline.
type DiffResult struct {
	Files     []FileChange // changed files, sorted by path
	Stats     DiffStats    // totals over Files
	Patch     string       // unified diff of the text changes (may be large)
	PatchPath string       // host file holding Patch; "" when there are no changes
}

// FileChange is one changed file.
type FileChange struct {
	Path      string // relative to /workspace
	Status    string // "added", "modified", "deleted", "type_changed", "mode_changed"
	Additions int    // lines added (text only)
	Deletions int    // lines removed (text only)
	Binary    bool   // not diffable as text
	Summary   string // one line for binary or type changes, e.g. "binary, 1.2 MiB -> 1.3 MiB"
}

// DiffStats totals a diff.
type DiffStats struct {
	Files     int // changed files
	Additions int // lines added
	Deletions int // lines removed
}

// ExportFormat says how Export writes to the host.
type ExportFormat string

// Export formats.
const (
	ExportAuto ExportFormat = "auto" // tar if the host path ends in .tar/.tar.gz/.tgz, else tree
	ExportTree ExportFormat = "tree" // a plain file or directory tree
	ExportTar  ExportFormat = "tar"  // a tar archive (gzip if the name ends in .gz/.tgz)
)

// ExportRequest copies a guest path out to the host.
type ExportRequest struct {
	ID        string       // workspace ID
	GuestPath string       // file or directory to export; the tool layer defaults it to /workspace
	HostPath  string       // destination on the host
	Format    ExportFormat // never empty when it reaches the backend
	Overwrite bool         // replace an existing host path; otherwise *Error Exists
}

// ExportResult reports an export.
type ExportResult struct {
	HostPath string       // resolved absolute host path
	Format   ExportFormat // the format actually written (tree or tar)
	Files    int          // regular files exported
	Bytes    int64        // bytes written
	Backup   string       // where an overwritten host path was moved (beside it, dated); "" if none
}

// SyncPushRequest copies a host file or directory into the guest.
type SyncPushRequest struct {
	ID        string // workspace ID
	HostPath  string // source on the host
	GuestDest string // destination directory in the guest; the tool layer defaults it to /workspace
}

// SyncResult reports a push into the guest.
type SyncResult struct {
	HostPath  string         // resolved absolute host path
	GuestDest string         // absolute guest destination
	Files     int            // regular files written
	Bytes     int64          // bytes written
	Skipped   []SkippedEntry // host entries not copied, with reasons
}

// BootKind says how a workspace's running guest started.
type BootKind string

// Boot kinds.
const (
	BootCold   BootKind = "cold boot"       // the kernel booted
	BootWarm   BootKind = "warm snapshot"   // resumed from the environment's warm snapshot
	BootMemory BootKind = "memory snapshot" // resumed from one of its snapshots (a reset)
	BootFork   BootKind = "fork"            // resumed from another workspace's memory
)

// Snapshot is a named checkpoint of a workspace.
type Snapshot struct {
	Name      string    // unique within the workspace
	CreatedAt time.Time // when it was taken
	Seq       int64     // journal sequence number at the time it was taken
	Bytes     int64     // host disk space it uses, if known (disk layer and memory image)
	// Memory says the snapshot holds the running guest's memory too: a
	// reset to it resumes the processes as they were.
	Memory bool
	// MemoryBytes is the host disk space of the memory image.
	MemoryBytes int64
	// Note says why a snapshot asked to keep memory holds the disk only.
	Note string
}

// SnapshotRequest asks for a snapshot.
type SnapshotRequest struct {
	ID   string // workspace ID
	Name string // unique within the workspace
	// DiskOnly leaves the memory out: a reset to the snapshot boots the
	// guest again from its disk. A stopped workspace's snapshot is always
	// disk only.
	DiskOnly bool
}

// ResetResult reports a reset.
type ResetResult struct {
	Workspace Workspace     // the workspace after the reset
	Snapshot  string        // snapshot it was rebuilt from; "" for the baseline
	Duration  time.Duration // how long the rebuild took
	// Memory says the guest resumed from the snapshot's memory image
	// (processes as they were) rather than booting from its disk.
	Memory bool
	// Note says why a reset to a memory snapshot booted instead.
	Note string
	// DroppedSnapshots is always empty: a reset keeps every snapshot (the
	// disk's layers form a tree). Kept for compatibility.
	DroppedSnapshots []string
}

// LogKind is the kind of a journal entry.
type LogKind string

// Journal entry kinds.
const (
	LogExec     LogKind = "exec"
	LogWrite    LogKind = "write" // file_write and patch_apply
	LogReset    LogKind = "reset"
	LogSnapshot LogKind = "snapshot"
	LogExport   LogKind = "export"
	LogSync     LogKind = "sync"
	LogLife     LogKind = "lifecycle" // create, stop, start
)

// LogsRequest pages through a journal.
type LogsRequest struct {
	ID       string // workspace ID
	AfterSeq int64  // return entries with Seq > AfterSeq
	Limit    int    // maximum entries, >= 1
}

// LogPage is one page of a journal.
type LogPage struct {
	Entries []LogEntry // in Seq order
	More    bool       // entries exist after the last one
}

// LogEntry is one journal entry.
type LogEntry struct {
	Seq      int64         // strictly increasing within a workspace
	Time     time.Time     // when it started
	Kind     LogKind       // what kind of operation
	Command  string        // the command line for exec; a short description otherwise
	ExitCode *int          // exit status for exec; nil for others
	Duration time.Duration // how long it took
	Detail   string        // short extra detail, e.g. "timed out", "snapshot before-fix"
}

// Summary is what happened in a workspace since its last reset (or create).
type Summary struct {
	Workspace Workspace      // current state
	Since     time.Time      // last reset, or creation
	ResetFrom string         // snapshot of the last reset; "" for baseline or none
	Commands  []LogEntry     // exec entries since Since, in order
	Changes   []FileChange   // files changed against the baseline
	Stats     DiffStats      // totals over Changes
	Snapshots []Snapshot     // all snapshots of the workspace
	Exports   []ExportResult // exports since Since, in order
}

// Environment is a guest image the host can boot.
type Environment struct {
	Name         string // e.g. "debian-12"
	Description  string // one line
	Built        bool   // ready to boot
	BuildCommand string // host command that builds it, e.g. "pyro env build debian-12"
	Default      bool   // used when a request names no environment
}

// BackgroundBackend is the optional part of a Backend that runs commands
// in the background, so that a long build or test run never holds a tool
// call open past a chat host's timeout: ExecStart returns as soon as the
// command runs, with its journal Seq as the handle, and ExecPoll reads its
// state and output later. The tool layer offers background execs only
// when its Backend has it.
//
// A background command's output goes to the same host files a foreground
// exec's does. Stop, reset and delete end the workspace's background
// commands (ExecKilled); a VM that dies, or a server that stops, loses them
// (ExecLost); neither ever reads as running for ever.
type BackgroundBackend interface {
	// ExecStart starts req's command in a running workspace and returns
	// at once, State ExecRunning. At most MaxBackground run at once per
	// workspace; beyond that it is an *Error Limit.
	ExecStart(ctx context.Context, req ExecRequest) (BackgroundExec, error)
	// ExecPoll returns one command's state and output. With Kill it ends
	// the command first; with Wait it first waits up to Wait for the
	// command to end (returning early when it does, or when ctx ends).
	// Any exec's Seq may be polled: one that ran in the foreground, or
	// before a server restart, answers from the journal and the output
	// files still kept. An unknown Seq is an *Error NotFound.
	ExecPoll(ctx context.Context, req PollRequest) (BackgroundExec, error)
	// ExecList returns the workspace's background commands, running and
	// recently ended, oldest first, without output.
	ExecList(ctx context.Context, id string) ([]BackgroundExec, error)
}

// Background exec bounds.
const (
	MaxBackground               = 8        // background commands running at once per workspace
	DefaultBackgroundTimeout    = 3600     // a background command's timeout when none is given, seconds
	MaxBackgroundTimeoutSeconds = 6 * 3600 // the longest a background command may run
	MaxPollWaitSeconds          = 30       // the longest one poll waits: well under any host's tool-call timeout
)

// ExecState is where a background command is in its life.
type ExecState string

// Background command states.
const (
	ExecRunning  ExecState = "running"   // still running
	ExecExited   ExecState = "exited"    // ended by itself: ExitCode (128+N when a signal N killed it)
	ExecTimedOut ExecState = "timed_out" // its timeout killed it: ExitCode 124
	ExecKilled   ExecState = "killed"    // ended by a kill, or by stop, reset or delete: Reason says which
	ExecLost     ExecState = "lost"      // its VM or the server went away while it ran: Reason says how
	ExecFailed   ExecState = "failed"    // it could not start, or pyro lost its stream: Reason says why
)

// Ended reports whether s is a final state.
func (s ExecState) Ended() bool { return s != ExecRunning }

// PollRequest asks for a command's state and the output after offsets.
type PollRequest struct {
	ID           string        // workspace ID
	Seq          int64         // the command's journal sequence number
	StdoutOffset int64         // stdout bytes already seen: output starts after them
	StderrOffset int64         // stderr bytes already seen
	Wait         time.Duration // wait up to this long for the command to end, 0..MaxPollWaitSeconds
	Kill         bool          // end the command first (its process group is killed)
}

// BackgroundExec is a background command's state, and for ExecPoll its
// output from the offsets polled.
type BackgroundExec struct {
	Seq            int64     // journal sequence number: the handle
	Command        string    // the command line, as the journal shows it
	State          ExecState // running, or how it ended
	Reason         string    // for killed and lost: why, in a sentence
	StartedAt      time.Time // when it started
	TimeoutSeconds int       // its timeout (0 when not known: polled from the journal)
	// Result holds the exit status, signal, duration (so far, while
	// running) and notes once ended. Stdout and Stderr hold the output
	// from the offsets polled to StdoutNext and StderrNext, cut to head
	// and tail around a marker when long; StdoutSize and StderrSize are
	// the totals so far; StdoutPath and StderrPath name the host files
	// with the whole output ("" when not kept).
	Result ExecResult
	// StdoutNext and StderrNext are where the next poll continues: the
	// end of the output Stdout and Stderr cover.
	StdoutNext, StderrNext int64
}
