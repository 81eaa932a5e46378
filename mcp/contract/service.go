package contract

import (
	"context"
	"time"
)

// ServiceBackend is the optional part of a Backend that runs services in
// a workspace: long-running processes (a dev server, a database) that
// keep running between tool calls, with a readiness check, bounded logs
// kept outside /workspace, and a stop that sends SIGTERM and kills after
// a grace. The tool layer registers the service tools only when its
// Backend has it. Stop, reset and delete end a workspace's services
// first; nothing restarts them unless their restart policy asks.
type ServiceBackend interface {
	// ServiceStart starts a service and waits for it to be ready or to
	// fail, at most req.Wait; past it the service is "starting" and
	// ServiceStatus follows it. A failed service's status carries the
	// last lines of its output. A name that is running is *Error Exists.
	ServiceStart(ctx context.Context, req ServiceStartRequest) (ServiceStatus, error)
	// ServiceStatus returns one service (name) or every service (name
	// ""), by name. An unknown name is *Error NotFound.
	ServiceStatus(ctx context.Context, id, name string) ([]ServiceStatus, error)
	// ServiceLogs reads a service's stdout and stderr.
	ServiceLogs(ctx context.Context, req ServiceLogsRequest) (ServiceLogs, error)
	// ServiceStop ends a service: SIGTERM to its process group, then
	// SIGKILL to all its processes after grace. Stopping an ended service
	// returns its status.
	ServiceStop(ctx context.Context, id, name string, grace time.Duration) (ServiceStatus, error)
	// ServiceRestart stops the service if it runs and starts it again
	// with the spec it was started with, waiting as ServiceStart does.
	ServiceRestart(ctx context.Context, id, name string, wait time.Duration) (ServiceStatus, error)
}

// ResourceService is Error.Resource for a service.
const ResourceService = "service"

// LogService is the journal kind of service starts, stops and restarts.
const LogService LogKind = "service"

// Service states, as ServiceStatus.State says them.
const (
	ServiceStarting = "starting" // running, not ready yet
	ServiceReady    = "ready"    // running and ready
	ServiceFailed   = "failed"   // ended before ready, readiness timed out, or restarts ran out
	ServiceExited   = "exited"   // ended by itself after it was ready
	ServiceStopped  = "stopped"  // ended by a stop (or by workspace stop, reset, delete)
)

// Readiness kinds.
const (
	ReadyFile    = "file"
	ReadyTCP     = "tcp"
	ReadyHTTP    = "http"
	ReadyCommand = "command"
)

// Bounds of the service tools.
const (
	// DefaultServiceWaitSeconds and MaxServiceWaitSeconds bound how long
	// service_start and service_restart wait for readiness: under the
	// tool-call timeouts of chat hosts. A slower service answers
	// "starting" and service_status follows it.
	DefaultServiceWaitSeconds = 30
	MaxServiceWaitSeconds     = 50
	// DefaultServiceGraceSeconds is service_stop's SIGTERM to SIGKILL grace.
	DefaultServiceGraceSeconds = 5
	MaxServiceGraceSeconds     = 60
	// ServiceGraceOnStop is the grace services get when their workspace
	// stops, resets or is deleted.
	ServiceGraceOnStop = 2 * time.Second
	// MaxReadyTimeoutSeconds bounds a readiness check's timeout; the
	// default is 60 s.
	MaxReadyTimeoutSeconds = 3600
	// DefaultServiceTailLines is what service_logs returns without a cursor.
	DefaultServiceTailLines = 50
	MaxServiceTailLines     = 10000
	// MaxServicesPerWorkspace is the most services a workspace keeps,
	// ended ones included (the guest agent's limit).
	MaxServicesPerWorkspace = 32
)

// Readiness says when a service counts as ready; the zero value (Kind "")
// is ready as soon as it started.
type Readiness struct {
	Kind           string // file, tcp, http, command
	Path           string // file: a guest path, relative to the service's cwd
	Port           int    // tcp: accepts on the guest's 127.0.0.1 or ::1
	URL            string // http: GET answers 2xx or 3xx
	Command        string // command: a shell command that exits 0
	TimeoutSeconds int    // 0: 60
	IntervalMs     int    // 0: 200
}

// ServiceStartRequest starts a service. Exactly one of Command and Argv.
type ServiceStartRequest struct {
	ID      string
	Name    string // [a-z0-9][a-z0-9_.-]{0,63}
	Command string // shell command line, run with /bin/sh -c
	Argv    []string
	Cwd     string // default /workspace
	EnvVars map[string]string
	// SecretEnv maps environment variables to the workspace's secrets by
	// name, as ExecRequest.SecretEnv.
	SecretEnv   map[string]string
	User        string // default root
	Readiness   Readiness
	Restart     string // "no" (default) or "on-failure"
	MaxRestarts int
	Wait        time.Duration // how long to wait for readiness; the tool layer passes 1..MaxServiceWaitSeconds
}

// ServiceStatus is one service.
type ServiceStatus struct {
	Name      string
	State     string // Service* states
	PID       int    // while it runs
	Command   string
	Readiness string // the check, in words
	StartedAt time.Time
	ReadyAt   time.Time // zero until ready
	EndedAt   time.Time // zero while it runs
	ExitCode  *int      // once ended; -1 for a signal
	Signal    string
	Reason    string // why it ended: exited, exited_before_ready, readiness_timeout, stopped, killed_after_grace, start_failed, restarts_exhausted
	Message   string // the reason in a sentence
	Restarts  int
	// StdoutTail and StderrTail are the last lines of a failed service's
	// output (nil otherwise).
	StdoutTail, StderrTail []byte
	StdoutBytes            int64
	StderrBytes            int64
}

// Running reports whether the service's process runs.
func (s ServiceStatus) Running() bool { return s.State == ServiceStarting || s.State == ServiceReady }

// ServiceLogsRequest reads a service's logs: the last TailLines lines of
// each stream, or (TailLines 0) from each stream's offset (a cursor).
type ServiceLogsRequest struct {
	ID           string
	Name         string
	Stream       string // stdout, stderr or both ("")
	TailLines    int
	StdoutOffset int64
	StderrOffset int64
	MaxBytes     int // per stream
}

// ServiceLogs is part of a service's logs.
type ServiceLogs struct {
	Stdout *LogChunk // nil when not asked for
	Stderr *LogChunk
}

// LogChunk is part of one stream. Offsets count the stream's bytes since
// the service started; the oldest rotate away (First says where the kept
// part begins).
type LogChunk struct {
	Data    []byte
	Offset  int64 // of Data[0]
	Next    int64 // the cursor after Data
	Total   int64
	First   int64
	Skipped int64 // bytes between the asked offset and Offset that rotated away
	Lost    int64 // bytes the log could not keep (its space was full)
}
