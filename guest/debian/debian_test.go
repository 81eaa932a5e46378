package debian

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const metaRecord = `Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Provides: linux-latest-modules-6.1.0-56-cloud-amd64
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description: Linux for x86-64 cloud (meta-package)
 Depends: not a field, a continuation line

Package: second-stanza
Version: 9
`

func TestParseRecord(t *testing.T) {
	got := parseRecord([]byte(metaRecord))
	want := Record{Package: "linux-image-cloud-amd64", Version: "6.1.192-2",
		Depends: []string{"linux-image-6.1.0-56-cloud-amd64"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if d := metaTarget(got); d != "linux-image-6.1.0-56-cloud-amd64" {
		t.Errorf("metaTarget = %q", d)
	}
	r := parseRecord([]byte("Package: foo-bar-baz\nVersion: 1\nPre-Depends: libc6:any (>= 2), foo-bar-x | foo-bar-y\n"))
	if !reflect.DeepEqual(r.Depends, []string{"libc6", "foo-bar-x", "foo-bar-y"}) {
		t.Errorf("Depends = %q", r.Depends)
	}
	if d := metaTarget(r); d != "" {
		t.Errorf("metaTarget with two candidates = %q, want none", d)
	}
	if d := metaTarget(Record{Package: "busybox-static", Depends: []string{"libc6"}}); d != "" {
		t.Errorf("metaTarget(busybox-static) = %q", d)
	}
}

func TestResolveKernel(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("SKIPPING: apt-cache not installed")
	}
	pkg, ver, err := Resolve(context.Background(), "linux-image-cloud-amd64")
	if err != nil {
		t.Skipf("SKIPPING: apt has no kernel packages here: %v", err)
	}
	if !strings.HasPrefix(pkg, "linux-image-6.") || !strings.HasSuffix(pkg, "-cloud-amd64") || ver == "" {
		t.Errorf("Resolve = %q %q", pkg, ver)
	}
	if _, _, err := Resolve(context.Background(), "no-such-package-pyro"); err == nil {
		t.Error("Resolve of a missing package succeeded")
	}
}

func TestFetchCachedAndExtract(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("SKIPPING: dpkg-deb not installed")
	}
	dir := t.TempDir()
	// Build a tiny package locally: no network needed.
	root := filepath.Join(dir, "root")
	for name, data := range map[string]string{
		"DEBIAN/control":            "Package: pyro-test\nVersion: 1:2.0-1\nArchitecture: all\nMaintainer: x <x@example.invalid>\nDescription: test\n",
		"usr/share/pyro-test/hello": "hi\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(cache, "pyro-test_1%3a2.0-1_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
	}
	got, err := Fetch(context.Background(), cache, "pyro-test", "1:2.0-1")
	if err != nil || got != deb {
		t.Fatalf("Fetch = %q, %v; want the cached %q", got, err, deb)
	}
	out := filepath.Join(dir, "x", "unpacked")
	if err := Extract(context.Background(), deb, out); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "usr/share/pyro-test/hello")); err != nil || string(b) != "hi\n" {
		t.Errorf("extracted file: %q, %v", b, err)
	}
	if err := Extract(context.Background(), deb, out); err == nil {
		t.Error("Extract over an existing directory succeeded")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "x", ".*")); len(m) != 0 {
		t.Errorf("temporary directories left behind: %q", m)
	}
}
