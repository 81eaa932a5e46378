package disk

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fork forks the model's frozen layer id into a new stack in dir and
// returns a model of the fork.
func (m *model) fork(id, dir string) *model {
	m.t.Helper()
	s, err := Fork(m.dir, id, dir)
	if err != nil {
		m.t.Fatal(err)
	}
	f := &model{t: m.t, tmp: m.tmp, dir: dir, base: m.base, s: s, top: id, snaps: map[string][]byte{}, parent: map[string]string{}}
	for p := id; p != BaseID; p = m.parent[p] {
		f.frozen = append(f.frozen, p)
		f.parent[p] = m.parent[p]
		f.snaps[p] = slices.Clone(m.snaps[p])
	}
	slices.Reverse(f.frozen)
	f.cur = slices.Clone(m.snaps[id])
	f.synced()
	m.t.Cleanup(func() { f.s.Close() })
	return f
}

// links is the number of hard links to path.
func links(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink)
}

// checkLinks checks that layer id's files in dir have n links.
func checkLinks(t testing.TB, dir, id string, n uint64) {
	t.Helper()
	for _, p := range []string{dataPath(dir, id), mapPath(dir, id)} {
		if got := links(t, p); got != n {
			t.Fatalf("%s has %d links, want %d", p, got, n)
		}
	}
}

// sameLayers checks that the fork's frozen layers are the source's chain,
// allocation included.
func sameLayers(t testing.TB, fork, src *Stack) {
	t.Helper()
	fl := fork.Layers()
	byID := map[string]LayerInfo{}
	for _, l := range src.Layers() {
		byID[l.ID] = l
	}
	for _, l := range fl[:len(fl)-1] {
		s, ok := byID[l.ID]
		if !ok || s.Parent != l.Parent || s.Name != l.Name || !s.Frozen || !l.Frozen ||
			!s.Created.Equal(l.Created) || !s.FrozenAt.Equal(l.FrozenAt) || s.Allocated != l.Allocated {
			t.Fatalf("fork's layer %+v, source's %+v", l, s)
		}
	}
}

// A fork reads as the source's layer, not the source's later writes, and
// each stack's writes reach only itself.
func TestFork(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 30)
	m.write(0, fill(3*ClusterSize, 1))
	m.write(testBase-100, fill(300, 2)) // across the base's end
	m.freeze("a")
	a := m.frozen[0]
	m.write(ClusterSize+5, fill(100, 3))
	m.zero(8*ClusterSize, 4*ClusterSize, true)
	m.freeze("b")
	b := m.frozen[1]
	m.write(2*ClusterSize, fill(ClusterSize, 4)) // the source's top: not forked
	m.write(20*ClusterSize+7, fill(2*ClusterSize, 5))
	m.flush()
	if diff(m.cur, m.snaps[b]) < 0 {
		t.Fatal("the source's top wrote nothing")
	}
	tmp := t.TempDir()

	// The source is open (its directory flocked) throughout.
	f1 := m.fork(b, filepath.Join(tmp, "f1"))
	f1.check()
	sameLayers(t, f1.s, m.s)
	if top := f1.s.Top(); top.Frozen || top.Parent != b || top.Allocated != 0 || top.ID == m.s.Top().ID {
		t.Fatalf("fork's top %+v", top)
	}
	if ls := f1.s.Layers(); f1.s.Top() != ls[len(ls)-1] {
		t.Fatalf("Top %+v is not the last of Layers %+v", f1.s.Top(), ls)
	}
	if fi, err := os.Stat(f1.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("fork directory: %v, %v", fi.Mode(), err)
	}
	checkLinks(t, m.dir, a, 2)
	checkLinks(t, m.dir, b, 2)
	checkLinks(t, m.dir, m.s.Top().ID, 1)

	f1.write(0, fill(5*ClusterSize, 6))
	f1.write(ClusterSize+1, fill(10, 7))
	f1.zero(20*ClusterSize, 3*ClusterSize, false)
	m.write(ClusterSize+3, fill(ClusterSize, 8))
	m.check()
	f1.check()

	f2 := m.fork(b, filepath.Join(tmp, "f2"))
	f2.check()
	f2.write(ClusterSize, fill(4*ClusterSize, 9))
	f2.zero(0, 100, true)
	f2.freeze("f2")
	f2.write(30*ClusterSize, fill(ClusterSize, 10))
	m.check()
	f1.check()
	f2.check()
	checkLinks(t, m.dir, b, 3)

	f3 := m.fork(a, filepath.Join(tmp, "f3")) // a lower layer: b is not taken
	f3.check()
	if n := len(f3.s.Layers()); n != 2 {
		t.Fatalf("fork of the bottom layer has %d layers", n)
	}
	checkLinks(t, m.dir, a, 4)
	checkLinks(t, m.dir, b, 3)

	for _, s := range []*model{m, f1, f2, f3} {
		s.reopen()
		s.check()
	}
}

