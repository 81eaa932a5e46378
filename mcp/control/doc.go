// Package control is the workspace contract (mcp/contract) over a unix
// socket: the face through which a terminal companion (`pyro workspace
// ...`) drives the very Manager a running `pyro mcp serve` gives its chat,
// so that both see and change the same workspaces through one code path.
//
// Serve answers on a listener, Client is a contract.Backend that calls a
// server, and Router is a contract.Backend over every live server of this
// user plus a fallback for the workspaces none owns. Listen, Dir and
// Discover place and find the sockets: one per server, <pid>.sock (mode
// 0600) in a directory of mode 0700, $XDG_RUNTIME_DIR/pyro/control or
// else control in the pyro state directory.
//
// # Wire format
//
// One JSON object per line in each direction (UTF-8, "\n" ends it; a
// request line is at most 16 MiB). A request:
//
//	{"id": 7, "op": "exec", "args": {"ID": "my-ws", "Command": "make test"}}
//
// op is a contract.Op ("create", "exec", "file.read", "shell.open", ...),
// or "hello", "exec.start" or "exec.list" (BackgroundBackend's ExecStart
// and ExecList; "exec.status" is ExecPoll). args is the method's request
// type as encoding/json writes it (Go field names; time.Duration in
// nanoseconds, []byte in base64, times in RFC 3339, a ShellWait's Pattern
// as its source text), or for a method that takes plain arguments an
// object of them: {"ID"} for a workspace, {"ID","Name"} for a snapshot,
// secret or service, {"ID","Snapshot"} for reset, {"ID","Patch"},
// {"ID","Grants"}, {"ID","GuestPort"}, {"ID","Name","Source"} for
// secret.set, {"ID","Name","Grace"} and {"ID","Name","Wait"} for
// service.stop and service.restart, {"ID","Shell"} and
// {"ID","Shell","Cols","Rows"}, and for update {"ID"} with the
// UpdateRequest's fields. Unknown fields are refused. A workspace ID may be
// its unique name. id is optional and echoed.
//
// The answer, in the order calls finish (a connection may have several
// calls running, up to 16):
//
//	{"id": 7, "result": {...}}
//	{"id": 7, "error": {"code": "not_found", "msg": "workspace \"x\" not found",
//	  "hint": "...", "resource": "workspace", "name": "x"}}
//
// result is the method's result type (null for those without); error is
// a *contract.Error less its cause, with Msg and Hint keeping their
// {{op}} markers for the face to word (contract.Word). A malformed or
// oversized request is answered with an "invalid" error and no id, and
// the connection reads on.
//
// A string that is not valid UTF-8 (a guest's file name, a latin-1 patch,
// binary stdin) travels escaped in the last code points of plane 16:
// each byte b outside valid UTF-8 is U+10FF00+b, and a code point of the
// string in U+10FF00-U+10FFFF, or U+10FE00, is preceded by U+10FE00.
//
// A call has no deadline: an exec may run an hour. Closing the connection
// (both directions; shutting down only the write side still gets the
// answers) cancels the calls it has running.
package control
