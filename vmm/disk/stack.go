package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

const (
	// ClusterSize is the unit of copy-on-write and of the allocation bitmaps.
	ClusterSize = 4096
	// BaseID names the base image: the parent of a layer built directly on
	// it, and a target of Checkout and CutBack (CutBack to it drops every
	// layer).
	BaseID = ""
	// MaxSize is the largest disk a stack holds (each layer's bitmap, kept in
	// memory, is MaxSize/ClusterSize/8 = 64 MiB).
	MaxSize = 2 << 40
)

var (
	ErrCorrupt     = errors.New("stack is damaged and is not repaired automatically: restore its directory from a copy, or Remove it and Create it again")
	ErrBaseChanged = errors.New("base image changed since the stack was created, and the layers are only valid over the original: restore that image, or Remove the stack and Create it again")
	ErrBusy        = errors.New("stack is already open (by another Stack in this or another process): Close that one first")
	ErrReadOnly    = errors.New("stack is open read-only")
	ErrClosed      = errors.New("stack is closed")
	ErrOutOfRange  = errors.New("range is not inside the disk")
	ErrLayerInUse  = errors.New("layer is in use: the writable top reads through it, or other layers are built on it")
)

// LayerInfo describes one layer.
type LayerInfo struct {
	ID        string    // 16 hex digits, unique in the stack
	Parent    string    // the frozen layer it is built on; BaseID: the base image
	Name      string    // the label given to Freeze; "" for the writable top
	Frozen    bool      // immutable; every layer but the top is frozen
	Created   time.Time // when the layer was started
	FrozenAt  time.Time // when it was frozen; zero for the top
	Allocated int64     // bytes of the disk the layer holds (clusters × ClusterSize)
}

// Stack is a layered copy-on-write disk. See the package documentation.
type Stack struct {
	dir      string
	dirf     *os.File // the directory, flocked while the Stack is open
	readOnly bool
	size     int64
	base     *os.File // nil: no base image
	baseRec  *baseRecord
	baseSize int64

	flushMu sync.Mutex // serializes Flush, Freeze, Checkout, CutBack, DeleteLayer, Close; taken before mu
	mu      sync.RWMutex
	layers  []*layer // every layer, parents before children; the last is the top
	chain   []*layer // the layers the disk reads through: the top's ancestors, bottom first, then the top
	err     error    // sticky: fdatasync of the top layer failed
	closed  bool
}

