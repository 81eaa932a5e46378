package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// The smoke pack: one scenario per recipe of the product (cold start,
// repro-fix, parallel workspaces, untrusted code, review/evaluation), each
// driven through a fresh `pyro mcp serve` over stdio, as a chat host
// drives it, asserting on the results' structured fields.

// scenario is one recipe.
type scenario struct {
	name    string
	profile string // --profile; "" for pyro's default (workspace-core)
	tools   []string
	run     func(ctx context.Context, r *run) error
}

// scenarios lists the pack in the order it runs.
func scenarios() []scenario {
	return []scenario{
		{name: "cold-start", run: coldStart,
			tools: []string{"workspace_create", "workspace_exec", "workspace_summary", "workspace_delete"}},
		{name: "repro-fix", run: reproFix,
			tools: []string{"workspace_create", "workspace_exec", "patch_apply", "workspace_diff", "workspace_export", "workspace_delete"}},
		{name: "parallel", run: parallel,
			tools: []string{"workspace_create", "workspace_exec", "file_write", "workspace_diff", "workspace_delete"}},
		{name: "untrusted", run: untrusted,
			tools: []string{"workspace_create", "workspace_exec", "file_list", "file_read", "workspace_reset", "workspace_diff", "workspace_delete"}},
		{name: "review-eval", run: reviewEval,
			tools: []string{"workspace_create", "snapshot_create", "workspace_exec", "workspace_summary", "workspace_export", "workspace_reset", "file_read", "workspace_diff", "workspace_delete"}},
	}
}

// Sizes of the scenarios' workspaces: small enough that three fit the
// nested-KVM harness's L1 (4 GiB, half of it the tmpfs holding the
// environment's image) beside the server.
const (
	smokeEnv    = "debian-12" // python3 is needed
	smokeMemMiB = 256
	smokeTTL    = 1800 // seconds; outlives a slow scenario, and the workspace is deleted anyway
)

// run is one scenario's state: its host directories, its server session
// and the workspaces it created.
type run struct {
	name string
	s    *session
	// root holds everything on the host: allowed/ (the only host paths the
	// server may read or write: seeds under allowed/seed, exports under
	// allowed/out), host/ (files the guest must never reach), state/ and
	// pyro.log.
	root    string
	allowed string
	// secret is a random token set in the server's environment and
	// nowhere else: no result may ever carry it.
	secret string

	// mu guards ids.
	mu  sync.Mutex
	ids []string // workspaces created and not yet deleted, for cleanup

	// logf, when set, takes notes on what the scenario saw (-v).
	logf func(format string, a ...any)
}

// note passes a note to logf, if set.
func (r *run) note(format string, a ...any) {
	if r.logf != nil {
		r.logf(format, a...)
	}
}

// delete deletes a workspace the scenario created and forgets it.
func (r *run) delete(ctx context.Context, id string) error {
	del, err := call[deleteResult](ctx, r.s, "workspace_delete", idArgs{ID: id})
	if err != nil {
		return err
	}
	if del.Deleted != id {
		return fmt.Errorf("workspace_delete deleted %q, want %q", del.Deleted, id)
	}
	r.mu.Lock()
	r.ids = slices.DeleteFunc(r.ids, func(x string) bool { return x == id })
	r.mu.Unlock()
	return nil
}

func (r *run) path(elem ...string) string { return filepath.Join(append([]string{r.root}, elem...)...) }

// create calls workspace_create with the smoke defaults and remembers the
// workspace for cleanup.
func (r *run) create(ctx context.Context, a createArgs) (workspace, error) {
	if a.Env == "" {
		a.Env = smokeEnv
	}
	if a.MemMiB == 0 {
		a.MemMiB = smokeMemMiB
	}
	if a.TTLSeconds == 0 {
		a.TTLSeconds = smokeTTL
	}
	if a.Labels == nil {
		a.Labels = map[string]string{"smoke": r.name}
	}
	out, err := call[workspaceResult](ctx, r.s, "workspace_create", a)
	if err != nil {
		return workspace{}, err
	}
	w := out.Workspace
	if w.ID == "" {
		return w, errors.New("workspace_create returned no workspace id")
	}
	r.mu.Lock()
	r.ids = append(r.ids, w.ID)
	r.mu.Unlock()
	if w.State != "running" {
		return w, fmt.Errorf("workspace %s is %q after create, want running", w.ID, w.State)
	}
	if w.Env != a.Env {
		return w, fmt.Errorf("workspace %s has env %q, want %q", w.ID, w.Env, a.Env)
	}
	return w, nil
}

