package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
)

// runTTL is the idle lifetime of Run's throwaway workspace.
const runTTL = 3600

func execMkdir(p string) proto.ExecRequest {
	return proto.ExecRequest{Argv: []string{"mkdir", "-p", "--", p}, Timeout: time.Minute}
}

// Exec implements contract.Backend. The command's whole output (up to
// outFileCap per stream) is kept in out/SEQ.stdout and out/SEQ.stderr,
// for the latest keptOutputs execs; the result holds its first and last
// bytes.
func (m *Manager) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	w, err := m.get(req.ID)
	if err != nil {
		return contract.ExecResult{}, err
	}
	c, err := w.enter(ctx)
	if err != nil {
		return contract.ExecResult{}, err
	}
	defer c.end()
	r, err := c.exec(req)
	return w.redactResult(r), w.redactErr(err)
}

func (c *call) exec(req contract.ExecRequest) (contract.ExecResult, error) {
	w := c.w
	cwd := req.Cwd
	if cwd == "" {
		cwd = hostio.Workspace
	}
	if !strings.HasPrefix(cwd, "/") {
		cwd = filepath.Join(hostio.Workspace, cwd)
	}
	timeout := time.Duration(req.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	env, err := w.execEnv(req)
	if err != nil {
		return contract.ExecResult{}, err
	}
	seq := c.seq // reserved by a background start (bgexec.go)
	if seq == 0 {
		seq = w.journal.reserve()
	}
	w.outMu.Lock()
	if w.outBusy == nil {
		w.outBusy = map[int64]bool{}
	}
	w.outBusy[seq] = true // pruning leaves files being written alone
	w.outMu.Unlock()
	written := func() {
		w.outMu.Lock()
		delete(w.outBusy, seq)
		w.outMu.Unlock()
	}
	defer written()
	base := filepath.Join(w.dir, outDir, strconv.FormatInt(seq, 10))
	stdout, stderr := newCapture(base+".stdout"), newCapture(base+".stderr")
	pr := proto.ExecRequest{Argv: req.Argv, Shell: req.Command, Env: env, Cwd: cwd, Timeout: timeout}
	if req.Stdin != "" {
		pr.Stdin = strings.NewReader(req.Stdin)
	}
	// The guest enforces the timeout; this only guards against a guest
	// that stops answering.
	tctx, cancel := context.WithTimeout(c.ctx, timeout+proto.DefaultKillGrace+30*time.Second)
	defer cancel()
	ctx, wedged := context.WithCancelCause(tctx)
	defer wedged(nil)
	go watchLiveness(ctx, c.h.Agent, wedged)
	start := w.m.now()
	t0 := time.Now()
	// Output is redacted before it is kept (host files, result).
	red := w.redactor()
	so, se := red.Writer(stdout), red.Writer(stderr)
	res, err := c.h.Agent.Exec(ctx, pr, so, se)
	so.Flush()
	se.Flush()
	dur := time.Since(t0)
	stdout.file.Close()
	stderr.file.Close()
	written()
	if err != nil {
		if !c.background { // a background command's output so far stays for its polls
			os.Remove(base + ".stdout")
			os.Remove(base + ".stderr")
		}
		if l := c.lost(); l != nil {
			return contract.ExecResult{}, l
		}
		if c.ctx.Err() != nil {
			return contract.ExecResult{}, c.ctx.Err()
		}
		if errors.Is(context.Cause(ctx), errWedged) {
			w.m.log.Warn("the guest answered no ping during a command", "id", w.id, "for", livenessWindow())
			return contract.ExecResult{}, contract.Timeout("the guest stopped answering during the command: its agent answered no ping for %v, so its kernel is most likely wedged", livenessWindow()).
				WithHint("{{stop}} then {{start}} restarts the VM; the disk is kept.")
		}
		if ctx.Err() != nil {
			return contract.ExecResult{}, contract.Timeout("the guest stopped answering during the command").
				WithHint("{{stop}} then {{start}} restarts the VM; the disk is kept.")
		}
		return contract.ExecResult{}, c.guestErr("running the command", cwd, err)
	}
	r := contract.ExecResult{Seq: seq, ExitCode: res.ExitCode, Duration: dur,
		Stdout: stdout.bytes(), Stderr: stderr.bytes(), StdoutSize: stdout.total, StderrSize: stderr.total,
		OutputTruncated: stdout.total > outFileCap || stderr.total > outFileCap, Limited: limitedNote(res)}
	if res.ExitCode != 0 || res.TimedOut || res.Signal != "" {
		r.Network = networkNote(c.h.net, t0)
	}
	for _, s := range []struct {
		n    int64
		file string
		dst  *string
	}{{stdout.total, base + ".stdout", &r.StdoutPath}, {stderr.total, base + ".stderr", &r.StderrPath}} {
		if s.n == 0 {
			os.Remove(s.file)
		} else {
			*s.dst = s.file
		}
	}
	w.pruneOutputs(seq)
	var detail []string
	if c.background {
		detail = append(detail, bgDetail)
	}
	switch {
	case res.TimedOut:
		r.TimedOut, r.ExitCode = true, 124
		detail = append(detail, fmt.Sprintf("timed out after %v", timeout))
	case res.Signal != "":
		r.Signal = res.Signal
		r.ExitCode = 128 + int(unix.SignalNum(res.Signal))
		detail = append(detail, "killed by "+res.Signal)
	}
	if cwd != hostio.Workspace {
		detail = append(detail, "cwd "+cwd)
	}
	exit := r.ExitCode
	if _, err := w.journal.append(entry{Seq: seq, Time: start, Kind: contract.LogExec, Command: commandLine(req),
		ExitCode: &exit, Duration: int64(dur), Detail: strings.Join(detail, "; ")}); err != nil {
		w.m.log.Warn("writing the journal", "id", w.id, "err", err)
	}
	return r, nil
}

// pruneOutputs deletes the full-output files of all but the latest
// keptOutputs execs in out/ (SEQ.stdout, SEQ.stderr), so that a
// workspace's output files stay bounded however many commands it runs.
// Execs still running keep theirs, and so does self, the exec that just
// ended (its result names its files): it counts among the latest.
func (w *workspace) pruneOutputs(self int64) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	dir := filepath.Join(w.dir, outDir)
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	bySeq := map[int64][]string{}
	for _, de := range des {
		stem, _, ok := strings.Cut(de.Name(), ".")
		seq, err := strconv.ParseInt(stem, 10, 64)
		if !ok || err != nil || w.outBusy[seq] || seq == self || w.bg.keeps(seq) {
			continue
		}
		bySeq[seq] = append(bySeq[seq], de.Name())
	}
	if len(bySeq) <= keptOutputs-1 {
		return
	}
	seqs := slices.Sorted(maps.Keys(bySeq))
	for _, seq := range seqs[:len(seqs)-(keptOutputs-1)] {
		for _, name := range bySeq[seq] {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				w.m.log.Warn("pruning old exec output", "id", w.id, "file", name, "err", err)
			}
		}
	}
}

