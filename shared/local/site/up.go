package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/local/loopfs"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/local/netx"
	"github.com/pgfleet/pgfleet/shared/local/pgtest"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// Options shape a local site.
type Options struct {
	// Root holds everything the site creates (default /tmp/pgfleet-site).
	Root    string
	Cluster string
	// DataMiB and WALMiB size the two data volumes: PGDATA on ext4, pg_wal on xfs.
	DataMiB, WALMiB int
	// PgbenchScale initialises pgbench tables (0: none).
	PgbenchScale int
	// Detached leaves moto_server and the TLS proxy running after this process exits (make
	// site-up); otherwise they are children that Down (or process exit) stops.
	Detached bool
	// ProxyCommand starts the TLS proxy as a separate process when Detached (argv; the address
	// and target are appended).
	ProxyCommand []string
	// Retention of the cluster configuration.
	Retention snapset.Policy
	// WatchdogSeconds of the cluster configuration (default 10).
	WatchdogSeconds int
	Log             *slog.Logger
}

// Site is a running local site with the processes this process owns.
type Site struct {
	*State
	PG    map[string]*pgtest.Instance
	mount []*loopfs.Mount
	moto  *moto.Server
	proxy *moto.TLSProxy
	log   *slog.Logger
}

// DefaultRoot is where `make site-up` and `make demo` put the site.
const DefaultRoot = "/tmp/pgfleet-site"

