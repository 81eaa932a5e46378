package control

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Router is a contract.Backend, with every optional interface, over every
// live `pyro mcp serve` of a control directory plus a fallback backend for
// the workspaces no live server owns (a Manager of the caller's own):
//
//   - List merges every server's list with the fallback's, each workspace
//     once, most recently active first; Owner says whose each is.
//   - A call on one workspace (by ID or name) goes to the server that owns
//     it, else to the fallback. A name two servers use is ambiguous: the
//     ID is needed then.
//   - Fork goes to the server that owns the source workspace (else to
//     the fallback), and its forks live there too.
//   - Create, Run and Envs go to the live server when exactly one runs
//     (so that a workspace made from a terminal lives, and is seen, in
//     the chat's server); with none, or several, to the fallback.
//
// With no live server the fallback serves alone. The fallback is opened
// on its first use only, so that a Router whose calls all go to servers
// never touches the state directory itself.
type Router struct {
	open func() (contract.Backend, error)

	mu sync.Mutex // guards the fields below
	// Guarded by mu.
	servers []*Client
	// Guarded by mu.
	local contract.Backend
	// Guarded by mu.
	localErr error
	// owners maps workspace IDs to the server owning each (nil: the
	// fallback), as the last lists said. Guarded by mu.
	owners map[string]*Client
	// names maps workspace names to their IDs, as the last lists said.
	// Guarded by mu.
	names map[string][]string
}

var (
	_ contract.Backend           = (*Router)(nil)
	_ contract.BackgroundBackend = (*Router)(nil)
	_ contract.ShellBackend      = (*Router)(nil)
	_ contract.ServiceBackend    = (*Router)(nil)
	_ contract.NetworkBackend    = (*Router)(nil)
	_ contract.SecretBackend     = (*Router)(nil)
	_ contract.Forker            = (*Router)(nil)
)

// NewRouter routes between servers (found with Discover) and the backend
// fallback opens (once, when first needed; nil: none, and calls that need
// it fail).
func NewRouter(servers []Server, fallback func() (contract.Backend, error)) *Router {
	r := &Router{open: fallback, owners: map[string]*Client{}, names: map[string][]string{}}
	for _, s := range servers {
		r.servers = append(r.servers, s.Client())
	}
	return r
}

// Client returns a Client for the server, without dialling it again.
func (s Server) Client() *Client { return &Client{path: s.Path, hello: s.Hello} }

// Servers returns the live servers the Router routes to, oldest first.
func (r *Router) Servers() []Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Server, len(r.servers))
	for i, c := range r.servers {
		out[i] = Server{Hello: c.hello, Path: c.path}
	}
	return out
}

// Owner says which live server owns workspace id, as the last List (or a
// call naming it) found; false for the fallback's and unknown ones.
func (r *Router) Owner(id string) (Server, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.owners[id]; c != nil {
		return Server{Hello: c.hello, Path: c.path}, true
	}
	return Server{}, false
}

// fallback returns the fallback backend, opening it the first time.
func (r *Router) fallback() (contract.Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.local == nil && r.localErr == nil {
		if r.open == nil {
			r.localErr = contract.Conflict("no pyro server runs, and this command cannot work on the state directory itself").
				WithHint("Start a chat session with pyro (pyro mcp serve), then retry.")
		} else {
			r.local, r.localErr = r.open()
		}
	}
	return r.local, r.localErr
}

// drop forgets a server that is gone.
func (r *Router) drop(c *Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, s := range r.servers {
		if s == c {
			r.servers = append(r.servers[:i:i], r.servers[i+1:]...)
			break
		}
	}
	for id, o := range r.owners {
		if o == c {
			delete(r.owners, id)
		}
	}
}

func (r *Router) liveServers() []*Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Client(nil), r.servers...)
}

// single returns the backend of calls that name no workspace: the only
// live server, else the fallback.
func (r *Router) single() (contract.Backend, *Client, error) {
	if s := r.liveServers(); len(s) == 1 {
		return s[0], s[0], nil
	}
	b, err := r.fallback()
	return b, nil, err
}

