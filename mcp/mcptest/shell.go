package mcptest

import (
	"context"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

var _ contract.ShellBackend = (*Backend)(nil)

// fakeShell is a shell that echoes what is typed, as a terminal does,
// and answers each line with "ran: LINE" and a "$ " prompt.
type fakeShell struct {
	info   contract.ShellInfo
	out    []byte // everything it wrote
	closed bool
}

// shell returns shell n of a running workspace. Called with mu held.
func (b *Backend) shell(id string, n int) (*workspace, *fakeShell, error) {
	w, err := b.get(id, true)
	if err != nil {
		return nil, nil, err
	}
	if n < 1 || n > len(w.shells) || w.shells[n-1].closed {
		return nil, nil, contract.NotFound("shell", strconv.Itoa(n))
	}
	return w, w.shells[n-1], nil
}

// read returns what s wrote since the last read.
func (s *fakeShell) read(raw bool) contract.ShellOutput {
	o := contract.ShellOutput{Start: s.info.Read, End: int64(len(s.out))}
	text := string(s.out[s.info.Read:])
	if !raw {
		text = strings.ReplaceAll(text, "\r\n", "\n")
	}
	o.Text = text
	s.info.Read, s.info.Cursor = o.End, o.End
	o.Info = s.info
	o.Matched = true
	return o
}

// ShellOpen implements contract.ShellBackend.
func (b *Backend) ShellOpen(ctx context.Context, req contract.ShellOpenRequest) (contract.ShellOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellOpen"); err != nil {
		return contract.ShellOutput{}, err
	}
	w, err := b.get(req.ID, true)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	argv := req.Argv
	if req.Command != "" {
		argv = []string{"/bin/sh", "-c", req.Command}
	}
	if len(argv) == 0 {
		argv = []string{"/bin/bash", "-l"}
	}
	s := &fakeShell{info: contract.ShellInfo{Shell: len(w.shells) + 1, Argv: argv, PID: 100 + len(w.shells), Cols: max(req.Cols, 120),
		Rows: max(req.Rows, 40), Started: b.now}, out: []byte("$ ")}
	w.shells = append(w.shells, s)
	return s.read(req.Raw), nil
}

// ShellRead implements contract.ShellBackend.
func (b *Backend) ShellRead(ctx context.Context, req contract.ShellReadRequest) (contract.ShellOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellRead"); err != nil {
		return contract.ShellOutput{}, err
	}
	_, s, err := b.shell(req.ID, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	if req.Cursor != nil && *req.Cursor <= s.info.Read {
		s.info.Read = *req.Cursor
	}
	return s.read(req.Raw), nil
}

// ShellWrite implements contract.ShellBackend: each line typed is echoed and
// answered.
func (b *Backend) ShellWrite(ctx context.Context, req contract.ShellWriteRequest) (contract.ShellOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellWrite"); err != nil {
		return contract.ShellOutput{}, err
	}
	_, s, err := b.shell(req.ID, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	for i, line := range strings.Split(string(req.Input), "\r") {
		if i > 0 {
			s.out = append(s.out, "\r\nran: "+strings.Split(string(req.Input), "\r")[i-1]+"\r\n$ "...)
		}
		s.out = append(s.out, line...)
	}
	o := s.read(req.Raw)
	o.Written = len(req.Input)
	return o, nil
}

// ShellSignal implements contract.ShellBackend: INT prints ^C and a prompt.
func (b *Backend) ShellSignal(ctx context.Context, req contract.ShellSignalRequest) (contract.ShellOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellSignal"); err != nil {
		return contract.ShellOutput{}, err
	}
	_, s, err := b.shell(req.ID, req.Shell)
	if err != nil {
		return contract.ShellOutput{}, err
	}
	if req.Signal == "INT" {
		s.out = append(s.out, "^C\r\n$ "...)
	}
	return s.read(req.Raw), nil
}

// ShellResize implements contract.ShellBackend.
func (b *Backend) ShellResize(ctx context.Context, id string, n, cols, rows int) (contract.ShellInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellResize"); err != nil {
		return contract.ShellInfo{}, err
	}
	_, s, err := b.shell(id, n)
	if err != nil {
		return contract.ShellInfo{}, err
	}
	s.info.Cols, s.info.Rows = cols, rows
	return s.info, nil
}

// ShellClose implements contract.ShellBackend.
func (b *Backend) ShellClose(ctx context.Context, id string, n int) (contract.ShellInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellClose"); err != nil {
		return contract.ShellInfo{}, err
	}
	_, s, err := b.shell(id, n)
	if err != nil {
		return contract.ShellInfo{}, err
	}
	s.closed = true
	s.info.Exited, s.info.ExitCode, s.info.Signal = true, -1, "SIGHUP"
	return s.info, nil
}

// ShellList implements contract.ShellBackend.
func (b *Backend) ShellList(ctx context.Context, id string) ([]contract.ShellInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.begin("ShellList"); err != nil {
		return nil, err
	}
	w, err := b.get(id, true)
	if err != nil {
		return nil, err
	}
	var out []contract.ShellInfo
	for _, s := range w.shells {
		if !s.closed {
			out = append(out, s.info)
		}
	}
	return out, nil
}