// Up brings a site up: moto_server (S3, DynamoDB, SSM Parameter Store), an HTTPS proxy for
// pgBackRest, a primary whose PGDATA is on a loop-mounted ext4 image and pg_wal on an xfs image,
// WAL archived by pgBackRest to S3, a replication role whose password is a generated SecureString
// parameter (ReplicationSecretParameter), and the cluster configuration file. On failure it
// tears down what it made.
func Up(ctx context.Context, o Options) (s *Site, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local site needs root (loop devices, mount, fsfreeze); run as root")
	}
	o = o.withDefaults()
	if _, err := os.Stat(filepath.Join(o.Root, StateFile)); err == nil {
		return nil, fmt.Errorf("a local site already runs at %s: `make site-down` first", o.Root)
	}
	s = &Site{State: &State{Root: o.Root, Cluster: o.Cluster, Bucket: "pgfleet-wal", Stanza: o.Cluster,
		RepoPath: "/wal-archive/" + o.Cluster, LeaseTable: "pgfleet-leases"}, PG: map[string]*pgtest.Instance{}, log: o.Log}
	defer func() {
		if err != nil {
			if derr := s.Down(context.WithoutCancel(ctx)); derr != nil {
				s.log.Error("tear down after failed start", "error", derr.Error())
			}
			s = nil
		}
	}()
	for _, d := range []string{o.Root, s.SnapshotDir(), filepath.Join(o.Root, "config"), filepath.Join(o.Root, "run"), filepath.Join(o.Root, "pgbackrest")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return s, fmt.Errorf("create %s: %w", d, err)
		}
	}
	s.ConfigDir = filepath.Join(o.Root, "config")

	step := time.Now()
	if err := s.startMoto(ctx, o); err != nil {
		return s, err
	}
	if err := s.Save(); err != nil {
		return s, err
	}
	s.log.Info("moto_server up", "url", s.MotoURL, "s3_tls_port", s.S3TLSPort, "ms", time.Since(step).Milliseconds())

	step = time.Now()
	h, err := s.makeHost(ctx, "i-local-primary", "primary", o)
	if err != nil {
		return s, err
	}
	s.AddHost(h)
	if err := s.Save(); err != nil {
		return s, err
	}
	s.log.Info("primary volumes mounted", "instance", h.InstanceID, "ms", time.Since(step).Milliseconds())

	step = time.Now()
	if err := s.startPrimary(ctx, h, o); err != nil {
		return s, err
	}
	h, _ = s.Host(h.InstanceID) // startPrimary recorded the port
	s.log.Info("primary up, archiving to S3 with pgBackRest", "port", h.Port, "ms", time.Since(step).Milliseconds())

	step = time.Now()
	if err := s.configureReplicationRole(ctx, h); err != nil {
		return s, err
	}
	s.log.Info("replication role uses the password from Parameter Store", "role", ReplicationUser,
		"parameter", s.ReplicationSecret, "ms", time.Since(step).Milliseconds())
	if err := s.writeClusterConfig(h, o); err != nil {
		return s, err
	}
	return s, s.Save()
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.Cluster == "" {
		o.Cluster = "main"
	}
	if o.DataMiB == 0 {
		o.DataMiB = 512
	}
	if o.WALMiB == 0 {
		o.WALMiB = 320 // mkfs.xfs refuses filesystems under 300 MiB
	}
	if o.Retention.KeepLast == 0 {
		o.Retention = snapset.Policy{KeepLast: 2, Daily: 1}
	}
	if o.WatchdogSeconds == 0 {
		o.WatchdogSeconds = config.DefaultWatchdogSeconds
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

func (s *Site) startMoto(ctx context.Context, o Options) error {
	srv, err := moto.Start(ctx)
	if err != nil {
		return fmt.Errorf("start moto_server: %w", err)
	}
	s.moto, s.MotoURL = srv, srv.URL
	if o.Detached {
		s.MotoPID = srv.PID()
	}
	if o.Detached && len(o.ProxyCommand) > 0 {
		port, err := netx.FreePort()
		if err != nil {
			return err
		}
		argv := append(append([]string(nil), o.ProxyCommand...), "127.0.0.1:"+strconv.Itoa(port), srv.URL)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		logf, err := os.Create(filepath.Join(s.Root, "run", "tls-proxy.log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start TLS proxy: %w", err)
		}
		s.ProxyPID, s.S3TLSPort = cmd.Process.Pid, port
		_ = cmd.Process.Release()
		if err := waitTCP(ctx, port, 10*time.Second); err != nil {
			return fmt.Errorf("TLS proxy did not start: %w", err)
		}
	} else {
		p, err := moto.StartTLSProxy(srv.URL)
		if err != nil {
			return fmt.Errorf("start TLS proxy: %w", err)
		}
		s.proxy, s.S3TLSPort = p, p.Port
	}
	if err := ensureBucket(ctx, s.MotoURL, s.Bucket); err != nil {
		return err
	}
	if err := ensureLeaseTable(ctx, s.MotoURL, s.LeaseTable); err != nil {
		return err
	}
	return s.seedReplicationSecret(ctx)
}

func (s *Site) makeHost(ctx context.Context, instanceID, role string, o Options) (Host, error) {
	dir := filepath.Join(s.Root, "hosts", strings.TrimPrefix(instanceID, "i-local-"))
	h := Host{InstanceID: instanceID, Role: role, State: "running", Dir: dir,
		Tags: map[string]string{snapset.TagCluster: s.Cluster, "pgfleet:role": role, "Name": instanceID}}
	vols := []Volume{
		{Device: "/dev/sdf", MountPoint: filepath.Join(dir, "data"), FSType: "ext4", SizeMiB: o.DataMiB},
		{Device: "/dev/sdg", MountPoint: filepath.Join(dir, "wal"), FSType: "xfs", SizeMiB: o.WALMiB},
	}
	if err := os.MkdirAll(filepath.Join(dir, "volumes"), 0o755); err != nil {
		return h, err
	}
	for i := range vols {
		v := &vols[i]
		v.VolumeID = filepath.Join(dir, "volumes", strings.TrimPrefix(v.Device, "/dev/")+".img")
		if err := loopfs.Create(ctx, v.VolumeID, v.SizeMiB, v.FSType); err != nil {
			return h, err
		}
		m, err := s.mountVolume(ctx, v)
		if err != nil {
			return h, err
		}
		if err := chownPostgres(m.Path); err != nil {
			return h, err
		}
	}
	h.Volumes = vols
	h.PGData = filepath.Join(vols[0].MountPoint, "pgdata")
	h.SocketDir = filepath.Join(dir, "run")
	return h, nil
}

func (s *Site) mountVolume(ctx context.Context, v *Volume) (*loopfs.Mount, error) {
	if err := os.MkdirAll(v.MountPoint, 0o755); err != nil {
		return nil, err
	}
	m, err := loopfs.MountImage(ctx, v.VolumeID, v.MountPoint, v.FSType)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", v.VolumeID, err)
	}
	v.Loop = m.Device
	s.mount = append(s.mount, m)
	return m, nil
}