// List implements contract.Backend: every server's workspaces and the
// fallback's, most recently active first.
func (r *Router) List(ctx context.Context) ([]contract.Workspace, error) {
	var (
		out  []contract.Workspace
		seen = map[string]bool{}
	)
	owners := map[string]*Client{}
	for _, c := range r.liveServers() {
		list, err := c.List(ctx)
		if errors.Is(err, ErrServerGone) {
			r.drop(c)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing the workspaces of the pyro server with pid %d: %w", c.hello.PID, err)
		}
		for _, w := range list {
			if !seen[w.ID] {
				seen[w.ID], owners[w.ID] = true, c
				out = append(out, w)
			}
		}
	}
	local, err := r.fallback()
	if err != nil {
		return nil, err
	}
	list, err := local.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range list {
		if !seen[w.ID] {
			seen[w.ID], owners[w.ID] = true, nil
			out = append(out, w)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastActiveAt.After(out[j].LastActiveAt) })
	r.remember(out, owners, true)
	return out, nil
}

// remember records who owns the workspaces of a list; all says the list
// is every backend's (so what it lacks is gone).
func (r *Router) remember(list []contract.Workspace, owners map[string]*Client, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if all {
		r.owners, r.names = map[string]*Client{}, map[string][]string{}
	}
	for _, w := range list {
		r.owners[w.ID] = owners[w.ID]
		if w.Name != "" && !slices.Contains(r.names[w.Name], w.ID) {
			r.names[w.Name] = append(r.names[w.Name], w.ID)
		}
	}
}

// lookup finds ref in what the lists said: the owner of the workspace
// whose ID (or else unique name) ref is.
func (r *Router) lookup(ref string) (owner *Client, id string, found bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.owners[ref]; ok {
		return o, ref, true, nil
	}
	ids := r.names[ref]
	switch len(ids) {
	case 0:
		return nil, "", false, nil
	case 1:
		return r.owners[ids[0]], ids[0], true, nil
	}
	var where []string
	for _, id := range ids {
		if o := r.owners[id]; o != nil {
			where = append(where, id+" (pyro server pid "+strconv.Itoa(o.hello.PID)+")")
		} else {
			where = append(where, id+" (no server)")
		}
	}
	return nil, "", false, contract.Invalid("several workspaces are named %q: %s", ref, strings.Join(where, ", ")).
		WithHint("Name the workspace by its id.")
}

// resolve returns the backend and ID of the workspace ref names; fresh
// lists the backends again rather than trust what earlier lists said.
// cached reports that the answer came from earlier lists.
func (r *Router) resolve(ctx context.Context, ref string, fresh bool) (b contract.Backend, id string, cached bool, err error) {
	if err := contract.ValidateRef(ref); err != nil {
		return nil, "", false, err
	}
	if !fresh {
		owner, id, found, err := r.lookup(ref)
		if err != nil {
			return nil, "", false, err
		}
		if found {
			if owner != nil {
				return owner, id, true, nil
			}
			local, err := r.fallback()
			return local, id, true, err
		}
	}
	// What the servers hold now (a server adopts a free workspace when it
	// lists): the fallback gets only what none of them has.
	owners := map[string]*Client{}
	var lists []contract.Workspace
	for _, c := range r.liveServers() {
		list, err := c.List(ctx)
		if errors.Is(err, ErrServerGone) {
			r.drop(c)
			continue
		}
		if err != nil {
			continue // it cannot own what it cannot list; another may
		}
		for _, w := range list {
			if _, dup := owners[w.ID]; !dup {
				owners[w.ID] = c
				lists = append(lists, w)
			}
		}
	}
	r.forgetServers()
	r.remember(lists, owners, false)
	if owner, id, found, err := r.lookup(ref); err != nil {
		return nil, "", false, err
	} else if found && owner != nil {
		return owner, id, false, nil
	}
	local, err := r.fallback()
	if err != nil {
		return nil, "", false, err
	}
	list, err := local.List(ctx)
	if err != nil {
		return nil, "", false, err
	}
	localOwners := map[string]*Client{}
	var mine []contract.Workspace
	for _, w := range list {
		if _, theirs := owners[w.ID]; !theirs {
			localOwners[w.ID] = nil
			mine = append(mine, w)
		}
	}
	r.remember(mine, localOwners, false)
	if _, id, found, err := r.lookup(ref); err != nil {
		return nil, "", false, err
	} else if found {
		return local, id, false, nil
	}
	return local, ref, false, nil // the fallback says what it is (NotFound)
}

