#!/usr/bin/env python3
"""Regenerates the *.raw captures in this folder: the exact bytes real
programs write to an 80x24 pseudo-terminal (TERM=xterm-256color), for the
renderer's tests. Run from this folder: python3 capture.py. The captures
depend on the host's programs and /etc/services; the tests assert on lines
that any recent Debian gives."""
import fcntl, os, pty, select, struct, sys, termios, time

def run(name, argv, steps, cols=80, rows=24, env_extra=None):
    pid, fd = pty.fork()
    if pid == 0:
        env = {"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "HOME": "/tmp",
               "LANG": "C.UTF-8", "LESSHISTFILE": "-", "PS1": "$ ",
               "PYTHONSTARTUP": ""}
        env.update(env_extra or {})
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = bytearray()
    def drain(t):
        end = time.time() + t
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
            if not r:
                continue
            try:
                b = os.read(fd, 65536)
            except OSError:
                return False
            if not b:
                return False
            out.extend(b)
        return True
    drain(0.8)
    for s in steps:
        if isinstance(s, tuple):  # ("resize", cols, rows)
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", s[2], s[1], 0, 0))
            os.kill(pid, 28)
        else:
            os.write(fd, s)
        if not drain(0.6):
            break
    drain(0.5)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    with open(name + ".raw", "wb") as f:
        f.write(out)
    print(name, len(out), "bytes")

run("python", ["python3", "-i", "-q"], [b"1+1\r", b"print('hi')\r", b"for i in range(3):\r", b"  print(i*i)\r", b"\r", b"exit()\r"])
run("less", ["less", "/etc/services"], [b" ", b"q"])
run("top", ["top", "-b", "-n1", "-w", "80"], [])
run("bash", ["bash", "--norc", "--noprofile", "-i"], [b"echo one\r", b"sleep 5\r", b"\x03", b"echo two\r", ("resize", 100, 30), b"stty size\r", b"exit\r"])
# Line editing: a typo mended with the left arrow, a word rubbed out, and a
# command longer than the screen is wide.
run("readline", ["bash", "--norc", "--noprofile", "-i"], [b"echo helo", b"\x1b[D\x1b[D", b"l", b"\r", b"echo abc xyz\x7f\x7f\x7fdef\r", b"echo " + b"x" * 100 + b"\r", b"exit\r"])
run("topscreen", ["top", "-n1", "-w", "80"], [])
