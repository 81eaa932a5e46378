package debian

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Suite returns a private apt configuration, kept in dir, that sees only
// suite (bookworm-backports, say) of the Debian archive the host's own apt
// sources use, and refreshes its package lists (apt-get update). The host's
// apt state is neither read for packages nor written: a package from
// another suite can be fetched without adding that suite to the host.
func Suite(ctx context.Context, dir, suite string) (*Apt, error) {
	src, err := hostDebianSource()
	if err != nil {
		return nil, err
	}
	// apt takes a relative Dir:: path as relative to its own default
	// (Dir::State::Lists under /var/lib/apt).
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	line := "deb "
	if src.signedBy != "" {
		line += "[signed-by=" + src.signedBy + "] "
	}
	line += src.uri + " " + suite + " main\n"
	list := filepath.Join(dir, "sources.list")
	if err := writeFile(list, line); err != nil {
		return nil, err
	}
	a := &Apt{opts: []string{
		"-o", "Dir::Etc::SourceList=" + list,
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "sources.list.d"), // absent: no parts
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Debug::NoLocking=1", // the private state is ours alone
	}}
	if os.Geteuid() == 0 {
		// apt would switch to its _apt user for downloads, which
		// cannot write into a private directory root owns.
		a.opts = append(a.opts, "-o", "APT::Sandbox::User=root")
	}
	if _, err := a.run(ctx, "", "apt-get", "update", "-q"); err != nil {
		return nil, fmt.Errorf("reading the package lists of %s: %w", suite, err)
	}
	return a, nil
}

func writeFile(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Codename is the host's Debian release codename (VERSION_CODENAME in
// /etc/os-release), such as bookworm.
func Codename() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok && strings.Trim(v, `"`) != "" {
			return strings.Trim(v, `"`), nil
		}
	}
	return "", fmt.Errorf("/etc/os-release names no VERSION_CODENAME")
}

// source is one apt source: an archive's URI and the keyring that signs it.
type source struct {
	uri, signedBy string
	suites        []string
}

// hostDebianSource finds the host's source for the main Debian archive:
// the first deb source whose suites include the release codename itself.
func hostDebianSource() (source, error) {
	code, err := Codename()
	if err != nil {
		return source{}, err
	}
	var all []source
	if f, err := os.Open("/etc/apt/sources.list"); err == nil {
		all = append(all, parseOneLine(f)...)
		f.Close()
	}
	parts, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(p, ".sources"):
			all = append(all, parseDeb822(f)...)
		case strings.HasSuffix(p, ".list"):
			all = append(all, parseOneLine(f)...)
		}
		f.Close()
	}
	if s, ok := pickSource(all, code); ok {
		return s, nil
	}
	return source{}, fmt.Errorf("no apt source for Debian %s's main archive in /etc/apt/sources.list or sources.list.d", code)
}

// pickSource returns the first source carrying suite code.
func pickSource(all []source, code string) (source, bool) {
	for _, s := range all {
		for _, su := range s.suites {
			if su == code {
				return s, true
			}
		}
	}
	return source{}, false
}

// parseOneLine reads "deb [opts] URI suite components..." lines.
func parseOneLine(f io.Reader) []source {
	var out []source
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		s := source{}
		rest := fields[1:]
		if strings.HasPrefix(rest[0], "[") {
			var opts []string
			for len(rest) > 0 {
				o := rest[0]
				rest = rest[1:]
				opts = append(opts, strings.Trim(o, "[]"))
				if strings.HasSuffix(o, "]") {
					break
				}
			}
			for _, o := range opts {
				if v, ok := strings.CutPrefix(o, "signed-by="); ok {
					s.signedBy = v
				}
			}
		}
		if len(rest) < 2 {
			continue
		}
		s.uri, s.suites = rest[0], []string{rest[1]}
		out = append(out, s)
	}
	return out
}

// parseDeb822 reads deb822 .sources stanzas.
func parseDeb822(f io.Reader) []source {
	var out []source
	var cur source
	deb, enabled := false, true
	flush := func() {
		if deb && enabled && cur.uri != "" {
			out = append(out, cur)
		}
		cur, deb, enabled = source{}, false, true
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.ToLower(key) {
		case "types":
			deb = slices.Contains(strings.Fields(val), "deb")
		case "uris":
			if f := strings.Fields(val); len(f) > 0 {
				cur.uri = f[0]
			}
		case "suites":
			cur.suites = strings.Fields(val)
		case "signed-by":
			if strings.HasPrefix(val, "/") { // a keyring file, not an inline key
				cur.signedBy = val
			}
		case "enabled":
			enabled = strings.ToLower(val) != "no"
		}
	}
	flush()
	return out
}
