// Package logctx carries a run's logger in its context, so that every line of a run, the
// adapters' included, says which cluster, request and step it belongs to. A job puts its logger
// (with the cluster and request id) in the context once, and each step adds its name; adapters
// log through From(ctx). In Lambda, a line without that context cannot be tied to a run.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns a context carrying l.
func With(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, key{}, l)
}

// From returns the logger ctx carries, or fallback when it carries none (slog.Default() when
// fallback is nil).
func From(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(key{}).(*slog.Logger); ok && l != nil {
		return l
	}
	if fallback != nil {
		return fallback
	}
	return slog.Default()
}

// Step returns ctx with its logger's step set to name, and that logger.
func Step(ctx context.Context, name string) (context.Context, *slog.Logger) {
	l := From(ctx, nil).With("step", name)
	return With(ctx, l), l
}
