package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/hostio"
	"github.com/pyro-mcp/pyro/mcp/redact"
	"github.com/pyro-mcp/pyro/mcp/term"
)

// Interactive shells (contract.ShellBackend). The guest agent runs each shell
// on a pseudo-terminal and keeps its latest output (proto.ShellBuffer
// bytes); the host keeps, per shell, a terminal screen (mcp/term) fed in
// order with every byte it reads, and the cursor it has read to. Plain
// output is the screen's Take: what changed since the last read. The
// shells belong to the VM they run in: the host's table hangs off the
// vmHandle, so a reset, stop, delete or crash, which end the VM, forget
// them too. A VM resumed from a memory image runs the shells the image's
// guest ran: the host files each when a call first names it.

// Shell sizes and chunks.
const (
	// defaultShellCols and defaultShellRows are a shell's terminal when
	// a request names none: wider than 80 so that a model reads fewer
	// wrapped lines.
	defaultShellCols = 120
	defaultShellRows = 40
	// shellReadChunk is what one agent read asks for.
	shellReadChunk = 256 << 10
	// shellRawMax bounds the raw bytes one call keeps to return.
	shellRawMax = 1 << 20
	// shellPatternBatch is how long output must pause before the agent
	// answers a read that waits for a pattern: the host renders and
	// matches once per batch, not once per byte.
	shellPatternBatch = 20 * time.Millisecond
	// shellCloseGrace is a closed shell's time between SIGHUP and SIGKILL.
	shellCloseGrace = 2 * time.Second
	// shellListTimeout bounds the agent call workspace_status makes.
	shellListTimeout = 3 * time.Second
)

// shellGuest is what shells need of the guest agent; *proto.Client has it.
type shellGuest interface {
	ShellOpen(ctx context.Context, args proto.ShellOpenArgs) (proto.ShellInfo, error)
	ShellRead(ctx context.Context, args proto.ShellReadArgs) ([]byte, proto.ShellReadResult, error)
	ShellWrite(ctx context.Context, id int, data []byte) (int, error)
	ShellSignal(ctx context.Context, id int, signal string) (int, error)
	ShellResize(ctx context.Context, id, cols, rows int) error
	ShellClose(ctx context.Context, id int, grace time.Duration) (proto.ShellInfo, error)
	ShellList(ctx context.Context) ([]proto.ShellInfo, error)
}

var _ shellGuest = (*proto.Client)(nil)

// shellSet is a VM's shells as the host follows them.
type shellSet struct {
	mu sync.Mutex // guards byID
	// Guarded by mu.
	byID map[int]*hostShell
}

// hostShell is the host's side of one shell.
type hostShell struct {
	id   int
	argv []string

	mu sync.Mutex // serializes the shell's calls, so its screen is fed in order; guards the fields below
	// Guarded by mu.
	screen *term.Screen
	// Guarded by mu.
	cursor int64 // the next byte to read from the guest
	// Guarded by mu.
	cols, rows int
	// caughtUp: an adopted shell's screen has been fed what the guest
	// had kept of its output when the host filed it. Guarded by mu.
	caughtUp bool

	// The stream's redaction, kept across reads so that a secret split
	// between two reads is caught: red redacts with redSet into redOut,
	// holding back bytes that may begin a secret. Guarded by mu.
	redSet *redact.Set
	red    *redact.Writer
	redOut bytes.Buffer
}

// shellOutput is where every byte a shell wrote, read in order from the
// guest, passes on its way to the screen and the model: the workspace's
// secrets are redacted as a stream. Bytes that may begin a secret wait
// for the next read.
func (w *workspace) shellOutput(hs *hostShell, p []byte) []byte {
	if set := w.redactor(); set != hs.redSet {
		if hs.red != nil {
			hs.red.Flush() // what the old set held back
		}
		hs.redSet, hs.red = set, nil
		if set.Len() > 0 {
			hs.red = set.Writer(&hs.redOut)
		}
	}
	if hs.red == nil {
		if hs.redOut.Len() == 0 {
			return p
		}
		hs.redOut.Write(p)
	} else {
		hs.red.Write(p)
	}
	out := bytes.Clone(hs.redOut.Bytes())
	hs.redOut.Reset()
	return out
}

