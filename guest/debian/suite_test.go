package debian

import (
	"context"
	"strings"
	"testing"
)

func TestParseSources(t *testing.T) {
	deb822 := `Types: deb
# a comment
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
`
	got := parseDeb822(strings.NewReader(deb822))
	if len(got) != 2 {
		t.Fatalf("deb822: %d sources, want 2 (deb-src and disabled skipped): %+v", len(got), got)
	}
	s, ok := pickSource(got, "bookworm")
	if !ok || s.uri != "http://archive.example/debian" || s.signedBy != "/usr/share/keyrings/debian-archive-keyring.gpg" {
		t.Fatalf("deb822 pick: %+v %v", s, ok)
	}
	if got[1].signedBy != "" {
		t.Errorf("an inline key was taken for a keyring path: %q", got[1].signedBy)
	}

	oneLine := `# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/k.gpg] http://mirror.example/debian bookworm main contrib
deb http://plain.example/debian bookworm-backports main
`
	got = parseOneLine(strings.NewReader(oneLine))
	if len(got) != 2 {
		t.Fatalf("one-line: %d sources, want 2: %+v", len(got), got)
	}
	s, ok = pickSource(got, "bookworm")
	if !ok || s.uri != "http://mirror.example/debian" || s.signedBy != "/etc/k.gpg" {
		t.Fatalf("one-line pick: %+v %v", s, ok)
	}
	if _, ok := pickSource(got, "trixie"); ok {
		t.Error("picked a source for a release no source carries")
	}
}

// TestSuiteBackports reads a real suite's lists into a private directory
// and resolves a package there, leaving the host's apt state alone. Like
// the other apt tests it needs a Debian host and its archive.
func TestSuiteBackports(t *testing.T) {
	if _, err := need("apt-get"); err != nil {
		t.Skip("SKIPPING: apt-get not installed")
	}
	code, err := Codename()
	if err != nil {
		t.Skipf("SKIPPING: %v", err)
	}
	if _, err := hostDebianSource(); err != nil {
		t.Skipf("SKIPPING: %v", err)
	}
	dir := t.TempDir()
	a, err := Suite(context.Background(), dir, code+"-backports")
	if err != nil {
		t.Fatal(err)
	}
	pkg, ver, err := a.Resolve(context.Background(), "qemu-system-x86")
	if err != nil {
		t.Fatal(err)
	}
	if pkg != "qemu-system-x86" || !strings.Contains(ver, "bpo") {
		t.Fatalf("resolved %s %s, want a backports version", pkg, ver)
	}
}
