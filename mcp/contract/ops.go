package contract

import (
	"strings"
)

// Op names one workspace operation independently of the face that offers
// it: the MCP tool layer calls OpStop "workspace_stop", the terminal
// companion "pyro workspace stop". Text a Backend returns to a person or a
// model (an *Error's Msg and Hint, an exec's notes, a workspace's Error)
// names operations and their arguments with markers that each face words
// for itself through Word:
//
//	{{stop}}    an operation (an Op)
//	{{-mem_mib}} an argument, by its MCP/JSON name
//
// so the same hint reads "call workspace_stop, or ask for less memory
// (mem_mib)" in a chat and "run pyro workspace stop, or ask for less memory
// (--mem-mib)" in a terminal.
type Op string

// The operations. Every Backend method is one; a face may offer a subset.
const (
	OpCreate         Op = "create"
	OpList           Op = "list"
	OpStatus         Op = "status"
	OpUpdate         Op = "update"
	OpStop           Op = "stop"
	OpStart          Op = "start"
	OpDelete         Op = "delete"
	OpSummary        Op = "summary"
	OpLogs           Op = "logs"
	OpExec           Op = "exec"
	OpExecStatus     Op = "exec.status"
	OpFileList       Op = "file.list"
	OpFileRead       Op = "file.read"
	OpFileWrite      Op = "file.write"
	OpPatchApply     Op = "patch.apply"
	OpDiff           Op = "diff"
	OpExport         Op = "export"
	OpSyncPush       Op = "sync.push"
	OpSnapshotCreate Op = "snapshot.create"
	OpSnapshotList   Op = "snapshot.list"
	OpSnapshotDelete Op = "snapshot.delete"
	OpReset          Op = "reset"
	OpFork           Op = "fork"
	OpNetworkGrant   Op = "network.grant"
	OpNetworkRevoke  Op = "network.revoke"
	OpNetworkStatus  Op = "network.status"
	OpPortPublish    Op = "port.publish"
	OpPortUnpublish  Op = "port.unpublish"
	OpSecretSet      Op = "secret.set"
	OpSecretDelete   Op = "secret.delete"
	OpServiceStart   Op = "service.start"
	OpServiceStatus  Op = "service.status"
	OpServiceLogs    Op = "service.logs"
	OpServiceStop    Op = "service.stop"
	OpServiceRestart Op = "service.restart"
	OpShellOpen      Op = "shell.open"
	OpShellWrite     Op = "shell.write"
	OpShellRead      Op = "shell.read"
	OpShellSignal    Op = "shell.signal"
	OpShellResize    Op = "shell.resize"
	OpShellClose     Op = "shell.close"
	OpShellList      Op = "shell.list"
	OpRun            Op = "run"
	OpEnvList        Op = "env.list"
)

// Ops lists every operation, in the order faces document them.
func Ops() []Op {
	return []Op{OpCreate, OpList, OpStatus, OpUpdate, OpStop, OpStart, OpDelete, OpSummary, OpLogs,
		OpExec, OpExecStatus, OpFileList, OpFileRead, OpFileWrite, OpPatchApply, OpDiff, OpExport, OpSyncPush,
		OpSnapshotCreate, OpSnapshotList, OpSnapshotDelete, OpReset, OpFork,
		OpNetworkGrant, OpNetworkRevoke, OpNetworkStatus, OpPortPublish, OpPortUnpublish,
		OpSecretSet, OpSecretDelete,
		OpServiceStart, OpServiceStatus, OpServiceLogs, OpServiceStop, OpServiceRestart,
		OpShellOpen, OpShellWrite, OpShellRead, OpShellSignal, OpShellResize, OpShellClose, OpShellList,
		OpRun, OpEnvList}
}

// Face words operation and argument markers for one way of offering the
// contract (MCP tools, the terminal companion).
type Face interface {
	// OpName is how this face names op, e.g. "workspace_stop".
	OpName(op Op) string
	// ArgName is how this face names the argument whose MCP/JSON name
	// is arg, e.g. "mem_mib" or "--mem-mib".
	ArgName(arg string) string
}

// Word replaces the markers in s with f's names. Text without markers is
// returned as is; a marker that names no known operation is left alone, so
// that text which merely looks like one (a template in a file name) is
// never rewritten.
func Word(s string, f Face) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			break
		}
		name := s[i+2 : i+2+j]
		b.WriteString(s[:i])
		switch {
		case strings.HasPrefix(name, "-") && isArgName(name[1:]):
			b.WriteString(f.ArgName(name[1:]))
		case knownOp(Op(name)):
			b.WriteString(f.OpName(Op(name)))
		default:
			b.WriteString(s[i : i+4+j])
		}
		s = s[i+4+j:]
	}
	b.WriteString(s)
	return b.String()
}

func knownOp(op Op) bool {
	for _, o := range Ops() {
		if o == op {
			return true
		}
	}
	return false
}

func isArgName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Worded returns a copy of e with Msg and Hint worded for f.
func (e *Error) Worded(f Face) *Error {
	c := *e
	c.Msg, c.Hint = Word(e.Msg, f), Word(e.Hint, f)
	return &c
}
