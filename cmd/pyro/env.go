package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro/guest/env"
)

const envHelp = `Usage: pyro env list [--json]
       pyro env build NAME [--force] [--verbose]

Environments are what workspaces boot: a Debian cloud kernel, an initramfs
whose /init is this pyro binary (the guest agent), and an ext4 root
filesystem. They are built on this machine from Debian packages, never
downloaded prebuilt, and cached under ` + "`~/.cache/pyro/envs/NAME/`" + `
(override with $PYRO_CACHE_DIR).

Environments:
%s
Examples:
  pyro env build minimal         # busybox only, seconds: fast tests
  pyro env build debian-12       # about a minute, needs mmdebstrap
  pyro env list --json

A build that fails or is interrupted leaves nothing usable behind: the next
build starts again, and a damaged environment is reported, never booted.
`

func envUsage(w io.Writer) {
	var list string
	for _, s := range env.Specs() {
		list += fmt.Sprintf("  %-16s %s\n", s.Name, s.Description)
	}
	fmt.Fprintf(w, envHelp, list)
}

func envMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		envUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		envUsage(stdout)
		return exitOK
	case "list", "ls":
		return envListMain(args[1:], stdout, stderr)
	case "build":
		return envBuildMain(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "pyro env: unknown subcommand %q (use list or build)\n", args[0])
	return exitUsage
}

// cacheRoot is where environments live: $PYRO_CACHE_DIR or the default.
func cacheRoot() string {
	if d := os.Getenv("PYRO_CACHE_DIR"); d != "" {
		return d
	}
	return env.DefaultCacheRoot()
}

type envListEntry struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	State       string    `json:"state"`
	Reason      string    `json:"reason,omitempty"`
	Outdated    string    `json:"outdated,omitempty"`
	Building    bool      `json:"building,omitempty"`
	Dir         string    `json:"dir"`
	Kernel      string    `json:"kernel_version,omitempty"`
	BuiltAt     time.Time `json:"built_at,omitzero"`
	SizeBytes   int64     `json:"size_bytes,omitempty"`
	DiskBytes   int64     `json:"disk_bytes,omitempty"`
	Build       string    `json:"build_command"`
}

func envListMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("env list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() { envUsage(stderr); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	root := cacheRoot()
	var out []envListEntry
	for _, st := range env.List(root) {
		e := envListEntry{
			Name:        st.Spec.Name,
			Description: st.Spec.Description,
			State:       string(st.State),
			Reason:      st.Reason,
			Outdated:    st.Outdated,
			Building:    st.Building,
			Dir:         env.Dir(root, st.Spec.Name),
			SizeBytes:   st.Size,
			DiskBytes:   st.Disk,
			Build:       "pyro env build " + st.Spec.Name,
		}
		if st.Env != nil {
			e.Kernel = st.Env.Manifest.Kernel.Version
			e.BuiltAt = st.Env.Manifest.BuiltAt
		}
		out = append(out, e)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSIZE\tKERNEL\tDESCRIPTION")
	for _, e := range out {
		state := e.State
		if e.Building {
			state += " (building)"
		}
		size := "-"
		if e.DiskBytes > 0 {
			size = humanBytes(e.DiskBytes)
		}
		kernel := e.Kernel
		if kernel == "" {
			kernel = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, state, size, kernel, e.Description)
	}
	tw.Flush()
	for _, e := range out {
		switch {
		case e.Reason != "":
			fmt.Fprintf(stdout, "\n%s: %s", e.Name, e.Reason)
		case e.Outdated != "":
			fmt.Fprintf(stdout, "\n%s: %s", e.Name, e.Outdated)
		}
	}
	fmt.Fprintf(stdout, "\nBuild one with: pyro env build NAME   (cache: %s)\n", root)
	return exitOK
}

func envBuildMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("env build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	force := fs.Bool("force", false, "rebuild even if a current, verified build exists")
	verbose := fs.BoolP("verbose", "v", false, "also show the build tools' own output")
	mirrors := fs.StringArray("mirror", nil, "apt source for Debian environments (a sources.list line or a URI); repeatable; default: this host's apt sources")
	fs.Usage = func() { envUsage(stderr); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "pyro env build: name one environment (pyro env list shows them)")
		return exitUsage
	}
	name := fs.Arg(0)
	if _, err := env.Lookup(name); err != nil {
		fmt.Fprintf(stderr, "pyro env build: %v\n", err)
		return exitUsage
	}
	self, err := agentBinary()
	if err != nil {
		fmt.Fprintf(stderr, "pyro env build: %v\n", err)
		return exitFailure
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	e, err := env.Build(ctx, env.BuildOptions{
		CacheRoot:   cacheRoot(),
		Name:        name,
		AgentBinary: self,
		Progress:    stderr,
		Verbose:     *verbose,
		Force:       *force,
		Mirrors:     *mirrors,
		PyroVersion: version,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "pyro env build: interrupted; nothing partial was kept")
			return exitRunSignal
		}
		fmt.Fprintf(stderr, "pyro env build: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s ready in %s (%v): kernel %s\n", e.Name, e.Dir,
		time.Since(start).Round(100*time.Millisecond), e.Manifest.Kernel.Version)
	return exitOK
}

// agentBinary is the pyro binary that environments boot as /init: this
// one, which must be static to run in a guest.
func agentBinary() (string, error) {
	if p := os.Getenv("PYRO_AGENT_BINARY"); p != "" {
		return p, nil
	}
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this pyro binary (it becomes the guest's /init): %w", err)
	}
	return p, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
