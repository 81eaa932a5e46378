package proto

import (
	"regexp"
	"time"
)

// Services: long-running processes the agent supervises between requests
// (a dev server, a database). The agent starts one, checks its readiness,
// keeps its stdout and stderr in a bounded log on a tmpfs outside
// /workspace (ServiceLogDir), and ends it on request: SIGTERM to its
// process group, then every process of its cgroup killed after a grace.
// Nothing restarts a service unless its spec asks (restart "on-failure",
// at most max_restarts times). The agent's state lives in its memory: a
// reboot (stop, reset) ends every service.

// The service operations; the package doc's table has their rows.
var (
	OpServiceStart   = Op[ServiceStartArgs, ServiceStatus]{"service_start"}
	OpServiceStatus  = Op[ServiceNameArgs, ServiceStatus]{"service_status"}
	OpServiceList    = Op[Empty, ServiceList]{"service_list"}
	OpServiceLogs    = Op[ServiceLogsArgs, ServiceLogs]{"service_logs"}
	OpServiceStop    = Op[ServiceStopArgs, ServiceStatus]{"service_stop"}
	OpServiceRestart = Op[ServiceRestartArgs, ServiceStatus]{"service_restart"}
	OpServiceStopAll = Op[ServiceStopAllArgs, ServiceList]{"service_stop_all"}
)

// Limits both sides apply to services.
const (
	// MaxServices bounds the services one guest keeps, ended ones
	// included (the oldest ended one makes room for a new one).
	MaxServices = 32
	// ServiceLogGeneration is the size at which a service's stream log
	// rotates; one older generation is kept, so each stream keeps its
	// last ServiceLogGeneration to 2*ServiceLogGeneration bytes.
	ServiceLogGeneration = 2 << 20
	// MaxServiceLogRead bounds the bytes one service_logs call returns
	// per stream; DefaultServiceLogRead is used when MaxBytes is 0.
	MaxServiceLogRead     = 256 << 10
	DefaultServiceLogRead = 64 << 10
	// MaxServiceTailLines bounds tail_lines.
	MaxServiceTailLines = 10000
	// ServiceTailBytes and ServiceTailLines bound the last log lines a
	// failed service's status carries, per stream.
	ServiceTailBytes = 4 << 10
	ServiceTailLines = 20
	// DefaultServiceWait is how long service_start and service_restart
	// wait for readiness when WaitMs is 0; MaxServiceWait bounds WaitMs.
	DefaultServiceWait = 30 * time.Second
	MaxServiceWait     = 10 * time.Minute
	// DefaultReadyTimeout and DefaultReadyInterval apply when a
	// readiness check leaves them 0; MaxReadyTimeout bounds the timeout.
	DefaultReadyTimeout  = 60 * time.Second
	DefaultReadyInterval = 200 * time.Millisecond
	MaxReadyTimeout      = time.Hour
	// DefaultServiceGrace is the SIGTERM to SIGKILL grace of a stop when
	// GraceMs is 0; MaxServiceGrace bounds it.
	DefaultServiceGrace = 5 * time.Second
	MaxServiceGrace     = 5 * time.Minute
	// MaxServiceRestarts bounds max_restarts.
	MaxServiceRestarts = 100
	// maxServiceString bounds the strings of a status the Client accepts
	// (command, message, readiness).
	maxServiceString = 4096
)

// ServiceLogDir is where a guest keeps its services' logs: a tmpfs with a
// size bound, outside /workspace and off the disk, so logs never reach a
// snapshot, a diff or an export. Each service has NAME/stdout and
// NAME/stderr there, and the older generations NAME/stdout.1, NAME/stderr.1.
const ServiceLogDir = "/run/pyro/services"

// ServiceNamePattern is what a service name must match.
var ServiceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Readiness kinds.
const (
	ReadyFile    = "file"    // Path exists
	ReadyTCP     = "tcp"     // something accepts on 127.0.0.1:Port or [::1]:Port
	ReadyHTTP    = "http"    // GET URL answers 2xx or 3xx
	ReadyCommand = "command" // Command (a /bin/sh script) exits 0
)

// Readiness says when a service counts as ready. The zero value (Kind "")
// is ready as soon as the process has started.
type Readiness struct {
	Kind       string `json:"kind,omitempty"`
	Path       string `json:"path,omitempty"`    // file: relative paths are relative to the service's cwd
	Port       int    `json:"port,omitempty"`    // tcp
	URL        string `json:"url,omitempty"`     // http: http:// or https:// (certificates unchecked)
	Command    string `json:"command,omitempty"` // command: run as the service's user, in its cwd and env
	TimeoutMs  int64  `json:"timeout_ms,omitempty"`
	IntervalMs int64  `json:"interval_ms,omitempty"`
}

// Restart policies.
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure" // a nonzero exit or a signal, before or after ready
)

// ServiceStartArgs are service_start's arguments: the service's spec
// (kept for service_restart) and how long to wait for readiness.
type ServiceStartArgs struct {
	Name        string            `json:"name"`
	Argv        []string          `json:"argv,omitempty"`
	Shell       string            `json:"shell,omitempty"`
	Cwd         string            `json:"cwd,omitempty"` // default /workspace
	Env         map[string]string `json:"env,omitempty"`
	User        string            `json:"user,omitempty"`
	Readiness   Readiness         `json:"readiness,omitempty"`
	Restart     string            `json:"restart,omitempty"` // RestartNo (default) or RestartOnFailure
	MaxRestarts int               `json:"max_restarts,omitempty"`
	// WaitMs bounds how long the call waits for the service to be ready
	// or to fail (0: DefaultServiceWait). Past it the answer says
	// "starting" and the readiness check goes on.
	WaitMs int64 `json:"wait_ms,omitempty"`
}

