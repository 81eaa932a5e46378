package main

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// untrustedDiskMiB is the untrusted workspace's disk: a little over the
// debian-12 image, so that filling it is quick and costs the host little
// (the bulk is fallocated: the guest's ext4 marks the blocks used without
// writing them).
const untrustedDiskMiB = 1024

// untrusted runs code nobody has read: it tries to write outside
// /workspace and onto a host path, to read host files and the server's
// environment, then a fork bomb and a full disk. The host stays
// untouched, no host secret reaches any result, the workspace keeps
// answering, and a reset brings it back clean.
func untrusted(ctx context.Context, r *run) error {
	seed := r.path("allowed", "seed", "probe")
	if err := writeTree(seed, untrustedProject()); err != nil {
		return err
	}
	// host/ is outside every path the server may read: the guest must
	// never see canary.txt, nor change host-only.txt.
	hostDir := r.path("host")
	hostOnly := r.path("host", "host-only.txt")
	if err := writeTree(hostDir, map[string]string{"canary.txt": r.secret + "\n", "host-only.txt": "the host's own\n"}); err != nil {
		return err
	}
	before, err := os.Stat(hostOnly)
	if err != nil {
		return err
	}
	_, etcErr := os.Lstat("/etc/pyro-smoke-escape")
	etcExisted := etcErr == nil

	w, err := r.create(ctx, createArgs{Seed: &seedArg{Kind: "dir", Path: seed}, DiskMiB: untrustedDiskMiB})
	if err != nil {
		return err
	}

	// Escapes: the writes land in the guest's own file system only.
	res, err := r.execOK(ctx, w.ID, "sh probe.sh "+shellQuote(hostDir), 120, nil)
	if err != nil {
		return err
	}
	r.note("the probe said: %s", tail(output(res), 400))
	if !strings.Contains(res.Stdout, "wrote /etc/pyro-smoke-escape") {
		return fmt.Errorf("the probe did not run as written: %s", tail(res.Stdout, 300))
	}
	after, err := os.Stat(hostOnly)
	if err != nil {
		return fmt.Errorf("the host file is gone: %w", err)
	}
	if content, _ := os.ReadFile(hostOnly); string(content) != "the host's own\n" || !after.ModTime().Equal(before.ModTime()) {
		return fmt.Errorf("the guest changed the host file %s: %q", hostOnly, content)
	}
	if _, err := os.Lstat("/etc/pyro-smoke-escape"); err == nil && !etcExisted {
		return fmt.Errorf("the guest's write to /etc reached the host's /etc")
	}

	// A fork bomb. Its shell returns at once, leaving the bomb forking in
	// the workspace until the guest agent's process limit stops it and the
	// next command kills what is left; timeout kills its process group
	// after 15 s should nothing else. The harness runs guests 20-25x
	// slower, so the limit comes down to 64 first and the bomb meets it at
	// once (the limit and its enforcement are the agent's; only the
	// number is ours).
	if _, err := r.execOK(ctx, w.ID, "echo 64 > /sys/fs/cgroup/pyro-user/pids.max", 60, nil); err != nil {
		return fmt.Errorf("lowering the process limit: %w", err)
	}
	bomb, err := r.exec(ctx, w.ID, `timeout -s KILL 15 sh -c 'f(){ f|f& }; f; wait'`, 120, nil)
	if err != nil {
		return fmt.Errorf("the fork bomb: %w", err)
	}
	notes := []string{bomb.Limited}
	// The next commands answer; one of them (or the bomb's own) says the
	// process limit refused forks, and the next one after that reports
	// nothing left of it.
	clean := false
	for i := 0; i < 20 && !clean; i++ {
		res, err := r.execOK(ctx, w.ID, "echo alive", 60, nil)
		if err != nil {
			return fmt.Errorf("after the fork bomb: %w", err)
		}
		if res.Stdout != "alive\n" {
			return fmt.Errorf("after the fork bomb: stdout %q", res.Stdout)
		}
		notes = append(notes, res.Limited)
		clean = res.Limited == "" && strings.Contains(strings.Join(notes, "\n"), "process limit")
	}
	r.note("after the fork bomb, limited: %q", notes)
	if !strings.Contains(strings.Join(notes, "\n"), "process limit") {
		return fmt.Errorf("no exec said the fork bomb hit the process limit: %q", notes)
	}
	if !clean {
		return fmt.Errorf("the fork bomb is still around after 20 commands: %q", notes)
	}

	// A full disk: fallocate the bulk, write the rest.
	fill := `avail=$(df -k --output=avail / | tail -n 1); fallocate -l $(( (avail - 2048) * 1024 )) /workspace/fill.bin; ` +
		`cat /dev/zero > /workspace/fill.tail; sync`
	res, err = r.exec(ctx, w.ID, fill, 300, nil)
	if err != nil {
		return fmt.Errorf("filling the disk: %w", err)
	}
	r.note("filling the disk: exit %d, limited %q", res.ExitCode, res.Limited)
	if !strings.Contains(res.Limited, "no disk space") {
		return fmt.Errorf("filling the disk: exit %d, limited %q, want a full disk reported; stderr %s", res.ExitCode, res.Limited, tail(res.Stderr, 200))
	}
	res, err = r.execOK(ctx, w.ID, "echo alive", 60, nil)
	if err != nil {
		return fmt.Errorf("with the disk full: %w", err)
	}
	if res.Stdout != "alive\n" || !strings.Contains(res.Limited, "no disk space") {
		return fmt.Errorf("with the disk full: stdout %q, limited %q", res.Stdout, res.Limited)
	}
	l, err := call[fileListResult](ctx, r.s, "file_list", pathArgs{ID: w.ID, Path: "/workspace"})
	if err != nil {
		return fmt.Errorf("with the disk full: %w", err)
	}
	if !hasEntry(l, "fill.bin") {
		return fmt.Errorf("with the disk full: file_list lacks fill.bin: %+v", l.Entries)
	}

	// Reset: back to the seed, inside /workspace and out.
	rr, err := call[resetResult](ctx, r.s, "workspace_reset", resetArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if rr.ResetTo != "baseline" || rr.Workspace.State != "running" {
		return fmt.Errorf("workspace_reset: reset_to %q, state %q", rr.ResetTo, rr.Workspace.State)
	}
	d, err := call[diffResult](ctx, r.s, "workspace_diff", pathArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if err := wantOnlyChanges(d); err != nil {
		return fmt.Errorf("after the reset: %w", err)
	}
	if _, err := call[fileReadResult](ctx, r.s, "file_read", pathArgs{ID: w.ID, Path: "/workspace/fill.bin"}); errorCode(err) != "not_found" {
		return fmt.Errorf("after the reset, file_read fill.bin: %v, want not_found", err)
	}
	gone := fmt.Sprintf("test ! -e /etc/pyro-smoke-escape && test ! -e %s && test ! -e /workspace/fill.tail && "+
		"test \"$(cat /sys/fs/cgroup/pyro-user/pids.max)\" != 64", shellQuote(hostOnly))
	if _, err := r.execOK(ctx, w.ID, gone, 60, nil); err != nil {
		return fmt.Errorf("after the reset, the probe's files or limit remain: %w", err)
	}
	if r.s.sawText(r.secret) {
		return fmt.Errorf("a host secret reached a tool result")
	}
	return nil
}

func hasEntry(l fileListResult, name string) bool {
	for _, e := range l.Entries {
		if e.Path == name || strings.HasSuffix(e.Path, "/"+name) {
			return true
		}
	}
	return false
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
