// Package contract is pyro's workspace contract: the Backend interface the
// workspace manager implements, its request and result types, its errors,
// the argument limits every face enforces, and the operations (Op) that
// hints name. It depends on neither the MCP SDK nor the manager, so the
// faces that offer workspaces (the MCP tools in package mcp, the control
// socket and the `pyro workspace` companion) share one definition and one
// code path, each wording hints for itself (Word).
package contract