// exec runs a shell command in a workspace.
func (r *run) exec(ctx context.Context, id, command string, timeout int, env map[string]string) (execResult, error) {
	return call[execResult](ctx, r.s, "workspace_exec", execArgs{ID: id, Command: command, TimeoutSeconds: timeout, EnvVars: env})
}

// execOK runs command and fails unless it exits 0.
func (r *run) execOK(ctx context.Context, id, command string, timeout int, env map[string]string) (execResult, error) {
	res, err := r.exec(ctx, id, command, timeout, env)
	if err != nil {
		return res, err
	}
	return res, wantExit(res, 0, command)
}

// wantExit fails unless res exited with code.
func wantExit(res execResult, code int, what string) error {
	if res.ExitCode == code && !res.TimedOut {
		return nil
	}
	return fmt.Errorf("%q: exit %d (timed out: %v), want %d; stderr: %s", what, res.ExitCode, res.TimedOut, code, tail(res.Stderr, 300))
}

// cleanup deletes every workspace the scenario created (already deleted
// ones are fine).
func (r *run) cleanup(ctx context.Context) error {
	r.mu.Lock()
	ids := append([]string(nil), r.ids...)
	r.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := r.delete(ctx, id); err != nil && errorCode(err) != "not_found" {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// smokeOptions configures runSmoke.
type smokeOptions struct {
	Pyro    string
	Only    map[string]bool // nil: every scenario
	Timeout time.Duration   // per scenario
	Verbose bool            // trace each tool call on stderr
	ShowLog bool            // copy each scenario's whole server log to Log when it ends
	Rerun   bool            // rerun a scenario whose guest died (in the harness: rerun.go)

	// runner runs one scenario; nil means runScenario (tests fake it).
	runner func(context.Context, smokeOptions, scenario) (sign string, err error)
	Out    io.Writer // the result lines
	Log    io.Writer // traces and pyro's log on failure
}

// runSmoke runs the selected scenarios one after another and prints one
// line for each; it returns how many failed.
func runSmoke(ctx context.Context, o smokeOptions) int {
	if o.runner == nil {
		o.runner = runScenario
	}
	failed := 0
	for _, sc := range scenarios() {
		if o.Only != nil && !o.Only[sc.name] {
			continue
		}
		start := time.Now()
		var err error
		for rerun := 1; ; rerun++ {
			var sign string
			sign, err = o.runner(ctx, o, sc)
			if err == nil || !o.Rerun || sign == "" || rerun > maxReruns || ctx.Err() != nil {
				break
			}
			fmt.Fprintf(o.Log, "mcpdrive: RERUN %d of at most %d: %s failed with a guest that died or went silent (%q), "+
				"which the nested emulator does now and then; running it again (PYRO_VMTEST_RETRY=0 turns reruns off). The failure: %s\n",
				rerun, maxReruns, sc.name, sign, oneLine(err.Error(), 600))
		}
		fmt.Fprintln(o.Out, resultLine(sc.name, time.Since(start), err))
		if err != nil {
			failed++
		}
	}
	return failed
}

// runScenario runs one scenario against a server of its own. When it
// fails, sign is the phrase of its error or of pyro's log that shows a
// guest died (see rerun.go), if any.
func runScenario(parent context.Context, o smokeOptions, sc scenario) (sign string, err error) {
	root, err := os.MkdirTemp("", "mcpdrive-"+sc.name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real // the paths pyro reports are resolved
	}
	r := &run{name: sc.name, root: root, allowed: filepath.Join(root, "allowed"), secret: randomToken()}
	for _, d := range []string{r.allowed, r.path("allowed", "seed"), r.path("allowed", "out"), r.path("host"), r.path("state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	logFile := r.path("pyro.log")
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	r.s, err = startServer(ctx, serverConfig{
		Pyro: o.Pyro, Profile: sc.profile, StateDir: r.path("state"), AllowHost: []string{r.allowed},
		LogFile: logFile, Dir: root, Env: []string{"PYRO_SMOKE_SECRET=" + r.secret},
	})
	if err != nil {
		return "", err
	}
	if o.Verbose {
		r.s.trace = func(tool string, d time.Duration, isError bool, err error) {
			note := ""
			switch {
			case err != nil:
				note = " ERROR " + err.Error()
			case isError:
				note = " (tool error)"
			}
			fmt.Fprintf(o.Log, "  %s: %s %.1fs%s\n", sc.name, tool, d.Seconds(), note)
		}
		r.logf = func(format string, a ...any) {
			fmt.Fprintf(o.Log, "  %s: %s\n", sc.name, fmt.Sprintf(format, a...))
		}
	}
	defer func() {
		// Delete the workspaces whatever happened, with time of its own
		// (the scenario's may be spent), then end the server.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(parent), 3*time.Minute)
		defer ccancel()
		if err != nil {
			// What the guests said, before the delete removes it.
			showConsoles(o.Log, sc.name, r.path("state"), 40)
			r.showProcesses(cctx, o.Log)
		}
		if cerr := r.cleanup(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
		if cerr := r.s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("the server did not exit cleanly once its stdin closed: %w", cerr)
		}
		switch {
		case o.ShowLog:
			showLog(o.Log, sc.name, logFile, -1)
		case err != nil:
			showLog(o.Log, sc.name, logFile, 30)
		}
		if err != nil {
			pyroLog, _ := os.ReadFile(logFile)
			sign = deathSign(err.Error(), string(pyroLog))
		}
	}()
	if err := r.s.requireTools(ctx, sc.tools...); err != nil {
		return "", err
	}
	if err := sc.run(ctx, r); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w (the scenario's %v ran out)", err, o.Timeout)
		}
		return "", err
	}
	if r.s.sawText(r.secret) {
		return "", fmt.Errorf("the server's environment (a secret set there) reached a tool result")
	}
	return "", nil
}

// showLog copies the last n lines of pyro's log to w; all of it when n < 0.
func showLog(w io.Writer, name, path string, n int) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return
	}
	lines := tailLines(b, n)
	what := "pyro's log"
	if n >= 0 {
		what = fmt.Sprintf("the last %d lines of pyro's log", len(lines))
	}
	fmt.Fprintf(w, "--- %s: %s:\n%s\n---\n", name, what, strings.Join(lines, "\n"))
}

// tailLines returns the last n lines of b; all of them when n < 0.
func tailLines(b []byte, n int) []string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n >= 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// psScript lists each guest process with its state and where it waits.
const psScript = `for p in /proc/[0-9]*; do echo "${p#/proc/} $(cat $p/comm) $(cut -d' ' -f3 $p/stat) $(cat $p/wchan)"; done 2>/dev/null`

// showProcesses writes what each of the scenario's workspaces runs, and
// where each process waits, to w: a stalled command's cause.
func (r *run) showProcesses(ctx context.Context, w io.Writer) {
	r.mu.Lock()
	ids := append([]string(nil), r.ids...)
	r.mu.Unlock()
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := r.exec(cctx, id, psScript, 20, nil)
		cancel()
		if err != nil {
			fmt.Fprintf(w, "--- %s's processes: %v\n", id, err)
			continue
		}
		fmt.Fprintf(w, "--- %s's processes (pid, name, state, wait):\n%s---\n", id, res.Stdout)
	}
}

