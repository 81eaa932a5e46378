package workspace

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/kvm/kvmtest"
	"github.com/pyro-mcp/pyro/mcp/contract"
)

// Secrets in a debian-12 workspace: one given at create, one set later
// from a host file. An exec that maps them into its environment and reads
// the guest's tmpfs copy gets them (the guest's hash of each matches the
// host's), and its result, its host output files and the journal show
// only [REDACTED]; the diff, an export and the snapshot's disk layers do
// not hold them; a restart gives the guest them again; after delete the
// state directory holds them nowhere.
func TestWorkspaceVMSecretsDebian(t *testing.T) {
	kvmtest.RequireStockKernels(t)
	envDir := kvmtest.Path(t, "PYRO_TEST_ENV_DEBIAN")
	state := t.TempDir()
	m, err := Open(Options{StateDir: state, CacheRoot: filepath.Dir(filepath.Dir(envDir)), DefaultMemMiB: 256,
		DefaultDiskMiB: 1, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := t.Context()

	tok, key := "tok-"+rand.Text(), "key-"+rand.Text()
	sum := func(v string) string { s := sha256.Sum256([]byte(v)); return hex.EncodeToString(s[:]) }
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws, err := m.Create(ctx, contract.CreateRequest{TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone},
		Secrets: map[string]contract.SecretSource{"tok": {Value: tok}}})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.ID
	if _, err := m.SecretSet(ctx, id, "key", contract.SecretSource{File: keyFile}); err != nil {
		t.Fatal(err)
	}
	exec := func(cmd string, secretEnv map[string]string) contract.ExecResult {
		t.Helper()
		r, err := m.Exec(ctx, contract.ExecRequest{ID: id, Command: cmd, SecretEnv: secretEnv, TimeoutSeconds: 120})
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if r.ExitCode != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", cmd, r.ExitCode, r.Stdout, r.Stderr)
		}
		return r
	}
	r := exec(`echo $TOKEN; printenv TOKEN | sed 's/^//'; cat /run/pyro/secrets/tok; echo; printf %s "$TOKEN" | sha256sum; `+
		`sha256sum </run/pyro/secrets/key; stat -c %a /run/pyro/secrets/tok; stat -f -c %T /run/pyro/secrets; echo "$KEY" >&2; `+
		`echo hi >/workspace/a.txt; echo `+key+` >/dev/null`,
		map[string]string{"TOKEN": "tok", "KEY": "key"})
	want := "[REDACTED]\n[REDACTED]\n[REDACTED]\n" + sum(tok) + "  -\n" + sum(key) + "  -\n400\ntmpfs\n"
	if string(r.Stdout) != want || string(r.Stderr) != "[REDACTED]\n" {
		t.Fatalf("stdout %q, want %q; stderr %q", r.Stdout, want, r.Stderr)
	}
	for _, p := range []string{r.StdoutPath, r.StderrPath} {
		if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), "[REDACTED]") || strings.Contains(string(b), tok) {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	logs, err := m.Logs(ctx, contract.LogsRequest{ID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	last := logs.Entries[len(logs.Entries)-1]
	if !strings.HasSuffix(last.Command, "echo [REDACTED] >/dev/null") {
		t.Errorf("journal command %q", last.Command)
	}
	// A shell and a service get the secret in their environment too; what
	// they print comes back redacted.
	sh, err := m.ShellOpen(ctx, contract.ShellOpenRequest{ID: id, Command: "sh", SecretEnv: map[string]string{"TOKEN": "tok"},
		Wait: contract.ShellWait{Idle: 500 * time.Millisecond, Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	so, err := m.ShellWrite(ctx, contract.ShellWriteRequest{ID: id, Shell: sh.Info.Shell,
		Input: []byte("printf %s \"$TOKEN\" | sha256sum; echo \"shell sees $TOKEN\"; echo end-of-shell\r"),
		Wait:  contract.ShellWait{Pattern: regexp.MustCompile(`(?m)^end-of-shell`), Timeout: 60 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(so.Text, sum(tok)) || !strings.Contains(so.Text, "shell sees [REDACTED]") || strings.Contains(so.Text, tok) {
		t.Errorf("shell output %q: want the secret's sum and it redacted", so.Text)
	}
	svc, err := m.ServiceStart(ctx, contract.ServiceStartRequest{ID: id, Name: "uses-tok", SecretEnv: map[string]string{"TOKEN": "tok"},
		Command:   `printf %s "$TOKEN" | sha256sum; echo "service sees $TOKEN"; touch /tmp/svc-ready; exec sleep 1000`,
		Readiness: contract.Readiness{Kind: "file", Path: "/tmp/svc-ready", TimeoutSeconds: 60}, Wait: 50 * time.Second})
	if err != nil || svc.State != "ready" {
		t.Fatalf("service: %+v %v", svc, err)
	}
	sl, err := m.ServiceLogs(ctx, contract.ServiceLogsRequest{ID: id, Name: "uses-tok", Stream: "stdout"})
	if err != nil || sl.Stdout == nil {
		t.Fatalf("service logs: %+v %v", sl, err)
	}
	if l := string(sl.Stdout.Data); !strings.Contains(l, sum(tok)) || !strings.Contains(l, "service sees [REDACTED]") || strings.Contains(l, tok) {
		t.Errorf("service log %q: want the secret's sum and it redacted", l)
	}
	d, err := m.Diff(ctx, contract.DiffRequest{ID: id})
	if err != nil || len(d.Files) != 1 || strings.Contains(d.Patch, tok) || strings.Contains(d.Patch, key) {
		t.Errorf("diff: %+v %v", d.Files, err)
	}
	out := filepath.Join(t.TempDir(), "export")
	if _, err := m.Export(ctx, contract.ExportRequest{ID: id, GuestPath: "/workspace", HostPath: out, Format: contract.ExportTree}); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, filepath.Dir(out), tok, key); len(hits) != 0 {
		t.Errorf("the export holds the secrets: %v", hits)
	}
	if _, err := m.SnapshotCreate(ctx, contract.SnapshotRequest{ID: id, Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	// Only secrets.json holds them (base64-encoded): no disk layer, no
	// output file, not the journal or the console log.
	dir := filepath.Join(state, "workspaces", id)
	if hits := grepTree(t, state, tok, key); len(hits) != 1 || hits[0] != filepath.Join(dir, secretsName) {
		t.Errorf("the values are in %v", hits)
	}
	if fi, err := os.Stat(filepath.Join(dir, secretsName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.json: %v %v", fi, err)
	}
	st, err := m.Status(ctx, id)
	if err != nil || len(st.Secrets) != 2 || st.Secrets[0].Name != "key" || st.Secrets[0].Source != "file" {
		t.Errorf("status: %+v %v", st.Secrets, err)
	}

	// A restart writes them into the new boot's tmpfs.
	if _, err := m.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	r = exec(`sha256sum </run/pyro/secrets/key; printf %s "$T" | sha256sum`, map[string]string{"T": "tok"})
	if want := sum(key) + "  -\n" + sum(tok) + "  -\n"; string(r.Stdout) != want {
		t.Errorf("after restart: %q, want %q", r.Stdout, want)
	}
	if err := m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, state, tok, key); len(hits) != 0 {
		t.Errorf("after delete the values are in %v", hits)
	}
}