// forgetServers drops what earlier lists said the servers own, before a
// fresh look.
func (r *Router) forgetServers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.owners {
		if o != nil {
			delete(r.owners, id)
		}
	}
	for name, ids := range r.names {
		var keep []string
		for _, id := range ids {
			if _, ok := r.owners[id]; ok {
				keep = append(keep, id)
			}
		}
		if len(keep) == 0 {
			delete(r.names, name)
		} else {
			r.names[name] = keep
		}
	}
}

// retryable reports whether err says a call never ran because the
// workspace was not where earlier lists said: gone from that server, held
// by another, or the server itself gone.
func retryable(err error) bool {
	if errors.Is(err, ErrServerGone) {
		return true
	}
	e, ok := contract.AsError(err)
	return ok && (e.Code == contract.CodeNotFound && e.Resource == contract.ResourceWorkspace ||
		e.Code == contract.CodeConflict && strings.Contains(e.Msg, "another pyro server"))
}

// routed runs fn on the backend owning ref, with its ID: again, after a
// fresh look, when what earlier lists said turned out stale.
func routed[R any](ctx context.Context, r *Router, ref string, fn func(b contract.Backend, id string) (R, error)) (R, error) {
	b, id, cached, err := r.resolve(ctx, ref, false)
	if err != nil {
		var zero R
		return zero, err
	}
	res, err := fn(b, id)
	if errors.Is(err, ErrServerGone) {
		if c, ok := b.(*Client); ok {
			r.drop(c)
		}
	}
	if err == nil || !cached || !retryable(err) {
		return res, err
	}
	b2, id2, _, rerr := r.resolve(ctx, ref, true)
	if rerr != nil || (same(b2, b) && id2 == id && !errors.Is(err, ErrServerGone)) {
		return res, err
	}
	return fn(b2, id2)
}

// same reports whether a and b are the same backend.
func same(a, b contract.Backend) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta != nil && ta.Comparable() && a == b
}

// routedOpt is routed for a method of the optional interface I.
func routedOpt[I any, R any](ctx context.Context, r *Router, ref, what string, fn func(i I, id string) (R, error)) (R, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (R, error) {
		i, err := optional[I](b, what)
		if err != nil {
			var zero R
			return zero, err
		}
		return fn(i, id)
	})
}

// Create implements contract.Backend: on the only live server, else on
// the fallback.
func (r *Router) Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error) {
	b, owner, err := r.single()
	if err != nil {
		return contract.Workspace{}, err
	}
	w, err := b.Create(ctx, req)
	if errors.Is(err, ErrServerGone) && owner != nil {
		r.drop(owner)
		if b, owner, err = r.single(); err != nil {
			return contract.Workspace{}, err
		}
		w, err = b.Create(ctx, req)
	}
	if err == nil {
		r.remember([]contract.Workspace{w}, map[string]*Client{w.ID: owner}, false)
	}
	return w, err
}

// Run implements contract.Backend, where Create would run.
func (r *Router) Run(ctx context.Context, req contract.RunRequest) (contract.ExecResult, error) {
	b, _, err := r.single()
	if err != nil {
		return contract.ExecResult{}, err
	}
	return b.Run(ctx, req)
}

// Envs implements contract.Backend, where Create would run.
func (r *Router) Envs(ctx context.Context) ([]contract.Environment, error) {
	b, _, err := r.single()
	if err != nil {
		return nil, err
	}
	return b.Envs(ctx)
}

