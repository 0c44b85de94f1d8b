package hostscripts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/local/loopfs"
	"github.com/pgfleet/pgfleet/shared/local/pgtest"
	"github.com/pgfleet/pgfleet/shared/testutil"
)

// host is one PostgreSQL 15 "host" for the script tests: PGDATA on a loop-mounted ext4 image,
// pg_wal on an xfs image (initdb -X), a state dir and a harmless protect path on the root
// filesystem, and the scripts written to files.
type host struct {
	t        *testing.T
	base     string
	data     *loopfs.Mount
	wal      *loopfs.Mount
	pg       *pgtest.Instance
	stateDir string
	protect  string
	freeze   string
	thaw     string
	// env is added to the scripts' environment (tests put fake tools on PATH).
	env []string
}

type hostOptions struct {
	pgbenchScale int
}

func requireHost(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, b := range []string{"bash", "fsfreeze", "findmnt", "losetup", "mkfs.ext4", "mkfs.xfs", "runuser",
		filepath.Join(pgtest.DefaultBin, "initdb"), filepath.Join(pgtest.DefaultBin, "pgbench")} {
		testutil.RequireBinary(t, b)
	}
}

func newHost(t *testing.T, o hostOptions) *host {
	t.Helper()
	requireHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base, err := os.MkdirTemp("/tmp", "pgfleet-hs-")
	if err != nil {
		t.Fatal(err)
	}
	// postgres must traverse the base to reach its socket and data directories.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	// The state dir is on the root filesystem, never on the mounts the scripts freeze.
	h := &host{t: t, base: base, stateDir: filepath.Join(t.TempDir(), "state"), protect: filepath.Join(base, "protected")}
	for _, d := range []string{"img", "mnt", "run", "protected", "scripts"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mountVol := func(name, fstype string, sizeMiB int) *loopfs.Mount {
		img := filepath.Join(base, "img", name+".img")
		if err := loopfs.Create(ctx, img, sizeMiB, fstype); err != nil {
			t.Fatal(err)
		}
		m, err := loopfs.MountImage(ctx, img, filepath.Join(base, "mnt", name), fstype)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := m.Unmount(context.Background()); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		if err := pgtest.ChownToPostgres(m.Path); err != nil {
			t.Fatal(err)
		}
		return m
	}
	h.data = mountVol("data", "ext4", 128)
	h.wal = mountVol("wal", "xfs", loopfs.MinXFSMiB)

	h.pg, err = pgtest.InitDB(ctx, pgtest.Options{
		PGData:    filepath.Join(h.data.Path, "pgdata"),
		WALDir:    filepath.Join(h.wal.Path, "pg_wal"),
		SocketDir: filepath.Join(base, "run"),
		Conf:      []string{"checkpoint_timeout = 300", "max_connections = 50"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.pg.Stop(context.Background(), "immediate"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if o.pgbenchScale > 0 {
		if err := h.pg.PgbenchInit(ctx, o.pgbenchScale); err != nil {
			t.Fatal(err)
		}
	}
	// Registered last, so it runs first: nothing stays frozen and no watchdog outlives the test,
	// whatever failed.
	t.Cleanup(h.release)

	for _, n := range []hostscripts.Name{hostscripts.Freeze, hostscripts.Thaw} {
		src, err := hostscripts.Source(n)
		if err != nil {
			t.Fatal(err)
		}
		src = mutate(t, n, src)
		p := filepath.Join(base, "scripts", string(n)+".sh")
		if err := os.WriteFile(p, []byte(src), 0o700); err != nil {
			t.Fatal(err)
		}
		if n == hostscripts.Freeze {
			h.freeze = p
		} else {
			h.thaw = p
		}
	}
	return h
}

// release thaws both mounts and kills this host's watchdogs.
func (h *host) release() {
	for _, m := range []*loopfs.Mount{h.data, h.wal} {
		if err := loopfs.Thaw(m.Path); err != nil {
			h.t.Errorf("cleanup thaw: %v", err)
		}
	}
	for _, pid := range h.watchdogs() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (h *host) pgdata() string { return h.pg.PGData }
func (h *host) mounts() string { return h.data.Path + "," + h.wal.Path }

func (h *host) freezeArgs() hostscripts.Args {
	return hostscripts.Args{
		"pgdata":           h.pgdata(),
		"port":             strconv.Itoa(h.pg.Port),
		"pg-bin":           pgtest.DefaultBin,
		"pg-user":          pgtest.OSUser,
		"pg-host":          h.pg.SocketDir,
		"mounts":           h.mounts(),
		"filesystem":       "auto",
		"consistency":      "freeze",
		"watchdog-seconds": "30",
		"state-dir":        h.stateDir,
		"protect":          h.protect,
	}
}

func (h *host) thawArgs() hostscripts.Args {
	return hostscripts.Args{"mounts": h.mounts(), "pgdata": h.pgdata(), "state-dir": h.stateDir}
}

// run runs a script with validated arguments and decodes its single result line into res.
// Every helper takes the calling (sub)test's t, so a failure is reported where it happened.
func (h *host) run(t testing.TB, script string, n hostscripts.Name, args hostscripts.Args, res any) (code int, elapsed time.Duration) {
	t.Helper()
	code, elapsed, _ = h.runStderr(t, script, n, args, res)
	return code, elapsed
}

// runStderr runs a script and decodes its result line with the strict parser the orchestrator
// uses (hostscripts.ParseFreezeResult, ParseThawResult): every real script output in these tests
// is also a contract test of that parser, which the fakes' results must pass too.
func (h *host) runStderr(t testing.TB, script string, n hostscripts.Name, args hostscripts.Args, res any) (code int, elapsed time.Duration, stderr string) {
	t.Helper()
	argv, err := args.Argv(n)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stdout, stderr, code := runBash(t, script, h.env, argv...)
	elapsed = time.Since(start)
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%s printed %d lines on stdout; want one JSON line:\n%s\nstderr:\n%s", n, len(lines), stdout, stderr)
	}
	decodeResult(t, n, []byte(lines[0]), res, stderr)
	if code != 0 {
		t.Logf("%s exit %d: %s", n, code, strings.TrimSpace(stderr))
	}
	return code, elapsed, stderr
}

// decodeResult parses a real script's result line with the orchestrator's parser.
func decodeResult(t testing.TB, n hostscripts.Name, line []byte, res any, stderr string) {
	t.Helper()
	var err error
	switch r := res.(type) {
	case *hostscripts.FreezeResult:
		*r, err = hostscripts.ParseFreezeResult(line)
	case *hostscripts.ThawResult:
		*r, err = hostscripts.ParseThawResult(line)
	default:
		err = json.Unmarshal(line, res)
	}
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", n, err, stderr)
	}
}

func (h *host) doFreeze(t testing.TB, args hostscripts.Args) hostscripts.FreezeResult {
	t.Helper()
	var fr hostscripts.FreezeResult
	code, took, stderr := h.runStderr(t, h.freeze, hostscripts.Freeze, args, &fr)
	if code != 0 || !fr.OK {
		t.Fatalf("FREEZE FAILED: exit %d, error %q, result %+v\nstderr:\n%s", code, fr.Error, fr, stderr)
	}
	t.Logf("freeze script took %s", took.Round(time.Millisecond))
	return fr
}

func (h *host) doThaw(t testing.TB, args hostscripts.Args) hostscripts.ThawResult {
	t.Helper()
	var tr hostscripts.ThawResult
	code, took, stderr := h.runStderr(t, h.thaw, hostscripts.Thaw, args, &tr)
	if code != 0 || !tr.OK {
		t.Fatalf("THAW FAILED: exit %d, error %q, result %+v\nstderr:\n%s", code, tr.Error, tr, stderr)
	}
	t.Logf("thaw script took %s (thawed %.1f ms after it started)", took.Round(time.Millisecond), float64(tr.ThawedUS-tr.StartedUS)/1000)
	return tr
}

// watchdogs lists the live watchdog processes whose state dir is this host's.
func (h *host) watchdogs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		isWatchdog, ours := false, false
		for _, a := range args {
			isWatchdog = isWatchdog || a == "pgfleet-watchdog"
			ours = ours || a == h.stateDir
		}
		if isWatchdog && ours {
			pids = append(pids, pid)
		}
	}
	return pids
}

var writerSeq atomic.Int64

// startWrite writes and fsyncs a small file on dir in a goroutine; the channel gets the result.
// On a frozen filesystem the write blocks until the thaw (uninterruptibly: never wait unbounded).
func startWrite(dir string) <-chan error {
	done := make(chan error, 1)
	go func() {
		p := filepath.Join(dir, fmt.Sprintf(".writer-%d", writerSeq.Add(1)))
		f, err := os.Create(p)
		if err != nil {
			done <- err
			return
		}
		_, werr := f.Write([]byte("pgfleet test write\n"))
		serr := f.Sync()
		cerr := f.Close()
		done <- errors.Join(werr, serr, cerr, os.Remove(p))
	}()
	return done
}

// writers starts one write per mount.
func (h *host) writers() []<-chan error {
	return []<-chan error{startWrite(h.data.Path), startWrite(h.wal.Path)}
}

// assertBlocked checks no write finished within d.
func assertBlocked(t *testing.T, ws []<-chan error, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for i, w := range ws {
		select {
		case err := <-w:
			t.Fatalf("write %d finished on a frozen filesystem (err %v)", i, err)
		case <-deadline:
			return
		}
	}
}

// assertDone checks every write finished, successfully, within d.
func assertDone(t *testing.T, ws []<-chan error, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for i, w := range ws {
		select {
		case err := <-w:
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		case <-deadline:
			t.Fatalf("write %d still blocked after %s: the filesystem is frozen", i, d)
		}
	}
}

// exists reports whether p exists; an error other than "does not exist" counts as existing, so
// an assertion that p is gone fails rather than passes.
func (h *host) exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

func (h *host) record() string { return filepath.Join(h.stateDir, "frozen.json") }

func (h *host) standbySignal() string { return filepath.Join(h.pgdata(), "standby.signal") }

func (h *host) marker() string { return filepath.Join(h.pgdata(), ".pgfleet-standby-signal") }

// transactions counts committed pgbench transactions (one pgbench_history row each).
func (h *host) transactions(t testing.TB, ctx context.Context) int64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, h.pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertUntouched checks a refused or finished run left nothing behind: nothing frozen, no
// standby.signal, no freeze record, no watchdog.
func (h *host) assertUntouched(t *testing.T) {
	t.Helper()
	assertDone(t, h.writers(), 3*time.Second)
	for _, p := range []string{h.standbySignal(), h.marker(), h.record()} {
		if h.exists(p) {
			t.Errorf("%s exists", p)
		}
	}
	if w := h.waitNoWatchdog(2 * time.Second); len(w) > 0 {
		t.Errorf("watchdog processes left running: %v", w)
	}
}

func (h *host) waitNoWatchdog(d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		w := h.watchdogs()
		if len(w) == 0 || time.Now().After(deadline) {
			return w
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited.
	f := strings.Fields(string(b))
	return len(f) < 3 || f[2] != "Z"
}

var (
	walFileRE = regexp.MustCompile(`^[0-9A-F]{24}$`)
	lsnRE     = regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`)
)

// checkFreezeResult checks the fields every successful freeze of a primary reports.
func (h *host) checkFreezeResult(t *testing.T, fr hostscripts.FreezeResult, wantFrozen bool, wantFSType map[string]string) {
	t.Helper()
	if fr.Action != "freeze" || fr.Host == "" || fr.Error != "" {
		t.Errorf("action %q host %q error %q", fr.Action, fr.Host, fr.Error)
	}
	if fr.Frozen != wantFrozen {
		t.Errorf("frozen = %v; want %v", fr.Frozen, wantFrozen)
	}
	if fr.InRecovery || fr.PGVersionNum < 150000 || fr.PGVersionNum >= 160000 || !strings.HasPrefix(fr.PGVersion, "15") {
		t.Errorf("in_recovery %v, pg_version %q, pg_version_num %d; want a PostgreSQL 15 primary", fr.InRecovery, fr.PGVersion, fr.PGVersionNum)
	}
	if fr.Timeline < 1 || !walFileRE.MatchString(fr.RedoWALFile) || !lsnRE.MatchString(fr.RedoLSN) || !lsnRE.MatchString(fr.SnapshotLSN) {
		t.Errorf("timeline %d, redo_wal_file %q, redo_lsn %q, snapshot_lsn %q", fr.Timeline, fr.RedoWALFile, fr.RedoLSN, fr.SnapshotLSN)
	}
	if fr.WatchdogPID <= 0 || fr.WatchdogDeadlineUS <= fr.StartedUS || fr.FinishedUS < fr.StartedUS {
		t.Errorf("watchdog_pid %d, deadline %d, started %d, finished %d", fr.WatchdogPID, fr.WatchdogDeadlineUS, fr.StartedUS, fr.FinishedUS)
	}
	if wantFrozen && (fr.FreezeStartedUS < fr.StartedUS || fr.FrozenUS < fr.FreezeStartedUS || fr.FinishedUS < fr.FrozenUS) {
		t.Errorf("times out of order: started %d, freeze_started %d, frozen %d, finished %d", fr.StartedUS, fr.FreezeStartedUS, fr.FrozenUS, fr.FinishedUS)
	}
	if len(fr.Mounts) != 2 {
		t.Fatalf("mounts = %+v; want 2", fr.Mounts)
	}
	images := map[string]string{h.data.Path: h.data.Image, h.wal.Path: h.wal.Image}
	for _, m := range fr.Mounts {
		if m.FSType != wantFSType[m.Path] || m.VolumeID != images[m.Path] || m.Frozen != wantFrozen || !strings.HasPrefix(m.Source, "/dev/loop") {
			t.Errorf("mount %+v; want fstype %q, volume_id %q, frozen %v, a loop source", m, wantFSType[m.Path], images[m.Path], wantFrozen)
		}
	}
}

func TestFreezeThawUnderPgbench(t *testing.T) {
	h := newHost(t, hostOptions{pgbenchScale: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop, err := h.pg.StartPgbench(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = stop() })
	time.Sleep(500 * time.Millisecond)

	cycles := []struct {
		name string
		// operatorSignal: an operator's own standby.signal is in PGDATA before the freeze.
		operatorSignal bool
	}{
		{name: "primary", operatorSignal: false},
		{name: "operator standby.signal kept", operatorSignal: true},
	}
	fstypes := map[string]string{h.data.Path: "ext4", h.wal.Path: "xfs"}
	for _, c := range cycles {
		t.Run(c.name, func(t *testing.T) {
			if c.operatorSignal {
				if err := os.WriteFile(h.standbySignal(), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(h.standbySignal())
			}
			before := h.transactions(t, ctx)

			fr := h.doFreeze(t, h.freezeArgs())
			ws := h.writers()
			h.checkFreezeResult(t, fr, true, fstypes)
			if fr.StandbySignalWritten == c.operatorSignal {
				t.Errorf("standby_signal_written = %v with an operator's standby.signal %v", fr.StandbySignalWritten, c.operatorSignal)
			}
			if !h.exists(h.standbySignal()) {
				t.Error("standby.signal is not in PGDATA while frozen: the snapshot would promote itself")
			}
			if h.exists(h.marker()) == c.operatorSignal {
				t.Errorf("marker present = %v; want %v", h.exists(h.marker()), !c.operatorSignal)
			}
			if !h.exists(h.record()) || !alive(fr.WatchdogPID) {
				t.Errorf("freeze record present %v, watchdog %d alive %v; want both", h.exists(h.record()), fr.WatchdogPID, alive(fr.WatchdogPID))
			}
			assertBlocked(t, ws, 300*time.Millisecond)

			tr := h.doThaw(t, h.thawArgs())
			blocked := fr.WritesBlockedMicros(tr)
			t.Logf("writes blocked (freeze_started -> thawed, host clock): %.1f ms; freeze_started -> frozen %.1f ms; thaw_started -> thawed %.1f ms",
				float64(blocked)/1000, float64(fr.FrozenUS-fr.FreezeStartedUS)/1000, float64(tr.ThawedUS-tr.ThawStartedUS)/1000)
			assertDone(t, ws, 5*time.Second)
			if blocked <= 0 || blocked > 10_000_000 {
				t.Errorf("writes blocked %d us; want a positive, short window", blocked)
			}
			if got := sortedCopy(tr.Thawed); len(got) != 2 || got[0] != h.data.Path || got[1] != h.wal.Path {
				t.Errorf("thawed = %v; want both mounts", tr.Thawed)
			}
			if len(tr.AlreadyThawed) != 0 || !tr.WatchdogDisarmed || !tr.ProbeOK || tr.ThawedUS < tr.ThawStartedUS {
				t.Errorf("thaw result %+v", tr)
			}
			if tr.StandbySignalRemoved == c.operatorSignal {
				t.Errorf("standby_signal_removed = %v; want %v", tr.StandbySignalRemoved, !c.operatorSignal)
			}
			if h.exists(h.standbySignal()) != c.operatorSignal || h.exists(h.marker()) {
				t.Errorf("after thaw: standby.signal %v (want %v), marker %v (want false)", h.exists(h.standbySignal()), c.operatorSignal, h.exists(h.marker()))
			}
			if h.exists(h.record()) {
				t.Error("freeze record left after thaw")
			}
			if w := h.waitNoWatchdog(time.Second); len(w) > 0 || alive(fr.WatchdogPID) {
				t.Errorf("watchdog still running after thaw: %v", w)
			}

			// pgbench went on after the thaw.
			atThaw := h.transactions(t, ctx)
			deadline := time.Now().Add(10 * time.Second)
			after := atThaw
			for after <= atThaw && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				after = h.transactions(t, ctx)
			}
			t.Logf("pgbench transactions: %d before freeze, %d at thaw, %d shortly after", before, atThaw, after)
			if after <= atThaw {
				t.Errorf("pgbench made no progress after the thaw (%d -> %d)", atThaw, after)
			}
		})
	}
	// Back to back, as the orchestrator does it: how long writes stay blocked.
	t.Run("direct freeze then thaw", func(t *testing.T) {
		var windows []time.Duration
		for i := 0; i < 5; i++ {
			fr := h.doFreeze(t, h.freezeArgs())
			tr := h.doThaw(t, h.thawArgs())
			if len(tr.Thawed) != 2 {
				t.Fatalf("thaw %+v", tr)
			}
			windows = append(windows, time.Duration(fr.WritesBlockedMicros(tr))*time.Microsecond)
			t.Logf("run %d: freeze_started -> frozen %.1f ms, frozen -> freeze exit %.1f ms, thaw_started -> thawed %.1f ms, writes blocked %.1f ms",
				i, float64(fr.FrozenUS-fr.FreezeStartedUS)/1000, float64(fr.FinishedUS-fr.FrozenUS)/1000,
				float64(tr.ThawedUS-tr.ThawStartedUS)/1000, float64(fr.WritesBlockedMicros(tr))/1000)
		}
		sort.Slice(windows, func(i, j int) bool { return windows[i] < windows[j] })
		t.Logf("writes blocked under pgbench, freeze_started -> thawed: min %s, median %s, max %s",
			windows[0].Round(100*time.Microsecond), windows[len(windows)/2].Round(100*time.Microsecond), windows[len(windows)-1].Round(100*time.Microsecond))
		h.assertUntouched(t)
	})

	stats, err := stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pgbench: ~%d transactions in %s", stats.Transactions, stats.Duration.Round(time.Millisecond))
}

func TestWatchdogThawsWhenThawIsLost(t *testing.T) {
	h := newHost(t, hostOptions{})
	args := h.freezeArgs()
	args["watchdog-seconds"] = "2"
	start := time.Now()
	fr := h.doFreeze(t, args)
	ws := h.writers()
	if !fr.Frozen || !fr.StandbySignalWritten {
		t.Fatalf("freeze result %+v", fr)
	}
	assertBlocked(t, ws, 300*time.Millisecond)
	// No thaw: the orchestrator was killed. The watchdog must release the host on its own.
	assertDone(t, ws, 2*time.Second+4*time.Second)
	thawedAfter := time.Since(start)
	t.Logf("watchdog released the writes %s after the freeze started (watchdog 2s)", thawedAfter.Round(time.Millisecond))
	if thawedAfter < 1500*time.Millisecond {
		t.Errorf("writes released after %s: before the watchdog deadline, so something else thawed", thawedAfter)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (h.exists(h.record()) || h.exists(h.standbySignal()) || alive(fr.WatchdogPID)) {
		time.Sleep(20 * time.Millisecond)
	}
	h.assertUntouched(t)
	if alive(fr.WatchdogPID) {
		t.Errorf("watchdog %d still running after it fired", fr.WatchdogPID)
	}
	logText, err := os.ReadFile(filepath.Join(h.stateDir, "watchdog.log"))
	if err != nil || !strings.Contains(string(logText), "fired") {
		t.Errorf("watchdog log %q, %v; want a line saying it fired", logText, err)
	}

	// A late thaw is still fine, and finds nothing to do.
	tr := h.doThaw(t, h.thawArgs())
	if len(tr.Thawed) != 0 || len(tr.AlreadyThawed) != 2 || tr.WatchdogDisarmed || tr.StandbySignalRemoved {
		t.Errorf("late thaw %+v", tr)
	}
}

func TestSecondFreezeIsRefused(t *testing.T) {
	h := newHost(t, hostOptions{})
	first := h.doFreeze(t, h.freezeArgs())
	record, err := os.ReadFile(h.record())
	if err != nil {
		t.Fatal(err)
	}

	var second hostscripts.FreezeResult
	code, _ := h.run(t, h.freeze, hostscripts.Freeze, h.freezeArgs(), &second)
	if code == 0 || second.OK || second.Frozen {
		t.Fatalf("second freeze: exit %d, %+v; want refused", code, second)
	}
	if !strings.Contains(second.Error, "already frozen by pgfleet since") || !strings.Contains(second.Error, "run thaw first") {
		t.Errorf("second freeze error %q", second.Error)
	}
	// The refusal touched nothing of the first freeze.
	ws := h.writers()
	assertBlocked(t, ws, 300*time.Millisecond)
	if again, err := os.ReadFile(h.record()); err != nil || string(again) != string(record) {
		t.Errorf("freeze record changed by the refused freeze: %q, %v", again, err)
	}
	if !h.exists(h.standbySignal()) || !h.exists(h.marker()) || !alive(first.WatchdogPID) {
		t.Error("the refused freeze removed the first freeze's standby.signal or watchdog")
	}
	if w := h.watchdogs(); len(w) != 1 || w[0] != first.WatchdogPID {
		t.Errorf("watchdogs %v; want only the first freeze's %d", w, first.WatchdogPID)
	}

	// Frozen once: one thaw releases everything.
	tr := h.doThaw(t, h.thawArgs())
	assertDone(t, ws, 5*time.Second)
	if len(tr.Thawed) != 2 || !tr.WatchdogDisarmed || !tr.StandbySignalRemoved {
		t.Errorf("thaw %+v", tr)
	}
	h.assertUntouched(t)
}

func TestRefusalsChangeNothing(t *testing.T) {
	h := newHost(t, hostOptions{})
	subdir := filepath.Join(h.data.Path, "not-a-mount")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	protectedOnWAL := filepath.Join(h.wal.Path, "agent-logs")
	if err := os.Mkdir(protectedOnWAL, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		set     map[string]string
		setup   func(t *testing.T)
		wantErr string
	}{
		{name: "root filesystem", set: map[string]string{"mounts": "/"}, wantErr: "root filesystem"},
		{name: "root among others", set: map[string]string{"mounts": h.data.Path + ",/"}, wantErr: "root filesystem"},
		{name: "not a mount point", set: map[string]string{"mounts": subdir}, wantErr: "is not a mount point"},
		{name: "missing mount", set: map[string]string{"mounts": h.data.Path + ",/nonexistent/pgfleet"}, wantErr: "does not exist"},
		{name: "protected path on a data mount", set: map[string]string{"protect": h.protect + "," + protectedOnWAL}, wantErr: "must stay writable"},
		{name: "state dir on a data mount", set: map[string]string{"state-dir": filepath.Join(h.wal.Path, "state")}, wantErr: "must stay writable"},
		{name: "mount listed twice", set: map[string]string{"mounts": h.data.Path + "," + h.wal.Path + "," + h.data.Path}, wantErr: "listed twice"},
		{name: "declared filesystem differs", set: map[string]string{"filesystem": "xfs"}, wantErr: "is ext4, but --filesystem says xfs"},
		{name: "declared zfs on ext4", set: map[string]string{"filesystem": "zfs"}, wantErr: "but --filesystem says zfs"},
		{name: "pg_wal outside the set", set: map[string]string{"mounts": h.data.Path}, wantErr: "pg_wal is on none of --mounts"},
		{name: "not a data directory", set: map[string]string{"pgdata": h.data.Path}, wantErr: "not a PostgreSQL data directory"},
		{name: "wrong port", set: map[string]string{"port": "1"}, wantErr: "postgresql is not running on port 1"},
		{
			name: "postgresql down",
			setup: func(t *testing.T) {
				if err := h.pg.Stop(context.Background(), "fast"); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: fmt.Sprintf("postgresql is not running on port %d", h.pg.Port),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			args := h.freezeArgs()
			for k, v := range tc.set {
				args[k] = v
			}
			var fr hostscripts.FreezeResult
			code, took := h.run(t, h.freeze, hostscripts.Freeze, args, &fr)
			if code == 0 || fr.OK || fr.Frozen || fr.Action != "freeze" {
				t.Fatalf("exit %d, result %+v; want refused", code, fr)
			}
			if !strings.Contains(fr.Error, tc.wantErr) {
				t.Errorf("error %q; want it to contain %q", fr.Error, tc.wantErr)
			}
			t.Logf("refused in %s: %s", took.Round(time.Millisecond), fr.Error)
			h.assertUntouched(t)
			if h.exists(filepath.Join(h.wal.Path, "state")) {
				t.Error("the refused run created its state dir on a data mount")
			}
		})
	}
}

// fakeTools puts a findmnt that reports zfs for the given mounts and an fsfreeze that logs its
// calls in front of PATH; it returns the call log.
func (h *host) fakeTools(t *testing.T, zfsMounts ...string) string {
	t.Helper()
	realFindmnt, err := exec.LookPath("findmnt")
	if err != nil {
		t.Fatal(err)
	}
	realFsfreeze, err := exec.LookPath("fsfreeze")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(h.base, "fakebin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(h.base, "fsfreeze.calls")
	findmnt := fmt.Sprintf(`#!/usr/bin/env bash
out=$(%q "$@") || exit $?
printf '%%s\n' "$out" | awk -v zfs=%q 'BEGIN { n = split(zfs, a, " "); for (i = 1; i <= n; i++) z[a[i]] = 1 } { if ($1 in z) $2 = "zfs"; print }'
`, realFindmnt, strings.Join(zfsMounts, " "))
	fsfreeze := fmt.Sprintf("#!/usr/bin/env bash\necho \"$*\" >>%q\nexec %q \"$@\"\n", calls, realFsfreeze)
	for name, body := range map[string]string{"findmnt": findmnt, "fsfreeze": fsfreeze} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	return calls
}

func TestZFSIsNeverFrozen(t *testing.T) {
	h := newHost(t, hostOptions{})
	calls := h.fakeTools(t, h.data.Path, h.wal.Path)
	zfs := map[string]string{h.data.Path: "zfs", h.wal.Path: "zfs"}
	for _, fsArg := range []string{"auto", "zfs"} {
		t.Run("filesystem "+fsArg, func(t *testing.T) {
			args := h.freezeArgs()
			args["filesystem"] = fsArg
			fr := h.doFreeze(t, args)
			if b, _ := os.ReadFile(calls); len(b) > 0 {
				t.Errorf("fsfreeze was called on zfs: %q", b)
			}
			assertDone(t, h.writers(), 2*time.Second)
			if !fr.ZFS || fr.Frozen || fr.FreezeStartedUS != 0 || fr.FrozenUS != 0 {
				t.Errorf("zfs %v frozen %v freeze_started %d frozen_us %d; want zfs, not frozen", fr.ZFS, fr.Frozen, fr.FreezeStartedUS, fr.FrozenUS)
			}
			h.checkFreezeResult(t, fr, false, zfs)
			if !fr.StandbySignalWritten || !h.exists(h.standbySignal()) {
				t.Error("standby.signal not written for the zfs snapshot")
			}
			tr := h.doThaw(t, h.thawArgs())
			if len(tr.Thawed) != 0 || len(tr.AlreadyThawed) != 2 || !tr.StandbySignalRemoved || !tr.WatchdogDisarmed || !tr.ProbeOK {
				t.Errorf("thaw after a zfs freeze %+v", tr)
			}
			h.assertUntouched(t)
			_ = os.Remove(calls)
		})
	}
	// One zfs mount and one ext4: only the ext4 one is frozen.
	t.Run("mixed", func(t *testing.T) {
		calls := h.fakeTools(t, h.wal.Path)
		fr := h.doFreeze(t, h.freezeArgs())
		ws := []<-chan error{startWrite(h.wal.Path)}
		blocked := []<-chan error{startWrite(h.data.Path)}
		assertDone(t, ws, 2*time.Second)
		assertBlocked(t, blocked, 300*time.Millisecond)
		if !fr.ZFS || !fr.Frozen {
			t.Errorf("zfs %v frozen %v; want both", fr.ZFS, fr.Frozen)
		}
		for _, m := range fr.Mounts {
			if m.Frozen != (m.Path == h.data.Path) {
				t.Errorf("mount %+v", m)
			}
		}
		if b, _ := os.ReadFile(calls); strings.TrimSpace(string(b)) != "-f "+h.data.Path {
			t.Errorf("fsfreeze calls %q; want only -f %s", b, h.data.Path)
		}
		h.doThaw(t, h.thawArgs())
		assertDone(t, blocked, 5*time.Second)
		h.assertUntouched(t)
	})
}

func TestThawIsIdempotent(t *testing.T) {
	h := newHost(t, hostOptions{})
	steps := []struct {
		name   string
		freeze bool
		args   map[string]string
		check  func(t *testing.T, tr hostscripts.ThawResult)
	}{
		{
			name: "nothing frozen, no state dir",
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if len(tr.Thawed) != 0 || len(tr.AlreadyThawed) != 2 || tr.WatchdogDisarmed || tr.StandbySignalRemoved || !tr.ProbeOK {
					t.Errorf("%+v", tr)
				}
			},
		},
		{
			name:   "after a freeze",
			freeze: true,
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if len(tr.Thawed) != 2 || !tr.WatchdogDisarmed || !tr.StandbySignalRemoved || !tr.ProbeOK {
					t.Errorf("%+v", tr)
				}
			},
		},
		{
			name: "again",
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if len(tr.Thawed) != 0 || len(tr.AlreadyThawed) != 2 || tr.WatchdogDisarmed || tr.StandbySignalRemoved || !tr.ProbeOK {
					t.Errorf("%+v", tr)
				}
			},
		},
		{
			name: "no probe, no pgdata",
			args: map[string]string{"probe": "no", "pgdata": ""},
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if tr.ProbeOK || len(tr.AlreadyThawed) != 2 {
					t.Errorf("%+v", tr)
				}
			},
		},
		{
			name:   "mounts from the record, pgdata from the record",
			freeze: true,
			args:   map[string]string{"mounts": h.wal.Path, "pgdata": ""},
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if got := sortedCopy(tr.Thawed); len(got) != 2 || !tr.StandbySignalRemoved || !tr.WatchdogDisarmed {
					t.Errorf("%+v", tr)
				}
			},
		},
		{
			name: "a path that is not a mount point",
			args: map[string]string{"mounts": h.data.Path + "," + filepath.Join(h.base, "protected")},
			check: func(t *testing.T, tr hostscripts.ThawResult) {
				if len(tr.AlreadyThawed) != 2 || len(tr.Thawed) != 0 {
					t.Errorf("%+v", tr)
				}
			},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var ws []<-chan error
			if s.freeze {
				h.doFreeze(t, h.freezeArgs())
				ws = h.writers()
				assertBlocked(t, ws, 200*time.Millisecond)
			}
			args := h.thawArgs()
			for k, v := range s.args {
				args[k] = v
			}
			tr := h.doThaw(t, args)
			s.check(t, tr)
			assertDone(t, ws, 5*time.Second)
			h.assertUntouched(t)
		})
	}
}

func TestConsistencyAndStandbySignalModes(t *testing.T) {
	h := newHost(t, hostOptions{})
	fstypes := map[string]string{h.data.Path: "ext4", h.wal.Path: "xfs"}
	tests := []struct {
		name        string
		set         map[string]string
		wantFrozen  bool
		wantSignal  bool
		wantConsist string
	}{
		// crash: nothing frozen, everything else as usual (checkpoint, standby.signal, watchdog).
		{name: "crash", set: map[string]string{"consistency": "crash"}, wantFrozen: false, wantSignal: true, wantConsist: "crash"},
		{name: "standby-signal never", set: map[string]string{"standby-signal": "never"}, wantFrozen: true, wantSignal: false, wantConsist: "freeze"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := h.freezeArgs()
			for k, v := range tc.set {
				args[k] = v
			}
			fr := h.doFreeze(t, args)
			ws := h.writers()
			h.checkFreezeResult(t, fr, tc.wantFrozen, fstypes)
			if fr.Consistency != tc.wantConsist || fr.ZFS || fr.StandbySignalWritten != tc.wantSignal || h.exists(h.standbySignal()) != tc.wantSignal {
				t.Errorf("consistency %q zfs %v standby_signal_written %v (file %v); want %q, false, %v",
					fr.Consistency, fr.ZFS, fr.StandbySignalWritten, h.exists(h.standbySignal()), tc.wantConsist, tc.wantSignal)
			}
			if !alive(fr.WatchdogPID) || !h.exists(h.record()) {
				t.Error("no watchdog or freeze record: a lost thaw would leave standby.signal behind")
			}
			if tc.wantFrozen {
				assertBlocked(t, ws, 300*time.Millisecond)
			} else {
				assertDone(t, ws, 2*time.Second)
				ws = nil
			}
			tr := h.doThaw(t, h.thawArgs())
			if tr.StandbySignalRemoved != tc.wantSignal || !tr.WatchdogDisarmed || (len(tr.Thawed) == 2) != tc.wantFrozen {
				t.Errorf("thaw %+v", tr)
			}
			assertDone(t, ws, 5*time.Second)
			h.assertUntouched(t)
		})
	}
}

// TestFailedFreezeRollsBack: when a mount cannot be frozen, or the script is interrupted while
// freezing, every mount is thawed, the watchdog disarmed, the record and our standby.signal
// removed, and the error says why.
func TestFailedFreezeRollsBack(t *testing.T) {
	h := newHost(t, hostOptions{})
	realFsfreeze, err := exec.LookPath("fsfreeze")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(h.base, "failbin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(h.base, "fsfreeze.calls")
	tests := []struct {
		name string
		// fake is the body of the fake fsfreeze, after the call is logged.
		fake      string
		interrupt bool
		wantErr   []string
	}{
		{
			// -f on the WAL mount fails the way a filesystem frozen by someone else does; the data
			// mount is really frozen, then must be thawed by the rollback.
			name: "one mount cannot be frozen",
			fake: fmt.Sprintf(`if [ "$1" = -f ] && [ "$2" = %[1]q ]; then
	echo "fsfreeze: %[1]s: freeze failed: Device or resource busy" >&2
	exit 1
fi
if [ "$1" = -f ]; then sleep 0.2; fi
exec %[2]q "$@"
`, h.wal.Path, realFsfreeze),
			wantErr: []string{"fsfreeze -f failed on " + h.wal.Path, "Device or resource busy", "nothing is left frozen"},
		},
		{
			// SIGTERM (a cancelled command) while both freezes are under way: they complete, and
			// the script thaws them before it exits.
			name:      "interrupted while freezing",
			fake:      fmt.Sprintf("if [ \"$1\" = -f ]; then sleep 0.5; fi\nexec %q \"$@\"\n", realFsfreeze),
			interrupt: true,
			wantErr:   []string{"interrupted by a signal"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(calls)
			script := fmt.Sprintf("#!/usr/bin/env bash\necho \"$*\" >>%q\n%s", calls, tc.fake)
			if err := os.WriteFile(filepath.Join(bin, "fsfreeze"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			h.env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
			var fr hostscripts.FreezeResult
			var code int
			if tc.interrupt {
				code = h.runInterrupted(t, calls, &fr)
			} else {
				code, _ = h.run(t, h.freeze, hostscripts.Freeze, h.freezeArgs(), &fr)
			}
			if code == 0 || fr.OK || fr.Frozen {
				t.Fatalf("exit %d, result %+v; want a failure", code, fr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(fr.Error, want) {
					t.Errorf("error %q lacks %q", fr.Error, want)
				}
			}
			b, _ := os.ReadFile(calls)
			if !strings.Contains(string(b), "-f "+h.data.Path) || !strings.Contains(string(b), "-u "+h.data.Path) {
				t.Errorf("fsfreeze calls %q; want the data mount frozen then thawed", b)
			}
			if tc.interrupt && !strings.Contains(string(b), "-u "+h.wal.Path) {
				t.Errorf("fsfreeze calls %q; want the WAL mount thawed too", b)
			}
			h.assertUntouched(t)
		})
	}
}

// runInterrupted starts the freeze script, sends it SIGTERM once both fsfreeze -f calls have
// started, and decodes its result line.
func (h *host) runInterrupted(t *testing.T, calls string, res any) int {
	t.Helper()
	argv, err := h.freezeArgs().Argv(hostscripts.Freeze)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{h.freeze}, argv...)...)
	cmd.Env = append(os.Environ(), h.env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(calls)
		if strings.Count(string(b), "-f ") == 2 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the freeze never started its fsfreeze calls: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("freeze: %v", err)
	}
	line, lerr := hostscripts.LastJSONLine([]byte(stdout.String()))
	if lerr != nil {
		t.Fatalf("%v; stderr: %s", lerr, stderr.String())
	}
	if err := json.Unmarshal(line, res); err != nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode()
}

// TestScriptsRunFromStdin runs the scripts the way the local site's runner does: the source on
// stdin (bash -s -- args). Nothing the scripts run may read their text, and the detached
// watchdog must not keep stdout open.
func TestScriptsRunFromStdin(t *testing.T) {
	h := newHost(t, hostOptions{})
	run := func(n hostscripts.Name, args hostscripts.Args, res any) {
		t.Helper()
		src, err := hostscripts.Source(n)
		if err != nil {
			t.Fatal(err)
		}
		argv, err := args.Argv(n)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{"-s", "--"}, argv...)...)
		cmd.Stdin = strings.NewReader(src)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", n, err, stdout.String(), stderr.String())
		}
		line, err := hostscripts.LastJSONLine([]byte(stdout.String()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(stdout.String()) != string(line) {
			t.Errorf("%s stdout has more than the result line: %q", n, stdout.String())
		}
		if err := json.Unmarshal(line, res); err != nil {
			t.Fatal(err)
		}
	}
	var fr hostscripts.FreezeResult
	run(hostscripts.Freeze, h.freezeArgs(), &fr)
	ws := h.writers()
	if !fr.OK || !fr.Frozen || len(fr.Mounts) != 2 {
		t.Fatalf("freeze %+v", fr)
	}
	assertBlocked(t, ws, 200*time.Millisecond)
	var tr hostscripts.ThawResult
	run(hostscripts.Thaw, h.thawArgs(), &tr)
	if !tr.OK || len(tr.Thawed) != 2 || !tr.WatchdogDisarmed || !tr.ProbeOK {
		t.Errorf("thaw %+v", tr)
	}
	assertDone(t, ws, 5*time.Second)
	h.assertUntouched(t)
}
