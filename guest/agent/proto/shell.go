package proto

import (
	"time"
)

// Interactive shells: a program on a pseudo-terminal in the guest that
// outlives the stream that opened it. The agent keeps each shell's output
// in an append-only buffer of at most ShellBuffer bytes; a cursor is an
// absolute byte offset into everything the shell ever wrote, so a reader
// that falls behind learns exactly how much the buffer dropped.

// Bounds both sides apply to shells.
const (
	// MaxShells bounds the shells an agent keeps at once, running or
	// exited and not yet closed.
	MaxShells = 16
	// ShellBuffer is how much of a shell's latest output the agent keeps.
	ShellBuffer = 1 << 20
	// MaxShellWrite bounds the bytes of one shell_write.
	MaxShellWrite = 64 << 10
	// DefaultShellRead is a shell_read's max when it gives none; a read
	// returns at most ShellBuffer bytes.
	DefaultShellRead = 256 << 10
	// MaxShellWait bounds a shell_read's wait_ms.
	MaxShellWait = 60 * time.Second
	// MaxShellCols and MaxShellRows bound a shell's window size.
	MaxShellCols = 1000
	MaxShellRows = 1000
	// maxShellArgv bounds the strings of a ShellInfo's argv the Client
	// keeps (an agent may send anything).
	maxShellArgv = 64
	maxShellArg  = 256
)

// The shell operations.
var (
	OpShellOpen   = Op[ShellOpenArgs, ShellInfo]{"shell_open"}
	OpShellRead   = Op[ShellReadArgs, ShellReadResult]{"shell_read"}
	OpShellWrite  = Op[ShellWriteArgs, ShellWriteResult]{"shell_write"}
	OpShellSignal = Op[ShellSignalArgs, ShellSignalResult]{"shell_signal"}
	OpShellResize = Op[ShellResizeArgs, Empty]{"shell_resize"}
	OpShellClose  = Op[ShellCloseArgs, ShellInfo]{"shell_close"}
	OpShellList   = Op[Empty, ShellListResult]{"shell_list"}
)

// ShellSignals are the signals shell_signal sends, by the names it takes.
var ShellSignals = []string{"INT", "TERM", "KILL", "HUP", "QUIT", "TSTP", "CONT"}

// ShellOpenArgs are shell_open's arguments.
type ShellOpenArgs struct {
	// Argv is the program and its arguments (PATH searched); Command a
	// /bin/sh -c command line instead. Neither: the login shell (bash -l
	// where the guest has bash, else sh -l).
	Argv    []string          `json:"argv,omitempty"`
	Command string            `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`  // merged over exec's defaults (TERM=xterm, ...)
	Cwd     string            `json:"cwd,omitempty"`  // default "/"
	User    string            `json:"user,omitempty"` // name or uid[:gid]; default root
	Cols    int               `json:"cols,omitempty"` // default 80
	Rows    int               `json:"rows,omitempty"` // default 24
}

// ShellInfo describes one shell.
type ShellInfo struct {
	ID       int       `json:"id"`
	Argv     []string  `json:"argv"`
	PID      int       `json:"pid"`
	Cols     int       `json:"cols"`
	Rows     int       `json:"rows"`
	Started  time.Time `json:"started"`
	Exited   bool      `json:"exited,omitempty"`
	ExitCode int       `json:"exit_code,omitempty"` // -1 when a signal killed it
	Signal   string    `json:"signal,omitempty"`    // the signal that killed it
	// Start and End are the cursors of the oldest byte the buffer keeps
	// and of the next byte the shell will write (End is all it wrote).
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// ShellReadArgs are shell_read's arguments.
type ShellReadArgs struct {
	ID     int   `json:"id"`
	Cursor int64 `json:"cursor"`        // the first byte wanted; at most the shell's End
	Max    int   `json:"max,omitempty"` // at most this many bytes; 0 = DefaultShellRead
	// WaitMs, when positive, makes the read wait (at most MaxShellWait)
	// while there is nothing to return: until output beyond Cursor
	// arrives, the shell exits or WaitMs passes. With IdleMs the read
	// instead returns once no output has arrived for IdleMs (since the
	// read began or since the last output), or at WaitMs.
	WaitMs int64 `json:"wait_ms,omitempty"`
	IdleMs int64 `json:"idle_ms,omitempty"`
}

// ShellReadResult ends a shell_read, after Data frames that carry the
// bytes from Cursor to Next.
type ShellReadResult struct {
	Cursor  int64 `json:"cursor"`            // where the bytes sent begin (past the dropped ones)
	Next    int64 `json:"next"`              // where they end: the cursor of the next read
	Dropped int64 `json:"dropped,omitempty"` // bytes between the asked cursor and Cursor the buffer no longer has
	End     int64 `json:"end"`               // everything the shell has written so far
	// Exited: the shell's process has exited (its output may still be
	// being drained: read until Next == End).
	Exited   bool   `json:"exited,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
}

// ShellWriteArgs are shell_write's arguments: bytes for the terminal's
// input, as a person would type them (base64 in JSON).
type ShellWriteArgs struct {
	ID   int    `json:"id"`
	Data []byte `json:"data"` // at most MaxShellWrite bytes
}

// ShellWriteResult answers shell_write.
type ShellWriteResult struct {
	N int `json:"n"` // bytes the terminal took
}

// ShellSignalArgs are shell_signal's arguments.
type ShellSignalArgs struct {
	ID     int    `json:"id"`
	Signal string `json:"signal"` // one of ShellSignals, with or without "SIG"
}

// ShellSignalResult answers shell_signal.
type ShellSignalResult struct {
	PGID int `json:"pgid"` // the process group signalled: the terminal's foreground one
}

// ShellResizeArgs are shell_resize's arguments.
type ShellResizeArgs struct {
	ID   int `json:"id"`
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// ShellCloseArgs are shell_close's arguments.
type ShellCloseArgs struct {
	ID int `json:"id"`
	// GraceMs is how long the shell's processes have between SIGHUP
	// and SIGKILL; 0 = DefaultKillGrace.
	GraceMs int64 `json:"grace_ms,omitempty"`
}

// ShellListResult answers shell_list.
type ShellListResult struct {
	Shells []ShellInfo `json:"shells"`
}
