package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	flag "github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/cmd/pyro/hostcfg"
	"github.com/pyro-mcp/pyro/guest/env"
	"github.com/pyro-mcp/pyro/kvm"
	"github.com/pyro-mcp/pyro/mcp/workspace"
	"github.com/pyro-mcp/pyro/netstack"
)

const doctorHelp = `Usage: pyro doctor [--json] [--resolver IP:PORT]

Checks everything pyro mcp serve needs, and says what to fix:
  - the host: the checks of pyro kvm-check (KVM device, access,
    capabilities, hardware virtualization)
  - environments: warm (built, current, and holding this pyro as the
    guest agent: a workspace boots at once), cold (not built), stale
    (built by another pyro binary or an older recipe) or broken, each
    with the command that readies it (pyro prepare NAME does it all and
    proves a workspace); and, for a warm one, its memory snapshots: the
    VM shapes whose workspaces resume one instead of booting, and the
    disk they hold
  - the state directory (workspaces) and the cache (environments): where
    they are, that they are writable, their free space, how many
    workspaces there are
  - the binary a chat host will start: is pyro on PATH, and is it this one
  - the resolver a workspace's granted names are resolved through:
    --resolver ($PYRO_RESOLVER), else the nameservers of /etc/resolv.conf
  - each chat host (Claude Code, Codex, OpenCode): is its CLI installed,
    and is pyro registered with it: current, missing, stale (another
    binary) or malformed (pyro host doctor has the details)

Exits 0 when pyro mcp serve can boot workspaces (warnings allowed),
otherwise 1. It changes nothing, but for removing the control sockets of servers that are gone.

Flags:
`

// minFreeBytes is the free space below which doctor warns: a workspace's
// disk layers grow with what its commands install.
const minFreeBytes = 2 << 30

// doctorReport is what doctor found; --json prints it as is.
type doctorReport struct {
	OK       bool   `json:"ok"`
	Summary  string `json:"summary"`
	Version  string `json:"version"`
	StateDir string `json:"state_dir"`
	CacheDir string `json:"cache_dir"`
	// Resolver is what workspace networks resolve granted names with.
	Resolver resolverReport `json:"resolver"`
	// Environments are what workspaces boot, warm or not.
	Environments []envReadiness `json:"environments"`
	// Hosts are the chat hosts' registrations of pyro (pyro host doctor
	// --json has the same).
	Hosts  []hostcfg.Status `json:"hosts,omitempty"`
	Checks []check          `json:"checks"`
}

// Environment readiness, as doctor reports it.
const (
	envWarm     = "warm"     // built, current, holds this pyro: a workspace boots at once
	envCold     = "cold"     // not built
	envStale    = "stale"    // built by another pyro binary or an older recipe
	envBroken   = "broken"   // damaged or incomplete: never booted
	envBuilding = "building" // not built yet, and a build is running
)

// envReadiness is one environment's readiness for the chat path.
type envReadiness struct {
	Name   string `json:"name"`
	State  string `json:"state"` // warm, cold, stale, broken or building
	Detail string `json:"detail"`
	// Fix is the command that makes it warm; "" when it is.
	Fix string `json:"fix,omitempty"`
	// MemorySnapshots are its warm snapshots: a create of a current
	// one's VM shape resumes it instead of booting.
	MemorySnapshots []workspace.WarmStatus `json:"memory_snapshots,omitempty"`
}

// resolverReport says which DNS servers resolve granted names, and from
// where pyro took them.
type resolverReport struct {
	// Source is "--resolver" (the flag or $PYRO_RESOLVER) or the
	// resolv.conf path the host's resolver reads.
	Source string `json:"source"`
	// Servers are the DNS servers' addresses; empty when none was found,
	// and then granted names do not resolve.
	Servers []string `json:"servers"`
}

func doctorMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	device := fs.String("device", kvm.DevicePath, "KVM device node")
	resolver := fs.String("resolver", defaultResolverAddr(), "check this DNS server (IP:PORT) as pyro mcp serve --resolver would use it (default $"+resolverEnv+")")
	fs.Usage = func() { fmt.Fprint(stderr, doctorHelp); fs.PrintDefaults() }
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pyro doctor: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	self, _ := os.Executable()
	agent, _ := agentBinary()
	var hosts *hostcfg.Env
	if e, err := hostEnv(""); err == nil {
		hosts = &e
	}
	r := diagnose(doctorInputs{hosts: hosts, control: true,
		device: *device, sysfs: "/sys", cpuinfo: "/proc/cpuinfo",
		state: stateDir(), cache: cacheRoot(), self: self, agent: agent, path: os.Getenv("PATH"),
		resolver: *resolver, resolvConf: netstack.ResolvConfPath,
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		fmt.Fprintf(stdout, "pyro doctor (pyro %s): %s\n\n", r.Version, r.Summary)
		printChecks(stdout, r.Checks)
	}
	if !r.OK {
		return exitFailure
	}
	return exitOK
}

