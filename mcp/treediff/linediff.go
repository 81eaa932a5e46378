package treediff

// The line diff: Myers' O(ND) algorithm in its linear-space form.
//
// Eugene W. Myers, "An O(ND) Difference Algorithm and Its Variations",
// Algorithmica 1 (1986), section 4b. The edit graph of old lines a and new
// lines b has a diagonal step wherever a[x] == b[y]; a shortest path from
// (0,0) to (N,M) is a minimal edit script. bisect runs the greedy search
// from both corners at once, one edit more each round, until the forward
// and backward frontiers overlap; the meeting point lies on a shortest
// path, so the problem splits there into two halves each needing about
// half the edits. Space is O(N+M); time is O((N+M)·D) at worst.
//
// No input may make that quadratic: the search counts its work (frontier
// cells and diagonal steps) against a budget linear in the input, and a
// sub-problem that would exceed it is emitted as "delete all its old
// lines, insert all its new ones" - a correct, if not minimal, script.
//
// Lines keep their terminators, so "a\r\n" and "a\n" differ and CRLF
// files round-trip byte for byte; only the last line may lack a "\n".

import (
	"bytes"
	"strconv"
)

// Work budget of one file's line diff: diffWorkBase plus diffWorkPerLine
// for every line of the two versions. A budget unit is one frontier cell or
// one diagonal step, a few nanoseconds each.
var (
	diffWorkBase    = 1 << 22
	diffWorkPerLine = 64
)

// splitLines cuts s after every '\n'; the last line may lack one.
func splitLines(s []byte) [][]byte {
	n := bytes.Count(s, []byte{'\n'})
	lines := make([][]byte, 0, n+1)
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\n') + 1
		if i == 0 {
			i = len(s)
		}
		lines = append(lines, s[:i:i])
		s = s[i:]
	}
	return lines
}

// lineDiff is the result of diffing two texts: which old lines are
// deleted and which new lines inserted; the rest pair up in order.
type lineDiff struct {
	a, b       [][]byte
	delA, insB []bool
}

// diffLines computes a line diff of a and b within the work budget.
func diffLines(a, b []byte) *lineDiff {
	d := &lineDiff{a: splitLines(a), b: splitLines(b)}
	d.delA = make([]bool, len(d.a))
	d.insB = make([]bool, len(d.b))
	// Number lines by content so comparisons are integer compares.
	ids := make(map[string]int32, len(d.a))
	number := func(lines [][]byte) []int32 {
		out := make([]int32, len(lines))
		for i, l := range lines {
			id, ok := ids[string(l)]
			if !ok {
				id = int32(len(ids))
				ids[string(l)] = id
			}
			out[i] = id
		}
		return out
	}
	m := &myers{a: number(d.a), b: number(d.b), delA: d.delA, insB: d.insB}
	n := len(m.a) + len(m.b)
	m.work = diffWorkBase + diffWorkPerLine*n
	m.v1 = make([]int, n+4) // 2*maxD+3 for the whole range
	m.v2 = make([]int, n+4)
	m.compare(0, len(m.a), 0, len(m.b))
	return d
}

type myers struct {
	a, b       []int32
	delA, insB []bool
	v1, v2     []int // frontiers, reused by every bisect
	work       int   // budget left
}

// compare marks the edits turning a[aLo:aHi] into b[bLo:bHi].
func (m *myers) compare(aLo, aHi, bLo, bHi int) {
	for aLo < aHi && bLo < bHi && m.a[aLo] == m.b[bLo] {
		aLo, bLo = aLo+1, bLo+1
	}
	for aLo < aHi && bLo < bHi && m.a[aHi-1] == m.b[bHi-1] {
		aHi, bHi = aHi-1, bHi-1
	}
	if aLo < aHi && bLo < bHi && m.work > 0 {
		x, y, ok := m.bisect(aLo, aHi, bLo, bHi)
		// The split always makes both halves smaller; the check is a
		// guard against looping, never expected to fire.
		if ok && (x > aLo || y > bLo) && (x < aHi || y < bHi) {
			m.compare(aLo, x, bLo, y)
			m.compare(x, aHi, y, bHi)
			return
		}
	}
	for i := aLo; i < aHi; i++ {
		m.delA[i] = true
	}
	for j := bLo; j < bHi; j++ {
		m.insB[j] = true
	}
}