// shellCall enters the running workspace id for a shell call bounded by
// wait (plus room for the guest's answer) and returns its shell agent.
func (m *Manager) shellCall(ctx context.Context, id string, wait time.Duration) (*call, shellGuest, error) {
	w, err := m.get(id)
	if err != nil {
		return nil, nil, err
	}
	c, err := w.enterLimit(ctx, wait+agentCallTimeout)
	if err != nil {
		return nil, nil, err
	}
	g, ok := c.h.Agent.(shellGuest)
	if !ok {
		c.end()
		return nil, nil, contract.Invalid("this workspace's guest has no shells")
	}
	return c, g, nil
}

// shellErr turns an agent error about shell n into an *contract.Error.
func (c *call) shellErr(n int, what string, err error) error {
	if l := c.lost(); l != nil {
		return l
	}
	if _, ok := contract.AsError(err); ok {
		return err
	}
	if c.parent.Err() != nil {
		return c.parent.Err()
	}
	var pe *proto.Error
	code := ""
	if errors.As(err, &pe) {
		code = pe.Code
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && n > 0:
		return contract.NotFound("shell", fmt.Sprint(n)).WithHint("Call {{shell.list}} for the workspace's shells, or {{shell.open}} for a new one.")
	case code == "EPIPE" || code == "ESRCH":
		return contract.Conflict("shell %d has exited", n).WithHint("{{shell.read}} shows its last output and exit code; {{shell.close}} forgets it; {{shell.open}} starts another.")
	case code == proto.CodeBusy:
		return contract.LimitReached("%s", pe.Message).WithHint("Close a shell you no longer need with {{shell.close}}, then retry.")
	case code == proto.CodeUnsupported:
		return contract.Invalid("%s", pe.Message).WithHint("Rebuild the environment (pyro env build NAME) and restart the workspace to get shells.")
	case errors.Is(err, context.DeadlineExceeded):
		return contract.Timeout("the guest agent stopped answering while %s", what).
			WithHint("{{stop}} then {{start}} restarts the VM; the disk is kept.")
	case pe != nil:
		return contract.Invalid("%s: %s", what, pe.Message)
	}
	return contract.Internal(what, err)
}

// shell returns the host's side of shell n, adopting one the guest has
// that the host does not know yet.
func (c *call) shell(g shellGuest, n int) (*hostShell, error) {
	s := &c.h.shells
	s.mu.Lock()
	hs := s.byID[n]
	s.mu.Unlock()
	if hs != nil {
		return hs, nil
	}
	list, err := g.ShellList(c.ctx)
	if err != nil {
		return nil, c.shellErr(0, "listing the shells", err)
	}
	for _, si := range list {
		if si.ID == n {
			hs := s.add(si)
			if err := c.catchUp(g, hs); err != nil {
				return nil, err
			}
			return hs, nil
		}
	}
	return nil, c.shellErr(n, "", &proto.Error{Code: "ENOENT", Message: "no such shell"})
}

// catchUp feeds an adopted shell's screen with what the guest kept of its
// output so far, so that the call adopting it shows the screen as it was
// and matches its wait_for pattern against new output only (not against
// an old prompt).
func (c *call) catchUp(g shellGuest, hs *hostShell) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.caughtUp {
		return nil // another call adopted it first
	}
	// The guest keeps at most proto.ShellBuffer bytes of a shell's
	// output: a guest that reports more is not followed past that.
	for read := 0; read <= proto.ShellBuffer; {
		data, res, err := g.ShellRead(c.ctx, proto.ShellReadArgs{ID: hs.id, Cursor: hs.cursor, Max: shellReadChunk})
		if err != nil {
			return c.shellErr(hs.id, "reading the shell", err)
		}
		read += len(data)
		hs.screen.Write(c.w.shellOutput(hs, data))
		done := res.Next >= res.End || res.Next <= hs.cursor
		hs.cursor = res.Next
		if done {
			break
		}
	}
	hs.caughtUp = true
	return nil
}

// add files a shell the guest started, or returns the one filed already.
func (s *shellSet) add(si proto.ShellInfo) *hostShell {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs := s.byID[si.ID]; hs != nil {
		return hs
	}
	if s.byID == nil {
		s.byID = map[int]*hostShell{}
	}
	hs := &hostShell{id: si.ID, argv: si.Argv, screen: term.NewScreen(si.Cols, si.Rows), cols: si.Cols, rows: si.Rows}
	s.byID[si.ID] = hs
	return hs
}

func (s *shellSet) remove(n int) {
	s.mu.Lock()
	delete(s.byID, n)
	s.mu.Unlock()
}