// doctorInputs are the paths diagnose looks at, so tests can fake them.
type doctorInputs struct {
	device, sysfs, cpuinfo string
	state, cache           string
	self                   string // this executable
	path                   string // $PATH
	resolver               string // --resolver / $PYRO_RESOLVER
	resolvConf             string // the host's resolv.conf
	// agent is the binary environments must hold as their guest agent
	// (this one, or $PYRO_AGENT_BINARY); "" skips that comparison.
	agent string
	// hosts is where chat hosts keep their configuration; nil skips the
	// host checks (tests of the other checks).
	hosts *hostcfg.Env
	// control: report the live servers on the control socket (pyro
	// doctor itself; tests leave it off, the sockets are the machine's).
	control bool
}

func diagnose(in doctorInputs) doctorReport {
	r := doctorReport{Version: version, StateDir: in.state, CacheDir: in.cache}
	add := func(c check) { r.Checks = append(r.Checks, c) }

	host := probeHostChecks(in.device, in.sysfs, in.cpuinfo)
	r.Checks = append(r.Checks, host...)
	r.Environments = checkEnvironments(in.cache, in.agent, add)
	checkDir("state directory", in.state, "workspaces", add)
	checkWorkspaces(in.state, add)
	checkDir("cache directory", in.cache, "environments", add)
	checkOnPath(in.self, in.path, add)
	r.Resolver = checkResolver(in.resolver, in.resolvConf, add)
	if in.control {
		checkControl(add)
	}
	if in.hosts != nil {
		r.Hosts = checkHosts(*in.hosts, hostcfg.Server{Command: in.self, Args: []string{"mcp", "serve"}, KeepArgs: true}, add)
	}

	r.OK = true
	warns := 0
	for _, c := range r.Checks {
		r.OK = r.OK && c.OK
		if c.Warn {
			warns++
		}
	}
	switch {
	case !r.OK:
		r.Summary = "pyro mcp serve cannot boot workspaces here yet; fix the failed checks below"
	case warns > 0:
		r.Summary = fmt.Sprintf("ready, with %d warning(s) below", warns)
	default:
		r.Summary = "ready: pyro mcp serve can boot workspaces (pyro host connect claude-code registers it with a chat host)"
	}
	return r
}

// probeHostChecks returns kvm-check's host checks, its capability lines
// folded into one while they all pass. Environments are doctor's own.
func probeHostChecks(device, sysfs, cpuinfo string) []check {
	var out, caps []check
	capsOK := true
	for _, c := range probeHost(device, sysfs, cpuinfo, "").Checks {
		switch {
		case strings.HasPrefix(c.Name, "KVM_CAP_"):
			caps = append(caps, c)
			capsOK = capsOK && c.OK
		case c.Name == "environments" || c.Name == "guest kernel":
		default:
			out = append(out, c)
		}
	}
	if capsOK && len(caps) > 0 {
		out = append(out, check{Name: "KVM capabilities", OK: true, Detail: fmt.Sprintf("all %d that pyro uses", len(caps))})
	} else {
		out = append(out, caps...)
	}
	return out
}

// checkEnvironments reports each environment as warm, cold, stale or
// broken, with the command that readies it; at least one must be built.
// A cold or stale default environment (the one workspaces get when they
// name none) warns; a broken one fails, since it is never booted.
func checkEnvironments(cache, agent string, add func(check)) []envReadiness {
	var out []envReadiness
	built := 0
	for _, st := range env.List(cache) {
		r := envState(st, agent)
		if st.State == env.StateBuilt && st.Env != nil {
			r.MemorySnapshots = workspace.WarmSnapshots("", st.Env)
			if r.State == envWarm {
				r.Detail += "; " + warmDetail(r.Name, r.MemorySnapshots, os.Getenv("PYRO_WARM") != "0")
			}
		}
		out = append(out, r)
		if st.State == env.StateBuilt {
			built++
		}
		c := check{Name: "environment " + r.Name, OK: r.State != envBroken, Detail: r.State + ": " + r.Detail, Fix: r.Fix}
		switch {
		case r.State == envStale:
			c.Warn = true
		case r.State == envCold && r.Name == workspace.DefaultEnv:
			c.Warn = true
			c.Detail += "; workspaces that name no environment get " + r.Name
		case r.State == envCold:
			c.Detail += fmt.Sprintf("; pyro prepare %s or pyro env build %s builds it", r.Name, r.Name)
		}
		add(c)
	}
	if built == 0 {
		add(check{Name: "environments", Detail: "none built in " + cache + ": workspaces have nothing to boot",
			Fix: "pyro env build debian-12 (or minimal, in seconds)"})
	}
	return out
}

