package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// restoredArgs are valid restored arguments.
func restoredArgs() proto.RestoredArgs {
	return proto.RestoredArgs{
		TimeNs:    1700000000000000001,
		Entropy:   bytes.Repeat([]byte{0xa5, 0x5a, 0x00, 0xff}, 16),
		Hostname:  "ws-2",
		BootID:    "5c1f3a8e-0b7d-4e2a-9f61-3d8c2b7a4e10",
		MachineID: "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8",
	}
}

func restoredErr(_ proto.RestoredResult, err error) error { return err }

// serveRaw serves one stream that sends in and returns the last frame of
// the answer.
func serveRaw(t *testing.T, srv *Server, in []byte) (proto.FrameType, string) {
	t.Helper()
	conn := &fuzzConn{r: bytes.NewReader(in)}
	srv.ServeConn(conn)
	dec := proto.NewDecoder(bytes.NewReader(conn.out.Bytes()))
	if _, err := proto.ReadHello(dec.Reader()); err != nil {
		t.Fatalf("no hello in the answer: %v", err)
	}
	var last proto.FrameType
	var payload []byte
	for {
		ft, p, err := dec.ReadFrame()
		if err != nil {
			break
		}
		last, payload = ft, append([]byte(nil), p...)
	}
	return last, string(payload)
}

// The agent checks restored's arguments itself (a host need not use the
// Client) and refuses bad ones before the system changes anything.
func TestRestoredRefusesBadArguments(t *testing.T) {
	for name, change := range map[string]func(a *proto.RestoredArgs){
		"no time":             func(a *proto.RestoredArgs) { a.TimeNs = 0 },
		"negative time":       func(a *proto.RestoredArgs) { a.TimeNs = -1 },
		"no entropy":          func(a *proto.RestoredArgs) { a.Entropy = nil },
		"31 bytes":            func(a *proto.RestoredArgs) { a.Entropy = a.Entropy[:31] },
		"513 bytes":           func(a *proto.RestoredArgs) { a.Entropy = make([]byte, 513) },
		"hostname with space": func(a *proto.RestoredArgs) { a.Hostname = "a b" },
		"hostname hyphen":     func(a *proto.RestoredArgs) { a.Hostname = "-ws" },
		"long hostname":       func(a *proto.RestoredArgs) { a.Hostname = strings.Repeat("h", 64) },
		"boot id upper":       func(a *proto.RestoredArgs) { a.BootID = strings.ToUpper(a.BootID) },
		"boot id short":       func(a *proto.RestoredArgs) { a.BootID = a.BootID[:35] },
		"boot id no hyphens":  func(a *proto.RestoredArgs) { a.BootID = strings.ReplaceAll(a.BootID, "-", "0") },
		"boot id newline":     func(a *proto.RestoredArgs) { a.BootID = a.BootID[:35] + "\n" },
		"boot id zero":        func(a *proto.RestoredArgs) { a.BootID = "00000000-0000-0000-0000-000000000000" },
		"machine id short":    func(a *proto.RestoredArgs) { a.MachineID = a.MachineID[:31] },
		"machine id dashes":   func(a *proto.RestoredArgs) { a.MachineID = a.BootID },
		"machine id zero":     func(a *proto.RestoredArgs) { a.MachineID = strings.Repeat("0", 32) },
		"machine id not hex":  func(a *proto.RestoredArgs) { a.MachineID = "g" + a.MachineID[1:] },
	} {
		a := restoredArgs()
		change(&a)
		fs := &fakeSystem{}
		ft, p := serveRaw(t, &Server{System: fs}, fuzzRequest(proto.OpRestored, a))
		var e proto.Error
		if ft != proto.FrameError || json.Unmarshal([]byte(p), &e) != nil || e.Code != proto.CodeInvalid || !strings.Contains(e.Message, "restored") {
			t.Errorf("%s: answered %v %s, want an invalid error", name, ft, p)
		}
		if len(fs.calls) != 0 {
			t.Errorf("%s: the system was called: %q", name, fs.calls)
		}
	}
}

// Entropy travels as base64; anything else is a protocol error.
func TestRestoredDecode(t *testing.T) {
	req := func(args string) []byte {
		return proto.AppendFrame(proto.Hello(proto.Version), proto.FrameRequest, []byte(`{"op":"restored","args":`+args+`}`))
	}
	entropy := bytes.Repeat([]byte("0123456789abcdef"), 3) // 48 bytes
	b64, _ := json.Marshal(entropy)
	fs := &fakeSystem{}
	ft, p := serveRaw(t, &Server{System: fs}, req(`{"time_ns":5,"entropy":`+string(b64)+`,"future":1}`))
	var res proto.RestoredResult
	if ft != proto.FrameResult || json.Unmarshal([]byte(p), &res) != nil || res.BootID != fakeBootID || !res.Reseeded {
		t.Fatalf("answered %v %s", ft, p)
	}
	if want := `restored 5 48 bytes "" "" ""`; len(fs.calls) != 1 || fs.calls[0] != want {
		t.Errorf("calls %q, want %q", fs.calls, want)
	}
	for _, args := range []string{`{"time_ns":5,"entropy":"not base64!"}`, `{"time_ns":5,"entropy":7}`, `{"time_ns":"5"}`} {
		if ft, p := serveRaw(t, &Server{System: fs}, req(args)); ft != proto.FrameError || !strings.Contains(p, `"protocol"`) {
			t.Errorf("%s: answered %v %s, want a protocol error", args, ft, p)
		}
	}
}