// bisect finds a point (x, y) on a shortest edit path of the range, which
// must be non-empty on both sides with differing first and last lines.
// It returns ok false if the lines have nothing in common or the work
// budget runs out: replace the whole range.
func (m *myers) bisect(aLo, aHi, bLo, bHi int) (x, y int, ok bool) {
	a, b := m.a[aLo:aHi], m.b[bLo:bHi]
	n, nb := len(a), len(b)
	maxD := (n + nb + 1) / 2
	off := maxD + 1
	vlen := 2*maxD + 3
	// v1[off+k]: furthest x reached on diagonal k = x-y going forward;
	// v2[off+k]: furthest distance reached on diagonal k going backward
	// from the end (in reversed coordinates). -1: not reached.
	v1, v2 := m.v1[:vlen], m.v2[:vlen]
	for i := range v1 {
		v1[i], v2[i] = -1, -1
	}
	v1[off+1], v2[off+1] = 0, 0
	delta := n - nb
	front := delta%2 != 0 // odd: the paths meet during a forward step
	var k1start, k1end, k2start, k2end int
	for d := 0; d < maxD; d++ {
		for k1 := -d + k1start; k1 <= d-k1end; k1 += 2 {
			i := off + k1
			var x1 int
			if k1 == -d || (k1 != d && v1[i-1] < v1[i+1]) {
				x1 = v1[i+1]
			} else {
				x1 = v1[i-1] + 1
			}
			y1 := x1 - k1
			x0 := x1
			for x1 < n && y1 < nb && a[x1] == b[y1] {
				x1, y1 = x1+1, y1+1
			}
			if m.work -= 1 + x1 - x0; m.work < 0 {
				return 0, 0, false
			}
			v1[i] = x1
			switch {
			case x1 > n:
				k1end += 2 // ran off the right of the graph
			case y1 > nb:
				k1start += 2 // ran off the bottom
			case front:
				if j := off + delta - k1; j >= 0 && j < vlen && v2[j] != -1 && x1 >= n-v2[j] {
					return aLo + x1, bLo + y1, true
				}
			}
		}
		for k2 := -d + k2start; k2 <= d-k2end; k2 += 2 {
			i := off + k2
			var x2 int
			if k2 == -d || (k2 != d && v2[i-1] < v2[i+1]) {
				x2 = v2[i+1]
			} else {
				x2 = v2[i-1] + 1
			}
			y2 := x2 - k2
			x0 := x2
			for x2 < n && y2 < nb && a[n-x2-1] == b[nb-y2-1] {
				x2, y2 = x2+1, y2+1
			}
			if m.work -= 1 + x2 - x0; m.work < 0 {
				return 0, 0, false
			}
			v2[i] = x2
			switch {
			case x2 > n:
				k2end += 2
			case y2 > nb:
				k2start += 2
			case !front:
				if j := off + delta - k2; j >= 0 && j < vlen && v1[j] != -1 {
					x1 := v1[j]
					y1 := off + x1 - j
					if x1 >= n-x2 {
						return aLo + x1, bLo + y1, true
					}
				}
			}
		}
	}
	return 0, 0, false // no line in common
}

// counts returns the number of inserted and deleted lines.
func (d *lineDiff) counts() (ins, del int) {
	for _, x := range d.insB {
		if x {
			ins++
		}
	}
	for _, x := range d.delA {
		if x {
			del++
		}
	}
	return ins, del
}

// change is a run of deleted old lines a[i0:i1] replaced by new lines
// b[j0:j1], with no unchanged line inside.
type change struct{ i0, i1, j0, j1 int }

