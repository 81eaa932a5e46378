package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Network and secrets: network grant/revoke/status, port
// publish/unpublish, secret set/delete.

func netCommands() []*wsCommand {
	return []*wsCommand{
		{name: "network grant", args: "ID GRANT... [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpNetworkGrant},
			summary: "let a workspace reach a destination (it reaches nothing until granted)",
			help: `Adds network grants: a workspace reaches nothing outside until a grant
allows a destination. Grants apply at once to a running workspace and
are kept across stop, start and reset.

` + contract.GrantForms + `

Examples:
  pyro workspace network grant fix-123 pypi.org:443 files.pythonhosted.org:443
  pyro workspace network grant fix-123 host.pyro.internal:5432
  pyro workspace network grant fix-123 '*.github.com:443'
`,
			run: func(c *wsCall) int { return wsNetworkChange(c, true) }},
		{name: "network revoke", args: "ID GRANT... [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpNetworkRevoke},
			summary: "remove grants, closing the connections only they allowed",
			help: `Removes grants the workspace has, and closes the live connections that
only they allowed.

Examples:
  pyro workspace network revoke fix-123 pypi.org:443
`,
			run: func(c *wsCall) int { return wsNetworkChange(c, false) }},
		{name: "network status", args: "ID [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpNetworkStatus},
			summary: "grants with their traffic, published ports, and what was refused",
			help: `Shows a workspace's grants with their connections and bytes, its
published ports, and the last attempts its network refused, each with
the grant that would allow it.

Examples:
  pyro workspace network status fix-123
`,
			run: wsNetworkStatus},
		{name: "port publish", args: "ID GUEST_PORT [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpPortPublish},
			summary: "reach a guest TCP port from this host's 127.0.0.1",
			help: `Makes a guest TCP port reachable on this host's loopback (127.0.0.1 and
::1), on --host-port or a free port pyro picks. The workspace must run.

Examples:
  pyro workspace port publish fix-123 8000
  pyro workspace port publish fix-123 5432 --host-port 15432
`,
			run: wsPortPublish},
		{name: "port unpublish", args: "ID GUEST_PORT [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpPortUnpublish},
			summary: "close a published port",
			help: `Closes a published port's host listeners and forgets it.

Examples:
  pyro workspace port unpublish fix-123 8000
`,
			run: wsPortUnpublish},
		{name: "secret set", args: "ID NAME (--value-stdin | --file PATH | --value VALUE) [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpSecretSet},
			summary: "give a workspace a secret, kept off its disk and redacted from output",
			help: `Adds or replaces a secret: kept on the host (0600) and in a tmpfs in the
guest (/run/pyro/secrets/NAME), never on the workspace's disk, so never
in a snapshot, diff or export; redacted from every output. Commands get
it with exec --secret-env VAR=NAME.

--value-stdin reads it from stdin (without a trailing newline), so it
stays out of your shell history and the process list.

Examples:
  pass show npm-token | pyro workspace secret set fix-123 npm --value-stdin
  pyro workspace secret set fix-123 db --file ~/.config/app/db-password
  pyro workspace exec fix-123 --secret-env NPM_TOKEN=npm -- npm publish
`,
			run: wsSecretSet},
		{name: "secret delete", args: "ID NAME [flags]", group: "Network and secrets", ops: []contract.Op{contract.OpSecretDelete},
			summary: "remove a secret from a workspace",
			help: `Removes a secret, on the host and in a running guest.

Examples:
  pyro workspace secret delete fix-123 npm
`,
			run: wsSecretDelete},
	}
}

// netBackend returns b's network, or fails.
func (c *wsCall) netBackend(b contract.Backend) (contract.NetworkBackend, bool) {
	nb, ok := b.(contract.NetworkBackend)
	if !ok {
		c.fail(contract.Invalid("this backend has no workspace network"))
	}
	return nb, ok
}

