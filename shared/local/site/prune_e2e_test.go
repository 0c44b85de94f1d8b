package site_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfleet/pgfleet/shared/local/pgtest"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// TestPruneKeepsWhatTheOldestRetainedSetNeeds is the WAL pruner's end-to-end story: pgBackRest
// archives to S3 under pgbench load, three backups run (retention keeps two), the pruner deletes
// the WAL before the oldest retained set's redo point (the segment before it is gone, the redo
// segment is there), and that set, restored with `pgbackrest archive-get` as restore_command,
// reaches a consistent state and replays past its snapshot from the archive.
//
// PostgreSQL 15 recovers a filesystem snapshot (no backup_label) by crash recovery from the
// snapshot's own pg_wal first, then archive recovery: the snapshot's WAL volume is part of the
// set for that reason, and the archive supplies everything after it.
func TestPruneKeepsWhatTheOldestRetainedSetNeeds(t *testing.T) {
	s := upSite(t, site.Options{PgbenchScale: 2, Retention: snapset.Policy{KeepLast: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	primary := s.PG[s.Hosts[0].InstanceID]
	stopBench, err := primary.StartPgbench(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = stopBench() }()

	var sets []string
	for i := 0; i < 3; i++ {
		switchWAL(ctx, t, primary, 2)
		res := invokeBackup(ctx, t, s, &metrics.Recorder{})
		if res.Status != "completed" {
			t.Fatalf("backup %d: %+v", i, res)
		}
		sets = append(sets, res.SetID)
		time.Sleep(1100 * time.Millisecond)
	}
	listed, err := (&site.Snapshots{Site: s.State}).ListSnapshots(ctx, s.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	grouped, _ := snapset.Group(listed)
	if len(grouped) != 2 || grouped[1].SetID != sets[1] {
		t.Fatalf("retention should have expired %s and kept %v; have %d sets", sets[0], sets[1:], len(grouped))
	}
	oldestKept := sets[1]
	redo := setTag(ctx, t, s, oldestKept, snapset.TagRedoWALFile)
	snapLSN := setTag(ctx, t, s, oldestKept, snapset.TagSnapshotLSN)
	switchWAL(ctx, t, primary, 1)
	waitArchived(ctx, t, s, primary)

	dry := invokePrune(ctx, t, s, `{"cluster":"main","dryRun":true}`)
	if dry.Boundary != redo || dry.BoundarySetID != oldestKept || dry.Planned == 0 || dry.Deleted != 0 {
		t.Fatalf("dry run: want boundary %s from set %s, a plan and no deletion; got %+v", redo, oldestKept, dry)
	}
	res := invokePrune(ctx, t, s, `{"cluster":"main"}`)
	if res.Deleted != dry.Planned || !res.Complete || res.Boundary != redo {
		t.Fatalf("prune: want %d deleted up to %s, got %+v", dry.Planned, redo, res)
	}
	t.Logf("pruned %d segments (%d bytes) before %s, the redo WAL of %s; kept %d, protected %d", res.Deleted, res.DeletedBytes, redo, oldestKept, res.Kept, res.Protected)

	// The segment before the boundary is gone from the archive, the boundary itself is there.
	before := previousSegment(t, redo)
	if out, err := s.PgBackRestCmd(ctx, "archive-get", before, "/tmp/pgfleet-e2e-probe-"+before); err == nil {
		t.Fatalf("segment %s before the boundary is still archived: %s", before, out)
	}
	if out, err := s.PgBackRestCmd(ctx, "archive-get", redo, "/tmp/pgfleet-e2e-probe-"+redo); err != nil {
		t.Fatalf("boundary segment %s was deleted: %v: %s", redo, err, out)
	}
	_ = os.Remove("/tmp/pgfleet-e2e-probe-" + redo)

	// More work after the snapshot, archived: the restored copy must replay it from the archive.
	if _, err := primary.Psql(ctx, "CREATE TABLE after_prune AS SELECT generate_series(1, 10000) AS n"); err != nil {
		t.Fatal(err)
	}
	target := strings.TrimSpace(mustPsql(ctx, t, primary, "SELECT pg_current_wal_lsn()"))
	switchWAL(ctx, t, primary, 1)
	waitArchived(ctx, t, s, primary)

	_, restored, err := s.Restore(ctx, oldestKept, "from-archive", site.RestoreOptions{FromArchive: true})
	if err != nil {
		t.Fatalf("restore %s from the archive: %v", oldestKept, err)
	}
	replayed := waitReplay(ctx, t, restored, target)
	var rows int
	conn, err := pgx.Connect(ctx, restored.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM after_prune").Scan(&rows); err != nil || rows != 10000 {
		t.Fatalf("rows written after the snapshot: %d, %v", rows, err)
	}
	t.Logf("set %s restored: consistent, replayed from its redo point %s past its snapshot %s to %s through archive-get", oldestKept, redo, snapLSN, replayed)
}

func invokePrune(ctx context.Context, t *testing.T, s *site.Site, payload string) walprune.Result {
	t.Helper()
	p, err := site.WALPruneJob(ctx, s.State, quietLog(), &metrics.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	return invoke[walprune.Result](ctx, t, p.Handle, payload)
}

func switchWAL(ctx context.Context, t *testing.T, pg *pgtest.Instance, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustPsql(ctx, t, pg, "SELECT pg_switch_wal()")
	}
}

func mustPsql(ctx context.Context, t *testing.T, pg *pgtest.Instance, sql string) string {
	t.Helper()
	out, err := pg.Psql(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// waitArchived waits until the segment holding the current WAL position's predecessor is archived.
func waitArchived(ctx context.Context, t *testing.T, s *site.Site, pg *pgtest.Instance) {
	t.Helper()
	want := strings.TrimSpace(mustPsql(ctx, t, pg, "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)"))
	deadline := time.Now().Add(90 * time.Second)
	for {
		last := strings.TrimSpace(mustPsql(ctx, t, pg, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"))
		if last >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived after 90 s (last archived %q)", want, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitReplay(ctx context.Context, t *testing.T, pg *pgtest.Instance, target string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := pg.Psql(ctx, fmt.Sprintf("SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= '%s'::pg_lsn, pg_is_in_recovery()", target))
		if err == nil {
			f := strings.Split(strings.TrimSpace(out), "|")
			if len(f) == 3 && f[1] == "t" && f[2] == "t" {
				return f[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored copy did not replay to %s within 2 minutes: %s %v", target, out, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func setTag(ctx context.Context, t *testing.T, s *site.Site, setID, tag string) string {
	t.Helper()
	snaps, err := (&site.Snapshots{Site: s.State}).ListSnapshots(ctx, s.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		if sn.Tags[snapset.TagSetID] == setID && sn.Tags[tag] != "" {
			return sn.Tags[tag]
		}
	}
	t.Fatalf("set %s has no tag %s", setID, tag)
	return ""
}

func previousSegment(t *testing.T, seg string) string {
	t.Helper()
	var tli, log, n uint32
	if _, err := fmt.Sscanf(seg, "%08X%08X%08X", &tli, &log, &n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		log, n = log-1, 0xFF
	} else {
		n--
	}
	return fmt.Sprintf("%08X%08X%08X", tli, log, n)
}
