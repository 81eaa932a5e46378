package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/workspace"
)

// workspaceBackend returns the backend `pyro workspace` commands drive: a
// router over every live `pyro mcp serve` of this user, falling back, for
// workspaces no server owns (or when none runs), to a manager on the state
// directory that this process runs (it boots VMs as needed and stops the
// ones it booted when close is called).
//
// This is a stand-in until the control socket lands: it always runs a
// manager of its own on the state directory, built as pyro mcp serve
// builds one.
func workspaceBackend(ctx context.Context, stderr io.Writer) (b contract.Backend, close func(), err error) {
	res, err := hostResolver(defaultResolverAddr())
	if err != nil {
		return nil, nil, err
	}
	cwd, _ := os.Getwd()
	m, err := workspace.Open(workspace.Options{
		StateDir:   stateDir(),
		CacheRoot:  cacheRoot(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		GitSeedDir: cwd,
		Resolver:   res,
		LoadEnv: func(ctx context.Context, name string) (*env.Env, error) {
			return loadEnvForRun(ctx, name, true, io.Discard)
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}
