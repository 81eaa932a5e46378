package workspace

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// steps is a fake guest's background command, driven by the test: each
// value sent on it is written to stdout (send returns once it is); closing
// it ends the command with exit 3 and "done" on stderr. A command whose
// context ends first returns the context's error, as the agent client
// does when its stream closes.
type steps struct {
	mu   sync.Mutex
	chs  map[string]chan string
	acks map[string]chan struct{} // one value for each line written
	ran  map[string]chan struct{} // closed when the command starts
}

func newSteps(h *harness) *steps {
	s := &steps{chs: map[string]chan string{}, acks: map[string]chan struct{}{}, ran: map[string]chan struct{}{}}
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		ch, started := s.get(req.Shell)
		close(started)
		s.mu.Lock()
		ack := s.acks[req.Shell]
		s.mu.Unlock()
		for {
			select {
			case line, ok := <-ch:
				if !ok {
					io.WriteString(stderr, "done\n")
					return proto.ExecResult{ExitCode: 3}, nil
				}
				io.WriteString(stdout, line)
				ack <- struct{}{}
			case <-ctx.Done():
				return proto.ExecResult{}, ctx.Err()
			}
		}
	}
	return s
}

func (s *steps) get(cmd string) (chan string, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chs[cmd] == nil {
		s.chs[cmd], s.acks[cmd], s.ran[cmd] = make(chan string), make(chan struct{}), make(chan struct{})
	}
	return s.chs[cmd], s.ran[cmd]
}

// send writes line to cmd's stdout and returns once it is written.
func (s *steps) send(cmd, line string) {
	ch, _ := s.get(cmd)
	ch <- line
	s.mu.Lock()
	ack := s.acks[cmd]
	s.mu.Unlock()
	<-ack
}

func (s *steps) end(cmd string) {
	ch, _ := s.get(cmd)
	close(ch)
}

func (s *steps) started(t *testing.T, cmd string) {
	t.Helper()
	_, ran := s.get(cmd)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never started", cmd)
	}
}

func (h *harness) poll(req contract.PollRequest) contract.BackgroundExec {
	h.t.Helper()
	v, err := h.m.ExecPoll(bg, req)
	if err != nil {
		h.t.Fatalf("poll %d: %v", req.Seq, err)
	}
	return v
}

func (h *harness) startBg(id, cmd string) contract.BackgroundExec {
	h.t.Helper()
	v, err := h.m.ExecStart(bg, contract.ExecRequest{ID: id, Command: cmd})
	if err != nil {
		h.t.Fatalf("start %s: %v", cmd, err)
	}
	return v
}

