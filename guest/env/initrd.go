package env

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/guest/initramfs"
)

// initrdModule is one module file the initramfs carries.
type initrdModule struct {
	Rel string // path under lib/modules/RELEASE as the kernel package has it
	Src string // host path of that file
}

// writeInitrd writes the guest's initramfs to w: /init (the agent binary),
// the mount points /init uses, /dev/console, and the modules, uncompressed,
// at /lib/modules/RELEASE/..., listed in load order in ModulesOrderPath.
// It returns the absolute guest paths of the modules in load order.
func writeInitrd(ctx context.Context, w io.Writer, agent, release string, mods []initrdModule) ([]string, error) {
	a := initramfs.NewWriter(w)
	for _, d := range []string{"/dev", "/proc", "/sys", "/newroot", "/tmp", "/run"} {
		a.Dir(d, 0o755)
	}
	a.CharDev("/dev/console", 0o600, 5, 1)
	var order []string
	for _, m := range mods {
		data, err := readModule(ctx, m.Src)
		if err != nil {
			return nil, err
		}
		p := path.Join("/lib/modules", release, uncompressedName(m.Rel))
		if err := a.File(p, 0o644, data); err != nil {
			return nil, err
		}
		order = append(order, p)
	}
	list := strings.Join(order, "\n")
	if list != "" {
		list += "\n"
	}
	a.File(ModulesOrderPath, 0o644, []byte(list))
	f, err := os.Open(agent)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	a.FileFrom("/init", 0o755, fi.Size(), f)
	return order, a.Close()
}

// CpioEntry is one entry of a newc archive, as ReadInitrd returns it.
type CpioEntry struct {
	Name         string // relative to the root, without a leading slash
	Mode         uint32 // file type and permission bits, as in stat(2)
	Data         []byte // file contents or symlink target
	RMajor, RMin uint32 // device numbers of a device node
}

// Type bits of CpioEntry.Mode.
const (
	CpioTypeMask = 0o170000
	CpioDir      = 0o040000
	CpioFile     = 0o100000
	CpioSymlink  = 0o120000
	CpioCharDev  = 0o020000
)

// ReadInitrd reads an uncompressed newc archive (every archive written by
// guest/initramfs) and returns its entries in order. Concatenated archives
// are read one after the other.
func ReadInitrd(r io.Reader) ([]CpioEntry, error) {
	br := bufio.NewReader(r)
	var entries []CpioEntry
	var off int64
	read := func(n int64) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		off += n
		return b, err
	}
	align := func() error {
		if pad := (4 - off%4) % 4; pad > 0 {
			_, err := read(pad)
			return err
		}
		return nil
	}
	for {
		// Skip the zero padding between concatenated archives.
		b, err := br.Peek(1)
		if err == io.EOF {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		if b[0] == 0 {
			br.Discard(1)
			off++
			continue
		}
		hdr, err := read(110)
		if err != nil {
			return nil, fmt.Errorf("initrd: truncated header at %d", off-110)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("initrd: bad magic %q at offset %d (not an uncompressed newc archive)", hdr[:6], off-110)
		}
		field := func(i int) uint32 {
			v, perr := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if perr != nil && err == nil {
				err = fmt.Errorf("initrd: bad header field at offset %d", off-110)
			}
			return uint32(v)
		}
		mode, size := field(1), field(6)
		rmaj, rmin, namesize := field(9), field(10), field(11)
		if err != nil {
			return nil, err
		}
		nameb, err := read(int64(namesize))
		if err != nil || namesize == 0 {
			return nil, fmt.Errorf("initrd: truncated name at %d", off)
		}
		name := string(bytes.TrimRight(nameb, "\x00"))
		if err := align(); err != nil {
			return nil, err
		}
		data, err := read(int64(size))
		if err != nil {
			return nil, fmt.Errorf("initrd: %s: truncated data", name)
		}
		if err := align(); err != nil {
			return nil, err
		}
		if name == "TRAILER!!!" {
			continue
		}
		entries = append(entries, CpioEntry{Name: name, Mode: mode, Data: data, RMajor: rmaj, RMin: rmin})
	}
}

// rewriteInitrd copies the entries of an initramfs to w, replacing /init
// with the agent binary: what a new pyro binary needs, without the kernel
// package.
func rewriteInitrd(w io.Writer, old []CpioEntry, agent string) error {
	a := initramfs.NewWriter(w)
	for _, e := range old {
		if e.Name == "init" {
			continue
		}
		perm := fs.FileMode(e.Mode & 0o777)
		if e.Mode&0o4000 != 0 {
			perm |= fs.ModeSetuid
		}
		if e.Mode&0o2000 != 0 {
			perm |= fs.ModeSetgid
		}
		if e.Mode&0o1000 != 0 {
			perm |= fs.ModeSticky
		}
		switch e.Mode & CpioTypeMask {
		case CpioDir:
			a.Dir(e.Name, perm)
		case CpioFile:
			a.File(e.Name, perm, e.Data)
		case CpioSymlink:
			a.Symlink(e.Name, string(e.Data))
		case CpioCharDev:
			a.CharDev(e.Name, perm, e.RMajor, e.RMin)
		default:
			return fmt.Errorf("initrd: %s: unsupported file type %o", e.Name, e.Mode&CpioTypeMask)
		}
	}
	f, err := os.Open(agent)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	a.FileFrom("/init", 0o755, fi.Size(), f)
	return a.Close()
}