func TestForkRefused(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 31)
	m.write(0, fill(ClusterSize, 1))
	m.freeze("a")
	a := m.frozen[0]
	m.write(ClusterSize, fill(ClusterSize, 2))
	tmp := t.TempDir()
	dst := filepath.Join(tmp, "fork")
	refused := func(what, src, id, dst, want string, is error) {
		t.Helper()
		s, err := Fork(src, id, dst)
		if err == nil {
			s.Close()
			t.Fatalf("%s: Fork succeeded", what)
		}
		if !strings.Contains(err.Error(), want) || is != nil && !errors.Is(err, is) {
			t.Fatalf("%s: %v; want %q (%v)", what, err, want, is)
		}
		if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
			t.Fatalf("%s: refused Fork left %s: %v", what, dst, serr)
		}
		t.Logf("%s: %v", what, err)
	}
	refused("the writable top", m.dir, m.s.Top().ID, dst, "writable top", nil)
	refused("an unknown layer", m.dir, "0123456789abcdef", dst, "no layer", nil)
	refused("the base", m.dir, BaseID, dst, "frozen layer", nil)
	refused("not a stack", tmp, a, dst, "not a disk stack", nil)
	refused("a missing parent", filepath.Join(tmp, "none"), a, filepath.Join(tmp, "x", "y"), "not a disk stack", nil)

	// An existing directory is neither used nor removed.
	os.Mkdir(dst, 0o700)
	os.WriteFile(filepath.Join(dst, "keep"), []byte("x"), 0o600)
	if _, err := Fork(m.dir, a, dst); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Fork into an existing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "keep")); err != nil {
		t.Fatalf("Fork into an existing directory removed it: %v", err)
	}
	os.RemoveAll(dst)

	// A damaged layer is refused as Open refuses it.
	damaged := func(what string, damage func(dir string), want string) {
		t.Helper()
		src := filepath.Join(tmp, "damaged")
		copyDir(t, m.dir, src)
		defer os.RemoveAll(src)
		damage(src)
		refused(what, src, a, dst, want, ErrCorrupt)
	}
	damaged("map bit flipped", func(dir string) {
		b, _ := os.ReadFile(mapPath(dir, a))
		b[mapHeaderLen] ^= 1
		os.WriteFile(mapPath(dir, a), b, 0o600)
	}, "checksum")
	damaged("map of another layer", func(dir string) {
		os.Rename(mapPath(dir, m.s.Top().ID), mapPath(dir, a))
	}, "belongs to layer")
	damaged("data truncated", func(dir string) { os.Truncate(dataPath(dir, a), ClusterSize) }, "bytes, want")
	damaged("data missing", func(dir string) { os.Remove(dataPath(dir, a)) }, "no such file")

	// A link that fails other than by EXDEV, EPERM or EMLINK is not copied.
	linkFile = func(o, n string) error { return &os.LinkError{Op: "link", Old: o, New: n, Err: unix.EIO} }
	refused("link I/O error", m.dir, a, dst, "input/output error", nil)
	linkFile = os.Link

	// A layer deleted while Fork runs: Fork fails, and says why.
	m.checkout(-1) // a is a leaf off the chain
	linkFile = func(o, n string) error {
		linkFile = os.Link
		if err := m.s.DeleteLayer(a); err != nil {
			t.Fatal(err)
		}
		return os.Link(o, n)
	}
	refused("a layer deleted meanwhile", m.dir, a, dst, "deleted from stack", nil)
	linkFile = os.Link
	m.frozen = nil

	// A changed base image.
	m.freeze("b")
	if err := os.Chtimes(m.s.baseRec.Path, time.Time{}, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	refused("base changed", m.dir, m.frozen[0], dst, "base image changed", ErrBaseChanged)
	if es, _ := os.ReadDir(tmp); len(es) != 0 {
		t.Fatalf("refused forks left %d entries in %s", len(es), tmp)
	}
}