// A background command runs on after ExecStart returns; polls see its
// output grow, from an offset, and then its end, exit code and stderr;
// the journal says running, then how it ended; the reaper leaves the
// workspace alone while it runs.
func TestBackgroundExec(t *testing.T) {
	h := newHarness(t)
	s := newSteps(h)
	id := h.create(contract.CreateRequest{TTLSeconds: 60}).ID
	v := h.startBg(id, "build")
	if v.State != contract.ExecRunning || v.Seq == 0 || v.TimeoutSeconds != contract.DefaultBackgroundTimeout || v.Result.StdoutPath == "" {
		t.Fatalf("started: %+v", v)
	}
	s.started(t, "build")
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	if e := logs.Entries[len(logs.Entries)-1]; e.Seq != v.Seq || e.ExitCode != nil || e.Detail != bgRunning {
		t.Fatalf("journal while running: %+v", e)
	}
	if ws, _ := h.m.Status(bg, id); len(ws.Background) != 1 || ws.Background[0].Seq != v.Seq || ws.Background[0].Command != "build" {
		t.Fatalf("status while running: %+v", ws.Background)
	}

	s.send("build", "line 1\n")
	s.send("build", "line 2\n")
	p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq})
	if p.State != contract.ExecRunning || string(p.Result.Stdout) != "line 1\nline 2\n" || p.StdoutNext != 14 || p.Result.StdoutSize != 14 {
		t.Fatalf("first poll: %+v %q", p, p.Result.Stdout)
	}
	// Idle past the TTL: a running background command keeps it alive.
	h.clock.advance(time.Hour)
	h.m.reap()
	if ws, _ := h.m.Status(bg, id); ws.State != contract.StateRunning {
		t.Fatalf("expired while a background command ran: %s", ws.State)
	}

	s.send("build", "x\nline 3\n")
	p = h.poll(contract.PollRequest{ID: id, Seq: v.Seq, StdoutOffset: p.StdoutNext})
	if p.State != contract.ExecRunning || string(p.Result.Stdout) != "x\nline 3\n" || p.StdoutNext != 23 {
		t.Fatalf("second poll: %+v %q", p, p.Result.Stdout)
	}
	// A bounded wait returns at its end while the command runs on.
	p = h.poll(contract.PollRequest{ID: id, Seq: v.Seq, StdoutOffset: p.StdoutNext, Wait: 10 * time.Millisecond})
	if p.State != contract.ExecRunning || len(p.Result.Stdout) != 0 {
		t.Fatalf("waited poll: %+v", p)
	}
	s.end("build")
	p = h.poll(contract.PollRequest{ID: id, Seq: v.Seq, StdoutOffset: 14, Wait: 10 * time.Second})
	if p.State != contract.ExecExited || p.Result.ExitCode != 3 || string(p.Result.Stdout) != "x\nline 3\n" ||
		string(p.Result.Stderr) != "done\n" || p.StderrNext != 5 || p.Result.StdoutSize != 23 {
		t.Fatalf("ended: %+v", p)
	}
	if b, _ := os.ReadFile(p.Result.StdoutPath); string(b) != "line 1\nline 2\nx\nline 3\n" {
		t.Fatalf("stdout file: %q", b)
	}
	logs, _ = h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	e := logs.Entries[len(logs.Entries)-1]
	if e.Seq != v.Seq || e.ExitCode == nil || *e.ExitCode != 3 || e.Detail != bgDetail {
		t.Fatalf("journal after the end: %+v", e)
	}
	if ws, _ := h.m.Status(bg, id); len(ws.Background) != 0 {
		t.Fatalf("status after the end: %+v", ws.Background)
	}
	list, _ := h.m.ExecList(bg, id)
	if len(list) != 1 || list[0].State != contract.ExecExited || list[0].Result.ExitCode != 3 {
		t.Fatalf("list: %+v", list)
	}
	// The TTL counts from the end now.
	h.clock.advance(2 * time.Minute)
	h.m.reap()
	if ws, _ := h.m.Status(bg, id); ws.State != contract.StateExpired {
		t.Fatalf("idle past its TTL after the command ended: %s", ws.State)
	}
	// An ended command stays readable on a stopped workspace.
	if p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq}); p.State != contract.ExecExited || string(p.Result.Stdout) != "line 1\nline 2\nx\nline 3\n" {
		t.Fatalf("poll of an expired workspace's command: %+v", p)
	}
}