func (r *Router) Status(ctx context.Context, ref string) (contract.Workspace, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.Workspace, error) { return b.Status(ctx, id) })
}

func (r *Router) Update(ctx context.Context, ref string, req contract.UpdateRequest) (contract.Workspace, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.Workspace, error) { return b.Update(ctx, id, req) })
}

func (r *Router) Stop(ctx context.Context, ref string) (contract.Workspace, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.Workspace, error) { return b.Stop(ctx, id) })
}

func (r *Router) Start(ctx context.Context, ref string) (contract.Workspace, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.Workspace, error) { return b.Start(ctx, id) })
}

func (r *Router) Delete(ctx context.Context, ref string) error {
	_, err := routed(ctx, r, ref, func(b contract.Backend, id string) (struct{}, error) { return struct{}{}, b.Delete(ctx, id) })
	return err
}

func (r *Router) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.ExecResult, error) {
		req.ID = id
		return b.Exec(ctx, req)
	})
}

func (r *Router) ListFiles(ctx context.Context, req contract.ListFilesRequest) (contract.FileListing, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.FileListing, error) {
		req.ID = id
		return b.ListFiles(ctx, req)
	})
}

func (r *Router) ReadFile(ctx context.Context, req contract.ReadFileRequest) (contract.FileContent, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.FileContent, error) {
		req.ID = id
		return b.ReadFile(ctx, req)
	})
}

func (r *Router) WriteFile(ctx context.Context, req contract.WriteFileRequest) (contract.WriteResult, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.WriteResult, error) {
		req.ID = id
		return b.WriteFile(ctx, req)
	})
}

func (r *Router) ApplyPatch(ctx context.Context, ref string, patch string) (contract.PatchResult, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.PatchResult, error) { return b.ApplyPatch(ctx, id, patch) })
}

func (r *Router) Diff(ctx context.Context, req contract.DiffRequest) (contract.DiffResult, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.DiffResult, error) {
		req.ID = id
		return b.Diff(ctx, req)
	})
}

func (r *Router) Export(ctx context.Context, req contract.ExportRequest) (contract.ExportResult, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.ExportResult, error) {
		req.ID = id
		return b.Export(ctx, req)
	})
}

func (r *Router) SyncPush(ctx context.Context, req contract.SyncPushRequest) (contract.SyncResult, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.SyncResult, error) {
		req.ID = id
		return b.SyncPush(ctx, req)
	})
}

func (r *Router) SnapshotCreate(ctx context.Context, req contract.SnapshotRequest) (contract.Snapshot, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.Snapshot, error) {
		req.ID = id
		return b.SnapshotCreate(ctx, req)
	})
}

func (r *Router) SnapshotList(ctx context.Context, ref string) ([]contract.Snapshot, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) ([]contract.Snapshot, error) { return b.SnapshotList(ctx, id) })
}

func (r *Router) SnapshotDelete(ctx context.Context, ref string, name string) error {
	_, err := routed(ctx, r, ref, func(b contract.Backend, id string) (struct{}, error) {
		return struct{}{}, b.SnapshotDelete(ctx, id, name)
	})
	return err
}

func (r *Router) Reset(ctx context.Context, ref string, snapshot string) (contract.ResetResult, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.ResetResult, error) { return b.Reset(ctx, id, snapshot) })
}

func (r *Router) Logs(ctx context.Context, req contract.LogsRequest) (contract.LogPage, error) {
	return routed(ctx, r, req.ID, func(b contract.Backend, id string) (contract.LogPage, error) {
		req.ID = id
		return b.Logs(ctx, req)
	})
}

func (r *Router) Summary(ctx context.Context, ref string) (contract.Summary, error) {
	return routed(ctx, r, ref, func(b contract.Backend, id string) (contract.Summary, error) { return b.Summary(ctx, id) })
}

// BackgroundBackend.

