package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfleet/pgfleet/shared/local/netx"
	"github.com/pgfleet/pgfleet/shared/local/pgtest"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

// baseDir makes a directory postgres can traverse (t.TempDir is 0700 root) and removes it after.
func baseDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func requirePostgres(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, filepath.Join(pgtest.DefaultBin, "initdb"))
	testutil.RequireBinary(t, "runuser")
}

func TestInitStartQueryPgbenchStop(t *testing.T) {
	requirePostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := baseDir(t)
	wal := filepath.Join(base, "wal")
	if err := os.Mkdir(wal, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pgtest.ChownToPostgres(wal); err != nil {
		t.Fatal(err)
	}
	inst, err := pgtest.InitDB(ctx, pgtest.Options{
		PGData:    filepath.Join(base, "pgdata"),
		WALDir:    filepath.Join(wal, "pg_wal"),
		SocketDir: filepath.Join(base, "run"),
		Conf:      []string{"work_mem = '5MB'"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Port == 0 {
		t.Fatal("InitDB picked no port")
	}
	if target, err := os.Readlink(filepath.Join(inst.PGData, "pg_wal")); err != nil || target != filepath.Join(wal, "pg_wal") {
		t.Errorf("pg_wal -> %q, %v; want a link to %s", target, err, filepath.Join(wal, "pg_wal"))
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Stop(context.Background(), "immediate"); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})

	conn, err := pgx.Connect(ctx, inst.DSN())
	if err != nil {
		t.Fatalf("connect %s: %v", inst.DSN(), err)
	}
	defer conn.Close(ctx)
	settings := map[string]string{
		"wal_level":        "replica",
		"listen_addresses": "127.0.0.1",
		"hot_standby":      "on",
		"max_wal_senders":  "10",
		"work_mem":         "5MB",
	}
	for name, want := range settings {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q; want %q", name, got, want)
		}
	}
	out, err := inst.Psql(ctx, "SELECT 40 + 2")
	if err != nil || out != "42" {
		t.Fatalf("Psql = %q, %v; want 42", out, err)
	}
	if _, err := inst.Psql(ctx, "SELECT nonsense"); err == nil {
		t.Error("Psql of bad SQL succeeded; want an error")
	}

	if err := inst.PgbenchInit(ctx, 1); err != nil {
		t.Fatal(err)
	}
	stop, err := inst.StartPgbench(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stats, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	var history int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&history); err != nil {
		t.Fatal(err)
	}
	t.Logf("pgbench 2 clients, %s: %d transactions (exact %v), %d rows in pgbench_history", stats.Duration.Round(time.Millisecond), stats.Transactions, stats.Exact, history)
	if history == 0 || stats.Transactions == 0 {
		t.Errorf("pgbench did no work: stats %d, history %d; output: %s", stats.Transactions, history, stats.Output)
	}
	if again, err := stop(); err != nil || again.Transactions != stats.Transactions {
		t.Errorf("second stop = %d, %v; want the same stats", again.Transactions, err)
	}

	run, err := inst.RunPgbench(ctx, 2, time.Second)
	if err != nil || !run.Exact || run.Transactions == 0 {
		t.Errorf("RunPgbench = %d transactions (exact %v), %v; want an exact, positive count", run.Transactions, run.Exact, err)
	}
	t.Logf("RunPgbench 2 clients 1s: %d transactions", run.Transactions)

	conn.Close(ctx)
	if err := inst.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if err := inst.Stop(ctx, "fast"); err != nil {
		t.Errorf("second Stop: %v; want nil", err)
	}
	if _, err := inst.Psql(ctx, "SELECT 1"); err == nil {
		t.Error("Psql after Stop succeeded")
	}
}

func TestCopyOpenFixPermissionsStart(t *testing.T) {
	requirePostgres(t)
	testutil.RequireBinary(t, "cp")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := baseDir(t)
	inst, err := pgtest.InitDB(ctx, pgtest.Options{PGData: filepath.Join(base, "pgdata"), SocketDir: filepath.Join(base, "run")})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Stop(context.Background(), "immediate") })
	if _, err := inst.Psql(ctx, "CREATE TABLE marker AS SELECT 'copied' AS v"); err != nil {
		t.Fatal(err)
	}
	if err := inst.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}

	// A copy made by root, as a restore would, then opened and started beside the origin.
	copyDir := filepath.Join(base, "copy")
	if out, err := runCmd(ctx, "cp", "-a", "--no-preserve=ownership", inst.PGData, copyDir); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	opened, err := pgtest.Open(ctx, copyDir)
	if err != nil {
		t.Fatal(err)
	}
	if opened.Port != inst.Port || opened.SocketDir != inst.SocketDir {
		t.Errorf("Open read port %d socket %q; want %d %q", opened.Port, opened.SocketDir, inst.Port, inst.SocketDir)
	}
	if err := pgtest.FixPermissions(copyDir); err != nil {
		t.Fatal(err)
	}
	if opened.Port, err = netx.FreePort(); err != nil {
		t.Fatal(err)
	}
	if err := opened.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = opened.Stop(context.Background(), "immediate") })
	out, err := opened.Psql(ctx, "SELECT v FROM marker")
	if err != nil || out != "copied" {
		t.Fatalf("copy answers %q, %v; want copied", out, err)
	}
	if !strings.Contains(opened.LogFile, "postgres-") {
		t.Errorf("LogFile = %q", opened.LogFile)
	}
	if _, err := pgtest.Open(ctx, base); err == nil {
		t.Error("Open of a directory without PG_VERSION succeeded")
	}
}

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
