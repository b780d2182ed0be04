package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// sipgo keeps its default logger in an unguarded package variable that
// its goroutines read at any time (a TCP reader may outlive the server
// that started it). So the variable is set once per process, to a logger
// whose handler forwards to whichever logger serve installed last; a
// second serve in the same process (tests, a restart in place) swaps the
// target atomically instead of writing the variable under running readers.
var (
	sipLogTarget atomic.Pointer[slog.Logger]
	sipLogOnce   sync.Once
)

func setSIPLogger(log *slog.Logger) {
	sipLogTarget.Store(log)
	sipLogOnce.Do(func() { sip.SetDefaultLogger(slog.New(sipLogForward{})) })
}

// sipLogForward is a slog.Handler that hands each record to the current
// target's handler, with whatever attributes and groups were added on the
// way (sipgo adds "caller" through With).
type sipLogForward struct {
	ops []func(slog.Handler) slog.Handler
}

func (f sipLogForward) target() slog.Handler {
	h := sipLogTarget.Load().Handler()
	for _, op := range f.ops {
		h = op(h)
	}
	return h
}

func (f sipLogForward) Enabled(ctx context.Context, l slog.Level) bool {
	return sipLogTarget.Load().Handler().Enabled(ctx, l)
}

func (f sipLogForward) Handle(ctx context.Context, r slog.Record) error {
	return f.target().Handle(ctx, r)
}

func (f sipLogForward) WithAttrs(as []slog.Attr) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(as) })
}

func (f sipLogForward) WithGroup(name string) slog.Handler {
	return f.with(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

func (f sipLogForward) with(op func(slog.Handler) slog.Handler) slog.Handler {
	ops := make([]func(slog.Handler) slog.Handler, len(f.ops), len(f.ops)+1)
	copy(ops, f.ops)
	return sipLogForward{ops: append(ops, op)}
}