func (r *Router) ExecStart(ctx context.Context, req contract.ExecRequest) (contract.BackgroundExec, error) {
	return routedOpt(ctx, r, req.ID, whatBackground, func(i contract.BackgroundBackend, id string) (contract.BackgroundExec, error) {
		req.ID = id
		return i.ExecStart(ctx, req)
	})
}

func (r *Router) ExecPoll(ctx context.Context, req contract.PollRequest) (contract.BackgroundExec, error) {
	return routedOpt(ctx, r, req.ID, whatBackground, func(i contract.BackgroundBackend, id string) (contract.BackgroundExec, error) {
		req.ID = id
		return i.ExecPoll(ctx, req)
	})
}

func (r *Router) ExecList(ctx context.Context, ref string) ([]contract.BackgroundExec, error) {
	return routedOpt(ctx, r, ref, whatBackground, func(i contract.BackgroundBackend, id string) ([]contract.BackgroundExec, error) {
		return i.ExecList(ctx, id)
	})
}

// ShellBackend.

func (r *Router) ShellOpen(ctx context.Context, req contract.ShellOpenRequest) (contract.ShellOutput, error) {
	return routedOpt(ctx, r, req.ID, whatShells, func(i contract.ShellBackend, id string) (contract.ShellOutput, error) {
		req.ID = id
		return i.ShellOpen(ctx, req)
	})
}

func (r *Router) ShellRead(ctx context.Context, req contract.ShellReadRequest) (contract.ShellOutput, error) {
	return routedOpt(ctx, r, req.ID, whatShells, func(i contract.ShellBackend, id string) (contract.ShellOutput, error) {
		req.ID = id
		return i.ShellRead(ctx, req)
	})
}

func (r *Router) ShellWrite(ctx context.Context, req contract.ShellWriteRequest) (contract.ShellOutput, error) {
	return routedOpt(ctx, r, req.ID, whatShells, func(i contract.ShellBackend, id string) (contract.ShellOutput, error) {
		req.ID = id
		return i.ShellWrite(ctx, req)
	})
}

func (r *Router) ShellSignal(ctx context.Context, req contract.ShellSignalRequest) (contract.ShellOutput, error) {
	return routedOpt(ctx, r, req.ID, whatShells, func(i contract.ShellBackend, id string) (contract.ShellOutput, error) {
		req.ID = id
		return i.ShellSignal(ctx, req)
	})
}

func (r *Router) ShellResize(ctx context.Context, ref string, shell, cols, rows int) (contract.ShellInfo, error) {
	return routedOpt(ctx, r, ref, whatShells, func(i contract.ShellBackend, id string) (contract.ShellInfo, error) {
		return i.ShellResize(ctx, id, shell, cols, rows)
	})
}

func (r *Router) ShellClose(ctx context.Context, ref string, shell int) (contract.ShellInfo, error) {
	return routedOpt(ctx, r, ref, whatShells, func(i contract.ShellBackend, id string) (contract.ShellInfo, error) {
		return i.ShellClose(ctx, id, shell)
	})
}

func (r *Router) ShellList(ctx context.Context, ref string) ([]contract.ShellInfo, error) {
	return routedOpt(ctx, r, ref, whatShells, func(i contract.ShellBackend, id string) ([]contract.ShellInfo, error) {
		return i.ShellList(ctx, id)
	})
}

// ServiceBackend.

func (r *Router) ServiceStart(ctx context.Context, req contract.ServiceStartRequest) (contract.ServiceStatus, error) {
	return routedOpt(ctx, r, req.ID, whatServices, func(i contract.ServiceBackend, id string) (contract.ServiceStatus, error) {
		req.ID = id
		return i.ServiceStart(ctx, req)
	})
}

func (r *Router) ServiceStatus(ctx context.Context, ref, name string) ([]contract.ServiceStatus, error) {
	return routedOpt(ctx, r, ref, whatServices, func(i contract.ServiceBackend, id string) ([]contract.ServiceStatus, error) {
		return i.ServiceStatus(ctx, id, name)
	})
}

