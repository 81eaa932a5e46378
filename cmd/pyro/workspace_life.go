package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Lifecycle: create, list, status, update, stop, start and delete.

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
	}
}

// Lifecycle: create, list, status, update, stop, start, delete, summary,
// logs; and env list.

// secondsValue is a flag that takes seconds ("90") or a duration ("90s",
// "10m", "2h").
// mibValue is a flag that takes MiB ("4096") or a size ("4G", "512M").
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
	w, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.Workspace, error) {
		return b.Status(c.ctx, id)
	})
	if code >= 0 {
		return code
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
	w, code := wsOn(c, a[0], func(b contract.Backend, id string) (contract.Workspace, error) {
		return b.Update(c.ctx, id, req)
	})
	if code >= 0 {
		return code
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

// exitString is an exit code for a table: "-" when there is none.