// warmDetail says what a built, current environment's warm snapshots do
// for the next create.
func warmDetail(name string, snaps []workspace.WarmStatus, on bool) string {
	if !on {
		return "memory snapshots are off (PYRO_WARM=0): every workspace boots"
	}
	var shapes []string
	var held, staleHeld int64
	stale := 0
	for _, s := range snaps {
		if s.Current {
			shapes = append(shapes, fmt.Sprintf("%d vCPU, %d MiB", s.VCPUs, s.MemMiB))
			held += s.Bytes
		} else {
			stale++
			staleHeld += s.Bytes
		}
	}
	var d string
	if len(shapes) == 0 {
		d = "no memory snapshot yet: its first workspace boots and takes one, and later ones resume it (pyro prepare " + name + " takes it now)"
	} else {
		d = fmt.Sprintf("workspaces of %s resume its memory snapshot instead of booting (%s on disk)", strings.Join(shapes, "; "), humanBytes(held))
	}
	if stale > 0 {
		d += fmt.Sprintf("; %d stale memory snapshot(s), %s, go as newer ones are taken", stale, humanBytes(staleHeld))
	}
	return d
}

// envState decides one environment's readiness from what pyro env build
// looks at, without its checksum pass: the recipe it was built by, and
// whether its initramfs holds agent (the pyro binary that becomes /init).
func envState(st env.Status, agent string) envReadiness {
	name := st.Spec.Name
	r := envReadiness{Name: name}
	ready := fmt.Sprintf("pyro prepare %s (or pyro env build %s)", name, name)
	switch {
	case st.State == env.StateBroken:
		r.State, r.Detail, r.Fix = envBroken, st.Reason, "pyro env build --force "+name
		return r
	case st.State == env.StateNotBuilt && st.Building:
		r.State, r.Detail = envBuilding, "not built yet; a pyro env build of it is running now"
		return r
	case st.State == env.StateNotBuilt:
		r.State, r.Detail, r.Fix = envCold, "not built", ready
		return r
	case st.Outdated != "":
		r.State, r.Detail, r.Fix = envStale, "built, but "+st.Outdated, ready
		return r
	}
	m := st.Env.Manifest
	if agent != "" {
		same, err := st.Env.AgentMatches(agent)
		switch {
		case err != nil:
			r.State, r.Detail, r.Fix = envStale, fmt.Sprintf("cannot compare its guest agent with %s: %v", agent, err), ready
			return r
		case !same:
			by := "another pyro binary"
			if m.PyroVersion != "" {
				by += " (pyro " + m.PyroVersion + ")"
			}
			r.State, r.Fix = envStale, ready
			r.Detail = "its guest agent is " + by + ", not this one: the first workspace puts this one in " +
				"its initramfs (no download, well under a second)"
			return r
		}
	}
	r.State = envWarm
	r.Detail = fmt.Sprintf("built %s, current, kernel %s", m.BuiltAt.Local().Format(time.DateOnly), m.Kernel.Version)
	if agent != "" {
		r.Detail += ", guest agent is this pyro"
	}
	return r
}