func wsNetworkChange(c *wsCall, grant bool) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, -1)
	if !ok {
		return exitUsage
	}
	grants, err := canonicalGrants(a[1:])
	if err != nil {
		return c.badArg(err)
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	nb, ok := c.netBackend(b)
	if !ok {
		return exitFailure
	}
	var (
		st contract.NetworkStatus
		rr contract.RevokeResult
		ws string
	)
	err = c.onWorkspace(a[0], func(id string) (err error) {
		ws = id
		if grant {
			st, err = nb.NetworkGrant(c.ctx, id, grants)
		} else {
			rr, err = nb.NetworkRevoke(c.ctx, id, grants)
			st = rr.Status
		}
		return err
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		if grant {
			return c.printJSON(st)
		}
		return c.printJSON(rr)
	}
	if grant {
		fmt.Fprintf(c.stdout, "granted %s to %s\n", strings.Join(grants, ", "), ws)
		if !st.Live {
			fmt.Fprintln(c.stdout, "(the workspace is not running: the grants apply when it starts)")
		}
	} else {
		fmt.Fprintf(c.stdout, "revoked %s from %s (%d connections closed)\n", strings.Join(rr.Revoked, ", "), ws, rr.ClosedConns)
	}
	printNetwork(c, st)
	return exitOK
}

func wsNetworkStatus(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(1, 1)
	if !ok {
		return exitUsage
	}
	st, code := wsOn(c, a[0], func(nb contract.NetworkBackend, id string) (contract.NetworkStatus, error) {
		return nb.NetworkStatus(c.ctx, id)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(st)
	}
	if !st.Live {
		fmt.Fprintln(c.stdout, "The workspace is not running: no traffic or refusals until it starts.")
	}
	printNetwork(c, st)
	return exitOK
}

// printNetwork prints grants, published ports and refusals.
func printNetwork(c *wsCall, st contract.NetworkStatus) {
	if len(st.Grants) == 0 {
		fmt.Fprintln(c.stdout, "No grants: the workspace reaches nothing outside.")
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GRANT\tKIND\tOPEN\tTOTAL\tOUT\tIN")
		for _, g := range st.Grants {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", clean(g.Grant), orDash(g.Kind), g.Connections, g.TotalConnections,
				humanBytes(int64(g.BytesOut)), humanBytes(int64(g.BytesIn)))
		}
		tw.Flush()
	}
	for _, p := range st.Published {
		fmt.Fprintf(c.stdout, "published: %s\n", publishedLine(p))
	}
	if len(st.Denials) > 0 {
		fmt.Fprintf(c.stdout, "\nRefused (%d since boot; the last %d):\n", st.DeniedTotal, len(st.Denials))
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tPROTO\tDESTINATION\tCOUNT\tREASON\tGRANT THAT ALLOWS IT")
		for _, d := range st.Denials {
			dest := d.Addr
			if d.Port != 0 {
				dest += ":" + strconv.Itoa(d.Port)
			}
			if d.Name != "" {
				dest = d.Name + " (" + orDash(dest) + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", d.Time.Local().Format("15:04:05"), d.Protocol, clean(dest), max(d.Count, 1), clean(d.Reason), orDash(clean(d.Fix)))
		}
		tw.Flush()
	}
	if st.LimitHits > 0 {
		fmt.Fprintf(c.stdout, "%d attempts hit a connection limit\n", st.LimitHits)
	}
}

// publishedLine is "guest 8000 -> 127.0.0.1:41234, [::1]:41234".
func publishedLine(p contract.PublishedPort) string {
	s := fmt.Sprintf("guest port %d -> ", p.GuestPort)
	if len(p.HostAddrs) > 0 {
		s += strings.Join(p.HostAddrs, ", ")
	} else {
		s += fmt.Sprintf("host port %d", p.HostPort)
	}
	if p.Error != "" {
		s += " (not listening: " + clean(p.Error) + ")"
	}
	return s
}

// portArg parses a port argument.
func portArg(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

func wsPortPublish(c *wsCall) int {
	hostPort := c.fs.Int("host-port", 0, "host port to listen on (default: a free one)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	guest, ok := portArg(a[1])
	if !ok {
		return c.usageError("GUEST_PORT %q must be a port, 1-65535", a[1])
	}
	if *hostPort < 0 || *hostPort > 65535 {
		return c.usageError("--host-port must be 1-65535, or 0 for a free one")
	}
	p, code := wsOn(c, a[0], func(nb contract.NetworkBackend, id string) (contract.PublishedPort, error) {
		return nb.PortPublish(c.ctx, contract.PublishRequest{ID: id, GuestPort: guest, HostPort: *hostPort})
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(p)
	}
	fmt.Fprintln(c.stdout, publishedLine(p))
	fmt.Fprintf(c.stdout, "e.g. http://127.0.0.1:%d/ if it speaks HTTP\n", p.HostPort)
	return exitOK
}

// unpublishedJSON is port unpublish's --json answer.
type unpublishedJSON struct {
	Workspace   string
	Unpublished int
}

func wsPortUnpublish(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	guest, ok := portArg(a[1])
	if !ok {
		return c.usageError("GUEST_PORT %q must be a port, 1-65535", a[1])
	}
	b, ok := c.open()
	if !ok {
		return exitFailure
	}
	nb, ok := c.netBackend(b)
	if !ok {
		return exitFailure
	}
	var ws string
	err := c.onWorkspace(a[0], func(id string) error {
		ws = id
		return nb.PortUnpublish(c.ctx, id, guest)
	})
	if err != nil {
		return c.fail(err)
	}
	if c.asJSON {
		return c.printJSON(unpublishedJSON{Workspace: ws, Unpublished: guest})
	}
	fmt.Fprintf(c.stdout, "unpublished guest port %d of %s\n", guest, ws)
	return exitOK
}

// secretBackend returns b's secrets, or fails.
func (c *wsCall) secretBackend(b contract.Backend) (contract.SecretBackend, bool) {
	sb, ok := b.(contract.SecretBackend)
	if !ok {
		c.fail(contract.Invalid("this backend keeps no secrets"))
	}
	return sb, ok
}

func wsSecretSet(c *wsCall) int {
	fromStdin := c.fs.Bool("value-stdin", false, "read the value from stdin (a trailing newline is dropped)")
	file := c.fs.String("file", "", "a host `PATH` holding the value, read by the server")
	value := c.fs.String("value", "", "the value itself (visible in the process list: prefer --value-stdin)")
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	n := 0
	for _, f := range []string{"value-stdin", "file", "value"} {
		if c.fs.Changed(f) {
			n++
		}
	}
	if n != 1 {
		return c.usageError("give the value one way: --value-stdin, --file PATH or --value VALUE")
	}
	src := contract.SecretSource{Value: *value, File: hostPath(*file)}
	if *fromStdin {
		v, err := readInput("--value-stdin", "-", contract.MaxSecretBytes+2)
		if err != nil {
			fmt.Fprintf(c.stderr, "pyro workspace secret set: %v\n", err)
			return exitUsage
		}
		v = bytes.TrimSuffix(bytes.TrimSuffix(v, []byte("\n")), []byte("\r"))
		src.Value = string(v)
		if src.Value == "" {
			return c.usageError("stdin held no value")
		}
	}
	if err := contract.ValidateSecretName(a[1]); err != nil {
		return c.badArg(err)
	}
	if err := contract.ValidateSecretSource(a[1], src); err != nil {
		return c.badArg(err)
	}
	w, code := wsOn(c, a[0], func(sb contract.SecretBackend, id string) (contract.Workspace, error) {
		return sb.SecretSet(c.ctx, id, a[1], src)
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(w)
	}
	fmt.Fprintf(c.stdout, "secret %s set in %s; use it with pyro workspace exec %s --secret-env VAR=%s -- COMMAND\n", a[1], w.ID, a[0], a[1])
	return exitOK
}

func wsSecretDelete(c *wsCall) int {
	if code := c.parse(); code >= 0 {
		return code
	}
	a, ok := c.positional(2, 2)
	if !ok {
		return exitUsage
	}
	if err := contract.ValidateSecretName(a[1]); err != nil {
		return c.badArg(err)
	}
	w, code := wsOn(c, a[0], func(sb contract.SecretBackend, id string) (contract.Workspace, error) {
		return sb.SecretDelete(c.ctx, id, a[1])
	})
	if code >= 0 {
		return code
	}
	if c.asJSON {
		return c.printJSON(w)
	}
	fmt.Fprintf(c.stdout, "secret %s deleted from %s\n", a[1], w.ID)
	return exitOK
}
