package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/mcptest"
)

// The pyro workspace tests drive the commands in-process against the
// contract's fake backend (mcp/mcptest), through openWorkspaceBackend.

// fakeWorkspaces makes pyro workspace use b (wrapped by wrap, when
// given) for the rest of the test, and returns b with one running
// workspace, ws-1 named dev, labelled task=fix, seeded with README.md.
func fakeWorkspaces(t *testing.T, wrap func(*mcptest.Backend) contract.Backend) *mcptest.Backend {
	t.Helper()
	b := mcptest.New()
	if _, err := b.Create(context.Background(), contract.CreateRequest{Name: "dev", Labels: map[string]string{"task": "fix"},
		TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedDir, Path: "/src"}}); err != nil {
		t.Fatal(err)
	}
	var backend contract.Backend = b
	if wrap != nil {
		backend = wrap(b)
	}
	old, oldIn, oldNow := openWorkspaceBackend, wsStdin, wsNow
	openWorkspaceBackend = func(context.Context, io.Writer) (contract.Backend, func(), error) {
		return backend, func() {}, nil
	}
	wsNow = func() time.Time { return time.Date(2026, 1, 2, 3, 10, 0, 0, time.UTC) }
	t.Cleanup(func() { openWorkspaceBackend, wsStdin, wsNow = old, oldIn, oldNow })
	return b
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runWS runs pyro workspace args in-process with stdin.
func runWS(stdin string, args ...string) pyroResult {
	wsStdin = strings.NewReader(stdin)
	var out, errb syncBuffer
	code := workspaceMain(args, &out, &errb)
	return pyroResult{code, out.String(), errb.String()}
}

// foregroundOnly hides the fake's optional interfaces: a backend with
// plain Exec only.
type foregroundOnly struct{ contract.Backend }

