package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// ErrServerGone is in the chain of a Client call's error when the server
// could not be reached at all: the call never started (a Router then
// turns to another backend).
var ErrServerGone = errors.New("the pyro server is gone")

// Client is a contract.Backend, with every optional interface, that runs
// each call on a `pyro mcp serve` through its control socket: the very
// Manager that server's MCP tools drive. Each call is a connection of its
// own, so calls run concurrently and a call whose ctx ends is cancelled
// on the server (its connection closes). Calls have no deadline of their
// own: an exec may run for an hour.
//
// A server answers an optional operation it lacks with an *Error Invalid.
type Client struct {
	path  string
	hello Hello
}

var (
	_ contract.Backend           = (*Client)(nil)
	_ contract.BackgroundBackend = (*Client)(nil)
	_ contract.ShellBackend      = (*Client)(nil)
	_ contract.ServiceBackend    = (*Client)(nil)
	_ contract.NetworkBackend    = (*Client)(nil)
	_ contract.SecretBackend     = (*Client)(nil)
	_ contract.Forker            = (*Client)(nil)
)

// Dial connects to the server listening at path and asks who it is.
func Dial(path string) (*Client, error) {
	h, err := hello(path, helloTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrServerGone, path, err)
	}
	return &Client{path: path, hello: h}, nil
}

// Hello is what the server said of itself when dialled.
func (c *Client) Hello() Hello { return c.hello }

// Path is the server's socket.
func (c *Client) Path() string { return c.path }

// call runs op with args and decodes its result into out (nil: none).
func (c *Client) call(ctx context.Context, op contract.Op, args any, out any) error {
	data, err := marshal(args)
	if err != nil {
		return fmt.Errorf("encoding the arguments of %s: %w", op, err)
	}
	line, err := marshal(request{Op: op, Args: data})
	if err != nil {
		return err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.path)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: pid %d (%s): %v", ErrServerGone, c.hello.PID, c.path, err)
	}
	type answer struct {
		line []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		if _, err := conn.Write(append(line, '\n')); err != nil {
			done <- answer{err: err}
			return
		}
		l, err := readLine(bufio.NewReaderSize(conn, 64<<10), maxResponseBytes)
		done <- answer{l, err}
	}()
	var a answer
	select {
	case a = <-done:
		conn.Close()
	case <-ctx.Done():
		conn.Close() // the server cancels the call
		<-done
		return ctx.Err()
	}
	if a.err != nil {
		return fmt.Errorf("the pyro server (pid %d) ended the call to %s without an answer (it may have stopped): %w", c.hello.PID, op, a.err)
	}
	var r response
	if err := unmarshal(a.line, &r, false); err != nil {
		return fmt.Errorf("a bad answer from the pyro server (pid %d) to %s: %w", c.hello.PID, op, err)
	}
	if r.Error != nil {
		return r.Error.contract()
	}
	if out == nil {
		return nil
	}
	if err := unmarshal(r.Result, out, false); err != nil {
		return fmt.Errorf("a bad result from the pyro server (pid %d) to %s: %w", c.hello.PID, op, err)
	}
	return nil
}

// do runs a call with a result of type R.
func do[R any](ctx context.Context, c *Client, op contract.Op, args any) (R, error) {
	var r R
	err := c.call(ctx, op, args, &r)
	return r, err
}

// Backend.

func (c *Client) Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpCreate, req)
}

func (c *Client) List(ctx context.Context) ([]contract.Workspace, error) {
	return do[[]contract.Workspace](ctx, c, contract.OpList, noArgs{})
}

func (c *Client) Status(ctx context.Context, id string) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpStatus, refArgs{id})
}

func (c *Client) Update(ctx context.Context, id string, req contract.UpdateRequest) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpUpdate, updateArgs{id, req})
}

func (c *Client) Stop(ctx context.Context, id string) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpStop, refArgs{id})
}

func (c *Client) Start(ctx context.Context, id string) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpStart, refArgs{id})
}

func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, contract.OpDelete, refArgs{id}, nil)
}

func (c *Client) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	return do[contract.ExecResult](ctx, c, contract.OpExec, req)
}

