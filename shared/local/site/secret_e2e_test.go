package site_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/lambdart"
	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// TestNoSecretInAnyOutput holds invariant 7 end to end. The site keeps a real secret where a user
// keeps one: the replication password, a generated SecureString parameter in Parameter Store
// that the primary's replication role logs in with (site.Up checks both). Two backups (the second
// applies retention) and a WAL prune then run through the real handlers under pgbench load, and
// the secret, raw or base64-encoded, must appear in none of: the SSM command parameters and argv
// each host script received, what the scripts printed (the command output SSM returns), every
// JSON log line (the handlers' logger and slog's default, and the site's own setup log), every
// EMF record, every tag of every snapshot, the handlers' JSON results, and every file on the
// host under the site's root (the watchdog and freeze state, the PostgreSQL and pgBackRest logs,
// the configuration, the site's state file; only the volume images are skipped).
func TestNoSecretInAnyOutput(t *testing.T) {
	siteLog := &lambdart.Output{}
	s := upSite(t, site.Options{PgbenchScale: 1, Retention: snapset.Policy{KeepLast: 1}, Log: jsonLog(siteLog)})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	secret, err := s.ReplicationPassword(ctx)
	if err != nil {
		t.Fatalf("fetch the seeded secret: %v", err)
	}
	if len(secret) < 24 {
		t.Fatalf("the seeded secret has %d characters: too short for a search to prove anything", len(secret))
	}

	logs, emf := &lambdart.Output{}, &lambdart.Output{}
	log := jsonLog(logs)
	// Adapters that log through slog.Default (the lease's warnings) are caught too.
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(log)
	sink := metrics.NewEMF(emf)
	runner := &site.Runner{Site: s.State}

	primary := s.PG[s.Hosts[0].InstanceID]
	stopBench, err := primary.StartPgbench(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = stopBench() }()

	var results [][]byte
	for i := range 2 {
		switchWAL(ctx, t, primary, 2)
		job, err := site.BackupJob(ctx, s.State, log, sink)
		if err != nil {
			t.Fatal(err)
		}
		job.Hosts = runner // records what SSM would carry
		out := invokeRaw(ctx, t, job.Handle, fmt.Sprintf(`{"cluster":%q}`, s.Cluster))
		var res backup.Result
		if err := json.Unmarshal(out, &res); err != nil || res.Status != "completed" {
			t.Fatalf("backup %d: %s (%v)", i, out, err)
		}
		results = append(results, out)
		time.Sleep(1100 * time.Millisecond) // distinct set ids and creation times
	}
	switchWAL(ctx, t, primary, 1)
	waitArchived(ctx, t, s, primary)
	pruner, err := site.WALPruneJob(ctx, s.State, log, sink)
	if err != nil {
		t.Fatal(err)
	}
	out := invokeRaw(ctx, t, pruner.Handle, fmt.Sprintf(`{"cluster":%q}`, s.Cluster))
	var pr walprune.Result
	if err := json.Unmarshal(out, &pr); err != nil || pr.Boundary == "" {
		t.Fatalf("prune: %s (%v)", out, err)
	}
	results = append(results, out)

	c := newLeakCheck(secret)
	invs := runner.Invocations()
	calls := map[hostscripts.Name]int{}
	for _, inv := range invs {
		calls[inv.Script]++
		where := fmt.Sprintf("%s on %s", inv.Script, inv.InstanceID)
		params, err := json.Marshal(inv.Parameters)
		if err != nil {
			t.Fatal(err)
		}
		c.bytes("SSM parameters of "+where, params)
		c.bytes("argv of "+where, []byte(strings.Join(inv.Argv, "\x00")))
		c.bytes("stdout of "+where, []byte(inv.Stdout))
		c.bytes("stderr of "+where, []byte(inv.Stderr))
	}
	c.lines("handler log", []byte(logs.String()))
	c.lines("site setup log", []byte(siteLog.String()))
	c.lines("EMF", []byte(emf.String()))
	snaps, err := (&site.Snapshots{Site: s.State}).ListSnapshots(ctx, s.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	tags := 0
	for _, sn := range snaps {
		for k, v := range sn.Tags {
			c.bytes("tag "+k+" of snapshot "+sn.ID, []byte(k+"="+v))
			tags++
		}
	}
	for i, r := range results {
		c.bytes(fmt.Sprintf("handler result %d", i+1), r)
	}
	if err := c.walk(s.Root); err != nil {
		t.Fatal(err)
	}

	// A search that saw nothing proves nothing: each source must have been there.
	cfg, err := s.ClusterConfig()
	if err != nil {
		t.Fatal(err)
	}
	must := map[string]bool{
		"freeze and thaw ran twice each":   calls[hostscripts.Freeze] >= 2 && calls[hostscripts.Thaw] >= 2,
		"the handlers logged":              c.count("handler log") > 0,
		"the site's setup logged":          c.count("site setup log") > 0,
		"EMF records were written":         c.count("EMF") >= 3,
		"snapshots carry tags":             tags > 0,
		"the watchdog's log was scanned":   c.scanned[filepath.Join(cfg.StateDir, "watchdog.log")],
		"the watchdog's state was scanned": c.scanned[filepath.Join(cfg.StateDir, "watchdog.state")],
		"the site state file was scanned":  c.scanned[filepath.Join(s.Root, site.StateFile)],
	}
	for what, ok := range must {
		if !ok {
			t.Errorf("nothing to search: expected that %s", what)
		}
	}
	c.report(t)
	t.Logf("searched %d log lines, %d EMF records, %d host-script runs, %d tags, %d results, %d files", c.count("handler log")+c.count("site setup log"), c.count("EMF"), len(invs), tags, len(results), len(c.scanned))
}

// The search finds the secret in every form and place it looks, and says where without
// repeating it: a check that cannot fail would hold invariant 7 up for nothing.
func TestLeakCheckFindsPlantedSecret(t *testing.T) {
	const secret = "Zm9vYmFyLXNlY3JldC1wYXNzd29yZC0x"
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"run/watchdog.log":  "armed\n" + secret + "\n",
		"run/clean.state":   "token 123\n",
		"volumes/sdf.img":   secret, // images are skipped
		"run/encoded.state": base64.StdEncoding.EncodeToString([]byte(secret)),
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logLine bytes.Buffer
	slog.New(slog.NewJSONHandler(&logLine, nil)).Info("connect", "cluster", "main", "dsn", "password="+secret)

	c := newLeakCheck(secret)
	c.bytes("argv", []byte("--pgdata\x00/data\x00--password\x00"+secret))
	c.bytes("clean argv", []byte("--pgdata\x00/data"))
	c.lines("log", append(logLine.Bytes(), []byte(`{"msg":"clean"}`+"\n")...))
	c.bytes("tag", []byte("pgfleet:note="+base64.RawURLEncoding.EncodeToString([]byte(secret))))
	if err := c.walk(dir); err != nil {
		t.Fatal(err)
	}
	want := []string{"argv", "log line 1", "tag", filepath.Join(dir, "run/encoded.state"), filepath.Join(dir, "run/watchdog.log")}
	var got []string
	for _, f := range c.found {
		got = append(got, f.where)
		if strings.Contains(f.String(), secret) {
			t.Errorf("the finding repeats the secret: %s", f)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("found the secret in %q, want %q", got, want)
	}
	if c.scanned[filepath.Join(dir, "volumes/sdf.img")] || !c.scanned[filepath.Join(dir, "run/clean.state")] {
		t.Fatalf("scanned %v: want every file but the images", c.scanned)
	}
}

// leakCheck searches outputs for a secret in the forms it could leak in: as is, and base64
// encoded (user data, binary fields), padded or not.
type leakCheck struct {
	needles []string
	found   []leak
	counts  map[string]int
	scanned map[string]bool
}

type leak struct {
	where   string
	offset  int
	context string
}

func (l leak) String() string { return fmt.Sprintf("%s at byte %d: %s", l.where, l.offset, l.context) }

func newLeakCheck(secret string) *leakCheck {
	b := []byte(secret)
	return &leakCheck{
		needles: []string{secret, base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
			base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)},
		counts:  map[string]int{},
		scanned: map[string]bool{},
	}
}

// bytes searches one output.
func (c *leakCheck) bytes(where string, data []byte) {
	c.counts[where]++
	for _, n := range c.needles {
		if i := bytes.Index(data, []byte(n)); i >= 0 {
			lo, hi := max(0, i-40), min(len(data), i+len(n)+40)
			ctx := strings.ReplaceAll(string(data[lo:hi]), n, "<secret>")
			c.found = append(c.found, leak{where: where, offset: i, context: fmt.Sprintf("%q", ctx)})
			return
		}
	}
}

// lines searches every line of a line-oriented output (JSON logs, EMF) on its own.
func (c *leakCheck) lines(where string, data []byte) {
	n := 0
	for line := range bytes.Lines(data) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n++
		c.bytes(fmt.Sprintf("%s line %d", where, n), line)
	}
	c.counts[where] = n
}

// walk searches every regular file under root but the volume images (block copies of the data
// volumes; PostgreSQL's files on the mounted volumes are searched as files).
func (c *leakCheck) walk(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking (PostgreSQL, pgBackRest)
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasSuffix(p, ".img") {
			return nil
		}
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		c.scanned[p] = true
		c.bytes(p, data)
		return nil
	})
}

func (c *leakCheck) count(where string) int { return c.counts[where] }

func (c *leakCheck) report(t *testing.T) {
	t.Helper()
	for _, f := range c.found {
		t.Errorf("the secret leaked into %s", f)
	}
}

func jsonLog(w *lambdart.Output) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
