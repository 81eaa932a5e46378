package patch

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// splitKeep splits s into lines that keep their endings.
func splitKeep(s string) []string {
	var out []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// unifiedDiff renders a unified diff from a to b with ctx lines of context,
// as GNU diff -U<ctx> would, from a longest common subsequence of lines.
// Lines compare with their endings, so a last line without a newline
// differs from the same text with one, and gets a "\ No newline" marker.
func unifiedDiff(name, a, b string, ctx int) string {
	al, bl := splitKeep(a), splitKeep(b)
	// lcs[i][j] is the LCS length of al[i:] and bl[j:].
	lcs := make([][]int, len(al)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(bl)+1)
	}
	for i := len(al) - 1; i >= 0; i-- {
		for j := len(bl) - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < len(al) || j < len(bl) {
		switch {
		case i < len(al) && j < len(bl) && al[i] == bl[j]:
			ops = append(ops, op{' ', al[i]})
			i++
			j++
		case i < len(al) && (j == len(bl) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', al[i]})
			i++
		default:
			ops = append(ops, op{'+', bl[j]})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- a/%s\n+++ b/%s\n", name, name)
	k := 0
	oldPos, newPos := 0, 0 // lines of a and b before ops[k]
	for {
		// Find the next change.
		c := k
		for c < len(ops) && ops[c].kind == ' ' {
			c++
		}
		if c == len(ops) {
			break
		}
		start := max(k, c-ctx)
		for ; k < start; k++ {
			oldPos++
			newPos++
		}
		// Extend the hunk while the next change is within 2*ctx lines.
		end := c
		for {
			for end < len(ops) && ops[end].kind != ' ' {
				end++
			}
			n := end
			for n < len(ops) && ops[n].kind == ' ' {
				n++
			}
			if n == len(ops) || n-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = n
		}
		var no, nn int
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				no++
			}
			if o.kind != '-' {
				nn++
			}
		}
		os, ns := oldPos+1, newPos+1
		if no == 0 {
			os = oldPos
		}
		if nn == 0 {
			ns = newPos
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", os, no, ns, nn)
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(strings.TrimSuffix(o.line, "\n"))
			out.WriteByte('\n')
			if !strings.HasSuffix(o.line, "\n") {
				out.WriteString("\\ No newline at end of file\n")
			}
		}
		oldPos += no
		newPos += nn
		k = end
	}
	return out.String()
}

// randomText joins lines, each ending in eol, the last without one if
// noEOL.
func randomText(lines []string, eol string, noEOL bool) string {
	var b strings.Builder
	for i, l := range lines {
		b.WriteString(l)
		if i < len(lines)-1 || !noEOL {
			b.WriteString(eol)
		}
	}
	return b.String()
}

// randomEdit returns lines after a few random insertions, deletions and
// replacements, drawing new lines from word.
func randomEdit(r *rand.Rand, lines []string, word func() string) []string {
	out := append([]string(nil), lines...)
	for n := r.IntN(6); n > 0; n-- {
		at := r.IntN(len(out) + 1)
		switch r.IntN(3) {
		case 0:
			ins := make([]string, 1+r.IntN(3))
			for i := range ins {
				ins[i] = word()
			}
			out = append(out[:at], append(ins, out[at:]...)...)
		case 1:
			if at < len(out) {
				out = append(out[:at], out[min(len(out), at+1+r.IntN(3)):]...)
			}
		case 2:
			if at < len(out) {
				out[at] = word()
			}
		}
	}
	return out
}

// TestRoundTrip: for random edits, the diff of old and new, applied to old,
// gives new, with every hunk at offset 0.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "}", "", "\treturn nil", "x := 1"}
	word := func() string { return words[r.IntN(len(words))] }
	for iter := range 3000 {
		old := make([]string, r.IntN(30))
		for i := range old {
			old[i] = word()
		}
		neu := randomEdit(r, old, word)
		eol := "\n"
		if r.IntN(4) == 0 {
			eol = "\r\n"
		}
		a := randomText(old, eol, r.IntN(3) == 0)
		b := randomText(neu, eol, r.IntN(3) == 0)
		if a == b {
			continue
		}
		ctx := r.IntN(5)
		patch := unifiedDiff("f", a, b, ctx)
		after, res := parseApply(t, files("f", a), patch)
		if got := after["f"].data; got != b {
			t.Fatalf("iteration %d: got %s\nwant %s\nfrom %s\npatch:\n%s", iter, quote(got), quote(b), quote(a), patch)
		}
		for _, h := range res.Files[0].Hunks {
			if h.Offset != 0 {
				t.Fatalf("iteration %d: hunk %s at offset %d\npatch:\n%s", iter, h.Header, h.Offset, patch)
			}
		}
	}
}

// TestRoundTripShifted: the same diff still applies after lines are added
// at the top of the file, every hunk at that offset, when lines are unique.
func TestRoundTripShifted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	next := 0
	word := func() string { next++; return fmt.Sprintf("line %d", next) }
	for iter := range 1000 {
		old := make([]string, 1+r.IntN(40))
		for i := range old {
			old[i] = word()
		}
		neu := randomEdit(r, old, word)
		eol := "\n"
		if r.IntN(4) == 0 {
			eol = "\r\n"
		}
		a := randomText(old, eol, r.IntN(3) == 0)
		b := randomText(neu, eol, r.IntN(3) == 0)
		if a == b {
			continue
		}
		patch := unifiedDiff("f", a, b, 1+r.IntN(3))
		shift := r.IntN(5)
		prefix := strings.Repeat("prepended"+eol, shift)
		after, res := parseApply(t, files("f", prefix+a), patch)
		if got := after["f"].data; got != prefix+b {
			t.Fatalf("iteration %d: got %s\nwant %s\npatch:\n%s", iter, quote(got), quote(prefix+b), patch)
		}
		for _, h := range res.Files[0].Hunks {
			if h.Offset != shift {
				t.Fatalf("iteration %d: hunk %s at offset %d, want %d\npatch:\n%s", iter, h.Header, h.Offset, shift, patch)
			}
		}
	}
}
