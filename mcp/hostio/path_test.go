package hostio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuestPath(t *testing.T) {
	ok := map[string]string{
		".":                     "/workspace",
		"src/main.go":           "/workspace/src/main.go",
		"./src//a/../b":         "/workspace/src/b",
		"/workspace":            "/workspace",
		"/workspace/":           "/workspace",
		"/workspace/x/../y":     "/workspace/y",
		"a/../../workspace/z":   "/workspace/z",
		"/workspace/a b/c.txt":  "/workspace/a b/c.txt",
		"/workspace/.hidden":    "/workspace/.hidden",
		"sub/../../workspace/q": "/workspace/q",
	}
	for in, want := range ok {
		got, err := GuestPath(in)
		if err != nil || got != want {
			t.Errorf("GuestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                   "empty",
		"..":                 "outside /workspace",
		"../etc/passwd":      "outside /workspace",
		"/etc/passwd":        "outside /workspace",
		"/":                  "outside /workspace",
		"/workspace/../etc":  "outside /workspace",
		"/workspacex/a":      "outside /workspace",
		"/workspace2":        "outside /workspace",
		"a\x00b":             "NUL",
		"/workspace/a\x00":   "NUL",
		"../../../workspace": "", // cleans to /workspace: allowed
	}
	for in, substr := range bad {
		got, err := GuestPath(in)
		if substr == "" {
			if err != nil || got != "/workspace" {
				t.Errorf("GuestPath(%q) = %q, %v; want /workspace", in, got, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("GuestPath(%q) = %q, want an error", in, got)
			continue
		}
		wantErr(t, err, substr)
	}
	_, err := GuestPath("/etc")
	if err.Error() != `path "/etc" is outside /workspace; use a path under /workspace` {
		t.Errorf("message: %v", err)
	}
}

func TestHostPath(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	wd, _ := os.Getwd()
	ok := map[string]string{
		"~":           home,
		"~/":          home,
		"~/out/x.tar": filepath.Join(home, "out/x.tar"),
		"/tmp/a/../b": "/tmp/b",
		"rel/dir":     filepath.Join(wd, "rel/dir"),
		"./x/":        filepath.Join(wd, "x"),
	}
	for in, want := range ok {
		got, err := HostPath(in)
		if err != nil || got != want {
			t.Errorf("HostPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, substr := range map[string]string{"": "empty", "a\x00": "NUL", "~root/x": "~user is not supported"} {
		_, err := HostPath(in)
		wantErr(t, err, substr)
	}
}

func TestResolveHostPath(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Mkdir(filepath.Join(dir, "real"), 0o755))
	must(t, os.Symlink("real", filepath.Join(dir, "in")))
	must(t, os.Symlink("/etc", filepath.Join(dir, "out")))
	must(t, os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling")))
	for _, c := range []struct {
		p        string
		keepLast bool
		want     string
	}{
		{"in", false, "real"},
		{"in/new/file", false, "real/new/file"},
		{"in", true, "in"},
		{"in/x", true, "real/x"},
		{"out/passwd", false, "/etc/passwd"},
		{"out", true, "out"},
		{"new/deeper", false, "new/deeper"},
	} {
		got, err := ResolveHostPath(filepath.Join(dir, c.p), c.keepLast)
		want := c.want
		if !filepath.IsAbs(want) {
			want = filepath.Join(dir, want)
		}
		if err != nil || got != want {
			t.Errorf("ResolveHostPath(%s, %v) = %q %v, want %q", c.p, c.keepLast, got, err, want)
		}
	}
	for _, p := range []string{"dangling", "dangling/x"} {
		if _, err := ResolveHostPath(filepath.Join(dir, p), false); err == nil || !strings.Contains(err.Error(), "points to nothing") {
			t.Errorf("ResolveHostPath(%s): %v", p, err)
		}
	}
	if !Within("/a/b", "/a") || !Within("/a", "/a") || Within("/ab", "/a") || !Within("/x", "/") {
		t.Error("Within")
	}
}
