package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// Readiness checks run by the agent itself, inside the guest: a file
// exists, a TCP port on the loopback accepts, an HTTP URL answers 2xx or
// 3xx, or a command exits 0. The check is repeated every interval until
// it passes or the timeout passes.

// checkTimeout bounds one attempt of a tcp, http or command check.
const checkTimeout = 5 * time.Second

// checkReadiness checks a readiness spec's fields.
func checkReadiness(r *proto.Readiness) error {
	switch r.Kind {
	case "":
		if r.Path != "" || r.Port != 0 || r.URL != "" || r.Command != "" {
			return invalidf("readiness needs a kind (file, tcp, http or command) to go with its path, port, url or command")
		}
		return nil
	case proto.ReadyFile:
		if r.Path == "" {
			return invalidf("file readiness needs a path")
		}
	case proto.ReadyTCP:
		if r.Port < 1 || r.Port > 65535 {
			return invalidf("tcp readiness needs a port from 1 to 65535, not %d", r.Port)
		}
	case proto.ReadyHTTP:
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalidf("http readiness needs an http:// or https:// URL, not %q", r.URL)
		}
	case proto.ReadyCommand:
		if r.Command == "" {
			return invalidf("command readiness needs a command")
		}
	default:
		return invalidf("readiness kind %q: use file, tcp, http or command", r.Kind)
	}
	if r.TimeoutMs < 0 || msDuration(r.TimeoutMs) > proto.MaxReadyTimeout || r.IntervalMs < 0 || r.IntervalMs > r.TimeoutMs && r.TimeoutMs > 0 {
		return invalidf("readiness timeout_ms must be 0 to %d and interval_ms 0 to timeout_ms", proto.MaxReadyTimeout.Milliseconds())
	}
	return nil
}

// readinessString describes a check for people.
func readinessString(r *proto.Readiness) string {
	switch r.Kind {
	case proto.ReadyFile:
		return "file " + clipString(r.Path, 512) + " exists"
	case proto.ReadyTCP:
		return "tcp port " + strconv.Itoa(r.Port) + " accepts"
	case proto.ReadyHTTP:
		return "http GET " + clipString(r.URL, 512) + " answers 2xx/3xx"
	case proto.ReadyCommand:
		return "command " + clipString(r.Command, 512) + " exits 0"
	}
	return "none (ready once started)"
}

// waitReady repeats the service's check until it passes (nil), the
// timeout passes (an error saying what the last attempt saw), or stop
// closes.
func (sv *service) waitReady(stop <-chan struct{}, cg *execCgroup) error {
	r := &sv.spec.Readiness
	timeout := msOr(r.TimeoutMs, proto.DefaultReadyTimeout)
	interval := msOr(r.IntervalMs, proto.DefaultReadyInterval)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		err := sv.check(ctx, cg)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not pass within %v (last attempt: %v)", readinessString(r), timeout, err)
		case <-time.After(interval):
		}
	}
}

// check runs one attempt of the service's readiness check.
func (sv *service) check(ctx context.Context, cg *execCgroup) error {
	r := &sv.spec.Readiness
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	switch r.Kind {
	case proto.ReadyFile:
		p := r.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(sv.cwd, p)
		} else if mapped, err := sv.s.path(p); err == nil {
			p = mapped
		}
		_, err := os.Stat(p)
		return err
	case proto.ReadyTCP:
		var d net.Dialer
		var err error
		for _, host := range []string{"127.0.0.1", "::1"} {
			var c net.Conn
			if c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(r.Port))); err == nil {
				c.Close()
				return nil
			}
		}
		return err
	case proto.ReadyHTTP:
		client := &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // a dev server's own certificate, on the guest's loopback
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil
	case proto.ReadyCommand:
		return sv.runCheck(ctx, cg)
	}
	return nil
}

// runCheck runs a command check as the service would run: its user,
// environment, working directory and cgroup; killed (its whole process
// group) when ctx ends.
func (sv *service) runCheck(ctx context.Context, cg *execCgroup) error {
	cmd := &exec.Cmd{Path: "/bin/sh", Args: []string{"/bin/sh", "-c", sv.spec.Readiness.Command}, Env: sv.env, Dir: sv.cwd,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: sv.cred}}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.fd.Fd())
	}
	pid, waitc, err := sv.s.reaper.start(cmd)
	if err != nil {
		return err
	}
	select {
	case ws := <-waitc:
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		if ws.Exited() {
			return fmt.Errorf("the command exited %d", ws.ExitStatus())
		}
		return errors.New("the command was killed by " + ws.Signal().String())
	case <-ctx.Done():
		if pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		<-waitc
		return fmt.Errorf("the command did not finish: %w", ctx.Err())
	}
}
