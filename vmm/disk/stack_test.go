package disk

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The disk is not a whole number of clusters and is larger than its base,
// whose end is not on a cluster boundary either.
const (
	testBase = 30*ClusterSize + 1536
	testSize = 40*ClusterSize + 512
)

func TestRandomWritesAcrossFreezes(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 1)
	r := rand.New(rand.NewPCG(2, 3))
	size := int(m.s.Size())
	for i := range 1500 {
		switch k := r.IntN(10); {
		case k < 3: // cluster-aligned
			n := (1 + r.IntN(5)) * ClusterSize
			off := r.IntN(size/ClusterSize) * ClusterSize
			m.write(int64(min(off, size-n)), fill(n, byte(i)))
		case k < 6: // anywhere, any length, often spanning clusters
			n := 1 + r.IntN(3*ClusterSize)
			m.write(int64(r.IntN(size-n+1)), fill(n, byte(i)))
		case k < 7: // ending at the end of the disk
			n := 1 + r.IntN(2*ClusterSize)
			m.write(int64(size-n), fill(n, byte(i)))
		case k < 8:
			n := r.IntN(3 * ClusterSize)
			m.zero(int64(r.IntN(size-n+1)), int64(n), r.IntN(2) == 0)
		case k < 9:
			m.flush()
		default:
			n := 1 + r.IntN(4*ClusterSize)
			m.read(int64(r.IntN(size+100)), n)
		}
		if i%150 == 149 {
			m.freeze(fmt.Sprint("snap", i))
		}
		m.check()
	}
	if len(m.s.Layers()) != 11 {
		t.Fatalf("%d layers", len(m.s.Layers()))
	}
	m.reopen()
	m.check()
}

func TestFreezeAndCutBack(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 4)
	m.write(0, fill(3*ClusterSize, 1))
	m.write(testBase-100, fill(300, 2)) // across the base's end
	m.freeze("a")
	a := m.frozen[0]
	m.write(ClusterSize+5, fill(100, 3))
	m.zero(8*ClusterSize, 4*ClusterSize, true)
	m.freeze("b")
	b := m.frozen[1]
	m.write(2*ClusterSize, fill(ClusterSize, 4))
	m.check()
	aData := fileSum(t, dataPath(m.dir, a))

	m.cutBack(0) // to a: drops b and the top
	m.check()
	checkImage(t, m.s, m.snaps[a], "after CutBack(a): ")
	if err := m.s.CutBack(b); err == nil || !strings.Contains(err.Error(), "no layer") {
		t.Fatal("CutBack to a dropped layer succeeded")
	}
	m.cutBack(1) // the writable top: refused
	m.write(3*ClusterSize+1, fill(10, 5))
	top := m.s.Layers()[1]
	if top.Frozen || top.Allocated != ClusterSize {
		t.Fatalf("write after CutBack: top layer %+v, want one cluster in it", top)
	}
	if fileSum(t, dataPath(m.dir, a)) != aData {
		t.Fatal("writing after CutBack changed the frozen layer's data")
	}
	m.check()
	m.reopen()
	m.check()

	m.cutBack(-1) // to the base
	m.check()
	checkImage(t, m.s, m.baseImage(), "after CutBack(BaseID): ")
	if ls := m.s.Layers(); len(ls) != 1 || ls[0].Allocated != 0 {
		t.Fatalf("layers after CutBack(BaseID): %+v", ls)
	}
	if err := m.s.CutBack("0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "no layer") {
		t.Fatalf("CutBack to an unknown layer: %v", err)
	}
	// Only the manifest and the one layer's two files are left.
	if es, _ := os.ReadDir(m.dir); len(es) != 3 {
		t.Fatalf("stack directory holds %d files after cutting back to the base", len(es))
	}
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// accMode is the access mode the kernel holds for f's descriptor.
func accMode(t *testing.T, f *os.File) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		t.Skipf("no fdinfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			fl, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(fl) & unix.O_ACCMODE
		}
	}
	t.Fatal("no flags in fdinfo")
	return 0
}

