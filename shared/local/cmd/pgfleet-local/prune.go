package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// demoPrune shows the WAL pruner on the archive pgBackRest filled during the backups: a dry run
// (the plan), then the prune itself.
func demoPrune(ctx context.Context, log *slog.Logger, s *site.Site) error {
	if _, err := s.PG[s.Hosts[0].InstanceID].Psql(ctx, "SELECT pg_switch_wal()"); err != nil {
		return fmt.Errorf("switch WAL: %w", err)
	}
	if out, err := s.PgBackRestCmd(ctx, "check"); err != nil {
		return fmt.Errorf("pgbackrest check: %w: %s", err, out)
	}
	h, err := site.Handler(ctx, s.State, "walprune", log, &metrics.Recorder{})
	if err != nil {
		return err
	}
	for _, dry := range []bool{true, false} {
		payload := fmt.Sprintf(`{"cluster":%q,"dryRun":%t}`, s.Cluster, dry)
		out, err := lambda.NewHandler(h).Invoke(ctx, []byte(payload))
		if err != nil {
			return fmt.Errorf("walprune (dryRun %t): %w", dry, err)
		}
		var res walprune.Result
		if err := json.Unmarshal(out, &res); err != nil {
			return err
		}
		what := "prune"
		if dry {
			what = "prune dry run"
		}
		fmt.Printf("== %s: boundary %s (the lowest redo point of the retained sets, set %s), listed %d, planned %d (%d bytes), deleted %d, kept %d, protected %d, unrecognized %d, %d requests\n",
			what, res.Boundary, res.BoundarySetID, res.Listed, res.Planned, res.PlannedBytes, res.Deleted, res.Kept, res.Protected, res.Unrecognized, res.Requests)
	}
	return nil
}