// limitedNote says what the guest's limits on user commands did to an
// exec, for the model: what to do next goes with each part.
func limitedNote(r proto.ExecResult) string {
	var parts []string
	if r.EarlierKilled > 0 {
		parts = append(parts, fmt.Sprintf("killed %d processes earlier commands left running (they had hit a limit, or the process limit left no room)", r.EarlierKilled))
	}
	if r.PidsLimited > 0 {
		parts = append(parts, fmt.Sprintf("the process limit refused %d forks (a fork bomb or runaway spawning; the next command kills what is left of it)", r.PidsLimited))
	}
	if r.OOMKills > 0 {
		parts = append(parts, fmt.Sprintf("out of memory: the memory limit on commands killed %d processes (all of the command that used the most); give the workspace more memory or use less", r.OOMKills))
	}
	if len(r.DiskFull) > 0 {
		// The agent names at most / and the working directory; a hostile
		// guest's longer list or longer names are cut.
		full := r.DiskFull[:min(len(r.DiskFull), 2)]
		names := make([]string, len(full))
		for i, n := range full {
			names[i] = clipNote(n, 256)
		}
		parts = append(parts, "no disk space left on "+strings.Join(names, ", ")+"; delete files to free it")
	}
	if r.LeftRunning > 0 {
		parts = append(parts, fmt.Sprintf("%d processes left running in the background", r.LeftRunning))
	}
	return strings.Join(parts, "; ")
}

// clipNote shortens a guest-given name to at most n bytes of valid UTF-8.
func clipNote(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// commandLine is how the journal shows a command.
func commandLine(req contract.ExecRequest) string {
	if req.Command != "" {
		return req.Command
	}
	parts := make([]string, len(req.Argv))
	for i, a := range req.Argv {
		parts[i] = shellQuote(a)
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == '=' || r == ':' || r == ',' || r == '+' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Run implements contract.Backend: create, exec, delete (also on failure). The
// output files go with the workspace, so the result names none.
func (m *Manager) Run(ctx context.Context, req contract.RunRequest) (contract.ExecResult, error) {
	w, err := m.create(ctx, contract.CreateRequest{Env: req.Env, VCPUs: req.VCPUs, MemMiB: req.MemMiB,
		TTLSeconds: runTTL, Seed: req.Seed, Labels: map[string]string{"pyro.run": "true"}, Network: req.Network})
	if err != nil {
		return contract.ExecResult{}, err
	}
	defer func() {
		if err := m.Delete(context.Background(), w.id); err != nil && !contract.IsCode(err, contract.CodeNotFound) {
			m.log.Warn("deleting the one-shot workspace", "id", w.id, "err", err)
		}
	}()
	contract.Progress(ctx, "running the command", 0, 0)
	r, err := m.Exec(ctx, contract.ExecRequest{ID: w.id, Command: req.Command, Argv: req.Argv, Cwd: req.Cwd,
		EnvVars: req.EnvVars, TimeoutSeconds: req.TimeoutSeconds, Stdin: req.Stdin})
	r.StdoutPath, r.StderrPath = "", ""
	return r, err
}