// Create makes a new stack in dir (created if missing, else it must be
// empty) over the raw image base, with one empty writable layer. size is the
// disk's size: 0 means the base's size, larger leaves room past the base that
// reads as zeros. base "" makes a disk of size bytes that starts as zeros.
// The base is never written, but it must not change while a stack uses it.
func Create(dir, base string, size int64) (*Stack, error) {
	var rec *baseRecord
	if base != "" {
		abs, err := filepath.Abs(base)
		if err != nil {
			return nil, fmt.Errorf("disk: base image: %w", err)
		}
		f, err := os.Open(abs)
		if err != nil {
			return nil, fmt.Errorf("disk: base image: %w", err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("disk: base image: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Size()%512 != 0 {
			return nil, fmt.Errorf("disk: base image %s must be a regular file whose size is a multiple of 512 (it is a %v of %d bytes)", abs, fi.Mode().Type(), fi.Size())
		}
		rec = &baseRecord{Path: abs, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
		if size == 0 {
			size = rec.Size
		}
		if size < rec.Size {
			return nil, fmt.Errorf("disk: a %d-byte disk cannot hold the %d-byte base image %s", size, rec.Size, abs)
		}
	}
	if size <= 0 || size%512 != 0 || size > MaxSize {
		return nil, fmt.Errorf("disk: disk size %d must be a positive multiple of 512 of at most %d", size, int64(MaxSize))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("disk: create stack: %w", err)
	}
	dirf, err := lockDir(dir, false)
	if err != nil {
		return nil, err
	}
	if names, err := dirf.Readdirnames(1); len(names) > 0 {
		dirf.Close()
		return nil, fmt.Errorf("disk: create stack: %s is not empty: choose a new directory or Remove the old stack", dir)
	} else if err != io.EOF {
		dirf.Close()
		return nil, fmt.Errorf("disk: create stack: %w", err)
	}
	if parent, err := os.Open(filepath.Dir(filepath.Clean(dir))); err == nil {
		parent.Sync() // the directory's own entry
		parent.Close()
	}
	top, err := createLayer(dirf, dir, size)
	if err != nil {
		dirf.Close()
		return nil, err
	}
	top.data.Close()
	if err := writeManifest(dirf, dir, size, rec, []LayerInfo{top.info}); err != nil {
		top.remove(dir)
		dirf.Close()
		return nil, err
	}
	return load(dirf, dir, false)
}

// Open opens the stack in dir for reading and writing. It checks the whole
// stack first and returns an error wrapping ErrCorrupt, ErrBaseChanged or
// ErrBusy rather than open one that is damaged, stale or in use.
func Open(dir string) (*Stack, error) { return open(dir, false) }

// OpenReadOnly opens the stack in dir for reading only (to inspect or export
// it). Any number of read-only Stacks may share a stack, but not with a
// writer. It opens every file O_RDONLY and deletes no leftover files.
func OpenReadOnly(dir string) (*Stack, error) { return open(dir, true) }

func open(dir string, ro bool) (*Stack, error) {
	dirf, err := lockDir(dir, ro)
	if err != nil {
		return nil, err
	}
	return load(dirf, dir, ro)
}

// load opens the stack whose directory dirf is locked; on error it closes
// everything, dirf included.
func load(dirf *os.File, dir string, ro bool) (_ *Stack, err error) {
	s := &Stack{dir: dir, dirf: dirf, readOnly: ro}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	s.size, s.baseRec = m.Size, m.Base
	if b := m.Base; b != nil {
		if s.base, err = openBase(dir, b); err != nil {
			return nil, err
		}
		s.baseSize = b.Size
	}
	keep := map[string]bool{manifestName: true}
	for _, r := range m.Layers {
		l := &layer{info: LayerInfo{ID: r.ID, Parent: *r.Parent, Name: r.Name, Frozen: r.Frozen, Created: r.Created, FrozenAt: r.FrozenAt}}
		s.layers = append(s.layers, l)
		flag := os.O_RDWR
		if r.Frozen || ro {
			flag = os.O_RDONLY
		}
		if l.data, err = os.OpenFile(dataPath(dir, r.ID), flag, 0); err != nil {
			return nil, corrupt(dir, "layer %s: %v", r.ID, err)
		}
		fi, err := l.data.Stat()
		if err != nil {
			return nil, fmt.Errorf("disk: stack %s: layer %s: %w", dir, r.ID, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, corrupt(dir, "layer %s: data file is not a regular file", r.ID)
		}
		if want := clustersOf(s.size) * ClusterSize; fi.Size() != want {
			return nil, corrupt(dir, "layer %s: data file is %d bytes, want %d", r.ID, fi.Size(), want)
		}
		b, err := os.ReadFile(mapPath(dir, r.ID))
		if err != nil {
			return nil, corrupt(dir, "layer %s: %v", r.ID, err)
		}
		if l.bits, err = decodeMap(b, r.ID, s.size); err != nil {
			return nil, corrupt(dir, "layer %s: map file %v", r.ID, err)
		}
		keep[r.ID+".data"], keep[r.ID+".map"] = true, true
	}
	s.rebuild()
	if !ro {
		s.removeLeftovers(keep)
	}
	return s, nil
}

// openBase opens the base image the stack in dir was created over, and
// checks that it is still that image (ErrBaseChanged if not).
func openBase(dir string, b *baseRecord) (*os.File, error) {
	f, err := os.Open(b.Path)
	if err != nil {
		return nil, fmt.Errorf("disk: stack %s: base image: %w", dir, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk: stack %s: base image: %w", dir, err)
	}
	if fi.Size() != b.Size || fi.ModTime().UnixNano() != b.MtimeNs {
		f.Close()
		return nil, fmt.Errorf("disk: stack %s: %s was %d bytes modified %v, is now %d bytes modified %v: %w", dir, b.Path,
			b.Size, time.Unix(0, b.MtimeNs).UTC(), fi.Size(), fi.ModTime().UTC(), ErrBaseChanged)
	}
	return f, nil
}

// removeLeftovers deletes files of interrupted operations: layers and
// temporary files no manifest names. Other files are left alone.
func (s *Stack) removeLeftovers(keep map[string]bool) {
	names, _ := os.ReadDir(s.dir)
	removed := false
	for _, e := range names {
		n := e.Name()
		if !keep[n] && (layerFile.MatchString(n) || filepath.Ext(n) == ".tmp") && e.Type().IsRegular() {
			removed = os.Remove(filepath.Join(s.dir, n)) == nil || removed
		}
	}
	if removed {
		s.dirf.Sync()
	}
}

// Remove deletes the stack in dir: its manifest and layers, then dir itself
// if nothing else is in it. It never touches the base image. It fails with
// ErrBusy while the stack is open.
func Remove(dir string) error {
	dirf, err := lockDir(dir, false)
	if err != nil {
		return err
	}
	defer dirf.Close()
	var base string
	if m, err := readManifest(dir); err == nil && m.Base != nil {
		base = m.Base.Path
	} else if os.IsNotExist(err) {
		return err
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("disk: remove stack: %w", err)
	}
	for _, e := range names {
		p := filepath.Join(dir, e.Name())
		if (layerFile.MatchString(e.Name()) || filepath.Ext(e.Name()) == ".tmp") && p != base {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("disk: remove stack: %w", err)
			}
		}
	}
	// The manifest goes last: a Remove cut short leaves a stack that Open
	// refuses and Remove finishes, not stray layers that look like nothing.
	if err := os.Remove(filepath.Join(dir, manifestName)); err != nil {
		return fmt.Errorf("disk: remove stack: %w", err)
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("disk: removed the stack's files but not its directory (it holds other files): %w", err)
	}
	return nil
}

// Size is the disk's size in bytes.
func (s *Stack) Size() int64 { return s.size }

func (s *Stack) top() *layer { return s.layers[len(s.layers)-1] }

// find is the layer id, or nil.
func (s *Stack) find(id string) *layer {
	for _, l := range s.layers {
		if l.info.ID == id {
			return l
		}
	}
	return nil
}

// rebuild recomputes the chain the disk reads through from the top's
// ancestry. The manifest was checked: every parent is an earlier layer.
func (s *Stack) rebuild() {
	s.chain = s.chain[:0]
	for l := s.top(); l != nil; l = s.find(l.info.Parent) {
		s.chain = append(s.chain, l)
		if l.info.Parent == BaseID {
			break
		}
	}
	slices.Reverse(s.chain)
}

// descends reports whether layer l is built, directly or not, on layer id
// (every layer descends from BaseID).
func (s *Stack) descends(l *layer, id string) bool {
	if id == BaseID {
		return true
	}
	for p := l.info.Parent; p != BaseID; {
		if p == id {
			return true
		}
		pl := s.find(p)
		if pl == nil {
			return false
		}
		p = pl.info.Parent
	}
	return false
}

func (s *Stack) checkRange(op string, off, n int64) error {
	if off < 0 || n < 0 || n > s.size || off > s.size-n {
		return fmt.Errorf("disk: %s of %d bytes at offset %d on a %d-byte disk: %w", op, n, off, s.size, ErrOutOfRange)
	}
	return nil
}

// writable is nil when the stack may be changed. Callers hold mu.
func (s *Stack) writable() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.readOnly:
		return ErrReadOnly
	}
	return s.err
}

// ReadAt reads the disk as io.ReaderAt does: a read reaching past the end
// returns the bytes before the end and io.EOF. A negative offset is an error.
func (s *Stack) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, s.checkRange("read", off, int64(len(p)))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	var eof error
	if int64(len(p)) > s.size-min(off, s.size) {
		p, eof = p[:s.size-min(off, s.size)], io.EOF
	}
	if err := s.read(p, off, len(s.chain)); err != nil {
		return 0, err
	}
	return len(p), eof
}

// read fills p with the disk's bytes at off as seen through the bottom n
// layers of the chain and the base, one pread per run of clusters from the same source.
func (s *Stack) read(p []byte, off int64, n int) error {
	for len(p) > 0 {
		end := off + int64(len(p))
		src := s.source(off/ClusterSize, n)
		next := min(end, (off/ClusterSize+1)*ClusterSize)
		for next < end && s.source(next/ClusterSize, n) == src {
			next = min(end, next+ClusterSize)
		}
		k := next - off
		if src >= 0 {
			if _, err := s.chain[src].data.ReadAt(p[:k], off); err != nil {
				return fmt.Errorf("disk: read layer %s: %w", s.chain[src].info.ID, err)
			}
		} else {
			b := max(0, min(k, s.baseSize-off))
			if b > 0 {
				if _, err := s.base.ReadAt(p[:b], off); err != nil {
					return fmt.Errorf("disk: read base image %s: %w", s.baseRec.Path, err)
				}
			}
			clear(p[b:k])
		}
		p, off = p[k:], next
	}
	return nil
}

// source is the index of the topmost of the bottom n layers of the chain
// holding cluster c, or -1 for the base.
func (s *Stack) source(c int64, n int) int {
	for i := n - 1; i >= 0; i-- {
		if s.chain[i].has(c) {
			return i
		}
	}
	return -1
}

// WriteAt writes p at off in the top layer. A write not wholly inside the
// disk is refused (0, ErrOutOfRange) and changes nothing.
func (s *Stack) WriteAt(p []byte, off int64) (int, error) {
	if err := s.checkRange("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	if err := s.write(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Stack) write(p []byte, off int64) error {
	top := s.top()
	for len(p) > 0 {
		c := off / ClusterSize
		start := c * ClusterSize
		clen := min(ClusterSize, s.size-start)
		if off == start && int64(len(p)) >= clen {
			// Whole clusters, up to the end of p or of the disk: no read.
			k := int64(len(p))
			if off+k < s.size {
				k -= k % ClusterSize
			}
			if _, err := top.data.WriteAt(p[:k], off); err != nil {
				return fmt.Errorf("disk: write layer %s: %w", top.info.ID, err)
			}
			top.dataDirty = true
			top.mark(c, clustersOf(off+k))
			p, off = p[k:], off+k
			continue
		}
		k := min(int64(len(p)), start+clen-off)
		if top.has(c) {
			if _, err := top.data.WriteAt(p[:k], off); err != nil {
				return fmt.Errorf("disk: write layer %s: %w", top.info.ID, err)
			}
		} else {
			buf := make([]byte, clen)
			if err := s.read(buf, start, len(s.chain)-1); err != nil {
				return err
			}
			copy(buf[off-start:], p[:k])
			if _, err := top.data.WriteAt(buf, start); err != nil {
				return fmt.Errorf("disk: write layer %s: %w", top.info.ID, err)
			}
			top.mark(c, c+1)
		}
		top.dataDirty = true
		p, off = p[k:], off+k
	}
	return nil
}

// WriteZeroes makes [off, off+n) read as zeros. Whole clusters are punched
// out of the top layer's data file and cost no space; lower layers never
// show through. A range not wholly inside the disk is refused.
func (s *Stack) WriteZeroes(off, n int64) error {
	if err := s.checkRange("write zeroes", off, n); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return s.zero(off, n)
}

// Discard is the guest's discard (TRIM): it does what WriteZeroes does, so a
// discarded range reads as zeros, deterministically.
func (s *Stack) Discard(off, n int64) error {
	if err := s.checkRange("discard", off, n); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return s.zero(off, n)
}

func (s *Stack) zero(off, n int64) error {
	end := off + n
	c0, c1 := clustersOf(off), end/ClusterSize // the whole clusters (the short last one is written)
	if c0 >= c1 {
		return s.write(zeroBuf[:n], off) // less than two clusters
	}
	if err := s.write(zeroBuf[:c0*ClusterSize-off], off); err != nil {
		return err
	}
	if tail := min(c1*ClusterSize, end); tail < end {
		if err := s.write(zeroBuf[:end-tail], tail); err != nil {
			return err
		}
	}
	top := s.top()
	if err := punch(top.data, c0*ClusterSize, (c1-c0)*ClusterSize); err != nil {
		return fmt.Errorf("disk: zero layer %s: %w", top.info.ID, err)
	}
	top.dataDirty = true
	top.mark(c0, c1)
	return nil
}

// Flush makes everything written so far durable (the guest's FLUSH): it
// fdatasyncs the top layer's data file, then replaces its map file. It does
// nothing when nothing was written since the last Flush, and nothing on a
// read-only stack.
func (s *Stack) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if s.closed || s.readOnly || s.err != nil {
		err := s.writable()
		s.mu.Unlock()
		if err == ErrReadOnly {
			return nil
		}
		return err
	}
	top := s.top()
	d := top.takeDirty()
	s.mu.Unlock()
	dataErr, mapErr := s.persist(top, d)
	if dataErr == nil && mapErr == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed(top, dataErr, mapErr)
}

// dirty is what a Flush of a layer must do.
type dirty struct {
	data bool     // fdatasync the data file
	bits []uint64 // replace the map file by this bitmap; nil: keep it
}

// takeDirty clears the layer's dirty flags and returns what they asked for.
func (l *layer) takeDirty() dirty {
	d := dirty{data: l.dataDirty}
	if l.mapDirty {
		d.bits = slices.Clone(l.bits)
	}
	l.dataDirty, l.mapDirty = false, false
	return d
}

// persist is Flush's I/O: fdatasync the data, then replace the map.
// The caller holds flushMu, so the layer set does not change meanwhile.
func (s *Stack) persist(l *layer, d dirty) (dataErr, mapErr error) {
	if d.data || d.bits != nil {
		if err := unix.Fdatasync(int(l.data.Fd())); err != nil {
			return fmt.Errorf("disk: sync layer %s: %w", l.info.ID, err), nil
		}
	}
	hook("flush:data-synced")
	if d.bits != nil {
		return nil, replaceFile(s.dirf, mapPath(s.dir, l.info.ID), encodeMap(l.info.ID, s.size, d.bits), "map")
	}
	return nil, nil
}

// failed records a failed persist of layer l and returns its error. A failed
// fdatasync is sticky (see the package doc); a failed map write is retried by
// the next Flush. The caller holds mu.
func (s *Stack) failed(l *layer, dataErr, mapErr error) error {
	if dataErr != nil {
		s.err = fmt.Errorf("%w; data written since the last flush may be lost, and the disk takes no more writes: Checkout or CutBack to a snapshot, or Close and Open the stack", dataErr)
		return s.err
	}
	l.mapDirty = true
	return mapErr
}

// Freeze flushes the top layer, makes it immutable with the label name, and
// starts an empty writable layer above it (its child). The frozen layer is a
// snapshot of the disk that Checkout and CutBack return to; its LayerInfo is
// returned.
func (s *Stack) Freeze(name string) (LayerInfo, error) {
	if !utf8.ValidString(name) || len(name) > 256 {
		return LayerInfo{}, fmt.Errorf("disk: layer name %q must be valid UTF-8 of at most 256 bytes", name)
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return LayerInfo{}, err
	}
	top := s.top()
	if dataErr, mapErr := s.persist(top, top.takeDirty()); dataErr != nil || mapErr != nil {
		return LayerInfo{}, s.failed(top, dataErr, mapErr)
	}
	next, err := createLayer(s.dirf, s.dir, s.size)
	if err != nil {
		return LayerInfo{}, err
	}
	next.info.Parent = top.info.ID
	frozen := top.info
	frozen.Name, frozen.Frozen, frozen.FrozenAt = name, true, time.Now().UTC()
	infos := append(s.infos(len(s.layers)-1), frozen, next.info)
	if err := writeManifest(s.dirf, s.dir, s.size, s.baseRec, infos); err != nil {
		next.remove(s.dir)
		return LayerInfo{}, err
	}
	top.info = frozen
	if f, err := os.Open(dataPath(s.dir, frozen.ID)); err == nil {
		top.data.Close()
		top.data = f // read-only from now on
	}
	s.layers = append(s.layers, next)
	s.chain = append(s.chain, next)
	frozen.Allocated = top.allocated()
	return frozen, nil
}

// Checkout discards the writable top layer, writes included, and starts an
// empty writable layer on the frozen layer id (BaseID: on the base image):
// the disk reads as it did when that layer was frozen. Any frozen layer may
// be the target, on the current chain or not; no frozen layer is deleted,
// so every snapshot stays reachable. The old top's files are deleted.
// Checkout also clears a failed Flush's error (the failed layer is gone).
func (s *Stack) Checkout(id string) error { return s.moveTop("Checkout", id, false) }

// CutBack drops every layer built on the frozen layer id (BaseID: every
// layer), writes included, and starts an empty writable layer on it: the
// disk reads as it did when that layer was frozen. On a stack that Checkout
// never branched, that is every layer above id. The dropped layers' files
// are deleted. CutBack also clears a failed Flush's error (the failed layer
// is gone).
func (s *Stack) CutBack(id string) error { return s.moveTop("CutBack", id, true) }

// moveTop is Checkout, and CutBack when cut: a new top on id, committed by
// one manifest write, then the dropped layers' files deleted.
func (s *Stack) moveTop(op, id string, cut bool) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil && err != s.err {
		return err
	}
	if id != BaseID {
		switch l := s.find(id); {
		case l == nil:
			return fmt.Errorf("disk: %s: stack %s has no layer %q (Layers lists them)", op, s.dir, id)
		case l == s.top():
			return fmt.Errorf("disk: %s: layer %s is the writable top; name a frozen layer (Freeze makes one)", op, id)
		}
	}
	var kept, dropped []*layer
	for _, l := range s.layers {
		if l == s.top() || cut && s.descends(l, id) {
			dropped = append(dropped, l)
		} else {
			kept = append(kept, l)
		}
	}
	next, err := createLayer(s.dirf, s.dir, s.size)
	if err != nil {
		return err
	}
	next.info.Parent = id
	infos := layerInfos(kept)
	if err := writeManifest(s.dirf, s.dir, s.size, s.baseRec, append(infos, next.info)); err != nil {
		next.remove(s.dir)
		return err
	}
	s.layers = append(kept, next)
	s.rebuild()
	s.err = nil
	for _, l := range dropped {
		l.remove(s.dir) // a failure leaves files Open deletes
		hook(strings.ToLower(op) + ":dropped")
	}
	s.dirf.Sync()
	return nil
}