// Kill ends a command and keeps its output so far; stop, reset and
// delete end the running ones, each named as the reason.
func TestBackgroundKillStopResetDelete(t *testing.T) {
	h := newHarness(t)
	s := newSteps(h)
	id := h.create(contract.CreateRequest{}).ID

	v := h.startBg(id, "serve")
	s.send("serve", "listening\n")
	p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq, Kill: true})
	if p.State != contract.ExecKilled || !strings.Contains(p.Reason, "kill") || string(p.Result.Stdout) != "listening\n" {
		t.Fatalf("killed: %+v %q", p, p.Result.Stdout)
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	if e := logs.Entries[len(logs.Entries)-1]; e.Seq != v.Seq || e.ExitCode != nil || !strings.HasPrefix(e.Detail, bgEndSep+"killed: ") {
		t.Fatalf("journal after a kill: %+v", e)
	}
	// A second kill changes nothing.
	if p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq, Kill: true}); p.State != contract.ExecKilled || p.Reason != "killed on request ({{exec.status}} kill)" {
		t.Fatalf("killed again: %+v", p)
	}

	for _, op := range []struct {
		name, why string
		do        func() error
	}{
		{"stop", "{{stop}}", func() error { _, err := h.m.Stop(bg, id); return err }},
		{"reset", "{{reset}}", func() error {
			if _, err := h.m.Start(bg, id); err != nil {
				return err
			}
			_, err := h.m.Reset(bg, id, "")
			return err
		}},
	} {
		if h.handle(id) == nil {
			if _, err := h.m.Start(bg, id); err != nil {
				t.Fatal(err)
			}
		}
		cmd := "job-" + op.name
		v := h.startBg(id, cmd)
		s.started(t, cmd)
		if err := op.do(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		// The op waited for the command to record its end.
		p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq})
		if p.State != contract.ExecKilled || !strings.Contains(p.Reason, op.why) {
			t.Fatalf("after %s: %+v", op.name, p)
		}
	}

	v = h.startBg(id, "job-delete")
	s.started(t, "job-delete")
	if err := h.m.Delete(bg, id); err != nil {
		t.Fatal(err)
	}
	_, err := h.m.ExecPoll(bg, contract.PollRequest{ID: id, Seq: v.Seq})
	wantCode(t, err, contract.CodeNotFound)
}

func (h *harness) handle(id string) *vmHandle {
	w, err := h.m.get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return w.handle()
}

// A VM that dies under a background command loses it; a workspace runs
// at most MaxBackground at once; a command that cannot start fails.
func TestBackgroundLostLimitFailed(t *testing.T) {
	h := newHarness(t)
	s := newSteps(h)
	id := h.create(contract.CreateRequest{}).ID
	var seqs []int64
	for i := range contract.MaxBackground {
		cmd := fmt.Sprint("job", i)
		seqs = append(seqs, h.startBg(id, cmd).Seq)
		s.started(t, cmd)
	}
	_, err := h.m.ExecStart(bg, contract.ExecRequest{ID: id, Command: "one too many"})
	wantCode(t, err, contract.CodeLimit)
	h.vm(id).Kill() // the guest dies
	for _, seq := range seqs {
		p := h.poll(contract.PollRequest{ID: id, Seq: seq, Wait: 10 * time.Second})
		if p.State != contract.ExecLost || !strings.Contains(p.Reason, "VM stopped by itself") {
			t.Fatalf("after the VM died: %+v", p)
		}
	}
	for h.handle(id) != nil {
		time.Sleep(time.Millisecond) // the watcher marks it stopped
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		return proto.ExecResult{}, &proto.Error{Code: "ENOENT", Message: "chdir /nope: no such file or directory"}
	}
	v, err := h.m.ExecStart(bg, contract.ExecRequest{ID: id, Command: "x", Cwd: "/nope"})
	if err != nil {
		t.Fatal(err)
	}
	p := h.poll(contract.PollRequest{ID: id, Seq: v.Seq, Wait: 10 * time.Second})
	if p.State != contract.ExecFailed || !strings.Contains(p.Reason, "/nope") {
		t.Fatalf("a command that cannot start: %+v", p)
	}
}

