package hostio

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// stallAfter is a guest stream that sends its first bytes, says so on
// stdout, and then never sends more.
type stallAfter struct {
	data []byte
	said bool
}

func (s *stallAfter) Read(p []byte) (int, error) {
	if len(s.data) > 0 {
		n := copy(p, s.data)
		s.data = s.data[n:]
		return n, nil
	}
	if !s.said {
		s.said = true
		fmt.Println("stalled")
	}
	time.Sleep(time.Hour) // until killed (select{} alone could end as a deadlock)
	return 0, io.EOF
}

// TestHelperStalledExport is run by TestKilledExportIsSwept in a child
// process, which it kills.
func TestHelperStalledExport(t *testing.T) {
	dest := os.Getenv("PYRO_HOSTIO_STALL_DEST")
	if dest == "" {
		t.Skip("run by TestKilledExportIsSwept")
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 20, Mode: 0o644})
	tw.Write(make([]byte, 64<<10))
	r := &stallAfter{data: b.Bytes()}
	if strings.HasSuffix(dest, ".tar") {
		WriteTar(context.Background(), r, dest, ArchiveOptions{})
	} else {
		Extract(context.Background(), r, dest, ExtractOptions{})
	}
}

// An export killed midway (SIGKILL, in a child process) leaves its
// temporary beside the destination; while the export runs the
// temporary is locked and no sweep removes it, and once the process is
// gone the next export's sweep does.
func TestKilledExportIsSwept(t *testing.T) {
	for _, name := range []string{"out.tar", "tree"} {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStalledExport$")
		cmd.Env = append(os.Environ(), "PYRO_HOSTIO_STALL_DEST="+filepath.Join(dir, name))
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "stalled\n" {
			cmd.Process.Kill()
			t.Fatalf("%s: the child said %q, %v", name, line, err)
		}
		temps := names(dir)
		if len(temps) != 1 || !IsTemp(temps[0]) || !strings.HasPrefix(temps[0], "."+name+tmpMarker) {
			t.Fatalf("%s: while exporting, the directory holds %q", name, temps)
		}
		// Running: locked, so kept even when old.
		n, err := SweepTemps(dir, time.Now().Add(2*staleTempAge))
		if n != 0 || err != nil || !slices.Equal(names(dir), temps) {
			t.Fatalf("%s: a sweep during the export removed %d (%v): %q", name, n, err, names(dir))
		}
		must(t, cmd.Process.Kill())
		cmd.Wait()
		if !slices.Equal(names(dir), temps) {
			t.Fatalf("%s: after the kill: %q", name, names(dir))
		}
		// Killed: the next export, once the temporary is stale, sweeps it.
		old := time.Now().Add(-2 * staleTempAge)
		must(t, os.Chtimes(filepath.Join(dir, temps[0]), old, old))
		rep, err := Extract(context.Background(), bytes.NewReader(tarBytes(t, entry{name: "f", typ: tar.TypeReg, body: "f"})),
			filepath.Join(dir, "next"), ExtractOptions{})
		must(t, err)
		if rep.SweptTemps != 1 || !slices.Equal(names(dir), []string{"next"}) {
			t.Errorf("%s: the next export swept %d: %q", name, rep.SweptTemps, names(dir))
		}
	}
}