// Layers a fork shares outlive their deletion in the source and in the
// fork, and a fork's Freeze, Checkout, DeleteLayer and CutBack work on it
// alone; a fork of a fork works the same.
func TestForkSharedLayers(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 32)
	m.write(0, fill(3*ClusterSize, 1))
	m.freeze("a")
	a := m.frozen[0]
	m.write(ClusterSize, fill(2*ClusterSize, 2))
	m.write(10*ClusterSize, fill(ClusterSize, 3))
	m.freeze("b")
	b := m.frozen[1]
	m.write(5*ClusterSize, fill(ClusterSize, 4))
	tmp := t.TempDir()
	f := m.fork(b, filepath.Join(tmp, "f"))
	g := m.fork(b, filepath.Join(tmp, "g"))
	sums := map[string][32]byte{}
	for _, id := range []string{a, b} {
		sums[dataPath(m.dir, id)] = fileSum(t, dataPath(m.dir, id))
		sums[mapPath(m.dir, id)] = fileSum(t, mapPath(m.dir, id))
	}

	// The fork branches, goes back and deletes the shared layer b.
	f.write(2*ClusterSize, fill(ClusterSize, 5))
	f.freeze("c")
	f.write(12*ClusterSize, fill(ClusterSize, 6))
	f.checkout(0) // to a
	f.check()
	f.deleteLayer(2) // c
	f.deleteLayer(1) // b, shared
	f.check()
	f.reopen()
	f.check()
	checkLinks(t, m.dir, b, 2) // the source's and g's
	checkLinks(t, m.dir, a, 3)
	for p, sum := range sums {
		if fileSum(t, p) != sum {
			t.Fatalf("the fork's changes changed the source's %s", p)
		}
	}
	m.check()

	// The source deletes b, then every layer: g keeps them.
	m.checkout(0)
	m.deleteLayer(1)
	checkLinks(t, g.dir, b, 1)
	g.check()
	m.cutBack(-1)
	m.check()
	checkLinks(t, g.dir, a, 2) // g's and f's
	g.reopen()
	g.check()

	// A fork of the fork, on a layer the fork froze.
	g.write(20*ClusterSize, fill(3*ClusterSize, 7))
	g.freeze("d")
	d := g.frozen[2]
	g.write(0, fill(ClusterSize, 8))
	h := g.fork(d, filepath.Join(tmp, "h"))
	h.check()
	if ls := h.s.Layers(); len(ls) != 4 || ls[0].ID != a || ls[1].ID != b || ls[2].ID != d {
		t.Fatalf("fork of a fork: layers %+v", ls)
	}
	sameLayers(t, h.s, g.s)
	h.write(21*ClusterSize, fill(ClusterSize, 9))
	g.check()
	h.check()
	h.cutBack(0) // drops b, d and the top: g still reads through them
	h.check()
	g.check()
	h.reopen()
	h.check()
	g.reopen()
	g.check()

	// Remove of one stack leaves the others' shared files.
	if err := g.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(g.dir); err != nil {
		t.Fatal(err)
	}
	checkLinks(t, f.dir, a, 2) // f's and h's
	f.check()
	h.check()
}

