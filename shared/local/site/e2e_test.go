package site_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/jackc/pgx/v5"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

// upSite starts a site for one test and tears it down at the end.
func upSite(t testing.TB, o site.Options) *site.Site {
	t.Helper()
	testutil.RequireRoot(t)
	moto.Require(t)
	testutil.RequireBinary(t, "pgbackrest")
	testutil.RequireBinary(t, "mkfs.xfs")
	root, err := os.MkdirTemp("/tmp", "pgfleet-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(root); err != nil { // Up creates it and refuses an existing site
		t.Fatal(err)
	}
	o.Root = root
	if o.Log == nil {
		o.Log = quietLog()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := site.Up(ctx, o)
	if err != nil {
		t.Fatalf("site up: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Down(context.Background()); err != nil {
			t.Errorf("site down: %v", err)
		}
	})
	return s
}

// ledgerWriter inserts rows one at a time and records the highest id whose commit returned.
type ledgerWriter struct {
	acked atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startLedger(ctx context.Context, t testing.TB, dsn string) *ledgerWriter {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE ledger (id bigint PRIMARY KEY, payload text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	w := &ledgerWriter{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer conn.Close(context.Background())
		for id := int64(1); ; id++ {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			if _, err := conn.Exec(ctx, `INSERT INTO ledger VALUES ($1::bigint, md5($1::bigint::text))`, id); err != nil {
				w.done <- err
				return
			}
			w.acked.Store(id)
		}
	}()
	return w
}

func (w *ledgerWriter) Stop() error { close(w.stop); return <-w.done }

type ledgerDigest struct {
	Count, MaxID int64
	Sum          string
}

func digest(ctx context.Context, t testing.TB, dsn string, upTo int64) ledgerDigest {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var d ledgerDigest
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0), coalesce(md5(string_agg(id::text || ':' || payload, ',' ORDER BY id)), '')
		FROM ledger WHERE id <= $1`, upTo).Scan(&d.Count, &d.MaxID, &d.Sum)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func invokeBackup(ctx context.Context, t testing.TB, s *site.Site, sink metrics.Sink) backup.Result {
	t.Helper()
	job, err := site.BackupJob(ctx, s.State, quietLog(), sink)
	if err != nil {
		t.Fatal(err)
	}
	return invoke[backup.Result](ctx, t, job.Handle, fmt.Sprintf(`{"cluster":%q}`, s.Cluster))
}

// invocationTimeout is the function timeout the handlers run under here, as in the stack: each
// invocation gets its own deadline, whatever the test's own is.
const invocationTimeout = 5 * time.Minute

// invoke runs a handler the way the Lambda runtime does (JSON in, JSON out, a deadline of its
// own) and decodes its result.
func invoke[R any](ctx context.Context, t testing.TB, handler any, payload string) R {
	t.Helper()
	var res R
	if err := json.Unmarshal(invokeRaw(ctx, t, handler, payload), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// invokeRaw is invoke returning the result as the runtime would send it (JSON).
func invokeRaw(ctx context.Context, t testing.TB, handler any, payload string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invocationTimeout)
	defer cancel()
	out, err := lambda.NewHandler(handler).Invoke(ctx, []byte(payload))
	if err != nil {
		t.Fatalf("invoke %s: %v", payload, err)
	}
	return out
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestBackupUnderLoadRestoresToPrimaryState is the end-to-end story: a backup through the real
// handler while pgbench and a ledger writer load the primary, then the set restored into a new
// host. The copy starts read-only (standby.signal from the freeze) and holds exactly the rows the
// primary had committed when it was frozen: every row acknowledged before the backup started,
// none that was never acknowledged, and the same content as the primary for that prefix.
func TestBackupUnderLoadRestoresToPrimaryState(t *testing.T) {
	s := upSite(t, site.Options{PgbenchScale: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary := s.PG[s.Hosts[0].InstanceID]

	stopBench, err := primary.StartPgbench(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	ledger := startLedger(ctx, t, primary.DSN())
	time.Sleep(500 * time.Millisecond)

	ackedBefore := ledger.acked.Load()
	rec := &metrics.Recorder{}
	res := invokeBackup(ctx, t, s, rec)
	ackedAfter := ledger.acked.Load()
	time.Sleep(300 * time.Millisecond)
	if err := ledger.Stop(); err != nil {
		t.Fatalf("ledger writer: %v", err)
	}
	stats, err := stopBench()
	if err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	t.Logf("backup: set %s, writes blocked %.1f ms, steps %v, pgbench %d tx", res.SetID, res.WritesBlockedMS, res.StepsMS, stats.Transactions)

	if res.Status != "completed" || res.Volumes != 2 || !res.Frozen || !res.ThawVerified || !res.StandbySignalSet {
		t.Fatalf("unexpected result: %+v", res)
	}
	if res.WritesBlockedMS <= 0 {
		t.Fatalf("writes blocked not measured: %+v", res)
	}
	if v, ok := rec.Get("WritesBlockedMs"); !ok || v != res.WritesBlockedMS {
		t.Fatalf("metric WritesBlockedMs = %v, %v; result says %v", v, ok, res.WritesBlockedMS)
	}
	if _, err := os.Stat(s.Hosts[0].PGData + "/standby.signal"); !os.IsNotExist(err) {
		t.Fatalf("standby.signal left on the primary after thaw: %v", err)
	}

	// Every snapshot of the set carries the set's metadata.
	snaps, err := (&site.Snapshots{Site: s.State}).ListSnapshots(ctx, s.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	sets, _ := snapset.Group(snaps)
	if len(sets) != 1 || !sets[0].Completed() || len(sets[0].Snapshots) != 2 {
		t.Fatalf("want one completed set of 2 snapshots, got %+v", sets)
	}
	for _, sn := range sets[0].Snapshots {
		for _, k := range []string{snapset.TagRedoWALFile, snapset.TagSnapshotLSN, snapset.TagTimeline, snapset.TagPGVersion, snapset.TagMountPoint, snapset.TagDevice, snapset.TagFilesystem, snapset.TagFrozenMS} {
			if sn.Tags[k] == "" {
				t.Errorf("snapshot %s lacks tag %s: %v", sn.ID, k, sn.Tags)
			}
		}
	}

	h, restored, err := s.RestoreSet(ctx, res.SetID, "restored")
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	conn, err := pgx.Connect(ctx, restored.DSN())
	if err != nil {
		t.Fatal(err)
	}
	var inRecovery bool
	var replayed string
	if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text`).Scan(&inRecovery, &replayed); err != nil {
		t.Fatal(err)
	}
	var behind bool
	if err := conn.QueryRow(ctx, `SELECT $1::pg_lsn < $2::pg_lsn`, replayed, res.SnapshotLSN).Scan(&behind); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if !inRecovery {
		t.Fatalf("restored copy on %s is not read-only: standby.signal was not in the snapshot", h.InstanceID)
	}
	if behind {
		t.Fatalf("restored copy replayed to %s, before the snapshot LSN %s", replayed, res.SnapshotLSN)
	}

	got := digest(ctx, t, restored.DSN(), 1<<62)
	if got.MaxID < ackedBefore || got.MaxID > ackedAfter {
		t.Fatalf("restored ledger ends at %d; want between %d (acknowledged before the backup) and %d (acknowledged after)", got.MaxID, ackedBefore, ackedAfter)
	}
	want := digest(ctx, t, primary.DSN(), got.MaxID)
	if got != want {
		t.Fatalf("restored ledger %+v differs from the primary's up to id %d: %+v", got, got.MaxID, want)
	}
	t.Logf("restored copy: read-only, replayed to %s (snapshot LSN %s), ledger %d rows = primary's, checksum %s", replayed, res.SnapshotLSN, got.Count, got.Sum)
}

