package treediff

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// The names inside a baseline directory.
const (
	indexName   = "index"
	blobsDir    = "blobs"
	tmpPrefix   = ".tmp-"
	indexMagic  = "pyro-treediff index v1 "
	trailerName = "sha256 "
)

// ErrNoBaseline is returned by LoadIndex when the directory holds no
// complete baseline: none was written, or WriteBaseline did not finish.
var ErrNoBaseline = errors.New("treediff: no baseline index (WriteBaseline never completed here)")

// testHook, when set by a test, is called at each stage of WriteBaseline;
// an error stops it there, as a crash would.
var testHook func(stage string) error

func hook(stage string) error {
	if testHook != nil {
		return testHook(stage)
	}
	return nil
}

// WriteBaseline reads a tar archive of the tree and stores it in dir as
// the baseline: an index plus one blob per distinct file content (see the
// package documentation for the format and its crash safety). It replaces
// any earlier baseline in dir and removes blobs only that one used. It
// returns the new index.
func WriteBaseline(dir string, tarStream io.Reader) (*Index, error) {
	bdir := filepath.Join(dir, blobsDir)
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		return nil, fmt.Errorf("treediff: %w", err)
	}
	sink, err := newDiskSink(bdir)
	if err != nil {
		return nil, err
	}
	ix, err := buildIndex(tarStream, sink)
	if werr := sink.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	if err := syncDir(bdir); err != nil {
		return nil, err
	}
	if err := hook("blobs-synced"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	encodeIndex(&buf, ix)
	if err := writeFileAtomic(dir, indexName, buf.Bytes()); err != nil {
		return nil, err
	}
	if err := hook("index-renamed"); err != nil {
		return nil, err
	}
	if err := prune(bdir, ix); err != nil {
		return nil, err
	}
	return ix, nil
}

// LoadIndex reads the baseline index stored in dir by WriteBaseline. It
// returns an error wrapping ErrNoBaseline if there is none.
func LoadIndex(dir string) (*Index, error) {
	b, err := os.ReadFile(filepath.Join(dir, indexName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoBaseline, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("treediff: %w", err)
	}
	ix, err := decodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("treediff: index in %s: %w", dir, err)
	}
	return ix, nil
}

// Verify checks that blobs holds every file of the index with the content
// the index names. LoadIndex does not do this (it would read the whole
// baseline); Diff checks each blob it reads.
func (ix *Index) Verify(blobs BlobSource) error {
	for i := range ix.entries {
		e := &ix.entries[i]
		if e.Type != File {
			continue
		}
		if _, err := readBlob(blobs, e, -1); err != nil {
			return err
		}
	}
	return nil
}

// readBlob reads a file's baseline content and checks its length and
// hash. With limit >= 0 it reads only files no larger than limit.
func readBlob(blobs BlobSource, e *Entry, limit int64) ([]byte, error) {
	rc, err := blobs.Open(e.Sum)
	if err != nil {
		return nil, fmt.Errorf("treediff: baseline content of %q: %w", e.Path, err)
	}
	defer rc.Close()
	h := sha256.New()
	var data []byte
	var n int64
	if limit >= 0 && e.Size <= limit {
		data = make([]byte, e.Size+1)
		var k int
		k, err = io.ReadFull(rc, data)
		n, data = int64(k), data[:k]
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		h.Write(data)
	} else {
		n, err = io.Copy(h, rc)
	}
	if err != nil {
		return nil, fmt.Errorf("treediff: baseline content of %q: %w", e.Path, err)
	}
	var sum [32]byte
	if n != e.Size || [32]byte(h.Sum(sum[:0])) != e.Sum {
		return nil, fmt.Errorf("treediff: baseline content of %q is corrupt (blob %x)", e.Path, e.Sum)
	}
	return data, nil
}

// DirBlobs is the BlobSource of a baseline directory written by
// WriteBaseline.
type DirBlobs struct {
	Dir string // the directory given to WriteBaseline
}

var _ BlobSource = DirBlobs{}

// Open opens the blob; a missing one is an error wrapping fs.ErrNotExist.
func (d DirBlobs) Open(sum [32]byte) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(d.Dir, blobsDir, hex.EncodeToString(sum[:])))
	if err != nil {
		return nil, fmt.Errorf("treediff: %w", err)
	}
	return f, nil
}

