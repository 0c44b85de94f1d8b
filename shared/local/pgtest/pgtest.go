// Package pgtest runs real PostgreSQL 15 servers for tests and the local site: initdb (optionally
// with pg_wal on another filesystem), start and stop with pg_ctl, psql, and pgbench load. The
// server binaries refuse to run as root, so every command runs as the postgres OS user
// (runuser); the caller is root.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgfleet/pgfleet/shared/local/netx"
)

// DefaultBin is where Debian puts the PostgreSQL 15 server binaries.
const DefaultBin = "/usr/lib/postgresql/15/bin"

// OSUser is the OS user every PostgreSQL command runs as.
const OSUser = "postgres"

// Instance is one PostgreSQL server.
type Instance struct {
	PGData    string
	SocketDir string
	Port      int
	Bin       string
	// LogFile is the server log (default: <SocketDir>/postgres-<Port>.log).
	LogFile string
}

// Options shape InitDB.
type Options struct {
	// PGData is the data directory to create (its parent must exist).
	PGData string
	// WALDir, when set, puts pg_wal there (initdb -X), typically on another mount.
	WALDir string
	// Port to listen on (0: a free one).
	Port int
	// SocketDir for the Unix socket (default: a new directory under /tmp). Created and given to
	// postgres when missing.
	SocketDir string
	// Conf lines are appended to postgresql.conf (e.g. archive_mode = on).
	Conf []string
	// Bin is the directory of the server binaries (default DefaultBin).
	Bin string
	// LogFile as in Instance.
	LogFile string
}