// checkDir checks that dir (or, before first use, the directory it will
// be made in) is writable and has room.
func checkDir(name, dir, what string, add func(check)) {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	if err := unix.Access(probe, unix.W_OK); err != nil {
		add(check{Name: name, Detail: fmt.Sprintf("%s: %s is not writable by uid %d", dir, probe, os.Getuid()),
			Fix: "fix its permissions, or point pyro elsewhere ($PYRO_STATE_DIR, $PYRO_CACHE_DIR)"})
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		add(check{Name: name, OK: true, Warn: true, Detail: fmt.Sprintf("%s: free space unknown: %v", dir, err)})
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	where := dir
	if probe != dir {
		where += " (not made yet)"
	}
	c := check{Name: name, OK: true, Detail: fmt.Sprintf("%s, %s free", where, humanBytes(free))}
	if free < minFreeBytes {
		c.Warn = true
		c.Detail = fmt.Sprintf("%s: only %s free; %s grow with what they install", where, humanBytes(free), what)
		c.Fix = "free some space, or point pyro elsewhere ($PYRO_STATE_DIR, $PYRO_CACHE_DIR)"
	}
	add(c)
}

// checkWorkspaces counts the workspaces in the state directory. It takes
// no lock: a server's ownership flocks must not see a doctor.
func checkWorkspaces(state string, add func(check)) {
	des, err := os.ReadDir(filepath.Join(state, "workspaces"))
	if errors.Is(err, os.ErrNotExist) {
		return // never served from
	}
	if err != nil {
		add(check{Name: "workspaces", OK: true, Warn: true, Detail: err.Error()})
		return
	}
	n := 0
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") || !de.IsDir() {
			continue // a delete's remains
		}
		if _, err := os.Stat(filepath.Join(state, "workspaces", de.Name(), "record.json")); err == nil {
			n++
		}
	}
	add(check{Name: "workspaces", OK: true, Detail: fmt.Sprintf("%d in the state directory (servers share it: each chat session works on its own)", n)})
}

// checkOnPath checks that the pyro a chat host starts by name is this one.
func checkOnPath(self, path string, add func(check)) {
	found := ""
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "pyro")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			found = p
			break
		}
	}
	switch {
	case found == "":
		add(check{Name: "pyro on PATH", OK: true, Warn: true, Detail: "not found: a chat host configured with the command \"pyro\" cannot start it",
			Fix: "install it on PATH (install -m 755 " + self + " ~/.local/bin/pyro), or register the absolute path: pyro host connect claude-code"})
	case sameExecutable(found, self):
		add(check{Name: "pyro on PATH", OK: true, Detail: found})
	default:
		add(check{Name: "pyro on PATH", OK: true, Warn: true, Detail: fmt.Sprintf("%s is another pyro than this one (%s)", found, self),
			Fix: "reinstall the one on PATH, or register the absolute path: pyro host connect claude-code"})
	}
}

// checkResolver reports the DNS servers that granted names are resolved
// through: the --resolver address, else resolv.conf's nameservers. With
// none, workspaces still run, but a name grant never resolves: a warning.
func checkResolver(flagAddr, resolvConf string, add func(check)) resolverReport {
	const name = "resolver"
	if flagAddr != "" {
		r := resolverReport{Source: "--resolver"}
		ap, err := netstack.ParseResolverAddr(flagAddr)
		if err != nil {
			add(check{Name: name, Detail: err.Error(), Fix: "give --resolver (or $" + resolverEnv + ") as IP:PORT, or unset it to use the host's resolver"})
			return r
		}
		r.Servers = []string{ap.String()}
		add(check{Name: name, OK: true, Detail: ap.String() + " (--resolver or $" + resolverEnv + "): granted names resolve there"})
		return r
	}
	r := resolverReport{Source: resolvConf}
	servers, err := netstack.HostNameservers(resolvConf)
	fix := "list a nameserver in " + resolvConf + ", or start pyro mcp serve with --resolver IP:PORT (or $" + resolverEnv + ")"
	switch {
	case err != nil:
		add(check{Name: name, OK: true, Warn: true, Detail: fmt.Sprintf("%v: names granted to workspaces will not resolve", err), Fix: fix})
	case len(servers) == 0:
		add(check{Name: name, OK: true, Warn: true, Detail: resolvConf + " lists no nameserver: names granted to workspaces will not resolve", Fix: fix})
	default:
		r.Servers = servers
		add(check{Name: name, OK: true, Detail: strings.Join(servers, ", ") + " (from " + resolvConf + "): granted names resolve there"})
	}
	return r
}

func sameExecutable(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

// printChecks prints checks as kvm-check and doctor show them.
func printChecks(w io.Writer, checks []check) {
	for _, c := range checks {
		mark := "ok  "
		switch {
		case !c.OK:
			mark = "FAIL"
		case c.Warn:
			mark = "warn"
		}
		fmt.Fprintf(w, "  [%s] %-30s %s\n", mark, c.Name, c.Detail)
		if (!c.OK || c.Warn) && c.Fix != "" {
			fmt.Fprintf(w, "         %-30s fix: %s\n", "", c.Fix)
		}
	}
}