func TestBaseNeverWritten(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 5)
	basePath := m.s.baseRec.Path
	before := fileSum(t, basePath)
	r := rand.New(rand.NewPCG(6, 7))
	for i := range 300 {
		n := 1 + r.IntN(2*ClusterSize)
		m.write(int64(r.IntN(testSize-n)), fill(n, byte(i)))
		if i%50 == 0 {
			m.zero(int64(r.IntN(testSize/2)), int64(r.IntN(testSize/2)), true)
			m.freeze("")
		}
	}
	if accMode(t, m.s.base) != unix.O_RDONLY {
		t.Fatal("the base image is not open read-only")
	}
	for i, l := range m.s.layers {
		want := unix.O_RDONLY
		if i == len(m.s.layers)-1 {
			want = unix.O_RDWR
		}
		if accMode(t, l.data) != want {
			t.Fatalf("layer %d's data file has access mode %d, want %d", i, accMode(t, l.data), want)
		}
	}
	m.cutBack(2)
	m.cutBack(-1)
	m.reopen()
	m.check()
	if fileSum(t, basePath) != before {
		t.Fatal("the base image changed")
	}
	if fi, _ := os.Stat(basePath); fi.Mode().Perm() != 0o444 {
		t.Fatalf("base mode %v", fi.Mode())
	}
}

func TestOutOfRange(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 8)
	m.write(0, fill(testSize, 1))
	m.flush()
	sizes := func() (n []int64) {
		for _, p := range []string{dataPath(m.dir, m.s.Layers()[0].ID), mapPath(m.dir, m.s.Layers()[0].ID)} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			n = append(n, fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks)
		}
		return n
	}
	before := sizes()
	for _, c := range []struct{ off, n int64 }{
		{testSize - 1, 2}, {testSize, 1}, {testSize + ClusterSize, ClusterSize}, {-1, 1}, {-ClusterSize, 2 * ClusterSize},
	} {
		m.write(c.off, fill(int(c.n), 9)) // the model checks for ErrOutOfRange
		m.zero(c.off, c.n, false)
		m.zero(c.off, c.n, true)
		m.read(c.off, int(c.n))
	}
	for _, c := range []struct{ off, n int64 }{{1, 1<<63 - 1}, {1<<63 - 1, 1}, {0, -1}, {testSize, -1}} {
		if err := m.s.Discard(c.off, c.n); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Discard(%d, %d) = %v", c.off, c.n, err)
		}
		if err := m.s.WriteZeroes(c.off, c.n); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("WriteZeroes(%d, %d) = %v", c.off, c.n, err)
		}
	}
	if n, err := m.s.ReadAt(nil, testSize+10); n != 0 || err != nil {
		t.Fatalf("empty read past the end: %d, %v", n, err)
	}
	m.flush()
	if after := sizes(); !slicesEqual(before, after) {
		t.Fatalf("out-of-range requests changed the layer files: %v -> %v", before, after)
	}
	m.check()
}

