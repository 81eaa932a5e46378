package redact

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustNew(t testing.TB, vals ...string) *Set {
	t.Helper()
	var b [][]byte
	for _, v := range vals {
		b = append(b, []byte(v))
	}
	s, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reference is the specification written the slow, obvious way: at each
// position the longest value that occurs there is masked.
func reference(vals []string, in string) string {
	var out strings.Builder
	for i := 0; i < len(in); {
		best := 0
		for _, v := range vals {
			if len(v) > best && strings.HasPrefix(in[i:], v) {
				best = len(v)
			}
		}
		if best == 0 {
			out.WriteByte(in[i])
			i++
			continue
		}
		out.WriteString(Mask)
		i += best
	}
	return out.String()
}

// streamed writes in through a Writer in the pieces cuts gives.
func streamed(t testing.TB, s *Set, in string, cuts []int) string {
	t.Helper()
	var buf bytes.Buffer
	w := s.Writer(&buf)
	prev := 0
	for _, c := range cuts {
		if n, err := w.Write([]byte(in[prev:c])); err != nil || n != c-prev {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if w.Held() >= max(s.maxLen, 1) {
			t.Fatalf("holds %d bytes; values are at most %d", w.Held(), s.maxLen)
		}
		prev = c
	}
	w.Write([]byte(in[prev:]))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestBytes(t *testing.T) {
	s := mustNew(t, "hunter2", "tok-abc", "tok-abcdef", "xyzw")
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"nothing here", "nothing here"},
		{"pw=hunter2\n", "pw=[REDACTED]\n"},
		{"hunter2hunter2", "[REDACTED][REDACTED]"},
		{"hunter", "hunter"},
		// A value that is a prefix of another yields to the longer one.
		{"tok-abcdef!", "[REDACTED]!"},
		{"tok-abcde!", "[REDACTED]de!"},
		{"tok-abc", "[REDACTED]"},
		// Overlapping: the first to start wins.
		{"xyzwxyzw", "[REDACTED][REDACTED]"},
	} {
		if got := s.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
		if got := string(s.Bytes([]byte(c.in))); got != c.want {
			t.Errorf("Bytes(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestOverlapping(t *testing.T) {
	// "abcd" and "cdef" overlap in "abcdef": the first wins, and the
	// second does not survive whole.
	s := mustNew(t, "abcd", "cdef")
	if got := s.String("abcdef"); got != "[REDACTED]ef" {
		t.Errorf("got %q", got)
	}
	if got := s.String("xcdefabcd"); got != "x[REDACTED][REDACTED]" {
		t.Errorf("got %q", got)
	}
}

func TestNilAndEmpty(t *testing.T) {
	var s *Set
	if got := s.String("hunter2"); got != "hunter2" {
		t.Errorf("nil Set: %q", got)
	}
	var buf bytes.Buffer
	w := s.Writer(&buf)
	w.Write([]byte("abc"))
	w.Close()
	if buf.String() != "abc" {
		t.Errorf("nil Set Writer: %q", buf.String())
	}
	e := mustNew(t)
	if e.Len() != 0 || e.String("x") != "x" {
		t.Error("empty Set changes input")
	}
}

func TestBounds(t *testing.T) {
	if _, err := New([][]byte{[]byte("abc")}); err == nil {
		t.Error("a 3-byte value was accepted")
	}
	if _, err := New([][]byte{bytes.Repeat([]byte("a"), MaxLen+1)}); err == nil {
		t.Error("a value over MaxLen was accepted")
	}
	if _, err := New([][]byte{bytes.Repeat([]byte("a"), MaxLen)}); err != nil {
		t.Errorf("a MaxLen value: %v", err)
	}
	var many [][]byte
	for i := range MaxSecrets + 1 {
		many = append(many, []byte(strings.Repeat("v", 4)+string(rune('A'+i%26))+string(rune('A'+i/26))))
	}
	if _, err := New(many[:MaxSecrets]); err != nil {
		t.Errorf("%d values: %v", MaxSecrets, err)
	}
	if _, err := New(many); err == nil {
		t.Errorf("%d values were accepted", len(many))
	}
	// Duplicates count once.
	if s, err := New([][]byte{[]byte("same"), []byte("same")}); err != nil || s.Len() != 1 {
		t.Errorf("duplicates: %v, %d", err, s.Len())
	}
}

// TestSplitEverywhere cuts the input at every position, and at every
// pair of positions: the output is always the one-shot's.
func TestSplitEverywhere(t *testing.T) {
	vals := []string{"secret", "secretive", "cret!", "zzzz", "[REDACTED]x"}
	s := mustNew(t, vals...)
	in := "a secretive secret; secret! zzzzz secre[REDACTED]x secretiv"
	want := reference(vals, in)
	if got := s.String(in); got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	for i := 0; i <= len(in); i++ {
		if got := streamed(t, s, in, []int{i}); got != want {
			t.Fatalf("cut at %d: %q, want %q", i, got, want)
		}
		for j := i; j <= len(in); j++ {
			if got := streamed(t, s, in, []int{i, j}); got != want {
				t.Fatalf("cuts at %d, %d: %q, want %q", i, j, got, want)
			}
		}
	}
	// One byte a write.
	var cuts []int
	for i := 1; i < len(in); i++ {
		cuts = append(cuts, i)
	}
	if got := streamed(t, s, in, cuts); got != want {
		t.Fatalf("bytewise: %q, want %q", got, want)
	}
}

// TestHoldsBackOnlyPrefixes: bytes that cannot begin a value go through
// at once (a shell sees its prompt), bytes that may are held.
func TestHoldsBackOnlyPrefixes(t *testing.T) {
	s := mustNew(t, "password123")
	var buf bytes.Buffer
	w := s.Writer(&buf)
	w.Write([]byte("$ "))
	if buf.String() != "$ " || w.Held() != 0 {
		t.Fatalf("out %q, held %d", buf.String(), w.Held())
	}
	w.Write([]byte("pass"))
	if buf.String() != "$ " || w.Held() != 4 {
		t.Fatalf("out %q, held %d", buf.String(), w.Held())
	}
	w.Write([]byte("port\n"))
	if buf.String() != "$ passport\n" || w.Held() != 0 {
		t.Fatalf("out %q, held %d", buf.String(), w.Held())
	}
	w.Write([]byte("password"))
	w.Write([]byte("123"))
	if buf.String() != "$ passport\n[REDACTED]" {
		t.Fatalf("out %q", buf.String())
	}
}

func TestRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		var vals []string
		for range 1 + r.IntN(5) {
			n := MinLen + r.IntN(6)
			b := make([]byte, n)
			for i := range b {
				b[i] = "ab"[r.IntN(2)]
			}
			vals = append(vals, string(b))
		}
		s := mustNew(t, vals...)
		in := make([]byte, r.IntN(200))
		for i := range in {
			in[i] = "abc"[r.IntN(3)]
		}
		want := reference(vals, string(in))
		var cuts []int
		for c := 0; c < len(in); c += 1 + r.IntN(9) {
			cuts = append(cuts, c)
		}
		if got := streamed(t, s, string(in), cuts); got != want {
			t.Fatalf("values %q, input %q: %q, want %q", vals, in, got, want)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestWriterError(t *testing.T) {
	s := mustNew(t, "hunter2")
	fw := &failWriter{}
	w := s.Writer(fw)
	if _, err := w.Write([]byte("hello")); err == nil {
		t.Fatal("no error")
	}
	if _, err := w.Write([]byte("hello")); err == nil || fw.n != 1 {
		t.Fatalf("second write: %v, %d calls", err, fw.n)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add([]byte("secret"), []byte("secretive"), []byte("a secretive secret"), uint64(3))
	f.Add([]byte("abab"), []byte("baba"), []byte("abababababa"), uint64(7))
	f.Add([]byte("[RED"), []byte("xxxx"), []byte("[REDACTED]"), uint64(1))
	f.Fuzz(func(t *testing.T, v1, v2, in []byte, seed uint64) {
		if len(in) > 4096 {
			return
		}
		var vals []string
		for _, v := range [][]byte{v1, v2} {
			if CheckValue(v) == nil && len(v) <= 64 {
				vals = append(vals, string(v))
			}
		}
		s := mustNew(t, vals...)
		want := reference(vals, string(in))
		if got := s.String(string(in)); got != want {
			t.Fatalf("String = %q, want %q", got, want)
		}
		r := rand.New(rand.NewPCG(seed, seed>>7))
		var cuts []int
		for c := 0; c < len(in); c += r.IntN(16) {
			cuts = append(cuts, c)
		}
		got := streamed(t, s, string(in), cuts)
		if got != want {
			t.Fatalf("streamed = %q, want %q", got, want)
		}
		// No value survives: where none shares a byte with the Mask, none
		// can be formed with the Mask's bytes either.
		for _, v := range vals {
			if !strings.ContainsAny(v, Mask) && strings.Contains(got, v) {
				t.Fatalf("%q survives in %q", v, got)
			}
		}
	})
}

// BenchmarkWriter redacts 64 MiB of text in 32 KiB writes (the agent's
// chunk size) with MaxSecrets values, some sharing first bytes with the
// text.
func BenchmarkWriter(b *testing.B) {
	var vals [][]byte
	for i := range MaxSecrets {
		vals = append(vals, []byte("sk-"+strings.Repeat(string(rune('a'+i%26)), 20+i)))
	}
	s, err := New(vals)
	if err != nil {
		b.Fatal(err)
	}
	line := []byte("the quick brown fox jumps over the lazy dog; sk-not-a-key ok\n")
	in := bytes.Repeat(line, (64<<20)/len(line))
	copy(in[len(in)/2:], vals[7])
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for range b.N {
		w := s.Writer(discard{})
		for off := 0; off < len(in); off += 32 << 10 {
			w.Write(in[off:min(off+32<<10, len(in))])
		}
		w.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkWriterPlain is BenchmarkWriter on text where no position
// begins a value: the fast path alone.
func BenchmarkWriterPlain(b *testing.B) {
	var vals [][]byte
	for i := range MaxSecrets {
		vals = append(vals, []byte("sk-"+strings.Repeat(string(rune('a'+i%26)), 20+i)))
	}
	s, err := New(vals)
	if err != nil {
		b.Fatal(err)
	}
	line := []byte("the quick brown fox jumps over the lazy dog; no key here ok\n")
	in := bytes.Repeat(line, (64<<20)/len(line))
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for range b.N {
		w := s.Writer(discard{})
		for off := 0; off < len(in); off += 32 << 10 {
			w.Write(in[off:min(off+32<<10, len(in))])
		}
		w.Close()
	}
}
