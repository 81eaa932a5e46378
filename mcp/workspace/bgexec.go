package workspace

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Background execs (contract.BackgroundBackend).
//
// ExecStart reserves the command's journal seq (its handle), journals it
// as running and hands it to a goroutine of the workspace, which runs it
// the way Exec does (c.exec: the same output files out/SEQ.stdout and
// .stderr, the same journal line at the end, which replaces the running
// one) on a context of the VM, not of the tool call: the call returns at
// once. Polls read the table below and the output files; they need no VM,
// so a stopped workspace's ended commands can still be read.
//
// Whatever ends the VM ends its background commands, since their context
// is the VM's: stop, reset, delete and the server closing name themselves
// first (bgEnding), so the command reads as killed with that reason, and
// wait for the goroutines to journal the end (bgWait) before they go on; a
// VM that stops by itself loses them. A running command keeps the
// workspace active, so its idle TTL never expires it mid-build. A server
// killed while one runs leaves its journal line saying running; the next
// Open rewrites it as lost (recoverBackground).

const (
	// keptEnded is how many ended background commands a workspace
	// remembers for polls; their output files are kept from pruning
	// until they drop out of it.
	keptEnded = 16
	// bgEndWait bounds how long a stop, reset, delete or kill waits for
	// a background command to record its end (the agent's stream closes
	// at once; this only guards a host that hangs).
	bgEndWait = 10 * time.Second

	bgDetail  = "background"              // first journal detail of a background exec
	bgRunning = bgDetail + "; running"    // its journal line's detail while it runs
	bgEndSep  = bgDetail + "; "           // then "killed: WHY", "lost: WHY" or "failed: WHY"
	bgAtStart = "the pyro server stopped" // recoverBackground's reason
)

// bgTable is a workspace's background commands.
type bgTable struct {
	mu sync.Mutex // guards the fields below; taken after outMu, never before
	// Guarded by mu.
	running map[int64]*bgExec
	// Guarded by mu.
	ended []*bgExec // oldest first, at most keptEnded
}

// bgExec is one background command.
type bgExec struct {
	seq     int64
	command string    // as the journal shows it
	started time.Time // the Manager's clock
	t0      time.Time // for the duration so far
	timeout int
	base    string // out/SEQ; the output files add .stdout and .stderr
	cancel  context.CancelFunc
	done    chan struct{} // closed once it ended and the fields below are set

	// Guarded by bgTable.mu: what ended it, set before its context is
	// cancelled.
	why string

	// Set before done is closed.
	state  contract.ExecState
	reason string
	// res is the result; its Stdout and Stderr hold only the last bytes
	// of a stream whose host file stopped at outFileCap (nil otherwise:
	// polls read the files).
	res contract.ExecResult
}

// keeps reports whether seq's output files must stay: its command runs,
// or ended lately and may still be polled.
func (t *bgTable) keeps(seq int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.running[seq]; ok {
		return true
	}
	return slices.ContainsFunc(t.ended, func(b *bgExec) bool { return b.seq == seq })
}

// find returns the background command seq, or nil.
func (t *bgTable) find(seq int64) *bgExec {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.running[seq]; ok {
		return b
	}
	for _, b := range t.ended {
		if b.seq == seq {
			return b
		}
	}
	return nil
}

