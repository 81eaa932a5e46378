package mcp

import (
	"context"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Command tools: workspace_exec in a workspace, vm_run one-shot, and env_list.

type execIn struct {
	ID             string            `json:"id" jsonschema:"workspace id (or name)"`
	Command        string            `json:"command,omitempty" jsonschema:"shell command line, run with sh -c"`
	Argv           []string          `json:"argv,omitempty" jsonschema:"program and arguments, run without a shell; instead of command"`
	Cwd            string            `json:"cwd,omitempty" jsonschema:"working directory (default /workspace)"`
	EnvVars        map[string]string `json:"env_vars,omitempty" jsonschema:"extra environment variables"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty" jsonschema:"kill after this many seconds (default 30, max 3600; in the background default 3600, max 21600); exit code 124 then"`
	Stdin          string            `json:"stdin,omitempty" jsonschema:"text fed to stdin (default: empty)"`
	SecretEnv      map[string]string `json:"secret_env,omitempty" jsonschema:"environment variables set to the workspace's secrets, e.g. {\"NPM_TOKEN\": \"npm\"} (variable: secret name); values are redacted from output"`
	Background     bool              `json:"background,omitempty" jsonschema:"return at once with the command's seq and follow it with exec_status, for commands that may outlast a tool call (default false)"`
}

type runIn struct {
	Env            string              `json:"env,omitempty" jsonschema:"environment, e.g. debian-12 (default: the host's default)"`
	Command        string              `json:"command,omitempty" jsonschema:"shell command line, run with sh -c"`
	Argv           []string            `json:"argv,omitempty" jsonschema:"program and arguments, run without a shell; instead of command"`
	Cwd            string              `json:"cwd,omitempty" jsonschema:"working directory (default /workspace)"`
	EnvVars        map[string]string   `json:"env_vars,omitempty" jsonschema:"extra environment variables"`
	TimeoutSeconds int                 `json:"timeout_seconds,omitempty" jsonschema:"kill after this many seconds (default 30, max 3600); exit code 124 then"`
	Stdin          string              `json:"stdin,omitempty" jsonschema:"text fed to stdin (default: empty)"`
	Seed           *contract.SeedInput `json:"seed,omitempty" jsonschema:"host content to copy into /workspace first"`
	VCPUs          int                 `json:"vcpus,omitempty" jsonschema:"virtual CPUs (default: host default)"`
	MemMiB         int                 `json:"mem_mib,omitempty" jsonschema:"memory in MiB (default: host default)"`
	Network        []string            `json:"network,omitempty" jsonschema:"network grants, e.g. [\"pypi.org:443\"] (default: none)"`
}

// execOut is workspace_exec's result: the command's outcome, or with
// background:true the started command (as exec_status shows it).
type execOut = either[execView, bgView]

type envListIn struct{}

type envView struct {
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	Built        bool   `json:"built"`
	Default      bool   `json:"default,omitempty"`
	BuildCommand string `json:"build_command,omitempty"`
}

type envListOut struct {
	Envs []envView `json:"envs"`
	Hint string    `json:"hint,omitempty"`
}

func tuneCommand(s *jsonschema.Schema) {
	bounds(s, "timeout_seconds", contract.MinTimeoutSeconds, contract.MaxTimeoutSeconds)
}

func execTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "workspace_exec", group: "exec", core: true, destructive: true,
			summary:     "Run a command in a workspace (cwd /workspace, timeout 30 s by default); exit code, duration, stdout/stderr excerpts with full output kept in host files. background:true returns at once with a seq for exec_status.",
			description: "Run a command in the workspace and wait for it: exit code, stdout/stderr. cwd /workspace, timeout 30 s (exit 124). Long output is cut to head+tail; full text in host files (*_path). background:true returns a seq at once: follow it with exec_status (for builds and test runs).",
			tune: func(s *jsonschema.Schema) {
				bounds(s, "timeout_seconds", contract.MinTimeoutSeconds, contract.MaxBackgroundTimeoutSeconds)
			},
		}, toolExec),
	}
}

