package workspace

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/treediff"
)

// The workspace side of the hostile-agent tests (the wire side is in
// guest/agent/proto/hostile_test.go): a liar wraps the fake VM's confined
// client and, once a test arms it, answers as a compromised agent would,
// within what proto.Client lets through (a read never returns more than
// its max). Each test asserts the tool call ends with a clear error and
// that the host asked for, and held, no more than the stated bound.

type liar struct {
	guest // the honest fake, for everything not armed
	mu    sync.Mutex
	// sizes lies about files' sizes in Stat answers; reads of those
	// files serve 64-byte lines of "x" up to the lie, then EOF.
	sizes map[string]int64
	// endless makes reads never reach EOF: every read returns all it may.
	endless bool
	// tarOut replaces the archive TarOut streams.
	tarOut func() io.ReadCloser
	// listErr is List's answer.
	listErr error

	served atomic.Int64 // bytes the lying reads returned
}

func (l *liar) Stat(ctx context.Context, p string) (proto.FileInfo, error) {
	fi, err := l.guest.Stat(ctx, p)
	l.mu.Lock()
	defer l.mu.Unlock()
	if size, ok := l.sizes[p]; ok {
		fi, err = proto.FileInfo{Name: p[strings.LastIndexByte(p, '/')+1:], Type: proto.TypeFile, Mode: 0o644, Size: size}, nil
	}
	return fi, err
}

// readStop bounds what a lying read serves in all, so that a host
// without the bound under test fails the test, not the machine.
const readStop = 2 * maxPatchTotal

func (l *liar) ReadFile(ctx context.Context, p string, off, limit int64) ([]byte, proto.ReadResult, error) {
	l.mu.Lock()
	size, lied := l.sizes[p]
	endless := l.endless
	l.mu.Unlock()
	if !lied && !endless {
		return l.guest.ReadFile(ctx, p, off, limit)
	}
	n := min(limit, 1<<20)
	eof := false
	if !endless {
		n = max(0, min(n, size-off))
		eof = off+n >= size
	}
	if l.served.Add(n) > readStop {
		return nil, proto.ReadResult{}, fmt.Errorf("test: the host read more than %d bytes", readStop)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
		if (off+int64(i))%64 == 63 {
			b[i] = '\n' // 64-byte lines a patch can match
		}
	}
	return b, proto.ReadResult{Size: size, N: n, EOF: eof}, nil
}

func (l *liar) TarOut(ctx context.Context, dir string) (io.ReadCloser, error) {
	l.mu.Lock()
	f := l.tarOut
	l.mu.Unlock()
	if f == nil {
		return l.guest.TarOut(ctx, dir)
	}
	return f(), nil
}

func (l *liar) List(ctx context.Context, p string, recursive bool, limit int) ([]proto.FileInfo, bool, error) {
	l.mu.Lock()
	err := l.listErr
	l.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	return l.guest.List(ctx, p, recursive, limit)
}

// hostileHarness is a harness whose VMs' file clients are liars; the
// returned liar is the one of the latest boot.
func hostileHarness(t *testing.T) (*harness, func() *liar) {
	var mu sync.Mutex
	var last *liar
	h := newHarness(t, func(o *Options) {
		boot := o.hooks.boot
		o.hooks.boot = func(ctx context.Context, spec bootSpec) (*booted, error) {
			b, err := boot(ctx, spec)
			if err != nil {
				return nil, err
			}
			l := &liar{guest: b.Files, sizes: map[string]int64{}}
			b.Files = l
			mu.Lock()
			last = l
			mu.Unlock()
			return b, nil
		}
	})
	return h, func() *liar { mu.Lock(); defer mu.Unlock(); return last }
}

func TestHostilePatchHugeFile(t *testing.T) {
	h, liarOf := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "big.log", "one\n")
	l := liarOf()
	l.mu.Lock()
	l.sizes["/workspace/big.log"] = 1 << 40 // truncate -s 1T
	l.mu.Unlock()

	_, err := h.m.ApplyPatch(bg, id, "--- a/big.log\n+++ b/big.log\n@@ -1 +1 @@\n-one\n+two\n")
	e := wantCode(t, err, contract.CodeLimit)
	for _, want := range []string{"big.log", "1099511627776 bytes", "16 MiB"} {
		if !strings.Contains(e.Msg, want) {
			t.Errorf("error %q does not say %q", e.Msg, want)
		}
	}
	for _, want := range []string{"{{exec}}", "{{file.write}}", "Nothing was changed"} {
		if !strings.Contains(e.Hint, want) {
			t.Errorf("hint %q does not say %q", e.Hint, want)
		}
	}
	if n := l.served.Load(); n != 0 {
		t.Errorf("the host read %d bytes of a file over the limit", n)
	}
	if got, _ := h.vm(id).file("/workspace/big.log"); got != "one\n" {
		t.Errorf("big.log = %q after a refused patch", got)
	}
}

// An agent that reports a small size and then streams without end: the
// host reads the reported size and one byte more.
func TestHostilePatchEndlessRead(t *testing.T) {
	h, liarOf := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "a.txt", "one\n")
	l := liarOf()
	l.mu.Lock()
	l.endless = true
	l.mu.Unlock()

	pr, err := h.m.ApplyPatch(bg, id, "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+two\n")
	if err != nil || pr.Applied || len(pr.Files) != 1 || !strings.Contains(pr.Files[0].Error, "a.txt grew while it was read") {
		t.Fatalf("patch over an endless read: %+v, %v; want not applied, the file grew", pr, err)
	}
	if n := l.served.Load(); n > 5 {
		t.Errorf("the host read %d bytes of a file reported as 4", n)
	}
}