// Where the file system refuses the link, the fork copies the layers'
// files, and keeps their holes.
func TestForkCopies(t *testing.T) {
	const size = 4 << 20 // big enough that a dense copy shows
	m := newModel(t, "", testBase, size, 33)
	m.write(0, fill(2*ClusterSize, 1))
	m.write(size/2, fill(ClusterSize, 2))
	m.freeze("a")
	a := m.frozen[0]
	m.write(size/4, fill(ClusterSize, 3))
	m.zero(size/2-ClusterSize, 3*ClusterSize, true)
	m.freeze("b")
	b := m.frozen[1]
	tmp := t.TempDir()
	defer func() { linkFile = os.Link }()
	for _, errno := range []syscall.Errno{unix.EXDEV, unix.EPERM, unix.EMLINK} {
		calls := 0
		linkFile = func(o, n string) error {
			calls++
			return &os.LinkError{Op: "link", Old: o, New: n, Err: errno}
		}
		f := m.fork(b, filepath.Join(tmp, errno.Error()))
		if calls != 4 {
			t.Fatalf("%d links tried, want 4", calls)
		}
		f.check()
		sameLayers(t, f.s, m.s)
		for _, id := range []string{a, b} {
			checkLinks(t, m.dir, id, 1)
			checkLinks(t, f.dir, id, 1)
			if fileSum(t, mapPath(f.dir, id)) != fileSum(t, mapPath(m.dir, id)) {
				t.Fatalf("%v: layer %s's map copied wrong", errno, id)
			}
			if got, src := blocks(t, dataPath(f.dir, id)), blocks(t, dataPath(m.dir, id)); got > src {
				t.Fatalf("%v: layer %s's copy allocates %d bytes, the source %d", errno, id, got, src)
			}
		}
		f.write(size/4, fill(ClusterSize, 4))
		f.reopen()
		f.check()
		m.check()
	}
	linkFile = os.Link

	// Across file systems for real, where the test can reach another one.
	other, err := os.MkdirTemp("/dev/shm", "disk-fork-")
	if err != nil {
		t.Skipf("no second file system: %v", err)
	}
	defer os.RemoveAll(other)
	var st1, st2 unix.Stat_t
	if unix.Stat(m.dir, &st1) != nil || unix.Stat(other, &st2) != nil || st1.Dev == st2.Dev {
		t.Skip("/dev/shm is on the test's file system")
	}
	f := m.fork(b, filepath.Join(other, "f"))
	f.check()
	checkLinks(t, f.dir, b, 1)
	if got := blocks(t, dataPath(f.dir, a)); got > 64<<10 {
		t.Fatalf("the cross-file-system copy of layer a allocates %d bytes", got)
	}
	f.reopen()
	f.check()
}

