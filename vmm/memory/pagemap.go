package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// /proc/self/pagemap holds one 64-bit word per virtual page of the process
// (Documentation/admin-guide/mm/pagemap.rst): bit 63 says the page is present
// in RAM, bit 62 that it is swapped out. Both flags are readable without
// privileges (only the frame numbers are hidden). A page with neither bit has
// never been touched (anonymous memory) or not since it was mapped (file
// memory: it still reads as the file's bytes).
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
)

// pagemap reads the present and swapped bits of this process's pages.
type pagemap struct {
	f   *os.File
	buf []byte
}

// openPagemap opens /proc/self/pagemap; a nil pagemap (where the file cannot
// be read) answers that every page may hold data, which is slower but never
// wrong.
func openPagemap() *pagemap {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	return &pagemap{f: f}
}

func (p *pagemap) Close() {
	if p != nil {
		p.f.Close()
	}
}

// touched fills out[i] with whether the page at addr+i*pageSize is present
// or swapped. addr is page-aligned.
func (p *pagemap) touched(addr uintptr, out []bool) error {
	if p == nil {
		for i := range out {
			out[i] = true
		}
		return nil
	}
	n := len(out) * 8
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	buf := p.buf[:n]
	if _, err := p.f.ReadAt(buf, int64(addr/pageSize)*8); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read /proc/self/pagemap at %#x: %w", addr, err)
	}
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(buf[i*8:])&(pmPresent|pmSwapped) != 0
	}
	return nil
}