// diskSink writes blobs into a baseline's blobs directory. Creating,
// writing, fsyncing and renaming thousands of small files one after
// another is slow (a journal commit per fsync), so small blobs go to a
// pool of blobWriters goroutines. At most blobWriters+blobQueue small
// blobs (each at most smallBlob bytes) are in memory at once.
type diskSink struct {
	dir  string
	have map[[32]byte]bool // blobs in place or queued; owned by put's caller
	jobs chan blobJob
	wg   sync.WaitGroup

	mu sync.Mutex
	// err is the first failure of a writer; guarded by mu.
	err error
}

type blobJob struct {
	sum  [32]byte
	data []byte
}

// Limits of the blob writers.
const (
	blobWriters = 16
	blobQueue   = 16
	smallBlob   = 1 << 20 // larger blobs are streamed to disk by put itself
)

func newDiskSink(dir string) (*diskSink, error) {
	s := &diskSink{dir: dir, have: make(map[[32]byte]bool), jobs: make(chan blobJob, blobQueue)}
	// A blob under its final name is complete: it got there by rename
	// after fsync.
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("treediff: %w", err)
	}
	for _, de := range des {
		var sum [32]byte
		if n, err := hex.Decode(sum[:], []byte(de.Name())); err == nil && n == 32 && len(de.Name()) == 64 && de.Type().IsRegular() {
			s.have[sum] = true
		}
	}
	for range blobWriters {
		s.wg.Add(1)
		go s.writer()
	}
	return s, nil
}

func (s *diskSink) writer() {
	defer s.wg.Done()
	for j := range s.jobs {
		if s.failed() != nil {
			continue
		}
		if err := s.store(j.sum, j.data); err != nil {
			s.fail(err)
		}
	}
}

func (s *diskSink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("treediff: writing blob: %w", err)
	}
}

func (s *diskSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// wait lets the writers finish and returns the first failure.
func (s *diskSink) wait() error {
	close(s.jobs)
	s.wg.Wait()
	return s.failed()
}

func (s *diskSink) put(r io.Reader, size int64) ([32]byte, error) {
	if err := s.failed(); err != nil {
		return [32]byte{}, err
	}
	if size <= smallBlob {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return [32]byte{}, noEOF(err)
		}
		sum := sha256.Sum256(b)
		if !s.have[sum] {
			s.have[sum] = true
			s.jobs <- blobJob{sum, b}
		}
		return sum, nil
	}
	// Large: stream into a temporary file while hashing.
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if err == nil && !s.have[sum] {
		err = s.commit(f, sum)
		f = nil
		s.have[sum] = err == nil
	}
	if f != nil {
		f.Close()
		os.Remove(f.Name())
	}
	return sum, err
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// store writes one blob: temporary file, fsync, rename.
func (s *diskSink) store(sum [32]byte, data []byte) error {
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return s.commit(f, sum)
}

// commit fsyncs, closes and renames a written temporary file into place.
func (s *diskSink) commit(f *os.File, sum [32]byte) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.dir, hex.EncodeToString(sum[:])))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// writeFileAtomic replaces dir/name with data: temporary file, fsync,
// rename, fsync of dir.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("treediff: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = hook("index-written")
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("treediff: writing %s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("treediff: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("treediff: fsync %s: %w", dir, err)
	}
	return nil
}