// TestBackupsUnderLoadApplyRetention runs several backups and checks retention keeps the newest
// sets whole and deletes the rest whole.
func TestBackupsUnderLoadApplyRetention(t *testing.T) {
	s := upSite(t, site.Options{PgbenchScale: 1, Retention: snapset.Policy{KeepLast: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	primary := s.PG[s.Hosts[0].InstanceID]
	stopBench, err := primary.StartPgbench(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = stopBench() }()
	var ids []string
	for i := 0; i < 4; i++ {
		res := invokeBackup(ctx, t, s, &metrics.Recorder{})
		if res.Status != "completed" {
			t.Fatalf("backup %d: %+v", i, res)
		}
		ids = append(ids, res.SetID)
		time.Sleep(1100 * time.Millisecond) // set ids and creation times are distinct
	}
	snaps, err := (&site.Snapshots{Site: s.State}).ListSnapshots(ctx, s.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	sets, _ := snapset.Group(snaps)
	if len(sets) != 2 || sets[0].SetID != ids[3] || sets[1].SetID != ids[2] {
		t.Fatalf("want the 2 newest sets %v, got %d sets", ids[2:], len(sets))
	}
	for _, set := range sets {
		if len(set.Snapshots) != 2 {
			t.Fatalf("set %s has %d snapshots, want 2 (sets are kept whole)", set.SetID, len(set.Snapshots))
		}
	}
	entries, err := os.ReadDir(s.SnapshotDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("want 4 snapshot images on disk (2 sets x 2 volumes), got %d: expired sets must be deleted whole", len(entries))
	}
}
