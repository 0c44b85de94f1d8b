package site

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/pgfleet/pgfleet/shared/aws/provision"
	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// Handler returns the handler of one function wired to the site's adapters, for
// lambda.NewHandler(h).Invoke.
func Handler(ctx context.Context, st *State, fn string, log *slog.Logger, sink metrics.Sink) (any, error) {
	switch fn {
	case "backup":
		b, err := BackupJob(ctx, st, log, sink)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, raw json.RawMessage) (backup.Result, error) { return b.Handle(ctx, raw) }, nil
	case "walprune":
		p, err := WALPruneJob(ctx, st, log, sink)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, raw json.RawMessage) (walprune.Result, error) { return p.Handle(ctx, raw) }, nil
	default:
		return nil, fmt.Errorf("unknown function %q: use backup or walprune", fn)
	}
}

// BackupJob wires the backup orchestration to the site: local hosts, bash host scripts, block
// copies as snapshots, the lease in moto's DynamoDB, the configuration from the site's files.
func BackupJob(ctx context.Context, st *State, log *slog.Logger, sink metrics.Sink) (*backup.Backup, error) {
	cfg, err := moto.Config(ctx, st.MotoURL)
	if err != nil {
		return nil, err
	}
	return &backup.Backup{
		Configs:   config.DirSource{Dir: st.ConfigDir},
		Members:   Finder{Site: st},
		Hosts:     &Runner{Site: st},
		Snapshots: &Snapshots{Site: st},
		Lease:     provision.Lease(cfg, st.LeaseTable),
		Metrics:   sink,
		Log:       log,
	}, nil
}

// WALPruneJob wires the WAL pruner to the site: snapshot sets from the local store, the archive
// in moto's S3 (where pgBackRest pushes), the lease in moto's DynamoDB.
func WALPruneJob(ctx context.Context, st *State, log *slog.Logger, sink metrics.Sink) (*walprune.Pruner, error) {
	cfg, err := moto.Config(ctx, st.MotoURL)
	if err != nil {
		return nil, err
	}
	return &walprune.Pruner{
		Configs:   config.DirSource{Dir: st.ConfigDir},
		Snapshots: &Snapshots{Site: st},
		Archive:   provision.Archive(cfg),
		Lease:     provision.Lease(cfg, st.LeaseTable),
		Metrics:   sink,
		Log:       log,
	}, nil
}

func ensureBucket(ctx context.Context, url, bucket string) error {
	cfg, err := moto.Config(ctx, url)
	if err != nil {
		return err
	}
	return provision.EnsureBucket(ctx, cfg, bucket)
}

func ensureLeaseTable(ctx context.Context, url, table string) error {
	cfg, err := moto.Config(ctx, url)
	if err != nil {
		return err
	}
	return provision.EnsureLeaseTable(ctx, cfg, table)
}
