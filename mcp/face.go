package mcp

import (
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// mcpFace words the contract's operation and argument markers as this
// layer's tool and argument names (see contract.Word).
type mcpFace struct{}

// OpName is the tool that offers op: the workspace's own operations are
// workspace_VERB, the grouped ones GROUP_VERB.
func (mcpFace) OpName(op contract.Op) string {
	switch op {
	case contract.OpRun:
		return "vm_run"
	case contract.OpSyncPush:
		return "workspace_sync_push"
	}
	if s := string(op); strings.Contains(s, ".") {
		return strings.ReplaceAll(s, ".", "_")
	}
	return "workspace_" + string(op)
}

// ArgName is the argument's JSON name, as the tool schemas spell it.
func (mcpFace) ArgName(arg string) string { return arg }

// word words text a Backend returned for a model.
func word(s string) string { return contract.Word(s, mcpFace{}) }

// Face is the MCP tool layer's contract.Face.
func Face() contract.Face { return mcpFace{} }
