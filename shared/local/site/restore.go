package site

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgfleet/pgfleet/shared/local/loopfs"
	"github.com/pgfleet/pgfleet/shared/local/netx"
	"github.com/pgfleet/pgfleet/shared/local/pgtest"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

// RestoreSet makes a new local host from a snapshot set, the way a launch from EBS snapshots
// does: each snapshot's image is copied to a new volume, mounted at the new host's mount point
// for the same data mount, and PostgreSQL is started on it. The copy holds the standby.signal
// written at freeze time, so it starts read-only and never promotes itself. The new host carries
// no cluster tags: it is not a member until something registers it.
func (s *Site) RestoreSet(ctx context.Context, setID, name string) (Host, *pgtest.Instance, error) {
	return s.Restore(ctx, setID, name, RestoreOptions{})
}

// RestoreOptions change how a set is restored.
type RestoreOptions struct {
	// FromArchive sets restore_command to `pgbackrest archive-get`, so the copy replays archived
	// WAL past the snapshot point.
	FromArchive bool
}

// Restore is RestoreSet with options.
func (s *Site) Restore(ctx context.Context, setID, name string, o RestoreOptions) (Host, *pgtest.Instance, error) {
	store := &Snapshots{Site: s.State}
	all, err := store.ListSnapshots(ctx, s.Cluster)
	if err != nil {
		return Host{}, nil, err
	}
	sets, _ := snapset.Group(all)
	var set snapset.Set
	for _, x := range sets {
		if x.SetID == setID {
			set = x
		}
	}
	if set.SetID == "" {
		return Host{}, nil, fmt.Errorf("restore: no snapshot set %s", setID)
	}
	if !set.Completed() {
		return Host{}, nil, fmt.Errorf("restore: set %s is not completed (status %s)", setID, set.Status)
	}
	cfg, err := s.ClusterConfig()
	if err != nil {
		return Host{}, nil, err
	}
	dir := filepath.Join(s.Root, "hosts", name)
	if _, err := os.Stat(dir); err == nil {
		return Host{}, nil, fmt.Errorf("restore: host directory %s exists", dir)
	}
	h := Host{InstanceID: "i-local-" + name, Role: "restored", State: "running", Dir: dir,
		Tags: map[string]string{"Name": "i-local-" + name, snapset.TagSetID: setID}, SocketDir: filepath.Join(dir, "run")}
	if err := os.MkdirAll(filepath.Join(dir, "volumes"), 0o755); err != nil {
		return h, nil, err
	}
	for _, sn := range set.Snapshots {
		if sn.MountPoint == "" {
			return h, nil, fmt.Errorf("restore: snapshot %s has no %s tag", sn.ID, snapset.TagMountPoint)
		}
		v := Volume{
			VolumeID:   filepath.Join(dir, "volumes", strings.TrimPrefix(sn.Device, "/dev/")+".img"),
			Device:     sn.Device,
			MountPoint: filepath.Join(dir, filepath.Base(sn.MountPoint)),
			FSType:     sn.Filesystem,
		}
		if err := loopfs.SparseCopy(ctx, store.ImagePath(sn.ID), v.VolumeID); err != nil {
			return h, nil, fmt.Errorf("restore: copy snapshot %s: %w", sn.ID, err)
		}
		if _, err := s.mountVolume(ctx, &v); err != nil {
			return h, nil, err
		}
		h.Volumes = append(h.Volumes, v)
		if rel, ok := within(cfg.Postgres.PGData, sn.MountPoint); ok {
			h.PGData = filepath.Join(v.MountPoint, rel)
		}
	}
	if h.PGData == "" {
		return h, nil, errors.New("restore: no snapshot of the set holds PGDATA")
	}
	if err := os.MkdirAll(h.SocketDir, 0o755); err != nil {
		return h, nil, err
	}
	if err := chownPostgres(h.SocketDir); err != nil {
		return h, nil, err
	}
	// The snapshot holds the source's postmaster.pid: on a new host its PID means nothing (and
	// here it would name the running primary), so it goes, as it would at a real launch.
	// The freeze marker goes too: it says "pgfleet wrote standby.signal", which is true of the
	// source, not of the copy, and a thaw given this PGDATA would otherwise remove the copy's
	// standby.signal.
	for _, f := range []string{"postmaster.pid", "postmaster.opts", ".pgfleet-standby-signal"} {
		if err := os.Remove(filepath.Join(h.PGData, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return h, nil, fmt.Errorf("restore: remove stale %s: %w", f, err)
		}
	}
	if o.FromArchive {
		if err := s.configureArchiveRecovery(h); err != nil {
			return h, nil, err
		}
	}
	if err := pgtest.FixPermissions(h.PGData); err != nil {
		return h, nil, err
	}
	inst, err := pgtest.Open(ctx, h.PGData)
	if err != nil {
		return h, nil, err
	}
	port, err := netx.FreePort()
	if err != nil {
		return h, nil, err
	}
	inst.Port, inst.SocketDir = port, h.SocketDir
	h.Port = port
	s.AddHost(h)
	s.PG[h.InstanceID] = inst
	if err := s.Save(); err != nil {
		return h, inst, err
	}
	if err := inst.Start(ctx); err != nil {
		return h, inst, fmt.Errorf("restore: start PostgreSQL on the restored set: %w", err)
	}
	return h, inst, nil
}

// within reports p's path relative to dir when p is dir or below it.
func within(p, dir string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// configureArchiveRecovery gives the restored copy its own pgBackRest configuration (pg1-path is
// the copy) and a restore_command that fetches WAL from the archive.
func (s *Site) configureArchiveRecovery(h Host) error {
	conf := filepath.Join(h.Dir, "pgbackrest.conf")
	main, err := os.ReadFile(s.PgBackRest)
	if err != nil {
		return fmt.Errorf("restore: read pgBackRest config: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(main), "\n") {
		switch {
		case strings.HasPrefix(line, "pg1-path="):
			line = "pg1-path=" + h.PGData
		case strings.HasPrefix(line, "pg1-socket-path="):
			line = "pg1-socket-path=" + h.SocketDir
		case strings.HasPrefix(line, "pg1-port="):
			line = fmt.Sprintf("pg1-port=%d", h.Port)
		case strings.HasPrefix(line, "lock-path="), strings.HasPrefix(line, "log-path="), strings.HasPrefix(line, "spool-path="):
			k, _, _ := strings.Cut(line, "=")
			line = k + "=" + filepath.Join(h.Dir, "pgbackrest-"+strings.TrimSuffix(k, "-path"))
		}
		out = append(out, line)
	}
	if err := os.WriteFile(conf, []byte(strings.Join(out, "\n")), 0o640); err != nil {
		return fmt.Errorf("restore: write pgBackRest config: %w", err)
	}
	for _, p := range []string{conf, filepath.Join(h.Dir, "pgbackrest-lock"), filepath.Join(h.Dir, "pgbackrest-log"), filepath.Join(h.Dir, "pgbackrest-spool")} {
		if p != conf {
			if err := os.MkdirAll(p, 0o750); err != nil {
				return err
			}
		}
		if err := chownPostgres(p); err != nil {
			return err
		}
	}
	auto := filepath.Join(h.PGData, "postgresql.auto.conf")
	f, err := os.OpenFile(auto, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restore: set restore_command: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "restore_command = 'pgbackrest --config=%s --stanza=%s archive-get %%f \"%%p\"'\narchive_mode = off\n", conf, s.Stanza)
	return err
}