// ExecStart implements contract.BackgroundBackend.
func (m *Manager) ExecStart(ctx context.Context, req contract.ExecRequest) (contract.BackgroundExec, error) {
	w, err := m.get(req.ID)
	if err != nil {
		return contract.BackgroundExec{}, err
	}
	c, err := w.enter(ctx)
	if err != nil {
		return contract.BackgroundExec{}, err
	}
	defer c.end()
	if req.TimeoutSeconds <= 0 {
		req.TimeoutSeconds = contract.DefaultBackgroundTimeout
	}
	t := &w.bg
	t.mu.Lock()
	if n := len(t.running); n >= contract.MaxBackground {
		t.mu.Unlock()
		return contract.BackgroundExec{}, contract.LimitReached("%d background commands are running in workspace %s, the most a workspace runs at once", n, w.id).
			WithHint("Wait for one to end ({{exec.status}} with its {{-seq}} and {{-wait_seconds}}) or end one ({{exec.status}} with {{-kill}}); {{exec.status}} without {{-seq}} lists them.")
	}
	seq := w.journal.reserve()
	// The VM's context, not the call's: the command outlives the call.
	bctx, cancel := context.WithCancel(c.h.ctx)
	b := &bgExec{seq: seq, command: commandLine(req), started: m.now(), t0: time.Now(), timeout: req.TimeoutSeconds,
		base: filepath.Join(w.dir, outDir, strconv.FormatInt(seq, 10)), cancel: cancel, done: make(chan struct{})}
	if t.running == nil {
		t.running = map[int64]*bgExec{}
	}
	t.running[seq] = b
	t.mu.Unlock()
	w.mu.Lock()
	w.active++ // the reaper leaves the workspace alone while it runs
	w.mu.Unlock()
	if _, err := w.journal.append(entry{Seq: seq, Time: b.started, Kind: contract.LogExec, Command: b.command, Detail: bgRunning}); err != nil {
		m.log.Warn("writing the journal", "id", w.id, "err", err)
	}
	go w.runBackground(bctx, c.h, b, req)
	return w.bgView(b, 0, 0, false), nil
}

// runBackground runs b to its end and records how it ended.
func (w *workspace) runBackground(ctx context.Context, h *vmHandle, b *bgExec, req contract.ExecRequest) {
	defer b.cancel()
	c := &call{w: w, h: h, ctx: ctx, parent: ctx, end: func() {}, seq: b.seq, background: true}
	r, err := c.exec(req)
	state, reason := contract.ExecExited, ""
	if err == nil && r.TimedOut {
		state = contract.ExecTimedOut
	}
	if err != nil {
		w.bg.mu.Lock()
		why := b.why
		w.bg.mu.Unlock()
		switch {
		case why != "":
			state, reason = contract.ExecKilled, why
		case h.stopping.Load():
			state, reason = contract.ExecKilled, "the workspace was stopped, reset or deleted while it ran"
		case h.ctx.Err() != nil:
			state, reason = contract.ExecLost, "the VM stopped by itself (the guest powered off, rebooted or crashed) while it ran"
		default:
			state, reason = contract.ExecFailed, firstLine(errMessage(err))
		}
		// c.exec journals only a command that ran to its end.
		r = w.outputSoFar(b)
		r.Duration = time.Since(b.t0)
		for _, p := range []*string{&r.StdoutPath, &r.StderrPath} {
			if fi, err := os.Stat(*p); err == nil && fi.Size() == 0 {
				os.Remove(*p) // as c.exec does with an empty stream
				*p = ""
			}
		}
		if _, jerr := w.journal.append(entry{Seq: b.seq, Time: b.started, Kind: contract.LogExec, Command: b.command,
			Duration: int64(r.Duration), Detail: bgEndSep + string(state) + ": " + reason}); jerr != nil {
			w.m.log.Warn("writing the journal", "id", w.id, "err", jerr)
		}
		w.pruneOutputs(b.seq)
	}
	r.Stdout, r.Stderr = beyondFile(r.Stdout, r.StdoutSize), beyondFile(r.Stderr, r.StderrSize)
	// Idle from now on, before a poll can see it ended.
	w.mu.Lock()
	w.active--
	w.mu.Unlock()
	w.touch()
	t := &w.bg
	t.mu.Lock()
	b.state, b.reason, b.res = state, reason, r
	delete(t.running, b.seq)
	t.ended = append(t.ended, b)
	if n := len(t.ended) - keptEnded; n > 0 {
		t.ended = slices.Delete(t.ended, 0, n)
	}
	close(b.done)
	t.mu.Unlock()
}

