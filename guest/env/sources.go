package env

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// aptSource is one apt source entry of the host (one suite of one URI).
type aptSource struct {
	URI      string
	Suite    string
	Comps    []string
	SignedBy string // keyring path, or "" (inline keys are not carried over)
	Arch     string // Architectures option, or ""
}

// line renders the entry in one-line sources.list format, which mmdebstrap
// takes as a MIRROR argument.
func (s aptSource) line() string {
	var opts []string
	if s.Arch != "" {
		opts = append(opts, "arch="+s.Arch)
	}
	if s.SignedBy != "" {
		opts = append(opts, "signed-by="+s.SignedBy)
	}
	o := ""
	if len(opts) > 0 {
		o = "[" + strings.Join(opts, " ") + "] "
	}
	return "deb " + o + s.URI + " " + s.Suite + " " + strings.Join(s.Comps, " ")
}

// readHostSources reads the binary-package ("deb") entries of the apt
// configuration under root ("/" on a real host): etc/apt/sources.list and
// etc/apt/sources.list.d/*.list (one-line format) and *.sources (deb822).
// Disabled entries are skipped.
func readHostSources(root string) ([]aptSource, error) {
	var out []aptSource
	dir := filepath.Join(root, "etc", "apt")
	files := []string{filepath.Join(dir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*"))
	sort.Strings(more)
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		switch {
		case strings.HasSuffix(f, ".sources"):
			out = append(out, parseDeb822Sources(b)...)
		case strings.HasSuffix(f, ".list"):
			out = append(out, parseOneLineSources(b)...)
		}
	}
	return out, nil
}

func parseOneLineSources(b []byte) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		var s aptSource
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options: "[a=b c=d]", possibly split over several fields.
			var opts []string
			for len(f) > 0 {
				o := f[0]
				f = f[1:]
				end := strings.HasSuffix(o, "]")
				o = strings.Trim(o, "[]")
				if o != "" {
					opts = append(opts, o)
				}
				if end {
					break
				}
			}
			for _, o := range opts {
				k, v, _ := strings.Cut(o, "=")
				switch k {
				case "signed-by":
					s.SignedBy = v
				case "arch":
					s.Arch = v
				}
			}
		}
		if len(f) < 2 {
			continue
		}
		s.URI, s.Suite, s.Comps = f[0], f[1], f[2:]
		out = append(out, s)
	}
	return out
}

func parseDeb822Sources(b []byte) []aptSource {
	var out []aptSource
	for _, para := range bytes.Split(append(b, '\n'), []byte("\n\n")) {
		fields := map[string]string{}
		var key string
		sc := bufio.NewScanner(bytes.NewReader(para))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				if key != "" {
					fields[key] += "\n" + strings.TrimSpace(line)
				}
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			key = strings.ToLower(strings.TrimSpace(k))
			fields[key] = strings.TrimSpace(v)
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") {
			continue
		}
		if e := strings.ToLower(fields["enabled"]); e == "no" || e == "false" {
			continue
		}
		signed := fields["signed-by"]
		if strings.Contains(signed, "\n") || strings.Contains(signed, "BEGIN PGP") {
			signed = "" // an inline key: rely on the keyrings apt trusts
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			for _, suite := range strings.Fields(fields["suites"]) {
				out = append(out, aptSource{
					URI: uri, Suite: suite, Comps: strings.Fields(fields["components"]),
					SignedBy: signed, Arch: strings.Join(strings.Fields(fields["architectures"]), ","),
				})
			}
		}
	}
	return out
}

// suiteFamily reports whether suite is one of release's suites, and which:
// "" for the release itself, "-updates", "-security" (or "/updates").
func suiteFamily(suite, release string) (string, bool) {
	switch suite {
	case release:
		return "", true
	case release + "-updates":
		return "-updates", true
	case release + "-security", release + "/updates":
		return "-security", true
	}
	return "", false
}

// debianSources picks the entries that serve release (bookworm) and its
// updates and security suites from the host's apt configuration under root.
// A host of another Debian release lends its Debian archive and security
// URIs (recognized by a path ending in /debian or /debian-security) with the
// suites renamed. It fails, saying what to do, when neither is found.
func debianSources(root, release string) ([]string, error) {
	all, err := readHostSources(root)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var lines []string
	add := func(s aptSource) {
		if l := s.line(); !seen[l] {
			seen[l] = true
			lines = append(lines, l)
		}
	}
	for _, s := range all {
		if _, ok := suiteFamily(s.Suite, release); ok {
			add(s)
		}
	}
	if len(lines) > 0 {
		return lines, nil
	}
	// Another release: reuse its Debian archive URIs for release.
	for _, s := range all {
		uri := strings.TrimRight(s.URI, "/")
		switch {
		case strings.HasSuffix(uri, "/debian-security"):
			s.Suite = release + "-security"
		case strings.HasSuffix(uri, "/debian"):
			if strings.HasSuffix(s.Suite, "-updates") {
				s.Suite = release + "-updates"
			} else if !strings.Contains(s.Suite, "-") {
				s.Suite = release
			} else {
				continue // backports, proposed-updates...
			}
		default:
			continue
		}
		s.Comps = []string{"main"}
		add(s)
	}
	if len(lines) > 0 {
		return lines, nil
	}
	return nil, fmt.Errorf("no apt source of this host serves Debian %s, and none looks like a Debian archive "+
		"(checked %s/etc/apt/sources.list and sources.list.d): pass the Debian mirror to use explicitly "+
		"(BuildOptions.Mirrors, e.g. \"deb URI %s main\")", release, strings.TrimSuffix(root, "/"), release)
}