func (s *shellSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

func waitFor(w contract.ShellWait) time.Duration {
	if w.Timeout <= 0 {
		w.Timeout = contract.DefaultShellTimeout
	}
	return min(w.Timeout, contract.MaxShellTimeout)
}

// ShellOpen implements contract.ShellBackend.
func (m *Manager) ShellOpen(ctx context.Context, req contract.ShellOpenRequest) (contract.ShellOutput, error) {
	c, g, err := m.shellCall(ctx, req.ID, waitFor(req.Wait))
	if err != nil {
		return contract.ShellOutput{}, err
	}
	defer c.end()
	cwd := req.Cwd
	if cwd == "" {
		cwd = hostio.Workspace
	}
	if !strings.HasPrefix(cwd, "/") {
		cwd = filepath.Join(hostio.Workspace, cwd)
	}
	cols, rows := req.Cols, req.Rows
	if cols <= 0 {
		cols = defaultShellCols
	}
	if rows <= 0 {
		rows = defaultShellRows
	}
	env, err := c.w.secretEnv(req.EnvVars, req.SecretEnv)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	si, err := g.ShellOpen(c.ctx, proto.ShellOpenArgs{Argv: req.Argv, Command: req.Command, Env: env,
		Cwd: cwd, Cols: cols, Rows: rows})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return contract.ShellOutput{}, contract.Invalid("%s", strings.TrimPrefix(err.Error(), "guest agent: ")).
				WithHint("Check the program name and the working directory ({{-cwd}}); {{exec}} `command -v NAME` finds a program.")
		}
		return contract.ShellOutput{}, c.shellErr(0, "starting the shell", err)
	}
	hs := c.h.shells.add(si)
	return c.shellIO(g, hs, req.Raw, nil, req.Wait, nil)
}

