package workspace

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/mcp/contract"
	"github.com/pyro-mcp/pyro/mcp/redact"
)

const (
	tokenValue = "npm-token-0123456789"
	fileValue  = "file-secret-abcdef"
)

// grepTree lists the files under root whose bytes contain any of vals,
// raw or base64-encoded (as JSON keeps bytes). It reads only the data of
// sparse files (disk layers), window by window.
func grepTree(t *testing.T, root string, vals ...string) []string {
	t.Helper()
	var pats [][]byte
	for _, v := range vals {
		pats = append(pats, []byte(v), []byte(base64.StdEncoding.EncodeToString([]byte(v))))
	}
	var hits []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		found, err := fileContains(p, pats)
		if err != nil {
			t.Errorf("reading %s: %v", p, err)
		}
		if found {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// fileContains reports whether the data regions of file p hold any of pats.
func fileContains(p string, pats [][]byte) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	const window, overlap = 4 << 20, 128 << 10
	buf := make([]byte, window+overlap)
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data past off
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return false, err
		}
		for pos := data; pos < hole; pos += window {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			for _, pat := range pats {
				if bytes.Contains(buf[:n], pat) {
					return true, nil
				}
			}
		}
		off = hole
	}
	return false, nil
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A secret mapped into an exec reaches the guest's environment and its
// tmpfs, and shows only as [REDACTED] in the result, the host output files,
// the journal and the summary, also when the guest splits it across
// writes; on the host it is in secrets.json (0600) alone, and gone with the
// workspace.
func TestSecretsExec(t *testing.T) {
	h := newHarness(t)
	ws := h.create(contract.CreateRequest{Secrets: map[string]contract.SecretSource{
		"npm": {Value: tokenValue},
		"key": {File: secretFile(t, fileValue+"\n")},
	}})
	id := ws.ID
	if len(ws.Secrets) != 2 || ws.Secrets[0].Name != "key" || ws.Secrets[0].Source != "file" || ws.Secrets[1].Source != "value" {
		t.Fatalf("status secrets: %+v", ws.Secrets)
	}
	vm := h.vm(id)
	if got, _ := vm.file(guestSecretsDir + "/key"); got != fileValue {
		t.Fatalf("guest file holds %q, want %q (no trailing newline)", got, fileValue)
	}
	vm.mu.Lock()
	mode := vm.files[guestSecretsDir+"/npm"].Mode
	vm.mu.Unlock()
	if mode != 0o400 {
		t.Errorf("guest secret mode %o", mode)
	}
	var gotEnv map[string]string
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		gotEnv = req.Env
		v := req.Env["TOKEN"]
		// Split across writes, and twice in a row.
		io.WriteString(stdout, "token="+v[:5])
		io.WriteString(stdout, v[5:]+"\n"+v[:1])
		io.WriteString(stdout, v[1:]+"\n")
		io.WriteString(stderr, "file: "+fileValue)
		return proto.ExecResult{ExitCode: 3, DiskFull: []string{"/" + tokenValue}}, nil
	}
	r, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "echo $TOKEN " + fileValue, EnvVars: map[string]string{"A": "b"},
		SecretEnv: map[string]string{"TOKEN": "npm"}, TimeoutSeconds: 5})
	if err != nil {
		t.Fatal(err)
	}
	if gotEnv["TOKEN"] != tokenValue || gotEnv["A"] != "b" {
		t.Errorf("guest env %v", gotEnv)
	}
	if string(r.Stdout) != "token=[REDACTED]\n[REDACTED]\n" || string(r.Stderr) != "file: [REDACTED]" {
		t.Errorf("result: stdout %q, stderr %q", r.Stdout, r.Stderr)
	}
	if strings.Contains(r.Limited, tokenValue) || !strings.Contains(r.Limited, "[REDACTED]") {
		t.Errorf("limited note: %q", r.Limited)
	}
	for _, p := range []string{r.StdoutPath, r.StderrPath} {
		if b, err := os.ReadFile(p); err != nil || !bytes.Contains(b, []byte("[REDACTED]")) {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 50})
	last := logs.Entries[len(logs.Entries)-1]
	if last.Command != "echo $TOKEN [REDACTED]" {
		t.Errorf("journal command %q", last.Command)
	}
	sum, err := h.m.Summary(bg, id)
	if err != nil || sum.Commands[0].Command != "echo $TOKEN [REDACTED]" {
		t.Errorf("summary: %+v %v", sum.Commands, err)
	}

	// The host keeps the values in secrets.json, 0600, and nowhere else:
	// not the disk layers, not the journal, not out/.
	dir := filepath.Join(h.state, "workspaces", id)
	fi, err := os.Stat(filepath.Join(dir, secretsName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.json: %v %v", fi, err)
	}
	if _, err := h.m.SnapshotCreate(bg, contract.SnapshotRequest{ID: id, Name: "snap"}); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, dir, tokenValue, fileValue); len(hits) != 1 || filepath.Base(hits[0]) != secretsName {
		t.Errorf("the values are in %v", hits)
	}
	// Restarted, the guest gets them again (its /run is a tmpfs).
	if _, err := h.m.Stop(bg, id); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.vm(id).file(guestSecretsDir + "/npm"); got != tokenValue {
		t.Errorf("after restart the guest has %q", got)
	}
	if err := h.m.Delete(bg, id); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, h.state, tokenValue, fileValue); len(hits) != 0 {
		t.Errorf("after delete the values are in %v", hits)
	}
}

