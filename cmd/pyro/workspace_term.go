package main

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The local terminal of pyro workspace shell: raw mode through the termios
// ioctls (x/sys/unix's helpers), its size, and SIGWINCH.

// wsTerminal is the terminal a shell session runs on.
type wsTerminal interface {
	// Read returns keystrokes (in raw mode: every byte as typed).
	Read(p []byte) (int, error)
	// Size is the terminal's columns and rows; 0, 0 when unknown.
	Size() (cols, rows int)
	// Raw puts the terminal in raw mode and returns what restores it
	// (safe to call more than once).
	Raw() (restore func(), err error)
}

// errNotTerminal says that stdin is not a terminal.
var errNotTerminal = errors.New("stdin is not a terminal")

// openTerminal returns this process's terminal (stdin), or
// errNotTerminal; tests replace it.
var openTerminal = func() (wsTerminal, error) {
	fd := int(os.Stdin.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return nil, errNotTerminal
	}
	return ttyTerminal{f: os.Stdin, fd: fd}, nil
}

// wsNotifyResize delivers SIGWINCH to ch and returns what stops it; tests
// replace it.
var wsNotifyResize = func(ch chan<- os.Signal) (stop func()) {
	signal.Notify(ch, syscall.SIGWINCH)
	return func() { signal.Stop(ch) }
}

type ttyTerminal struct {
	f  *os.File
	fd int
}

func (t ttyTerminal) Read(p []byte) (int, error) { return t.f.Read(p) }

func (t ttyTerminal) Size() (cols, rows int) {
	for _, fd := range []int{int(os.Stdout.Fd()), t.fd} {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			return int(ws.Col), int(ws.Row)
		}
	}
	return 0, 0
}

// Raw sets the terminal as cfmakeraw(3) does: no echo, no line editing,
// no signals from keys (Ctrl-C reaches the workspace's program), no
// output processing.
func (t ttyTerminal) Raw() (func(), error) {
	old, err := unix.IoctlGetTermios(t.fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() { unix.IoctlSetTermios(t.fd, unix.TCSETS, old) })
	}, nil
}
