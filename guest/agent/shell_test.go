package agent

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

func TestShellRing(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, max := range []int{1, 7, 64} {
		r := shellRing{max: max}
		var all []byte
		for i := 0; i < 200; i++ {
			p := make([]byte, rng.Intn(3*max))
			rng.Read(p)
			r.write(p)
			all = append(all, p...)
			if r.end != int64(len(all)) || r.end-r.start() > int64(max) || len(r.b) > max {
				t.Fatalf("max %d: end %d start %d len %d after %d bytes", max, r.end, r.start(), len(r.b), len(all))
			}
			from := r.start() + int64(rng.Intn(int(r.end-r.start())+1))
			got := make([]byte, r.end-from+3)
			n := r.read(from, got)
			if !bytes.Equal(got[:n], all[from:]) {
				t.Fatalf("max %d: read from %d: %x, want %x", max, from, got[:n], all[from:])
			}
		}
	}
}

// shellUntil reads shell id from *cursor until the output read so far
// contains want, and returns it.
func shellUntil(t *testing.T, c *proto.Client, id int, cursor *int64, want string) string {
	t.Helper()
	var got []byte
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		data, res, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: id, Cursor: *cursor, WaitMs: 2000})
		if err != nil {
			t.Fatalf("reading shell %d: %v", id, err)
		}
		got = append(got, data...)
		*cursor = res.Next
		if strings.Contains(string(got), want) {
			return string(got)
		}
		if res.Exited {
			break
		}
	}
	t.Fatalf("shell %d: %q never arrived; got %q", id, want, got)
	return ""
}

func openSh(t *testing.T, c *proto.Client, args proto.ShellOpenArgs) proto.ShellInfo {
	t.Helper()
	if args.Env == nil {
		args.Env = map[string]string{"PS1": "pyro$ "}
	}
	si, err := c.ShellOpen(ctxT(t), args)
	if err != nil {
		t.Fatalf("shell_open: %v", err)
	}
	t.Cleanup(func() { c.ShellClose(context.Background(), si.ID, time.Second) })
	return si
}

func TestShellInteractive(t *testing.T) {
	c := newClient(t)
	dir := t.TempDir()
	si := openSh(t, c, proto.ShellOpenArgs{Argv: []string{"/bin/sh", "-i"}, Cwd: dir, Cols: 100, Rows: 30})
	if si.PID <= 1 || si.Cols != 100 || si.Rows != 30 || si.ID <= 0 {
		t.Fatalf("shell_open: %+v", si)
	}
	var cur int64
	shellUntil(t, c, si.ID, &cur, "pyro$ ")
	if _, err := c.ShellWrite(ctxT(t), si.ID, []byte("echo $((6*7)); pwd; stty size\n")); err != nil {
		t.Fatal(err)
	}
	out := shellUntil(t, c, si.ID, &cur, "100\r\npyro$ ")
	if !strings.Contains(out, "\r\n42\r\n"+dir+"\r\n30 100\r\n") {
		t.Errorf("output %q", out)
	}

	// A resize reaches the program.
	if err := c.ShellResize(ctxT(t), si.ID, 132, 43); err != nil {
		t.Fatal(err)
	}
	c.ShellWrite(ctxT(t), si.ID, []byte("stty size\n"))
	shellUntil(t, c, si.ID, &cur, "43 132\r\n")

	// Ctrl-C, as a signal to the foreground group, ends sleep and the
	// prompt returns; and as the byte a person types.
	for _, how := range []string{"signal", "byte"} {
		c.ShellWrite(ctxT(t), si.ID, []byte("sleep 100; echo slept\n"))
		shellUntil(t, c, si.ID, &cur, "sleep 100; echo slept\r\n")
		time.Sleep(100 * time.Millisecond) // let sleep start
		if how == "signal" {
			pg, err := c.ShellSignal(ctxT(t), si.ID, "INT")
			if err != nil || pg <= 1 || pg == si.PID {
				t.Fatalf("signal: group %d (shell %d), %v", pg, si.PID, err)
			}
		} else {
			c.ShellWrite(ctxT(t), si.ID, []byte{3})
		}
		out := shellUntil(t, c, si.ID, &cur, "pyro$ ")
		if strings.Contains(out, "slept") {
			t.Errorf("%s: the interrupted line went on: %q", how, out)
		}
	}

	// Let the terminal settle (the echo of a typed ^C may trail the
	// prompt), then a read without wait returns at once, with nothing new.
	if _, res, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: cur, WaitMs: 3000, IdleMs: 500}); err == nil {
		cur = res.Next
	}
	data, res, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: cur})
	if err != nil || len(data) != 0 || res.Next != cur || res.End != cur || res.Exited {
		t.Errorf("idle read: %q %+v %v", data, res, err)
	}
	// An idle wait returns once output stops.
	c.ShellWrite(ctxT(t), si.ID, []byte("echo a; sleep 0.3; echo b\n"))
	t0 := time.Now()
	data, _, err = c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: cur, WaitMs: 10000, IdleMs: 1000})
	if err != nil || !strings.Contains(string(data), "a\r\nb\r\npyro$ ") || time.Since(t0) > 9*time.Second {
		t.Errorf("idle wait: %q after %v, %v", data, time.Since(t0), err)
	}

	list, err := c.ShellList(ctxT(t))
	if err != nil || len(list) != 1 || list[0].ID != si.ID || list[0].Cols != 132 || list[0].End < cur {
		t.Errorf("list: %+v %v", list, err)
	}
	c.ShellWrite(ctxT(t), si.ID, []byte("exit 3\n"))
	for {
		_, res, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: cur, WaitMs: 5000})
		if err != nil {
			t.Fatal(err)
		}
		cur = res.Next
		if res.Exited {
			if res.ExitCode != 3 {
				t.Errorf("exit: %+v", res)
			}
			break
		}
	}
	if _, err := c.ShellWrite(ctxT(t), si.ID, []byte("x")); errCode(err) != "EPIPE" {
		t.Errorf("write after exit: %v", err)
	}
	fin, err := c.ShellClose(ctxT(t), si.ID, 0)
	if err != nil || !fin.Exited || fin.ExitCode != 3 {
		t.Errorf("close: %+v %v", fin, err)
	}
	if _, _, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read after close: %v", err)
	}
}

