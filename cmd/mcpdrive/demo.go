package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// demoOptions configures runDemo.
type demoOptions struct {
	Pyro    string
	Timeout time.Duration
	Out     io.Writer
	Log     io.Writer
}

// demoMemMiB is the demo workspace's memory: plenty for python3.
const demoMemMiB = 384

// runDemo tells the repro-fix story through a real MCP session with
// `pyro mcp serve`: a test fails, the agent reads the code, patches it,
// sees the test pass, reviews the diff, exports the fix, deletes the
// workspace. It prints a transcript and returns an error if any step did
// not go as the story says.
func runDemo(parent context.Context, o demoOptions) (err error) {
	start := time.Now()
	root, err := os.MkdirTemp("", "mcpdrive-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	allowed := filepath.Join(root, "allowed")
	seed := filepath.Join(allowed, "cart")
	if err := writeTree(seed, cartProject()); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(allowed, "out"), 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	logFile := filepath.Join(root, "pyro.log")
	cfg := serverConfig{Pyro: o.Pyro, StateDir: filepath.Join(root, "state"), AllowHost: []string{allowed}, LogFile: logFile, Dir: root}
	s, err := startServer(ctx, cfg)
	if err != nil {
		return err
	}
	var id string
	defer func() {
		if id != "" { // not deleted by the story: delete it now
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(parent), 3*time.Minute)
			_, _ = call[deleteResult](cctx, s, "workspace_delete", idArgs{ID: id})
			ccancel()
		}
		_ = s.Close()
		if err != nil {
			showLog(o.Log, "demo", logFile, 30)
		}
	}()
	name, version, protocol := s.serverInfo()
	t := &transcript{w: o.Out}
	fmt.Fprintf(o.Out, "mcpdrive demo: a repro-fix loop, driven like a chat host drives it: MCP over stdio\n")
	fmt.Fprintf(o.Out, "server: %s %s (%s %s), protocol %s\n", name, version, o.Pyro, strings.Join(cfg.args()[:2], " "), protocol)

	// 1. A workspace seeded with the project.
	t.step("workspace_create", arg{"env", smokeEnv}, arg{"seed", seed}, arg{"mem_mib", fmt.Sprint(demoMemMiB)})
	c0 := time.Now()
	cw, err := call[workspaceResult](ctx, s, "workspace_create", createArgs{Env: smokeEnv, Seed: &seedArg{Kind: "dir", Path: seed},
		MemMiB: demoMemMiB, TTLSeconds: smokeTTL, Labels: map[string]string{"demo": "repro-fix"}})
	if err != nil {
		return err
	}
	id = cw.Workspace.ID
	boot := time.Since(c0)
	seeded := ""
	if sd := cw.Workspace.Seed; sd != nil {
		seeded = fmt.Sprintf(", /workspace seeded with %s (%s)", plural(sd.Files, "file"), humanBytes(sd.Bytes))
	}
	t.result(boot, "workspace %s %s, %s, %d MiB%s", id, cw.Workspace.State, cw.Workspace.Env, cw.Workspace.MemMiB, seeded)
	if cw.Workspace.State != "running" {
		return fmt.Errorf("the workspace is %q, want running", cw.Workspace.State)
	}

	// 2. The test fails.
	runTests := func() (execResult, error) {
		t.step("workspace_exec", arg{"", cartTest})
		c := time.Now()
		r, err := call[execResult](ctx, s, "workspace_exec", execArgs{ID: id, Command: cartTest, TimeoutSeconds: 120})
		if err != nil {
			return r, err
		}
		t.result(time.Since(c), "%s", exitLine(r))
		return r, nil
	}
	r, err := runTests()
	if err != nil {
		return err
	}
	t.block(output(r), 16, true)
	if r.ExitCode == 0 {
		return fmt.Errorf("the test passed before the fix")
	}

	// 3. Read the code.
	t.step("file_read", arg{"path", "cart.py"})
	c := time.Now()
	fr, err := call[fileReadResult](ctx, s, "file_read", pathArgs{ID: id, Path: "cart.py"})
	if err != nil {
		return err
	}
	whole := ""
	if fr.EOF && fr.Size == int64(len(fr.Content)) {
		whole = ", the whole file"
	}
	t.result(time.Since(c), "%s, %s%s", plural(strings.Count(fr.Content, "\n"), "line"), humanBytes(fr.Size), whole)
	t.block(numbered(fr.Content), 12, false)

	// 4. Patch it.
	t.step("patch_apply", arg{"patch", "cart.py: divide the percentage by 100"})
	t.block(cartFix, 0, false)
	c = time.Now()
	p, err := call[patchResult](ctx, s, "patch_apply", patchArgs{ID: id, Patch: cartFix})
	if err != nil {
		return err
	}
	var files []string
	for _, f := range p.Files {
		files = append(files, fmt.Sprintf("%s %s +%d -%d", f.Path, f.Op, f.Additions, f.Deletions))
	}
	verb := "applied"
	if !p.Applied {
		verb = "NOT applied"
	}
	t.result(time.Since(c), "%s: %s", verb, strings.Join(files, ", "))
	if !p.Applied {
		return fmt.Errorf("the patch did not apply: %+v", p.Files)
	}

	// 5. The test passes.
	if r, err = runTests(); err != nil {
		return err
	}
	t.block(output(r), 8, true)
	if r.ExitCode != 0 {
		return fmt.Errorf("the test still fails after the fix")
	}

	// 6. Review the change.
	t.step("workspace_diff")
	c = time.Now()
	d, err := call[diffResult](ctx, s, "workspace_diff", pathArgs{ID: id})
	if err != nil {
		return err
	}
	t.result(time.Since(c), "%s changed, +%d -%d", plural(d.Stats.Files, "file"), d.Stats.Additions, d.Stats.Deletions)
	t.block(d.Patch, 16, false)
	if d.Stats.Files != 1 {
		return fmt.Errorf("the diff shows %d files, want 1", d.Stats.Files)
	}

	// 7. Take the fix home.
	host := filepath.Join(allowed, "out", "cart.py")
	t.step("workspace_export", arg{"guest_path", "/workspace/cart.py"}, arg{"host_path", host})
	c = time.Now()
	e, err := call[exportResult](ctx, s, "workspace_export", exportArgs{ID: id, GuestPath: "/workspace/cart.py", HostPath: host})
	if err != nil {
		return err
	}
	got, err := os.ReadFile(host)
	if err != nil {
		return err
	}
	verdict := "the host file has the fix"
	if string(got) != cartFixedPy {
		verdict = "the host file is NOT the fixed one"
	}
	t.result(time.Since(c), "%s, %s as a %s; %s", plural(e.Files, "file"), humanBytes(e.Bytes), e.Format, verdict)
	if string(got) != cartFixedPy {
		return fmt.Errorf("the exported file is not the fixed one")
	}

	// 8. Done with the workspace.
	t.step("workspace_delete", arg{"id", id})
	c = time.Now()
	del, err := call[deleteResult](ctx, s, "workspace_delete", idArgs{ID: id})
	if err != nil {
		return err
	}
	id = ""
	t.result(time.Since(c), "deleted %s with its disk", del.Deleted)

	fmt.Fprintf(o.Out, "\ndemo ok: the test failed, one patch fixed it, the test passed, the fix reached the host; %d tool calls in %s (the boot took %s)\n",
		t.steps, seconds(time.Since(start)), seconds(boot))
	return nil
}