func (c *Client) ListFiles(ctx context.Context, req contract.ListFilesRequest) (contract.FileListing, error) {
	return do[contract.FileListing](ctx, c, contract.OpFileList, req)
}

func (c *Client) ReadFile(ctx context.Context, req contract.ReadFileRequest) (contract.FileContent, error) {
	return do[contract.FileContent](ctx, c, contract.OpFileRead, req)
}

func (c *Client) WriteFile(ctx context.Context, req contract.WriteFileRequest) (contract.WriteResult, error) {
	return do[contract.WriteResult](ctx, c, contract.OpFileWrite, req)
}

func (c *Client) ApplyPatch(ctx context.Context, id string, patch string) (contract.PatchResult, error) {
	return do[contract.PatchResult](ctx, c, contract.OpPatchApply, patchArgs{id, patch})
}

func (c *Client) Diff(ctx context.Context, req contract.DiffRequest) (contract.DiffResult, error) {
	return do[contract.DiffResult](ctx, c, contract.OpDiff, req)
}

func (c *Client) Export(ctx context.Context, req contract.ExportRequest) (contract.ExportResult, error) {
	return do[contract.ExportResult](ctx, c, contract.OpExport, req)
}

func (c *Client) SyncPush(ctx context.Context, req contract.SyncPushRequest) (contract.SyncResult, error) {
	return do[contract.SyncResult](ctx, c, contract.OpSyncPush, req)
}

func (c *Client) SnapshotCreate(ctx context.Context, req contract.SnapshotRequest) (contract.Snapshot, error) {
	return do[contract.Snapshot](ctx, c, contract.OpSnapshotCreate, req)
}

func (c *Client) SnapshotList(ctx context.Context, id string) ([]contract.Snapshot, error) {
	return do[[]contract.Snapshot](ctx, c, contract.OpSnapshotList, refArgs{id})
}

func (c *Client) SnapshotDelete(ctx context.Context, id string, name string) error {
	return c.call(ctx, contract.OpSnapshotDelete, nameArgs{id, name}, nil)
}

func (c *Client) Reset(ctx context.Context, id string, snapshot string) (contract.ResetResult, error) {
	return do[contract.ResetResult](ctx, c, contract.OpReset, resetArgs{id, snapshot})
}

func (c *Client) Logs(ctx context.Context, req contract.LogsRequest) (contract.LogPage, error) {
	return do[contract.LogPage](ctx, c, contract.OpLogs, req)
}

func (c *Client) Summary(ctx context.Context, id string) (contract.Summary, error) {
	return do[contract.Summary](ctx, c, contract.OpSummary, refArgs{id})
}

func (c *Client) Run(ctx context.Context, req contract.RunRequest) (contract.ExecResult, error) {
	return do[contract.ExecResult](ctx, c, contract.OpRun, req)
}

func (c *Client) Envs(ctx context.Context) ([]contract.Environment, error) {
	return do[[]contract.Environment](ctx, c, contract.OpEnvList, noArgs{})
}

// BackgroundBackend.

func (c *Client) ExecStart(ctx context.Context, req contract.ExecRequest) (contract.BackgroundExec, error) {
	return do[contract.BackgroundExec](ctx, c, OpExecStart, req)
}

func (c *Client) ExecPoll(ctx context.Context, req contract.PollRequest) (contract.BackgroundExec, error) {
	return do[contract.BackgroundExec](ctx, c, contract.OpExecStatus, req)
}

func (c *Client) ExecList(ctx context.Context, id string) ([]contract.BackgroundExec, error) {
	return do[[]contract.BackgroundExec](ctx, c, OpExecList, refArgs{id})
}

// ShellBackend.

func (c *Client) ShellOpen(ctx context.Context, req contract.ShellOpenRequest) (contract.ShellOutput, error) {
	return do[contract.ShellOutput](ctx, c, contract.OpShellOpen, req)
}

func (c *Client) ShellRead(ctx context.Context, req contract.ShellReadRequest) (contract.ShellOutput, error) {
	return do[contract.ShellOutput](ctx, c, contract.OpShellRead, req)
}