func slicesEqual(a, b []int64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestZeroesHideLowerLayers(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 10)
	p := fill(testSize, 11)
	for i := range p {
		p[i] |= 1 // no zero byte, so none shows through by chance
	}
	m.write(0, p)
	m.freeze("full")
	for _, c := range []struct {
		off, n  int64
		discard bool
	}{
		{100, 50, true},                                // inside one cluster
		{ClusterSize - 10, 20, false},                  // across a boundary, no whole cluster
		{2*ClusterSize + 1, 3 * ClusterSize, true},     // partial, two whole, partial
		{6 * ClusterSize, 2 * ClusterSize, false},      // whole clusters
		{testSize - 700, 700, true},                    // the short last cluster
		{testSize - 3*ClusterSize - 5, 100, false},     // the last cluster
		{35 * ClusterSize, ClusterSize + 4095, true},   // ends 1 byte before a boundary
		{20*ClusterSize + 1, ClusterSize - 1, false},   // the rest of a cluster
		{25 * ClusterSize, 0, true},                    // nothing
		{27*ClusterSize - 1, 2*ClusterSize + 2, false}, // 1 byte, two whole clusters, 1 byte
	} {
		m.zero(c.off, c.n, c.discard)
		m.check()
	}
	m.write(6*ClusterSize+7, []byte("after")) // a write into a zeroed cluster
	m.check()
	m.freeze("zeroed")
	m.reopen()
	m.check()
	m.crash()

	// Whole zeroed clusters free their space in the top layer.
	m.write(0, fill(64*ClusterSize, 3)[:testSize/2])
	m.flush()
	top := dataPath(m.dir, m.s.Layers()[2].ID)
	full := blocks(t, top)
	m.zero(0, testSize/2, true)
	m.flush()
	if got := blocks(t, top); got > full/4 {
		t.Fatalf("discarding %d bytes left the data file at %d bytes allocated (was %d)", testSize/2, got, full)
	}
	m.check()
}