// errMessage is err as the agent reads it.
func errMessage(err error) string {
	if e, ok := contract.AsError(err); ok && e.Msg != "" {
		return e.Msg
	}
	return err.Error()
}

// beyondFile keeps of a stream's in-memory excerpt b (capture.bytes)
// only its tail, and only when the host file stopped short of the
// stream's total: then nothing else has its last bytes.
func beyondFile(b []byte, total int64) []byte {
	if total <= outFileCap || len(b) < outTailCap {
		return nil
	}
	return slices.Clone(b[len(b)-outTailCap:])
}

// outputSoFar returns what b's output files hold: sizes and paths.
func (w *workspace) outputSoFar(b *bgExec) contract.ExecResult {
	r := contract.ExecResult{Seq: b.seq}
	for _, s := range []struct {
		file string
		n    *int64
		path *string
	}{{b.base + ".stdout", &r.StdoutSize, &r.StdoutPath}, {b.base + ".stderr", &r.StderrSize, &r.StderrPath}} {
		if fi, err := os.Stat(s.file); err == nil && fi.Mode().IsRegular() {
			*s.n, *s.path = fi.Size(), s.file
		}
	}
	return r
}

// bgEnding names why the workspace's running background commands are
// about to end (a stop, reset, delete or the server closing), before the
// call that ends them cancels the VM's context.
func (w *workspace) bgEnding(why string) {
	w.bg.mu.Lock()
	defer w.bg.mu.Unlock()
	for _, b := range w.bg.running {
		if b.why == "" {
			b.why = why
		}
	}
}

// bgWait waits (at most bgEndWait) for the workspace's background
// commands to record their end, once the VM's context is cancelled. The
// caller holds op exclusively, so none can start meanwhile.
func (w *workspace) bgWait() {
	w.bg.mu.Lock()
	list := slices.Collect(maps.Values(w.bg.running))
	w.bg.mu.Unlock()
	t := time.NewTimer(bgEndWait)
	defer t.Stop()
	for _, b := range list {
		select {
		case <-b.done:
		case <-t.C:
			w.m.log.Warn("background commands did not record their end in time", "id", w.id)
			return
		}
	}
}