// Files each under the per-file bound, together over the per-patch one.
func TestHostilePatchTotal(t *testing.T) {
	h, liarOf := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	l := liarOf()
	var patch strings.Builder
	for i := range 5 {
		name := fmt.Sprintf("f%d.bin", i)
		h.write(id, name, "x\n")
		l.mu.Lock()
		l.sizes["/workspace/"+name] = 15 << 20
		l.mu.Unlock()
		fmt.Fprintf(&patch, "--- a/%s\n+++ b/%s\n@@ -1 +1 @@\n-%s\n+y\n", name, name, strings.Repeat("x", 63))
	}
	_, err := h.m.ApplyPatch(bg, id, patch.String())
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "f4.bin") || !strings.Contains(e.Msg, "64 MiB") {
		t.Errorf("error %q does not name f4.bin and the 64 MiB bound", e.Msg)
	}
	if n := l.served.Load(); n > maxPatchTotal {
		t.Errorf("one patch read %d bytes; the bound is %d", n, maxPatchTotal)
	}
}

// Lines cost mcp/patch more than bytes: a file of empty lines is refused
// by its line count.
func TestHostilePatchLines(t *testing.T) {
	h, _ := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.write(id, "small.txt", "a\n")
	h.write(id, "lines.txt", strings.Repeat("\n", maxPatchLines+10))
	_, err := h.m.ApplyPatch(bg, id, "--- a/small.txt\n+++ b/small.txt\n@@ -1 +1 @@\n-a\n+b\n"+
		"--- a/lines.txt\n+++ b/lines.txt\n@@ -1 +1 @@\n-\n+x\n")
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "lines.txt") || !strings.Contains(e.Msg, "lines") {
		t.Errorf("error %q does not name lines.txt and its lines", e.Msg)
	}
	if got, _ := h.vm(id).file("/workspace/small.txt"); got != "a\n" {
		t.Errorf("small.txt = %q after a refused patch", got)
	}
}

// endlessTree streams a tar of new files with 4000-byte names under dir,
// until the reader closes (or stop entries).
func endlessTree(dir string, stop int, made *atomic.Int64) func() io.ReadCloser {
	return func() io.ReadCloser {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			long := strings.Repeat("d", 4000)
			for i := range stop {
				h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%s/%s/%07d", dir, long, i), Mode: 0o644, ModTime: time.Unix(1e9, 0)}
				if tw.WriteHeader(h) != nil {
					return
				}
				made.Add(1)
			}
			pw.CloseWithError(tw.Close())
		}()
		return pr
	}
}

func TestHostileDiffEndless(t *testing.T) {
	h, liarOf := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	l := liarOf()
	bound := treediff.DefaultMaxPathBytes / 4000 // entries the path bound allows
	var made atomic.Int64
	l.mu.Lock()
	l.tarOut = endlessTree("junk", 4*bound, &made)
	l.mu.Unlock()

	_, err := h.m.Diff(bg, contract.DiffRequest{ID: id})
	e := wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "too many changes; narrow with path") || !strings.Contains(e.Hint, "path") {
		t.Errorf("error %q (hint %q) does not say to narrow with path", e.Msg, e.Hint)
	}
	if n := made.Load(); n > int64(bound)+2 {
		t.Errorf("the host read %d entries; its bound stops it at %d", n, bound)
	}

	// Narrowed to a path the junk is not under, the same tree diffs.
	l.mu.Lock()
	l.tarOut = endlessTree("junk", bound+100, &made)
	l.mu.Unlock()
	d, err := h.m.Diff(bg, contract.DiffRequest{ID: id, Path: "src"})
	if err != nil || len(d.Files) != 0 {
		t.Fatalf("diff narrowed to src: %+v, %v", d, err)
	}
}

func TestHostileListBounds(t *testing.T) {
	h, liarOf := hostileHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	_, err := h.m.ListFiles(bg, contract.ListFilesRequest{ID: id, Offset: contract.MaxListOffset + 1, Limit: 10})
	e := wantCode(t, err, contract.CodeInvalid)
	if !strings.Contains(e.Msg, "cursor") || !strings.Contains(e.Hint, "subdirectory") {
		t.Errorf("far cursor: %q (hint %q)", e.Msg, e.Hint)
	}
	// At the bound the listing runs (and asks the agent for no more
	// than the bound and a page).
	if _, err := h.m.ListFiles(bg, contract.ListFilesRequest{ID: id, Offset: contract.MaxListOffset, Limit: 10}); err != nil {
		t.Errorf("cursor at the bound: %v", err)
	}

	l := liarOf()
	l.mu.Lock()
	l.listErr = &proto.Error{Code: proto.CodeTooLarge, Message: "listing holds more than 64 MiB of names"}
	l.mu.Unlock()
	_, err = h.m.ListFiles(bg, contract.ListFilesRequest{ID: id, Recursive: true, Limit: 10})
	e = wantCode(t, err, contract.CodeLimit)
	if !strings.Contains(e.Msg, "64 MiB") || !strings.Contains(e.Hint, "subdirectory") || !errors.Is(err, e.Err) {
		t.Errorf("listing over the answer bound: %q (hint %q)", e.Msg, e.Hint)
	}
}
