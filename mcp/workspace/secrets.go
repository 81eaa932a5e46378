package workspace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/redact"
)

// Secrets (see contract.SecretBackend). On the host a workspace's secrets live
// in its directory's secrets.json (0600, replaced atomically), which goes
// with the directory when the workspace is deleted, and with the disk when
// the retention period after an expiry ends. In the guest they live in
// guestSecretsDir, a tmpfs (mounted by the agent at boot; by
// guestSecretsPrep for an agent older than that), one file a secret, mode
// 0400: never on the workspace's disk, so never in a snapshot's layers, a
// diff or an export. Every boot writes them there again.
//
// Every value is redacted (mcp/redact) from what the workspace returns or
// stores: exec output as it streams into out/ and the result, the
// journal's entries (so logs and the summary), and exec errors.
const (
	secretsName     = "secrets.json"
	secretsFormat   = 1
	guestSecretsDir = "/run/pyro/secrets"
)

// guestSecretsPrep checks that guestSecretsDir is a tmpfs, mounting one
// there (mode 0700, bounded) when the agent did not, and fails otherwise:
// a value is never written to a directory on the disk.
var guestSecretsPrep = proto.ExecRequest{Timeout: time.Minute, Shell: `d=` + guestSecretsDir + `
on() { grep -q "^[^ ]* $d tmpfs " /proc/mounts; }
on || { mkdir -p -m 0700 $d && mount -t tmpfs -o mode=0700,nosuid,nodev,noexec,size=8m pyro-secrets $d; }
on || { echo "$d is not a tmpfs; refusing to write secrets to it" >&2; exit 1; }`}

// secretEntry is one secret as secrets.json keeps it.
type secretEntry struct {
	Name   string    `json:"name"`
	Source string    `json:"source"` // "value" or "file"
	SetAt  time.Time `json:"set_at"`
	Value  []byte    `json:"value"`
}

type secretsFile struct {
	Format  int           `json:"format"`
	Secrets []secretEntry `json:"secrets"`
}

// secretState is a workspace's secrets. change serializes changes (the
// host file and the guest's copy change together); mu guards the fields
// below it and is taken after the workspace's mu and the journal's.
type secretState struct {
	change sync.Mutex
	mu     sync.Mutex
	// Guarded by mu.
	list []secretEntry // sorted by name
	// Guarded by mu.
	set *redact.Set // every value in list
}