// DeleteLayer deletes the frozen layer id and its files, freeing its space.
// It refuses, with an error wrapping ErrLayerInUse, a layer that another
// layer (frozen or the writable top) is built on, or that the disk reads
// through; delete those first, or Checkout elsewhere.
func (s *Stack) DeleteLayer(id string) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil && err != s.err {
		return err
	}
	l := s.find(id)
	if l == nil || id == BaseID {
		return fmt.Errorf("disk: DeleteLayer: stack %s has no layer %q (Layers lists them)", s.dir, id)
	}
	if l == s.top() {
		return fmt.Errorf("disk: DeleteLayer: layer %s is the writable top: %w", id, ErrLayerInUse)
	}
	var children []string
	for _, c := range s.layers {
		if c.info.Parent == id {
			children = append(children, c.info.ID)
		}
	}
	if len(children) > 0 {
		return fmt.Errorf("disk: DeleteLayer: layers %s are built on layer %s: %w", strings.Join(children, ", "), id, ErrLayerInUse)
	}
	if slices.Contains(s.chain, l) { // not reached: the chain's frozen layers have children
		return fmt.Errorf("disk: DeleteLayer: the disk reads through layer %s: %w", id, ErrLayerInUse)
	}
	kept := slices.DeleteFunc(slices.Clone(s.layers), func(k *layer) bool { return k == l })
	if err := writeManifest(s.dirf, s.dir, s.size, s.baseRec, layerInfos(kept)); err != nil {
		return err
	}
	s.layers = kept
	l.remove(s.dir) // a failure leaves files Open deletes
	hook("delete:dropped")
	s.dirf.Sync()
	return nil
}