func blocks(t testing.TB, path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSparse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s, err := Create(dir, "", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteAt(fill(ClusterSize, 1), 512<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	id := s.Layers()[0].ID
	if got := blocks(t, dataPath(dir, id)); got > 16<<10 {
		t.Fatalf("one cluster on a 1 GiB disk allocated %d bytes of data file", got)
	}
	// The bitmap is the fixed cost: one bit per cluster, 32 KiB per GiB.
	if got := blocks(t, mapPath(dir, id)); got > 48<<10 {
		t.Fatalf("the map of a 1 GiB disk takes %d bytes", got)
	}
	if fi, _ := os.Stat(dataPath(dir, id)); fi.Size() != 1<<30 {
		t.Fatalf("data file is %d bytes long", fi.Size())
	}
	if ls := s.Layers(); ls[0].Allocated != ClusterSize {
		t.Fatalf("layers %+v", ls)
	}
}

func TestCrashDuringUpdates(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 12)
	type snap struct {
		point, dir string
		want       []byte
		layers     int
	}
	var snaps []snap
	var before []byte // what a crash before the commit point leaves
	beforeLayers := 0
	after := map[string]bool{"map:renamed": true, "manifest:renamed": true, "cutback:dropped": true, "checkout:dropped": true, "delete:dropped": true}
	committed := false
	crashHook = func(point string) {
		dir := filepath.Join(t.TempDir(), "crash")
		copyDir(t, m.dir, dir)
		committed = committed || after[point]
		want, layers := before, beforeLayers
		if committed {
			want, layers = nil, -1 // the state after the operation; filled in below
		}
		snaps = append(snaps, snap{point, dir, want, layers})
	}
	defer func() { crashHook = nil }()
	// run does op, with a copy of the stack taken at each step, and checks
	// that each copy reads as the stack did before op or after it.
	run := func(what string, op func()) {
		t.Helper()
		before, beforeLayers, committed, snaps = m.crashImage(), len(m.s.Layers()), false, nil
		op()
		if len(snaps) == 0 {
			t.Fatalf("%s: no crash points", what)
		}
		var points []string
		for _, c := range snaps {
			points = append(points, c.point)
			if c.want == nil {
				c.want, c.layers = m.crashImage(), len(m.s.Layers())
			}
			s, err := Open(c.dir)
			if err != nil {
				t.Fatalf("%s: crash at %s: %v", what, c.point, err)
			}
			checkImage(t, s, c.want, what+": crash at "+c.point+": ")
			if len(s.Layers()) != c.layers {
				t.Fatalf("%s: crash at %s: %d layers, want %d", what, c.point, len(s.Layers()), c.layers)
			}
			s.Close()
			es, _ := os.ReadDir(c.dir)
			if len(es) != 1+2*c.layers {
				t.Fatalf("%s: crash at %s: Open left %d files for %d layers", what, c.point, len(es), c.layers)
			}
		}
		t.Logf("%s: crash points %v", what, points)
	}

	m.write(0, fill(3*ClusterSize, 1))
	m.write(5*ClusterSize+9, fill(10, 2))
	run("first flush", m.flush)
	m.write(ClusterSize, fill(ClusterSize, 3))    // in place: the map holds it
	m.write(10*ClusterSize, fill(ClusterSize, 4)) // new since the flush
	m.zero(0, 100, true)
	m.crash()
	m.flush() // the freeze's own flush is the first flush's code
	run("freeze", func() { m.freeze("a") })
	m.write(12*ClusterSize, fill(2*ClusterSize, 5))
	m.flush()
	m.freeze("b")
	m.write(20*ClusterSize, fill(2*ClusterSize, 6))
	m.flush()
	m.write(22*ClusterSize, fill(2*ClusterSize, 7)) // not flushed
	m.crash()
	run("checkout a", func() { m.checkout(0) })
	m.write(30*ClusterSize, fill(ClusterSize, 9))
	m.flush()
	m.freeze("c")
	run("checkout b", func() { m.checkout(1) })
	run("delete c", func() { m.deleteLayer(2) })
	run("cut back to a", func() { m.cutBack(0) })
	m.write(0, fill(ClusterSize, 8))
	m.flush()
	run("cut back to the base", func() { m.cutBack(-1) })
	m.check()
}

// Checkout moves between branches without deleting any frozen layer, and
// DeleteLayer deletes only leaves off the current chain.
func TestCheckoutAndDeleteLayer(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 21)
	m.write(0, fill(2*ClusterSize, 1))
	m.freeze("baseline")
	base := m.frozen[0]
	m.write(ClusterSize, fill(ClusterSize, 2))
	m.freeze("a")
	a := m.frozen[1]
	m.write(3*ClusterSize, fill(ClusterSize, 3))
	m.freeze("b")
	b := m.frozen[2]
	m.write(5*ClusterSize, fill(ClusterSize, 4)) // the top's, discarded
	m.checkout(0)                                // back to the baseline
	m.check()
	m.write(7*ClusterSize, fill(ClusterSize, 5))
	m.checkout(2) // forward to b: a and b survived
	m.check()
	checkImage(t, m.s, m.snaps[b], "after Checkout(b): ")
	m.checkout(1)
	m.check()
	m.write(9*ClusterSize, fill(ClusterSize, 6))
	m.freeze("c") // a branch off a
	c := m.frozen[3]
	m.check()
	for _, id := range []string{base, a, c} {
		if err := m.s.DeleteLayer(id); !errors.Is(err, ErrLayerInUse) {
			t.Fatalf("DeleteLayer(%s) in use: %v", id, err)
		}
	}
	if err := m.s.DeleteLayer("0123456789abcdef"); err == nil || errors.Is(err, ErrLayerInUse) {
		t.Fatalf("DeleteLayer of an unknown layer: %v", err)
	}
	m.deleteLayer(2) // b: a leaf off the chain
	m.reopen()
	m.check()
	m.checkout(-1)
	m.deleteLayer(2) // c, now off the chain
	m.deleteLayer(1) // a, now a leaf
	m.check()
	if ls := m.s.Layers(); len(ls) != 2 || ls[0].ID != base || ls[1].Parent != BaseID {
		t.Fatalf("layers %+v", ls)
	}
	checkImage(t, m.s, m.baseImage(), "after Checkout(BaseID): ")
	es, _ := os.ReadDir(m.dir)
	if len(es) != 1+2*2 {
		t.Fatalf("%d files left for 2 layers", len(es))
	}
}

