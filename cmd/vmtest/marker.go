package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"

	"github.com/pyro-mcp/pyro/guest/testinit"
)

// cmdMarkerInitrd writes guest/testinit's initramfs to a file, atomically.
func cmdMarkerInitrd(args []string) error {
	fs := flag.NewFlagSet("marker-initrd", flag.ContinueOnError)
	busybox := fs.String("busybox", "", "static busybox binary to put in the initramfs")
	out := fs.String("o", "", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *busybox == "" || *out == "" {
		return errors.New("marker-initrd needs --busybox PATH and -o FILE")
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".marker-*.cpio")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := testinit.Write(tmp, *busybox); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}
