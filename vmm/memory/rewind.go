package memory

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Rewinding a guest in place. A guest opened from a memory image (Open)
// reads, through its private mapping, the image's bytes on every page it
// has not written since, and its own copy on every page it has. Putting
// those written pages back to the image's bytes makes the whole RAM the
// image again without unmapping anything: the pages stay mapped where the
// hypervisor's second-level page tables already point, so the guest that
// resumes touches them without a fault each, which is what a fresh mapping
// of the image costs.

// RewindStats says what Rewind did.
type RewindStats struct {
	Pages  uint64 // pages in the guest's RAM
	Copied uint64 // pages the guest had written, put back to the image's bytes
}

// SameImage reports whether the guest's memory is mapped on the memory image
// at path (the same file, not merely the same name).
func (g *Guest) SameImage(path string) bool {
	if g.file == nil {
		return false
	}
	a, err := g.file.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// ErrNotImage is returned by Rewind for memory that was not opened from a
// memory image (Open).
var ErrNotImage = errors.New("memory: the guest's RAM is not mapped on a memory image")

// Rewind makes every byte of the guest's RAM the image's again: each page the
// guest (or a device) wrote since the image was mapped is read back from the
// image, consecutive ones with one read; every other page already reads as
// the image. /proc/self/pagemap says which pages are the process's own copies;
// where it cannot be read, every page is read back.
//
// Call Rewind only while nothing writes the guest's memory: no vCPU runs and
// no device works on it. On error the RAM is part rewound, part not: the
// caller must not run the guest on it.
func (g *Guest) Rewind() (st RewindStats, err error) {
	if g.file == nil {
		return st, ErrNotImage
	}
	pm := openPagemap()
	defer pm.Close()
	own := make([]bool, saveBatch)
	var off int64
	for _, r := range g.regions {
		m := r.Host
		base := hostAddr(m)
		runStart, runEnd := 0, 0
		flush := func() error {
			if runEnd > runStart {
				if _, err := g.file.ReadAt(m[runStart:runEnd], off+int64(runStart)); err != nil {
					return fmt.Errorf("rewind guest memory from %s: %w", g.backing, err)
				}
			}
			runStart, runEnd = 0, 0
			return nil
		}
		for first := 0; first < len(m); first += saveBatch * pageSize {
			batch := own[:min(saveBatch, (len(m)-first)/pageSize)]
			if err := pm.private(base+uintptr(first), batch); err != nil {
				return st, err
			}
			for i, written := range batch {
				p := first + i*pageSize
				st.Pages++
				if !written {
					if err := flush(); err != nil {
						return st, err
					}
					continue
				}
				st.Copied++
				if runEnd != p || runEnd-runStart >= maxRun {
					if err := flush(); err != nil {
						return st, err
					}
					runStart = p
				}
				runEnd = p + pageSize
			}
		}
		if err := flush(); err != nil {
			return st, err
		}
		off += int64(len(m))
	}
	return st, nil
}

// ErrLost is wrapped by a Remap that failed after the old mapping may have
// gone: the guest's RAM reads as zeros now, and its VM must not run on.
var ErrLost = errors.New("the guest's RAM was lost")

// Remap puts the guest's RAM on the memory image at path, which must hold
// exactly the bytes the RAM holds now (Save has just written it, and
// nothing has written the RAM since): the image is mapped privately
// (copy-on-write) at the same addresses, so every slice into the RAM stays
// valid. The process's own copies of the pages are dropped, to be read
// from the image's page cache again, shared with every other guest mapping
// it, and Rewind can take the guest back to the image from then on.
//
// An error before the mapping changes leaves the RAM as it was. One after
// (wrapping ErrLost) leaves anonymous zeros in its place: the caller stops
// the guest.
func (g *Guest) Remap(path string) error {
	if g.mapping == nil {
		return errors.New("memory: remap of closed guest memory")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("remap guest memory: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != int64(len(g.mapping)) {
		err = fmt.Errorf("%s is %d bytes, the guest's RAM is %d bytes", path, fi.Size(), len(g.mapping))
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("remap guest memory: %w", err)
	}
	if err := mapOver(g.mapping, int(f.Fd()), unix.MAP_PRIVATE|unix.MAP_NORESERVE); err != nil {
		f.Close()
		// The old mapping may be gone: map zeros there, so that nothing
		// touching the RAM faults the process.
		if aerr := mapOver(g.mapping, -1, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE); aerr != nil {
			panic(fmt.Sprintf("memory: remapping guest RAM failed (%v) and so did mapping zeros in its place (%v)", err, aerr))
		}
		if g.file != nil {
			g.file.Close()
		}
		g.file, g.backing = nil, ""
		return fmt.Errorf("remap guest memory on %s: %w: %w", path, err, ErrLost)
	}
	if g.file != nil {
		g.file.Close()
	}
	g.file, g.backing = f, path
	return nil
}
