package fleetfake_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

func TestFaults(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		program func(f *fleetfake.Faults)
		// want is the error (nil or boom) of five calls in a row.
		want []error
	}{
		{name: "nothing programmed", program: func(*fleetfake.Faults) {}, want: []error{nil, nil, nil, nil, nil}},
		{name: "next two", program: func(f *fleetfake.Faults) { f.FailNext(fleetfake.OpAcquire, 2, boom) }, want: []error{boom, boom, nil, nil, nil}},
		{name: "always", program: func(f *fleetfake.Faults) { f.FailAlways(fleetfake.OpAcquire, boom) }, want: []error{boom, boom, boom, boom, boom}},
		{name: "queued in order", program: func(f *fleetfake.Faults) {
			f.FailNext(fleetfake.OpAcquire, 1, boom)
			f.FailNext(fleetfake.OpRelease, 1, boom)
			f.FailNext(fleetfake.OpAcquire, 1, boom)
		}, want: []error{boom, boom, nil, nil, nil}},
		{name: "hook on the third call", program: func(f *fleetfake.Faults) {
			n := 0
			f.Hook(fleetfake.OpAcquire, func(context.Context) error {
				if n++; n == 3 {
					return boom
				}
				return nil
			})
		}, want: []error{nil, nil, boom, nil, nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := fleetfake.NewLease()
			tc.program(&l.Faults)
			var got []error
			for range tc.want {
				got = append(got, l.Acquire(context.Background(), "k", "owner", time.Minute))
			}
			for i := range tc.want {
				if !errors.Is(got[i], tc.want[i]) || (tc.want[i] == nil) != (got[i] == nil) {
					t.Fatalf("call %d: got %v, want %v (all: %v)", i, got[i], tc.want[i], got)
				}
			}
			if l.Count(fleetfake.OpAcquire) != len(tc.want) {
				t.Fatalf("Count = %d", l.Count(fleetfake.OpAcquire))
			}
		})
	}
}

func TestSnapshotStoreCreateSetAndTags(t *testing.T) {
	s := fleetfake.NewSnapshotStore()
	s.AddInstance("i-1",
		fleet.AttachedVolume{VolumeID: "vol-root", Device: "/dev/xvda", Root: true},
		fleet.AttachedVolume{VolumeID: "vol-a", Device: "/dev/sdf"},
		fleet.AttachedVolume{VolumeID: "vol-b", Device: "/dev/sdg"},
		fleet.AttachedVolume{VolumeID: "vol-c", Device: "/dev/sdh"},
	)
	ctx := context.Background()
	tags := map[string]string{snapset.TagCluster: "main", snapset.TagSetID: "set-1"}
	snaps, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: "i-1", ExcludeVolumeIDs: []string{"vol-c"}, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	var vols []string
	for _, sn := range snaps {
		vols = append(vols, sn.VolumeID)
		if sn.State != snapset.StatePending || sn.Tags[snapset.TagSetID] != "set-1" {
			t.Fatalf("new snapshot %+v", sn)
		}
	}
	if !slices.Equal(vols, []string{"vol-a", "vol-b"}) {
		t.Fatalf("snapshotted %q, want the two non-excluded data volumes", vols)
	}
	if _, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: "i-1", ExcludeVolumeIDs: []string{"vol-root"}}); err == nil {
		t.Fatal("excluding the root volume accepted")
	}
	if _, err := s.CreateSet(ctx, fleet.CreateSetRequest{InstanceID: "i-404"}); err == nil {
		t.Fatal("unknown instance accepted")
	}
	pending, err := s.PendingSnapshots(ctx, []string{"vol-a", "vol-c"})
	if err != nil || pending["vol-a"] != 1 || pending["vol-c"] != 0 {
		t.Fatalf("pending %v, %v", pending, err)
	}

	err = s.TagSnapshots(ctx, map[string]map[string]string{
		snaps[0].ID: {snapset.TagStatus: "completed"},
		"snap-404":  {snapset.TagStatus: "completed"},
	})
	if err == nil {
		t.Fatal("tagging an unknown snapshot accepted")
	}
	if got, _ := s.Get(snaps[0].ID); got.Tags[snapset.TagStatus] != "" {
		t.Fatal("a failed CreateTags call tagged something")
	}
	if err := s.TagSnapshots(ctx, map[string]map[string]string{snaps[0].ID: {snapset.TagStatusReason: strings.Repeat("x", 257)}}); err == nil {
		t.Fatal("a 257-character tag value accepted")
	}
	if err := s.TagSnapshots(ctx, map[string]map[string]string{snaps[0].ID: {snapset.TagStatusReason: strings.Repeat("é", 256)}}); err != nil {
		t.Fatalf("a 256-character tag value refused: %v", err)
	}

	listed, err := s.ListSnapshots(ctx, "main")
	if err != nil || len(listed) != 2 {
		t.Fatalf("listed %d, %v", len(listed), err)
	}
	if other, _ := s.ListSnapshots(ctx, fleetfake.OpRelease); len(other) != 0 {
		t.Fatalf("other cluster lists %d snapshots", len(other))
	}
	for range 2 {
		if err := s.DeleteSnapshot(ctx, snaps[0].ID); err != nil {
			t.Fatalf("delete (idempotent): %v", err)
		}
	}
	if got := s.Deleted(); !slices.Equal(got, []string{snaps[0].ID}) {
		t.Fatalf("deleted %q", got)
	}
}

