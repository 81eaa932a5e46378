package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/redact"
)

// Capture limits.
const (
	consoleCap  = 4 << 20  // console.log bytes kept per boot
	outFileCap  = 32 << 20 // out/SEQ.stdout and .stderr bytes kept per exec
	outHeadCap  = 512 << 10
	outTailCap  = 512 << 10 // Stdout/Stderr in memory: first and last bytes
	keptDiffs   = 20        // patch files kept in diffs/
	maxReadSize = proto.MaxReadFile
	// exportChunk is what one read of a guest file asks for when the file
	// is exported alone: the host holds one chunk at a time.
	exportChunk = 8 << 20
)

// cappedWriter writes to f until max bytes, then drops the rest; it never
// fails, so a full disk or a chatty guest cannot break a VM's console.
// With secrets set, what it writes is redacted with the set that returns
// at the time, as a stream (a value split across writes is caught).
type cappedWriter struct {
	mu      sync.Mutex
	f       *os.File
	n       int64
	max     int64
	secrets func() *redact.Set

	set *redact.Set    // the set rw redacts with
	rw  *redact.Writer // nil when set is nil
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.secrets != nil {
		if s := c.secrets(); s != c.set {
			c.flushLocked()
			c.set, c.rw = s, nil
			if s != nil {
				c.rw = s.Writer(cappedRaw{c})
			}
		}
	}
	if c.rw != nil {
		c.rw.Write(p)
	} else {
		c.writeLocked(p)
	}
	return len(p), nil
}

// cappedRaw is the cappedWriter below its redactor; its lock is held.
type cappedRaw struct{ c *cappedWriter }

func (r cappedRaw) Write(p []byte) (int, error) { r.c.writeLocked(p); return len(p), nil }

func (c *cappedWriter) writeLocked(p []byte) {
	if c.f != nil && c.n < c.max {
		q := p[:min(int64(len(p)), c.max-c.n)]
		n, _ := c.f.Write(q)
		c.n += int64(n)
	}
}

func (c *cappedWriter) flushLocked() {
	if c.rw != nil {
		c.rw.Flush()
	}
}

func (c *cappedWriter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}

// capture keeps one exec stream: all of it (up to outFileCap) in a host
// file, and its first and last bytes in memory for the tool result.
type capture struct {
	file  cappedWriter
	head  []byte
	tail  []byte
	total int64
}

func newCapture(path string) *capture {
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	return &capture{file: cappedWriter{f: f, max: outFileCap}}
}

func (c *capture) Write(p []byte) (int, error) {
	n0 := len(p)
	c.file.Write(p)
	c.total += int64(len(p))
	if room := outHeadCap - len(c.head); room > 0 {
		n := min(room, len(p))
		c.head = append(c.head, p[:n]...)
		p = p[n:]
	}
	if len(p) > 0 {
		c.tail = append(c.tail, p...)
		if len(c.tail) > 2*outTailCap {
			c.tail = append(c.tail[:0], c.tail[len(c.tail)-outTailCap:]...)
		}
	}
	return n0, nil
}

// bytes returns the output, or its head and tail around a marker when it
// is longer than the two together.
func (c *capture) bytes() []byte {
	if len(c.tail) > outTailCap {
		c.tail = c.tail[len(c.tail)-outTailCap:]
	}
	out := append([]byte(nil), c.head...)
	if omitted := c.total - int64(len(c.head)+len(c.tail)); omitted > 0 {
		out = append(out, fmt.Sprintf("\n[... %d bytes omitted; the host file has them ...]\n", omitted)...)
	}
	return append(out, c.tail...)
}

// loadEnv returns the built environment name, or the *contract.Error to give.
func (m *Manager) loadEnv(ctx context.Context, name string) (*env.Env, error) {
	var (
		e   *env.Env
		err error
	)
	if m.opts.LoadEnv != nil {
		e, err = m.opts.LoadEnv(ctx, name)
	} else {
		e, err = env.Load(m.opts.CacheRoot, name)
	}
	if err == nil {
		return e, nil
	}
	var nb *env.NotBuiltError
	if errors.As(err, &nb) {
		hint := fmt.Sprintf("Ask the user to run `pyro env build %s` on the host (takes about a minute), then retry.", name)
		if nb.Reason != "" {
			hint = fmt.Sprintf("It is %s. ", nb.Reason) + hint
		}
		me := contract.EnvMissing(name).WithHint(hint)
		me.Err = err
		return nil, me
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, contract.Internal("loading environment "+name, err)
}

// envName resolves a requested environment name ("" is the default;
// "debian-12" is read as "debian-12").
func (m *Manager) envName(name string) (string, error) {
	if name == "" {
		name = m.opts.DefaultEnv
	}
	if _, err := env.Lookup(name); err == nil {
		return name, nil
	}
	if alt := strings.ReplaceAll(name, ":", "-"); alt != name {
		if _, err := env.Lookup(alt); err == nil {
			return alt, nil
		}
	}
	var names []string
	for _, s := range env.Specs() {
		names = append(names, s.Name)
	}
	return "", contract.NotFound(contract.ResourceEnv, name).
		WithHint("Known environments: " + strings.Join(names, ", ") + " ({{env.list}} says which are built).")
}

// guestError turns an error from the guest agent about path into an
// *contract.Error the agent can act on.
func guestError(what, path string, err error) error {
	if _, ok := contract.AsError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pe *proto.Error
	code := ""
	if errors.As(err, &pe) {
		code = pe.Code
	}
	var e *contract.Error
	switch {
	case code == "EXDEV":
		e = contract.Invalid("%s leads outside /workspace (through .. or a symlink)", path).
			WithHint("Use a path inside /workspace; {{exec}} can reach the rest of the guest.")
	case errors.Is(err, fs.ErrNotExist):
		e = contract.NotFound(contract.ResourceFile, path).WithHint("List the directory with {{file.list}} to see what is there.")
	case code == "EISDIR":
		e = contract.Invalid("%s is a directory", path).WithHint("Use {{file.list}} for directories.")
	case code == "ENOTDIR":
		e = contract.Invalid("%s: a component of the path is not a directory", path)
	case errors.Is(err, fs.ErrPermission):
		e = contract.Invalid("%s: permission denied in the guest", path)
	case code == "ENOSPC" || code == "EDQUOT":
		e = contract.LimitReached("the workspace's disk is full").
			WithHint("Delete files you no longer need ({{exec}} rm), or reset the workspace.")
	case code == proto.CodeInvalid:
		e = contract.Invalid("%s: %s", path, pe.Message)
	default:
		return contract.Internal(what, err)
	}
	e.Err = err
	return e
}