func TestWorkspaceCommands(t *testing.T) {
	dir := t.TempDir()
	seedDir := filepath.Join(dir, "src")
	os.Mkdir(seedDir, 0o755)
	patchOK := "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n seeded\n+fixed\n"
	patchBad := "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-MISMATCH\n+x\n"
	for _, tc := range []struct {
		name  string
		setup func(b *mcptest.Backend)
		wrap  func(b *mcptest.Backend) contract.Backend
		args  []string
		stdin string
		code  int
		out   []string // in stdout
		err   []string // in stderr
		calls []string // backend calls made, in order (a subsequence)
		json  []string // with --json added: valid JSON holding these
	}{
		{name: "create", args: []string{"create", "--name", "new", "--label", "a=b", "--seed", seedDir, "--network", "PyPI.org:443", "--ttl", "1h", "--mem-mib", "2G"},
			out:  []string{"created ws-2 (new)", "2048 MiB memory", "a=b", "dir " + seedDir, "pypi.org:443", "pyro workspace exec new -- COMMAND"},
			json: []string{`"ID": "ws-2"`, `"TTLSeconds": 3600`, `"Grant": "pypi.org:443"`}},
		{name: "create id-only", args: []string{"create", "--id-only"}, out: []string{"ws-2\n"}},
		{name: "create git seed", args: []string{"create", "--seed-kind", "git"}, out: []string{"git " + mustAbs(t, ".")}},
		{name: "create bad ttl", args: []string{"create", "--ttl", "5s"}, code: exitUsage, err: []string{"--ttl must be between 1m0s"}},
		{name: "create bad grant", args: []string{"create", "--network", "nonsense"}, code: exitUsage, err: []string{"Grants are"}},
		{name: "create bad name", args: []string{"create", "--name", "-x"}, code: exitUsage, err: []string{"--name \"-x\" may only use"}},
		{name: "create exists", args: []string{"create", "--name", "dev"}, code: exitFailure,
			err: []string{`workspace "dev" already exists`, "Pick another name, or use that workspace (pyro workspace list)"}},
		{name: "create env missing", args: []string{"create", "--env", "debian-12-build"}, code: exitFailure,
			err: []string{"not built", "pyro env build debian-12-build"}},
		{name: "list", args: []string{"list"}, out: []string{"ID", "ws-1", "dev", "running", "debian-12", "task=fix", "5m ago", "in 4m"},
			json: []string{`"Name": "dev"`}},
		{name: "list id-only", args: []string{"list", "--id-only"}, out: []string{"ws-1\n"}},
		{name: "list filtered out", args: []string{"list", "--label", "task=other"}, out: []string{"No workspace matches (1 in all)"}},
		{name: "list by state", args: []string{"list", "--state", "stopped", "--json"}, out: []string{"[]"}},
		{name: "status by name", args: []string{"status", "dev"}, out: []string{"ws-1 (dev)  running", "seed", "dir /src: 1 files", "stops in 4m if idle (idle TTL 10m0s)"},
			calls: []string{"Status", "List", "Status"}, json: []string{`"State": "running"`}},
		{name: "status not found", args: []string{"status", "nosuch"}, code: exitFailure,
			err: []string{`workspace "nosuch" not found`, "pyro workspace list shows the workspaces", "Workspaces: ws-1 (dev, running)"}},
		{name: "status stopped", setup: func(b *mcptest.Backend) { b.SetState("ws-1", contract.StateStopped) }, args: []string{"status", "ws-1"},
			out: []string{"stopped", "pyro workspace start dev boots it"}},
		{name: "status missing id", args: []string{"status"}, code: exitUsage, err: []string{"missing arguments", "Usage: pyro workspace status ID"}},
		{name: "update", args: []string{"update", "dev", "--label", "x=y", "--remove-label", "task"}, out: []string{"updated ws-1 (dev): labels x=y"},
			json: []string{`"x": "y"`}},
		{name: "update nothing", args: []string{"update", "dev"}, code: exitUsage, err: []string{"nothing to update"}},
		{name: "stop and go on", args: []string{"stop", "dev", "nosuch"}, code: exitFailure, out: []string{"ws-1 (dev) stopped"}, err: []string{`"nosuch" not found`}},
		{name: "start", setup: func(b *mcptest.Backend) { b.SetState("ws-1", contract.StateStopped) }, args: []string{"start", "dev"},
			out: []string{"ws-1 (dev) running"}, json: []string{`"State": "running"`}},
		{name: "delete", args: []string{"delete", "dev"}, out: []string{"deleted ws-1"}, calls: []string{"Delete", "List", "Delete"}, json: []string{`"Deleted": "ws-1"`}},
		{name: "summary", setup: func(b *mcptest.Backend) { b.SetFile("ws-1", "new.txt", []byte("a\nb\n")) }, args: []string{"summary", "dev"},
			out: []string{"ws-1 (dev)  running, created", "Commands: 0", "Changes: 1 files, +2 -0", "added  new.txt  +2 -0"}, json: []string{`"Stats"`}},
		{name: "logs", args: []string{"logs", "dev"}, out: []string{"SEQ", "lifecycle", "create"}, json: []string{`"Kind": "lifecycle"`}},
		{name: "env list", args: []string{"env", "list"}, out: []string{"debian-12 (default)", "no: pyro env build debian-12-build"}, json: []string{`"Default": true`}},

		{name: "exec foreground", wrap: func(b *mcptest.Backend) contract.Backend { return foregroundOnly{b} },
			args: []string{"exec", "dev", "--", "echo", "hi"}, out: []string{"ran: echo hi\n"}, json: []string{`"Stdout": "ran: echo hi\n"`}},
		{name: "exec foreground exit code", wrap: func(b *mcptest.Backend) contract.Backend {
			b.ExecFunc = func(contract.ExecRequest) (contract.ExecResult, error) {
				return contract.ExecResult{ExitCode: 3, Stderr: []byte("bad\n"), Network: "the network refused pypi.org:443; {{network.grant}} pypi.org:443 allows it"}, nil
			}
			return foregroundOnly{b}
		}, args: []string{"exec", "dev", "--command", "make"}, code: 3, err: []string{"bad\n", "pyro workspace network grant pypi.org:443 allows it"}},
		{name: "exec no command", args: []string{"exec", "dev"}, code: exitUsage, err: []string{"no command"}},
		{name: "exec both", args: []string{"exec", "dev", "-c", "ls", "--", "ls"}, code: exitUsage, err: []string{"not both"}},
		{name: "exec flag of the command", args: []string{"exec", "dev", "ls", "-la"}, code: exitUsage, err: []string{"go after --"}},
		{name: "exec stopped", setup: func(b *mcptest.Backend) { b.SetState("ws-1", contract.StateStopped) }, args: []string{"exec", "dev", "--", "ls"},
			code: exitExecUnable, err: []string{`workspace "ws-1" is stopped`, "Start it with pyro workspace start ID"}},
		{name: "exec background", args: []string{"exec", "dev", "--background", "--", "make"}, out: []string{"started seq 2 in ws-1", "exec-status dev 2 --follow"},
			json: []string{`"State": "running"`}},
		{name: "exec-status list", args: []string{"exec-status", "dev"}, out: []string{"No background commands"}, json: []string{"[]"}},
		{name: "exec-status seq", setup: func(b *mcptest.Backend) {
			b.ExecStart(context.Background(), contract.ExecRequest{ID: "ws-1", Command: "make", TimeoutSeconds: 60})
			b.BackgroundOutput("ws-1", 2, "built\n", "warning\n")
		}, args: []string{"exec-status", "dev", "2"}, out: []string{"built\n"}, err: []string{"seq 2 in ws-1: running", "warning\n", "--stdout-offset 6"},
			json: []string{`"Stdout": "built\n"`, `"StdoutNext": 6`}},
		{name: "exec-status kill", setup: func(b *mcptest.Backend) {
			b.ExecStart(context.Background(), contract.ExecRequest{ID: "ws-1", Command: "make", TimeoutSeconds: 60})
		}, args: []string{"exec-status", "dev", "--seq", "2", "--kill"}, err: []string{"killed: killed on request (exec_status kill)"}},
		{name: "exec-status unknown", args: []string{"exec-status", "dev", "9"}, code: exitFailure, err: []string{"not found"}},

		{name: "file list", args: []string{"file", "list", "dev"}, out: []string{"-rw-r--r--", "/workspace/README.md"}, json: []string{`"Path": "/workspace/README.md"`}},
		{name: "file list missing", args: []string{"file", "list", "dev", "nope"}, code: exitFailure,
			err: []string{"not found", "pyro workspace file list ID DIR shows what is there"}},
		{name: "file read", args: []string{"file", "read", "dev", "README.md"}, out: []string{"seeded from /src\n"}, json: []string{`"Content": "seeded from /src\n"`, `"EOF": true`}},
		{name: "file read part", args: []string{"file", "read", "dev", "README.md", "--offset", "7", "--max-bytes", "4"}, out: []string{"from"}},
		{name: "file write stdin", args: []string{"file", "write", "dev", "x.txt", "--text-file", "-"}, stdin: "hello",
			out: []string{"created /workspace/x.txt (5 bytes)"}, json: []string{`"Created": true`}},
		{name: "file write text", args: []string{"file", "write", "dev", "README.md", "--text", "hi", "--mode", "0600"}, out: []string{"replaced /workspace/README.md (2 bytes)"}},
		{name: "file write no content", args: []string{"file", "write", "dev", "x"}, code: exitUsage, err: []string{"--text-file FILE"}},
		{name: "file write bad mode", args: []string{"file", "write", "dev", "x", "--text", "a", "--mode", "9"}, code: exitUsage, err: []string{"octal"}},
		{name: "patch apply", args: []string{"patch", "apply", "dev", "--patch-file", "-"}, stdin: patchOK,
			out: []string{"ok", "modify", "README.md", "+1 -0", "applied: 1 files"}, json: []string{`"Applied": true`}},
		{name: "patch not applied", args: []string{"patch", "apply", "dev", "--patch-file", "-"}, stdin: patchBad, code: exitFailure,
			out: []string{"FAILED", "hunk 1 does not match", "not applied: nothing was written"}},
		{name: "patch none", args: []string{"patch", "apply", "dev"}, code: exitUsage, err: []string{"--patch-file FILE"}},
		{name: "diff", setup: func(b *mcptest.Backend) { b.SetFile("ws-1", "new.txt", []byte("one\n")) }, args: []string{"diff", "dev"},
			out: []string{"+++ b/new.txt\n+one\n"}, json: []string{`"PatchPath"`}},
		{name: "diff stat", setup: func(b *mcptest.Backend) { b.SetFile("ws-1", "new.txt", []byte("one\n")) }, args: []string{"diff", "dev", "--stat"},
			out: []string{"added  new.txt  +1 -0", "1 files changed, +1 -0"}},
		{name: "diff names", setup: func(b *mcptest.Backend) { b.SetFile("ws-1", "new.txt", []byte("one\n")) }, args: []string{"diff", "dev", "--name-only"},
			out: []string{"new.txt\n"}},
		{name: "diff color", setup: func(b *mcptest.Backend) { b.SetFile("ws-1", "new.txt", []byte("one\x1b[2J\n")) }, args: []string{"diff", "dev", "--color", "always"},
			out: []string{"\x1b[32m+one?[2J\x1b[0m"}},
		{name: "diff none", args: []string{"diff", "dev"}, err: []string{"No changes since the baseline."}, json: []string{`"Files": []`}},
		{name: "export", args: []string{"export", "dev", "out.tar"}, out: []string{"exported /workspace to " + mustAbs(t, "out.tar") + " (tar"},
			json: []string{`"Format": "tar"`}},
		{name: "export guest path", args: []string{"export", "dev", "/workspace/dist", dir, "--format", "tree"}, out: []string{"exported /workspace/dist to " + dir}},
		{name: "export exists", setup: func(b *mcptest.Backend) {
			b.Export(context.Background(), contract.ExportRequest{ID: "ws-1", GuestPath: "/workspace", HostPath: dir, Format: contract.ExportTree})
		}, args: []string{"export", "dev", dir}, code: exitFailure, err: []string{"already exists", "Pass --overwrite"}},
		{name: "sync push", args: []string{"sync", "push", "dev", "data", "/workspace/in"}, out: []string{"pushed " + mustAbs(t, "data") + " to /workspace/in (1 files", "skipped dev/null: device file"},
			json: []string{`"GuestDest": "/workspace/in"`}},
		{name: "snapshot create", args: []string{"snapshot", "create", "dev", "s1"}, out: []string{"snapshot s1 of dev taken"}, json: []string{`"Name": "s1"`}},
		{name: "snapshot list", setup: func(b *mcptest.Backend) {
			b.SnapshotCreate(context.Background(), contract.SnapshotRequest{ID: "ws-1", Name: "s1"})
		}, args: []string{"snapshot", "list", "dev"},
			out: []string{"NAME", "s1"}, json: []string{`"Name": "s1"`}},
		{name: "snapshot delete", setup: func(b *mcptest.Backend) {
			b.SnapshotCreate(context.Background(), contract.SnapshotRequest{ID: "ws-1", Name: "s1"})
		}, args: []string{"snapshot", "delete", "dev", "s1"},
			out: []string{"deleted snapshot s1 of ws-1"}, json: []string{`"Deleted": "s1"`}},
		{name: "snapshot delete missing", args: []string{"snapshot", "delete", "dev", "s9"}, code: exitFailure, err: []string{"pyro workspace snapshot list ID shows"}},
		{name: "reset to snapshot", setup: func(b *mcptest.Backend) {
			b.SnapshotCreate(context.Background(), contract.SnapshotRequest{ID: "ws-1", Name: "s1"})
		}, args: []string{"reset", "dev", "s1"},
			out: []string{"reset ws-1 (dev) to snapshot s1 in 80ms: running"}, json: []string{`"Snapshot": "s1"`}},
		{name: "reset baseline", args: []string{"reset", "dev"}, out: []string{"to the baseline"}},
		{name: "fork", args: []string{"fork", "dev", "--name", "try-a", "--name", "try-b", "--label", "try=x"},
			out: []string{"forked ws-1 (dev) into 2 workspaces in 80ms, resumed from memory, processes as they were:\n", "  ws-2  try-a  running\n",
				"  ws-3  try-b  running\n", "pyro workspace exec try-a -- COMMAND"},
			calls: []string{"Fork", "List", "Fork"}, json: []string{`"Source": "ws-1"`, `"Memory": true`, `"Name": "try-b"`, `"try": "x"`, `"task": "fix"`}},
		{name: "fork id-only", args: []string{"fork", "ws-1", "--count", "3", "--id-only"}, out: []string{"ws-2\nws-3\nws-4\n"}},
		{name: "fork a snapshot", setup: func(b *mcptest.Backend) {
			b.SnapshotCreate(context.Background(), contract.SnapshotRequest{ID: "ws-1", Name: "s1"})
		}, args: []string{"fork", "ws-1", "--snapshot", "s1"},
			out:  []string{"forked ws-1 at snapshot s1 into 1 workspace in 40ms", "booted from the disk:", "  ws-2  -  running", "note: snapshot s1 holds the disk only"},
			json: []string{`"Snapshot": "s1"`, `"Memory": false`}},
		{name: "fork too many", args: []string{"fork", "dev", "--count", "9"}, code: exitUsage, err: []string{"count must be between 1 and 8 (got 9)"}},
		{name: "fork names short", args: []string{"fork", "dev", "--count", "3", "--name", "a"}, code: exitUsage, err: []string{"1 names given for 3 forks"}},
		{name: "fork name twice", args: []string{"fork", "dev", "--name", "a", "--name", "a"}, code: exitUsage, err: []string{`"a" repeats`}},
		{name: "fork bad name", args: []string{"fork", "dev", "--name", "-a"}, code: exitUsage, err: []string{`--name "-a" may only use`}},
		{name: "fork name taken", args: []string{"fork", "dev", "--name", "dev"}, code: exitFailure,
			err: []string{`workspace "dev" already exists`, "Pick another name"}},
		{name: "fork unknown snapshot", args: []string{"fork", "dev", "--snapshot", "s9"}, code: exitFailure, err: []string{"pyro workspace snapshot list ID shows"}},
		{name: "fork stopped", setup: func(b *mcptest.Backend) { b.SetState("ws-1", contract.StateStopped) }, args: []string{"fork", "dev"},
			code: exitFailure, err: []string{"is stopped", "pyro workspace start"}},
		{name: "fork id-only and json", args: []string{"fork", "dev", "--id-only", "--json"}, code: exitUsage, err: []string{"exclude each other"}},
		{name: "fork unsupported", wrap: func(b *mcptest.Backend) contract.Backend { return foregroundOnly{b} }, args: []string{"fork", "dev"},
			code: exitFailure, err: []string{"this backend does not fork workspaces"}},

		{name: "network grant", args: []string{"network", "grant", "dev", "pypi.org:443", "host.pyro.internal:5432"},
			out: []string{"granted pypi.org:443, host.pyro.internal:5432 to ws-1", "GRANT", "pypi.org:443"}, json: []string{`"Live": true`}},
		{name: "network revoke", setup: func(b *mcptest.Backend) { b.NetworkGrant(context.Background(), "ws-1", []string{"pypi.org:443"}) },
			args: []string{"network", "revoke", "dev", "pypi.org:443"}, out: []string{"revoked pypi.org:443 from ws-1", "No grants"}, json: []string{`"Revoked"`}},
		{name: "network status", setup: func(b *mcptest.Backend) {
			b.AddDenial("ws-1", contract.Denial{Protocol: "tcp", Addr: "151.101.0.223", Port: 443, Name: "pypi.org", Reason: "no grant", Fix: "pypi.org:443", Count: 2})
		}, args: []string{"network", "status", "dev"}, out: []string{"No grants", "Refused (1 since boot", "pypi.org (151.101.0.223:443)", "no grant", "pypi.org:443"},
			json: []string{`"Fix": "pypi.org:443"`}},
		{name: "network grant none", args: []string{"network", "grant", "dev"}, code: exitUsage, err: []string{"missing arguments"}},
		{name: "port publish", args: []string{"port", "publish", "dev", "8000"}, out: []string{"guest port 8000 -> 127.0.0.1:48000"}, json: []string{`"HostPort": 48000`}},
		{name: "port publish bad", args: []string{"port", "publish", "dev", "http"}, code: exitUsage, err: []string{"must be a port"}},
		{name: "port unpublish", setup: func(b *mcptest.Backend) {
			b.PortPublish(context.Background(), contract.PublishRequest{ID: "ws-1", GuestPort: 8000})
		}, args: []string{"port", "unpublish", "dev", "8000"}, out: []string{"unpublished guest port 8000 of ws-1"}, json: []string{`"Unpublished": 8000`}},
		{name: "secret set", args: []string{"secret", "set", "dev", "npm", "--value-stdin"}, stdin: "s3cret-token\n",
			out: []string{"secret npm set in ws-1", "--secret-env VAR=npm"}, json: []string{`"Name": "npm"`, `"Source": "value"`}},
		{name: "secret set two ways", args: []string{"secret", "set", "dev", "npm", "--value", "x", "--file", "f"}, code: exitUsage, err: []string{"one way"}},
		{name: "secret delete", setup: func(b *mcptest.Backend) {
			b.SecretSet(context.Background(), "ws-1", "npm", contract.SecretSource{Value: "s3cret-token"})
		}, args: []string{"secret", "delete", "dev", "npm"}, out: []string{"secret npm deleted from ws-1"}},

		{name: "service start", args: []string{"service", "start", "dev", "web", "--ready-tcp", "8000", "--", "python3", "-m", "http.server"},
			out: []string{"web ready pid", "python3 -m http.server", "service logs dev web --follow"}, json: []string{`"State": "ready"`}},
		{name: "service start fails", args: []string{"service", "start", "dev", "web", "--command", "crash now"}, code: exitFailure,
			out: []string{"web failed exit 3", "exited_before_ready", "--- last lines of stderr ---\nboom\n"}},
		{name: "service start two checks", args: []string{"service", "start", "dev", "web", "--ready-tcp", "1", "--ready-file", "x", "--", "a"}, code: exitUsage,
			err: []string{"one readiness check"}},
		{name: "service start bad name", args: []string{"service", "start", "dev", "Web", "--", "a"}, code: exitUsage, err: []string{"lower-case"}},
		{name: "service status all", setup: startWeb, args: []string{"service", "status", "dev"}, out: []string{"NAME", "web", "ready"}, json: []string{`"Name": "web"`}},
		{name: "service status one", setup: startWeb, args: []string{"service", "status", "dev", "web"}, out: []string{"web ready pid", "started"}},
		{name: "service logs", setup: func(b *mcptest.Backend) {
			startWeb(b)
			b.AppendServiceLog("ws-1", "web", []byte("GET /\n"), []byte("warn\n"))
		}, args: []string{"service", "logs", "dev", "web"}, out: []string{"started web\nGET /\n"}, err: []string{"warn\n"}, json: []string{`"Data": "started web\nGET /\n"`}},
		{name: "service stop", setup: startWeb, args: []string{"service", "stop", "dev", "web", "--grace", "2s"}, out: []string{"web stopped", "stopped (SIGTERM, grace 2s)"}},
		{name: "service restart", setup: startWeb, args: []string{"service", "restart", "dev", "web"}, out: []string{"web ready"}},
		{name: "service missing", args: []string{"service", "status", "dev", "db"}, code: exitFailure, err: []string{`no service named "db"`}},

		{name: "shell without a terminal", args: []string{"shell", "dev"}, code: exitFailure, err: []string{"not a terminal", "pyro workspace exec dev -- COMMAND"}},
		{name: "unknown command", args: []string{"frob"}, code: exitUsage, err: []string{`unknown command "frob"`}},
		{name: "group without verb", args: []string{"snapshot"}, code: exitUsage, err: []string{"create, list, delete"}},
		{name: "bad flag", args: []string{"list", "--nope"}, code: exitUsage, err: []string{"unknown flag: --nope", "pyro workspace list --help"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				if asJSON && tc.json == nil {
					continue
				}
				b := fakeWorkspaces(t, tc.wrap)
				if tc.setup != nil {
					tc.setup(b)
				}
				before := len(b.Calls())
				args := tc.args
				if asJSON {
					args = append(slices.Clone(args), "--json")
					if i := slices.Index(args, "--"); i >= 0 {
						args = slices.Insert(slices.Clone(tc.args), i, "--json")
					}
				}
				r := runWS(tc.stdin, args...)
				if r.code != tc.code {
					t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, tc.code, r.stdout, r.stderr)
				}
				if asJSON {
					if !json.Valid([]byte(r.stdout)) && !validJSONStream(r.stdout) {
						t.Fatalf("%v: not JSON:\n%s", args, r.stdout)
					}
					for _, s := range tc.json {
						if !strings.Contains(r.stdout, s) {
							t.Errorf("%v: JSON lacks %q:\n%s", args, s, r.stdout)
						}
					}
					continue
				}
				for _, s := range tc.out {
					if !strings.Contains(r.stdout, s) {
						t.Errorf("%v: stdout lacks %q:\n%s\nstderr: %s", args, s, r.stdout, r.stderr)
					}
				}
				for _, s := range tc.err {
					if !strings.Contains(r.stderr, s) {
						t.Errorf("%v: stderr lacks %q:\n%s", args, s, r.stderr)
					}
				}
				if tc.calls != nil && !isSubsequence(tc.calls, b.Calls()[before:]) {
					t.Errorf("%v: calls %v, want %v in order", args, b.Calls()[before:], tc.calls)
				}
			}
		})
	}
}