// ExecPoll implements contract.BackgroundBackend.
func (m *Manager) ExecPoll(ctx context.Context, req contract.PollRequest) (contract.BackgroundExec, error) {
	w, err := m.get(req.ID)
	if err != nil {
		return contract.BackgroundExec{}, err
	}
	if err := w.alive(); err != nil {
		return contract.BackgroundExec{}, err
	}
	w.touch()
	b := w.bg.find(req.Seq)
	if b == nil {
		return w.pollJournal(req)
	}
	wait := req.Wait
	if req.Kill {
		w.bg.mu.Lock()
		if b.why == "" {
			b.why = "killed on request ({{exec.status}} kill)"
		}
		w.bg.mu.Unlock()
		b.cancel()
		wait = bgEndWait
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-b.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return w.bgView(b, req.StdoutOffset, req.StderrOffset, true), nil
}

// ExecList implements contract.BackgroundBackend.
func (m *Manager) ExecList(ctx context.Context, id string) ([]contract.BackgroundExec, error) {
	w, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if err := w.alive(); err != nil {
		return nil, err
	}
	w.touch()
	return w.bgList(false), nil
}

// bgList returns the background commands (only the running ones when
// runningOnly), oldest first, without output.
func (w *workspace) bgList(runningOnly bool) []contract.BackgroundExec {
	w.bg.mu.Lock()
	list := make([]*bgExec, 0, len(w.bg.running)+len(w.bg.ended))
	for _, b := range w.bg.running {
		list = append(list, b)
	}
	if !runningOnly {
		list = append(list, w.bg.ended...)
	}
	w.bg.mu.Unlock()
	slices.SortFunc(list, func(a, b *bgExec) int { return cmp.Compare(a.seq, b.seq) })
	var out []contract.BackgroundExec
	for _, b := range list {
		v := w.bgView(b, 0, 0, false)
		if runningOnly && v.State != contract.ExecRunning {
			continue // ended since
		}
		out = append(out, v)
	}
	return out
}

// bgView describes b; with output, also its output after the offsets.
func (w *workspace) bgView(b *bgExec, outOff, errOff int64, output bool) contract.BackgroundExec {
	v := contract.BackgroundExec{Seq: b.seq, Command: b.command, State: contract.ExecRunning, StartedAt: b.started, TimeoutSeconds: b.timeout}
	running := true
	select {
	case <-b.done:
		running = false
		v.State, v.Reason, v.Result = b.state, b.reason, b.res
	default:
		v.Result = w.outputSoFar(b)
		v.Result.Duration = time.Since(b.t0)
		// While it runs the files are always there, empty or not.
		v.Result.StdoutPath, v.Result.StderrPath = b.base+".stdout", b.base+".stderr"
	}
	tails := [2][]byte{v.Result.Stdout, v.Result.Stderr}
	v.Result.Stdout, v.Result.Stderr = nil, nil
	v.StdoutNext, v.StderrNext = v.Result.StdoutSize, v.Result.StderrSize
	if output {
		v.Result.Stdout, v.StdoutNext = readWindow(b.base+".stdout", outOff, v.Result.StdoutSize, tails[0], running)
		v.Result.Stderr, v.StderrNext = readWindow(b.base+".stderr", errOff, v.Result.StderrSize, tails[1], running)
	}
	// The files are redacted as written; the command line, the reason and
	// output written before a secret was set are redacted here.
	v.Command, v.Reason = w.redactText(v.Command), w.redactText(v.Reason)
	v.Result = w.redactResult(v.Result)
	return v
}

// readWindow returns a stream's output after off: all of it when short,
// else its first outHeadCap and last outTailCap bytes around a marker;
// and the offset its end reaches. total is the stream's length so far;
// the host file at path holds its first bytes (up to outFileCap; none
// once pruned), tail its last ones where the file stops short, and a
// marker stands for bytes neither holds. While the command runs the end
// is cut back to a whole UTF-8 character, which the next poll gets whole.
func readWindow(path string, off, total int64, tail []byte, running bool) ([]byte, int64) {
	off = min(max(off, 0), total)
	var f *os.File
	var fileLen int64
	if fh, err := os.Open(path); err == nil {
		defer fh.Close()
		if fi, err := fh.Stat(); err == nil && fi.Mode().IsRegular() {
			f, fileLen = fh, min(fi.Size(), total)
		}
	}
	ts := total - int64(len(tail)) // tail holds [ts, total)
	// read returns what is known of [a, e).
	read := func(a, e int64) []byte {
		var out []byte
		if f != nil && a < fileLen {
			buf := make([]byte, min(e, fileLen)-a)
			n, _ := f.ReadAt(buf, a)
			out, a = buf[:n], a+int64(n)
		}
		s := min(max(a, ts), e)
		if s > a {
			out = append(out, fmt.Sprintf("\n[... %d bytes not kept ...]\n", s-a)...)
		}
		if s < e {
			out = append(out, tail[s-ts:e-ts]...)
		}
		return out
	}
	cutEnd := func(b []byte) int {
		if running {
			return partialRune(b)
		}
		return 0
	}
	if total-off <= outHeadCap+outTailCap {
		b := read(off, total)
		k := cutEnd(b)
		return b[:len(b)-k], total - int64(k)
	}
	head := read(off, off+outHeadCap)
	hk := partialRune(head)
	head = head[:len(head)-hk]
	tailStart := total - outTailCap
	end := read(tailStart, total)
	for k := 0; k < utf8.UTFMax-1 && len(end) > 0 && !utf8.RuneStart(end[0]); k++ {
		end, tailStart = end[1:], tailStart+1 // do not begin inside a character
	}
	k := cutEnd(end)
	end = end[:len(end)-k]
	omitted := tailStart - (off + outHeadCap - int64(hk))
	out := append(head, fmt.Sprintf("\n[... %d bytes omitted ...]\n", omitted)...)
	return append(out, end...), total - int64(k)
}

// partialRune is the length of a UTF-8 sequence cut off at the end of b
// (0 when b ends on a character boundary or is not UTF-8 there anyway).
func partialRune(b []byte) int {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if !utf8.RuneStart(c) {
			continue
		}
		if c < utf8.RuneSelf || utf8.FullRune(b[len(b)-i:]) {
			return 0
		}
		return i
	}
	return 0
}