// A server killed while a background command ran leaves its journal line
// saying running: the next Open journals it as lost, and a poll answers
// from the journal and the output file. So does a poll of a foreground
// exec; an unknown seq is not found.
func TestBackgroundAfterCrash(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	fg, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "echo hi"})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := h.m.get(id)
	seq := w.journal.reserve()
	if _, err := w.journal.append(entry{Seq: seq, Time: h.clock.now(), Kind: contract.LogExec, Command: "make", Detail: bgRunning}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(w.dir, outDir, fmt.Sprint(seq)+".stdout")
	if err := os.WriteFile(out, []byte("compiling\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.crash()
	h.open()

	p := h.poll(contract.PollRequest{ID: id, Seq: seq})
	if p.State != contract.ExecLost || !strings.Contains(p.Reason, "server stopped") || string(p.Result.Stdout) != "compiling\n" || p.Result.StdoutPath != out {
		t.Fatalf("after a crash: %+v", p)
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 100})
	for _, e := range logs.Entries {
		if e.Seq == seq && e.Detail == bgRunning {
			t.Fatalf("still journaled as running: %+v", e)
		}
	}
	p = h.poll(contract.PollRequest{ID: id, Seq: fg.Seq})
	if p.State != contract.ExecExited || p.Result.ExitCode != 0 || string(p.Result.Stdout) != "ran: echo hi\n" {
		t.Fatalf("poll of a foreground exec: %+v", p)
	}
	_, err = h.m.ExecPoll(bg, contract.PollRequest{ID: id, Seq: 9999})
	wantCode(t, err, contract.CodeNotFound)
}

// readWindow: a long stream comes back as head and tail around a marker,
// a running one's end never splits a character, and bytes past the host
// file come from the kept tail.
func TestReadWindow(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	big := strings.Repeat("a", outHeadCap) + strings.Repeat("b", 100) + strings.Repeat("c", outTailCap)
	os.WriteFile(p, []byte(big), 0o600)
	b, next := readWindow(p, 0, int64(len(big)), nil, false)
	if next != int64(len(big)) || !strings.Contains(string(b), "[... 100 bytes omitted ...]") || strings.Contains(string(b), "ab") || !strings.HasSuffix(string(b), "ccc") {
		t.Fatalf("long: next %d, %d bytes", next, len(b))
	}
	os.WriteFile(p, []byte("héllo €"), 0o600) // € is 3 bytes
	// The file as if it held 9 bytes, from offset 2 (inside "é", whose
	// last byte comes as it is): "€" is cut.
	b, next = readWindow(p, 2, 9, nil, true)
	if next != 7 || string(b) != "\xa9llo " {
		t.Fatalf("running, cut character: next %d %q", next, b)
	}
	if b, next := readWindow(p, 7, 10, nil, false); next != 10 || string(b) != "€" {
		t.Fatalf("the rest: next %d %q", next, b)
	}
	// 5 bytes in the file, 3 more only in the tail, 2 between lost.
	os.WriteFile(p, []byte("01234"), 0o600)
	b, next = readWindow(p, 0, 10, []byte("789"), false)
	if next != 10 || string(b) != "01234\n[... 2 bytes not kept ...]\n789" {
		t.Fatalf("tail beyond the file: next %d %q", next, b)
	}
	if b, next := readWindow(filepath.Join(dir, "gone"), 3, 10, nil, false); next != 10 || string(b) != "\n[... 7 bytes not kept ...]\n" {
		t.Fatalf("pruned file: next %d %q", next, b)
	}
}

// A VM that crashes says how: the workspace's error and the error of a
// call on it name the VMM's reason and the first line of its detail (the
// registers after it go to the log only).
func TestCrashSaysWhy(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	h.vm(id).crashWith("vCPU 1: triple fault (KVM_EXIT_SHUTDOWN)\nRIP 0xffffffff81000000 RSP 0x0")
	for h.handle(id) != nil {
		time.Sleep(time.Millisecond) // the watcher marks it stopped
	}
	const want = "the VM stopped by itself (crash: vCPU 1: triple fault (KVM_EXIT_SHUTDOWN)); {{start}} boots it again"
	st, err := h.m.Status(bg, id)
	if err != nil || st.Error != want {
		t.Errorf("status error %q (%v), want %q", st.Error, err, want)
	}
	_, err = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "true"})
	wantCode(t, err, contract.CodeStopped)
	if !strings.HasSuffix(err.Error(), ": "+want) || strings.Contains(err.Error(), "RIP") {
		t.Errorf("exec on the crashed workspace: %v", err)
	}
}