// showConsoles copies the last n lines of each workspace's guest console
// under the state directory to w.
func showConsoles(w io.Writer, name, state string, n int) {
	logs, _ := filepath.Glob(filepath.Join(state, "workspaces", "*", "console.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		lines := tailLines(b, n)
		fmt.Fprintf(w, "--- %s: the last %d lines of %s's console:\n%s\n---\n", name, len(lines),
			filepath.Base(filepath.Dir(p)), strings.Join(lines, "\n"))
	}
}

// resultLine is a scenario's one line of output.
func resultLine(name string, d time.Duration, err error) string {
	if err == nil {
		return fmt.Sprintf("smoke %s: ok (%.1fs)", name, d.Seconds())
	}
	return fmt.Sprintf("smoke %s: FAIL (%.1fs): %s", name, d.Seconds(), oneLine(err.Error(), 600))
}

var spaceRun = regexp.MustCompile(`\s*\n\s*`)

// oneLine folds s onto one line (line breaks become " | ") of at most n
// bytes.
func oneLine(s string, n int) string {
	s = spaceRun.ReplaceAllString(strings.TrimSpace(s), " | ")
	if len(s) > n {
		cut := n - 3
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut-- // not inside a UTF-8 sequence
		}
		s = s[:cut] + "..."
	}
	return s
}

// tail returns the last n bytes of s, marked when cut, on one line.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		start := len(s) - n
		for start < len(s) && s[start]&0xC0 == 0x80 {
			start++
		}
		s = "..." + s[start:]
	}
	return fmt.Sprintf("%q", s)
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "pyro-canary-" + hex.EncodeToString(b[:])
}
