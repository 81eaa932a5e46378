package disk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// model drives a Stack and an in-memory image of what the disk must read as,
// and checks one against the other.
type model struct {
	t      testing.TB
	tmp    string // scratch space for crash copies
	dir    string
	base   []byte // the base image's bytes
	s      *Stack
	cur    []byte            // the disk now
	frozen []string          // frozen layer IDs, bottom first
	snaps  map[string][]byte // the disk as of each frozen layer's Freeze
	// What a crash must leave: cluster c reads cur[c] if the top layer's
	// map on disk holds c (it is overwritten in place), else durable[c].
	durable   []byte
	persisted []uint64
}

// writeBase makes a base image of n random bytes, mode 0444.
func writeBase(t testing.TB, dir string, n int, seed uint64) (string, []byte) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(dir, "base.img")
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// newModel creates a stack of size bytes over a random base of baseSize, in
// a new directory under tmp ("": the test's temporary directory).
func newModel(t testing.TB, tmp string, baseSize, size int, seed uint64) *model {
	if tmp == "" {
		tmp = t.TempDir()
	} else {
		var err error
		if tmp, err = os.MkdirTemp(tmp, "disk-test-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(tmp) })
	}
	m := &model{t: t, tmp: tmp, dir: filepath.Join(tmp, "stack"), snaps: map[string][]byte{}}
	path := ""
	if baseSize > 0 {
		path, m.base = writeBase(t, tmp, baseSize, seed)
	}
	s, err := Create(m.dir, path, int64(size))
	if err != nil {
		t.Fatal(err)
	}
	m.s = s
	m.cur = m.baseImage()
	m.synced()
	t.Cleanup(func() { m.s.Close() })
	return m
}

// baseImage is the disk as the base alone makes it.
func (m *model) baseImage() []byte {
	b := make([]byte, m.s.Size())
	copy(b, m.base)
	return b
}

// synced records that the disk as it is now is durable.
func (m *model) synced() {
	m.durable = slices.Clone(m.cur)
	m.s.mu.RLock()
	m.persisted = slices.Clone(m.s.top().bits)
	m.s.mu.RUnlock()
}

func inRange(off, n, size int64) bool { return off >= 0 && n >= 0 && off+n <= size }

func (m *model) write(off int64, p []byte) {
	m.t.Helper()
	n, err := m.s.WriteAt(p, off)
	if !inRange(off, int64(len(p)), m.s.Size()) {
		if err == nil || !errors.Is(err, ErrOutOfRange) || n != 0 {
			m.t.Fatalf("WriteAt(%d bytes, %d) on a %d-byte disk = %d, %v; want ErrOutOfRange", len(p), off, m.s.Size(), n, err)
		}
		return
	}
	if err != nil || n != len(p) {
		m.t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
	}
	copy(m.cur[off:], p)
}

func (m *model) zero(off, n int64, discard bool) {
	m.t.Helper()
	var err error
	if discard {
		err = m.s.Discard(off, n)
	} else {
		err = m.s.WriteZeroes(off, n)
	}
	if !inRange(off, n, m.s.Size()) {
		if !errors.Is(err, ErrOutOfRange) {
			m.t.Fatalf("zero(%d, %d) on a %d-byte disk = %v; want ErrOutOfRange", off, n, m.s.Size(), err)
		}
		return
	}
	if err != nil {
		m.t.Fatalf("zero(%d, %d): %v", off, n, err)
	}
	clear(m.cur[off : off+n])
}

// read checks one ReadAt against the model, io.ReaderAt's rules included.
func (m *model) read(off int64, n int) {
	m.t.Helper()
	p := make([]byte, n)
	got, err := m.s.ReadAt(p, off)
	size := m.s.Size()
	switch {
	case off < 0:
		if err == nil || got != 0 {
			m.t.Fatalf("ReadAt(%d, %d) = %d, %v; want an error", n, off, got, err)
		}
	case n == 0:
		if got != 0 || err != nil {
			m.t.Fatalf("empty ReadAt at %d = %d, %v; want 0, nil", off, got, err)
		}
	case off+int64(n) > size:
		want := int(max(0, size-off))
		if got != want || err != io.EOF || !bytes.Equal(p[:got], m.cur[min(off, size):][:got]) {
			m.t.Fatalf("ReadAt(%d, %d) past the end = %d, %v; want %d, EOF and the model's bytes", n, off, got, err, want)
		}
	default:
		if got != n || err != nil {
			m.t.Fatalf("ReadAt(%d, %d) = %d, %v", n, off, got, err)
		}
		if i := diff(p, m.cur[off:off+int64(n)]); i >= 0 {
			m.t.Fatalf("ReadAt(%d, %d): byte %d (disk offset %d) is %#x, want %#x", n, off, i, off+int64(i), p[i], m.cur[off+int64(i)])
		}
	}
}

func diff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// check compares the whole disk and the layer list with the model.
func (m *model) check() {
	m.t.Helper()
	checkImage(m.t, m.s, m.cur, "")
	ls := m.s.Layers()
	var ids []string
	for _, l := range ls[:len(ls)-1] {
		ids = append(ids, l.ID)
		if !l.Frozen {
			m.t.Fatalf("layer %s below the top is not frozen", l.ID)
		}
	}
	if !slices.Equal(ids, m.frozen) || ls[len(ls)-1].Frozen {
		m.t.Fatalf("layers %+v, want frozen %v and a writable top", ls, m.frozen)
	}
}

func checkImage(t testing.TB, s *Stack, want []byte, what string) {
	t.Helper()
	got := make([]byte, s.Size())
	if n, err := s.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("%sread whole disk: %d, %v", what, n, err)
	}
	if i := diff(got, want); i >= 0 {
		t.Fatalf("%sdisk byte %d (cluster %d) is %#x, want %#x", what, i, i/ClusterSize, got[i], want[i])
	}
}

