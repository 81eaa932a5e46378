package main

import (
	"context"
	"fmt"
	"strings"
)

// coldStart validates a repository the agent has never seen: seed it,
// check that its dependency is missing, install the dependency from the
// seed (no network grant: pip reaches no index), run the tests, and read
// the workspace_summary a host would report from.
func coldStart(ctx context.Context, r *run) error {
	files, err := wordReportProject()
	if err != nil {
		return err
	}
	seed := r.path("allowed", "seed", "wordreport")
	if err := writeTree(seed, files); err != nil {
		return err
	}
	w, err := r.create(ctx, createArgs{Seed: &seedArg{Kind: "dir", Path: seed}})
	if err != nil {
		return err
	}
	if w.Seed == nil || w.Seed.Files != len(files) {
		return fmt.Errorf("seed report %+v, want %d files", w.Seed, len(files))
	}
	noPyc := map[string]string{"PYTHONDONTWRITEBYTECODE": "1"}

	// Before the install the import fails: the dependency really is one.
	res, err := r.exec(ctx, w.ID, "python3 -c 'import tinyfmt'", 120, noPyc)
	if err != nil {
		return err
	}
	if err := wantExit(res, 1, "import before install"); err != nil {
		return err
	}
	install := "python3 -m pip install --no-index --find-links vendor --target /opt/deps " +
		"--disable-pip-version-check --no-cache-dir -q -r requirements.txt"
	if _, err := r.execOK(ctx, w.ID, install, 600, noPyc); err != nil {
		return err
	}
	test := "PYTHONPATH=/opt/deps python3 -m unittest discover -s tests -v"
	res, err = r.execOK(ctx, w.ID, test, 300, noPyc)
	if err != nil {
		return err
	}
	// unittest reports on stderr: three tests ran, all passed.
	if !strings.Contains(res.Stderr, "Ran 3 tests") || !strings.HasSuffix(strings.TrimSpace(res.Stderr), "OK") {
		return fmt.Errorf("the tests did not all run and pass: %s", tail(res.Stderr, 300))
	}

	sum, err := call[summaryResult](ctx, r.s, "workspace_summary", idArgs{ID: w.ID})
	if err != nil {
		return err
	}
	if sum.Workspace.ID != w.ID {
		return fmt.Errorf("summary of workspace %q, want %q", sum.Workspace.ID, w.ID)
	}
	// The report lists the three commands in order with their exit codes,
	// and no change to the repository: the install went to /opt/deps and
	// no .pyc was written.
	want := []struct {
		cmd  string
		exit int
	}{{"import tinyfmt", 1}, {"pip install", 0}, {"unittest discover", 0}}
	if sum.CommandsTotal != len(want) || sum.CommandsFailed != 1 || len(sum.Commands) != len(want) {
		return fmt.Errorf("summary: %d commands (%d failed, %d listed), want %d (1 failed)",
			sum.CommandsTotal, sum.CommandsFailed, len(sum.Commands), len(want))
	}
	for i, c := range sum.Commands {
		if !strings.Contains(c.Command, want[i].cmd) || c.ExitCode == nil || *c.ExitCode != want[i].exit {
			return fmt.Errorf("summary command %d: %q exit %v, want %q exit %d", i, c.Command, deref(c.ExitCode), want[i].cmd, want[i].exit)
		}
	}
	if len(sum.Changes) != 0 || sum.Stats.Files != 0 {
		return fmt.Errorf("summary: validation changed the repository: %+v", sum.Changes)
	}
	return nil
}

// deref shows an optional exit code.
func deref(p *int) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}
