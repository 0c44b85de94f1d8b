package site_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// BenchmarkBackupUnderLoad measures writes blocked per backup (host clock: freeze started ->
// thaw returned) and each step's duration, over b.N backups of the local site's primary under
// pgbench load, twice:
//
//   - host-only: the local runner starts each script at once and returns as it exits, so the
//     window holds only what happens on the host and in the function between the two
//     commands (the snapshot).
//   - aws-shaped: the runner adds site.DefaultSSMLatency where SSM Run Command adds it in AWS,
//     so the window also holds the freeze's completion report, the GetCommandInvocation polls
//     that find it, and the thaw's delivery and start. ssm-in-window-p50-ms is that part.
//
// Run it with at least 20 backups each: `make bench` uses -benchtime 20x.
func BenchmarkBackupUnderLoad(b *testing.B) {
	s := upSite(b, site.Options{PgbenchScale: 2, Retention: snapset.Policy{KeepLast: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	stopBench, err := s.PG[s.Hosts[0].InstanceID].StartPgbench(ctx, 4)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = stopBench() }()
	time.Sleep(time.Second)
	for _, tc := range []struct {
		name    string
		latency *site.SSMLatency
	}{
		{name: "host-only"},
		{name: "aws-shaped", latency: &site.DefaultSSMLatency},
	} {
		b.Run(tc.name, func(b *testing.B) { benchBackups(ctx, b, s, tc.latency) })
	}
}

func benchBackups(ctx context.Context, b *testing.B, s *site.Site, latency *site.SSMLatency) {
	var blocked, inWindow []float64
	steps := map[string][]float64{}
	for b.Loop() {
		job, err := site.BackupJob(ctx, s.State, quietLog(), &metrics.Recorder{})
		if err != nil {
			b.Fatal(err)
		}
		runner := &site.Runner{Site: s.State, Latency: latency}
		job.Hosts = runner
		res := invoke[backup.Result](ctx, b, job.Handle, fmt.Sprintf(`{"cluster":%q}`, s.Cluster))
		if res.Status != "completed" {
			b.Fatalf("backup %d: %+v", len(blocked), res)
		}
		blocked = append(blocked, res.WritesBlockedMS)
		for k, v := range res.StepsMS {
			steps[k] = append(steps[k], v)
		}
		inWindow = append(inWindow, ssmInWindowMS(b, runner.Invocations()))
	}
	b.ReportMetric(percentile(blocked, 50), "blocked-p50-ms")
	b.ReportMetric(percentile(blocked, 99), "blocked-p99-ms")
	b.ReportMetric(percentile(inWindow, 50), "ssm-in-window-p50-ms")
	b.ReportMetric(float64(len(blocked)), "backups")
	for _, k := range []string{"freeze", "snapshot", "thaw", "total"} {
		b.ReportMetric(percentile(steps[k], 50), k+"-p50-ms")
	}
	b.Logf("%d backups: writes blocked p50 %.1f ms, p99 %.1f ms, max %.1f ms (SSM's part p50 %.0f ms); steps p50: freeze %.0f ms, snapshot %.0f ms, thaw %.0f ms, total %.0f ms",
		len(blocked), percentile(blocked, 50), percentile(blocked, 99), percentile(blocked, 100), percentile(inWindow, 50),
		percentile(steps["freeze"], 50), percentile(steps["snapshot"], 50), percentile(steps["thaw"], 50), percentile(steps["total"], 50))
}

// ssmInWindowMS is the time SSM's modelled latency added inside the frozen window of one backup:
// from the freeze script's exit to the function seeing its result, and from sending the thaw
// to the thaw script starting. 0 without latency, up to the runner's scheduling noise.
func ssmInWindowMS(b *testing.B, invs []site.Invocation) float64 {
	var freeze, thaw *site.Invocation
	for i := range invs {
		switch invs[i].Script {
		case hostscripts.Freeze:
			freeze = &invs[i]
		case hostscripts.Thaw:
			if thaw == nil {
				thaw = &invs[i] // the first thaw ends the window
			}
		}
	}
	if freeze == nil || thaw == nil {
		b.Fatalf("a backup without a freeze and a thaw: %d script runs", len(invs))
	}
	d := freeze.Returned.Sub(freeze.Exited) + thaw.Started.Sub(thaw.Sent)
	return float64(d.Microseconds()) / 1000
}

// percentile is the nearest-rank percentile.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(p/100*float64(len(s))+0.5) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}
