package disk

// The stack's files: layers (data file + bitmap), map encoding, the manifest,
// and the atomic-replace protocol they share.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/sys/unix"
)

const (
	manifestName   = "manifest.json"
	manifestFormat = "pyro-disk-stack"
	formatVersion  = 1 // of map files, and of manifests without parents
	// manifestVersion is the manifest's format version: 2 records each
	// layer's parent; version 1 (a chain, each layer's parent the one
	// before it) is still read.
	manifestVersion = 2
	mapMagic        = "PYRODMAP"
	mapHeaderLen    = 40
	idLen           = 16
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	validID    = regexp.MustCompile(`^[0-9a-f]{16}$`)
	layerFile  = regexp.MustCompile(`^[0-9a-f]{16}\.(data|map)$`)
	zeroBuf    [256 << 10]byte
)

// crashHook, set only by tests, is called at each step of the durable-update
// protocol; a test copies the stack directory there to see what a crash at
// that instant would leave.
var crashHook func(point string)

func hook(point string) {
	if crashHook != nil {
		crashHook(point)
	}
}

// layer is one layer of a stack as held in memory.
type layer struct {
	info      LayerInfo // Allocated is not kept up to date
	data      *os.File
	bits      []uint64 // cluster c is bit c%64 of bits[c/64]
	dataDirty bool     // data written since the last fdatasync
	mapDirty  bool     // bits set since the map file was written
}

func (l *layer) has(c int64) bool { return l.bits[c>>6]&(1<<(c&63)) != 0 }

// mark sets the bits of clusters [c0, c1).
func (l *layer) mark(c0, c1 int64) {
	for c := c0; c < c1; c++ {
		w, m := c>>6, uint64(1)<<(c&63)
		if l.bits[w]&m == 0 {
			l.bits[w] |= m
			l.mapDirty = true
		}
	}
}

func (l *layer) allocated() int64 {
	n := 0
	for _, w := range l.bits {
		n += bits.OnesCount64(w)
	}
	return int64(n) * ClusterSize
}

func dataPath(dir, id string) string { return filepath.Join(dir, id+".data") }
func mapPath(dir, id string) string  { return filepath.Join(dir, id+".map") }

func clustersOf(size int64) int64 { return (size + ClusterSize - 1) / ClusterSize }