func layerInfos(ls []*layer) []LayerInfo {
	var infos []LayerInfo
	for _, l := range ls {
		infos = append(infos, l.info)
	}
	return infos
}

func (s *Stack) infos(n int) []LayerInfo { return layerInfos(s.layers[:n]) }

// Layers lists every layer, frozen or not: the frozen layers in the order
// they were frozen (so each comes after its parent), then the writable top
// last. Parent links make them a tree; the disk reads through the top and
// its ancestors only. Without Checkout the list is a chain, bottom first.
func (s *Stack) Layers() []LayerInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	infos := s.infos(len(s.layers))
	for i, l := range s.layers {
		infos[i].Allocated = l.allocated()
	}
	return infos
}

// Top describes the writable top layer: the last of Layers.
func (s *Stack) Top() LayerInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	top := s.top()
	info := top.info
	info.Allocated = top.allocated()
	return info
}

// Close flushes the stack and closes its files. Using the Stack afterwards
// returns ErrClosed; closing it again does nothing.
func (s *Stack) Close() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	err := s.err
	if !s.readOnly && err == nil {
		top := s.top()
		if dataErr, mapErr := s.persist(top, top.takeDirty()); dataErr != nil || mapErr != nil {
			err = s.failed(top, dataErr, mapErr)
		}
	}
	s.closed = true
	s.closeFiles()
	return err
}

func (s *Stack) closeFiles() {
	for _, l := range s.layers {
		if l.data != nil {
			l.data.Close()
		}
	}
	if s.base != nil {
		s.base.Close()
	}
	s.dirf.Close() // releases the flock
}