// A stack written by the first format (version 1: a chain, no parents)
// opens with each layer's parent the one before it, and is rewritten as
// version 2 by the next change.
func TestOpenVersion1Manifest(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 22)
	m.write(0, fill(3*ClusterSize, 1))
	m.freeze("a")
	m.write(ClusterSize, fill(3*ClusterSize, 2))
	m.freeze("b")
	m.write(2*ClusterSize, fill(ClusterSize, 3))
	if err := m.s.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(m.dir, manifestName)
	var v map[string]any
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // mtime_ns does not fit a float64
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	v["version"] = 1
	for _, l := range v["layers"].([]any) {
		delete(l.(map[string]any), "parent")
	}
	if b, err = json.MarshalIndent(v, "", "  "); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "parent") {
		t.Fatal("the version 1 fixture names parents")
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	m.s = s
	m.synced()
	m.check() // parents as the model has them: a on the base, b on a, the top on b
	m.checkout(-1)
	m.checkout(1)
	m.check()
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), `"version": 2`) || !strings.Contains(string(b), `"parent"`) {
		t.Fatalf("manifest after a Checkout is not version 2:\n%s", b)
	}
	m.reopen()
	m.check()
}

// Writes since the last Flush are never half-visible after a crash: a crash
// right after a burst of writes to new clusters leaves the flushed disk.
func TestCrashLosesOnlyUnflushedWrites(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 13)
	m.write(0, fill(testSize/2, 1))
	m.freeze("a")
	flushed := slices.Clone(m.cur)
	r := rand.New(rand.NewPCG(14, 15))
	for i := range 50 {
		n := 1 + r.IntN(2*ClusterSize)
		m.write(int64(r.IntN(testSize-n)), fill(n, byte(i)))
	}
	m.crash()
	if !bytes.Equal(m.crashImage(), flushed) {
		t.Fatal("the model expects a fresh layer's unflushed writes to survive a crash")
	}
	m.flush()
	m.crash()
}