func TestSnapshotStoreFailAfterEffect(t *testing.T) {
	s := fleetfake.NewSnapshotStore()
	s.AddInstance("i-1", fleet.AttachedVolume{VolumeID: "vol-a"})
	s.FailNextAfterEffect(fleetfake.OpCreateSet, 1, context.DeadlineExceeded)
	snaps, err := s.CreateSet(context.Background(), fleet.CreateSetRequest{InstanceID: "i-1", Tags: map[string]string{snapset.TagSetID: "x"}})
	if !errors.Is(err, context.DeadlineExceeded) || snaps != nil {
		t.Fatalf("got %v, %v", snaps, err)
	}
	if got := s.BySet("x"); len(got) != 1 {
		t.Fatalf("the call should have created one snapshot, store has %d", len(got))
	}
}

// TestHostRunnerRefusesLinesTheScriptsNeverPrint: a fake programmed with an impossible line
// panics instead of letting a test pass on it.
func TestHostRunnerRefusesLinesTheScriptsNeverPrint(t *testing.T) {
	impossible := map[hostscripts.Name]hostscripts.FreezeResult{
		// frozen, yet nothing in still_frozen: the old "frozen:false on every failure" shape's twin
		hostscripts.Freeze: {OK: false, Action: "freeze", Host: "pg", Error: "x", Frozen: true, StartedUS: 1, FinishedUS: 2},
	}
	for script, fr := range impossible {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: an impossible line was accepted", script)
				}
			}()
			fleetfake.NewHostRunner().Respond(script, fleetfake.JSON(fr))
		}()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("thaw ok with a mount still frozen was accepted")
			}
		}()
		tr := fleetfake.ThawOK(2_000_000, "/data")
		tr.StillFrozen = []string{"/wal"}
		fleetfake.NewHostRunner().Default(hostscripts.Thaw, fleetfake.JSON(tr))
	}()
}