func (m *model) flush() {
	m.t.Helper()
	if err := m.s.Flush(); err != nil {
		m.t.Fatal(err)
	}
	m.synced()
}

func (m *model) freeze(name string) {
	m.t.Helper()
	li, err := m.s.Freeze(name)
	if err != nil {
		m.t.Fatal(err)
	}
	if !li.Frozen || li.Name != name {
		m.t.Fatalf("Freeze returned %+v", li)
	}
	m.frozen = append(m.frozen, li.ID)
	m.snaps[li.ID] = slices.Clone(m.cur)
	m.synced()
}

// cutBack cuts back to frozen layer i, to the base for i == -1, and tries
// the writable top (an error) for i == len(frozen).
func (m *model) cutBack(i int) {
	m.t.Helper()
	if i == len(m.frozen) {
		top := m.s.Layers()[i].ID
		if err := m.s.CutBack(top); err == nil {
			m.t.Fatalf("CutBack to the writable top %s succeeded", top)
		}
		return
	}
	id := BaseID
	if i >= 0 {
		id = m.frozen[i]
	}
	if err := m.s.CutBack(id); err != nil {
		m.t.Fatal(err)
	}
	for _, d := range m.frozen[i+1:] {
		delete(m.snaps, d)
		if _, err := os.Stat(dataPath(m.dir, d)); !os.IsNotExist(err) {
			m.t.Fatalf("dropped layer %s's data file is still there: %v", d, err)
		}
	}
	m.frozen = m.frozen[:i+1]
	if i >= 0 {
		m.cur = slices.Clone(m.snaps[id])
	} else {
		m.cur = m.baseImage()
	}
	m.synced()
}

func (m *model) reopen() {
	m.t.Helper()
	if err := m.s.Close(); err != nil {
		m.t.Fatal(err)
	}
	s, err := Open(m.dir)
	if err != nil {
		m.t.Fatal(err)
	}
	m.s = s
	m.synced()
}

// crashImage is what the disk must read as after a crash now.
func (m *model) crashImage() []byte {
	img := slices.Clone(m.durable)
	for c := int64(0); c < clustersOf(int64(len(img))); c++ {
		if m.persisted[c/64]&(1<<(c%64)) != 0 {
			lo, hi := c*ClusterSize, min(int64(len(img)), (c+1)*ClusterSize)
			copy(img[lo:hi], m.cur[lo:hi])
		}
	}
	return img
}

// crash copies the stack's files as they are now, without closing it, and
// checks that the copy opens and reads as a crash now must leave it.
func (m *model) crash() {
	m.t.Helper()
	dst, err := os.MkdirTemp(m.tmp, "crash-")
	if err != nil {
		m.t.Fatal(err)
	}
	defer os.RemoveAll(dst)
	copyDir(m.t, m.dir, dst)
	s, err := Open(dst)
	if err != nil {
		m.t.Fatalf("open after a crash: %v", err)
	}
	defer s.Close()
	checkImage(m.t, s, m.crashImage(), "after a crash: ")
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fill returns n bytes of a pattern that differs per call.
func fill(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>9)
	}
	if n > 0 && p[0] == 0 {
		p[0] = 0xa5
	}
	return p
}