func TestOpenRefusesDamage(t *testing.T) {
	tmp := t.TempDir()
	basePath, _ := writeBase(t, tmp, testBase, 16)
	good := filepath.Join(tmp, "good")
	s, err := Create(good, basePath, testSize)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteAt(fill(8*ClusterSize, 1), 0)
	a, err := s.Freeze("a")
	if err != nil {
		t.Fatal(err)
	}
	s.WriteAt(fill(8*ClusterSize, 2), 4*ClusterSize)
	top := s.Layers()[1].ID
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	edit := func(name string, f func([]byte) []byte) func(string) {
		return func(dir string) {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte { b[i] ^= 0x10; return b }
	}
	manifest := func(old, new string) func(string) {
		return edit(manifestName, func(b []byte) []byte { return []byte(strings.Replace(string(b), old, new, 1)) })
	}
	cases := []struct {
		name   string
		damage func(dir string)
		want   error
		says   string
	}{
		{"map truncated", edit(a.ID+".map", func(b []byte) []byte { return b[:len(b)-5] }), ErrCorrupt, "truncated"},
		{"map empty", edit(top+".map", func([]byte) []byte { return nil }), ErrCorrupt, top},
		{"map bit flipped", edit(a.ID+".map", flip(mapHeaderLen+1)), ErrCorrupt, "checksum"},
		{"map header flipped", edit(top+".map", flip(3)), ErrCorrupt, "checksum"},
		{"maps swapped", func(dir string) {
			os.Rename(mapPath(dir, a.ID), filepath.Join(dir, "x"))
			os.Rename(mapPath(dir, top), mapPath(dir, a.ID))
			os.Rename(filepath.Join(dir, "x"), mapPath(dir, top))
		}, ErrCorrupt, "belongs to layer"},
		{"map missing", func(dir string) { os.Remove(mapPath(dir, a.ID)) }, ErrCorrupt, a.ID},
		{"data missing", func(dir string) { os.Remove(dataPath(dir, top)) }, ErrCorrupt, top},
		{"data truncated", func(dir string) { os.Truncate(dataPath(dir, a.ID), 4*ClusterSize) }, ErrCorrupt, "data file"},
		{"manifest truncated", edit(manifestName, func(b []byte) []byte { return b[:len(b)/2] }), ErrCorrupt, "does not parse"},
		{"manifest garbage", edit(manifestName, func([]byte) []byte { return []byte("\x00\x01garbage") }), ErrCorrupt, "does not parse"},
		{"manifest unknown field", manifest(`"size"`, `"sise": 1, "size"`), ErrCorrupt, "sise"},
		{"layer path escape", manifest(a.ID, "../../etc/passwd"), ErrCorrupt, "bad layer ID"},
		{"layer unknown", manifest(`"id": "`+top, `"id": "0000000000000000`), ErrCorrupt, "0000000000000000"},
		{"parent unknown", manifest(`"parent": "`+a.ID, `"parent": "0000000000000000`), ErrCorrupt, "not a frozen layer listed before it"},
		{"parent missing", manifest(`"parent": "`+a.ID+`",`, ``), ErrCorrupt, "has no parent"},
		{"parent in version 1", manifest(`"version": 2`, `"version": 1`), ErrCorrupt, "names no parents"},
		{"top frozen", manifest(`"frozen": false`, `"frozen": true`), ErrCorrupt, "only the top"},
		{"size changed", manifest(fmt.Sprintf(`"size": %d`, testSize), fmt.Sprintf(`"size": %d`, testSize+512)), ErrCorrupt, ""},
		{"newer version", manifest(`"version": 2`, `"version": 3`), nil, "version 3"},
		{"no manifest", func(dir string) { os.Remove(filepath.Join(dir, manifestName)) }, os.ErrNotExist, "not a disk stack"},
	}
	for _, c := range cases {
		dir := filepath.Join(tmp, strings.ReplaceAll(c.name, " ", "-"))
		copyDir(t, good, dir)
		c.damage(dir)
		s, err := Open(dir)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: Open: %v; want %v saying %q", c.name, err, c.want, c.says)
		}
		t.Logf("%s: %v", c.name, err)
	}
	// The base must be the very file the layers were written over.
	for _, change := range []func(){
		func() { os.Chtimes(basePath, time.Now(), time.Now()) },
		func() {
			f, _ := os.OpenFile(basePath, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 512))
			f.Close()
		},
		func() { os.Remove(basePath) },
	} {
		change()
		if s, err := Open(good); err == nil || !(errors.Is(err, ErrBaseChanged) || errors.Is(err, os.ErrNotExist)) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open over a changed base: %v", err)
		} else {
			t.Log(err)
		}
	}
}

func TestLockingAndReadOnly(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 17)
	m.write(0, fill(ClusterSize, 1))
	if _, err := Open(m.dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Open: %v", err)
	}
	if _, err := OpenReadOnly(m.dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("OpenReadOnly of an open stack: %v", err)
	}
	if err := Remove(m.dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("Remove of an open stack: %v", err)
	}
	m.freeze("a")
	if err := m.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.s.ReadAt(make([]byte, 1), 0); err != ErrClosed {
		t.Fatalf("read after Close: %v", err)
	}
	if err := m.s.Flush(); err != ErrClosed {
		t.Fatalf("Flush after Close: %v", err)
	}
	leftover := filepath.Join(m.dir, "0123456789abcdef.data")
	os.WriteFile(leftover, nil, 0o600)

	r1, err := OpenReadOnly(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := OpenReadOnly(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := Open(m.dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open while read-only Stacks are open: %v", err)
	}
	checkImage(t, r2, m.cur, "read-only: ")
	for _, l := range r1.layers {
		if accMode(t, l.data) != unix.O_RDONLY {
			t.Fatal("a read-only stack's layer is open for writing")
		}
	}
	if _, err := r1.WriteAt([]byte{1}, 0); err != ErrReadOnly {
		t.Fatalf("write: %v", err)
	}
	if err := r1.Discard(0, 1); err != ErrReadOnly {
		t.Fatalf("discard: %v", err)
	}
	if _, err := r1.Freeze("x"); err != ErrReadOnly {
		t.Fatalf("freeze: %v", err)
	}
	if err := r1.CutBack(BaseID); err != ErrReadOnly {
		t.Fatalf("cut back: %v", err)
	}
	if err := r1.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatal("OpenReadOnly deleted a file")
	}
	r1.Close()
	r2.Close()
	m.reopen()
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatal("Open kept a leftover layer file")
	}
	m.check()
}