func newID() string {
	var b [idLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// encodeMap is the map file for a layer holding the clusters in bm.
func encodeMap(id string, size int64, bm []uint64) []byte {
	n := (clustersOf(size) + 7) / 8
	b := make([]byte, mapHeaderLen, mapHeaderLen+len(bm)*8+4)
	copy(b, mapMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint32(b[12:], ClusterSize)
	binary.LittleEndian.PutUint64(b[16:], uint64(size))
	copy(b[24:40], id)
	for _, w := range bm {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	b = b[:mapHeaderLen+n]
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeMap checks a map file against the layer and disk it should describe
// and returns its bitmap; the error says what is wrong.
func decodeMap(b []byte, id string, size int64) ([]uint64, error) {
	clusters := clustersOf(size)
	n := int((clusters + 7) / 8)
	if len(b) != mapHeaderLen+n+4 {
		return nil, fmt.Errorf("is %d bytes, want %d (truncated or not a map of this disk)", len(b), mapHeaderLen+n+4)
	}
	body := b[:mapHeaderLen+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("checksum mismatch")
	}
	switch {
	case string(b[:8]) != mapMagic:
		return nil, fmt.Errorf("bad magic %q", b[:8])
	case binary.LittleEndian.Uint32(b[8:]) != formatVersion:
		return nil, fmt.Errorf("format version %d, this pyro reads %d", binary.LittleEndian.Uint32(b[8:]), formatVersion)
	case binary.LittleEndian.Uint32(b[12:]) != ClusterSize:
		return nil, fmt.Errorf("cluster size %d, want %d", binary.LittleEndian.Uint32(b[12:]), ClusterSize)
	case binary.LittleEndian.Uint64(b[16:]) != uint64(size):
		return nil, fmt.Errorf("disk size %d, the manifest says %d", binary.LittleEndian.Uint64(b[16:]), size)
	case string(b[24:40]) != id:
		return nil, fmt.Errorf("belongs to layer %q", b[24:40])
	}
	bm := make([]uint64, (clusters+63)/64)
	for i, v := range body[mapHeaderLen:] {
		bm[i/8] |= uint64(v) << (8 * (i % 8))
	}
	if clusters%64 != 0 && bm[len(bm)-1]>>(clusters%64) != 0 {
		return nil, fmt.Errorf("bits set past the last cluster")
	}
	return bm, nil
}

// replaceFile makes path hold data, atomically and durably: a crash leaves
// the old contents or the new, never a mixture or nothing.
func replaceFile(dirf *os.File, path string, data []byte, what string) error {
	tmp := path + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		hook(what + ":tmp-written")
		return os.Rename(tmp, path)
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("disk: write %s: %w", path, err)
	}
	hook(what + ":renamed")
	if err := dirf.Sync(); err != nil {
		return fmt.Errorf("disk: sync directory after writing %s: %w", path, err)
	}
	return nil
}

// createLayer makes a new empty writable layer's files durable and opens it.
// Nothing refers to it until a manifest naming it is written.
func createLayer(dirf *os.File, dir string, size int64) (*layer, error) {
	id := newID()
	l := &layer{
		info: LayerInfo{ID: id, Created: time.Now().UTC()},
		bits: make([]uint64, (clustersOf(size)+63)/64),
	}
	err := func() error {
		f, err := os.OpenFile(dataPath(dir, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		l.data = f
		if err := f.Truncate(clustersOf(size) * ClusterSize); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		m, err := os.OpenFile(mapPath(dir, id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = m.Write(encodeMap(id, size, l.bits))
		if err == nil {
			err = m.Sync()
		}
		if cerr := m.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return dirf.Sync()
	}()
	if err != nil {
		l.remove(dir)
		return nil, fmt.Errorf("disk: create layer in %s: %w", dir, err)
	}
	hook("layer:created")
	return l, nil
}

// remove closes the layer and deletes its files.
func (l *layer) remove(dir string) {
	if l.data != nil {
		l.data.Close()
	}
	os.Remove(dataPath(dir, l.info.ID))
	os.Remove(mapPath(dir, l.info.ID))
}

type manifest struct {
	Format      string        `json:"format"`
	Version     int           `json:"version"`
	ClusterSize int64         `json:"cluster_size"`
	Size        int64         `json:"size"`
	Base        *baseRecord   `json:"base,omitempty"`
	Layers      []layerRecord `json:"layers"`
}

type baseRecord struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

type layerRecord struct {
	ID       string    `json:"id"`
	Parent   *string   `json:"parent,omitempty"` // version 2; "" is the base image
	Name     string    `json:"name,omitempty"`
	Frozen   bool      `json:"frozen"`
	Created  time.Time `json:"created"`
	FrozenAt time.Time `json:"frozen_at,omitzero"`
}

func writeManifest(dirf *os.File, dir string, size int64, base *baseRecord, layers []LayerInfo) error {
	m := manifest{Format: manifestFormat, Version: manifestVersion, ClusterSize: ClusterSize, Size: size, Base: base}
	for _, l := range layers {
		m.Layers = append(m.Layers, layerRecord{ID: l.ID, Parent: &l.Parent, Name: l.Name, Frozen: l.Frozen, Created: l.Created, FrozenAt: l.FrozenAt})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return replaceFile(dirf, filepath.Join(dir, manifestName), append(b, '\n'), "manifest")
}

// readManifest parses and checks a stack's manifest; the error says what is
// wrong with it.
func readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("disk: %s is not a disk stack (no %s; or its Create never finished): %w", dir, manifestName, err)
	}
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	var m manifest
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil || d.More() {
		return nil, corrupt(dir, "%s does not parse: %v", manifestName, err)
	}
	if m.Format != manifestFormat {
		return nil, corrupt(dir, "%s: format %q, want %q", manifestName, m.Format, manifestFormat)
	}
	if m.Version != formatVersion && m.Version != manifestVersion {
		return nil, fmt.Errorf("disk: stack %s has format version %d; this pyro reads versions %d and %d: open it with the pyro that created it", dir, m.Version, formatVersion, manifestVersion)
	}
	if m.ClusterSize != ClusterSize || m.Size <= 0 || m.Size%512 != 0 || m.Size > MaxSize {
		return nil, corrupt(dir, "%s: cluster size %d, disk size %d", manifestName, m.ClusterSize, m.Size)
	}
	if b := m.Base; b != nil && (!filepath.IsAbs(b.Path) || b.Size < 0 || b.Size%512 != 0 || b.Size > m.Size) {
		return nil, corrupt(dir, "%s: base %q of %d bytes on a %d-byte disk", manifestName, b.Path, b.Size, m.Size)
	}
	if len(m.Layers) == 0 {
		return nil, corrupt(dir, "%s lists no layers", manifestName)
	}
	seen := map[string]bool{}
	for i, l := range m.Layers {
		top := i == len(m.Layers)-1
		switch {
		case !validID.MatchString(l.ID):
			return nil, corrupt(dir, "%s: bad layer ID %q", manifestName, l.ID)
		case seen[l.ID]:
			return nil, corrupt(dir, "%s: layer %s listed twice", manifestName, l.ID)
		case l.Frozen == top:
			return nil, corrupt(dir, "%s: layer %s (%d of %d) has frozen=%v; only the top layer is writable", manifestName, l.ID, i+1, len(m.Layers), l.Frozen)
		case m.Version == formatVersion && l.Parent != nil:
			return nil, corrupt(dir, "%s: version %d names no parents, but layer %s has one", manifestName, m.Version, l.ID)
		case m.Version == manifestVersion && l.Parent == nil:
			return nil, corrupt(dir, "%s: layer %s has no parent", manifestName, l.ID)
		}
		if m.Version == formatVersion { // a chain: each on the one before
			p := BaseID
			if i > 0 {
				p = m.Layers[i-1].ID
			}
			m.Layers[i].Parent = &p
		} else if p := *l.Parent; p != BaseID && !seen[p] {
			return nil, corrupt(dir, "%s: layer %s's parent %q is not a frozen layer listed before it", manifestName, l.ID, p)
		}
		seen[l.ID] = true
	}
	return &m, nil
}

func corrupt(dir, format string, a ...any) error {
	return fmt.Errorf("disk: stack %s: %s: %w", dir, fmt.Sprintf(format, a...), ErrCorrupt)
}

// lockDir opens a stack's directory and flocks it, shared or exclusive.
func lockDir(dir string, shared bool) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("disk: open stack: %w", err)
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("disk: stack %s: %w", dir, ErrBusy)
		}
		return nil, fmt.Errorf("disk: lock stack %s: %w", dir, err)
	}
	return f, nil
}

// punch makes [off, off+n) of f read as zeros, freeing its blocks where the
// file system can.
func punch(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	for n > 0 {
		k := min(n, int64(len(zeroBuf)))
		if _, err := f.WriteAt(zeroBuf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
