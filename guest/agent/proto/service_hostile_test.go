package proto

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A hostile agent's service answers: every one the Client returns is
// bounded (strings, tails, list length, log chunks no longer than asked
// and consistent with their offsets), or refused as a protocol error.

func TestHostileServiceAnswers(t *testing.T) {
	big := strings.Repeat("x", 300<<10) // three fit one frame
	tail := &ServiceTail{Stderr: []byte(strings.Repeat("e", ServiceTailBytes+1))}
	ctx := context.Background()
	for name, c := range map[string]struct {
		answer any
		call   func(c *Client) error
		ok     bool // the answer is accepted, clipped
	}{
		"long message clipped": {ServiceStatus{Name: "web", State: ServiceFailed, Message: big, Command: big, Readiness: big}, func(c *Client) error {
			st, err := c.ServiceStatus(ctx, "web")
			if err == nil && (len(st.Message) > maxServiceString || len(st.Command) > maxServiceString || len(st.Readiness) > maxServiceString) {
				t.Errorf("status strings not clipped: %d %d %d", len(st.Message), len(st.Command), len(st.Readiness))
			}
			return err
		}, true},
		"long state": {ServiceStatus{Name: "web", State: big}, func(c *Client) error { _, err := c.ServiceStatus(ctx, "web"); return err }, false},
		"long name":  {ServiceStatus{Name: big}, func(c *Client) error { _, err := c.ServiceStop(ctx, "web", time.Second); return err }, false},
		"big tail": {ServiceStatus{Name: "web", State: ServiceFailed, Tail: tail}, func(c *Client) error {
			_, err := c.ServiceStart(ctx, ServiceStartArgs{Name: "web", Argv: []string{"x"}})
			return err
		}, false},
		"too many services": {ServiceList{Services: make([]ServiceStatus, MaxServices+1)}, func(c *Client) error {
			_, err := c.ServiceList(ctx)
			return err
		}, false},
		"chunk over max": {ServiceLogs{Stdout: &LogChunk{Data: make([]byte, 101), Next: 101, Total: 101}}, func(c *Client) error {
			_, err := c.ServiceLogs(ctx, ServiceLogsArgs{Name: "web", MaxBytes: 100})
			return err
		}, false},
		"chunk next lies": {ServiceLogs{Stderr: &LogChunk{Data: []byte("abc"), Offset: 10, Next: 99, Total: 99}}, func(c *Client) error {
			_, err := c.ServiceLogs(ctx, ServiceLogsArgs{Name: "web"})
			return err
		}, false},
		"chunk past total": {ServiceLogs{Stdout: &LogChunk{Data: []byte("abc"), Offset: 10, Next: 13, Total: 5}}, func(c *Client) error {
			_, err := c.ServiceLogs(ctx, ServiceLogsArgs{Name: "web"})
			return err
		}, false},
		"honest chunk": {ServiceLogs{Stdout: &LogChunk{Data: []byte("abc"), Offset: 10, Next: 13, Total: 20, First: 4}}, func(c *Client) error {
			_, err := c.ServiceLogs(ctx, ServiceLogsArgs{Name: "web"})
			return err
		}, true},
	} {
		t.Run(name, func(t *testing.T) {
			a := newHostile(func(req *Request, enc *Encoder) error { return enc.WriteJSON(FrameResult, c.answer) })
			err := c.call(a.client())
			a.wait(t)
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok && !IsProtocol(err) {
				t.Fatalf("accepted, or not a protocol error: %v", err)
			}
		})
	}
}

// An older agent's "unknown operation" reads as unsupported, naming the
// rebuild.
func TestServiceUnsupported(t *testing.T) {
	a := newHostile(func(req *Request, enc *Encoder) error {
		return enc.WriteJSON(FrameError, &Error{Code: CodeInvalid, Message: `unknown operation "service_list" (this agent speaks protocol 3)`})
	})
	_, err := a.client().ServiceList(context.Background())
	a.wait(t)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeUnsupported || !strings.Contains(pe.Message, "pyro env build") {
		t.Fatalf("old agent: %v", err)
	}
}

// The service calls join FuzzClientAnswers's table.
func init() {
	clientCalls = append(clientCalls,
		func(t *testing.T, c *Client) error {
			st, err := c.ServiceStart(context.Background(), ServiceStartArgs{Name: "web", Shell: "x"})
			if err == nil && (len(st.Message) > maxServiceString || st.Tail != nil && len(st.Tail.Stderr) > ServiceTailBytes) {
				t.Errorf("ServiceStart returned a %d-byte message", len(st.Message))
			}
			return err
		},
		func(t *testing.T, c *Client) error {
			l, err := c.ServiceList(context.Background())
			if len(l) > MaxServices {
				t.Errorf("ServiceList returned %d services", len(l))
			}
			return err
		},
		func(t *testing.T, c *Client) error {
			const max = 1000
			l, err := c.ServiceLogs(context.Background(), ServiceLogsArgs{Name: "web", MaxBytes: max})
			if l.Stdout != nil && len(l.Stdout.Data) > max {
				t.Errorf("ServiceLogs returned %d bytes, asked for %d", len(l.Stdout.Data), max)
			}
			return err
		},
	)
}
