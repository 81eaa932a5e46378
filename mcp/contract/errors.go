package contract

import (
	"errors"
	"fmt"
)

// ErrorCode classifies an expected failure. The tool layer picks the advice it
// gives the agent from the code.
type ErrorCode string

// Error codes a Backend returns.
const (
	CodeNotFound   ErrorCode = "not_found"   // a workspace, snapshot, file or environment does not exist
	CodeStopped    ErrorCode = "stopped"     // the workspace is not running (stopped, expired or failed)
	CodeEnvMissing ErrorCode = "env_missing" // the environment exists but is not built on this host
	CodeInvalid    ErrorCode = "invalid"     // bad argument
	CodeExists     ErrorCode = "exists"      // a name, snapshot or host path already exists
	CodeConflict   ErrorCode = "conflict"    // the operation clashes with the current state
	CodeLimit      ErrorCode = "limit"       // a host limit (running workspaces, disk, memory) was reached
	CodeTimeout    ErrorCode = "timeout"     // the operation (not a command) took too long
	CodeInternal   ErrorCode = "internal"    // a bug or host failure
)

// Resource names used in Error.Resource.
const (
	ResourceWorkspace = "workspace"
	ResourceSnapshot  = "snapshot"
	ResourceFile      = "file"
	ResourceEnv       = "env"
	ResourceHostPath  = "host_path"
)

// Error is an expected failure returned by a Backend. The tool layer turns it
// into a tool result with IsError set, whose text says what happened (Msg)
// and what to do next (Hint, or a default for the Code).
type Error struct {
	Code     ErrorCode // classification, never empty
	Msg      string    // what happened, one sentence, no trailing period needed
	Hint     string    // what to do next; "" lets the tool layer use its default for Code
	Resource string    // what Msg is about (Resource* constants), for NotFound/Exists/Stopped
	Name     string    // the ID, name or path of that resource
	Err      error     // underlying cause, for logs; never shown to the agent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Msg)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// NotFound reports that a resource (Resource* constant) named name does not exist.
func NotFound(resource, name string) *Error {
	return &Error{Code: CodeNotFound, Resource: resource, Name: name,
		Msg: fmt.Sprintf("%s %q not found", resource, name)}
}

// Stopped reports that workspace id is not running; state is its State.
func Stopped(id string, state State) *Error {
	return &Error{Code: CodeStopped, Resource: ResourceWorkspace, Name: id,
		Msg: fmt.Sprintf("workspace %q is %s", id, state)}
}

// EnvMissing reports that environment env is known but not built.
func EnvMissing(env string) *Error {
	return &Error{Code: CodeEnvMissing, Resource: ResourceEnv, Name: env,
		Msg: fmt.Sprintf("environment %q is not built on this host", env)}
}

// Invalid reports a bad argument.
func Invalid(format string, args ...any) *Error {
	return Errorf(CodeInvalid, format, args...)
}

// Exists reports that a resource named name already exists.
func Exists(resource, name string) *Error {
	return &Error{Code: CodeExists, Resource: resource, Name: name,
		Msg: fmt.Sprintf("%s %q already exists", resource, name)}
}

// Conflict reports that an operation clashes with the current state.
func Conflict(format string, args ...any) *Error {
	return Errorf(CodeConflict, format, args...)
}

// LimitReached reports that a host limit was reached.
func LimitReached(format string, args ...any) *Error {
	return Errorf(CodeLimit, format, args...)
}

// Timeout reports that an operation took too long.
func Timeout(format string, args ...any) *Error {
	return Errorf(CodeTimeout, format, args...)
}

// Internal wraps an unexpected failure; msg says what was being done.
func Internal(msg string, err error) *Error {
	return &Error{Code: CodeInternal, Msg: msg, Err: err}
}

// WithHint returns e with Hint set, for chaining: NotFound(...).WithHint("...").
func (e *Error) WithHint(hint string) *Error {
	e.Hint = hint
	return e
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsCode reports whether err's chain holds an *Error with the given code.
func IsCode(err error, code ErrorCode) bool {
	e, ok := AsError(err)
	return ok && e.Code == code
}
