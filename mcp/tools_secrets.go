package mcp

import (
	"context"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Secret tools: secret_set and secret_delete (workspace-full). Secrets are
// also given at workspace_create (secrets), used by workspace_exec
// (secret_env), and listed, by name, in workspace_status.

// secretInput is one secret as a tool takes it.
type secretInput struct {
	Value string `json:"value,omitempty" jsonschema:"the secret itself"`
	File  string `json:"file,omitempty" jsonschema:"host file holding it, read now (a trailing newline is dropped); instead of value"`
}

type secretSetIn struct {
	ID    string `json:"id" jsonschema:"workspace id (or name)"`
	Name  string `json:"name" jsonschema:"secret name, 1-64 of [A-Za-z0-9_.-]; the guest file /run/pyro/secrets/NAME"`
	Value string `json:"value,omitempty" jsonschema:"the secret itself"`
	File  string `json:"file,omitempty" jsonschema:"host file holding it, read now (a trailing newline is dropped); instead of value"`
}

type secretDeleteIn struct {
	ID   string `json:"id" jsonschema:"workspace id (or name)"`
	Name string `json:"name" jsonschema:"secret name, as workspace_status lists it"`
}

type secretsOut struct {
	Workspace string       `json:"id"`
	Secrets   []secretView `json:"secrets"`
	Hint      string       `json:"hint,omitempty"`
}

// secretView is a secret in a result: never its value.
type secretView struct {
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	SetAt  string `json:"set_at,omitempty"`
}

func viewSecrets(s []contract.SecretInfo) []secretView {
	if len(s) == 0 {
		return nil
	}
	out := make([]secretView, len(s))
	for i, x := range s {
		out[i] = secretView{Name: x.Name, Source: x.Source, SetAt: timeString(x.SetAt)}
	}
	return out
}

const secretUseHint = "Use it with workspace_exec secret_env {\"VAR\": \"%s\"}, or read /run/pyro/secrets/%s in the guest; its value shows as [REDACTED] in all output."

func secretTools() []toolSpec {
	return secretSpecs(
		defTool(toolDef{
			name: "secret_set", group: "workspace", idempotent: true,
			summary:     "Give a workspace a secret (a value, or a host file read now): kept off its disk, mapped into commands by workspace_exec's secret_env, redacted from all output.",
			description: "Add or replace a workspace secret from value or a host file (read now). The guest gets it in /run/pyro/secrets/NAME (tmpfs: never on disk, in snapshots or exports); workspace_exec secret_env maps it into a command's environment. Output shows it as [REDACTED].",
		}, toolSecretSet),
		defTool(toolDef{
			name: "secret_delete", group: "workspace", destructive: true,
			summary:     "Remove a workspace secret from the host and the guest.",
			description: "Remove a workspace secret: its host copy and its guest file. Commands already running keep the environment they started with.",
		}, toolSecretDelete),
	)
}

// secretSpecs makes specs register only on a Backend that keeps secrets.
func secretSpecs(specs ...toolSpec) []toolSpec {
	for i := range specs {
		add := specs[i].add
		specs[i].add = func(s *sdk.Server, h *handler) {
			if _, ok := h.b.(contract.SecretBackend); ok {
				add(s, h)
			}
		}
	}
	return specs
}

// secretsArg checks workspace_create's secrets: nil when none.
func (h *handler) secretsArg(in map[string]secretInput) (map[string]contract.SecretSource, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if _, ok := h.b.(contract.SecretBackend); !ok {
		return nil, contract.Invalid("this pyro server keeps no secrets").WithHint("Create the workspace without secrets.")
	}
	out := make(map[string]contract.SecretSource, len(in))
	for name, src := range in {
		out[name] = contract.SecretSource(src)
	}
	if err := contract.ValidateSecrets(out); err != nil {
		return nil, err
	}
	return out, nil
}

func toolSecretSet(ctx context.Context, h *handler, in secretSetIn) (secretsOut, error) {
	sb, ok := h.b.(contract.SecretBackend)
	if !ok {
		return secretsOut{}, contract.Invalid("this pyro server keeps no secrets")
	}
	src := contract.SecretSource{Value: in.Value, File: in.File}
	if err := contract.ValidateSecretName(in.Name); err != nil {
		return secretsOut{}, err
	}
	if err := contract.ValidateSecretSource(in.Name, src); err != nil {
		return secretsOut{}, err
	}
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = sb.SecretSet(ctx, id, in.Name, src)
		return err
	})
	if err != nil {
		return secretsOut{}, err
	}
	return secretsOut{Workspace: w.ID, Secrets: orEmpty(viewSecrets(w.Secrets)),
		Hint: fmt.Sprintf(secretUseHint, in.Name, in.Name)}, nil
}

func toolSecretDelete(ctx context.Context, h *handler, in secretDeleteIn) (secretsOut, error) {
	sb, ok := h.b.(contract.SecretBackend)
	if !ok {
		return secretsOut{}, contract.Invalid("this pyro server keeps no secrets")
	}
	if err := contract.ValidateSecretName(in.Name); err != nil {
		return secretsOut{}, err
	}
	var w contract.Workspace
	err := h.onWorkspace(ctx, in.ID, func(id string) (err error) {
		w, err = sb.SecretDelete(ctx, id, in.Name)
		return err
	})
	if err != nil {
		return secretsOut{}, err
	}
	return secretsOut{Workspace: w.ID, Secrets: orEmpty(viewSecrets(w.Secrets))}, nil
}

func orEmpty(s []secretView) []secretView {
	if s == nil {
		return []secretView{}
	}
	return s
}