// readSecretSource returns the value src gives: a literal, or a host
// file read now under the allowed host directories, at most
// contract.MaxSecretBytes, without a trailing newline.
func (m *Manager) readSecretSource(name string, src contract.SecretSource) (secretEntry, error) {
	e := secretEntry{Name: name, Source: "value", SetAt: m.now(), Value: []byte(src.Value)}
	if src.File != "" {
		p, err := m.allowedHostPath("secret file", src.File, false)
		if err != nil {
			return secretEntry{}, err
		}
		if err := mustStat(p, false); err != nil {
			return secretEntry{}, err
		}
		f, err := os.Open(p)
		if err != nil {
			return secretEntry{}, contract.Invalid("secret %q: reading %s: %v", name, p, err)
		}
		b, err := io.ReadAll(io.LimitReader(f, contract.MaxSecretBytes+3))
		f.Close()
		if err != nil {
			return secretEntry{}, contract.Invalid("secret %q: reading %s: %v", name, p, err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		e.Source, e.Value = "file", b
	}
	if err := redact.CheckValue(e.Value); err != nil {
		return secretEntry{}, contract.Invalid("secret %q: %v", name, err)
	}
	return e, nil
}

// readSecrets reads a create's secrets, sorted by name.
func (m *Manager) readSecrets(in map[string]contract.SecretSource) ([]secretEntry, error) {
	if len(in) > contract.MaxSecrets {
		return nil, contract.Invalid("%d secrets given; the limit is %d per workspace", len(in), contract.MaxSecrets)
	}
	var out []secretEntry
	for _, name := range slices.Sorted(maps.Keys(in)) {
		if err := contract.ValidateSecretName(name); err != nil {
			return nil, err
		}
		e, err := m.readSecretSource(name, in[name])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// initSecrets gives a new workspace its secrets, saved to its directory.
// The caller owns the workspace alone (op held, nothing booted).
func (w *workspace) initSecrets(list []secretEntry) error {
	if len(list) == 0 {
		return nil
	}
	return w.replaceSecrets(list)
}

// loadSecrets reads the secrets of a workspace found in the state
// directory and makes its journal redact them. Called before the
// workspace is published.
func (w *workspace) loadSecrets() error {
	w.journal.redact = w.redactText
	// An atomic write that a crash interrupted leaves its temporary file.
	if tmps, _ := filepath.Glob(filepath.Join(w.dir, "."+secretsName+".tmp-*")); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	b, err := os.ReadFile(filepath.Join(w.dir, secretsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f secretsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", secretsName, err)
	}
	if f.Format != secretsFormat {
		return fmt.Errorf("%s: format %d, want %d", secretsName, f.Format, secretsFormat)
	}
	set, err := newSecretSet(f.Secrets)
	if err != nil {
		return fmt.Errorf("%s: %w", secretsName, err)
	}
	w.sec.mu.Lock()
	w.sec.list, w.sec.set = f.Secrets, set
	w.sec.mu.Unlock()
	return nil
}

func newSecretSet(list []secretEntry) (*redact.Set, error) {
	vals := make([][]byte, len(list))
	for i, e := range list {
		if contract.ValidateSecretName(e.Name) != nil {
			return nil, fmt.Errorf("a secret's name %q is not valid", e.Name)
		}
		vals[i] = e.Value
	}
	return redact.New(vals)
}

// replaceSecrets saves list as the workspace's secrets and starts
// redacting them. The caller holds sec.change (or owns the workspace
// alone).
func (w *workspace) replaceSecrets(list []secretEntry) error {
	slices.SortFunc(list, func(a, b secretEntry) int { return strings.Compare(a.Name, b.Name) })
	set, err := newSecretSet(list)
	if err != nil {
		return contract.Invalid("%v", err)
	}
	p := filepath.Join(w.dir, secretsName)
	if len(list) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return contract.Internal("removing the secrets file", err)
		}
		syncDir(w.dir)
	} else {
		b, err := json.Marshal(secretsFile{Format: secretsFormat, Secrets: list})
		if err != nil {
			return contract.Internal("encoding the secrets", err)
		}
		// writeFileAtomic's temporary file is 0600 from its creation.
		if err := writeFileAtomic(w.dir, secretsName, b); err != nil {
			return contract.Internal("saving the secrets", err)
		}
	}
	w.sec.mu.Lock()
	// The old values stay redacted by outputs already under way; new
	// ones from now.
	w.sec.list, w.sec.set = list, set
	w.sec.mu.Unlock()
	return nil
}

// secrets returns a copy of the workspace's secrets.
func (w *workspace) secrets() []secretEntry {
	w.sec.mu.Lock()
	defer w.sec.mu.Unlock()
	return slices.Clone(w.sec.list)
}

// redactor returns the workspace's redactor now: nil redacts nothing.
func (w *workspace) redactor() *redact.Set {
	w.sec.mu.Lock()
	defer w.sec.mu.Unlock()
	return w.sec.set
}

// redactText redacts s with the workspace's secrets.
func (w *workspace) redactText(s string) string { return w.redactor().String(s) }

// secretInfos lists the secrets for status: names, never values.
func (w *workspace) secretInfos() []contract.SecretInfo {
	w.sec.mu.Lock()
	defer w.sec.mu.Unlock()
	var out []contract.SecretInfo
	for _, e := range w.sec.list {
		out = append(out, contract.SecretInfo{Name: e.Name, Source: e.Source, SetAt: e.SetAt})
	}
	return out
}

// secretNames lists the secrets' names for a message.
func (w *workspace) secretNames() string {
	var names []string
	for _, e := range w.secrets() {
		names = append(names, e.Name)
	}
	if len(names) == 0 {
		return "it has none"
	}
	return "it has " + strings.Join(names, ", ")
}

// execEnv is an exec's environment: its env_vars and the values of the
// secrets its secret_env names.
func (w *workspace) execEnv(req contract.ExecRequest) (map[string]string, error) {
	return w.secretEnv(req.EnvVars, req.SecretEnv)
}

// secretEnv is vars with each of secretEnv's variables set to the value
// of the secret it names.
func (w *workspace) secretEnv(vars, secretEnv map[string]string) (map[string]string, error) {
	if len(secretEnv) == 0 {
		return vars, nil
	}
	byName := map[string][]byte{}
	for _, e := range w.secrets() {
		byName[e.Name] = e.Value
	}
	env := maps.Clone(vars)
	if env == nil {
		env = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(secretEnv)) {
		name := secretEnv[k]
		v, ok := byName[name]
		if !ok {
			return nil, contract.Invalid("secret_env %s: workspace %s has no secret %q (%s)", k, w.id, name, w.secretNames()).
				WithHint("{{secret.set}} adds a secret; {{status}} lists them.")
		}
		if bytes.IndexByte(v, 0) >= 0 {
			return nil, contract.Invalid("secret %q holds a NUL byte, which no environment variable can", name).
				WithHint(fmt.Sprintf("Read it from %s/%s in the guest instead.", guestSecretsDir, name))
		}
		env[k] = string(v)
	}
	return env, nil
}

// pushSecrets writes the workspace's secrets into a guest that just
// booted (g is its unconfined agent).
func (w *workspace) pushSecrets(ctx context.Context, g guest) error {
	list := w.secrets()
	if len(list) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, agentCallTimeout)
	defer cancel()
	if err := prepGuestSecrets(ctx, g); err != nil {
		return err
	}
	for _, e := range list {
		if err := writeGuestSecret(ctx, g, e); err != nil {
			return err
		}
	}
	return nil
}

func prepGuestSecrets(ctx context.Context, g guest) error {
	var stderr bytes.Buffer
	res, err := g.Exec(ctx, guestSecretsPrep, nil, &limitedBuffer{b: &stderr, max: 1024})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit %d: %s", res.ExitCode, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return fmt.Errorf("preparing %s in the guest: %w", guestSecretsDir, err)
	}
	return nil
}

func writeGuestSecret(ctx context.Context, g guest, e secretEntry) error {
	if err := g.WriteFile(ctx, guestSecretsDir+"/"+e.Name, bytes.NewReader(e.Value), 0o400, false); err != nil {
		return fmt.Errorf("writing secret %s into the guest: %w", e.Name, err)
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// SecretSet implements contract.SecretBackend.
func (m *Manager) SecretSet(ctx context.Context, id, name string, src contract.SecretSource) (contract.Workspace, error) {
	if err := contract.ValidateSecretName(name); err != nil {
		return contract.Workspace{}, err
	}
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	e, err := m.readSecretSource(name, src)
	if err != nil {
		return contract.Workspace{}, err
	}
	err = w.changeSecrets(ctx, "secret_set", name+" ("+e.Source+")", func(list []secretEntry) ([]secretEntry, error) {
		list = slices.DeleteFunc(list, func(x secretEntry) bool { return x.Name == name })
		if len(list) >= contract.MaxSecrets {
			return nil, contract.LimitReached("workspace %s has %d secrets, the limit", w.id, len(list)).
				WithHint("{{secret.delete}} one it no longer needs.")
		}
		return append(list, e), nil
	}, func(ctx context.Context, g guest) error {
		if err := prepGuestSecrets(ctx, g); err != nil {
			return err
		}
		return writeGuestSecret(ctx, g, e)
	})
	if err != nil {
		return contract.Workspace{}, err
	}
	return w.view(), nil
}

// SecretDelete implements contract.SecretBackend.
func (m *Manager) SecretDelete(ctx context.Context, id, name string) (contract.Workspace, error) {
	w, err := m.get(id)
	if err != nil {
		return contract.Workspace{}, err
	}
	w.touch()
	err = w.changeSecrets(ctx, "secret_delete", name, func(list []secretEntry) ([]secretEntry, error) {
		n := len(list)
		list = slices.DeleteFunc(list, func(x secretEntry) bool { return x.Name == name })
		if len(list) == n {
			return nil, contract.Invalid("workspace %s has no secret %q (%s)", w.id, name, w.secretNames())
		}
		return list, nil
	}, func(ctx context.Context, g guest) error {
		res, err := g.Exec(ctx, proto.ExecRequest{Argv: []string{"rm", "-f", "--", guestSecretsDir + "/" + name}, Timeout: time.Minute}, nil, nil)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("rm exit %d", res.ExitCode)
		}
		return err
	})
	if err != nil {
		return contract.Workspace{}, err
	}
	return w.view(), nil
}

// changeSecrets applies edit to the workspace's secrets, saves them, and,
// while the workspace runs, applies guest to its guest. It holds op shared,
// so no boot or stop happens meanwhile: a boot after it writes the new
// secrets.
func (w *workspace) changeSecrets(ctx context.Context, cmd, detail string, edit func([]secretEntry) ([]secretEntry, error),
	guestFn func(context.Context, guest) error) error {
	start := w.m.now()
	w.op.RLock()
	defer w.op.RUnlock()
	if err := w.alive(); err != nil {
		return err
	}
	if err := w.diskGone(); err != nil {
		return err
	}
	w.sec.change.Lock()
	defer w.sec.change.Unlock()
	list, err := edit(w.secrets())
	if err != nil {
		return err
	}
	if err := w.replaceSecrets(list); err != nil {
		return err
	}
	w.logLife(contract.LogLife, cmd, detail, start)
	if h := w.handle(); h != nil {
		gctx, cancel := context.WithTimeout(ctx, agentCallTimeout)
		defer cancel()
		if err := guestFn(gctx, h.Agent); err != nil {
			e := contract.Internal("the secret is saved, but changing it in the running guest failed: "+firstLine(w.redactText(err.Error())), nil)
			return e.WithHint("{{stop}} then {{start}} gives the guest the saved secrets.")
		}
	}
	return nil
}

// redactErr returns err with the workspace's secrets redacted from what it
// says (an *contract.Error's message, hint and cause); errors.Is and As still
// see the original cause.
func (w *workspace) redactErr(err error) error {
	set := w.redactor()
	if err == nil || set.Len() == 0 {
		return err
	}
	e, ok := contract.AsError(err)
	if !ok {
		if s := err.Error(); set.String(s) != s {
			return &redactedError{msg: set.String(s), err: err}
		}
		return err
	}
	c := *e
	c.Msg, c.Hint, c.Name = set.String(e.Msg), set.String(e.Hint), set.String(e.Name)
	if c.Err != nil {
		if s := c.Err.Error(); set.String(s) != s {
			c.Err = &redactedError{msg: set.String(s), err: c.Err}
		}
	}
	return &c
}

// redactedError says a redacted message and unwraps to the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactResult redacts what an exec result says: its output once more
// (a secret set while the command ran), and the notes.
func (w *workspace) redactResult(r contract.ExecResult) contract.ExecResult {
	set := w.redactor()
	if set.Len() == 0 {
		return r
	}
	r.Stdout, r.Stderr = set.Bytes(r.Stdout), set.Bytes(r.Stderr)
	r.Limited, r.Network = set.String(r.Limited), set.String(r.Network)
	return r
}
