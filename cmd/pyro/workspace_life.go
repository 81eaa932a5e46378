package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Lifecycle: create, list, status, update, stop, start, delete, summary,
// logs; and env list.

func lifeCommands() []*wsCommand {
	return []*wsCommand{
		{name: "create", args: "[flags]", group: "Lifecycle", ops: []contract.Op{contract.OpCreate},
			summary: "boot a new workspace, optionally seeded from a host directory, archive or git checkout",
			help: `Boots a new disposable workspace and prints its id. /workspace starts
empty, or seeded from a host directory, a .tar/.tar.gz/.tgz archive, or
the tracked and untracked-but-not-ignored files of a git checkout; that
content is the baseline that diff compares against and reset returns to.
A workspace idle for --ttl is stopped (its disk kept a while).

Host paths are sent as absolute paths; the server that owns the
workspace only reads beneath the directories it allows (its
--allow-host-path, by default its working directory and the temp dir).

Examples:
  pyro workspace create --seed . --seed-kind git --name fix-123
  id=$(pyro workspace create --seed ./src.tgz --id-only)
  pyro workspace create --env debian-12 --network pypi.org:443 --network files.pythonhosted.org:443
  pyro workspace create --label task=review --ttl 2h --mem-mib 4096
`,
			run: wsCreate},
		{name: "list", args: "[flags]", group: "Lifecycle", ops: []contract.Op{contract.OpList},
			summary: "list workspaces, most recently active first",
			help: `Lists every workspace (those of every running pyro mcp serve, and those
on the state directory that no server owns), most recently active first.

Examples:
  pyro workspace list
  pyro workspace list --label task=fix-123 --state running
  pyro workspace list --id-only | xargs -r pyro workspace stop
`,
			run: wsList},
		{name: "status", args: "ID [flags]", group: "Lifecycle", ops: []contract.Op{contract.OpStatus, contract.OpShellList},
			summary: "show one workspace: state, resources, seed, expiry, network, services, shells",
			help: `Shows one workspace: its state, environment, resources, labels, seed,
expiry, snapshots, network grants and published ports, secrets (names
only), running background commands, services and shells.

Examples:
  pyro workspace status fix-123
  pyro workspace status fix-123 --json | jq .State
`,
			run: wsStatus},
		{name: "update", args: "ID [flags]", group: "Lifecycle", ops: []contract.Op{contract.OpUpdate},
			summary: "rename a workspace or edit its labels",
			help: `Renames a workspace or edits its labels; the VM is not touched.

Examples:
  pyro workspace update ws-3f2a --name fix-123
  pyro workspace update fix-123 --label owner=me --remove-label draft
  pyro workspace update fix-123 --clear-name
`,
			run: wsUpdate},
		{name: "stop", args: "ID... [flags]", group: "Lifecycle", ops: []contract.Op{contract.OpStop},
			summary: "shut workspaces down, keeping their disks and snapshots",
			help: `Shuts each workspace's VM down; its disk, baseline and snapshots are kept
and start boots it again. Running processes, services and shells end.

Examples:
  pyro workspace stop fix-123
  pyro workspace list --state running --id-only | xargs -r pyro workspace stop
`,
			run: func(c *wsCall) int { return wsStopStart(c, false) }},
		{name: "start", args: "ID... [flags]", group: "Lifecycle", ops: []contract.Op{contract.OpStart},
			summary: "boot stopped workspaces again from their disks",
			help: `Boots each stopped workspace again from its disk (files kept, processes
not). Starting a running workspace changes nothing.

Examples:
  pyro workspace start fix-123
`,
			run: func(c *wsCall) int { return wsStopStart(c, true) }},
		{name: "delete", args: "ID... [flags]", group: "Lifecycle", ops: []contract.Op{contract.OpDelete},
			summary: "destroy workspaces with their disks, snapshots and journals",
			help: `Destroys each workspace: its VM, disk, snapshots and journal. Files it
exported to the host stay. Export what you need first.

Examples:
  pyro workspace delete fix-123
  pyro workspace list --label task=fix-123 --id-only | xargs -r pyro workspace delete
`,
			run: wsDelete},
		{name: "summary", args: "ID [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpSummary},
			summary: "what happened since the last reset: commands, changed files, snapshots, exports",
			help: `Summarizes the workspace since its last reset (or its creation): every
command with its exit code, the files changed against the baseline with
their line counts, snapshots, exports and services.

Examples:
  pyro workspace summary fix-123
`,
			run: wsSummary},
		{name: "logs", args: "ID [flags]", group: "Review and cross the host boundary", ops: []contract.Op{contract.OpLogs},
			summary: "the workspace journal: every exec, write, snapshot, reset and export",
			help: `Prints the workspace journal: one line per exec, file write, patch,
snapshot, reset, export, sync and lifecycle event, with its sequence
number, exit code and duration.

Examples:
  pyro workspace logs fix-123
  pyro workspace logs fix-123 --after 40 --limit 10
`,
			run: wsLogs},
		{name: "env list", args: "[flags]", group: "Environments", ops: []contract.Op{contract.OpEnvList},
			summary: "the environments workspaces can boot, and whether each is built",
			help: `Lists the environments the backend can boot (--env of create), whether
each is built on this host, and the command that builds one that is not.

Examples:
  pyro workspace env list
`,
			run: wsEnvList},
	}
}

