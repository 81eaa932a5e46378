// Package mcp is pyro's MCP tool layer: it sits between a chat host (Claude
// Code, Codex, OpenCode) speaking MCP over stdio and the workspace manager,
// which it sees only through contract.Backend.
//
// Data path: the chat host calls a tool; the go-sdk server decodes and
// schema-checks the arguments; a tool function here validates them, fills in
// the documented defaults and calls the Backend; the answer is shaped into a
// compact JSON view that fits Options.MaxResultBytes (head+tail excerpts,
// cursors, host file paths for the full text) and returned both as
// structuredContent and as one identical text block. Each view is a Go type
// whose schema the tool declares as its outputSchema (schema.go). Every
// failure, expected or not, becomes a tool result with IsError set whose JSON
// says what happened and what to do next; protocol errors are left to the
// SDK. A call whose request carries a progress token gets the Backend's stage
// reports (contract.Progress) and a heartbeat as notifications/progress
// (progress.go).
//
// Tools are grouped (workspace, exec, files, host, snapshot, oneshot, env)
// and exposed through profiles: ProfileCore, the everyday loop and the
// default, and ProfileFull, every tool. NewServer makes no Backend call, so
// initialize answers at once. Nothing here writes to stdout except the
// protocol; logs go to Options.Logger.
package mcp
