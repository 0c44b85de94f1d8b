package retry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/retry"
)

func TestLimitsAndPauses(t *testing.T) {
	b := retry.Backoff{Attempts: 5, Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	for i, w := range want {
		if got := b.Limit(i + 1); got != w {
			t.Errorf("Limit(%d) = %s, want %s", i+1, got, w)
		}
		for range 100 {
			if p := b.Pause(i + 1); p < 0 || p > w {
				t.Fatalf("Pause(%d) = %s, outside [0, %s]", i+1, p, w)
			}
		}
	}
	if got := b.MaxPauses(); got != 900*time.Millisecond {
		t.Errorf("MaxPauses = %s, want 900ms", got)
	}
	if got := (retry.Backoff{Attempts: 1, Initial: time.Second, Max: time.Second}).MaxPauses(); got != 0 {
		t.Errorf("one attempt pauses %s", got)
	}
}

func TestDo(t *testing.T) {
	fast := retry.Backoff{Attempts: 4, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	errTransient, errPermanent := errors.New("throttled"), errors.New("access denied")
	tests := []struct {
		name      string
		fails     []error // the error of each call; nil once it succeeds
		retryable func(error) bool
		wantCalls int
		wantErr   error
	}{
		{name: "succeeds at once", fails: []error{nil}, wantCalls: 1},
		{name: "succeeds on the third call", fails: []error{errTransient, errTransient, nil}, wantCalls: 3},
		{name: "attempts used up", fails: []error{errTransient, errTransient, errTransient, errTransient, nil}, wantCalls: 4, wantErr: errTransient},
		{name: "an error not worth retrying", fails: []error{errPermanent, nil}, retryable: func(err error) bool { return err == errTransient }, wantCalls: 1, wantErr: errPermanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			n, err := retry.Do(context.Background(), fast, tc.retryable, func(attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				return tc.fails[calls-1]
			})
			if n != tc.wantCalls || calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Do = %d, %v (calls %d); want %d, %v", n, err, calls, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// TestDoStopsWhenTheContextEnds: a pause never outlives the caller's context.
func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	slow := retry.Backoff{Attempts: 10, Initial: time.Hour, Max: time.Hour}
	start := time.Now()
	n, err := retry.Do(ctx, slow, nil, func(int) error { return errors.New("down") })
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Do took %s after its context ended", took)
	}
	if err == nil {
		t.Errorf("Do = %d, nil; want the last error", n)
	}
}

// TestPausesSpreadOverTheirRange: full jitter, each pause anywhere below its cap.
func TestPausesSpreadOverTheirRange(t *testing.T) {
	b := retry.Backoff{Attempts: 10, Initial: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		retry int
		cap   time.Duration
	}{
		{retry: 1, cap: 100 * time.Millisecond},
		{retry: 2, cap: 200 * time.Millisecond},
		{retry: 3, cap: 400 * time.Millisecond},
		{retry: 4, cap: 800 * time.Millisecond},
		{retry: 5, cap: time.Second},
		{retry: 9, cap: time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.retry), func(t *testing.T) {
			var lo, hi time.Duration = tc.cap, 0
			for range 2000 {
				d := b.Pause(tc.retry)
				if d < 0 || d > tc.cap {
					t.Fatalf("pause %s outside [0, %s]", d, tc.cap)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// Full jitter: the pauses spread over the whole range.
			if lo > tc.cap/10 || hi < tc.cap*9/10 {
				t.Errorf("pauses between %s and %s, want them spread over [0, %s]", lo, hi, tc.cap)
			}
		})
	}
}
