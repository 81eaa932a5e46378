package contract

import (
	"context"
	"regexp"
	"time"

	"github.com/pyro-mcp/pyro/mcp/redact"
)

// SecretBackend is the optional part of a Backend that keeps a workspace's
// secrets: values given at create (CreateRequest.Secrets) or later, kept on
// the host (0600, deleted with the workspace) and in a tmpfs in the guest
// (/run/pyro/secrets/NAME, never on the workspace's disk, so never in a
// snapshot, a diff or an export), mapped into a command's environment by
// name (ExecRequest.SecretEnv), and replaced by redact.Mask in everything
// the backend returns or stores. Status (Workspace.Secrets) shows names,
// never values. The tool layer registers secret_set and secret_delete only
// when its Backend has it.
type SecretBackend interface {
	// SecretSet adds or replaces the secret name; a running workspace's
	// guest has the new value at once.
	SecretSet(ctx context.Context, id, name string, src SecretSource) (Workspace, error)
	// SecretDelete removes the secret name, on the host and in a running
	// guest (*Error NotFound when there is none).
	SecretDelete(ctx context.Context, id, name string) (Workspace, error)
}

// SecretSource is where a secret's value comes from: exactly one of a
// literal Value and a host File, read when the call is made (without a
// trailing newline) under the host directories the server allows.
type SecretSource struct {
	Value string
	File  string
}

// SecretInfo is a secret as status shows it: never its value.
type SecretInfo struct {
	Name   string
	Source string // "value" or "file"
	SetAt  time.Time
}

// Secret bounds: a workspace holds at most MaxSecrets, each value between
// MinSecretBytes and MaxSecretBytes (the redactor's bounds: see
// mcp/redact).
const (
	MaxSecrets       = redact.MaxSecrets
	MaxSecretBytes   = redact.MaxLen
	MinSecretBytes   = redact.MinLen
	MaxSecretNameLen = 64
)

var secretNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidateSecretName checks a secret's name: 1-64 of [A-Za-z0-9_.-], not
// "." or "..", since it names a file in the guest's /run/pyro/secrets.
func ValidateSecretName(name string) error {
	if !secretNameRe.MatchString(name) || name == "." || name == ".." {
		return Invalid("secret name %.70q must be 1-%d characters of [A-Za-z0-9_.-] (and not . or ..)", name, MaxSecretNameLen)
	}
	return nil
}

// ValidateSecretSource checks that src names exactly one source.
func ValidateSecretSource(name string, src SecretSource) error {
	switch {
	case src.Value != "" && src.File != "":
		return Invalid("secret %q: give value or file, not both", name)
	case src.Value == "" && src.File == "":
		return Invalid("secret %q: give value (the secret itself) or file (a host file holding it)", name)
	case len(src.Value) > MaxSecretBytes:
		return Invalid("secret %q is %d bytes; the limit is %d", name, len(src.Value), MaxSecretBytes)
	case len(src.File) > MaxPathLen:
		return Invalid("secret %q: file path is longer than %d bytes", name, MaxPathLen)
	}
	return nil
}

// ValidateSecretEnv checks an exec's secret_env: environment variable
// names (not also in env_vars) mapped to secret names.
func ValidateSecretEnv(secretEnv, envVars map[string]string) error {
	if len(secretEnv) > MaxEnvVars {
		return Invalid("secret_env has %d entries; the limit is %d", len(secretEnv), MaxEnvVars)
	}
	for _, k := range sortedKeys(secretEnv) {
		if !envVarRe.MatchString(k) {
			return Invalid("secret_env key %q must match %s", k, defaultEnvVarRegex)
		}
		if _, dup := envVars[k]; dup {
			return Invalid("%s is in both env_vars and secret_env; give it once", k)
		}
		if err := ValidateSecretName(secretEnv[k]); err != nil {
			return err
		}
	}
	return nil
}