func (s *Site) startPrimary(ctx context.Context, h Host, o Options) error {
	if err := os.MkdirAll(h.SocketDir, 0o755); err != nil {
		return err
	}
	if err := chownPostgres(h.SocketDir); err != nil {
		return err
	}
	port, err := netx.FreePort()
	if err != nil {
		return err
	}
	h.Port = port
	for i := range s.Hosts {
		if s.Hosts[i].InstanceID == h.InstanceID {
			s.Hosts[i].Port = port
		}
	}
	s.PgBackRest = filepath.Join(s.Root, "pgbackrest", "pgbackrest.conf")
	if err := s.writePgBackRestConfig(h); err != nil {
		return err
	}
	inst, err := pgtest.InitDB(ctx, pgtest.Options{
		PGData:    h.PGData,
		WALDir:    filepath.Join(h.Volumes[1].MountPoint, "pg_wal"),
		Port:      port,
		SocketDir: h.SocketDir,
		Conf: []string{
			"archive_mode = on",
			fmt.Sprintf("archive_command = 'pgbackrest --config=%s --stanza=%s archive-push %%p'", s.PgBackRest, s.Stanza),
			"archive_timeout = 60",
			"checkpoint_timeout = 300",
		},
	})
	if err != nil {
		return fmt.Errorf("initdb primary: %w", err)
	}
	// pg_wal points at the WAL volume with a relative link, so a restored copy mounted elsewhere
	// uses its own WAL volume, never the primary's.
	link := filepath.Join(h.PGData, "pg_wal")
	if err := os.Remove(link); err != nil {
		return fmt.Errorf("replace pg_wal link: %w", err)
	}
	if err := os.Symlink("../../wal/pg_wal", link); err != nil {
		return fmt.Errorf("replace pg_wal link: %w", err)
	}
	if err := lchownPostgres(link); err != nil {
		return err
	}
	if err := inst.Start(ctx); err != nil {
		return fmt.Errorf("start primary: %w", err)
	}
	s.PG[h.InstanceID] = inst
	if out, err := s.PgBackRestCmd(ctx, "stanza-create"); err != nil {
		return fmt.Errorf("pgbackrest stanza-create: %w: %s", err, out)
	}
	if o.PgbenchScale > 0 {
		if err := inst.PgbenchInit(ctx, o.PgbenchScale); err != nil {
			return fmt.Errorf("pgbench init: %w", err)
		}
	}
	if out, err := s.PgBackRestCmd(ctx, "check"); err != nil {
		return fmt.Errorf("pgbackrest check (WAL archiving to S3 does not work): %w: %s", err, out)
	}
	return nil
}

func (s *Site) writePgBackRestConfig(h Host) error {
	base := filepath.Join(s.Root, "pgbackrest")
	for _, d := range []string{"log", "lock", "spool"} {
		p := filepath.Join(base, d)
		if err := os.MkdirAll(p, 0o750); err != nil {
			return err
		}
		if err := chownPostgres(p); err != nil {
			return err
		}
	}
	// The local emulator accepts any static key; real deployments use the instance role
	// (repo1-s3-key-type=auto) and keep no key in the file.
	conf := strings.Join([]string{
		"[global]",
		"repo1-type=s3",
		"repo1-s3-bucket=" + s.Bucket,
		"repo1-s3-endpoint=127.0.0.1",
		"repo1-storage-port=" + strconv.Itoa(s.S3TLSPort),
		"repo1-s3-region=us-east-1",
		"repo1-s3-key=test",
		"repo1-s3-key-secret=test",
		"repo1-s3-uri-style=path",
		"repo1-storage-verify-tls=n",
		"repo1-path=" + s.RepoPath,
		"compress-type=gz",
		"compress-level=1",
		"log-path=" + filepath.Join(base, "log"),
		"lock-path=" + filepath.Join(base, "lock"),
		"spool-path=" + filepath.Join(base, "spool"),
		"log-level-console=warn",
		"log-level-file=info",
		"archive-timeout=30",
		"",
		"[" + s.Stanza + "]",
		"pg1-path=" + h.PGData,
		"pg1-socket-path=" + h.SocketDir,
		"pg1-port=" + strconv.Itoa(h.Port),
		"",
	}, "\n")
	if err := os.WriteFile(s.PgBackRest, []byte(conf), 0o640); err != nil {
		return fmt.Errorf("write pgBackRest config: %w", err)
	}
	return chownPostgres(s.PgBackRest)
}