// 5 MiB through a terminal: the buffer keeps its last ShellBuffer bytes
// and the cursors count every byte.
func TestShellBoundedOutput(t *testing.T) {
	c := newClient(t)
	const total = 5 << 20
	si := openSh(t, c, proto.ShellOpenArgs{Argv: []string{"head", "-c", "5242880", "/dev/zero"}})
	var res proto.ShellReadResult
	for !res.Exited {
		var err error
		_, res, err = c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: res.End, Max: 1, WaitMs: 5000, IdleMs: 2000})
		if err != nil {
			t.Fatal(err)
		}
	}
	data, res, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: 0, Max: proto.ShellBuffer})
	if err != nil {
		t.Fatal(err)
	}
	if res.End != total || res.Cursor != total-proto.ShellBuffer || res.Dropped != res.Cursor || res.Next != total ||
		len(data) != proto.ShellBuffer || bytes.Count(data, []byte{0}) != len(data) || res.ExitCode != 0 {
		t.Errorf("read from 0: %d bytes, %+v", len(data), res)
	}
	if _, _, err := c.ShellRead(ctxT(t), proto.ShellReadArgs{ID: si.ID, Cursor: total + 1}); errCode(err) != proto.CodeInvalid {
		t.Errorf("read past the end: %v", err)
	}
}

func TestShellClose(t *testing.T) {
	c := newClient(t)
	// A shell that ignores SIGHUP is killed after the grace.
	si := openSh(t, c, proto.ShellOpenArgs{Command: "trap '' HUP; echo ready; sleep 100"})
	var cur int64
	shellUntil(t, c, si.ID, &cur, "ready")
	t0 := time.Now()
	fin, err := c.ShellClose(ctxT(t), si.ID, 200*time.Millisecond)
	if err != nil || !fin.Exited || fin.Signal != "SIGKILL" {
		t.Errorf("close: %+v %v", fin, err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("close took %v", d)
	}
	if list, _ := c.ShellList(ctxT(t)); len(list) != 0 {
		t.Errorf("left: %+v", list)
	}
}

func TestShellBadRequests(t *testing.T) {
	c := newClient(t)
	si := openSh(t, c, proto.ShellOpenArgs{Argv: []string{"cat"}})
	for name, err := range map[string]error{
		"argv and command": func() error {
			_, err := c.ShellOpen(ctxT(t), proto.ShellOpenArgs{Argv: []string{"sh"}, Command: "true"})
			return err
		}(),
		"missing program": func() error {
			_, err := c.ShellOpen(ctxT(t), proto.ShellOpenArgs{Argv: []string{"no-such-program-pyro"}})
			return err
		}(),
		"size": func() error {
			_, err := c.ShellOpen(ctxT(t), proto.ShellOpenArgs{Cols: proto.MaxShellCols + 1})
			return err
		}(),
		"signal":        func() error { _, err := c.ShellSignal(ctxT(t), si.ID, "USR1"); return err }(),
		"resize":        c.ShellResize(ctxT(t), si.ID, 0, 10),
		"no such shell": func() error { _, err := c.ShellWrite(ctxT(t), 9999, []byte("x")); return err }(),
		"big write": func() error {
			_, err := c.ShellWrite(ctxT(t), si.ID, make([]byte, proto.MaxShellWrite+1))
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The table is bounded.
	var opened int
	for i := 0; i < proto.MaxShells+1; i++ {
		_, err := c.ShellOpen(ctxT(t), proto.ShellOpenArgs{Argv: []string{"cat"}})
		if err != nil {
			if errCode(err) != proto.CodeBusy {
				t.Fatalf("open %d: %v", i, err)
			}
			break
		}
		opened++
	}
	if opened != proto.MaxShells-1 {
		t.Errorf("opened %d more shells beside one; the limit is %d", opened, proto.MaxShells)
	}
	list, _ := c.ShellList(ctxT(t))
	for _, s := range list {
		c.ShellClose(ctxT(t), s.ID, time.Second)
	}
}
