package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/control"
)

// checkControl reports the running pyro servers that pyro workspace can
// reach through their control sockets (none is not a failure: a chat host
// starts one), and removes the sockets of servers that are gone.
func checkControl(add func(check)) {
	dir := controlDir()
	scan, err := control.DiscoverAll(dir)
	if err != nil {
		add(check{Name: "control sockets", OK: true, Warn: true, Detail: err.Error(),
			Fix: "check the permissions of " + dir + " (it should be yours, mode 0700)"})
		return
	}
	if len(scan.Servers) == 0 {
		add(check{Name: "pyro servers", OK: true,
			Detail: "none running (a chat host starts pyro mcp serve; pyro workspace then works on the state directory itself)"})
	}
	for _, s := range scan.Servers {
		name := fmt.Sprintf("pyro server %d", s.PID)
		detail := fmt.Sprintf("pyro %s since %s, state %s, socket %s", s.Version, s.Started.Local().Format(time.DateTime), s.StateDir, s.Path)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		list, err := s.Client().List(ctx)
		cancel()
		if err != nil {
			add(check{Name: name, OK: true, Warn: true, Detail: detail + ": listing its workspaces failed: " + err.Error()})
			continue
		}
		running := 0
		for _, w := range list {
			if w.State == contract.StateRunning {
				running++
			}
		}
		add(check{Name: name, OK: true, Detail: fmt.Sprintf("%d workspaces (%d running); %s", len(list), running, detail)})
	}
	if len(scan.Removed) > 0 {
		add(check{Name: "control sockets", OK: true,
			Detail: fmt.Sprintf("removed %d stale socket(s) of servers that are gone: %s", len(scan.Removed), strings.Join(scan.Removed, ", "))})
	}
	for _, u := range scan.Unreachable {
		add(check{Name: "control sockets", OK: true, Warn: true, Detail: u + " (its process lives but did not answer)",
			Fix: "if that server is stuck, end its chat session"})
	}
}