func (r *Router) ServiceLogs(ctx context.Context, req contract.ServiceLogsRequest) (contract.ServiceLogs, error) {
	return routedOpt(ctx, r, req.ID, whatServices, func(i contract.ServiceBackend, id string) (contract.ServiceLogs, error) {
		req.ID = id
		return i.ServiceLogs(ctx, req)
	})
}

func (r *Router) ServiceStop(ctx context.Context, ref, name string, grace time.Duration) (contract.ServiceStatus, error) {
	return routedOpt(ctx, r, ref, whatServices, func(i contract.ServiceBackend, id string) (contract.ServiceStatus, error) {
		return i.ServiceStop(ctx, id, name, grace)
	})
}

func (r *Router) ServiceRestart(ctx context.Context, ref, name string, wait time.Duration) (contract.ServiceStatus, error) {
	return routedOpt(ctx, r, ref, whatServices, func(i contract.ServiceBackend, id string) (contract.ServiceStatus, error) {
		return i.ServiceRestart(ctx, id, name, wait)
	})
}

// NetworkBackend.

func (r *Router) NetworkGrant(ctx context.Context, ref string, grants []string) (contract.NetworkStatus, error) {
	return routedOpt(ctx, r, ref, whatNetwork, func(i contract.NetworkBackend, id string) (contract.NetworkStatus, error) {
		return i.NetworkGrant(ctx, id, grants)
	})
}

func (r *Router) NetworkRevoke(ctx context.Context, ref string, grants []string) (contract.RevokeResult, error) {
	return routedOpt(ctx, r, ref, whatNetwork, func(i contract.NetworkBackend, id string) (contract.RevokeResult, error) {
		return i.NetworkRevoke(ctx, id, grants)
	})
}

func (r *Router) NetworkStatus(ctx context.Context, ref string) (contract.NetworkStatus, error) {
	return routedOpt(ctx, r, ref, whatNetwork, func(i contract.NetworkBackend, id string) (contract.NetworkStatus, error) {
		return i.NetworkStatus(ctx, id)
	})
}

func (r *Router) PortPublish(ctx context.Context, req contract.PublishRequest) (contract.PublishedPort, error) {
	return routedOpt(ctx, r, req.ID, whatNetwork, func(i contract.NetworkBackend, id string) (contract.PublishedPort, error) {
		req.ID = id
		return i.PortPublish(ctx, req)
	})
}

func (r *Router) PortUnpublish(ctx context.Context, ref string, guestPort int) error {
	_, err := routedOpt(ctx, r, ref, whatNetwork, func(i contract.NetworkBackend, id string) (struct{}, error) {
		return struct{}{}, i.PortUnpublish(ctx, id, guestPort)
	})
	return err
}

// SecretBackend.

func (r *Router) SecretSet(ctx context.Context, ref, name string, src contract.SecretSource) (contract.Workspace, error) {
	return routedOpt(ctx, r, ref, whatSecrets, func(i contract.SecretBackend, id string) (contract.Workspace, error) {
		return i.SecretSet(ctx, id, name, src)
	})
}

func (r *Router) SecretDelete(ctx context.Context, ref, name string) (contract.Workspace, error) {
	return routedOpt(ctx, r, ref, whatSecrets, func(i contract.SecretBackend, id string) (contract.Workspace, error) {
		return i.SecretDelete(ctx, id, name)
	})
}

// Forker.

// Fork implements contract.Forker where the source workspace lives: the
// forks are that backend's workspaces too.
func (r *Router) Fork(ctx context.Context, req contract.ForkRequest) (contract.ForkResult, error) {
	var owner *Client
	res, err := routedOpt(ctx, r, req.ID, whatForks, func(i contract.Forker, id string) (contract.ForkResult, error) {
		req.ID = id
		owner, _ = i.(*Client) // nil: the fallback
		return i.Fork(ctx, req)
	})
	if err == nil {
		owners := make(map[string]*Client, len(res.Forks))
		for _, w := range res.Forks {
			owners[w.ID] = owner
		}
		r.remember(res.Forks, owners, false)
	}
	return res, err
}