func startWeb(b *mcptest.Backend) {
	b.ServiceStart(context.Background(), contract.ServiceStartRequest{ID: "ws-1", Name: "web", Command: "serve", Wait: time.Second})
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// validJSONStream reports whether s is a sequence of JSON values.
func validJSONStream(s string) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	n := 0
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			return n > 0
		} else if err != nil {
			return false
		}
		n++
	}
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestWorkspaceWrites checks what the writing commands leave in the
// backend, not only what they print.
func TestWorkspaceWrites(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	ctx := context.Background()
	if r := runWS("line 1\nline 2\n", "file", "write", "dev", "notes/a.txt", "--text-file", "-"); r.code != 0 {
		t.Fatal(r)
	}
	fc, err := b.ReadFile(ctx, contract.ReadFileRequest{ID: "ws-1", Path: "notes/a.txt", MaxBytes: 100})
	if err != nil || string(fc.Content) != "line 1\nline 2\n" {
		t.Errorf("written file: %q, %v", fc.Content, err)
	}
	host := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(host, []byte("from host\n"), 0o644)
	if r := runWS("", "file", "write", "dev", "/etc/x", "--text-file", host); r.code != 0 {
		t.Fatal(r)
	}
	if fc, _ := b.ReadFile(ctx, contract.ReadFileRequest{ID: "ws-1", Path: "/etc/x", MaxBytes: 100}); string(fc.Content) != "from host\n" {
		t.Errorf("written from a host file: %q", fc.Content)
	}
	if r := runWS("", "update", "dev", "--name", "prod"); r.code != 0 {
		t.Fatal(r)
	}
	if r := runWS("", "update", "prod", "--clear-name"); r.code != 0 {
		t.Fatal(r)
	}
	w, _ := b.Status(ctx, "ws-1")
	if w.Name != "" {
		t.Errorf("name after --clear-name: %q", w.Name)
	}
	if r := runWS("tok3n-value-123\n", "secret", "set", "ws-1", "npm", "--value-stdin"); r.code != 0 {
		t.Fatal(r)
	}
	if w, _ := b.Status(ctx, "ws-1"); len(w.Secrets) != 1 || w.Secrets[0].Name != "npm" {
		t.Errorf("secrets: %+v", w.Secrets)
	}
	// A fork is a workspace of its own: what it writes stays in it.
	r := runWS("", "fork", "ws-1", "--name", "twin", "--id-only")
	twin := strings.TrimSpace(r.stdout)
	if r.code != 0 || twin == "" {
		t.Fatal(r)
	}
	if r := runWS("mine\n", "file", "write", "twin", "notes/a.txt", "--text-file", "-"); r.code != 0 {
		t.Fatal(r)
	}
	if fc, _ := b.ReadFile(ctx, contract.ReadFileRequest{ID: "ws-1", Path: "notes/a.txt", MaxBytes: 100}); string(fc.Content) != "line 1\nline 2\n" {
		t.Errorf("the fork's write reached its source: %q", fc.Content)
	}
	if fc, _ := b.ReadFile(ctx, contract.ReadFileRequest{ID: twin, Path: "notes/a.txt", MaxBytes: 100}); string(fc.Content) != "mine\n" {
		t.Errorf("the fork's own file: %q", fc.Content)
	}
	b.Delete(ctx, twin)
	// Several ids: each stopped, one JSON value each.
	b.Create(ctx, contract.CreateRequest{TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone}})
	r = runWS("", "stop", "ws-1", "ws-3", "--json")
	if r.code != 0 || !validJSONStream(r.stdout) || strings.Count(r.stdout, `"State": "stopped"`) != 2 {
		t.Errorf("stop two: %+v", r)
	}
}