// copySparse copies data and keeps holes; its read-and-write fallback
// leaves zeros written as data out.
func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	const size = 8 << 20
	want := make([]byte, size)
	copy(want[ClusterSize:], fill(3*ClusterSize, 1))
	copy(want[size/2+5:], fill(ClusterSize, 2))
	copy(want[size-ClusterSize-5:], fill(ClusterSize, 3)) // not cluster-aligned, to the end
	dense := filepath.Join(dir, "dense")                  // zeros written as data
	if err := os.WriteFile(dense, want, 0o600); err != nil {
		t.Fatal(err)
	}
	holey := filepath.Join(dir, "holey")
	hf, err := os.Create(holey)
	if err != nil {
		t.Fatal(err)
	}
	hf.Truncate(size)
	for _, off := range []int{ClusterSize, size/2 + 5, size - ClusterSize - 5} {
		hf.WriteAt(want[off:min(off+4*ClusterSize, size)], int64(off))
	}
	hf.Close()
	if blocks(t, holey) >= blocks(t, dense)/4 {
		t.Skip("the file system does not keep holes")
	}
	cp := func(name, src string, copy func(out, in *os.File) error) int64 {
		t.Helper()
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		dst := filepath.Join(dir, name)
		out, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		out.Truncate(size)
		err = copy(out, in)
		out.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, _ := os.ReadFile(dst)
		if i := diff(got, want); i >= 0 {
			t.Fatalf("%s: byte %d differs", name, i)
		}
		return blocks(t, dst)
	}
	if b := cp("sparse", holey, func(out, in *os.File) error { return copySparse(out, in, size) }); b > blocks(t, holey) {
		t.Fatalf("copySparse: %d bytes allocated, the source %d", b, blocks(t, holey))
	}
	if b := cp("rw", dense, func(out, in *os.File) error { return copyRangeRW(out, in, 0, size) }); b > blocks(t, holey) {
		t.Fatalf("copyRangeRW: %d bytes allocated, the dense source %d: zeros were written", b, blocks(t, dense))
	}
	cp("range", dense, func(out, in *os.File) error { return copyRange(out, in, 0, size) })
	// copyFile makes a new file, durably, of the source's length.
	if err := copyFile(holey, filepath.Join(dir, "copy")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "copy")); diff(got, want) >= 0 {
		t.Fatal("copyFile copied wrong")
	}
	if b := blocks(t, filepath.Join(dir, "copy")); b > blocks(t, holey) {
		t.Fatalf("copyFile: %d bytes allocated, the source %d", b, blocks(t, holey))
	}
	if err := copyFile(holey, filepath.Join(dir, "copy")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("copyFile over an existing file: %v", err)
	}
}

// Fork takes no lock on the source: it runs while the source's VM writes,
// freezes and flushes.
func TestForkWhileSourceRuns(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 34)
	m.write(0, fill(testSize/2, 1))
	m.freeze("a")
	a := m.frozen[0]
	want := m.snaps[a]
	s := m.s
	done := make(chan struct{})
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			_, err := s.WriteAt(fill(3*ClusterSize, byte(i)), int64(i%30)*ClusterSize)
			if err == nil && i%5 == 4 {
				_, err = s.Freeze("")
			} else if err == nil {
				err = s.Flush()
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	tmp := t.TempDir()
	for i := range 10 {
		dir := filepath.Join(tmp, "f", string(rune('a'+i)))
		f, err := Fork(m.dir, a, dir)
		if err != nil {
			close(done)
			t.Fatal(err)
		}
		checkImage(t, f, want, "fork while the source runs: ")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// A crash during Fork leaves a directory that Open refuses as an unfinished
// stack, or the complete fork.
func TestForkCrash(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 35)
	m.write(0, fill(2*ClusterSize, 1))
	m.freeze("a")
	m.write(3*ClusterSize, fill(ClusterSize, 2))
	m.freeze("b")
	b := m.frozen[1]
	tmp := t.TempDir()
	dst := filepath.Join(tmp, "fork")
	type crash struct{ point, dir string }
	var crashes []crash
	crashHook = func(point string) {
		dir := filepath.Join(tmp, "crash", point+"-"+string(rune('a'+len(crashes))))
		copyDir(t, dst, dir)
		crashes = append(crashes, crash{point, dir})
	}
	defer func() { crashHook = nil }()
	f := m.fork(b, dst)
	crashHook = nil
	var points []string
	committed := false
	for _, c := range crashes {
		points = append(points, c.point)
		committed = committed || c.point == "manifest:renamed"
		s, err := Open(c.dir)
		if !committed {
			if err == nil || !strings.Contains(err.Error(), "not a disk stack") {
				t.Fatalf("crash at %s: Open of the unfinished fork: %v", c.point, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("crash at %s: %v", c.point, err)
		}
		checkImage(t, s, m.snaps[b], "crash at "+c.point+": ")
		s.Close()
	}
	if !committed {
		t.Fatalf("no commit among crash points %v", points)
	}
	t.Logf("crash points %v", points)
	f.check()
}