func (c *Client) ShellWrite(ctx context.Context, req contract.ShellWriteRequest) (contract.ShellOutput, error) {
	return do[contract.ShellOutput](ctx, c, contract.OpShellWrite, req)
}

func (c *Client) ShellSignal(ctx context.Context, req contract.ShellSignalRequest) (contract.ShellOutput, error) {
	return do[contract.ShellOutput](ctx, c, contract.OpShellSignal, req)
}

func (c *Client) ShellResize(ctx context.Context, id string, shell, cols, rows int) (contract.ShellInfo, error) {
	return do[contract.ShellInfo](ctx, c, contract.OpShellResize, shellResizeArgs{id, shell, cols, rows})
}

func (c *Client) ShellClose(ctx context.Context, id string, shell int) (contract.ShellInfo, error) {
	return do[contract.ShellInfo](ctx, c, contract.OpShellClose, shellArgs{id, shell})
}

func (c *Client) ShellList(ctx context.Context, id string) ([]contract.ShellInfo, error) {
	return do[[]contract.ShellInfo](ctx, c, contract.OpShellList, refArgs{id})
}

// ServiceBackend.

func (c *Client) ServiceStart(ctx context.Context, req contract.ServiceStartRequest) (contract.ServiceStatus, error) {
	return do[contract.ServiceStatus](ctx, c, contract.OpServiceStart, req)
}

func (c *Client) ServiceStatus(ctx context.Context, id, name string) ([]contract.ServiceStatus, error) {
	return do[[]contract.ServiceStatus](ctx, c, contract.OpServiceStatus, nameArgs{id, name})
}

func (c *Client) ServiceLogs(ctx context.Context, req contract.ServiceLogsRequest) (contract.ServiceLogs, error) {
	return do[contract.ServiceLogs](ctx, c, contract.OpServiceLogs, req)
}

func (c *Client) ServiceStop(ctx context.Context, id, name string, grace time.Duration) (contract.ServiceStatus, error) {
	return do[contract.ServiceStatus](ctx, c, contract.OpServiceStop, serviceStopArgs{id, name, grace})
}

func (c *Client) ServiceRestart(ctx context.Context, id, name string, wait time.Duration) (contract.ServiceStatus, error) {
	return do[contract.ServiceStatus](ctx, c, contract.OpServiceRestart, serviceRestartArgs{id, name, wait})
}

// NetworkBackend.

func (c *Client) NetworkGrant(ctx context.Context, id string, grants []string) (contract.NetworkStatus, error) {
	return do[contract.NetworkStatus](ctx, c, contract.OpNetworkGrant, grantArgs{id, grants})
}

func (c *Client) NetworkRevoke(ctx context.Context, id string, grants []string) (contract.RevokeResult, error) {
	return do[contract.RevokeResult](ctx, c, contract.OpNetworkRevoke, grantArgs{id, grants})
}

func (c *Client) NetworkStatus(ctx context.Context, id string) (contract.NetworkStatus, error) {
	return do[contract.NetworkStatus](ctx, c, contract.OpNetworkStatus, refArgs{id})
}

func (c *Client) PortPublish(ctx context.Context, req contract.PublishRequest) (contract.PublishedPort, error) {
	return do[contract.PublishedPort](ctx, c, contract.OpPortPublish, req)
}

func (c *Client) PortUnpublish(ctx context.Context, id string, guestPort int) error {
	return c.call(ctx, contract.OpPortUnpublish, unpublishArgs{id, guestPort}, nil)
}

// SecretBackend.

func (c *Client) SecretSet(ctx context.Context, id, name string, src contract.SecretSource) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpSecretSet, secretSetArgs{id, name, src})
}

func (c *Client) SecretDelete(ctx context.Context, id, name string) (contract.Workspace, error) {
	return do[contract.Workspace](ctx, c, contract.OpSecretDelete, nameArgs{id, name})
}

// Forker.

func (c *Client) Fork(ctx context.Context, req contract.ForkRequest) (contract.ForkResult, error) {
	return do[contract.ForkResult](ctx, c, contract.OpFork, req)
}
