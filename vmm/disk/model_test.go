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
	frozen []string          // frozen layer IDs, in the order they were frozen
	parent map[string]string // each frozen layer's parent (BaseID: the base)
	top    string            // the writable top's parent
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
	m := &model{t: t, tmp: tmp, dir: filepath.Join(tmp, "stack"), snaps: map[string][]byte{}, parent: map[string]string{}}
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

// check compares the whole disk and the layer tree with the model.
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
		if l.Parent != m.parent[l.ID] {
			m.t.Fatalf("layer %s has parent %q, want %q", l.ID, l.Parent, m.parent[l.ID])
		}
	}
	if top := ls[len(ls)-1]; !slices.Equal(ids, m.frozen) || top.Frozen || top.Parent != m.top {
		m.t.Fatalf("layers %+v, want frozen %v and a writable top on %q", ls, m.frozen, m.top)
	}
	// The disk reads through the top and its ancestors only.
	m.s.mu.RLock()
	chain := len(m.s.chain)
	m.s.mu.RUnlock()
	if want := 1 + m.depth(m.top); chain != want {
		m.t.Fatalf("the disk reads through %d layers, want %d", chain, want)
	}
}

// depth is the number of frozen layers from id down to the base.
func (m *model) depth(id string) int {
	n := 0
	for ; id != BaseID; id = m.parent[id] {
		n++
	}
	return n
}

// descends reports whether frozen layer l is built on id, directly or not.
func (m *model) descends(l, id string) bool {
	if id == BaseID {
		return true
	}
	for p := m.parent[l]; p != BaseID; p = m.parent[p] {
		if p == id {
			return true
		}
	}
	return false
}

// gone checks that layer id's files are deleted.
func (m *model) gone(id string) {
	m.t.Helper()
	for _, p := range []string{dataPath(m.dir, id), mapPath(m.dir, id)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			m.t.Fatalf("dropped layer %s's file %s is still there: %v", id, p, err)
		}
	}
}

func checkImage(t testing.TB, s *Stack, want []byte, what string) {
	t.Helper()
	got := make([]byte, s.Size())
	if n, err := s.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("%sread whole disk: %d, %v", what, n, err)
	}
	if bytes.Equal(got, want) { // fast; diff then says where
		return
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
	if li.Parent != m.top {
		m.t.Fatalf("Freeze returned parent %q, want %q", li.Parent, m.top)
	}
	m.frozen = append(m.frozen, li.ID)
	m.parent[li.ID], m.top = m.top, li.ID
	m.snaps[li.ID] = slices.Clone(m.cur)
	m.synced()
}

// cutBack cuts back to frozen layer i, to the base for i == -1, and tries
// the writable top (an error) for i == len(frozen).
func (m *model) cutBack(i int) { m.moveTop(i, true) }

// checkout checks out frozen layer i, the base for i == -1, and tries the
// writable top (an error) for i == len(frozen).
func (m *model) checkout(i int) { m.moveTop(i, false) }

func (m *model) moveTop(i int, cut bool) {
	m.t.Helper()
	op, opName := m.s.Checkout, "Checkout"
	if cut {
		op, opName = m.s.CutBack, "CutBack"
	}
	ls := m.s.Layers()
	oldTop := ls[len(ls)-1].ID
	if i == len(m.frozen) {
		if err := op(oldTop); err == nil {
			m.t.Fatalf("%s to the writable top %s succeeded", opName, oldTop)
		}
		return
	}
	id := BaseID
	if i >= 0 {
		id = m.frozen[i]
	}
	if err := op(id); err != nil {
		m.t.Fatal(err)
	}
	m.gone(oldTop)
	if cut {
		var kept []string
		for _, f := range m.frozen {
			if m.descends(f, id) {
				delete(m.snaps, f)
				m.gone(f)
			} else {
				kept = append(kept, f)
			}
		}
		m.frozen = kept
	}
	m.top = id
	if i >= 0 {
		m.cur = slices.Clone(m.snaps[id])
	} else {
		m.cur = m.baseImage()
	}
	m.synced()
}

// deleteLayer deletes frozen layer i, or tries the writable top for i ==
// len(frozen); it must fail with ErrLayerInUse exactly when a layer is
// built on it.
func (m *model) deleteLayer(i int) {
	m.t.Helper()
	ls := m.s.Layers()
	id := ls[len(ls)-1].ID
	inUse := true
	if i < len(m.frozen) {
		id = m.frozen[i]
		inUse = m.top == id
		for _, f := range m.frozen {
			inUse = inUse || m.parent[f] == id
		}
	}
	err := m.s.DeleteLayer(id)
	if inUse {
		if !errors.Is(err, ErrLayerInUse) {
			m.t.Fatalf("DeleteLayer(%s), a layer in use: %v; want ErrLayerInUse", id, err)
		}
		if _, err := os.Stat(dataPath(m.dir, id)); err != nil {
			m.t.Fatalf("refused DeleteLayer(%s) deleted its data: %v", id, err)
		}
		return
	}
	if err != nil {
		m.t.Fatalf("DeleteLayer(%s): %v", id, err)
	}
	m.gone(id)
	m.frozen = slices.DeleteFunc(m.frozen, func(f string) bool { return f == id })
	delete(m.parent, id)
	delete(m.snaps, id)
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
