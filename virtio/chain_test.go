package virtio

import (
	"bytes"
	"io"
	"testing"
)

func TestPieces(t *testing.T) {
	a, b, c := Buffer("hello"), Buffer(""), Buffer(", world!")
	p := NewPieces([]Buffer{a, b, c})
	if p.Len() != 13 {
		t.Fatal(p.Len())
	}
	last, ok := p.TakeLast(1)
	if !ok || string(last) != "!" || p.Len() != 12 {
		t.Fatalf("TakeLast: %q %v %d", last, ok, p.Len())
	}
	hdr := make([]byte, 7)
	if n, err := io.ReadFull(p, hdr); n != 7 || err != nil || string(hdr) != "hello, " {
		t.Fatalf("Read: %q %v", hdr, err)
	}
	rest, ok := p.Take(5)
	if !ok || len(rest) != 1 || string(rest[0]) != "world" || p.Len() != 0 {
		t.Fatalf("Take: %q %v", rest, ok)
	}
	if _, ok := p.Take(1); ok {
		t.Fatal("Take past the end")
	}
	if n, err := p.Read(hdr); n != 0 || err != io.EOF {
		t.Fatal("Read past the end")
	}
	// Write fills across buffers and reports what did not fit.
	x, y := make(Buffer, 2), make(Buffer, 3)
	w := NewPieces([]Buffer{x, y})
	if n, err := w.Write([]byte("abcdefg")); n != 5 || err != io.ErrShortWrite {
		t.Fatalf("Write: %d %v", n, err)
	}
	if !bytes.Equal(append(x, y...), []byte("abcde")) {
		t.Fatal("Write landed wrong")
	}
	// A status byte split from its buffer cannot be taken whole.
	if _, ok := NewPieces([]Buffer{Buffer("a"), Buffer("")}).TakeLast(2); ok {
		t.Fatal("TakeLast across buffers")
	}
}

func TestReadConfigWindow(t *testing.T) {
	cfg := []byte{1, 2, 3, 4}
	for _, c := range []struct {
		off  uint64
		n    int
		want []byte
	}{
		{0, 4, []byte{1, 2, 3, 4}},
		{2, 4, []byte{3, 4, 0, 0}},
		{4, 2, []byte{0, 0}},
		{^uint64(0), 2, []byte{0, 0}},
		{^uint64(0) - 1, 4, []byte{0, 0, 0, 0}},
	} {
		got := make([]byte, c.n)
		for i := range got {
			got[i] = 0xff
		}
		ReadConfigWindow(cfg, c.off, got)
		if string(got) != string(c.want) {
			t.Errorf("off %#x len %d: %v, want %v", c.off, c.n, got, c.want)
		}
	}
}