// InitDB creates a cluster: trust authentication on the socket and 127.0.0.1, wal_level replica,
// listening on 127.0.0.1 only, ready for replicas (max_wal_senders, hot_standby). It does not
// start it.
func InitDB(ctx context.Context, o Options) (*Instance, error) {
	if !filepath.IsAbs(o.PGData) {
		return nil, fmt.Errorf("initdb: PGData %q must be an absolute path", o.PGData)
	}
	inst := &Instance{PGData: o.PGData, SocketDir: o.SocketDir, Port: o.Port, Bin: o.Bin, LogFile: o.LogFile}
	if inst.Bin == "" {
		inst.Bin = DefaultBin
	}
	if inst.Port == 0 {
		p, err := netx.FreePort()
		if err != nil {
			return nil, err
		}
		inst.Port = p
	}
	if inst.SocketDir == "" {
		d, err := os.MkdirTemp("/tmp", "pgtest-sock-")
		if err != nil {
			return nil, fmt.Errorf("initdb: socket dir: %w", err)
		}
		inst.SocketDir = d
	}
	if err := inst.checkSocketPath(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(inst.SocketDir, 0o755); err != nil {
		return nil, fmt.Errorf("initdb: socket dir: %w", err)
	}
	if err := ChownToPostgres(inst.SocketDir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(o.PGData, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("initdb: create %s: %w", o.PGData, err)
	}
	if err := os.Chmod(o.PGData, 0o700); err != nil {
		return nil, fmt.Errorf("initdb: %w", err)
	}
	if err := ChownToPostgres(o.PGData); err != nil {
		return nil, err
	}
	args := []string{"-D", o.PGData, "--auth=trust", "--username=" + OSUser, "--encoding=UTF8",
		"--locale=C", "--no-sync", "--no-instructions"}
	if o.WALDir != "" {
		if !filepath.IsAbs(o.WALDir) {
			return nil, fmt.Errorf("initdb: WALDir %q must be an absolute path", o.WALDir)
		}
		if err := os.Mkdir(o.WALDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("initdb: create %s: %w", o.WALDir, err)
		}
		if err := ChownToPostgres(o.WALDir); err != nil {
			return nil, err
		}
		args = append(args, "-X", o.WALDir)
	}
	for _, d := range []string{o.PGData, o.WALDir, inst.SocketDir} {
		if d == "" {
			continue
		}
		if err := asPostgres(ctx, "test", "-w", d).Run(); err != nil {
			return nil, fmt.Errorf("initdb: the postgres user cannot write %s: make every parent directory traversable (chmod 0755)", d)
		}
	}
	if out, err := inst.run(ctx, "initdb", args...); err != nil {
		return nil, fmt.Errorf("initdb %s: %w: %s", o.PGData, err, out)
	}
	conf := []string{
		"",
		"# pgtest",
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(inst.Port),
		"unix_socket_directories = " + quoteConf(inst.SocketDir),
		"wal_level = replica",
		"max_wal_senders = 10",
		"hot_standby = on",
		"fsync = on",
	}
	conf = append(conf, o.Conf...)
	f, err := os.OpenFile(filepath.Join(o.PGData, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("initdb: %w", err)
	}
	_, werr := f.WriteString(strings.Join(conf, "\n") + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, fmt.Errorf("initdb: write postgresql.conf: %w", err)
	}
	return inst, nil
}

// Open wraps an existing data directory, for instance a restored copy. Port and socket directory
// come from its postgresql.conf (the last setting wins); change them before Start to run the copy
// beside its origin. FixPermissions first when the copy was made as root.
func Open(ctx context.Context, pgdata string) (*Instance, error) {
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("open %s: not a PostgreSQL data directory: %w", pgdata, err)
	}
	inst := &Instance{PGData: pgdata, Bin: DefaultBin, Port: 5432, SocketDir: "/var/run/postgresql"}
	data, err := os.ReadFile(filepath.Join(pgdata, "postgresql.conf"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", pgdata, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := confSetting(line)
		if !ok {
			continue
		}
		switch k {
		case "port":
			if p, err := strconv.Atoi(v); err == nil {
				inst.Port = p
			}
		case "unix_socket_directories":
			inst.SocketDir = strings.TrimSpace(strings.Split(v, ",")[0])
		}
	}
	return inst, nil
}

var confRE = regexp.MustCompile(`^\s*([a-z_]+)\s*=?\s*('(?:[^']|'')*'|[^#\s]*)`)

func confSetting(line string) (key, value string, ok bool) {
	m := confRE.FindStringSubmatch(line)
	if m == nil {
		return "", "", false
	}
	v := m[2]
	if strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") && len(v) >= 2 {
		v = strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return m[1], v, true
}

// FixPermissions makes a copied data directory usable by PostgreSQL again: everything owned by
// postgres (pg_wal's target too when it is a link), PGDATA mode 0700.
func FixPermissions(pgdata string) error {
	uid, gid, err := PostgresIDs()
	if err != nil {
		return err
	}
	walk := func(root string) error {
		return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
	}
	if err := walk(pgdata); err != nil {
		return fmt.Errorf("fix permissions of %s: %w", pgdata, err)
	}
	if target, err := filepath.EvalSymlinks(filepath.Join(pgdata, "pg_wal")); err == nil && target != filepath.Join(pgdata, "pg_wal") {
		if err := walk(target); err != nil {
			return fmt.Errorf("fix permissions of %s: %w", target, err)
		}
	}
	if err := os.Chmod(pgdata, 0o700); err != nil {
		return fmt.Errorf("fix permissions of %s: %w", pgdata, err)
	}
	return nil
}

// Start starts the server (pg_ctl -w) on Port and SocketDir, whatever postgresql.conf says.
func (i *Instance) Start(ctx context.Context) error {
	if err := i.checkSocketPath(); err != nil {
		return err
	}
	if i.LogFile == "" {
		i.LogFile = filepath.Join(i.SocketDir, "postgres-"+strconv.Itoa(i.Port)+".log")
	}
	if strings.ContainsAny(i.SocketDir, `'"\$`+"`") {
		return fmt.Errorf("start %s: socket dir %q contains quotes or shell characters", i.PGData, i.SocketDir)
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := i.run(cctx, "pg_ctl", "-D", i.PGData, "-l", i.LogFile, "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -k '%s'", i.Port, i.SocketDir), "start")
	if err != nil {
		return fmt.Errorf("start postgresql in %s on port %d: %w: %s; log: %s", i.PGData, i.Port, err, out, i.logTail(2000))
	}
	return nil
}

// Stop stops the server (mode fast, immediate or smart; "" is fast). A server that is not
// running is already stopped.
func (i *Instance) Stop(ctx context.Context, mode string) error {
	if mode == "" {
		mode = "fast"
	}
	if _, err := os.Stat(filepath.Join(i.PGData, "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := i.run(cctx, "pg_ctl", "-D", i.PGData, "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		if _, serr := os.Stat(filepath.Join(i.PGData, "postmaster.pid")); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stop postgresql in %s (%s): %w: %s", i.PGData, mode, err, out)
	}
	return nil
}

// DSN is a pgx keyword/value connection string over the Unix socket.
func (i *Instance) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", quoteDSN(i.SocketDir), i.Port, OSUser)
}

// Psql runs sql with psql -XAt as postgres and returns its output, trimmed.
func (i *Instance) Psql(ctx context.Context, sql string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := asPostgres(cctx, filepath.Join(i.Bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", i.SocketDir, "-p", strconv.Itoa(i.Port), "-d", "postgres", "-c", sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("psql on port %d: %w: %s", i.Port, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// PgbenchInit creates the pgbench tables at scale.
func (i *Instance) PgbenchInit(ctx context.Context, scale int) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, err := i.run(cctx, "pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "-h", i.SocketDir, "-p", strconv.Itoa(i.Port), "postgres")
	if err != nil {
		return fmt.Errorf("pgbench -i on port %d: %w: %s", i.Port, err, out)
	}
	return nil
}

// PgbenchStats is what a pgbench run reports.
type PgbenchStats struct {
	// Transactions processed: exact when pgbench printed its summary, otherwise estimated from
	// the per-second progress lines, the last rate carried to the end of the run (Exact false).
	Transactions int64
	Exact        bool
	Duration     time.Duration
	// Output is pgbench's output (progress lines and summary).
	Output string
}

var (
	summaryRE  = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	progressRE = regexp.MustCompile(`progress: ([0-9.]+) s, ([0-9.]+) tps`)
)

// RunPgbench runs pgbench (TPC-B-like, clients connections) for d, to completion: the
// statistics are exact.
func (i *Instance) RunPgbench(ctx context.Context, clients int, d time.Duration) (PgbenchStats, error) {
	if clients < 1 {
		clients = 1
	}
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	started := time.Now()
	cctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
	defer cancel()
	out, err := i.run(cctx, "pgbench", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients), "-T", strconv.Itoa(secs),
		"-n", "-h", i.SocketDir, "-p", strconv.Itoa(i.Port), "postgres")
	st := parsePgbench(out, time.Since(started))
	if err != nil {
		return st, fmt.Errorf("pgbench on port %d: %w: %s", i.Port, err, tailString(out, 500))
	}
	return st, nil
}

// StartPgbench runs pgbench (TPC-B-like, clients connections) in the background until stop is
// called or ctx ends. stop interrupts it and returns its statistics; it may be called more than
// once.
func (i *Instance) StartPgbench(ctx context.Context, clients int) (stop func() (PgbenchStats, error), err error) {
	if clients < 1 {
		clients = 1
	}
	cmd := asPostgres(ctx, filepath.Join(i.Bin, "pgbench"), "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", "86400", "-P", "1", "-n", "-h", i.SocketDir, "-p", strconv.Itoa(i.Port), "postgres")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbench on port %d: %w", i.Port, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var stats PgbenchStats
	var runErr error
	stop = func() (PgbenchStats, error) {
		once.Do(func() {
			select {
			case runErr = <-done:
				// It ended by itself: that is a failure (it runs for a day).
				runErr = fmt.Errorf("pgbench on port %d ended early: %v: %s", i.Port, runErr, tailString(out.String(), 500))
			default:
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-done
				}
			}
			stats = parsePgbench(out.String(), time.Since(started))
		})
		return stats, runErr
	}
	return stop, nil
}

func parsePgbench(out string, ran time.Duration) PgbenchStats {
	st := PgbenchStats{Output: out, Duration: ran}
	if m := summaryRE.FindStringSubmatch(out); m != nil {
		st.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
		st.Exact = true
		return st
	}
	last, lastTPS := 0.0, 0.0
	var sum float64
	for _, m := range progressRE.FindAllStringSubmatch(out, -1) {
		at, err1 := strconv.ParseFloat(m[1], 64)
		tps, err2 := strconv.ParseFloat(m[2], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		sum += tps * (at - last)
		last, lastTPS = at, tps
	}
	if rest := ran.Seconds() - last; rest > 0 {
		sum += lastTPS * rest
	}
	st.Transactions = int64(sum + 0.5)
	return st
}

// PostgresIDs returns the uid and gid of the postgres OS user.
func PostgresIDs() (uid, gid int, err error) {
	u, err := user.Lookup(OSUser)
	if err != nil {
		return 0, 0, fmt.Errorf("the %s OS user is missing: %w", OSUser, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("ids of %s: %w", OSUser, err)
	}
	return uid, gid, nil
}

// ChownToPostgres gives path (not what is under it) to the postgres user.
func ChownToPostgres(path string) error {
	uid, gid, err := PostgresIDs()
	if err != nil {
		return err
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, OSUser, err)
	}
	return nil
}

func (i *Instance) checkSocketPath() error {
	// sun_path holds 107 bytes plus the terminating NUL.
	p := filepath.Join(i.SocketDir, ".s.PGSQL."+strconv.Itoa(i.Port))
	if len(p) > 107 {
		return fmt.Errorf("socket path %s is longer than 107 bytes: use a shorter socket dir", p)
	}
	return nil
}

func (i *Instance) run(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := asPostgres(ctx, filepath.Join(i.Bin, tool), args...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (i *Instance) logTail(n int) string {
	b, err := os.ReadFile(i.LogFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return tailString(string(b), n)
}

// asPostgres runs a command as the postgres user from /, so it never depends on the caller's
// working directory being readable by postgres.
func asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", OSUser, "--", name}, args...)...)
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func quoteConf(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func quoteDSN(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func tailString(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
