package main

import (
	"bufio"
	"io"
	"strings"
	"sync"
)

// The guest's stdout and stderr ports carry the test binary's bytes unchanged
// (the ports are in raw mode), framed by marker lines that carry a per-run
// random nonce so no test output can forge them:
//
//	<nonce> start            first line of the stdout port, before the test runs
//	... test output ...
//	<nonce> exit=<status>    last line of the stdout port
//	<nonce> setup-failed     instead of start/exit if L1 could not set up KVM
//	<nonce> end              last line of the stderr port (when it is separate)
//
// A marker may follow test output that did not end in a newline; that output
// is forwarded without a newline added.

// marker is the end state a stream reported.
type marker struct {
	seen   bool   // the stream ended with a marker
	status string // "exit=N", "setup-failed" or "end"
}

// copyStream forwards r to w line by line, live, until a marker line, and
// then drains r to EOF. onMarker, if set, is called with each marker's
// status as it arrives ("start", then "exit=N" or another end status).
func copyStream(r io.Reader, w io.Writer, nonce string, onMarker func(status string)) (marker, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var m marker
	var werr error
	for {
		line, err := br.ReadString('\n')
		if line != "" && !m.seen {
			if i := strings.Index(line, nonce+" "); i >= 0 {
				status := strings.TrimRight(line[i+len(nonce)+1:], "\r\n")
				if status == "start" && i == 0 {
					if onMarker != nil {
						onMarker(status)
					}
					continue
				}
				if status != "start" {
					m = marker{seen: true, status: status}
					line = line[:i]
				}
			}
			if werr == nil && line != "" {
				_, werr = io.WriteString(w, line)
			}
			if m.seen && onMarker != nil {
				onMarker(m.status)
			}
		}
		if err == io.EOF {
			return m, werr
		}
		if err != nil {
			return m, err
		}
	}
}

// tail keeps the last n lines written to it, for failure reports.
type tail struct {
	mu    sync.Mutex // guards the fields below
	n     int
	lines []string
	part  string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.part + strings.ReplaceAll(string(p), "\r", "")
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	if len(t.part) > 4096 {
		t.part = t.part[len(t.part)-4096:]
	}
	t.lines = append(t.lines, parts[:len(parts)-1]...)
	if len(t.lines) > t.n {
		t.lines = append(t.lines[:0:0], t.lines[len(t.lines)-t.n:]...)
	}
	return len(p), nil
}

// String returns the kept lines, each ending in a newline.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.part != "" {
		lines = append(lines[:len(lines):len(lines)], t.part)
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