// prune removes blobs the index does not use and leftover temporary
// files. It runs only once the index naming the kept blobs is durable.
func prune(bdir string, ix *Index) error {
	used := make(map[string]bool)
	for i := range ix.entries {
		if e := &ix.entries[i]; e.Type == File {
			used[hex.EncodeToString(e.Sum[:])] = true
		}
	}
	des, err := os.ReadDir(bdir)
	if err != nil {
		return fmt.Errorf("treediff: %w", err)
	}
	for _, de := range des {
		if !used[de.Name()] {
			if err := os.Remove(filepath.Join(bdir, de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("treediff: %w", err)
			}
		}
	}
	return nil
}

// encodeIndex writes the version 1 index format.
func encodeIndex(w *bytes.Buffer, ix *Index) {
	w.WriteString(indexMagic)
	w.WriteString(strconv.Itoa(len(ix.entries)))
	w.WriteByte('\n')
	var scratch []byte
	for i := range ix.entries {
		e := &ix.entries[i]
		scratch = scratch[:0]
		switch e.Type {
		case File:
			scratch = append(scratch, "f "...)
		case Dir:
			scratch = append(scratch, "d "...)
		case Symlink:
			scratch = append(scratch, "l "...)
		}
		scratch = strconv.AppendUint(scratch, uint64(e.Perm), 8)
		scratch = append(scratch, ' ')
		if e.Type == File {
			scratch = strconv.AppendInt(scratch, e.Size, 10)
			scratch = append(scratch, ' ')
			scratch = hex.AppendEncode(scratch, e.Sum[:])
			scratch = append(scratch, ' ')
			scratch = hex.AppendEncode(scratch, e.GitID[:])
			scratch = append(scratch, ' ')
		}
		scratch = strconv.AppendQuote(scratch, e.Path)
		if e.Type == Symlink {
			scratch = append(scratch, ' ')
			scratch = strconv.AppendQuote(scratch, e.Target)
		}
		scratch = append(scratch, '\n')
		w.Write(scratch)
	}
	sum := sha256.Sum256(w.Bytes())
	w.WriteString(trailerName)
	w.WriteString(hex.EncodeToString(sum[:]))
	w.WriteByte('\n')
}

// decodeIndex parses the version 1 index format.
func decodeIndex(b []byte) (*Index, error) {
	if !bytes.HasPrefix(b, []byte("pyro-treediff index ")) {
		return nil, errors.New("not a treediff index")
	}
	if !bytes.HasPrefix(b, []byte(indexMagic)) {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		return nil, fmt.Errorf("unsupported index version (%q; this build reads v1)", line)
	}
	// The trailer is the last line; it covers every byte before it.
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, errors.New("index truncated")
	}
	cut := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	body, trailer := b[:cut], string(b[cut:len(b)-1])
	want, ok := strings.CutPrefix(trailer, trailerName)
	if sum := sha256.Sum256(body); !ok || want != hex.EncodeToString(sum[:]) {
		return nil, errors.New("index checksum mismatch (truncated or edited)")
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 64<<10)
	sc.Scan()
	n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), indexMagic))
	if err != nil || n < 0 || n > maxEntries {
		return nil, fmt.Errorf("bad header %q", sc.Text())
	}
	entries := make([]Entry, 0, n)
	for sc.Scan() {
		e, err := parseEntry(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", len(entries)+2, err)
		}
		if len(entries) > 0 && entries[len(entries)-1].Path >= e.Path {
			return nil, fmt.Errorf("line %d: paths not sorted and unique", len(entries)+2)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(entries) != n {
		return nil, fmt.Errorf("header says %d entries, found %d", n, len(entries))
	}
	return newIndex(entries)
}

func parseEntry(line string) (Entry, error) {
	var e Entry
	bad := func(what string) (Entry, error) { return Entry{}, fmt.Errorf("bad %s in %q", what, line) }
	typ, rest, _ := strings.Cut(line, " ")
	perm, rest, _ := strings.Cut(rest, " ")
	p, err := strconv.ParseUint(perm, 8, 32)
	if err != nil || p > 0o7777 {
		return bad("mode")
	}
	e.Perm = uint32(p)
	switch typ {
	case "f":
		e.Type = File
		var size, sum, id string
		size, rest, _ = strings.Cut(rest, " ")
		sum, rest, _ = strings.Cut(rest, " ")
		id, rest, _ = strings.Cut(rest, " ")
		if e.Size, err = strconv.ParseInt(size, 10, 64); err != nil || e.Size < 0 {
			return bad("size")
		}
		if n, err := hex.Decode(e.Sum[:], []byte(sum)); err != nil || n != 32 || len(sum) != 64 {
			return bad("sha256")
		}
		if n, err := hex.Decode(e.GitID[:], []byte(id)); err != nil || n != 20 || len(id) != 40 {
			return bad("git blob id")
		}
	case "d":
		e.Type = Dir
	case "l":
		e.Type = Symlink
	default:
		return bad("type")
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return bad("path")
	}
	e.Path, _ = strconv.Unquote(q)
	rest = rest[len(q):]
	if e.Type == Symlink {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, " "); !ok {
			return bad("target")
		}
		if q, err = strconv.QuotedPrefix(rest); err != nil {
			return bad("target")
		}
		e.Target, _ = strconv.Unquote(q)
		rest = rest[len(q):]
	}
	if rest != "" {
		return bad("line")
	}
	if c, err := cleanPath(e.Path); err != nil || c != e.Path || c == "" {
		return bad("path")
	}
	return e, nil
}
