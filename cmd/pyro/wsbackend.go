package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/control"
	"github.com/pyro-mcp/pyro/mcp/workspace"
)

// workspaceBackend returns the backend `pyro workspace` commands drive: a
// router over every live `pyro mcp serve` of this user, falling back, for
// workspaces no server owns (or when none runs), to a manager on the state
// directory that this process runs (it boots VMs as needed and stops the
// ones it booted when close is called).
//
// With exactly one server running, create (and run, and env list) go to
// it, so that a workspace made in a terminal lives in, and is seen by, the
// chat's server; with none or several, to this process's manager. The
// manager is opened only when a call needs it. control.Router documents
// the routing; Router.Owner says which server holds a listed workspace.
func workspaceBackend(ctx context.Context, stderr io.Writer) (b contract.Backend, close func(), err error) {
	dir := controlDir()
	servers, err := control.Discover(dir)
	if err != nil {
		fmt.Fprintf(stderr, "pyro: looking for running pyro servers: %v; working on the state directory alone\n", err)
	}
	var (
		mu sync.Mutex
		m  *workspace.Manager
	)
	open := func() (contract.Backend, error) {
		res, err := hostResolver(defaultResolverAddr())
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", resolverEnv, err)
		}
		mm, err := openManager(managerConfig{StateDir: stateDir(), DefaultEnv: workspace.DefaultEnv,
			MaxRunning: workspace.DefaultMaxRunning, Retention: workspace.DefaultRetention, Resolver: res,
			Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return nil, err
		}
		mu.Lock()
		m = mm
		mu.Unlock()
		return mm, nil
	}
	close = func() {
		mu.Lock()
		mm := m
		m = nil
		mu.Unlock()
		if mm == nil {
			return
		}
		done := make(chan struct{}, 1) // (close is this function's result here)
		go func() { mm.Close(); done <- struct{}{} }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(stderr, "pyro: workspaces did not stop within 30 s; exiting anyway (their disks are consistent)")
		}
	}
	return control.NewRouter(servers, open), close, nil
}
