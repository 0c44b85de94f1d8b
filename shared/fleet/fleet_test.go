package fleet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
)

// TestTakeLease: a lease held keeps another owner out, and its release works even when the run's
// context was cancelled.
func TestTakeLease(t *testing.T) {
	l := fleetfake.NewLease()
	ctx, cancel := context.WithCancel(context.Background())
	release, err := fleet.TakeLease(ctx, l, "backup/main", "run-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.TakeLease(context.Background(), l, "backup/main", "run-b", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) || !strings.Contains(err.Error(), "take lease backup/main") {
		t.Fatalf("second owner: %v; want ErrLeaseHeld naming the lease", err)
	}
	cancel() // the run was cancelled: it still gives the lease back
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if h, ok := l.Holder("backup/main"); ok {
		t.Fatalf("lease still held by %+v", h)
	}
	if _, err := fleet.TakeLease(context.Background(), l, "backup/main", "run-b", time.Minute); err != nil {
		t.Fatalf("after the release: %v", err)
	}
}

func TestNewLeaseOwnerIsUniquePerRun(t *testing.T) {
	a, b := fleet.NewLeaseOwner("req-1"), fleet.NewLeaseOwner("req-1")
	if a == b || !strings.HasPrefix(a, "req-1/") || !strings.HasPrefix(fleet.NewLeaseOwner(""), "run-") {
		t.Errorf("owners %q, %q", a, b)
	}
}