func TestCreateAndRemove(t *testing.T) {
	tmp := t.TempDir()
	basePath, _ := writeBase(t, tmp, testBase, 18)
	odd := filepath.Join(tmp, "odd.img")
	os.WriteFile(odd, make([]byte, 1000), 0o600)
	for _, c := range []struct {
		base string
		size int64
	}{{odd, 0}, {basePath, testBase - 512}, {basePath, testSize + 1}, {"", 0}, {"", -512}, {"", MaxSize + 512}, {filepath.Join(tmp, "none"), 0}, {tmp, 0}} {
		if s, err := Create(filepath.Join(tmp, "bad"), c.base, c.size); err == nil {
			s.Close()
			t.Errorf("Create over %q of %d bytes succeeded", c.base, c.size)
		}
	}
	s, err := Create(filepath.Join(tmp, "s"), basePath, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != testBase {
		t.Fatalf("size %d, want the base's", s.Size())
	}
	s.Close()
	if _, err := Create(filepath.Join(tmp, "s"), basePath, 0); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Create in a used directory: %v", err)
	}
	if err := Remove(tmp); err == nil {
		t.Fatal("Remove of a directory that is no stack succeeded")
	}
	if err := Remove(filepath.Join(tmp, "s")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "s")); !os.IsNotExist(err) {
		t.Fatal("Remove left the directory")
	}
	if _, err := os.Stat(basePath); err != nil {
		t.Fatal("Remove touched the base")
	}
}

// A failed fdatasync cannot be retried: the stack refuses writes until
// CutBack drops the layer whose data may be lost.
func TestSyncFailureIsSticky(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 19)
	m.write(0, fill(ClusterSize, 1))
	m.freeze("a")
	m.write(0, fill(ClusterSize, 2))
	m.s.top().data.Close() // fdatasync now fails with EBADF
	if err := m.s.Flush(); err == nil {
		t.Fatal("Flush succeeded")
	}
	if _, err := m.s.WriteAt([]byte{1}, 0); err == nil || !strings.Contains(err.Error(), "CutBack") {
		t.Fatalf("write after a failed flush: %v", err)
	}
	if err := m.s.Flush(); err == nil {
		t.Fatal("second Flush succeeded")
	}
	m.cutBack(0)
	m.write(5, []byte("ok"))
	m.reopen()
	m.check()
}

func TestConcurrentUse(t *testing.T) {
	m := newModel(t, "", testBase, testSize, 20)
	s := m.s
	const workers = 4
	region := int64(testSize / workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers+2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 21))
			lo := int64(w) * region
			mine := make([]byte, region)
			s.ReadAt(mine, lo)
			for i := range 300 {
				n := 1 + r.Int64N(region/3)
				off := r.Int64N(region - n)
				p := fill(int(n), byte(i+w))
				if r.IntN(4) == 0 {
					if err := s.WriteZeroes(lo+off, n); err != nil {
						errs <- err
						return
					}
					clear(p)
				} else if _, err := s.WriteAt(p, lo+off); err != nil {
					errs <- err
					return
				}
				copy(mine[off:], p)
				got := make([]byte, region)
				if _, err := s.ReadAt(got, lo); err != nil || !bytes.Equal(got, mine) {
					errs <- fmt.Errorf("worker %d: region reads back wrong (%v)", w, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Add(1)
	go func() {
		defer flusher.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			var err error
			if i%10 == 9 && i < 300 {
				_, err = s.Freeze("")
			} else {
				err = s.Flush()
			}
			s.Layers()
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	flusher.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
