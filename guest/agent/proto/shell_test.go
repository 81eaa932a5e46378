package proto

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The shell calls join FuzzClientAnswers' calls, after the service calls
// (files initialize in name order): the seeds seed-shell_read and
// seed-shell_list name them as ops 14 and 15.
func init() {
	shellFirst = len(clientCalls)
	clientCalls = append(clientCalls,
		func(t *testing.T, c *Client) error {
			const max = 4096
			b, res, err := c.ShellRead(context.Background(), ShellReadArgs{ID: 1, Cursor: 10, Max: max, WaitMs: 100})
			if len(b) > max || (err == nil && (res.Next-res.Cursor != int64(len(b)) || res.Cursor < 10)) {
				t.Errorf("ShellRead returned %d bytes, %+v", len(b), res)
			}
			return err
		},
		func(t *testing.T, c *Client) error {
			ss, err := c.ShellList(context.Background())
			if len(ss) > MaxShells {
				t.Errorf("ShellList returned %d shells", len(ss))
			}
			for _, s := range ss {
				if len(s.Argv) > maxShellArgv || s.End-s.Start > ShellBuffer {
					t.Errorf("ShellList returned %+v", s)
				}
			}
			return err
		},
		func(t *testing.T, c *Client) error {
			n, err := c.ShellWrite(context.Background(), 1, []byte("ls\n"))
			if n < 0 || n > 3 {
				t.Errorf("ShellWrite wrote %d of 3", n)
			}
			return err
		},
		func(t *testing.T, c *Client) error {
			_, err := c.ShellOpen(context.Background(), ShellOpenArgs{Cols: 80, Rows: 24})
			return err
		},
		func(t *testing.T, c *Client) error {
			_, err := c.ShellClose(context.Background(), 1, time.Second)
			return err
		},
	)
}

// shellFirst is the index of the first shell call in clientCalls (calls
// may follow them).
var shellFirst int

// shellCall is the index of the first shell call in clientCalls.
func shellCall() int { return shellFirst }

func TestShellHostileAnswers(t *testing.T) {
	read := clientCalls[shellCall()]
	for name, answer := range map[string][]byte{
		"more than asked": cat(frame(FrameData, make([]byte, 4097)), jsonFrame(FrameResult, ShellReadResult{Cursor: 10, Next: 4107, End: 4107})),
		"cursors disagree": cat(frame(FrameData, []byte("abc")),
			jsonFrame(FrameResult, ShellReadResult{Cursor: 10, Next: 20, End: 20})),
		"before the cursor": cat(frame(FrameData, []byte("abc")),
			jsonFrame(FrameResult, ShellReadResult{Cursor: 5, Next: 8, End: 8})),
		"next past end": cat(frame(FrameData, []byte("abc")),
			jsonFrame(FrameResult, ShellReadResult{Cursor: 10, Next: 13, End: 12})),
		"dropped lie": cat(frame(FrameData, []byte("abc")),
			jsonFrame(FrameResult, ShellReadResult{Cursor: 20, Next: 23, End: 23, Dropped: 1})),
	} {
		if err := read(t, scriptedAgent(answer, false)); !IsProtocol(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok := cat(frame(FrameData, []byte("abc")), jsonFrame(FrameResult, ShellReadResult{Cursor: 20, Next: 23, End: 30, Dropped: 10}))
	if err := read(t, scriptedAgent(ok, false)); err != nil {
		t.Errorf("an honest answer: %v", err)
	}

	many := make([]ShellInfo, MaxShells+1)
	if err := clientCalls[shellCall()+1](t, scriptedAgent(jsonFrame(FrameResult, ShellListResult{Shells: many}), false)); !IsProtocol(err) {
		t.Errorf("too many shells: %v", err)
	}
	long := []ShellInfo{{ID: 1, Argv: []string{strings.Repeat("x", 10000)}, Start: 5, End: 4}}
	if err := clientCalls[shellCall()+1](t, scriptedAgent(jsonFrame(FrameResult, ShellListResult{Shells: long}), false)); !IsProtocol(err) {
		t.Errorf("backwards buffer: %v", err)
	}
	long[0].Start, long[0].End = 0, 10
	c := scriptedAgent(jsonFrame(FrameResult, ShellListResult{Shells: long}), false)
	if ss, err := c.ShellList(context.Background()); err != nil || len(ss[0].Argv[0]) > maxShellArg {
		t.Errorf("long argv: %v", err)
	}
	if err := clientCalls[shellCall()+2](t, scriptedAgent(jsonFrame(FrameResult, ShellWriteResult{N: 4}), false)); !IsProtocol(err) {
		t.Errorf("wrote more than sent: %v", err)
	}
	// An agent older than shells says to rebuild the environment.
	old := scriptedAgent(jsonFrame(FrameError, Error{Code: CodeInvalid, Message: `unknown operation "shell_open"`}), false)
	if err := clientCalls[shellCall()+3](t, old); err == nil || !strings.Contains(err.Error(), "pyro env build") {
		t.Errorf("old agent: %v", err)
	}
}

func TestShellClientChecks(t *testing.T) {
	c := &Client{Dial: nil}
	ctx := context.Background()
	if _, _, err := c.ShellRead(ctx, ShellReadArgs{Max: ShellBuffer + 1}); err == nil || IsProtocol(err) {
		t.Errorf("max over the buffer: %v", err)
	}
	if _, err := c.ShellWrite(ctx, 1, make([]byte, MaxShellWrite+1)); err == nil {
		t.Error("a write over the bound went out")
	}
	if _, err := c.ShellOpen(ctx, ShellOpenArgs{Argv: []string{"a"}, Command: "b"}); err == nil {
		t.Error("argv and command went out")
	}
}
