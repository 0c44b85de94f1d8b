// Package retry is the one way pgfleet retries an operation: a bounded number of attempts with
// jittered exponential pauses that end when the context does. Tests shrink the parameters; no
// caller sleeps on its own.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff bounds the retries of one operation.
type Backoff struct {
	// Attempts is the most calls made, the first one included (at least 1).
	Attempts int
	// Initial caps the pause before the first retry; the cap doubles with every retry up to
	// Max, and each pause is drawn uniformly below its cap (full jitter: callers that retry at
	// the same moment spread out).
	Initial time.Duration
	Max     time.Duration
}

// Limit is the cap of the pause before retry n (1 for the first retry).
func (b Backoff) Limit(n int) time.Duration {
	limit := b.Initial
	for i := 1; i < n && limit < b.Max; i++ {
		limit *= 2
	}
	return max(min(limit, b.Max), 0)
}

// Pause is the pause before retry n: uniform in [0, Limit(n)].
func (b Backoff) Pause(n int) time.Duration {
	limit := b.Limit(n)
	if limit <= 0 {
		return 0
	}
	return rand.N(limit + 1)
}

// MaxPauses is the longest all the pauses of one operation can take together: what a deadline
// must leave for them.
func (b Backoff) MaxPauses() time.Duration {
	var d time.Duration
	for n := 1; n < b.Attempts; n++ {
		d += b.Limit(n)
	}
	return d
}

// Do calls fn until it succeeds, returns an error retryable rejects (nil retryable retries
// every error), the attempts are used up, or ctx ends during a pause. It returns the number of
// calls made and fn's last error.
func Do(ctx context.Context, b Backoff, retryable func(error) bool, fn func(attempt int) error) (int, error) {
	_, n, err := Value(ctx, b, retryable, func(attempt int) (struct{}, error) { return struct{}{}, fn(attempt) })
	return n, err
}

// Value is Do for an operation that returns a value: the value of the last call.
func Value[T any](ctx context.Context, b Backoff, retryable func(error) bool, fn func(attempt int) (T, error)) (T, int, error) {
	attempts := max(b.Attempts, 1)
	for n := 1; ; n++ {
		out, err := fn(n)
		if err == nil || n >= attempts || (retryable != nil && !retryable(err)) {
			return out, n, err
		}
		if Sleep(ctx, b.Pause(n)) != nil {
			return out, n, err
		}
	}
}

// Sleep waits d, or less when ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