// secondsValue is a flag that takes seconds ("90") or a duration ("90s",
// "10m", "2h").
type secondsValue struct{ n *int }

func (v secondsValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return (time.Duration(*v.n) * time.Second).String()
}

func (v secondsValue) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return fmt.Errorf("must not be negative")
		}
		*v.n = n
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want seconds or a duration such as 90s, 10m, 2h")
	}
	if d%time.Second != 0 {
		return fmt.Errorf("want whole seconds")
	}
	*v.n = int(d / time.Second)
	return nil
}

func (v secondsValue) Type() string { return "duration" }

// mibValue is a flag that takes MiB ("4096") or a size ("4G", "512M").
type mibValue struct{ n *int }

func (v mibValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return strconv.Itoa(*v.n)
}

func (v mibValue) Set(s string) error {
	mul := 1
	switch {
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "GiB"):
		mul, s = 1024, strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "G")
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "MiB"):
		s = strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "M")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want MiB, or a size such as 512M or 4G")
	}
	*v.n = n * mul
	return nil
}

func (v mibValue) Type() string { return "MiB" }

func wsCreate(c *wsCall) int {
	envName := c.fs.String("env", "", "environment to boot (default: the host's default; pyro workspace env list)")
	name := c.fs.String("name", "", "unique name, usable wherever an id is")
	labels := c.fs.StringArray("label", nil, "label `KEY=VALUE` (repeatable)")
	seed := c.fs.String("seed", "", "host directory or .tar/.tar.gz/.tgz archive to copy into /workspace (the baseline)")
	seedKind := c.fs.String("seed-kind", "", "dir, archive or git (the tracked and non-ignored files of the checkout holding --seed, default .)")
	network := c.fs.StringArray("network", nil, "network `GRANT` such as pypi.org:443 (repeatable; default: no network)")
	secretFiles := c.fs.StringArray("secret-file", nil, "secret `NAME=PATH` read from a host file (repeatable; kept off the disk, redacted from output)")
	var ttl, vcpus, mem, disk int
	c.fs.Var(secondsValue{&ttl}, "ttl", "stop it after this long idle (default 10m)")
	c.fs.IntVar(&vcpus, "vcpus", 0, "virtual CPUs (default: the host's default)")
	c.fs.Var(mibValue{&mem}, "mem-mib", "memory in MiB, or a size such as 4G (default: the host's default)")
	c.fs.Var(mibValue{&disk}, "disk-mib", "disk size in MiB, or a size such as 20G (default 8192, sparse)")
	idOnly := c.fs.Bool("id-only", false, "print only the new workspace's id")
	if code := c.parse(); code >= 0 {
		return code
	}
	if _, ok := c.positional(0, 0); !ok {
		return exitUsage
	}
	if *idOnly && c.asJSON {
		return c.usageError("--id-only and --json exclude each other")
	}
	req := contract.CreateRequest{Env: *envName, Name: *name, VCPUs: vcpus, MemMiB: mem, DiskMiB: disk, TTLSeconds: ttl}
	var err error
	if req.Labels, err = keyValues("label", *labels); err != nil {
		return c.usageError("%v", err)
	}
	if req.Name != "" {
		if err := contract.ValidateName("--name", req.Name); err != nil {
			return c.badArg(err)
		}
	}
	if err := contract.ValidateLabels(req.Labels); err != nil {
		return c.badArg(err)
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = contract.DefaultTTL
	}
	if req.TTLSeconds < contract.MinTTLSeconds || req.TTLSeconds > contract.MaxTTLSeconds {
		return c.usageError("--ttl must be between %v and %v", time.Duration(contract.MinTTLSeconds)*time.Second, time.Duration(contract.MaxTTLSeconds)*time.Second)
	}
	if err := contract.ValidateResources(vcpus, mem); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidateDisk(disk); err != nil {
		return c.badArg(err)
	}
	in := &contract.SeedInput{Kind: *seedKind, Path: hostPath(*seed)}
	if in.Kind == string(contract.SeedGit) && in.Path == "" {
		in.Path = hostPath(".")
	}
	if req.Seed, err = contract.ParseSeed(in); err != nil {
		return c.badArg(err)
	}
	if len(*network) > 0 {
		grants, err := canonicalGrants(*network)
		if err != nil {
			return c.badArg(err)
		}
		req.Network = grants
	}
	if len(*secretFiles) > 0 {
		files, err := keyValues("secret-file", *secretFiles)
		if err != nil {
			return c.usageError("%v", err)
		}
		req.Secrets = map[string]contract.SecretSource{}
		for n, p := range files {
			src := contract.SecretSource{File: hostPath(p)}
			if err := contract.ValidateSecretName(n); err != nil {
				return c.badArg(err)
			}
			if err := contract.ValidateSecretSource(n, src); err != nil {
				return c.badArg(err)
			}
			req.Secrets[n] = src
		}
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	if len(req.Network) > 0 {
		if _, ok := b.(contract.NetworkBackend); !ok {
			return c.fail(contract.Invalid("this backend has no workspace network: create it without --network"))
		}
	}
	if len(req.Secrets) > 0 {
		if _, ok := b.(contract.SecretBackend); !ok {
			return c.fail(contract.Invalid("this backend keeps no secrets: create it without --secret-file"))
		}
	}
	w, err := b.Create(c.ctx, req)
	if err != nil {
		return c.fail(err)
	}
	switch {
	case *idOnly:
		fmt.Fprintln(c.stdout, w.ID)
		return exitOK
	case c.asJSON:
		return c.printJSON(w)
	}
	fmt.Fprintf(c.stdout, "created %s\n", workspaceTitle(w))
	printWorkspace(c, w, false)
	fmt.Fprintf(c.stdout, "\nNext: pyro workspace exec %s -- COMMAND   (or shell, file, diff, delete: pyro workspace --help)\n", refOf(w))
	return exitOK
}

// canonicalGrants checks grants and returns their canonical spellings.
func canonicalGrants(specs []string) ([]string, error) {
	gs, err := contract.ParseGrants(specs)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.String()
	}
	return out, nil
}

