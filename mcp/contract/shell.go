package contract

import (
	"context"
	"regexp"
	"time"
)

// ShellBackend is the optional part of a Backend that runs interactive
// shells: programs on a pseudo-terminal in a running workspace that live
// between tool calls, until they exit, are closed, or the workspace is
// reset, stopped or deleted. The tool layer registers the shell tools
// only when its Backend has it.
//
// Output is kept twice: in the guest, the latest bytes (a bounded buffer
// addressed by byte cursors); on the host, a terminal screen per shell
// that every read feeds in order, which is what plain output is taken
// from. A call that writes or signals can wait for the output it caused
// and return it, so one call is one interaction.
type ShellBackend interface {
	// ShellOpen starts a shell and waits for its first output as
	// req.Wait says.
	ShellOpen(ctx context.Context, req ShellOpenRequest) (ShellOutput, error)
	// ShellRead returns the output since the last read, waiting as
	// req.Wait says.
	ShellRead(ctx context.Context, req ShellReadRequest) (ShellOutput, error)
	// ShellWrite sends input to the shell's terminal, then reads as
	// ShellRead does.
	ShellWrite(ctx context.Context, req ShellWriteRequest) (ShellOutput, error)
	// ShellSignal signals the terminal's foreground process group, then
	// reads as ShellRead does.
	ShellSignal(ctx context.Context, req ShellSignalRequest) (ShellOutput, error)
	// ShellResize changes the terminal's size (the program gets SIGWINCH).
	ShellResize(ctx context.Context, id string, shell, cols, rows int) (ShellInfo, error)
	// ShellClose ends a shell (SIGHUP, then SIGKILL) and forgets it.
	ShellClose(ctx context.Context, id string, shell int) (ShellInfo, error)
	// ShellList lists a running workspace's shells.
	ShellList(ctx context.Context, id string) ([]ShellInfo, error)
}

// Shell bounds the tool layer applies.
const (
	// MaxShellTimeout bounds a shell call's wait, well below the tool-call
	// limits of chat hosts; DefaultShellTimeout is the wait when a call
	// names none.
	MaxShellTimeout     = 50 * time.Second
	DefaultShellTimeout = 10 * time.Second
	// DefaultShellIdle is how long output must pause before a call that
	// names no wait returns.
	DefaultShellIdle = 500 * time.Millisecond
	// MaxShellInput bounds the bytes one call types (text and keys).
	MaxShellInput = 64 << 10
	// MaxShellPattern bounds wait_for.
	MaxShellPattern = 1024
)

// ShellInfo describes one shell.
type ShellInfo struct {
	Shell      int // its id in the workspace
	Argv       []string
	PID        int
	Cols, Rows int
	Started    time.Time
	Exited     bool
	ExitCode   int    // when Exited; -1 when a signal killed it
	Signal     string // the signal that killed it
	// Cursor is the end of the output (bytes the shell wrote); Read is
	// how far the host has read it.
	Cursor, Read int64
}

// ShellWait says how long a shell call waits for output before it
// returns: until the output matches Pattern (when set), else until it has
// been idle for Idle (0: return what is there at once); at most Timeout,
// and never past the shell's exit.
type ShellWait struct {
	Idle    time.Duration
	Pattern *regexp.Regexp
	Timeout time.Duration
}

// ShellOpenRequest starts a shell.
type ShellOpenRequest struct {
	ID         string            // workspace ID
	Argv       []string          // program and arguments; or
	Command    string            // a sh -c command line; neither: the login shell (bash -l)
	Cwd        string            // default /workspace
	EnvVars    map[string]string // extra environment variables
	SecretEnv  map[string]string // variables set to the workspace's secrets, as ExecRequest.SecretEnv
	Cols, Rows int               // terminal size; 0: 120x40
	Raw        bool              // return the raw output (see ShellOutput)
	Wait       ShellWait
}

// ShellReadRequest reads a shell's output.
type ShellReadRequest struct {
	ID    string // workspace ID
	Shell int
	Raw   bool
	// Cursor, with Raw, re-reads from that byte offset (as far back as
	// the guest's buffer reaches) instead of from where the last read
	// ended; nil: from there.
	Cursor *int64
	Wait   ShellWait
}

// ShellWriteRequest types input into a shell.
type ShellWriteRequest struct {
	ID    string // workspace ID
	Shell int
	Input []byte // at most MaxShellInput bytes
	Raw   bool
	Wait  ShellWait
}

// ShellSignalRequest signals a shell's foreground process group.
type ShellSignalRequest struct {
	ID     string // workspace ID
	Shell  int
	Signal string // INT, TERM, KILL, HUP, QUIT, TSTP, CONT
	Raw    bool
	Wait   ShellWait
}

// ShellOutput is what a shell call saw.
type ShellOutput struct {
	Info ShellInfo
	// Text is, plain, what changed on the terminal since the last read:
	// on the main screen the lines from the first one changed (with
	// escape sequences applied, so progress bars and rubbed-out typing
	// read as they ended); on a full-screen program's alternate screen,
	// that whole screen. Raw, it is the bytes from Start to End as the
	// program wrote them (invalid UTF-8 replaced).
	Text string
	// Start and End are the byte cursors of the output this call read.
	Start, End int64
	// Dropped counts bytes the guest's buffer dropped before the host
	// read them (the program wrote faster than it was read): plain text
	// misses them, and LostLines counts the plain lines lost to the
	// host screen's own scrollback bound.
	Dropped   int64
	LostLines int
	Written   int  // input bytes the terminal took (write)
	Matched   bool // Wait.Pattern matched
	TimedOut  bool // the wait ended at Wait.Timeout
	Alt       bool // a full-screen program is showing (alternate screen)
}
