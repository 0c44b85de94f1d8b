package site_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/pgfleet/pgfleet/shared/local/site"
	"github.com/pgfleet/pgfleet/shared/metrics"
)

// TestBackupBadInputChangesNothing runs the real handler against the local site with inputs it
// must refuse: each gets a clear error, nothing is frozen, no snapshot is left behind.
func TestBackupBadInputChangesNothing(t *testing.T) {
	s := upSite(t, site.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary := s.PG[s.Hosts[0].InstanceID]
	job, err := site.BackupJob(ctx, s.State, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})), &metrics.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(payload string) error {
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invocationTimeout)
		defer cancel()
		_, err := lambda.NewHandler(job.Handle).Invoke(ictx, []byte(payload))
		return err
	}
	tests := []struct {
		name    string
		payload string
		setup   func(t *testing.T)
		wantMsg string
	}{
		{name: "unknown cluster", payload: `{"cluster":"nosuch"}`, wantMsg: "unknown cluster"},
		// Broken JSON never reaches the handler: the Lambda runtime's decoder refuses it.
		{name: "broken JSON", payload: `{"cluster":`, wantMsg: "EOF"},
		{name: "not an object", payload: `["main"]`, wantMsg: "malformed event"},
		{name: "scheduled event without a cluster", payload: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}`, wantMsg: "constant input"},
		{name: "typo in the event", payload: `{"clustr":"main"}`, wantMsg: "unknown field"},
		{
			name: "postgresql down", payload: `{"cluster":"main"}`, wantMsg: "not running",
			setup: func(t *testing.T) {
				if err := primary.Stop(ctx, "fast"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := primary.Start(ctx); err != nil {
						t.Fatal(err)
					}
				})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			err := invoke(tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("want an error mentioning %q, got %v", tc.wantMsg, err)
			}
			assertNothingChanged(t, s)
		})
	}
}

func assertNothingChanged(t *testing.T, s *site.Site) {
	t.Helper()
	entries, err := os.ReadDir(s.SnapshotDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("%d snapshots left behind", len(entries))
	}
	for _, v := range s.Hosts[0].Volumes {
		probe := filepath.Join(v.MountPoint, ".badinput-probe")
		done := make(chan error, 1)
		go func() { done <- os.WriteFile(probe, []byte("x"), 0o600) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("write to %s: %v", v.MountPoint, err)
			}
			_ = os.Remove(probe)
		case <-time.After(3 * time.Second):
			t.Fatalf("%s is frozen after a refused backup", v.MountPoint)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Hosts[0].PGData, "standby.signal")); err == nil {
		t.Fatal("standby.signal left in the primary's PGDATA")
	}
}