// PgBackRestCmd runs pgbackrest as postgres with the site's configuration.
func (s *State) PgBackRestCmd(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"-u", "postgres", "--", "pgbackrest", "--config=" + s.PgBackRest, "--stanza=" + s.Stanza}, args...)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, "runuser", argv...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ClusterConfig is the cluster configuration the site writes for its primary.
func (s *State) ClusterConfig() (config.Cluster, error) {
	return config.DirSource{Dir: s.ConfigDir}.Load(context.Background(), s.Cluster)
}

func (s *Site) writeClusterConfig(h Host, o Options) error {
	c := config.Cluster{
		Name:           s.Cluster,
		Members:        config.Members{Tags: map[string]string{snapset.TagCluster: s.Cluster}},
		SnapshotSource: "primary",
		Postgres: config.Postgres{Version: "15", PGData: h.PGData, Port: h.Port,
			BinDir: "/usr/lib/postgresql/15/bin", SocketDir: h.SocketDir},
		Volumes:         config.Volumes{Mounts: []string{h.Volumes[0].MountPoint, h.Volumes[1].MountPoint}, Filesystem: "auto"},
		WatchdogSeconds: o.WatchdogSeconds,
		StateDir:        filepath.Join(s.Root, "run"),
		Retention:       o.Retention,
		Archive:         &config.Archive{Layout: "pgbackrest", Bucket: s.Bucket, Prefix: s.RepoPath, Stanza: s.Stanza},
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("local cluster configuration: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.ConfigDir, s.Cluster+".json"), data, 0o644)
}

// Down tears a site down: PostgreSQL stopped, volumes thawed and unmounted, loop devices
// detached, moto_server and the proxy stopped, the root removed. It works from the state file
// too (a site started by another process), and is safe to repeat.
func (s *Site) Down(ctx context.Context) error {
	var errs []error
	for _, h := range s.Hosts {
		if inst, ok := s.PG[h.InstanceID]; ok {
			if err := inst.Stop(ctx, "immediate"); err != nil {
				errs = append(errs, err)
			}
		} else if h.PGData != "" {
			stopPostgres(ctx, h.PGData)
		}
	}
	for i := len(s.mount) - 1; i >= 0; i-- {
		if err := s.mount[i].Unmount(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.mount = nil
	errs = append(errs, s.State.unmountRecorded(ctx)...)
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.moto != nil {
		s.moto.Stop()
	}
	killGroup(s.ProxyPID)
	killGroup(s.MotoPID)
	if s.Root != "" && len(errs) == 0 {
		if err := os.RemoveAll(s.Root); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DownRoot tears down the site recorded at root (make site-down).
func DownRoot(ctx context.Context, root string) error {
	st, err := Load(root)
	if err != nil {
		return err
	}
	return (&Site{State: st, PG: map[string]*pgtest.Instance{}, log: slog.Default()}).Down(ctx)
}

// unmountRecorded unmounts every volume mounted under the root, whoever mounted it.
func (s *State) unmountRecorded(ctx context.Context) []error {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return []error{err}
	}
	var targets []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[1], s.Root+"/") {
			targets = append(targets, f[1])
		}
	}
	var errs []error
	for i := len(targets) - 1; i >= 0; i-- {
		m := &loopfs.Mount{Path: targets[i]}
		if err := m.Unmount(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func stopPostgres(ctx context.Context, pgdata string) {
	if _, err := os.Stat(filepath.Join(pgdata, "postmaster.pid")); err != nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = exec.CommandContext(cctx, "runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", pgdata, "-m", "immediate", "-w", "stop").Run()
}

func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
}

func postgresIDs() (int, int, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, fmt.Errorf("the postgres OS user is missing: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func chownPostgres(p string) error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	return os.Chown(p, uid, gid)
}

func lchownPostgres(p string) error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	return os.Lchown(p, uid, gid)
}