// pollJournal answers a poll of a command this Manager does not run or
// remember: a foreground exec, or one that ran before a restart.
func (w *workspace) pollJournal(req contract.PollRequest) (contract.BackgroundExec, error) {
	ents := w.journal.since(req.Seq - 1)
	if len(ents) == 0 || ents[0].Seq != req.Seq || ents[0].Kind != contract.LogExec {
		return contract.BackgroundExec{}, contract.NotFound("command", strconv.FormatInt(req.Seq, 10)).
			WithHint("Pass the {{-seq}} {{exec}} returned; {{exec.status}} without {{-seq}} lists the workspace's background commands.")
	}
	e := ents[0]
	v := contract.BackgroundExec{Seq: e.Seq, Command: e.Command, StartedAt: e.Time}
	b := &bgExec{seq: e.Seq, base: filepath.Join(w.dir, outDir, strconv.FormatInt(e.Seq, 10))}
	v.Result = w.outputSoFar(b)
	v.Result.Duration = time.Duration(e.Duration)
	if e.ExitCode != nil {
		v.State, v.Result.ExitCode = contract.ExecExited, *e.ExitCode
		for _, d := range strings.Split(e.Detail, "; ") {
			switch {
			case strings.HasPrefix(d, "timed out after "):
				v.State, v.Result.TimedOut = contract.ExecTimedOut, true
			case strings.HasPrefix(d, "killed by "):
				v.Result.Signal = strings.TrimPrefix(d, "killed by ")
			}
		}
	} else {
		v.State, v.Reason = contract.ExecLost, bgAtStart+" while it ran"
		for _, s := range []contract.ExecState{contract.ExecKilled, contract.ExecLost, contract.ExecFailed} {
			if r, ok := strings.CutPrefix(e.Detail, bgEndSep+string(s)+": "); ok {
				v.State, v.Reason = s, r
			}
		}
	}
	v.Result.Stdout, v.StdoutNext = readWindow(b.base+".stdout", req.StdoutOffset, v.Result.StdoutSize, nil, false)
	v.Result.Stderr, v.StderrNext = readWindow(b.base+".stderr", req.StderrOffset, v.Result.StderrSize, nil, false)
	return v, nil
}

// recoverBackground rewrites the journal lines of background commands
// that a server killed while they ran left saying running: the VM went
// with the server, so they are lost. Their duration reaches the last
// output they wrote.
func (w *workspace) recoverBackground() {
	for _, e := range w.journal.since(0) {
		if e.Kind != contract.LogExec || e.ExitCode != nil || e.Detail != bgRunning {
			continue
		}
		base := filepath.Join(w.dir, outDir, strconv.FormatInt(e.Seq, 10))
		for _, ext := range []string{".stdout", ".stderr"} {
			if fi, err := os.Stat(base + ext); err == nil {
				e.Duration = max(e.Duration, int64(fi.ModTime().Sub(e.Time)))
			}
		}
		e.Detail = bgEndSep + string(contract.ExecLost) + ": " + bgAtStart + " while it ran (its VM went with it)"
		w.appendRecovered(e)
	}
}

var _ contract.BackgroundBackend = (*Manager)(nil)
