package treediff

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDiffMaxChanges(t *testing.T) {
	var cur []ent
	for i := range 12 {
		d := "lib"
		if i%2 == 0 {
			d = "src"
		}
		cur = append(cur, file(fmt.Sprintf("%s/f%02d", d, i), "x\n"))
	}
	run := func(opts Options) error {
		_, err := Diff(nil, MemBlobs{}, bytes.NewReader(mkTar(t, cur...)), opts)
		return err
	}
	if err := run(Options{MaxChanges: 11}); !errors.Is(err, ErrTooManyChanges) {
		t.Errorf("12 changes, at most 11: %v, want ErrTooManyChanges", err)
	}
	if err := run(Options{MaxChanges: 12}); err != nil {
		t.Errorf("12 changes, at most 12: %v", err)
	}
	if err := run(Options{MaxChanges: 11, Prefix: "src"}); err != nil {
		t.Errorf("narrowed to src (6 changes): %v", err)
	}
	// Deletions count too.
	blobs := MemBlobs{}
	ix, err := IndexTar(bytes.NewReader(mkTar(t, cur...)), blobs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Diff(ix, blobs, bytes.NewReader(mkTar(t)), Options{MaxChanges: 11}); !errors.Is(err, ErrTooManyChanges) {
		t.Errorf("12 deletions, at most 11: %v, want ErrTooManyChanges", err)
	}
}

func TestDiffMaxPathBytes(t *testing.T) {
	long := strings.Repeat("d", 1000)
	var cur []ent
	for i := range 10 {
		cur = append(cur, file(fmt.Sprintf("%s/%d", long, i), ""))
	}
	_, err := Diff(nil, MemBlobs{}, bytes.NewReader(mkTar(t, cur...)), Options{MaxPathBytes: 8000})
	if !errors.Is(err, ErrTooManyChanges) || !strings.Contains(err.Error(), "paths total more than") {
		t.Errorf("10 KB of changed paths, at most 8000 bytes: %v, want ErrTooManyChanges", err)
	}
	if _, err := Diff(nil, MemBlobs{}, bytes.NewReader(mkTar(t, cur...)), Options{MaxPathBytes: 20000}); err != nil {
		t.Errorf("10 KB of changed paths, at most 20000 bytes: %v", err)
	}
}

// raceEnabled is set by race_test.go.
var raceEnabled bool

// endlessTar streams new files named by name(i) until the reader stops
// (or stop entries, so that a Diff without bounds fails the test rather
// than the machine). Every sample entries it records the live heap.
type endlessTar struct {
	entries, peak int64
}

func (g *endlessTar) run(w *io.PipeWriter, name func(int) string, stop, sample int) {
	tw := tar.NewWriter(w)
	base := heapNow()
	for i := 0; i < stop; i++ {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name(i), Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		if err := tw.WriteHeader(h); err != nil {
			return
		}
		g.entries++
		if i%sample == sample-1 {
			g.peak = max(g.peak, heapNow()-base)
		}
	}
	w.CloseWithError(tw.Close())
}

func heapNow() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A guest that makes millions of new files, with short names or with the
// longest: Diff stops at its bounds and holds what they promise.
func TestDiffEndlessTreeBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a few hundred MB of tar headers")
	}
	for _, tc := range []struct {
		name     string
		path     func(int) string
		maxEnts  int64
		maxHeap  int64
		sampleAt int
	}{
		{"short names", func(i int) string { return fmt.Sprintf("f%07d", i) }, DefaultMaxChanges + 1, 128 << 20, 16384},
		{"long names", func(i int) string { return fmt.Sprintf("%s/%07d", strings.Repeat("d", 4000), i) },
			DefaultMaxPathBytes/4008 + 2, 128 << 20, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled && tc.name == "short names" {
				t.Skip("131072 entries take 25 s under the race detector; TestDiffMaxChanges covers the bound")
			}
			pr, pw := io.Pipe()
			g := &endlessTar{}
			done := make(chan struct{})
			go func() { defer close(done); g.run(pw, tc.path, 8*int(tc.maxEnts), tc.sampleAt) }()
			_, err := Diff(nil, MemBlobs{}, pr, Options{})
			pr.CloseWithError(errors.New("diff done"))
			<-done
			if !errors.Is(err, ErrTooManyChanges) {
				t.Fatalf("Diff = %v, want ErrTooManyChanges", err)
			}
			if g.entries > tc.maxEnts {
				t.Errorf("Diff read %d entries; its bounds stop it at %d", g.entries, tc.maxEnts)
			}
			t.Logf("%d entries read, peak live heap %d MiB", g.entries, g.peak>>20)
			if g.peak > tc.maxHeap {
				t.Errorf("Diff held %d MiB; the bound is %d MiB", g.peak>>20, tc.maxHeap>>20)
			}
		})
	}
}