// ShellRead implements contract.ShellBackend.
func (m *Manager) ShellRead(ctx context.Context, req contract.ShellReadRequest) (contract.ShellOutput, error) {
	c, g, err := m.shellCall(ctx, req.ID, waitFor(req.Wait))
	if err != nil {
		return contract.ShellOutput{}, err
	}
	defer c.end()
	hs, err := c.shell(g, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	return c.shellIO(g, hs, req.Raw, req.Cursor, req.Wait, nil)
}

// ShellWrite implements contract.ShellBackend.
func (m *Manager) ShellWrite(ctx context.Context, req contract.ShellWriteRequest) (contract.ShellOutput, error) {
	if len(req.Input) > contract.MaxShellInput {
		return contract.ShellOutput{}, contract.Invalid("%d bytes of input; at most %d per call", len(req.Input), contract.MaxShellInput)
	}
	c, g, err := m.shellCall(ctx, req.ID, waitFor(req.Wait))
	if err != nil {
		return contract.ShellOutput{}, err
	}
	defer c.end()
	hs, err := c.shell(g, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	return c.shellIO(g, hs, req.Raw, nil, req.Wait, func() (int, error) {
		n, err := g.ShellWrite(c.ctx, hs.id, req.Input)
		if err != nil {
			return 0, c.shellErr(hs.id, "writing to the shell", err)
		}
		return n, nil
	})
}

// ShellSignal implements contract.ShellBackend.
func (m *Manager) ShellSignal(ctx context.Context, req contract.ShellSignalRequest) (contract.ShellOutput, error) {
	c, g, err := m.shellCall(ctx, req.ID, waitFor(req.Wait))
	if err != nil {
		return contract.ShellOutput{}, err
	}
	defer c.end()
	hs, err := c.shell(g, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	return c.shellIO(g, hs, req.Raw, nil, req.Wait, func() (int, error) {
		if _, err := g.ShellSignal(c.ctx, hs.id, req.Signal); err != nil {
			return 0, c.shellErr(hs.id, "signalling the shell", err)
		}
		return 0, nil
	})
}

// ShellResize implements contract.ShellBackend.
func (m *Manager) ShellResize(ctx context.Context, id string, n, cols, rows int) (contract.ShellInfo, error) {
	c, g, err := m.shellCall(ctx, id, 0)
	if err != nil {
		return contract.ShellInfo{}, err
	}
	defer c.end()
	hs, err := c.shell(g, n)
	if err != nil {
		return contract.ShellInfo{}, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if err := g.ShellResize(c.ctx, n, cols, rows); err != nil {
		return contract.ShellInfo{}, c.shellErr(n, "resizing the shell", err)
	}
	hs.screen.Resize(cols, rows)
	hs.cols, hs.rows = cols, rows
	list, err := g.ShellList(c.ctx)
	if err != nil {
		return contract.ShellInfo{}, c.shellErr(0, "listing the shells", err)
	}
	for _, si := range list {
		if si.ID == n {
			return shellInfo(si, hs.cursor), nil
		}
	}
	return contract.ShellInfo{}, c.shellErr(n, "", &proto.Error{Code: "ENOENT", Message: "no such shell"})
}

// ShellClose implements contract.ShellBackend.
func (m *Manager) ShellClose(ctx context.Context, id string, n int) (contract.ShellInfo, error) {
	c, g, err := m.shellCall(ctx, id, shellCloseGrace)
	if err != nil {
		return contract.ShellInfo{}, err
	}
	defer c.end()
	si, err := g.ShellClose(c.ctx, n, shellCloseGrace)
	if err != nil {
		return contract.ShellInfo{}, c.shellErr(n, "closing the shell", err)
	}
	read := int64(0)
	c.h.shells.mu.Lock()
	if hs := c.h.shells.byID[n]; hs != nil {
		read = hs.readCursor()
	}
	c.h.shells.mu.Unlock()
	c.h.shells.remove(n)
	return shellInfo(si, read), nil
}

// readCursor returns how far the host has read, or 0 while a call on
// the shell is reading (it is about to change).
func (hs *hostShell) readCursor() int64 {
	if !hs.mu.TryLock() {
		return 0
	}
	defer hs.mu.Unlock()
	return hs.cursor
}

// ShellList implements contract.ShellBackend.
func (m *Manager) ShellList(ctx context.Context, id string) ([]contract.ShellInfo, error) {
	c, g, err := m.shellCall(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	defer c.end()
	return c.shellList(g)
}

func (c *call) shellList(g shellGuest) ([]contract.ShellInfo, error) {
	list, err := g.ShellList(c.ctx)
	if err != nil {
		return nil, c.shellErr(0, "listing the shells", err)
	}
	out := make([]contract.ShellInfo, 0, len(list))
	for _, si := range list {
		var read int64
		c.h.shells.mu.Lock()
		hs := c.h.shells.byID[si.ID]
		c.h.shells.mu.Unlock()
		if hs != nil {
			read = hs.readCursor()
		}
		out = append(out, shellInfo(si, read))
	}
	return out, nil
}

// shells lists the running workspace's shells for workspace_status:
// nothing when none was opened (in this VM, or in the one whose memory
// image it resumed), or when the workspace is busy changing state (a
// reset), or the guest does not answer at once.
func (w *workspace) shells(ctx context.Context) []contract.ShellInfo {
	if !w.op.TryRLock() {
		return nil
	}
	h := w.handle()
	w.op.RUnlock()
	if h == nil || (h.shells.count() == 0 && !h.inherited) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, shellListTimeout)
	defer cancel()
	c, err := w.enter(ctx)
	if err != nil {
		return nil
	}
	defer c.end()
	g, ok := c.h.Agent.(shellGuest)
	if !ok {
		return nil
	}
	list, _ := c.shellList(g)
	return list
}

func shellInfo(si proto.ShellInfo, read int64) contract.ShellInfo {
	return contract.ShellInfo{Shell: si.ID, Argv: si.Argv, PID: si.PID, Cols: si.Cols, Rows: si.Rows, Started: si.Started,
		Exited: si.Exited, ExitCode: si.ExitCode, Signal: si.Signal, Cursor: si.End, Read: read}
}

// shellIO runs act (a write or a signal; nil for none) and reads the
// shell's output as wait says, feeding the host's screen. raw returns the
// bytes instead of the screen's changes; from, with raw, first re-reads
// from an earlier cursor.
func (c *call) shellIO(g shellGuest, hs *hostShell, raw bool, from *int64, wait contract.ShellWait, act func() (int, error)) (contract.ShellOutput, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	deadline := time.Now().Add(waitFor(wait))
	out := contract.ShellOutput{Start: hs.cursor}
	// Raw bytes: one contiguous run from out.Start, at most shellRawMax;
	// a gap (bytes the guest dropped) or the bound ends it.
	var rawBuf []byte
	rawOpen := raw
	// p is the guest's bytes [res.Cursor, res.Next) redacted, so its
	// length may differ: cursors count the guest's bytes (rawEnd), and a
	// chunk is kept whole or not at all (a redacted chunk of
	// shellReadChunk bytes always fits in shellRawMax).
	rawEnd := out.Start
	keep := func(res proto.ShellReadResult, p []byte) {
		if !rawOpen {
			return
		}
		if rawEnd != res.Cursor {
			if len(rawBuf) > 0 {
				rawOpen = false
				return
			}
			out.Start = res.Cursor // the first bytes came after a drop
		}
		if len(rawBuf)+len(p) > shellRawMax {
			rawOpen = false
			return
		}
		rawBuf = append(rawBuf, p...)
		rawEnd = res.Next
	}
	if raw && from != nil {
		if *from > hs.cursor {
			return out, contract.Invalid("cursor %d is beyond the %d bytes read so far", *from, hs.cursor).
				WithHint("Leave cursor out to read what is new.")
		}
		// A re-read: bytes the screen has seen already, returned, not fed.
		out.Start = *from
		for cur := *from; cur < hs.cursor && rawOpen; {
			data, res, err := g.ShellRead(c.ctx, proto.ShellReadArgs{ID: hs.id, Cursor: cur, Max: int(min(int64(shellReadChunk), hs.cursor-cur))})
			if err != nil {
				return out, c.shellErr(hs.id, "reading the shell", err)
			}
			out.Dropped += res.Dropped
			keep(res, c.w.redactor().Bytes(data))
			if res.Next == cur {
				break
			}
			cur = res.Next
		}
	}
	if act != nil {
		n, err := act()
		if err != nil {
			return out, err
		}
		out.Written = n
	}
	var probe *term.Screen
	if wait.Pattern != nil {
		probe = term.NewScreen(hs.cols, hs.rows)
	}
	waiting := wait.Pattern != nil || wait.Idle > 0
	var res proto.ShellReadResult
	for {
		args := proto.ShellReadArgs{ID: hs.id, Cursor: hs.cursor, Max: shellReadChunk}
		if left := time.Until(deadline); waiting && left > 0 {
			args.WaitMs = max(1, left.Milliseconds())
			args.IdleMs = wait.Idle.Milliseconds()
			if wait.Pattern != nil {
				args.IdleMs = shellPatternBatch.Milliseconds()
			}
		}
		data, r, err := g.ShellRead(c.ctx, args)
		if err != nil {
			return out, c.shellErr(hs.id, "reading the shell", err)
		}
		res = r
		data = c.w.shellOutput(hs, data)
		hs.screen.Write(data)
		keep(res, data)
		if probe != nil {
			probe.Write(data)
		}
		out.Dropped += res.Dropped
		hs.cursor = res.Next
		if probe != nil && wait.Pattern.MatchString(matchText(probe)) {
			out.Matched = true
			break
		}
		caughtUp := res.Next == res.End
		if res.Exited && caughtUp {
			break
		}
		if !time.Now().Before(deadline) {
			out.TimedOut = waiting
			break
		}
		if caughtUp && wait.Pattern == nil {
			break // idle (the agent waited for it), or no wait asked
		}
	}
	if raw {
		out.Text = string(rawBuf)
		out.End = max(rawEnd, out.Start)
	} else {
		out.End = hs.cursor
		out.Text, out.LostLines = hs.screen.Take()
	}
	out.Alt = hs.screen.AltScreen()
	out.Info = contract.ShellInfo{Shell: hs.id, Argv: hs.argv, Cols: hs.cols, Rows: hs.rows, Exited: res.Exited,
		ExitCode: res.ExitCode, Signal: res.Signal, Cursor: res.End, Read: hs.cursor}
	return out, nil
}

// matchText is the text wait_for patterns are matched against: the
// screen's text, with the spaces up to the cursor kept when the cursor
// sits at the end of the last line, so that a prompt such as "$ " or
// ">>> " matches with its trailing space. (Text joins a line that wrapped
// with its continuation, so the screen rows are counted back from the
// logical lines.)
func matchText(s *term.Screen) string {
	text := s.Text()
	x, y := s.Cursor()
	cols, _ := s.Size()
	rows, last := 0, 0
	for _, l := range strings.Split(s.Visible(), "\n") {
		w := utf8.RuneCountInString(l)
		n := max(1, (w+cols-1)/cols)
		rows, last = rows+n, w-(n-1)*cols
	}
	if y == rows-1 && x > last {
		text += strings.Repeat(" ", x-last)
	}
	return text
}
