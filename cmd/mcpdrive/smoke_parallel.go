package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// parallelNames are the three workspaces of the parallel scenario.
var parallelNames = []string{"alpha", "beta", "gamma"}

// parallel runs three workspaces from one seed at once, each making its
// own change: each diff holds its own change and nothing of the others'.
func parallel(ctx context.Context, r *run) error {
	seed := r.path("allowed", "seed", "greet")
	if err := writeTree(seed, greetingProject()); err != nil {
		return err
	}
	// Every step runs for the three at once, through the one session, as
	// a host's parallel tool calls do.
	ids := make([]string, len(parallelNames))
	err := forEach(parallelNames, func(i int, name string) error {
		w, err := r.create(ctx, createArgs{Name: "smoke-" + name, Seed: &seedArg{Kind: "dir", Path: seed},
			Labels: map[string]string{"smoke": r.name, "who": name}})
		ids[i] = w.ID
		return err
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return fmt.Errorf("two workspaces share the id %s", id)
		}
		seen[id] = true
	}
	err = forEach(parallelNames, func(i int, name string) error {
		if _, err := r.execOK(ctx, ids[i], fmt.Sprintf(`sed -i 's/"hello"/"hello from %s"/' app.py`, name), 60, nil); err != nil {
			return err
		}
		fw, err := call[fileWriteResult](ctx, r.s, "file_write", fileWriteArgs{ID: ids[i], Path: "notes/" + name + ".txt", Content: "changed by " + name + "\n"})
		if err != nil {
			return err
		}
		if !fw.Created {
			return fmt.Errorf("file_write notes/%s.txt: %+v, want a new file", name, fw)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return forEach(parallelNames, func(i int, name string) error {
		d, err := call[diffResult](ctx, r.s, "workspace_diff", pathArgs{ID: ids[i]})
		if err != nil {
			return err
		}
		if err := wantOnlyChanges(d,
			change{Path: "app.py", Status: "modified", Additions: 1, Deletions: 1},
			change{Path: "notes/" + name + ".txt", Status: "added", Additions: 1}); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !hasLine(d.Patch, `+GREETING = "hello from `+name+`"`) {
			return fmt.Errorf("%s: its diff lacks its own change: %.300q", name, d.Patch)
		}
		for _, other := range parallelNames {
			if other != name && strings.Contains(d.Patch, other) {
				return fmt.Errorf("%s: its diff shows %s's change: %.300q", name, other, d.Patch)
			}
		}
		return nil
	})
}

// forEach runs fn for every item at once. It returns the first item's
// error, naming the others that failed too.
func forEach(items []string, fn func(i int, item string) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i, it)
		}()
	}
	wg.Wait()
	var first error
	var others []string
	for i, err := range errs {
		switch {
		case err == nil:
		case first == nil:
			first = fmt.Errorf("%s: %w", items[i], err)
		default:
			others = append(others, items[i])
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%w (%s failed too)", first, strings.Join(others, ", "))
	}
	return first
}
