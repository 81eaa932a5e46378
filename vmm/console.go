package vmm

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// consoleLog sits between the UART and the user's console writer: it passes
// output on a line at a time (the UART delivers a byte per guest exit) and
// keeps the last lines for crash diagnostics.
type consoleLog struct {
	// mu guards every field below.
	mu   sync.Mutex
	out  io.Writer
	line []byte
	tail []string
}

const (
	consoleTailLines = 40
	consoleLineMax   = 512
)

func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range p {
		c.line = append(c.line, b)
		if b == '\n' || len(c.line) >= consoleLineMax {
			c.flushLocked()
		}
	}
	return len(p), nil
}

func (c *consoleLog) flushLocked() {
	if len(c.line) == 0 {
		return
	}
	if c.out != nil {
		c.out.Write(c.line)
	}
	s := strings.TrimRight(string(bytes.ReplaceAll(c.line, []byte("\r"), nil)), "\n")
	c.tail = append(c.tail, s)
	if len(c.tail) > consoleTailLines {
		c.tail = c.tail[len(c.tail)-consoleTailLines:]
	}
	c.line = c.line[:0]
}

// Flush writes out a partial last line.
func (c *consoleLog) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
}

// Tail returns the last console lines.
func (c *consoleLog) Tail() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.tail...)
}