// The struct RNDADDENTROPY reads: entropy_count in bits, buf_size in
// bytes, then the bytes.
func TestRandPoolInfo(t *testing.T) {
	b := []byte("0123456789abcdef0123456789abcdefXY")
	p := randPoolInfo(b)
	if len(p) != 8+len(b) || binary.NativeEndian.Uint32(p) != uint32(8*len(b)) ||
		binary.NativeEndian.Uint32(p[4:]) != uint32(len(b)) || !bytes.Equal(p[8:], b) {
		t.Fatalf("rand_pool_info for %d bytes: % x", len(b), p)
	}
}

// fakeMounts is a mount table: each target's stack of bind sources, and
// the content each held when it was mounted.
type fakeMounts struct {
	stacks    map[string][]string
	detachErr error
	bindErr   error
}

func (m *fakeMounts) Detach(target string) error {
	if m.detachErr != nil {
		return m.detachErr
	}
	s := m.stacks[target]
	if len(s) == 0 {
		return unix.EINVAL
	}
	m.stacks[target] = s[:len(s)-1]
	return nil
}

func (m *fakeMounts) BindReadOnly(source, target string) error {
	if m.bindErr != nil {
		return m.bindErr
	}
	b, err := os.ReadFile(source)
	if err != nil {
		return err
	}
	m.stacks[target] = append(m.stacks[target], string(b))
	return nil
}

// Each restore leaves exactly one mount over the boot id, holding the
// latest id, however many were there.
func TestSetBootID(t *testing.T) {
	const target = "/proc/sys/kernel/random/boot_id"
	file := filepath.Join(t.TempDir(), "run", "pyro", "boot_id")
	m := &fakeMounts{stacks: map[string][]string{}}
	for _, id := range []string{"11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-aaaaaaaaaaaa"} {
		if err := setBootID(m, file, target, id); err != nil {
			t.Fatal(err)
		}
		if s := m.stacks[target]; len(s) != 1 || s[0] != id+"\n" {
			t.Fatalf("after setting %s: mounts %q, want one of %q", id, s, id+"\n")
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o444 {
			t.Fatalf("%s: %v, %v; want mode 0444", file, fi, err)
		}
	}
	if _, err := os.Stat(file + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file is left: %v", err)
	}
	// Mounts stacked by an agent without this care, or by hand, go too.
	m.stacks[target] = []string{"a", "b", "c"}
	if err := setBootID(m, file, target, "11111111-2222-4333-8444-555555555555"); err != nil || len(m.stacks[target]) != 1 {
		t.Fatalf("over three mounts: %v, mounts %q", err, m.stacks[target])
	}
	// Past the bound, it gives up rather than loop.
	m.stacks[target] = make([]string, maxBootIDMounts+1)
	if err := setBootID(m, file, target, "11111111-2222-4333-8444-555555555555"); err == nil || !strings.Contains(err.Error(), "still has mounts") {
		t.Errorf("over %d mounts: %v", maxBootIDMounts+1, err)
	}
	// Failures say what failed, and bind nothing.
	m.stacks[target] = []string{"old"}
	m.detachErr = unix.EPERM
	if err := setBootID(m, file, target, "11111111-2222-4333-8444-555555555555"); !errors.Is(err, unix.EPERM) ||
		!strings.Contains(err.Error(), "unmounting the previous boot id") || len(m.stacks[target]) != 1 {
		t.Errorf("detach failing: %v, mounts %q", err, m.stacks[target])
	}
	m.detachErr, m.bindErr = nil, unix.ENOENT
	if err := setBootID(m, file, target, "11111111-2222-4333-8444-555555555555"); !errors.Is(err, unix.ENOENT) || len(m.stacks[target]) != 0 {
		t.Errorf("bind failing: %v, mounts %q", err, m.stacks[target])
	}
}

func TestReplaceMachineID(t *testing.T) {
	const id = "3e9a6c1d0b7f48e2a5c4d3b2e1f0a9b8"
	dir := t.TempDir()
	path := filepath.Join(dir, "machine-id")

	// None, empty or a symlink: left alone.
	if ok, err := replaceMachineID(path, id); ok || err != nil {
		t.Fatalf("no machine-id: %v, %v", ok, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("created %s: %v", path, err)
	}
	os.WriteFile(path, nil, 0o444)
	if ok, err := replaceMachineID(path, id); ok || err != nil {
		t.Fatalf("empty machine-id: %v, %v", ok, err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("empty machine-id now holds %q", b)
	}
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("keep\n"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(other, link)
	if ok, err := replaceMachineID(link, id); ok || err != nil {
		t.Fatalf("symlinked machine-id: %v, %v", ok, err)
	}
	if b, _ := os.ReadFile(other); string(b) != "keep\n" {
		t.Fatalf("the symlink's target now holds %q", b)
	}

	// A machine id: replaced, keeping its mode, twice over.
	os.Remove(path)
	os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	for i, want := range []string{id, "ffffffffffffffff0000000000000001"} {
		if ok, err := replaceMachineID(path, want); !ok || err != nil {
			t.Fatalf("replace %d: %v, %v", i, ok, err)
		}
		b, _ := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if string(b) != want+"\n" || fi.Mode().Perm() != 0o444 {
			t.Fatalf("replace %d: %s holds %q, mode %v", i, path, b, fi.Mode())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("left behind: %v", ents)
	}
}

// Outside a guest restored is unsupported (TestSystemOps), but arguments
// come first: a bad request gets the error that says what is wrong.
func TestRestoredChecksFirst(t *testing.T) {
	a := restoredArgs()
	a.Entropy = nil
	ft, p := serveRaw(t, &Server{}, fuzzRequest(proto.OpRestored, a))
	if ft != proto.FrameError || !strings.Contains(p, fmt.Sprintf(`"code":"%s"`, proto.CodeInvalid)) {
		t.Errorf("bad restored outside a guest: %v %s, want invalid", ft, p)
	}
}
