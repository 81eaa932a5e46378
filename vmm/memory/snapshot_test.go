package memory

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// newTestGuest maps l with 4 KiB pages only, so which pages a test touches is
// exactly what the kernel reports (a transparent huge page would make a whole
// 2 MiB present on one write).
func newTestGuest(t testing.TB, l Layout) *Guest {
	t.Helper()
	g, err := New(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	noHuge(t, g)
	return g
}

// openImage opens the image at path as guest memory for the test, with 4
// KiB pages only (newTestGuest).
func openImage(t testing.TB, path string) *Guest {
	t.Helper()
	g, err := Open(testLayout, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	noHuge(t, g)
	return g
}

func noHuge(t testing.TB, g *Guest) {
	t.Helper()
	if err := unix.Madvise(g.mapping, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
}

// image is the guest's RAM as Save lays it out.
func image(g *Guest) []byte {
	var b []byte
	for _, r := range g.Regions() {
		b = append(b, r.Host...)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = seed + byte(i*7) | 1 // never zero
	}
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v, want it absent", path, err)
	}
}

// testLayout has RAM on both sides of the hole: [0, 4 MiB) and
// [4 GiB, 4 GiB + 4 MiB).
var testLayout = Layout{Size: 8 << 20, Hole: 4 << 20}

// writeTestPattern touches pages of g as a guest would and returns how many
// pages hold data afterwards.
func writeTestPattern(t *testing.T, g *Guest) (dataPages uint64, zeroed uint64) {
	t.Helper()
	put := func(addr uint64, n int, seed byte) {
		p := make([]byte, n)
		fill(p, seed)
		if err := g.WriteAt(p, addr); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 1, 1)                   // the first byte: page 0
	put(0x1234, 100, 2)            // mid-page: page 1
	put(0x10000, 3*pageSize, 3)    // a run of 3 pages
	put(4<<20-8, 8, 4)             // the last bytes below the hole
	put(FourGiB, 16, 5)            // the first bytes above 4 GiB
	put(FourGiB+3<<20+17, 5000, 6) // straddles 2 pages above 4 GiB
	put(FourGiB+4<<20-1, 1, 7)     // the very last byte
	// A page written, then zeroed: present, but a hole in the file.
	put(0x200000, pageSize, 8)
	if err := g.WriteAt(make([]byte, pageSize), 0x200000); err != nil {
		t.Fatal(err)
	}
	return 1 + 1 + 3 + 1 + 1 + 2 + 1, 1
}

func TestSaveOpenRoundTrip(t *testing.T) {
	g := newTestGuest(t, testLayout)
	data, zeroed := writeTestPattern(t, g)
	path := filepath.Join(t.TempDir(), "mem")
	st, err := g.Save(path)
	if err != nil {
		t.Fatal(err)
	}
	pages := testLayout.Size / pageSize
	want := SaveStats{Pages: pages, Written: data, ZeroSkipped: zeroed, Untouched: pages - data - zeroed, Bytes: int64(data * pageSize)}
	if st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	noFile(t, path+".tmp")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(testLayout.Size) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file is %d bytes, mode %v", fi.Size(), fi.Mode())
	}
	// Sparse: only the data pages (and the file system's own blocks) take disk.
	var sys unix.Stat_t
	if err := unix.Stat(path, &sys); err != nil {
		t.Fatal(err)
	}
	if used := sys.Blocks * 512; used > int64(testLayout.Size)/16 {
		t.Fatalf("file takes %d bytes of disk for %d bytes of data", used, st.Bytes)
	}
	if !bytes.Equal(readFile(t, path), image(g)) {
		t.Fatal("file differs from the guest's memory")
	}

	r, err := Open(testLayout, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Backing() != path || g.Backing() != "" {
		t.Fatalf("backing %q and %q", r.Backing(), g.Backing())
	}
	if len(r.Regions()) != 2 || r.Regions()[1].GuestAddr != FourGiB {
		t.Fatalf("regions %+v", r.Regions())
	}
	for i, reg := range g.Regions() {
		if !bytes.Equal(reg.Host, r.Regions()[i].Host) {
			t.Fatalf("region %d differs after Open", i)
		}
	}
	p := make([]byte, 5)
	if err := r.ReadAt(p, FourGiB+3<<20+17); err != nil || !bytes.Equal(p, g.Regions()[1].Host[3<<20+17:][:5]) {
		t.Fatalf("read above 4 GiB: %x, %v", p, err)
	}
}

func TestSaveCountsPagesOnlyRead(t *testing.T) {
	g := newTestGuest(t, testLayout)
	// Reading a never-written page maps the shared zero page: present, so it
	// is read and found empty, not skipped unread.
	p := make([]byte, 1)
	if err := g.ReadAt(p, 0x300000); err != nil {
		t.Fatal(err)
	}
	st, err := g.Save(filepath.Join(t.TempDir(), "mem"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != 0 || st.ZeroSkipped != 1 || st.Untouched != st.Pages-1 || st.Bytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// holesVisible says whether the file system under dir reports holes through
// SEEK_HOLE (most do; a file system that does not makes Save read every page
// of a file-backed guest, which is slower but still right).
func holesVisible(t *testing.T, dir string) bool {
	f, err := os.Create(filepath.Join(dir, "holes"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	off, err := f.Seek(0, unix.SEEK_DATA)
	return errors.Is(err, unix.ENXIO) || (err == nil && off > 0)
}

func TestSaveOfOpenedGuest(t *testing.T) {
	dir := t.TempDir()
	g := newTestGuest(t, testLayout)
	data, _ := writeTestPattern(t, g)
	orig := filepath.Join(dir, "orig")
	if _, err := g.Save(orig); err != nil {
		t.Fatal(err)
	}
	origBytes := readFile(t, orig)

	r := openImage(t, orig)

	// Saved untouched, the opened guest gives the same file. Pages never
	// touched in r are read from the file's data, skipped over its holes.
	again := filepath.Join(dir, "again")
	st, err := r.Save(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, again), origBytes) {
		t.Fatal("saving an opened guest changed its memory")
	}
	if st.Written != data || st.ZeroSkipped+st.Untouched != st.Pages-data {
		t.Fatalf("stats %+v", st)
	}
	if holesVisible(t, dir) && st.ZeroSkipped != 0 {
		t.Fatalf("pages over the file's holes were read: %+v", st)
	}

	// Modify: a data page, a page over a hole, and a data page zeroed.
	mod := make([]byte, 64)
	fill(mod, 0x40)
	for _, a := range []uint64{0x10000 + 100, 0x300000, FourGiB + 1<<20} {
		if err := r.WriteAt(mod, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.WriteAt(make([]byte, pageSize), FourGiB); err != nil {
		t.Fatal(err)
	}
	modified := filepath.Join(dir, "modified")
	st, err = r.Save(modified)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, modified), image(r)) {
		t.Fatal("file differs from the modified memory")
	}
	if bytes.Equal(image(r), origBytes) {
		t.Fatal("the writes did not change the memory")
	}
	// Two pages gained data, one lost it.
	if st.Written != data+1 || st.ZeroSkipped < 1 {
		t.Fatalf("stats after modifying %+v", st)
	}
	// Copy-on-write: the file the guest runs on is as it was.
	if !bytes.Equal(readFile(t, orig), origBytes) {
		t.Fatal("the guest's writes reached the file it was opened from")
	}
	// ...and so is another guest mapping it.
	o, err := Open(testLayout, orig)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if !bytes.Equal(image(o), origBytes) {
		t.Fatal("another mapping of the file sees the guest's writes")
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mem")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Layout{Size: 2 << 20, Hole: 1 << 30}, path)
	if err == nil || !strings.Contains(err.Error(), "1048576 bytes") || !strings.Contains(err.Error(), "2097152 bytes") {
		t.Fatalf("size mismatch: %v", err)
	}
	if _, err := Open(Layout{Size: 1 << 20, Hole: 0}, path); err == nil {
		t.Fatal("bad layout accepted")
	}
	if _, err := Open(Layout{Size: 1 << 20, Hole: 1 << 30}, dir); err == nil {
		t.Fatal("directory accepted")
	}
	if _, err := Open(Layout{Size: 1 << 20, Hole: 1 << 30}, filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	g, err := Open(Layout{Size: 1 << 20, Hole: 1 << 30}, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSaveLeftoverTmp(t *testing.T) {
	g := newTestGuest(t, Layout{Size: 1 << 20, Hole: 1 << 30})
	if err := g.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path+".tmp", []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := g.Save(path)
	if err == nil || !strings.Contains(err.Error(), path+".tmp") || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Save over a leftover .tmp: %v", err)
	}
	// The leftover is not ours: left as it was, and nothing at path.
	if string(readFile(t, path+".tmp")) != "someone else's" {
		t.Fatal("leftover .tmp changed")
	}
	noFile(t, path)
	if err := os.Remove(path + ".tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	noFile(t, path+".tmp")
	if b := readFile(t, path); len(b) != 1<<20 || b[0] != 'x' {
		t.Fatal("saved file")
	}
}

func TestSaveFailureLeavesNothing(t *testing.T) {
	g := newTestGuest(t, Layout{Size: 1 << 20, Hole: 1 << 30})
	if err := g.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	// The rename, the last step, fails: path is a directory with a file in it.
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Save(path); err == nil {
		t.Fatal("Save over a directory succeeded")
	}
	noFile(t, path+".tmp")
	if _, err := os.Stat(filepath.Join(path, "keep")); err != nil {
		t.Fatal(err)
	}
	// A directory that does not exist.
	if _, err := g.Save(filepath.Join(path, "none", "mem")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Save into a missing directory: %v", err)
	}
}

func TestSaveReplacesFile(t *testing.T) {
	g := newTestGuest(t, Layout{Size: 1 << 20, Hole: 1 << 30})
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, path), make([]byte, 1<<20)) {
		t.Fatal("old file not replaced by the guest's memory")
	}
}

// BenchmarkSave saves a 512 MiB guest with about 64 MiB touched: 32 MiB in
// one block (a kernel and its page cache) and one page in every 16 over the
// rest (scattered heap and page tables).
func BenchmarkSave(b *testing.B) {
	const size = 512 << 20
	g := newTestGuest(b, Layout{Size: size, Hole: 3 << 30})
	m := g.Regions()[0].Host
	fill(m[:32<<20], 1)
	var touched int64 = 32 << 20
	for off := 32 << 20; off < size; off += 16 * pageSize {
		fill(m[off:off+pageSize], byte(off>>12))
		touched += pageSize
	}
	dir := b.TempDir()
	b.SetBytes(touched)
	b.ResetTimer()
	var st SaveStats
	for i := 0; i < b.N; i++ {
		path := filepath.Join(dir, "mem")
		var err error
		if st, err = g.Save(path); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(path)
		b.StartTimer()
	}
	b.ReportMetric(float64(st.Bytes)/(1<<20), "MiB-written")
	b.ReportMetric(float64(st.Untouched)/float64(st.Pages)*100, "%untouched")
}

// CachedPages counts the pages of an image the page cache holds: a file
// just written has its data pages cached, and its holes none.
func TestCachedPages(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, make([]byte, 16*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 * pageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1, 2, 3}, 5*pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n, err := CachedPages(p)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("CachedPages = %d, want 1 (one written page, fifteen holes)", n)
	}
}