func (d *lineDiff) changes() []change {
	var cs []change
	i, j := 0, 0
	for i < len(d.a) || j < len(d.b) {
		if (i < len(d.a) && d.delA[i]) || (j < len(d.b) && d.insB[j]) {
			c := change{i0: i, j0: j}
			for (i < len(d.a) && d.delA[i]) || (j < len(d.b) && d.insB[j]) {
				for i < len(d.a) && d.delA[i] {
					i++
				}
				for j < len(d.b) && d.insB[j] {
					j++
				}
			}
			c.i1, c.j1 = i, j
			cs = append(cs, c)
			continue
		}
		i, j = i+1, j+1
	}
	return cs
}

// writeHunks appends the unified-diff hunks of d to w, each with up to
// context unchanged lines around its changes; changes closer than
// 2*context lines share a hunk, as in git. Each hunk header ends with
// git's default function context.
func (d *lineDiff) writeHunks(w *bytes.Buffer, context int) {
	cs := d.changes()
	var fn funcLine
	for len(cs) > 0 {
		n := 1
		for n < len(cs) && cs[n].i0-cs[n-1].i1 <= 2*context {
			n++
		}
		group := cs[:n]
		cs = cs[n:]
		first, last := group[0], group[n-1]
		lead := min(context, first.i0)
		trail := min(context, len(d.a)-last.i1)
		i0, j0 := first.i0-lead, first.j0-lead
		i1, j1 := last.i1+trail, last.j1+trail
		writeHunkHeader(w, i0, i1-i0, j0, j1-j0, fn.before(d.a, i0))
		i := i0
		for _, c := range group {
			d.writeLines(w, ' ', d.a[i:c.i0])
			d.writeLines(w, '-', d.a[c.i0:c.i1])
			d.writeLines(w, '+', d.b[c.j0:c.j1])
			i = c.i1
		}
		d.writeLines(w, ' ', d.a[i:i1])
	}
}

// writeHunkHeader writes "@@ -l,s +l,s @@ func" as git does: a count of
// 1 is left out, an empty range names the line before it, and func, if
// any, follows after a space.
func writeHunkHeader(w *bytes.Buffer, i, ni, j, nj int, fn []byte) {
	var buf [64]byte
	b := append(buf[:0], "@@ -"...)
	b = appendRange(b, i, ni)
	b = append(b, " +"...)
	b = appendRange(b, j, nj)
	b = append(b, " @@"...)
	w.Write(b)
	if len(fn) > 0 {
		w.WriteByte(' ')
		w.Write(fn)
	}
	w.WriteByte('\n')
}

// funcLine finds the text git puts after a hunk header: with no
// diff driver configured (xdiff/xemit.c, def_ff), the last old line
// before the hunk that starts with an ASCII letter, '_' or '$', cut to 80
// bytes and stripped of trailing white space. Hunks come in order, so each
// search stops where the previous one started.
type funcLine struct {
	searched int // old lines [0, searched) have been searched
	text     []byte
}

func (f *funcLine) before(a [][]byte, start int) []byte {
	for l := start - 1; l >= f.searched; l-- {
		if t, ok := isFuncLine(a[l]); ok {
			f.text = t
			break
		}
	}
	f.searched = max(f.searched, start)
	return f.text
}

func isFuncLine(l []byte) ([]byte, bool) {
	if len(l) == 0 {
		return nil, false
	}
	if c := l[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '$') {
		return nil, false
	}
	l = l[:min(len(l), 80)]
	for len(l) > 0 && isSpace(l[len(l)-1]) {
		l = l[:len(l)-1]
	}
	return l, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func appendRange(b []byte, start, n int) []byte {
	if n == 0 {
		b = strconv.AppendInt(b, int64(start), 10)
		return append(b, ",0"...)
	}
	b = strconv.AppendInt(b, int64(start+1), 10)
	if n != 1 {
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return b
}

func (d *lineDiff) writeLines(w *bytes.Buffer, prefix byte, lines [][]byte) {
	for _, l := range lines {
		w.WriteByte(prefix)
		w.Write(l)
		if len(l) == 0 || l[len(l)-1] != '\n' {
			w.WriteString("\n\\ No newline at end of file\n")
		}
	}
}
