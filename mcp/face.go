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

// offeredFace is mcpFace for one server's tools: an operation whose tool
// the server's profile or mode does not offer is named with a note, so
// that a hint never sends the model to a tool it cannot call.
type offeredFace struct {
	mcpFace
	tools map[string]bool
}

func (f offeredFace) OpName(op contract.Op) string {
	n := f.mcpFace.OpName(op)
	if !f.tools[n] {
		return n + " (which this server does not offer)"
	}
	return n
}

// word words text a Backend returned for a model, for this server's
// tools (offeredFace).
func (h *handler) word(s string) string { return contract.Word(s, offeredFace{tools: h.tools}) }

// Face is the MCP tool layer's contract.Face.
func Face() contract.Face { return mcpFace{} }
