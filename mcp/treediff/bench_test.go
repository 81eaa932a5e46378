package treediff

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// workspaceTar builds a tar_out-like archive of files 4 KiB text files
// in 100 directories; the files whose index is in changed get one line
// edited.
func workspaceTar(tb testing.TB, files int, changed map[int]bool) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := make([]byte, 0, 4096)
	for d := range 100 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("pkg%02d/", d), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1e9, 0)})
		for i := d; i < files; i += 100 {
			body = body[:0]
			for line := 0; len(body) < 4096-64; line++ {
				n := rng.IntN(1000)
				if changed[i] && line == 20 {
					body = append(body, "\tchanged := true // edited by the agent\n"...)
					continue
				}
				body = fmt.Appendf(body, "\tx%d := compute(%d, %d) // file %d\n", line, n, line, i)
			}
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("pkg%02d/file%05d.go", d, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)})
			tw.Write(body)
		}
	}
	tw.Close()
	return b.Bytes()
}

// BenchmarkDiff10kFiles10Changed is the workspace_diff target: a
// 10,000-file workspace (about 40 MiB) with 10 files edited, baseline on
// disk, current tree streamed from memory. Well under 200 ms per op.
func BenchmarkDiff10kFiles10Changed(b *testing.B) {
	changed := map[int]bool{}
	for i := range 10 {
		changed[i*997] = true
	}
	dir := b.TempDir()
	if _, err := WriteBaseline(dir, bytes.NewReader(workspaceTar(b, 10000, nil))); err != nil {
		b.Fatal(err)
	}
	cur := workspaceTar(b, 10000, changed)
	b.SetBytes(int64(len(cur)))
	for b.Loop() {
		ix, err := LoadIndex(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Diff(ix, DirBlobs{dir}, bytes.NewReader(cur), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Totals.FilesChanged != 10 {
			b.Fatalf("%d files changed", r.Totals.FilesChanged)
		}
	}
}

func BenchmarkLoadIndex10k(b *testing.B) {
	dir := b.TempDir()
	if _, err := WriteBaseline(dir, bytes.NewReader(workspaceTar(b, 10000, nil))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := LoadIndex(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteBaseline10k(b *testing.B) {
	data := workspaceTar(b, 10000, nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := WriteBaseline(b.TempDir(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
