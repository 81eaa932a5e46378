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
// in RAM, bit 62 that it is swapped out, bit 61 that a present page is the
// file's own (page cache) rather than this process's anonymous copy. All three
// are readable without privileges (only the frame numbers are hidden). A page
// with neither of the first two has never been touched (anonymous memory) or
// not since it was mapped (file memory: it still reads as the file's bytes).
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61
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
	return p.each(addr, out, func(e uint64) bool { return e&(pmPresent|pmSwapped) != 0 })
}

// private fills out[i] with whether the page at addr+i*pageSize of a private
// file mapping is this process's own copy: written since it was mapped
// (present but not the file's page, or swapped out, which only anonymous
// pages are).
func (p *pagemap) private(addr uintptr, out []bool) error {
	return p.each(addr, out, func(e uint64) bool { return e&pmSwapped != 0 || e&pmPresent != 0 && e&pmFile == 0 })
}

// each fills out[i] with is(the pagemap entry of the page at
// addr+i*pageSize). Without a pagemap it answers true for every page: the
// callers then read or copy every page, which is slower but never wrong.
func (p *pagemap) each(addr uintptr, out []bool, is func(entry uint64) bool) error {
	if p == nil {
		for i := range out {
			out[i] = true
		}
		return nil
	}
	buf, err := p.read(addr, len(out))
	if err != nil {
		return err
	}
	for i := range out {
		out[i] = is(binary.NativeEndian.Uint64(buf[i*8:]))
	}
	return nil
}

// read returns the pagemap entries of n pages from addr.
func (p *pagemap) read(addr uintptr, n int) ([]byte, error) {
	if cap(p.buf) < n*8 {
		p.buf = make([]byte, n*8)
	}
	buf := p.buf[:n*8]
	if _, err := p.f.ReadAt(buf, int64(addr/pageSize)*8); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read /proc/self/pagemap at %#x: %w", addr, err)
	}
	return buf, nil
}
