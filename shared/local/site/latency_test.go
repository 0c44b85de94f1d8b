package site_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/aws/ssmx"
	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
)

// The result is seen at the first poll of the function's schedule at or after it is visible,
// as ssmx's Runner sees it.
func TestSSMLatencyResultSeen(t *testing.T) {
	sent := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ms := func(n float64) time.Time { return sent.Add(time.Duration(n * float64(time.Millisecond))) }
	for _, tc := range []struct {
		name           string
		l              site.SSMLatency
		exited, seenAt time.Time
	}{
		// Polls at 100, 250, 475, 812.5, 1318.75, 2078.125, 3078.125, 4078.125 ms (x1.5, at most 1 s apart).
		{"visible before the first poll", site.SSMLatency{Poll: ssmx.DefaultPoll}, ms(50), ms(100)},
		{"visible on a poll", site.SSMLatency{Poll: ssmx.DefaultPoll}, ms(250), ms(250)},
		{"completion delay", site.SSMLatency{Completion: time.Second, Poll: ssmx.DefaultPoll}, ms(300), ms(1318.75)},
		{"polls 1 s apart at most", site.SSMLatency{Completion: time.Second, Poll: ssmx.DefaultPoll}, ms(2100), ms(4078.125)},
		{"the default model", site.DefaultSSMLatency, ms(1300), ms(3078.125)},
		{"no poll schedule: seen when visible", site.SSMLatency{Completion: time.Second}, ms(300), ms(1300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.ResultSeen(sent, tc.exited); !got.Equal(tc.seenAt) {
				t.Fatalf("seen at %v, want %v", got.Sub(sent), tc.seenAt.Sub(sent))
			}
		})
	}
	if site.DefaultSSMLatency.Poll != ssmx.DefaultPoll {
		t.Fatalf("the default model polls on %+v, the backup function on %+v", site.DefaultSSMLatency.Poll, ssmx.DefaultPoll)
	}
}

// With a latency model the local runner delays each script's start by the delivery time and
// its result by the completion time and the poll schedule, so that a backup's writes-blocked
// window (host clock) holds the freeze's completion and the thaw's delivery, and not the
// freeze's delivery, which happens before anything is frozen.
func TestSSMLatencySitsWhereItDoesInAWS(t *testing.T) {
	s := upSite(t, site.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := site.SSMLatency{Delivery: 700 * time.Millisecond, Completion: 400 * time.Millisecond, Poll: ssmx.DefaultPoll}
	job, err := site.BackupJob(ctx, s.State, quietLog(), &metrics.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	runner := &site.Runner{Site: s.State, Latency: &l}
	job.Hosts = runner
	res := invoke[backup.Result](ctx, t, job.Handle, fmt.Sprintf(`{"cluster":%q}`, s.Cluster))
	if res.Status != "completed" {
		t.Fatalf("backup: %+v", res)
	}
	var freeze, thaw site.Invocation
	for _, inv := range runner.Invocations() {
		if inv.Script == hostscripts.Freeze {
			freeze = inv
		}
		if inv.Script == hostscripts.Thaw && thaw.Script == "" {
			thaw = inv
		}
	}
	if freeze.Script == "" || thaw.Script == "" {
		t.Fatalf("no freeze or thaw in %+v", runner.Invocations())
	}
	for _, inv := range []site.Invocation{freeze, thaw} {
		if d := inv.Started.Sub(inv.Sent); d < l.Delivery {
			t.Errorf("%s started %v after it was sent, want at least the delivery time %v", inv.Script, d, l.Delivery)
		}
		seen := l.ResultSeen(inv.Sent, inv.Exited)
		if inv.Returned.Before(seen) || inv.Returned.Sub(inv.Exited) < l.Completion {
			t.Errorf("%s returned %v after it exited, before its result was visible and polled (%v)", inv.Script, inv.Returned.Sub(inv.Exited), seen.Sub(inv.Exited))
		}
	}
	inside := freeze.Returned.Sub(freeze.Exited) + thaw.Started.Sub(thaw.Sent)
	blocked := time.Duration(res.WritesBlockedMS * float64(time.Millisecond))
	if blocked < inside {
		t.Fatalf("writes blocked %v, shorter than the SSM time inside the window %v (freeze result %v after exit, thaw start %v after send)",
			blocked, inside, freeze.Returned.Sub(freeze.Exited), thaw.Started.Sub(thaw.Sent))
	}
	// The freeze's own delivery is before the freeze: the window (freeze started -> thaw
	// returned on the host) cannot reach back to the freeze being sent.
	if limit := thaw.Exited.Sub(freeze.Started); blocked > limit {
		t.Fatalf("writes blocked %v, longer than freeze start -> thaw exit %v: the freeze's delivery leaked into the window", blocked, limit)
	}
	t.Logf("writes blocked %v, of which SSM %v (freeze result after %v, thaw started after %v)", blocked, inside, freeze.Returned.Sub(freeze.Exited), thaw.Started.Sub(thaw.Sent))
}
