package proto

import (
	"context"
	"fmt"
	"time"
)

// The Client's service methods. Every answer is checked against the
// bounds a truthful agent keeps (MaxServices entries, string lengths,
// log chunks no longer than asked), so a hostile guest cannot make the
// host hold more than a few MiB per call.

// ServiceStart starts a service and waits (at most args.WaitMs) until it
// is ready or has failed; a service still starting then is not an error.
// A name already running is EEXIST.
func (c *Client) ServiceStart(ctx context.Context, args ServiceStartArgs) (ServiceStatus, error) {
	if !ServiceNamePattern.MatchString(args.Name) {
		return ServiceStatus{}, errorf(CodeInvalid, "service name %q must match %s", args.Name, ServiceNamePattern)
	}
	if (len(args.Argv) == 0) == (args.Shell == "") {
		return ServiceStatus{}, errorf(CodeInvalid, "a service needs exactly one of argv and shell")
	}
	st, err := call(ctx, c, OpServiceStart, args)
	return st, checkServiceStatus(&st, err)
}

// ServiceStatus returns one service; an unknown name is ENOENT.
func (c *Client) ServiceStatus(ctx context.Context, name string) (ServiceStatus, error) {
	st, err := call(ctx, c, OpServiceStatus, ServiceNameArgs{Name: name})
	return st, checkServiceStatus(&st, err)
}

// ServiceList returns every service the agent keeps, by name.
func (c *Client) ServiceList(ctx context.Context) ([]ServiceStatus, error) {
	l, err := call(ctx, c, OpServiceList, Empty{})
	return checkServiceList(l, err)
}

// ServiceStop stops a service: SIGTERM to its process group, SIGKILL to
// every process of its cgroup after grace (0: DefaultServiceGrace). It
// returns once the service has ended. Stopping an ended service returns
// its status.
func (c *Client) ServiceStop(ctx context.Context, name string, grace time.Duration) (ServiceStatus, error) {
	st, err := call(ctx, c, OpServiceStop, ServiceStopArgs{Name: name, GraceMs: ceilMs(grace)})
	return st, checkServiceStatus(&st, err)
}

// ServiceRestart stops a service if it runs, then starts it again with
// its spec, waiting as ServiceStart does.
func (c *Client) ServiceRestart(ctx context.Context, name string, grace, wait time.Duration) (ServiceStatus, error) {
	st, err := call(ctx, c, OpServiceRestart, ServiceRestartArgs{Name: name, GraceMs: ceilMs(grace), WaitMs: ceilMs(wait)})
	return st, checkServiceStatus(&st, err)
}

// ServiceStopAll stops every running service at once and returns them all.
func (c *Client) ServiceStopAll(ctx context.Context, grace time.Duration) ([]ServiceStatus, error) {
	l, err := call(ctx, c, OpServiceStopAll, ServiceStopAllArgs{GraceMs: ceilMs(grace)})
	return checkServiceList(l, err)
}

// ServiceLogs reads a service's logs (see ServiceLogsArgs).
func (c *Client) ServiceLogs(ctx context.Context, args ServiceLogsArgs) (ServiceLogs, error) {
	if args.MaxBytes <= 0 {
		args.MaxBytes = DefaultServiceLogRead
	}
	if args.MaxBytes > MaxServiceLogRead || args.TailLines < 0 || args.TailLines > MaxServiceTailLines ||
		args.StdoutOffset < 0 || args.StderrOffset < 0 {
		return ServiceLogs{}, errorf(CodeInvalid, "service_logs wants max_bytes up to %d, tail_lines 0 to %d and offsets >= 0",
			MaxServiceLogRead, MaxServiceTailLines)
	}
	l, err := call(ctx, c, OpServiceLogs, args)
	if err != nil {
		return ServiceLogs{}, err
	}
	for _, ch := range []*LogChunk{l.Stdout, l.Stderr} {
		if ch == nil {
			continue
		}
		if int64(len(ch.Data)) > args.MaxBytes || ch.Offset < 0 || ch.Next != ch.Offset+int64(len(ch.Data)) ||
			ch.First < 0 || ch.First > ch.Total || ch.Next > ch.Total || ch.Skipped < 0 || ch.Lost < 0 {
			return ServiceLogs{}, protoErrorf("guest sent an inconsistent service log chunk (%d bytes at %d, next %d, first %d, total %d; %d asked)",
				len(ch.Data), ch.Offset, ch.Next, ch.First, ch.Total, args.MaxBytes)
		}
	}
	return l, nil
}

// checkServiceStatus bounds a status's strings and tail, so a hostile
// guest's answer stays a few KiB in every result it reaches.
func checkServiceStatus(st *ServiceStatus, err error) error {
	if err != nil {
		return err
	}
	if len(st.Name) > 64 || len(st.State) > 16 || len(st.Reason) > 32 || len(st.Signal) > maxCodeLen {
		return protoErrorf("guest sent a service status with an overlong name, state, reason or signal")
	}
	st.Command = clip(st.Command, maxServiceString)
	st.Readiness = clip(st.Readiness, maxServiceString)
	st.Message = clip(st.Message, maxServiceString)
	if t := st.Tail; t != nil {
		if len(t.Stdout) > ServiceTailBytes || len(t.Stderr) > ServiceTailBytes {
			return protoErrorf("guest sent a service tail over %d bytes", ServiceTailBytes)
		}
	}
	return nil
}

func checkServiceList(l ServiceList, err error) ([]ServiceStatus, error) {
	if err != nil {
		return nil, err
	}
	if len(l.Services) > MaxServices {
		return nil, protoErrorf("guest listed %d services, more than the %d it may keep", len(l.Services), MaxServices)
	}
	for i := range l.Services {
		if err := checkServiceStatus(&l.Services[i], nil); err != nil {
			return nil, fmt.Errorf("service %d: %w", i, err)
		}
	}
	return l.Services, nil
}
