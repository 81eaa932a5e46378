package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
)

// pyro prepare minimal as a user runs it: every step passes, the throwaway
// workspace really ran a command, and the state directory is left as it
// was found.
func TestPrepareVM(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	src := kvmtest.Path(t, "PYRO_TEST_ENV_MINIMAL")
	agent := kvmtest.Path(t, "PYRO_TEST_PYRO")
	// A copy of the environment: prepare's build step may put this
	// agent in its initramfs, and takes the cache's build lock.
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "envs", "minimal"), os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, "state")
	r := runPyroIn(t, []string{"PYRO_CACHE_DIR=" + root, "PYRO_AGENT_BINARY=" + agent, "PYRO_STATE_DIR=" + state},
		"", "prepare", "minimal", "--json")
	t.Logf("stderr:\n%s", r.stderr)
	var rep prepareReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("prepare --json: %v\n%s", err, r.stdout)
	}
	for _, s := range rep.Steps {
		t.Logf("%s", formatStep(s))
	}
	t.Logf("%s", rep.Summary)
	if r.code != exitOK || !rep.OK || rep.Env != "minimal" {
		t.Fatalf("exit %d, report %+v", r.code, rep)
	}
	var names []string
	for _, s := range rep.Steps {
		if !s.OK {
			t.Errorf("step %s failed: %s", s.Name, s.Detail)
		}
		names = append(names, s.Name)
	}
	if want := []string{"kvm", "environment", "create", "exec", "reset", "delete"}; !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	if exec := rep.Steps[3]; !strings.Contains(exec.Detail, "uname -sr: Linux ") {
		t.Errorf("exec: %+v", exec)
	}
	if rep.ReadySeconds <= 0 || rep.ReadySeconds > rep.Seconds {
		t.Errorf("ready after %vs of %vs", rep.ReadySeconds, rep.Seconds)
	}
	left, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("prepare left %s in the state directory", left[0].Name())
	}
}
