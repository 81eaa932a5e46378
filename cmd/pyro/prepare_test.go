package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/workspace"
)

func TestPrepareUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"prepare", "--help"}, exitOK, "create       boot a workspace from ENV"},
		{[]string{"prepare", "--help"}, exitOK, "Ctrl-C"},
		{[]string{"prepare", "nope"}, exitUsage, `unknown environment "nope"`},
		{[]string{"prepare", "minimal", "debian-12"}, exitUsage, "name one environment at most"},
		{[]string{"prepare", "--frob"}, exitUsage, "unknown flag: --frob"},
		{[]string{"--help"}, exitOK, "prepare"},
	} {
		r := runPyro(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("pyro %q: exit %d, out %q err %q; want %d and %q", c.args, r.code, r.stdout, r.stderr, c.code, c.want)
		}
	}
	if name, err := prepareArgs(nil); err != nil || name != workspace.DefaultEnv {
		t.Errorf("no argument: %q, %v; want the default environment", name, err)
	}
	if name, err := prepareArgs([]string{"minimal"}); err != nil || name != "minimal" {
		t.Errorf("minimal: %q, %v", name, err)
	}
}

// fakePrepare stands in for the host, the environment build and the
// workspace manager, recording what prepare asked of them.
type fakePrepare struct {
	hostOK            bool
	buildErr          error
	createErr         error
	execErr, resetErr error
	deleteErr         error
	exitCode          int
	blockExec         bool // exec waits for its context to end
	warm              bool // create resumes a warm snapshot, reset the baseline's image
	calls             []string
	deleteCtxErr      error // the delete context's error when delete ran
}

func (f *fakePrepare) deps() prepareDeps {
	return prepareDeps{
		host: func() (bool, check) {
			f.calls = append(f.calls, "host")
			if !f.hostOK {
				return false, check{Name: "virtualization", Detail: "PVM (kvm_pvm): no hardware virtualization", Fix: "use a host with VT-x"}
			}
			return true, check{Name: "virtualization", OK: true, Detail: "hardware (AMD-V)"}
		},
		build: func(ctx context.Context, name string, progress io.Writer) (string, error) {
			f.calls = append(f.calls, "build "+name)
			return "current, checksums verified", f.buildErr
		},
		open: func(string) (prepareBackend, func(), error) {
			f.calls = append(f.calls, "open")
			return f, func() { f.calls = append(f.calls, "close") }, nil
		},
	}
}

func (f *fakePrepare) Create(ctx context.Context, req contract.CreateRequest) (contract.Workspace, error) {
	f.calls = append(f.calls, "create "+req.Env+" "+req.Name)
	if f.createErr != nil {
		return contract.Workspace{}, f.createErr
	}
	ws := contract.Workspace{ID: "ws1", Env: req.Env, State: contract.StateRunning, VCPUs: 2, MemMiB: 512, Boot: contract.BootCold}
	if f.warm {
		ws.Boot = contract.BootWarm
	}
	return ws, nil
}

func (f *fakePrepare) Exec(ctx context.Context, req contract.ExecRequest) (contract.ExecResult, error) {
	f.calls = append(f.calls, "exec "+strings.Join(req.Argv, " "))
	if f.blockExec {
		<-ctx.Done()
		return contract.ExecResult{}, ctx.Err()
	}
	if f.execErr != nil {
		return contract.ExecResult{}, f.execErr
	}
	return contract.ExecResult{ExitCode: f.exitCode, Stdout: []byte("Linux 6.1.0-99-cloud-amd64\n")}, nil
}

func (f *fakePrepare) Reset(ctx context.Context, id, snapshot string) (contract.ResetResult, error) {
	f.calls = append(f.calls, "reset "+id)
	if f.resetErr != nil {
		return contract.ResetResult{}, f.resetErr
	}
	return contract.ResetResult{Workspace: contract.Workspace{ID: id, State: contract.StateRunning}, Memory: f.warm}, nil
}

func (f *fakePrepare) Delete(ctx context.Context, id string) error {
	f.calls = append(f.calls, "delete "+id)
	f.deleteCtxErr = ctx.Err()
	return f.deleteErr
}

func stepNames(r prepareReport) []string {
	var out []string
	for _, s := range r.Steps {
		mark := ""
		if !s.OK {
			mark = "!"
		}
		out = append(out, s.Name+mark)
	}
	return out
}