func TestHostRunnerModelsFrozenState(t *testing.T) {
	h := fleetfake.NewHostRunner()
	h.Default(hostscripts.Freeze, fleetfake.JSON(fleetfake.FreezeOK(1_000_000, hostscripts.MountResult{Path: "/data", FSType: "xfs", Frozen: true})))
	h.Default(hostscripts.Thaw, fleetfake.JSON(fleetfake.ThawOK(2_000_000, "/data")))
	ctx := context.Background()
	freezeArgs := hostscripts.Args{"pgdata": "/data/pg", "mounts": "/data"}
	thawArgs := hostscripts.Args{"mounts": "/data"}

	if _, err := h.Run(ctx, "i-1", hostscripts.Freeze, freezeArgs); err != nil || !h.Frozen("i-1") {
		t.Fatalf("freeze: %v, frozen %v", err, h.Frozen("i-1"))
	}
	if line, err := h.Run(ctx, "i-1", hostscripts.Freeze, freezeArgs); err == nil || !strings.Contains(string(line), "already frozen") {
		t.Fatalf("second freeze: %s, %v", line, err)
	}
	if h.Freezes("i-1") != 1 {
		t.Fatalf("freezes %d", h.Freezes("i-1"))
	}
	h.Respond(hostscripts.Thaw, fleetfake.Response{Err: errors.New("lost")})
	if _, err := h.Run(ctx, "i-1", hostscripts.Thaw, thawArgs); err == nil || !h.Frozen("i-1") {
		t.Fatalf("failed thaw: %v, frozen %v", err, h.Frozen("i-1"))
	}
	if _, err := h.Run(ctx, "i-1", hostscripts.Thaw, thawArgs); err != nil || h.Frozen("i-1") {
		t.Fatalf("thaw: %v, frozen %v", err, h.Frozen("i-1"))
	}
	if _, err := h.Run(ctx, "i-1", hostscripts.Thaw, hostscripts.Args{"mounts": "/data;reboot"}); err == nil {
		t.Fatal("arguments the script spec rejects were accepted")
	}

	h.Respond(hostscripts.Freeze, fleetfake.Response{Block: true, Effect: fleetfake.EffectFreeze})
	bctx, cancel := context.WithCancel(ctx)
	cancel()
	// A cancelled context fails the call before it reaches the host.
	if _, err := h.Run(bctx, "i-2", hostscripts.Freeze, freezeArgs); !errors.Is(err, context.Canceled) || h.Frozen("i-2") {
		t.Fatalf("run with a done context: %v, frozen %v", err, h.Frozen("i-2"))
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := h.Run(tctx, "i-2", hostscripts.Freeze, freezeArgs); !errors.Is(err, context.DeadlineExceeded) || !h.Frozen("i-2") {
		t.Fatalf("blocked freeze that froze: %v, frozen %v", err, h.Frozen("i-2"))
	}
	if got := h.FrozenHosts(); !slices.Equal(got, []string{"i-2"}) {
		t.Fatalf("frozen hosts %q", got)
	}
	if n := len(h.CallsOf(hostscripts.Freeze)); n != 4 {
		t.Fatalf("recorded %d freeze runs, want 4", n)
	}
}

func TestLeaseExpiry(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	l := fleetfake.NewLease()
	l.Now = func() time.Time { return now }
	ctx := context.Background()
	if err := l.Acquire(ctx, "k", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx, "k", "b", time.Minute); !errors.Is(err, fleet.ErrLeaseHeld) {
		t.Fatalf("second owner: %v", err)
	}
	if err := l.Acquire(ctx, "k", "a", time.Minute); err != nil {
		t.Fatalf("same owner again: %v", err)
	}
	if err := l.Release(ctx, "k", "b"); err != nil {
		t.Fatal(err)
	}
	if h, ok := l.Holder("k"); !ok || h.Owner != "a" {
		t.Fatalf("release by another owner took the lease away: %+v %v", h, ok)
	}
	now = now.Add(time.Minute)
	if err := l.Acquire(ctx, "k", "b", time.Minute); err != nil {
		t.Fatalf("expired lease not taken over: %v", err)
	}
	if err := l.Release(ctx, "k", "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Holder("k"); ok {
		t.Fatal("released lease still held")
	}
}

func TestJournalOrdersCallsAcrossFakes(t *testing.T) {
	j := &fleetfake.Journal{}
	l := fleetfake.NewLease()
	l.Journal = j
	h := fleetfake.NewHostRunner()
	h.Journal = j
	h.Default(hostscripts.Thaw, fleetfake.JSON(fleetfake.ThawOK(2_000_000)))
	ctx := context.Background()
	_ = l.Acquire(ctx, "k", "a", time.Minute)
	_, _ = h.Run(ctx, "i-1", hostscripts.Thaw, hostscripts.Args{"mounts": "/data"})
	_ = l.Release(ctx, "k", "a")
	if got := j.Entries(); !slices.Equal(got, []string{"Acquire", "Run:thaw", "Release"}) {
		t.Fatalf("journal %q", got)
	}
}
