package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

const demoBackups = 4

// demo brings a site up, puts pgbench load on it, runs the backup function several times through
// the local adapters, prunes the WAL archive, prints what happened and tears everything down.
func demo(ctx context.Context, log *slog.Logger, root string) (err error) {
	fmt.Println("== pgfleet demo: bringing up a local site (PostgreSQL 15 on loop-mounted ext4 + xfs, pgBackRest -> S3 on moto_server)")
	s, err := site.Up(ctx, site.Options{Root: root, PgbenchScale: 5, Log: log,
		Retention: snapset.Policy{KeepLast: 2, Daily: 1}})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("== tearing the site down")
		if derr := s.Down(context.WithoutCancel(ctx)); derr != nil && err == nil {
			err = derr
		}
	}()
	primary := s.Hosts[0]
	fmt.Printf("   primary %s: PGDATA %s (ext4), pg_wal on %s (xfs), port %d\n", primary.InstanceID, primary.PGData, primary.Volumes[1].MountPoint, primary.Port)

	stopLoad, err := s.PG[primary.InstanceID].StartPgbench(ctx, 4)
	if err != nil {
		return fmt.Errorf("start pgbench: %w", err)
	}
	fmt.Println("== pgbench load: 4 clients")
	time.Sleep(2 * time.Second)

	h, err := site.Handler(ctx, s.State, "backup", log, &metrics.Recorder{})
	if err != nil {
		return err
	}
	for i := 1; i <= demoBackups; i++ {
		out, err := lambda.NewHandler(h).Invoke(ctx, []byte(`{"cluster":"`+s.Cluster+`"}`))
		if err != nil {
			return fmt.Errorf("backup %d: %w", i, err)
		}
		var res backup.Result
		if err := json.Unmarshal(out, &res); err != nil {
			return err
		}
		fmt.Printf("== backup %d: set %s %s, %d volumes, writes blocked %.1f ms (freeze %.0f ms, snapshot %.0f ms, thaw %.0f ms), redo WAL %s\n",
			i, res.SetID, res.Status, res.Volumes, res.WritesBlockedMS, res.StepsMS["freeze"], res.StepsMS["snapshot"], res.StepsMS["thaw"], res.RedoWALFile)
		for _, d := range res.Retention {
			verdict := "keep  "
			if !d.Keep {
				verdict = "delete"
			}
			fmt.Printf("     retention: %s %s (%s)\n", verdict, d.SetID, strings.Join(d.Reasons, ", "))
		}
		time.Sleep(time.Second)
	}
	stats, err := stopLoad()
	if err != nil {
		return fmt.Errorf("pgbench: %w", err)
	}
	fmt.Printf("== pgbench ran %d transactions during the backups\n", stats.Transactions)
	return demoPrune(ctx, log, s)
}