// Every step in order, each printed as it ends, and the throwaway
// workspace deleted before its manager closes.
func TestPrepareSteps(t *testing.T) {
	f := &fakePrepare{hostOK: true}
	var out strings.Builder
	r := prepare(context.Background(), "minimal", f.deps(), &out, io.Discard)
	if !r.OK || r.Error != "" || r.Fix != "" || r.Interrupted {
		t.Fatalf("report: %+v", r)
	}
	if got, want := stepNames(r), []string{"kvm", "environment", "create", "exec", "reset", "delete"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if want := []string{"host", "build minimal", "open", "create minimal pyro-prepare", "exec uname -sr", "reset ws1", "delete ws1", "close"}; !slices.Equal(f.calls, want) {
		t.Errorf("calls %v, want %v", f.calls, want)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 8 || lines[0] != "pyro prepare minimal" || !strings.HasPrefix(lines[7], "ready: minimal is warm; a new workspace ran its first command after ") {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, want := range []string{"[ok  ] kvm ", "[ok  ] environment ", "[ok  ] create ", "[ok  ] exec ", "[ok  ] reset ", "[ok  ] delete "} {
		if !strings.HasPrefix(lines[i+1], "  "+want) {
			t.Errorf("line %d: %q, want it to start with %q", i+1, lines[i+1], want)
		}
	}
	if !strings.Contains(lines[4], "uname -sr: Linux 6.1.0-99-cloud-amd64 (exit 0)") || !strings.Contains(lines[3], "workspace ws1 booted (2 vCPUs, 512 MiB)") ||
		!strings.Contains(lines[5], "rebuilt from its baseline (booted), running") {
		t.Errorf("details:\n%s", out.String())
	}
	// A second prepare resumes the warm snapshot the first one left, and
	// its reset resumes the baseline's image: the lines say so.
	f = &fakePrepare{hostOK: true, warm: true}
	out.Reset()
	if r := prepare(context.Background(), "minimal", f.deps(), &out, io.Discard); !r.OK {
		t.Fatalf("warm report: %+v", r)
	}
	if s := out.String(); !strings.Contains(s, "workspace ws1 resumed the environment's warm snapshot (2 vCPUs, 512 MiB)") ||
		!strings.Contains(s, "resumed its baseline's memory image, running") {
		t.Errorf("warm details:\n%s", s)
	}
	// --json's report: the same steps, nothing printed as they go.
	f = &fakePrepare{hostOK: true}
	r = prepare(context.Background(), "minimal", f.deps(), nil, io.Discard)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK    bool   `json:"ok"`
		Env   string `json:"env"`
		Steps []struct {
			Name    string   `json:"name"`
			Seconds *float64 `json:"seconds"`
		} `json:"steps"`
		Ready   *float64 `json:"ready_seconds"`
		Summary string   `json:"summary"`
	}
	if err := json.Unmarshal(js, &back); err != nil || !back.OK || back.Env != "minimal" || len(back.Steps) != 6 ||
		back.Steps[5].Name != "delete" || back.Steps[5].Seconds == nil || !strings.HasPrefix(back.Summary, "ready: ") {
		t.Errorf("--json: %s (%v)", js, err)
	}
}

// A failing step stops the run with what to do; once the workspace
// exists it is deleted whatever failed.
func TestPrepareFailures(t *testing.T) {
	for _, c := range []struct {
		name   string
		f      fakePrepare
		steps  []string
		errHas string
		fixHas string
	}{
		{"no hardware KVM", fakePrepare{}, []string{"kvm!"}, "virtualization: PVM", "pyro kvm-check explains; in short: use a host with VT-x"},
		{"build", fakePrepare{hostOK: true, buildErr: errors.New("mmdebstrap is not installed")},
			[]string{"kvm", "environment!"}, "building minimal: mmdebstrap is not installed", "pyro env build -v minimal"},
		{"create", fakePrepare{hostOK: true, createErr: contract.LimitReached("4 workspaces are running").WithHint("Stop one ({{stop}}) or give --{{-max_running}}.")},
			[]string{"kvm", "environment", "create!"}, "4 workspaces are running", "Stop one (pyro workspace stop)"},
		{"exec error", fakePrepare{hostOK: true, execErr: errors.New("agent gone")},
			[]string{"kvm", "environment", "create", "exec!", "delete"}, "agent gone", "pyro doctor"},
		{"exec exit code", fakePrepare{hostOK: true, exitCode: 127},
			[]string{"kvm", "environment", "create", "exec!", "delete"}, "exit 127", "pyro env build --force minimal"},
		{"reset", fakePrepare{hostOK: true, resetErr: contract.Internal("rebuilding the disk", errors.New("EIO"))},
			[]string{"kvm", "environment", "create", "exec", "reset!", "delete"}, "rebuilding the disk", "pyro doctor"},
		{"delete", fakePrepare{hostOK: true, deleteErr: errors.New("busy")},
			[]string{"kvm", "environment", "create", "exec", "reset", "delete!"}, "deleting the workspace: busy", "state directory is removed"},
		{"delete after a failure", fakePrepare{hostOK: true, exitCode: 1, deleteErr: errors.New("busy")},
			[]string{"kvm", "environment", "create", "exec!", "delete!"}, "exit 1", "pyro env build --force"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			var out strings.Builder
			r := prepare(context.Background(), "minimal", f.deps(), &out, io.Discard)
			if r.OK || r.Interrupted {
				t.Fatalf("report: %+v", r)
			}
			if got := stepNames(r); !slices.Equal(got, c.steps) {
				t.Errorf("steps %v, want %v", got, c.steps)
			}
			if !strings.Contains(r.Error, c.errHas) || !strings.Contains(r.Fix, c.fixHas) {
				t.Errorf("error %q, fix %q; want %q and %q", r.Error, r.Fix, c.errHas, c.fixHas)
			}
			created := slices.ContainsFunc(f.calls, func(s string) bool { return strings.HasPrefix(s, "create") }) && f.createErr == nil
			if deleted := slices.Contains(f.calls, "delete ws1"); deleted != created {
				t.Errorf("created %v, deleted %v: %v", created, deleted, f.calls)
			}
			if slices.Contains(f.calls, "open") && f.calls[len(f.calls)-1] != "close" {
				t.Errorf("the manager was not closed last: %v", f.calls)
			}
			text := out.String()
			if !strings.Contains(text, "\nFAIL: "+r.Error+"\nfix: "+r.Fix+"\n") {
				t.Errorf("output lacks the FAIL and fix lines:\n%s", text)
			}
		})
	}
}

// Ctrl-C during a step still deletes the workspace, with a context that
// is not the cancelled one, and the report says it was interrupted.
func TestPrepareInterrupted(t *testing.T) {
	f := &fakePrepare{hostOK: true, blockExec: true}
	ctx, cancel := context.WithCancel(context.Background())
	deps := f.deps()
	open := deps.open
	deps.open = func(name string) (prepareBackend, func(), error) {
		cancel() // as a Ctrl-C during create would, seen by the exec after it
		return open(name)
	}
	var out strings.Builder
	r := prepare(ctx, "minimal", deps, &out, io.Discard)
	if !r.Interrupted || r.OK {
		t.Fatalf("report: %+v", r)
	}
	if !slices.Contains(f.calls, "delete ws1") || f.deleteCtxErr != nil {
		t.Errorf("delete: calls %v, its context's error %v", f.calls, f.deleteCtxErr)
	}
	if !strings.Contains(out.String(), "interrupted after ") || !strings.Contains(out.String(), "nothing was left behind") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestPrepareFormatting(t *testing.T) {
	for s, want := range map[float64]string{0.0412: "0.04s", 3.456: "3.46s", 12.34: "12.3s", 75.6: "1m16s", 600: "10m0s"} {
		if got := formatSeconds(s); got != want {
			t.Errorf("formatSeconds(%v) = %q, want %q", s, got, want)
		}
	}
	if got, want := formatStep(prepareStep{Name: "exec", OK: true, Detail: "uname -sr: Linux 6.1 (exit 0)", Seconds: 0.05}),
		"  [ok  ] exec           0.05s  uname -sr: Linux 6.1 (exit 0)"; got != want {
		t.Errorf("formatStep:\n%q\nwant\n%q", got, want)
	}
	if got := formatStep(prepareStep{Name: "environment", Detail: "boom", Seconds: 65}); got != "  [FAIL] environment     1m5s  boom" {
		t.Errorf("formatStep failed: %q", got)
	}
}

// The kvm step names what decides: the kind of virtualization when it
// fails (PVM), else the first failing check.
func TestHostBootsVMs(t *testing.T) {
	device := check{Name: "device", Detail: "/dev/kvm: no such file or directory"}
	pvm := check{Name: "virtualization", Detail: "PVM (kvm_pvm)"}
	hw := check{Name: "virtualization", OK: true, Detail: "hardware (AMD-V)"}
	if ok, c := hostBootsVMs([]check{device, pvm}); ok || c.Name != "virtualization" {
		t.Errorf("PVM without a device: %v %+v", ok, c)
	}
	if ok, c := hostBootsVMs([]check{device, hw}); ok || c.Name != "device" {
		t.Errorf("hardware without a device: %v %+v", ok, c)
	}
	if ok, c := hostBootsVMs([]check{{Name: "device", OK: true}, hw}); !ok || c.Detail != "hardware (AMD-V)" {
		t.Errorf("all good: %v %+v", ok, c)
	}
}
