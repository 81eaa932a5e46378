package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
	"github.com/pyro-mcp/pyro/guest/env"
)

// The initramfs builder and init must agree on where the module list is.
func TestModulesOrderPath(t *testing.T) {
	if ModulesOrderPath != env.ModulesOrderPath {
		t.Fatalf("agent reads %s, guest/env writes %s", ModulesOrderPath, env.ModulesOrderPath)
	}
}

func TestParseCmdline(t *testing.T) {
	got := parseCmdline(`console=ttyS0 ro  pyro.root=/dev/vda pyro.rootflags="errors=remount-ro,noatime" pyro.hostname=ws-1 quiet` + "\n")
	want := map[string]string{"console": "ttyS0", "ro": "", "pyro.root": "/dev/vda",
		"pyro.rootflags": "errors=remount-ro,noatime", "pyro.hostname": "ws-1", "quiet": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestRootFlags(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		flags  uintptr
		data   string
	}{
		{map[string]string{}, 0, ""},
		{map[string]string{"ro": ""}, unix.MS_RDONLY, ""},
		{map[string]string{"ro": "", "pyro.rootflags": "rw,noatime,discard,errors=remount-ro"}, unix.MS_NOATIME, "discard,errors=remount-ro"},
	} {
		f, d := rootFlags(tc.params)
		if f != tc.flags || d != tc.data {
			t.Errorf("%v: got %#x %q, want %#x %q", tc.params, f, d, tc.flags, tc.data)
		}
	}
}

// The PID 1 reaper, tested in a child process that is a child subreaper
// (orphans reparent to it, as to PID 1) so that its wait4(-1) cannot
// steal other tests' children.
func TestReaperAsSubreaper(t *testing.T) {
	if os.Getenv("PYRO_AGENT_REAPER_HELPER") == "1" {
		reaperHelper(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReaperAsSubreaper$", "-test.v")
	cmd.Env = append(os.Environ(), "PYRO_AGENT_REAPER_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "REAPER-OK") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
}

func reaperHelper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skip("PR_SET_CHILD_SUBREAPER:", err)
	}
	r := startReaper()
	c := serve(t, &Server{reaper: r})
	// Fast exits race the registration of their pid.
	for i := 0; i < 100; i++ {
		res, _, _ := run(t, c, proto.ExecRequest{Argv: []string{"sh", "-c", "exit " + strconv.Itoa(i%3)}})
		if res.ExitCode != i%3 {
			t.Fatalf("exec %d: %+v", i, res)
		}
	}
	res, _, _ := run(t, c, proto.ExecRequest{Shell: "kill -KILL $$"})
	if res.Signal != "SIGKILL" {
		t.Fatalf("signal: %+v", res)
	}
	// Orphans: the background sleeps outlive their shells and reparent here.
	for i := 0; i < 5; i++ {
		res, _, _ = run(t, c, proto.ExecRequest{Shell: "sleep 0.2 & exit 3"})
		if res.ExitCode != 3 {
			t.Fatalf("orphan maker: %+v", res)
		}
	}
	res, _, _ = run(t, c, proto.ExecRequest{Shell: "sleep 100 & sleep 100", Timeout: 100 * time.Millisecond})
	if !res.TimedOut {
		t.Fatalf("timeout: %+v", res)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		zombies := children(true)
		r.mu.Lock()
		orphans, waiting := r.orphans, len(r.waiting)
		r.mu.Unlock()
		if len(zombies) == 0 && orphans >= 6 && waiting == 0 && len(children(false)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zombies %v, children %v, orphans reaped %d, still waiting %d", zombies, children(false), orphans, waiting)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("REAPER-OK")
}

// children lists this process's children (only zombies if zombies).
func children(zombies bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == me && (!zombies || f[0] == "Z") {
			pid, _ := strconv.Atoi(e.Name())
			pids = append(pids, pid)
		}
	}
	return pids
}

// The vsock listener, over the kernel's vsock loopback where the host
// has it (module vsock_loopback).
func TestVsockLoopback(t *testing.T) {
	const port = 52052
	l, err := ListenVsock(port)
	if err != nil {
		t.Skip("no vsock here:", err)
	}
	defer l.Close()
	dial := func(ctx context.Context) (net.Conn, error) {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_LOCAL, Port: port}); err != nil {
			unix.Close(fd)
			return nil, err
		}
		unix.SetNonblock(fd, true)
		return &vsockConn{File: os.NewFile(uintptr(fd), "vsock-client")}, nil
	}
	ctx := ctxT(t)
	if conn, err := dial(ctx); err != nil {
		t.Skip("no vsock loopback here:", err)
	} else {
		conn.Close()
	}
	done := make(chan error, 1)
	go func() { done <- Serve(l) }()
	c := &proto.Client{Dial: dial}
	res, out, _ := run(t, c, proto.ExecRequest{Argv: []string{"echo", "over vsock"}})
	if res.ExitCode != 0 || out != "over vsock\n" {
		t.Fatalf("%+v %q", res, out)
	}
	l.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Serve after Close: %v", err)
	}
}
