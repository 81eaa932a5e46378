package contract

import "context"

// Progress reports let a long operation (a create that boots a VM and
// seeds it, a reset, a start) tell the face that called it how far it got,
// without knowing what that face is: the MCP layer turns them into
// notifications/progress, a CLI could print them. A Backend calls Progress
// with the ctx it was given at each real stage; with no reporter on ctx the
// call does nothing, so backends call it unconditionally.

// ProgressFunc receives one report: stage is a short phrase a person or a
// model can read ("booting the microVM", "seeding /workspace"); done and
// total count the stage's work when it has a measure (files, bytes), else
// both are 0. It must not block for long and must not call back into the
// Backend.
type ProgressFunc func(stage string, done, total float64)

type progressKey struct{}

// WithProgress returns ctx carrying fn as its progress reporter.
func WithProgress(ctx context.Context, fn ProgressFunc) context.Context {
	if fn == nil {
		return ctx
	}
	return context.WithValue(ctx, progressKey{}, fn)
}

// Progress reports a stage to ctx's reporter, if it has one.
func Progress(ctx context.Context, stage string, done, total float64) {
	if fn, ok := ctx.Value(progressKey{}).(ProgressFunc); ok {
		fn(stage, done, total)
	}
}
