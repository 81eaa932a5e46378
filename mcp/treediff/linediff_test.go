package treediff

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func hunks(a, b string, context int) string {
	var w bytes.Buffer
	diffLines([]byte(a), []byte(b)).writeHunks(&w, context)
	return w.String()
}

func TestLineDiffHunks(t *testing.T) {
	ten := numbered(1, 10)
	for _, c := range []struct {
		name, a, b, want string
	}{
		{"same", "a\nb\n", "a\nb\n", ""},
		{"both empty", "", "", ""},
		{"insert first", ten, "zero\n" + ten, "@@ -1,3 +1,4 @@\n+zero\n line 1\n line 2\n line 3\n"},
		{"append", ten, ten + "eleven\n", "@@ -8,3 +8,4 @@ line 7\n line 8\n line 9\n line 10\n+eleven\n"},
		{"delete middle", ten, strings.Replace(ten, "line 5\n", "", 1),
			"@@ -2,7 +2,6 @@ line 1\n line 2\n line 3\n line 4\n-line 5\n line 6\n line 7\n line 8\n"},
		// Changes 6 lines apart share a hunk; 7 apart do not.
		{"merge", ten, strings.NewReplacer("line 2\n", "two\n", "line 8\n", "eight\n").Replace(ten),
			"@@ -1,10 +1,10 @@\n line 1\n-line 2\n+two\n line 3\n line 4\n line 5\n line 6\n line 7\n-line 8\n+eight\n line 9\n line 10\n"},
		{"split", numbered(1, 11), strings.NewReplacer("line 2\n", "two\n", "line 10\n", "ten\n").Replace(numbered(1, 11)),
			"@@ -1,5 +1,5 @@\n line 1\n-line 2\n+two\n line 3\n line 4\n line 5\n" +
				"@@ -7,5 +7,5 @@ line 6\n line 7\n line 8\n line 9\n-line 10\n+ten\n line 11\n"},
		{"crlf", "a\r\nb\r\n", "a\r\nb\n", "@@ -1,2 +1,2 @@\n a\r\n-b\r\n+b\n"},
		{"add newline at end", "x", "x\n", "@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+x\n"},
		{"replace all", "a\nb\n", "c\n", "@@ -1,2 +1 @@\n-a\n-b\n+c\n"},
		{"func context is cut to 80 and trimmed", "func " + strings.Repeat("x", 100) + "\n\t1\n\t2\n\t3\n\t4\n", "func " + strings.Repeat("x", 100) + "\n\t1\n\t2\n\t3\n\t5\n",
			"@@ -2,4 +2,4 @@ func " + strings.Repeat("x", 75) + "\n \t1\n \t2\n \t3\n-\t4\n+\t5\n"},
	} {
		if got := hunks(c.a, c.b, 3); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if got, err := applyHunks(c.a, hunks(c.a, c.b, 3)); err != nil || got != c.b {
			t.Errorf("%s: applying gives %q, %v", c.name, got, err)
		}
	}
	if got := hunks(ten, strings.Replace(ten, "line 5\n", "five\n", 1), 0); got != "@@ -5 +5 @@ line 4\n-line 5\n+five\n" {
		t.Errorf("context 0: %q", got)
	}
}

// lcs is the textbook O(NM) longest common subsequence of two line lists.
func lcs(a, b [][]byte) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case bytes.Equal(a[i], b[j]):
				cur[j+1] = prev[j] + 1
			case prev[j+1] > cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func randText(rng *rand.Rand, lines, alphabet int) string {
	var b strings.Builder
	for range lines {
		fmt.Fprintf(&b, "%c\n", 'a'+rng.IntN(alphabet))
	}
	return b.String()
}

// Within its budget the diff is minimal: it deletes and inserts exactly
// the lines outside a longest common subsequence.
func TestLineDiffMinimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 500 {
		a := randText(rng, rng.IntN(60), 1+rng.IntN(6))
		b := randText(rng, rng.IntN(60), 1+rng.IntN(6))
		d := diffLines([]byte(a), []byte(b))
		ins, del := d.counts()
		if want := len(d.a) + len(d.b) - 2*lcs(d.a, d.b); ins+del != want {
			t.Fatalf("case %d: %d edits, minimal is %d\na=%q\nb=%q", i, ins+del, want, a, b)
		}
		if got, err := applyHunks(a, hunks(a, b, 3)); err != nil || got != b {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// Out of budget, the diff falls back to replacing what is left: still
// correct, bounded in time.
func TestLineDiffBudget(t *testing.T) {
	old := diffWorkBase
	defer func() { diffWorkBase = old }()
	rng := rand.New(rand.NewPCG(7, 8))
	a := "first a\n" + randText(rng, 300, 3) + "last a\n"
	b := "first b\n" + randText(rng, 300, 3) + "last b\n"
	diffWorkBase = -1 << 40 // no budget at all
	d := diffLines([]byte(a), []byte(b))
	if ins, del := d.counts(); ins != 302 || del != 302 {
		t.Errorf("no budget: %d insertions, %d deletions; want all replaced", ins, del)
	}
	diffWorkBase = 2000 // some: partly minimal
	if got, err := applyHunks(a, hunks(a, b, 3)); err != nil || got != b {
		t.Fatalf("small budget: %v", err)
	}
}

// Inputs that make plain Myers quadratic finish quickly.
func TestLineDiffPathological(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	distinct := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s%d\n", prefix, i)
		}
		return b.String()
	}
	for _, c := range []struct{ name, a, b string }{
		{"nothing in common", distinct("a", 30000), distinct("b", 30000)},
		{"two letters", randText(rng, 30000, 2), randText(rng, 30000, 2)},
		{"interleaved", strings.Repeat("x\ny\n", 15000), strings.Repeat("y\nx\nz\n", 10000)},
	} {
		start := time.Now()
		h := hunks(c.a, c.b, 3)
		t.Logf("%s: %v", c.name, time.Since(start))
		if el := time.Since(start); el > 20*time.Second {
			t.Errorf("%s: took %v", c.name, el)
		}
		if got, err := applyHunks(c.a, h); err != nil || got != c.b {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}
