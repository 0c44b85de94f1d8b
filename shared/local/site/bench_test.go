package site_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// BenchmarkBackupUnderLoad measures writes blocked per backup (host clock: freeze started ->
// thaw returned) and each step's duration, over b.N backups of the local site's primary under
// pgbench load. Run it with at least 20 backups: `make bench` uses -benchtime 20x.
func BenchmarkBackupUnderLoad(b *testing.B) {
	s := upSite(b, site.Options{PgbenchScale: 2, Retention: snapset.Policy{KeepLast: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	stopBench, err := s.PG[s.Hosts[0].InstanceID].StartPgbench(ctx, 4)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	var blocked []float64
	steps := map[string][]float64{}
	for b.Loop() {
		res := invokeBackup(ctx, b, s, &metrics.Recorder{})
		if res.Status != "completed" {
			b.Fatalf("backup %d: %+v", len(blocked), res)
		}
		blocked = append(blocked, res.WritesBlockedMS)
		for k, v := range res.StepsMS {
			steps[k] = append(steps[k], v)
		}
	}
	stats, err := stopBench()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(percentile(blocked, 50), "blocked-p50-ms")
	b.ReportMetric(percentile(blocked, 99), "blocked-p99-ms")
	b.ReportMetric(float64(len(blocked)), "backups")
	for _, k := range []string{"freeze", "snapshot", "thaw", "total"} {
		b.ReportMetric(percentile(steps[k], 50), k+"-p50-ms")
	}
	b.Logf("%d backups under pgbench (%d tx): writes blocked p50 %.1f ms, p99 %.1f ms, max %.1f ms; steps p50: freeze %.0f ms, snapshot %.0f ms, thaw %.0f ms, total %.0f ms",
		len(blocked), stats.Transactions, percentile(blocked, 50), percentile(blocked, 99), percentile(blocked, 100),
		percentile(steps["freeze"], 50), percentile(steps["snapshot"], 50), percentile(steps["thaw"], 50), percentile(steps["total"], 50))
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