// TestWorkspaceErrorWording checks that a backend's markers reach the
// terminal as this face's commands and flags.
func TestWorkspaceErrorWording(t *testing.T) {
	b := fakeWorkspaces(t, nil)
	b.SetError("Stop", contract.Conflict("{{reset}} is running").WithHint("wait, then {{status}}; or ask for less memory ({{-mem_mib}}) with {{create}}"))
	r := runWS("", "stop", "dev")
	if r.code != exitFailure || !strings.Contains(r.stderr, "pyro workspace stop: pyro workspace reset is running\n") ||
		!strings.Contains(r.stderr, "wait, then pyro workspace status; or ask for less memory (--mem-mib) with pyro workspace create") {
		t.Errorf("worded error: %+v", r)
	}
	b.SetError("Stop", contract.Internal("saving the record", io.ErrShortWrite))
	if r := runWS("", "stop", "dev"); !strings.Contains(r.stderr, "saving the record: short write") || !strings.Contains(r.stderr, "This is a pyro failure") {
		t.Errorf("internal error: %+v", r)
	}
}

func TestWorkspaceHelp(t *testing.T) {
	fakeWorkspaces(t, nil)
	r := runWS("")
	if r.code != exitUsage {
		t.Errorf("no arguments: %+v", r)
	}
	for _, c := range wsCommands {
		if !strings.Contains(r.stderr, "  "+c.name+" ") {
			t.Errorf("pyro workspace does not list %q", c.name)
		}
		h := runWS("", append(strings.Fields(c.name), "--help")...)
		if h.code != exitOK || !strings.HasPrefix(h.stdout, "Usage: pyro workspace "+c.name) || !strings.Contains(h.stdout, "Examples:\n") ||
			!strings.Contains(h.stdout[strings.Index(h.stdout, "Examples:"):], "pyro workspace "+c.name) {
			t.Errorf("%s --help: %+v", c.name, h)
		}
		if !c.noJSON && !strings.Contains(h.stdout, "--json") {
			t.Errorf("%s --help lists no --json", c.name)
		}
		if h2 := runWS("", append([]string{"help"}, strings.Fields(c.name)...)...); h2.code != exitOK || h2.stdout != h.stdout {
			t.Errorf("help %s differs from %s --help:\n%s\n---\n%s", c.name, c.name, h2.stdout, h.stdout)
		}
	}
	// pyro itself lists the command.
	if r := runPyro(t, "--help"); !strings.Contains(r.stdout, "workspace") {
		t.Errorf("pyro --help: %s", r.stdout)
	}
}
