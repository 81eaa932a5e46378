package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// transcript prints the demo's tool calls for a human: each step's tool
// and key arguments, then the salient fields of its result.
type transcript struct {
	w     io.Writer
	steps int
}

// arg is one key argument of a step, shown as key=value (or the value
// alone when key is "").
type arg struct{ key, value string }

// step prints a call's header line: its number, the tool and key arguments.
func (t *transcript) step(tool string, args ...arg) {
	t.steps++
	parts := make([]string, 0, len(args))
	for _, a := range args {
		if a.key == "" {
			parts = append(parts, a.value)
		} else {
			parts = append(parts, a.key+"="+a.value)
		}
	}
	fmt.Fprintln(t.w)
	fmt.Fprintln(t.w, strings.TrimRight(fmt.Sprintf("%2d  %-17s %s", t.steps, tool, strings.Join(parts, "  ")), " "))
}

// result prints a call's outcome line, with how long the call took.
func (t *transcript) result(d time.Duration, format string, a ...any) {
	fmt.Fprintf(t.w, "    -> %s  [%s]\n", fmt.Sprintf(format, a...), seconds(d))
}

// block prints text indented under a result, at most max lines: the first
// ones, or the last ones when fromEnd (where test failures end up).
func (t *transcript) block(text string, max int, fromEnd bool) {
	for _, l := range blockLines(text, max, fromEnd) {
		fmt.Fprintln(t.w, strings.TrimRight("       | "+l, " "))
	}
}

// blockLines returns text's lines, cut to max with a marker saying how
// many were left out; trailing blank lines are dropped.
func blockLines(text string, max int, fromEnd bool) []string {
	text = strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " ")
	}
	if max <= 0 || len(lines) <= max {
		return lines
	}
	cut := fmt.Sprintf("... (%d more lines)", len(lines)-max+1)
	if fromEnd {
		return append([]string{cut}, lines[len(lines)-max+1:]...)
	}
	return append(lines[:max-1:max-1], cut)
}

// numbered prefixes each line of text with its line number.
func numbered(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("%3d  %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}

// seconds formats d as 12.3s.
func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// humanBytes formats n as 512 B, 1.5 KiB or 3.2 MiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// plural returns "1 file" or "3 files".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// exitLine describes an exec result in a few words.
func exitLine(r execResult) string {
	s := fmt.Sprintf("exit %d", r.ExitCode)
	if r.TimedOut {
		s += " (timed out)"
	} else if r.Signal != "" {
		s += " (" + r.Signal + ")"
	}
	s += fmt.Sprintf(", ran %s", seconds(time.Duration(r.DurationMs)*time.Millisecond))
	if r.Limited != "" {
		s += "; limited: " + r.Limited
	}
	return s
}

// output joins an exec's stdout and stderr for showing.
func output(r execResult) string {
	switch {
	case r.Stdout == "":
		return r.Stderr
	case r.Stderr == "":
		return r.Stdout
	}
	return strings.TrimRight(r.Stdout, "\n") + "\n" + r.Stderr
}