// refOf is how a person names w: its name when it has one.
func refOf(w contract.Workspace) string {
	if w.Name != "" {
		return clean(w.Name)
	}
	return w.ID
}

// workspaceTitle is "ID (NAME)" or "ID".
func workspaceTitle(w contract.Workspace) string {
	if w.Name != "" {
		return fmt.Sprintf("%s (%s)", w.ID, clean(w.Name))
	}
	return w.ID
}

func wsList(c *wsCall) int {
	labels := c.fs.StringArray("label", nil, "only workspaces with label `KEY=VALUE` (repeatable: all of them)")
	state := c.fs.String("state", "", "only workspaces in this state: creating, running, stopped, expired, failed")
	idOnly := c.fs.Bool("id-only", false, "print only the ids, one a line")
	if code := c.parse(); code >= 0 {
		return code
	}
	if _, ok := c.positional(0, 0); !ok {
		return exitUsage
	}
	if *idOnly && c.asJSON {
		return c.usageError("--id-only and --json exclude each other")
	}
	want, err := keyValues("label", *labels)
	if err != nil {
		return c.usageError("%v", err)
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	all, err := b.List(c.ctx)
	if err != nil {
		return c.fail(err)
	}
	list := []contract.Workspace{}
	for _, w := range all {
		if hasLabels(w.Labels, want) && (*state == "" || string(w.State) == *state) {
			list = append(list, w)
		}
	}
	switch {
	case *idOnly:
		for _, w := range list {
			fmt.Fprintln(c.stdout, w.ID)
		}
		return exitOK
	case c.asJSON:
		return c.printJSON(list)
	}
	if len(list) == 0 {
		if len(all) == 0 {
			fmt.Fprintln(c.stdout, "No workspaces. pyro workspace create makes one.")
		} else {
			fmt.Fprintf(c.stdout, "No workspace matches (%d in all).\n", len(all))
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tENV\tACTIVE\tEXPIRES\tLABELS")
	for _, w := range list {
		expires := until(w.ExpiresAt)
		if w.State != contract.StateRunning {
			expires = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, orDash(clean(w.Name)), w.State, orDash(clean(w.Env)),
			ago(w.LastActiveAt), expires, orDash(labelString(w.Labels)))
	}
	tw.Flush()
	return exitOK
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func wsStatus(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var w contract.Workspace
	err := c.onWorkspace(a[0], func(id string) (err error) {
		w, err = b.Status(c.ctx, id)
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(w)
	}
	fmt.Fprintf(c.stdout, "%s  %s\n", workspaceTitle(w), w.State)
	printWorkspace(c, w, true)
	switch w.State {
	case contract.StateStopped, contract.StateExpired:
		fmt.Fprintf(c.stdout, "\nNot running: pyro workspace start %s boots it.\n", refOf(w))
	case contract.StateFailed:
		fmt.Fprintf(c.stdout, "\nFailed: pyro workspace reset %s rebuilds it, or delete it.\n", refOf(w))
	}
	return exitOK
}

// printWorkspace prints w's details as key/value lines; full adds the
// journal, background commands and shells.
func printWorkspace(c *wsCall, w contract.Workspace, full bool) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("env", "%s", orDash(clean(w.Env)))
	res := fmt.Sprintf("%d vCPUs, %d MiB memory", w.VCPUs, w.MemMiB)
	if w.DiskMiB > 0 {
		res += fmt.Sprintf(", %d MiB disk", w.DiskMiB)
	}
	row("resources", "%s", res)
	if len(w.Labels) > 0 {
		row("labels", "%s", labelString(w.Labels))
	}
	if !w.CreatedAt.IsZero() {
		row("created", "%s (%s)", w.CreatedAt.Local().Format("2006-01-02 15:04:05"), ago(w.CreatedAt))
	}
	if full {
		exp := "never expires"
		if !w.ExpiresAt.IsZero() && w.State == contract.StateRunning {
			exp = "stops " + until(w.ExpiresAt) + " if idle"
		}
		row("active", "%s; %s (idle TTL %s)", ago(w.LastActiveAt), exp, time.Duration(w.TTLSeconds)*time.Second)
	}
	seed := string(w.Seed.Kind)
	if w.Seed.Kind != "" && w.Seed.Kind != contract.SeedNone {
		seed += fmt.Sprintf(" %s: %d files, %s", clean(w.Seed.Source), w.Seed.Files, humanBytes(w.Seed.Bytes))
		if n := len(w.Seed.Skipped); n > 0 {
			seed += fmt.Sprintf(" (%d skipped: ", n)
			for i, s := range w.Seed.Skipped {
				if i == 3 {
					seed += ", ..."
					break
				}
				if i > 0 {
					seed += ", "
				}
				seed += clean(s.Path) + " " + clean(s.Reason)
			}
			seed += ")"
		}
	}
	row("seed", "%s", orDash(seed))
	if full {
		row("snapshots", "%d", w.Snapshots)
		row("journal", "last seq %d (pyro workspace logs %s)", w.LastSeq, refOf(w))
	}
	if n := w.Network; n != nil {
		var grants []string
		for _, g := range n.Grants {
			grants = append(grants, clean(g.Grant))
		}
		row("network", "%s", orDash(strings.Join(grants, ", ")))
		for _, p := range n.Published {
			row("published", "%s", publishedLine(p))
		}
		if n.DeniedTotal > 0 {
			row("refused", "%d attempts (pyro workspace network status %s)", n.DeniedTotal, refOf(w))
		}
	} else if full {
		row("network", "none")
	}
	if len(w.Secrets) > 0 {
		var s []string
		for _, x := range w.Secrets {
			s = append(s, clean(x.Name)+" ("+x.Source+")")
		}
		row("secrets", "%s", strings.Join(s, ", "))
	}
	if full {
		for _, bg := range w.Background {
			row("background", "seq %d %s %s: %s", bg.Seq, bg.State, fmtDuration(bg.Result.Duration), clean(clip(bg.Command, 80)))
		}
	}
	for _, s := range w.Services {
		row("service", "%s", serviceLine(s))
	}
	if full {
		for _, s := range w.Shells {
			state := fmt.Sprintf("pid %d, %dx%d", s.PID, s.Cols, s.Rows)
			if s.Exited {
				state = fmt.Sprintf("exited %d", s.ExitCode)
			}
			row("shell", "%d: %s (%s)", s.Shell, clean(clip(strings.Join(s.Argv, " "), 60)), state)
		}
	}
	if w.Error != "" {
		row("error", "%s", clean(cliWord(w.Error)))
	}
	if !w.DiskDeletedAt.IsZero() {
		row("disk", "deleted %s", ago(w.DiskDeletedAt))
	} else if !w.DiskDeleteAt.IsZero() {
		row("disk", "deleted %s unless started", until(w.DiskDeleteAt))
	}
	tw.Flush()
}

// clip cuts s to n runes with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func wsUpdate(c *wsCall) int {
	name := c.fs.String("name", "", "new name")
	clearName := c.fs.Bool("clear-name", false, "remove the workspace's name")
	labels := c.fs.StringArray("label", nil, "set label `KEY=VALUE` (repeatable)")
	remove := c.fs.StringArray("remove-label", nil, "remove label `KEY` (repeatable)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	var req contract.UpdateRequest
	switch {
	case *clearName && c.fs.Changed("name"):
		return c.usageError("--name and --clear-name exclude each other")
	case *clearName:
		empty := ""
		req.Name = &empty
	case c.fs.Changed("name"):
		if err := contract.ValidateName("--name", *name); err != nil {
			return c.badArg(err)
		}
		req.Name = name
	}
	var err error
	if req.Labels, err = keyValues("label", *labels); err != nil {
		return c.usageError("%v", err)
	}
	if err := contract.ValidateLabels(req.Labels); err != nil {
		return c.badArg(err)
	}
	for _, k := range *remove {
		if err := contract.ValidateLabelKey(k); err != nil {
			return c.badArg(err)
		}
	}
	req.RemoveLabels = *remove
	if req.Name == nil && len(req.Labels) == 0 && len(req.RemoveLabels) == 0 {
		return c.usageError("nothing to update: give --name, --clear-name, --label or --remove-label")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var w contract.Workspace
	err = c.onWorkspace(a[0], func(id string) (err error) {
		w, err = b.Update(c.ctx, id, req)
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(w)
	}
	fmt.Fprintf(c.stdout, "updated %s: labels %s\n", workspaceTitle(w), orDash(labelString(w.Labels)))
	return exitOK
}

// wsStopStart stops (or starts) each workspace named; it goes on past a
// failure and exits 1 if any failed.
func wsStopStart(c *wsCall, start bool) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	refs, ok := c.positional(1, -1)
	if !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	code := exitOK
	for _, ref := range refs {
		var w contract.Workspace
		err := c.onWorkspace(ref, func(id string) (err error) {
			if start {
				w, err = b.Start(c.ctx, id)
			} else {
				w, err = b.Stop(c.ctx, id)
			}
			return err
		})
		if err != nil {
			code = c.fail(err)
			if c.ctx.Err() != nil {
				return code
			}
			continue
		}
		if c.asJSON {
			c.printJSON(w)
			continue
		}
		fmt.Fprintf(c.stdout, "%s %s\n", workspaceTitle(w), w.State)
	}
	return code
}

// deletedJSON is delete's --json answer (the contract's Delete returns
// nothing but its error).
type deletedJSON struct {
	Deleted string // the workspace's id
}

func wsDelete(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	refs, ok := c.positional(1, -1)
	if !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	code := exitOK
	for _, ref := range refs {
		var deleted string
		err := c.onWorkspace(ref, func(id string) error {
			deleted = id
			return b.Delete(c.ctx, id)
		})
		if err != nil {
			code = c.fail(err)
			if c.ctx.Err() != nil {
				return code
			}
			continue
		}
		if c.asJSON {
			c.printJSON(deletedJSON{Deleted: deleted})
			continue
		}
		fmt.Fprintf(c.stdout, "deleted %s\n", deleted)
	}
	return code
}

func wsSummary(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	var s contract.Summary
	err := c.onWorkspace(a[0], func(id string) (err error) {
		s, err = b.Summary(c.ctx, id)
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(s)
	}
	w := s.Workspace
	since := "created"
	if !s.Since.Equal(w.CreatedAt) {
		since = "reset to the baseline"
		if s.ResetFrom != "" {
			since = "reset to snapshot " + clean(s.ResetFrom)
		}
	}
	fmt.Fprintf(c.stdout, "%s  %s, %s %s\n", workspaceTitle(w), w.State, since, ago(s.Since))
	failed := 0
	for _, e := range s.Commands {
		if e.ExitCode != nil && *e.ExitCode != 0 {
			failed++
		}
	}
	fmt.Fprintf(c.stdout, "\nCommands: %d", len(s.Commands))
	if failed > 0 {
		fmt.Fprintf(c.stdout, " (%d failed)", failed)
	}
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if len(s.Commands) > 0 {
		fmt.Fprintln(tw, "  SEQ\tEXIT\tTIME\tCOMMAND")
	}
	for _, e := range s.Commands {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", e.Seq, exitString(e.ExitCode), fmtDuration(e.Duration), clean(clip(e.Command, 100)))
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\nChanges: %d files, +%d -%d\n", s.Stats.Files, s.Stats.Additions, s.Stats.Deletions)
	printChanges(c, s.Changes)
	if len(s.Snapshots) > 0 {
		fmt.Fprintf(c.stdout, "\nSnapshots: %d\n", len(s.Snapshots))
		printSnapshots(c, s.Snapshots)
	}
	if len(s.Exports) > 0 {
		fmt.Fprintf(c.stdout, "\nExports: %d\n", len(s.Exports))
		for _, e := range s.Exports {
			fmt.Fprintf(c.stdout, "  %s (%s, %d files, %s)\n", clean(e.HostPath), e.Format, e.Files, humanBytes(e.Bytes))
		}
	}
	if len(w.Services) > 0 {
		fmt.Fprintf(c.stdout, "\nServices: %d\n", len(w.Services))
		for _, sv := range w.Services {
			fmt.Fprintf(c.stdout, "  %s\n", serviceLine(sv))
		}
	}
	return exitOK
}

// exitString is an exit code for a table: "-" when there is none.
func exitString(code *int) string {
	if code == nil {
		return "-"
	}
	return strconv.Itoa(*code)
}

func wsLogs(c *wsCall) int {
	after := c.fs.Int64("after", 0, "only entries after this sequence number")
	limit := c.fs.Int("limit", 0, "at most this many entries (default: all)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	if *after < 0 || *limit < 0 {
		return c.usageError("--after and --limit must not be negative")
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	page := contract.LogPage{Entries: []contract.LogEntry{}}
	err := c.onWorkspace(a[0], func(id string) error {
		cur := *after
		for {
			n := contract.MaxLogsLimit
			if *limit > 0 {
				n = min(n, *limit-len(page.Entries))
			}
			p, err := b.Logs(c.ctx, contract.LogsRequest{ID: id, AfterSeq: cur, Limit: n})
			if err != nil {
				return err
			}
			page.Entries = append(page.Entries, p.Entries...)
			page.More = p.More
			if !p.More || len(p.Entries) == 0 || (*limit > 0 && len(page.Entries) >= *limit) {
				return nil
			}
			cur = p.Entries[len(p.Entries)-1].Seq
		}
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(page)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tEXIT\tDURATION\tWHAT")
	for _, e := range page.Entries {
		what := clean(clip(e.Command, 100))
		if e.Detail != "" {
			what += " (" + clean(clip(e.Detail, 80)) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format("15:04:05"), e.Kind, exitString(e.ExitCode), fmtDuration(e.Duration), what)
	}
	tw.Flush()
	if page.More {
		last := page.Entries[len(page.Entries)-1].Seq
		fmt.Fprintf(c.stdout, "More: pyro workspace logs %s --after %d\n", a[0], last)
	}
	return exitOK
}

func wsEnvList(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	if _, ok := c.positional(0, 0); !ok {
		return exitUsage
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	envs, err := b.Envs(c.ctx)
	if err != nil {
		return c.fail(err)
	}
	if envs == nil {
		envs = []contract.Environment{}
	}
	if c.asJSON {
		return c.printJSON(envs)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tBUILT\tDESCRIPTION")
	for _, e := range envs {
		built := "yes"
		if !e.Built {
			built = "no: " + e.BuildCommand
		}
		name := e.Name
		if e.Default {
			name += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, built, clean(e.Description))
	}
	tw.Flush()
	return exitOK
}