// ServiceNameArgs name one service.
type ServiceNameArgs struct {
	Name string `json:"name"`
}

// ServiceStopArgs are service_stop's arguments.
type ServiceStopArgs struct {
	Name    string `json:"name"`
	GraceMs int64  `json:"grace_ms,omitempty"` // SIGTERM to SIGKILL; 0: DefaultServiceGrace
}

// ServiceRestartArgs are service_restart's: stop (if running), then start
// again with the spec the service was started with.
type ServiceRestartArgs struct {
	Name    string `json:"name"`
	GraceMs int64  `json:"grace_ms,omitempty"`
	WaitMs  int64  `json:"wait_ms,omitempty"`
}

// ServiceStopAllArgs are service_stop_all's: every running service is
// stopped at once, with one grace.
type ServiceStopAllArgs struct {
	GraceMs int64 `json:"grace_ms,omitempty"`
}

// Log streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamBoth   = "both"
)

// ServiceLogsArgs are service_logs's arguments: the last TailLines lines
// of each stream asked for, or (TailLines 0) the bytes from each stream's
// offset (a cursor: the Next of an earlier answer), at most MaxBytes each.
type ServiceLogsArgs struct {
	Name         string `json:"name"`
	Stream       string `json:"stream,omitempty"` // stdout, stderr or both (default)
	TailLines    int    `json:"tail_lines,omitempty"`
	StdoutOffset int64  `json:"stdout_offset,omitempty"`
	StderrOffset int64  `json:"stderr_offset,omitempty"`
	MaxBytes     int64  `json:"max_bytes,omitempty"` // per stream; 0: DefaultServiceLogRead
}

// Service states.
const (
	ServiceStarting = "starting" // running, not ready yet
	ServiceReady    = "ready"    // running and ready
	ServiceFailed   = "failed"   // ended before it was ready, or its readiness timed out, or restarts ran out
	ServiceExited   = "exited"   // ended by itself after it was ready
	ServiceStopped  = "stopped"  // ended by a stop
)

// Why a service ended (ServiceStatus.Reason).
const (
	ReasonExited            = "exited"              // the process exited by itself
	ReasonExitedBeforeReady = "exited_before_ready" // ... before its readiness check passed
	ReasonReadyTimeout      = "readiness_timeout"   // the check did not pass in time; the service was killed
	ReasonStopped           = "stopped"             // a stop ended it within the grace
	ReasonKilled            = "killed_after_grace"  // a stop's SIGTERM did not end it; SIGKILL did
	ReasonStartFailed       = "start_failed"        // the process could not be started
	ReasonRestartsExhausted = "restarts_exhausted"  // it failed again after max_restarts restarts
)

// ServiceStatus is one service, as the agent sees it now.
type ServiceStatus struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`             // one of the Service* states
	PID       int       `json:"pid,omitempty"`     // the process (group leader) while it runs
	Command   string    `json:"command"`           // the argv or shell, for people
	Readiness string    `json:"readiness"`         // the check, for people ("http http://127.0.0.1:8000/")
	StartedAt time.Time `json:"started_at"`        // the current (or last) process's start
	ReadyAt   time.Time `json:"ready_at"`          // zero until ready
	EndedAt   time.Time `json:"ended_at"`          // zero while it runs
	ExitCode  *int      `json:"exit_code"`         // once ended by an exit: its status; -1 for a signal
	Signal    string    `json:"signal,omitempty"`  // the signal that ended it
	Reason    string    `json:"reason,omitempty"`  // why it ended (Reason*), "" while it runs
	Message   string    `json:"message,omitempty"` // the reason in a sentence, with detail
	Restarts  int       `json:"restarts,omitempty"`
	// Tail holds the last lines of each stream, in a failed service's
	// status (service_start, service_status, service_restart), so the
	// caller sees why without another call.
	Tail *ServiceTail `json:"tail,omitempty"`
	// StdoutBytes and StderrBytes count what each stream has written.
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
}

// ServiceTail is the last lines of a service's streams.
type ServiceTail struct {
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
}

// Running reports whether the service's process is (still) running.
func (s *ServiceStatus) Running() bool {
	return s.State == ServiceStarting || s.State == ServiceReady
}

// ServiceList answers service_list and service_stop_all, by name.
type ServiceList struct {
	Services []ServiceStatus `json:"services"`
}

// ServiceLogs answers service_logs: one chunk per stream asked for.
type ServiceLogs struct {
	Stdout *LogChunk `json:"stdout,omitempty"`
	Stderr *LogChunk `json:"stderr,omitempty"`
}

// LogChunk is part of one stream's log. Offsets count the stream's bytes
// since the service was first started (restarts continue the stream);
// only the last 2*ServiceLogGeneration bytes or so are kept.
type LogChunk struct {
	Data   []byte `json:"data"`   // base64 on the wire
	Offset int64  `json:"offset"` // the stream offset of Data[0]
	Next   int64  `json:"next"`   // Offset+len(Data): the cursor to continue from
	Total  int64  `json:"total"`  // bytes the stream has written and kept track of
	First  int64  `json:"first"`  // the oldest offset still kept; bytes before it rotated away
	// Skipped counts bytes between the asked offset and Offset that are
	// no longer kept (they rotated away).
	Skipped int64 `json:"skipped,omitempty"`
	// Lost counts bytes the service wrote that the log could not keep
	// (its file system was full).
	Lost int64 `json:"lost,omitempty"`
}
