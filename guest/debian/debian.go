// Package debian fetches and unpacks Debian packages without installing them.
//
// It sits at the very start of pyro's guest pipeline: the guest kernels, their
// modules and the test harness's busybox all come from Debian packages, which
// this package resolves with apt-cache (the candidate version, at run time:
// nothing is pinned), downloads with `apt-get download` into a cache directory
// and unpacks with `dpkg-deb -x` into a plain directory. Nothing touches the
// host's package database or needs root.
//
// Downloads and extractions are atomic: they go to a temporary name next to the
// destination and are renamed into place, so an interrupted run never leaves a
// partial file that a later run would reuse.
package debian

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// need returns the path of an apt/dpkg tool or an error that says what to do.
func need(tool string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("%s not found: pyro builds its guest kernels and tools from Debian packages; "+
			"run on Debian or Ubuntu (with apt and dpkg installed), or copy a prepared assets directory from such a machine", tool)
	}
	return p, nil
}

// Apt is an apt configuration to resolve and fetch with: the host's own
// (a nil *Apt, what the package-level functions use) or a private one that
// Suite makes.
type Apt struct {
	opts []string // -o options for apt-get and apt-cache
}

// run runs an apt tool with a's options.
func (a *Apt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	if a != nil && (tool == "apt-get" || tool == "apt-cache") {
		args = append(append([]string(nil), a.opts...), args...)
	}
	return run(ctx, dir, tool, args...)
}

func run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	p, err := need(tool)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Record is the part of a package's apt record that pyro uses.
type Record struct {
	Package string
	Version string
	Depends []string // package names only, alternatives flattened, versions dropped
}

// Show returns the apt record of the candidate version of name.
func Show(ctx context.Context, name string) (Record, error) { return (*Apt)(nil).Show(ctx, name) }

// Show returns the apt record of the candidate version of name.
func (a *Apt) Show(ctx context.Context, name string) (Record, error) {
	out, err := a.run(ctx, "", "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return Record{}, fmt.Errorf("%w (is the package name right? has `apt-get update` run?)", err)
	}
	rec := parseRecord(out)
	if rec.Package == "" || rec.Version == "" {
		return Record{}, fmt.Errorf("apt-cache has no candidate version of %s; run `apt-get update` or check the apt sources", name)
	}
	return rec, nil
}

// parseRecord reads the first stanza of apt-cache show output.
func parseRecord(out []byte) Record {
	var rec Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" && rec.Package != "" {
			break
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Package":
			rec.Package = val
		case "Version":
			rec.Version = val
		case "Depends", "Pre-Depends":
			for _, alt := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == '|' }) {
				if f := strings.Fields(alt); len(f) > 0 {
					name, _, _ := strings.Cut(f[0], ":") // drop ":any" qualifiers
					rec.Depends = append(rec.Depends, name)
				}
			}
		}
	}
	return rec
}

// Resolve returns the package that name stands for and its candidate version.
// A plain package resolves to itself. A kernel metapackage such as
// linux-image-cloud-amd64 resolves to the versioned package it depends on
// (linux-image-6.1.0-NN-cloud-amd64): if name's candidate depends on exactly
// one package that shares name's first two dash-separated words
// ("linux-image-"), that package is followed.
func Resolve(ctx context.Context, name string) (pkg, version string, err error) {
	return (*Apt)(nil).Resolve(ctx, name)
}

// Resolve is the package-level Resolve with a's configuration.
func (a *Apt) Resolve(ctx context.Context, name string) (pkg, version string, err error) {
	rec, err := a.Show(ctx, name)
	if err != nil {
		return "", "", err
	}
	if dep := metaTarget(rec); dep != "" {
		if rec, err = a.Show(ctx, dep); err != nil {
			return "", "", fmt.Errorf("resolving %s: %w", name, err)
		}
	}
	return rec.Package, rec.Version, nil
}

// metaTarget returns the package a metapackage stands for, or "".
func metaTarget(rec Record) string {
	words := strings.SplitN(rec.Package, "-", 3)
	if len(words) < 3 {
		return ""
	}
	prefix := words[0] + "-" + words[1] + "-"
	var found []string
	for _, d := range rec.Depends {
		if strings.HasPrefix(d, prefix) && d != rec.Package {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// Fetch downloads version of pkg into cacheDir and returns the .deb's path.
// A .deb already in cacheDir is reused. The download happens in a temporary
// directory inside cacheDir and is renamed into place when complete.
func Fetch(ctx context.Context, cacheDir, pkg, version string) (string, error) {
	return (*Apt)(nil).Fetch(ctx, cacheDir, pkg, version)
}

// Fetch is the package-level Fetch with a's configuration.
func (a *Apt) Fetch(ctx context.Context, cacheDir, pkg, version string) (string, error) {
	// apt-get download names files pkg_version_arch.deb, with ':' escaped.
	pattern := filepath.Join(cacheDir, pkg+"_"+strings.ReplaceAll(version, ":", "%3a")+"_*.deb")
	if m, _ := filepath.Glob(pattern); len(m) == 1 {
		return m[0], nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := a.run(ctx, tmp, "apt-get", "download", "-q", pkg+"="+version); err != nil {
		return "", err
	}
	m, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %d .deb files, want 1", pkg, version, len(m))
	}
	dst := filepath.Join(cacheDir, filepath.Base(m[0]))
	if err := os.Rename(m[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

// Extract unpacks the files of deb into dir, which must not exist yet. It
// unpacks into a temporary sibling and renames it, so dir either holds the
// whole package or does not exist. Maintainer scripts are not run.
func Extract(ctx context.Context, deb, dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("extract %s: %s already exists", filepath.Base(deb), dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if _, err := run(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}