func oneShotTools() []toolSpec {
	return []toolSpec{
		defTool(toolDef{
			name: "vm_run", group: "oneshot",
			summary:     "One-shot: boot a throwaway VM, run one command, destroy it, return the result.",
			description: "One-shot: boot a throwaway microVM, run one command, destroy it, return exit code and output (cut like workspace_exec). Nothing persists; use workspace_create for repeated work.",
			tune: func(s *jsonschema.Schema) {
				tuneCommand(s)
				bounds(s, "vcpus", 1, contract.MaxVCPUs)
				bounds(s, "mem_mib", contract.MinMemMiB, contract.MaxMemMiB)
				enum(s, "seed.kind", string(contract.SeedDir), string(contract.SeedArchive), string(contract.SeedGit))
			},
		}, toolRun),
		defTool(toolDef{
			name: "env_list", group: "env", readOnly: true,
			summary:     "List the guest environments this host has and whether each is built.",
			description: "List guest environments (e.g. debian-12) usable as env in workspace_create, whether each is built on this host, and the default.",
		}, toolEnvList),
	}
}

func toolExec(ctx context.Context, h *handler, in execIn) (execOut, error) {
	req := contract.ExecRequest{Command: in.Command, Argv: in.Argv, Cwd: in.Cwd, EnvVars: in.EnvVars, TimeoutSeconds: in.TimeoutSeconds, Stdin: in.Stdin, SecretEnv: in.SecretEnv}
	if err := contract.ValidateExec(&req, in.Background); err != nil {
		return execOut{}, err
	}
	if in.Background {
		v, err := h.execBackground(ctx, in.ID, req)
		if err != nil {
			return execOut{}, err
		}
		return eitherB[execView](v), nil
	}
	var (
		r  contract.ExecResult
		ws string
	)
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		ws, req.ID = id, id
		r, err = h.b.Exec(ctx, req)
		return err
	})
	if err != nil {
		return execOut{}, err
	}
	v, err := h.execResult(ws, r, req.TimeoutSeconds)
	if err != nil {
		return execOut{}, err
	}
	return eitherA[execView, bgView](v), nil
}

func toolRun(ctx context.Context, h *handler, in runIn) (execView, error) {
	c := contract.CommandSpec{Command: in.Command, Argv: in.Argv, Cwd: in.Cwd, EnvVars: in.EnvVars, Timeout: in.TimeoutSeconds, Stdin: in.Stdin}
	if err := contract.ValidateCommand(&c); err != nil {
		return execView{}, err
	}
	if err := contract.ValidateResources(in.VCPUs, in.MemMiB); err != nil {
		return execView{}, err
	}
	seed, err := contract.ParseSeed(in.Seed)
	if err != nil {
		return execView{}, err
	}
	grants, err := h.networkArg(in.Network)
	if err != nil {
		return execView{}, err
	}
	r, err := h.b.Run(ctx, contract.RunRequest{Env: in.Env, Command: c.Command, Argv: c.Argv, Cwd: c.Cwd, EnvVars: c.EnvVars,
		TimeoutSeconds: c.Timeout, Stdin: c.Stdin, VCPUs: in.VCPUs, MemMiB: in.MemMiB, Seed: seed, Network: grants})
	if err != nil {
		return execView{}, err
	}
	return h.execResult("", r, c.Timeout)
}

func toolEnvList(ctx context.Context, h *handler, _ envListIn) (envListOut, error) {
	envs, err := h.b.Envs(ctx)
	if err != nil {
		return envListOut{}, err
	}
	out := envListOut{Envs: make([]envView, 0, len(envs))}
	unbuilt := false
	for _, e := range envs {
		v := envView{Name: e.Name, Description: clip(e.Description, 200), Built: e.Built, Default: e.Default}
		if !e.Built {
			v.BuildCommand = e.BuildCommand
			unbuilt = true
		}
		out.Envs = append(out.Envs, v)
	}
	if unbuilt {
		out.Hint = "Environments that are not built need their build_command run on the host (by you or the user) before use."
	}
	return out, nil
}