// secret_set and secret_delete change the host file and a running guest;
// a restarted server reads them back; unknown names say which there are.
func TestSecretSetDelete(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	dir := filepath.Join(h.state, "workspaces", id)
	if _, err := os.Stat(filepath.Join(dir, secretsName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a workspace without secrets has a secrets file: %v", err)
	}
	_, err := h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x", SecretEnv: map[string]string{"T": "npm"}})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, "has none") {
		t.Errorf("unknown secret: %v", e)
	}
	ws, err := h.m.SecretSet(bg, id, "npm", contract.SecretSource{Value: tokenValue})
	if err != nil || len(ws.Secrets) != 1 || ws.Secrets[0].Name != "npm" {
		t.Fatalf("set: %+v %v", ws.Secrets, err)
	}
	if got, _ := h.vm(id).file(guestSecretsDir + "/npm"); got != tokenValue {
		t.Errorf("running guest has %q", got)
	}
	if _, err := h.m.SecretSet(bg, id, "other", contract.SecretSource{Value: "other-value"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x", SecretEnv: map[string]string{"T": "nope"}})
	if e := wantCode(t, err, contract.CodeInvalid); !strings.Contains(e.Msg, "has npm, other") {
		t.Errorf("unknown secret: %v", e)
	}
	// Errors are redacted too.
	h.w.exec = func(ctx context.Context, vm *fakeVM, req proto.ExecRequest, stdout, stderr io.Writer) (proto.ExecResult, error) {
		return proto.ExecResult{}, &proto.Error{Code: "EIO", Message: "broke on " + tokenValue}
	}
	_, err = h.m.Exec(bg, contract.ExecRequest{ID: id, Command: "x"})
	if err == nil || strings.Contains(err.Error(), tokenValue) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("error: %v", err)
	}
	var pe *proto.Error
	if !errors.As(err, &pe) {
		t.Errorf("the redacted error lost its cause: %v", err)
	}
	h.w.exec = nil

	// Reopened, the server has them still.
	h.m.Close()
	h.open()
	st, err := h.m.Status(bg, id)
	if err != nil || len(st.Secrets) != 2 {
		t.Fatalf("after reopen: %+v %v", st.Secrets, err)
	}
	if _, err := h.m.Start(bg, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.vm(id).file(guestSecretsDir + "/other"); got != "other-value" {
		t.Errorf("guest after reopen has %q", got)
	}
	logs, _ := h.m.Logs(bg, contract.LogsRequest{ID: id, Limit: 50})
	for _, e := range logs.Entries {
		if strings.Contains(e.Command+e.Detail, tokenValue) {
			t.Errorf("journal: %+v", e)
		}
	}

	if _, err := h.m.SecretDelete(bg, id, "npm"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.vm(id).file(guestSecretsDir + "/npm"); ok {
		t.Error("deleted secret still in the guest")
	}
	_, err = h.m.SecretDelete(bg, id, "npm")
	wantCode(t, err, contract.CodeInvalid)
	if _, err := h.m.SecretDelete(bg, id, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, secretsName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("secrets file after deleting every secret: %v", err)
	}
}

func TestSecretSources(t *testing.T) {
	h := newHarness(t)
	id := h.create(contract.CreateRequest{}).ID
	for _, c := range []struct {
		src  contract.SecretSource
		want string
	}{
		{contract.SecretSource{Value: "abc"}, "at least 4"},
		{contract.SecretSource{File: secretFile(t, "abc\n")}, "at least 4"},
		{contract.SecretSource{File: secretFile(t, strings.Repeat("x", contract.MaxSecretBytes+1))}, "at most"},
		{contract.SecretSource{File: "/etc/hostname"}, "outside the host directories"},
		{contract.SecretSource{File: filepath.Join(t.TempDir(), "missing")}, "missing"},
	} {
		_, err := h.m.SecretSet(bg, id, "s", c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.src, err, c.want)
		}
	}
	if _, err := h.m.SecretSet(bg, id, "s", contract.SecretSource{File: secretFile(t, strings.Repeat("x", contract.MaxSecretBytes)+"\n")}); err != nil {
		t.Errorf("a MaxSecretBytes file with a newline: %v", err)
	}
	_, err := h.m.SecretSet(bg, id, "../x", contract.SecretSource{Value: "abcd"})
	wantCode(t, err, contract.CodeInvalid)
	// A create with a bad secret makes nothing.
	_, err = h.m.Create(bg, contract.CreateRequest{TTLSeconds: 600, Seed: contract.SeedSpec{Kind: contract.SeedNone},
		Secrets: map[string]contract.SecretSource{"a": {Value: "ab"}}})
	wantCode(t, err, contract.CodeInvalid)
	if n := len(h.workspaceDirs()); n != 1 {
		t.Errorf("%d workspace dirs", n)
	}
}

// The console log is redacted as a stream with the workspace's secrets of
// the moment: a value split across two console writes is caught, and a
// secret set later applies from then on.
func TestConsoleRedacted(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "console")
	if err != nil {
		t.Fatal(err)
	}
	var cur *redact.Set
	cw := &cappedWriter{f: f, max: 1 << 20, secrets: func() *redact.Set { return cur }}
	cw.Write([]byte("before any secret: hunter22\n"))
	s, err := redact.New([][]byte{[]byte("hunter22")})
	if err != nil {
		t.Fatal(err)
	}
	cur = s
	cw.Write([]byte("split hun"))
	cw.Write([]byte("ter22 across writes\n"))
	cw.Close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if want := "before any secret: hunter22\nsplit [REDACTED] across writes\n"; string(b) != want {
		t.Fatalf("console log %q, want %q", b, want)
	}
}

// Service status and logs are redacted; a log chunk that ends inside a
// secret stops before it, so the next read from its cursor redacts the
// whole value.
func TestServiceOutputRedacted(t *testing.T) {
	set, err := redact.New([][]byte{[]byte("pa55word-xyz")})
	if err != nil {
		t.Fatal(err)
	}
	w := &workspace{}
	w.sec.set = set
	st := w.scrubService(proto.ServiceStatus{Command: "db --password pa55word-xyz", Message: "pa55word-xyz rejected",
		Tail: &proto.ServiceTail{Stderr: []byte("auth pa55word-xyz\n")}})
	if strings.Contains(st.Command+st.Message+string(st.StderrTail), "pa55") {
		t.Errorf("service status leaks the secret: %+v", st)
	}
	log := []byte("login with pa55word-xyz ok\n")
	cut := bytes.Index(log, []byte("word"))
	first := w.scrubLogs(&proto.LogChunk{Data: log[:cut], Offset: 0, Next: int64(cut), Total: int64(len(log))})
	if string(first.Data) != "login with " || first.Next != int64(len("login with ")) {
		t.Fatalf("chunk ending inside the secret: %q, next %d", first.Data, first.Next)
	}
	second := w.scrubLogs(&proto.LogChunk{Data: log[first.Next:], Offset: first.Next, Next: int64(len(log)), Total: int64(len(log))})
	if string(second.Data) != "[REDACTED] ok\n" || second.Next != int64(len(log)) {
		t.Fatalf("next chunk: %q, next %d", second.Data, second.Next)
	}
}
