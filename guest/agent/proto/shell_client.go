package proto

import (
	"context"
	"time"
)

// ShellOpen starts a program on a new pseudo-terminal in the guest. It
// keeps running after this call, until it exits or ShellClose.
func (c *Client) ShellOpen(ctx context.Context, args ShellOpenArgs) (ShellInfo, error) {
	if len(args.Argv) > 0 && args.Command != "" {
		return ShellInfo{}, errorf(CodeInvalid, "shell_open takes argv or command, not both")
	}
	res, err := call(ctx, c, OpShellOpen, args)
	if err != nil {
		return ShellInfo{}, err
	}
	return res, checkShellInfo(&res)
}

// ShellRead reads a shell's output from args.Cursor (see ShellReadArgs
// for the waits). The answer is checked: the bytes are exactly those from
// Cursor to Next, no more than asked for, and the cursors agree.
func (c *Client) ShellRead(ctx context.Context, args ShellReadArgs) ([]byte, ShellReadResult, error) {
	if args.Max <= 0 {
		args.Max = DefaultShellRead
	}
	if args.Max > ShellBuffer || args.Cursor < 0 || args.WaitMs < 0 || args.IdleMs < 0 {
		return nil, ShellReadResult{}, errorf(CodeInvalid, "shell_read wants 0 <= cursor, max <= %d and waits not negative", ShellBuffer)
	}
	s, err := open(ctx, c, OpShellRead, args)
	if err != nil {
		return nil, ShellReadResult{}, err
	}
	defer s.close()
	var data []byte
	res, err := s.finish(func(t FrameType, p []byte) error {
		if t != FrameData {
			return nil
		}
		if len(data)+len(p) > args.Max {
			return protoErrorf("guest sent more than the %d shell bytes asked for", args.Max)
		}
		data = append(data, p...)
		return errHandled
	})
	if err != nil {
		return nil, res, err
	}
	switch {
	case res.Cursor < args.Cursor || res.Next-res.Cursor != int64(len(data)) || res.Next > res.End:
		err = protoErrorf("shell read answer's cursors (%d to %d of %d) do not match the %d bytes sent from cursor %d",
			res.Cursor, res.Next, res.End, len(data), args.Cursor)
	case res.Dropped != res.Cursor-args.Cursor:
		err = protoErrorf("shell read answer says %d bytes dropped between cursors %d and %d", res.Dropped, args.Cursor, res.Cursor)
	case len(res.Signal) > maxCodeLen:
		res.Signal = res.Signal[:maxCodeLen]
	}
	if err != nil {
		return nil, ShellReadResult{}, err
	}
	return data, res, nil
}

// ShellWrite sends data (at most MaxShellWrite bytes) to a shell's
// terminal, as typed input. It returns how many bytes the terminal took:
// fewer when the program stopped reading its input for seconds.
func (c *Client) ShellWrite(ctx context.Context, id int, data []byte) (int, error) {
	if len(data) > MaxShellWrite {
		return 0, errorf(CodeInvalid, "shell_write takes at most %d bytes at once, not %d", MaxShellWrite, len(data))
	}
	res, err := call(ctx, c, OpShellWrite, ShellWriteArgs{ID: id, Data: data})
	if err == nil && (res.N < 0 || res.N > len(data)) {
		return 0, protoErrorf("shell write answer says %d bytes of %d written", res.N, len(data))
	}
	return res.N, err
}

// ShellSignal sends a signal (a name of ShellSignals) to the process
// group in the foreground of a shell's terminal, and returns its id.
func (c *Client) ShellSignal(ctx context.Context, id int, signal string) (int, error) {
	res, err := call(ctx, c, OpShellSignal, ShellSignalArgs{ID: id, Signal: signal})
	return res.PGID, err
}

// ShellResize sets a shell's window size; the program gets SIGWINCH.
func (c *Client) ShellResize(ctx context.Context, id, cols, rows int) error {
	_, err := call(ctx, c, OpShellResize, ShellResizeArgs{ID: id, Cols: cols, Rows: rows})
	return err
}

// ShellClose ends a shell (SIGHUP, then SIGKILL after grace; 0 means
// DefaultKillGrace) and forgets it; its final state is returned.
func (c *Client) ShellClose(ctx context.Context, id int, grace time.Duration) (ShellInfo, error) {
	res, err := call(ctx, c, OpShellClose, ShellCloseArgs{ID: id, GraceMs: ceilMs(grace)})
	if err != nil {
		return ShellInfo{}, err
	}
	return res, checkShellInfo(&res)
}

// ShellList describes the guest's shells, by id.
func (c *Client) ShellList(ctx context.Context) ([]ShellInfo, error) {
	res, err := call(ctx, c, OpShellList, Empty{})
	if err != nil {
		return nil, err
	}
	if len(res.Shells) > MaxShells {
		return nil, protoErrorf("guest listed %d shells; it keeps at most %d", len(res.Shells), MaxShells)
	}
	for i := range res.Shells {
		if err := checkShellInfo(&res.Shells[i]); err != nil {
			return nil, err
		}
	}
	return res.Shells, nil
}

// checkShellInfo refuses a ShellInfo whose cursors make no sense and
// clips its strings, which end up in tool results.
func checkShellInfo(si *ShellInfo) error {
	if si.Start < 0 || si.End < si.Start || si.End-si.Start > ShellBuffer {
		return protoErrorf("guest sent a shell whose buffer runs from %d to %d", si.Start, si.End)
	}
	if len(si.Argv) > maxShellArgv {
		si.Argv = si.Argv[:maxShellArgv]
	}
	for i, a := range si.Argv {
		si.Argv[i] = clip(a, maxShellArg)
	}
	if len(si.Signal) > maxCodeLen {
		si.Signal = si.Signal[:maxCodeLen]
	}
	return nil
}
