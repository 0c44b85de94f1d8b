package backup_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/backup"
	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/hostscripts"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/retry"
	"github.com/pgfleet/pgfleet/shared/snapset"
)

const (
	primaryID = "i-0aaaaaaaaaaaaaaa1"
	replicaID = "i-0bbbbbbbbbbbbbbb2"
	// freezeStartUS is the host clock when the freeze began; the thaw returns 35.5 ms later.
	freezeStartUS = int64(1_773_111_600_000_000)
	thawedUS      = freezeStartUS + 35_500
)

func TestRunHappyPath(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(context.Background(), "main")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	t.Run("order of calls", func(t *testing.T) {
		j := h.journal.Entries()
		at := func(e string) int {
			i := slices.Index(j, e)
			if i < 0 {
				t.Fatalf("no %s in %q", e, j)
			}
			return i
		}
		steps := []int{at("Acquire"), at("Run:freeze"), at("CreateSet"), at("Run:thaw"), at("TagSnapshots"), len(j) - 1}
		if !slices.IsSorted(steps) || j[len(j)-1] != "Release" {
			t.Fatalf("want lease, freeze, create, thaw, mark, release in that order: %q", j)
		}
		if frozen := j[at("Run:freeze")+1 : at("Run:thaw")]; !slices.Equal(frozen, []string{"CreateSet"}) {
			t.Fatalf("calls while frozen %q, want only CreateSet", frozen)
		}
	})

	t.Run("lease taken and released", func(t *testing.T) {
		calls := h.lease.Calls()
		if len(calls) != 2 {
			t.Fatalf("lease calls %+v", calls)
		}
		acq, rel := calls[0], calls[1]
		if acq.Op != fleetfake.OpAcquire || acq.Key != "backup/main" || acq.Owner != "run-test" || acq.TTL != 15*time.Minute || acq.Err != nil {
			t.Errorf("acquire %+v", acq)
		}
		if rel.Op != fleetfake.OpRelease || rel.Key != acq.Key || rel.Owner != acq.Owner || rel.Err != nil {
			t.Errorf("release %+v", rel)
		}
		if hd, held := h.lease.Holder("backup/main"); held {
			t.Errorf("lease still held by %+v", hd)
		}
	})

	t.Run("host frozen once, then thawed", func(t *testing.T) {
		h.assertThawed(t)
		if n := h.hosts.Freezes(replicaID); n != 1 {
			t.Errorf("host frozen %d times", n)
		}
		fz := h.hosts.CallsOf(hostscripts.Freeze)
		th := h.hosts.CallsOf(hostscripts.Thaw)
		if len(fz) != 1 || len(th) != 1 || fz[0].InstanceID != replicaID || th[0].InstanceID != replicaID {
			t.Fatalf("freeze %+v thaw %+v", fz, th)
		}
		if !th[0].FrozenBefore {
			t.Errorf("thaw ran on a host that was not frozen")
		}
		want := hostscripts.Args{
			"pgdata": "/data/pg/15/main", "port": "5432", "pg-bin": "/usr/lib/postgresql/15/bin", "pg-user": "postgres",
			"pg-host": "/var/run/postgresql", "mounts": "/data,/wal", "filesystem": "auto", "consistency": "freeze",
			"watchdog-seconds": "10", "state-dir": "/run/pgfleet", "protect": "/var/lib/amazon/ssm,/var/log/amazon/ssm",
		}
		if !maps.Equal(fz[0].Args, want) {
			t.Errorf("freeze args\n %v\nwant\n %v", fz[0].Args, want)
		}
		if th[0].Args["mounts"] != "/data,/wal" || th[0].Args["state-dir"] != "/run/pgfleet" {
			t.Errorf("thaw args %v", th[0].Args)
		}
	})

	t.Run("set created pending, then marked completed", func(t *testing.T) {
		creates := h.store.CreateCalls()
		if len(creates) != 1 {
			t.Fatalf("%d CreateSet calls", len(creates))
		}
		req := creates[0]
		wantTags := map[string]string{
			snapset.TagCluster: "main", snapset.TagSetID: res.SetID, snapset.TagStatus: "pending",
			snapset.TagSourceInstance: replicaID, snapset.TagSourceRole: "replica", snapset.TagPGVersion: "15",
			snapset.TagTimeline: "2", snapset.TagRedoLSN: "0/5000028", snapset.TagRedoWALFile: "000000020000000000000005",
			snapset.TagSnapshotLSN: "0/5000100", snapset.TagConsistency: "freeze", snapset.TagCreatedBy: "pgfleet",
			snapset.TagVolumeCount: "2",
		}
		for k, v := range wantTags {
			if req.Tags[k] != v {
				t.Errorf("creation tag %s = %q, want %q", k, req.Tags[k], v)
			}
		}
		if req.InstanceID != replicaID || len(req.ExcludeVolumeIDs) != 0 {
			t.Errorf("request %+v", req)
		}

		snaps := h.store.BySet(res.SetID)
		want := map[string][3]string{
			"vol-data-" + replicaID: {"/dev/sdf", "/data", "xfs"},
			"vol-wal-" + replicaID:  {"/dev/sdg", "/wal", "ext4"},
		}
		if len(snaps) != len(want) {
			t.Fatalf("set has %d snapshots, want %d", len(snaps), len(want))
		}
		for _, sn := range snaps {
			w := want[sn.VolumeID]
			got := [3]string{sn.Tags[snapset.TagDevice], sn.Tags[snapset.TagMountPoint], sn.Tags[snapset.TagFilesystem]}
			if got != w {
				t.Errorf("snapshot of %s: device/mount/filesystem tags %q, want %q", sn.VolumeID, got, w)
			}
			if sn.Tags[snapset.TagStatus] != "completed" || sn.Tags[snapset.TagFrozenMS] != "36" {
				t.Errorf("snapshot of %s: status %q frozen-ms %q", sn.VolumeID, sn.Tags[snapset.TagStatus], sn.Tags[snapset.TagFrozenMS])
			}
		}

		// Once EBS finishes the snapshots, the set reads back as the newest completed set.
		h.store.Complete()
		listed, _ := h.store.ListSnapshots(context.Background(), "main")
		sets, unreadable := snapset.Group(listed)
		newest, ok := snapset.NewestCompleted(sets)
		if len(unreadable) > 0 || !ok || newest.SetID != res.SetID || newest.FrozenMS != 36 || newest.VolumeCount != 2 {
			t.Fatalf("read back %+v (unreadable %d)", newest, len(unreadable))
		}
	})

	t.Run("result", func(t *testing.T) {
		ids := make([]string, 0, 2)
		for _, sn := range h.store.BySet(res.SetID) {
			ids = append(ids, sn.ID)
		}
		if res.Status != "completed" || res.Cluster != "main" || res.InstanceID != replicaID || res.Role != "replica" {
			t.Errorf("result %+v", res)
		}
		if !slices.Equal(res.SnapshotIDs, ids) || res.Volumes != 2 || res.SizeGiB != 120 {
			t.Errorf("snapshots %q volumes %d size %d, want %q 2 120", res.SnapshotIDs, res.Volumes, res.SizeGiB, ids)
		}
		if !res.Frozen || !res.ThawVerified || res.WritesBlockedMS != 35.5 {
			t.Errorf("frozen %v thaw verified %v writes blocked %v ms, want true true 35.5", res.Frozen, res.ThawVerified, res.WritesBlockedMS)
		}
		if res.RedoWALFile != "000000020000000000000005" || res.SnapshotLSN != "0/5000100" {
			t.Errorf("WAL fields %q %q", res.RedoWALFile, res.SnapshotLSN)
		}
		for _, step := range []string{"lease", "preflight", "freeze", "snapshot", "thaw", "mark", "retention", "total"} {
			if _, ok := res.StepsMS[step]; !ok {
				t.Errorf("no step time for %s: %v", step, res.StepsMS)
			}
		}
		if len(res.Warnings) > 0 || res.Reason != "" {
			t.Errorf("warnings %q reason %q", res.Warnings, res.Reason)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if len(h.metrics.Points) != 1 || h.metrics.Points[0].Dims["Cluster"] != "main" {
			t.Fatalf("points %+v", h.metrics.Points)
		}
		for name, want := range map[string]float64{"BackupSuccess": 1, "WritesBlockedMs": 35.5, "SetVolumes": 2, "SetSizeGiB": 120, "SetsDeleted": 0} {
			if got, ok := h.metrics.Get(name); !ok || got != want {
				t.Errorf("metric %s = %v (%v), want %v", name, got, ok, want)
			}
		}
		if _, ok := h.metrics.Get("StepFreezeMs"); !ok {
			t.Errorf("no StepFreezeMs metric")
		}
	})
}

func TestRunPlansVolumesFromFreezeMounts(t *testing.T) {
	r := member(replicaID, "replica", "running", dataVolumes(replicaID, 3)...)
	tests := []struct {
		name        string
		mounts      []hostscripts.MountResult
		wantExclude []string
		wantVolumes int
		wantWarning string
	}{
		{
			name:        "a data volume that holds no listed mount is left out",
			mounts:      mountsOf(r)[:2],
			wantExclude: []string{"vol-v3-" + replicaID},
			wantVolumes: 2,
		},
		{
			// A volume id the freeze saw that is not attached to this instance (a stale
			// mapping, an id from another host) maps nothing: every data volume is taken.
			name:        "a mount on a volume not attached to the instance: every data volume is taken",
			mounts:      append(mountsOf(r)[:1], hostscripts.MountResult{Path: "/wal", FSType: "xfs", VolumeID: "vol-0notattached000", Frozen: true}),
			wantVolumes: 3,
			wantWarning: "could not map every data mount",
		},
		{
			name:        "a mount that maps to no attached volume: every data volume is taken",
			mounts:      append(mountsOf(r)[:1], hostscripts.MountResult{Path: "/wal", FSType: "xfs", VolumeID: ""}),
			wantVolumes: 3,
			wantWarning: "could not map every data mount",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, member(primaryID, "primary", "running", dataVolumes(primaryID, 2)...), r)
			h.hosts.Default(hostscripts.Freeze, fleetfake.JSON(freezeResult(tc.mounts...)))
			res, err := h.run(context.Background(), "main")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			req := h.store.CreateCalls()[0]
			if !slices.Equal(req.ExcludeVolumeIDs, tc.wantExclude) {
				t.Errorf("excluded %q, want %q", req.ExcludeVolumeIDs, tc.wantExclude)
			}
			if res.Volumes != tc.wantVolumes || req.Tags[snapset.TagVolumeCount] != fmt.Sprint(tc.wantVolumes) {
				t.Errorf("set of %d volumes (volume-count tag %q), want %d", res.Volumes, req.Tags[snapset.TagVolumeCount], tc.wantVolumes)
			}
			if got := strings.Join(res.Warnings, "; "); !strings.Contains(got, tc.wantWarning) || (tc.wantWarning == "") != (got == "") {
				t.Errorf("warnings %q, want %q", got, tc.wantWarning)
			}
			for _, sn := range h.store.BySet(res.SetID) {
				if sn.Tags[snapset.TagStatus] != "completed" || sn.Tags[snapset.TagDevice] == "" {
					t.Errorf("snapshot %s tags %v", sn.ID, sn.Tags)
				}
			}
		})
	}
}

// TestRunWatchdogFiredMarksTheSetFailed: when the host was thawed by its watchdog before the
// run's thaw, the snapshot may have been taken with writes running (and a primary's without
// standby.signal): the set is marked failed with that reason, the run fails, the metric says so.
func TestRunWatchdogFiredMarksTheSetFailed(t *testing.T) {
	tests := []struct {
		name      string
		thaws     func(h *harness)
		wantFired bool
	}{
		{
			name: "the thaw reports this freeze's watchdog fired",
			thaws: func(h *harness) {
				tr := fleetfake.ThawOK(thawedUS)
				tr.AlreadyThawed = []string{"/data", "/wal"}
				tr.WatchdogFiredToken, tr.WatchdogFiredUS = fleetfake.FreezeToken, thawedUS-5_000
				h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(tr))
			},
			wantFired: true,
		},
		{
			name: "the first thaw finds every frozen mount already thawed",
			thaws: func(h *harness) {
				tr := fleetfake.ThawOK(thawedUS)
				tr.AlreadyThawed = []string{"/data", "/wal"}
				h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(tr))
			},
			wantFired: true,
		},
		{
			name: "an older freeze's watchdog fired: not this set's business",
			thaws: func(h *harness) {
				tr := thawResult()
				tr.WatchdogFiredToken, tr.WatchdogFiredUS = "1773000000000000-1", 1_773_000_010_000_000
				h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(tr))
			},
		},
		{
			// The first thaw's answer was lost after it thawed: the retry finds nothing frozen,
			// which says nothing about the watchdog.
			name: "a retry finds the mounts thawed by the lost first attempt",
			thaws: func(h *harness) {
				tr := fleetfake.ThawOK(thawedUS)
				tr.AlreadyThawed = []string{"/data", "/wal"}
				h.hosts.Respond(hostscripts.Thaw, fleetfake.Response{Line: mustJSON(thawResult()), Err: errors.New("ssm: InvocationDoesNotExist"), Effect: fleetfake.EffectThaw}, fleetfake.JSON(tr))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.thaws(h)
			res, err := h.run(context.Background(), "main")
			fired, _ := h.metrics.Get("WatchdogFired")
			if !tc.wantFired {
				if err != nil || res.Status != "completed" || res.WatchdogFired || fired != 0 {
					t.Fatalf("Run: %+v, %v, WatchdogFired metric %v; want completed", res, err, fired)
				}
				return
			}
			if !errors.Is(err, backup.ErrNotFreezeConsistent) || res.Status != "failed" || !res.WatchdogFired || fired != 1 {
				t.Fatalf("Run: status %q, watchdogFired %v, metric %v, err %v; want failed: not freeze-consistent", res.Status, res.WatchdogFired, fired, err)
			}
			sets, _ := snapset.Group(h.store.BySet(res.SetID))
			if len(sets) != 1 || !sets[0].Failed() {
				t.Fatalf("set %s: %+v; want marked failed", res.SetID, sets)
			}
			for _, sn := range sets[0].Snapshots {
				if r := sn.Tags[snapset.TagStatusReason]; !strings.Contains(r, "watchdog") || !strings.Contains(r, "standby.signal") {
					t.Errorf("status reason %q; want it to name the watchdog and standby.signal", r)
				}
			}
			if res.WritesBlockedMS != 0 {
				t.Errorf("writes blocked %v ms: a window the watchdog ended was not measured", res.WritesBlockedMS)
			}
			h.assertThawed(t)
			h.assertLeaseFree(t)
		})
	}
}

// TestRunBadConfigurationSendsNothing: a configuration whose values the host scripts refuse
// (here loaded without config.Parse, as from a hand-edited parameter) sends nothing to any host,
// not even a thaw.
func TestRunBadConfigurationSendsNothing(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *config.Cluster)
		want string
	}{
		{"space in the socket dir", func(c *config.Cluster) { c.Postgres.SocketDir = "/var/run/post gres" }, "--pg-host"},
		{"metacharacter in a mount", func(c *config.Cluster) { c.Volumes.Mounts = []string{"/data;reboot"} }, "--mounts"},
		{"state dir not absolute", func(c *config.Cluster) { c.StateDir = "run/pgfleet" }, "--state-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cfg := clusterConfig(t)
			tc.edit(&cfg)
			h.configs.Put(cfg)
			res, err := h.run(context.Background(), "main")
			if !errors.Is(err, backup.ErrBadConfig) || res.Status != "failed" {
				t.Fatalf("Run: %+v, %v; want ErrBadConfig", res, err)
			}
			assertMentions(t, err, tc.want, "nothing was sent to a host")
			h.assertNothingChanged(t)
			if n := len(h.lease.Calls()); n != 0 {
				t.Errorf("%d lease calls", n)
			}
		})
	}
}

func TestRunSnapshotFailureThawsAndMarksTheSetFailed(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(h *harness)
		want      []string
		wantSnaps int  // snapshots of the set left in the store, all marked failed
		thawFails bool // the host stays frozen (the on-host watchdog would thaw it)
	}{
		{
			name: "CreateSnapshots refused",
			setup: func(h *harness) {
				h.store.FailNext(fleetfake.OpCreateSet, 1, errors.New("RequestLimitExceeded: slow down"))
			},
			want: []string{"create snapshot set", "RequestLimitExceeded", "host thawed", "set marked failed"},
		},
		{
			name: "the call timed out but the snapshots were created",
			setup: func(h *harness) {
				h.store.FailNextAfterEffect(fleetfake.OpCreateSet, 1, fmt.Errorf("operation error EC2: CreateSnapshots: %w", context.DeadlineExceeded))
			},
			want:      []string{"create snapshot set", "deadline exceeded", "host thawed"},
			wantSnaps: 2,
		},
		{
			name: "the call hung past the snapshot timeout and went through",
			setup: func(h *harness) {
				h.b.Timeouts.Snapshot = 20 * time.Millisecond
				h.store.Hook(fleetfake.OpCreateSet, func(ctx context.Context) error { <-ctx.Done(); return nil })
				h.store.FailNextAfterEffect(fleetfake.OpCreateSet, 1, context.DeadlineExceeded)
			},
			want:      []string{"create snapshot set", "deadline exceeded"},
			wantSnaps: 2,
		},
		{
			name: "an error message longer than a tag value",
			setup: func(h *harness) {
				h.store.FailNextAfterEffect(fleetfake.OpCreateSet, 1, errors.New("InternalError: "+strings.Repeat("é", 300)))
			},
			want:      []string{"InternalError"},
			wantSnaps: 2,
		},
		{
			name: "storage returned more snapshots than the set has volumes",
			setup: func(h *harness) {
				vols := slices.Concat(h.members[replicaID].Volumes, []fleet.AttachedVolume{{VolumeID: "vol-new", Device: "/dev/sdz"}})
				h.store.AddInstance(replicaID, vols...)
			},
			want:      []string{"expected 2 snapshots, storage returned 3"},
			wantSnaps: 3,
		},
		{
			name: "snapshot and thaw both fail",
			setup: func(h *harness) {
				h.store.FailNextAfterEffect(fleetfake.OpCreateSet, 1, errors.New("InternalError"))
				h.hosts.FailAlways(string(hostscripts.Thaw), errors.New("ssm: InvocationDoesNotExist"))
			},
			want:      []string{"create snapshot set", "thaw failed too", "watchdog thaws within 10s"},
			wantSnaps: 2,
			thawFails: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			res, err := h.run(context.Background(), "main")
			if err == nil {
				t.Fatalf("no error: %+v", res)
			}
			assertMentions(t, err, tc.want...)
			if res.Status != "failed" || res.Reason != err.Error() {
				t.Errorf("status %q reason %q", res.Status, res.Reason)
			}
			if n := len(h.hosts.CallsOf(hostscripts.Thaw)); n == 0 {
				t.Errorf("no thaw after a failed snapshot")
			}
			if !tc.thawFails {
				h.assertThawed(t)
			}
			h.assertLeaseFree(t)
			snaps := h.store.BySet(res.SetID)
			if len(snaps) != tc.wantSnaps {
				t.Errorf("%d snapshots of the set in the store, want %d", len(snaps), tc.wantSnaps)
			}
			for _, sn := range h.store.All() {
				if st := sn.Tags[snapset.TagStatus]; st != "failed" {
					t.Errorf("snapshot %s left with status %q, want failed", sn.ID, st)
				}
				if sn.Tags[snapset.TagStatusReason] == "" {
					t.Errorf("snapshot %s marked failed without a reason", sn.ID)
				}
			}
			if v, _ := h.metrics.Get("BackupSuccess"); v != 0 {
				t.Errorf("BackupSuccess %v", v)
			}
		})
	}
}

func TestRunThawRetries(t *testing.T) {
	tests := []struct {
		name          string
		setup         func(h *harness)
		wantErr       []string // empty: the backup succeeds
		wantThaws     int
		wantWarning   string
		wantVerified  bool
		wantLeftFroze bool
	}{
		{
			name: "command lost once",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Thaw, fleetfake.Response{Err: errors.New("ssm: InvocationDoesNotExist")})
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			name: "script reports a failure once",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Thaw, fleetfake.Response{Line: mustJSON(thawFailure("fsfreeze -u /wal failed: device busy", "/wal")), Err: errors.New("exit status 1")})
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			name: "ok:false without an exit error",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(thawFailure("a pgfleet freeze on this host still holds /run/pgfleet/lock after 15s: nothing was thawed yet; retry (the watchdog stays armed)")))
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			name: "no result line once",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Thaw, fleetfake.Response{Err: errors.New("thaw on i-0bbbbbbbbbbbbbbb2 (command c-1) succeeded but printed no JSON result line")})
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			name: "hangs once past the thaw timeout",
			setup: func(h *harness) {
				h.b.Timeouts.Thaw = 20 * time.Millisecond
				h.hosts.Respond(hostscripts.Thaw, fleetfake.Response{Block: true})
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			// The probe is how a thaw proves the mounts take writes: a thaw without it is retried.
			name: "thawed but the write probe did not finish once",
			setup: func(h *harness) {
				tr := thawResult()
				tr.ProbeOK = false
				h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(tr))
			},
			wantThaws:    2,
			wantVerified: true,
		},
		{
			// ... and when it never finishes the run fails loudly; the set, taken while frozen,
			// stays completed.
			name: "the write probe never finishes",
			setup: func(h *harness) {
				tr := thawResult()
				tr.ProbeOK = false
				h.hosts.Default(hostscripts.Thaw, fleetfake.JSON(tr))
			},
			wantErr:   []string{"thaw of " + replicaID + " failed after retries", "write probe did not finish", "3 attempts"},
			wantThaws: 3,
		},
		{
			name:          "fails every time",
			setup:         func(h *harness) { h.hosts.FailAlways(string(hostscripts.Thaw), errors.New("ssm: Undeliverable")) },
			wantErr:       []string{"thaw of " + replicaID + " failed after retries", "watchdog thaws within 10s", "3 attempts", "Undeliverable"},
			wantThaws:     3,
			wantLeftFroze: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			res, err := h.run(context.Background(), "main")
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error: %+v", res)
				}
				assertMentions(t, err, tc.wantErr...)
			}
			if n := len(h.hosts.CallsOf(hostscripts.Thaw)); n != tc.wantThaws {
				t.Errorf("%d thaw runs, want %d", n, tc.wantThaws)
			}
			if got := h.hosts.Frozen(replicaID); got != tc.wantLeftFroze {
				t.Errorf("host frozen = %v, want %v", got, tc.wantLeftFroze)
			}
			if res.ThawVerified != tc.wantVerified {
				t.Errorf("ThawVerified = %v", res.ThawVerified)
			}
			if !strings.Contains(strings.Join(res.Warnings, "; "), tc.wantWarning) {
				t.Errorf("warnings %q, want %q", res.Warnings, tc.wantWarning)
			}
			// The snapshot was taken while frozen: the set is good whatever the thaw did.
			for _, sn := range h.store.BySet(res.SetID) {
				if sn.Tags[snapset.TagStatus] != "completed" {
					t.Errorf("snapshot %s status %q, want completed", sn.ID, sn.Tags[snapset.TagStatus])
				}
			}
			if len(h.store.BySet(res.SetID)) != 2 {
				t.Errorf("set %q has %d snapshots", res.SetID, len(h.store.BySet(res.SetID)))
			}
			h.assertLeaseFree(t)
		})
	}
}

// A freeze whose outcome is unknown (lost, unreadable, timed out) is followed by a thaw. A freeze
// the script itself refused is not: the script undoes its own partial work, and a thaw would
// release a freeze that is not this run's (an operator's, or an earlier run's under its watchdog).
func TestRunFreezeFailureSnapshotsNothingAndThaws(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(h *harness)
		want        []string
		noThaw      bool // the script refused cleanly: nothing of ours to thaw
		leftFrozen  bool // frozen by someone else before the run, and left to them
		thawFails   bool
		wantFreezes int // times the host went from thawed to frozen
	}{
		{
			name: "refused by the script",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{
					Line: mustJSON(freezeFailure("/data/pg/15/main/pg_wal is on none of --mounts (/data): the snapshot would not contain it")),
					Err:  errors.New("exit status 1"),
				})
			},
			want:   []string{"is on none of --mounts", "nothing frozen"},
			noThaw: true,
		},
		{
			// The script's rollback could not unfreeze /data: it says so, and the run thaws.
			name: "failed and still frozen",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{
					Line: mustJSON(freezeFailure("fsfreeze -f failed on /wal: Device or resource busy (cleanup: thaw of /data failed: Input/output error; the watchdog thaws the rest)", "/data")),
					Err:  errors.New("exit status 1"),
				})
			},
			want:        []string{"still frozen: /data", "host thawed"},
			wantFreezes: 1,
		},
		{
			name: "ok:false without an exit error",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.JSON(freezeFailure("postgresql is not running on port 5432 (socket dir /var/run/postgresql): no response")))
			},
			want:   []string{"freeze refused", "postgresql is not running"},
			noThaw: true,
		},
		{
			name: "transport error, no result",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{Err: errors.New("ssm: InvalidInstanceId: not connected")})
			},
			want: []string{"InvalidInstanceId"},
		},
		{
			// A result the script never prints (a script and a function of different versions):
			// the outcome is unknown, so the run thaws.
			name: "result of another version",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{
					Line:   []byte(`{"ok":true,"action":"freeze","host":"pg","frozen_mounts":["/data"],"started_us":1,"finished_us":2}`),
					Effect: fleetfake.EffectFreeze, Unchecked: true,
				})
			},
			want:        []string{"read freeze result", "unknown field", "host thawed"},
			wantFreezes: 1,
		},
		{
			name: "timed out after the host froze",
			setup: func(h *harness) {
				h.b.Timeouts.Freeze = 20 * time.Millisecond
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{Block: true, Effect: fleetfake.EffectFreeze})
			},
			want:        []string{"deadline exceeded", "host thawed"},
			wantFreezes: 1,
		},
		{
			name:       "a frozen host refuses a second freeze",
			setup:      func(h *harness) { h.hosts.SetFrozen(replicaID, true) },
			want:       []string{"already frozen"},
			noThaw:     true,
			leftFrozen: true,
		},
		{
			name: "freeze and thaw both fail",
			setup: func(h *harness) {
				h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{Err: errors.New("ssm: delivery timed out"), Effect: fleetfake.EffectFreeze})
				h.hosts.FailAlways(string(hostscripts.Thaw), errors.New("ssm: delivery timed out"))
			},
			want:        []string{"freeze failed", "thaw failed too", "watchdog thaws within 10s"},
			thawFails:   true,
			wantFreezes: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			res, err := h.run(context.Background(), "main")
			if err == nil {
				t.Fatalf("no error: %+v", res)
			}
			assertMentions(t, err, tc.want...)
			if n := h.store.Count(fleetfake.OpCreateSet); n != 0 {
				t.Errorf("%d CreateSet calls after a failed freeze", n)
			}
			if n := len(h.hosts.CallsOf(hostscripts.Thaw)); (n > 0) == tc.noThaw {
				t.Errorf("%d thaw calls after a failed freeze; want a thaw: %v", n, !tc.noThaw)
			}
			if !tc.thawFails && !tc.leftFrozen {
				h.assertThawed(t)
			}
			if n := h.hosts.Freezes(replicaID); n != tc.wantFreezes {
				t.Errorf("host frozen %d times, want %d", n, tc.wantFreezes)
			}
			h.assertLeaseFree(t)
			if len(h.store.All()) != 0 {
				t.Errorf("snapshots exist: %+v", h.store.All())
			}
			if res.Status != "failed" {
				t.Errorf("status %q", res.Status)
			}
		})
	}
}

func TestRunCallerCancelledAfterFreeze(t *testing.T) {
	tests := []struct {
		name       string
		createErr  error // returned by CreateSet after it created the snapshots
		wantErr    bool
		wantStatus string // of the set's snapshots
	}{
		{name: "create call completes", wantStatus: "completed"},
		{name: "create call ends with the cancellation", createErr: context.Canceled, wantErr: true, wantStatus: "failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h.store.Hook(fleetfake.OpCreateSet, func(context.Context) error { cancel(); return nil })
			if tc.createErr != nil {
				h.store.FailNextAfterEffect(fleetfake.OpCreateSet, 1, tc.createErr)
			}
			res, err := h.run(ctx, "main")
			if (err != nil) != tc.wantErr {
				t.Fatalf("Run: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the hook did not cancel the caller's context")
			}
			if n := len(h.hosts.CallsOf(hostscripts.Thaw)); n != 1 {
				t.Errorf("%d thaw runs, want 1 (a thaw on the cancelled context would fail)", n)
			}
			h.assertThawed(t)
			h.assertLeaseFree(t)
			snaps := h.store.BySet(res.SetID)
			if len(snaps) != 2 {
				t.Fatalf("set %q has %d snapshots", res.SetID, len(snaps))
			}
			for _, sn := range snaps {
				if sn.Tags[snapset.TagStatus] != tc.wantStatus {
					t.Errorf("snapshot %s status %q, want %q", sn.ID, sn.Tags[snapset.TagStatus], tc.wantStatus)
				}
			}
		})
	}
}

func TestRunLease(t *testing.T) {
	tests := []struct {
		name    string
		holder  string
		expires time.Duration // from the harness clock
		wantErr bool
	}{
		{name: "held by another run", holder: "other-run", expires: 10 * time.Minute, wantErr: true},
		{name: "expired lease of a run that died", holder: "dead-run", expires: -time.Second},
		{name: "own lease of a retried invocation", holder: "run-test", expires: 10 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.lease.Hold("backup/main", tc.holder, h.clock.peek().Add(tc.expires))
			res, err := h.run(context.Background(), "main")
			if !tc.wantErr {
				if err != nil || res.Status != "completed" {
					t.Fatalf("Run: %+v, %v", res, err)
				}
				h.assertLeaseFree(t)
				return
			}
			if !errors.Is(err, fleet.ErrLeaseHeld) {
				t.Fatalf("want ErrLeaseHeld, got %v", err)
			}
			assertMentions(t, err, "backup/main", tc.holder)
			if hd, ok := h.lease.Holder("backup/main"); !ok || hd.Owner != tc.holder {
				t.Errorf("the other run's lease was taken away: %+v %v", hd, ok)
			}
			h.assertNothingChanged(t)
			if len(h.finder.Calls()) != 0 {
				t.Errorf("members looked up without the lease")
			}
		})
	}
}

func TestRunRefusesNearTheDeadline(t *testing.T) {
	h := newHarness(t)
	// The harness: freeze 5s + snapshot 5s + 3 thaw attempts of 5s + 1ms + 2ms of backoff.
	budget := h.b.Timeouts.Budget(h.b.ThawRetry)
	if want := 25*time.Second + 3*time.Millisecond; budget != want {
		t.Fatalf("Budget = %s, want %s", budget, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget-time.Second)
	defer cancel()
	res, err := h.run(ctx, "main")
	if err == nil {
		t.Fatalf("no error: %+v", res)
	}
	assertMentions(t, err, "before the deadline", "need 25.003s", "3 thaw attempts", "nothing was frozen")
	if n := len(h.hosts.Calls()); n != 0 {
		t.Errorf("%d host script runs", n)
	}
	if h.store.Count(fleetfake.OpCreateSet) != 0 {
		t.Errorf("CreateSet called")
	}
	h.assertLeaseFree(t)

	// With the budget left the same run goes ahead.
	h = newHarness(t)
	ctx, cancel = context.WithTimeout(context.Background(), budget+time.Second)
	defer cancel()
	if res, err := h.run(ctx, "main"); err != nil || res.Status != "completed" {
		t.Fatalf("Run with time to spare: %+v, %v", res, err)
	}
}

// TestBudgetCoversEveryThaw: the worst case the timeouts allow (the freeze command, the
// snapshot call and every thaw attempt each hang for their whole timeout), started with just the
// budget left: every thaw attempt still starts before the deadline, when Lambda would stop the
// function.
func TestBudgetCoversEveryThaw(t *testing.T) {
	h := newHarness(t)
	h.b.Timeouts = backup.Timeouts{Freeze: 150 * time.Millisecond, Snapshot: 100 * time.Millisecond, Thaw: 80 * time.Millisecond}
	h.b.ThawRetry = retry.Backoff{Attempts: 4, Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	h.hosts.Respond(hostscripts.Freeze, fleetfake.Response{Block: true, Effect: fleetfake.EffectFreeze})
	h.store.Hook(fleetfake.OpCreateSet, hang)
	var mu sync.Mutex
	var thawStarts []time.Time
	h.hosts.Hook(string(hostscripts.Thaw), func(ctx context.Context) error {
		mu.Lock()
		thawStarts = append(thawStarts, time.Now())
		mu.Unlock()
		return hang(ctx)
	})
	budget := h.b.Timeouts.Budget(h.b.ThawRetry)
	ctx, cancel := context.WithTimeout(context.Background(), budget+20*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err := h.run(ctx, "main")
	if err == nil {
		t.Fatal("no error")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(thawStarts) != 4 {
		t.Fatalf("%d thaw attempts, want 4", len(thawStarts))
	}
	for i, at := range thawStarts {
		if at.After(deadline) {
			t.Errorf("thaw attempt %d started %s after the deadline", i+1, at.Sub(deadline))
		}
	}
	t.Logf("budget %s; last thaw attempt started %s before the deadline", budget, deadline.Sub(thawStarts[3]))
}

func TestDefaultTimeoutsFitTheHost(t *testing.T) {
	d := backup.DefaultTimeouts
	// A thaw may wait for a freeze still running on the host, then probe for up to 5 s.
	if min := hostscripts.ThawLockWait + 5*time.Second; d.Thaw <= min {
		t.Errorf("Thaw %s: a thaw attempt must outlast the host's lock wait and probe (%s)", d.Thaw, min)
	}
	if d.Freeze <= hostscripts.FreezeLockWait {
		t.Errorf("Freeze %s: must outlast the host's wait for a thaw in progress (%s)", d.Freeze, hostscripts.FreezeLockWait)
	}
	if b := d.Budget(backup.DefaultThawRetry); b > 4*time.Minute {
		t.Errorf("Budget %s leaves less than a minute of a 5 minute Lambda for the rest", b)
	}
}

func TestRunMarksAbandonedSetsFailed(t *testing.T) {
	tests := []struct {
		name       string
		state      snapset.SnapshotState
		wantDelete bool // retention deletes it once it is failed and finished
	}{
		{name: "finished snapshots", state: snapset.StateCompleted, wantDelete: true},
		{name: "snapshots still being copied", state: snapset.StatePending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			old := h.seedSet("main", h.clock.peek().Add(-time.Hour), snapset.StatusPending, tc.state)
			res, err := h.run(context.Background(), "main")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(res.AbandonedMarked, []string{old.SetID}) {
				t.Fatalf("abandoned marked %q, want [%s]", res.AbandonedMarked, old.SetID)
			}
			j := h.journal.Entries()
			if slices.Index(j, "TagSnapshots") > slices.Index(j, "Run:freeze") {
				t.Errorf("abandoned set marked after the freeze: %q", j)
			}
			first := h.store.TagCalls()[0]
			for _, id := range old.SnapshotIDs() {
				if first[id][snapset.TagStatus] != "failed" || !strings.Contains(first[id][snapset.TagStatusReason], "abandoned") {
					t.Errorf("snapshot %s tagged %v, want failed/abandoned", id, first[id])
				}
			}
			if got := slices.Contains(res.DeletedSets, old.SetID); got != tc.wantDelete {
				t.Errorf("abandoned set deleted = %v, want %v", got, tc.wantDelete)
			}
			if !tc.wantDelete {
				for _, sn := range h.store.BySet(old.SetID) {
					if sn.Tags[snapset.TagStatus] != "failed" {
						t.Errorf("snapshot %s status %q", sn.ID, sn.Tags[snapset.TagStatus])
					}
				}
			}
		})
	}
}

func TestRunChoosesTheMember(t *testing.T) {
	const replica2 = "i-0ccccccccccccccc3"
	tests := []struct {
		name    string
		source  string
		members []fleet.Member
		want    string
	}{
		{
			name:    "a running replica is preferred",
			members: []fleet.Member{member(primaryID, "primary", "running"), member(replicaID, "replica", "running")},
			want:    replicaID,
		},
		{
			name:    "falls back to the primary when no replica runs",
			members: []fleet.Member{member(primaryID, "primary", "running"), member(replicaID, "replica", "stopped")},
			want:    primaryID,
		},
		{
			name:    "snapshotSource primary",
			source:  "primary",
			members: []fleet.Member{member(primaryID, "primary", "running"), member(replicaID, "replica", "running")},
			want:    primaryID,
		},
		{
			name:    "stopped members are ignored",
			members: []fleet.Member{member(primaryID, "primary", "stopped"), member(replicaID, "replica", "stopped"), member(replica2, "replica", "running")},
			want:    replica2,
		},
		{
			name:    "replicas in instance id order",
			members: []fleet.Member{member(replica2, "replica", "running"), member(replicaID, "replica", "running"), member(primaryID, "primary", "running")},
			want:    replicaID,
		},
		{
			name:    "a member without a known role is not chosen",
			members: []fleet.Member{member(replicaID, "witness", "running"), member(primaryID, "primary", "running")},
			want:    primaryID,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.members...)
			if tc.source != "" {
				h.configs.Put(clusterConfig(t, `"snapshotSource": "`+tc.source+`"`))
			}
			h.hosts.Default(hostscripts.Freeze, fleetfake.JSON(freezeResult(mountsOf(h.members[tc.want])...)))
			res, err := h.run(context.Background(), "main")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.InstanceID != tc.want {
				t.Fatalf("backed up %s, want %s", res.InstanceID, tc.want)
			}
			for _, c := range h.hosts.Calls() {
				if c.InstanceID != tc.want {
					t.Errorf("%s ran on %s", c.Script, c.InstanceID)
				}
			}
			if req := h.store.CreateCalls()[0]; req.InstanceID != tc.want {
				t.Errorf("snapshotted %s", req.InstanceID)
			}
		})
	}
}

func TestRunBadInputChangesNothing(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(h *harness)
		run        func(h *harness) (backup.Result, error)
		wantIs     []error
		want       []string
		wantStatus string
	}{
		{
			name:   "unknown cluster",
			run:    func(h *harness) (backup.Result, error) { return h.run(context.Background(), "nope") },
			wantIs: []error{config.ErrUnknownCluster},
			want:   []string{`"nope"`},
		},
		{
			name:   "invalid cluster name",
			run:    func(h *harness) (backup.Result, error) { return h.run(context.Background(), "../main") },
			wantIs: []error{fleet.ErrBadRequest},
			want:   []string{"not a valid cluster name"},
		},
		{
			name:  "configuration cannot be read",
			setup: func(h *harness) { h.configs.FailNext(fleetfake.OpLoad, 1, errors.New("ssm: ThrottlingException")) },
			run:   func(h *harness) (backup.Result, error) { return h.run(context.Background(), "main") },
			want:  []string{"load configuration", "ThrottlingException"},
		},
		{
			name:   "no running member",
			run:    runWithMembers(member(primaryID, "primary", "stopped"), member(replicaID, "replica", "stopping")),
			wantIs: []error{backup.ErrNoMember},
			want:   []string{"no running instance", "found 2 in other states"},
		},
		{
			name:   "no member at all",
			run:    runWithMembers(),
			wantIs: []error{backup.ErrNoMember},
			want:   []string{"no running instance"},
		},
		{
			name:   "member with only a root volume",
			run:    runWithMembers(memberWithVolumes(replicaID, "replica", "running", fleet.AttachedVolume{VolumeID: "vol-root", Device: "/dev/xvda", Root: true})),
			wantIs: []error{backup.ErrNoMember},
			want:   []string{replicaID, "only its root volume"},
		},
		{
			name:   "members without a role tag",
			run:    runWithMembers(member(replicaID, "", "running")),
			wantIs: []error{backup.ErrNoMember},
			want:   []string{"pgfleet:role", "primary or replica"},
		},
		{
			name:  "members cannot be listed",
			setup: func(h *harness) { h.finder.FailNext(fleetfake.OpMembers, 1, errors.New("UnauthorizedOperation")) },
			run:   func(h *harness) (backup.Result, error) { return h.run(context.Background(), "main") },
			want:  []string{"find members of main", "UnauthorizedOperation"},
		},
		{
			name: "two snapshots of a volume still pending",
			setup: func(h *harness) {
				for i := range 2 {
					h.store.Put(snapset.Snapshot{ID: fmt.Sprintf("snap-elsewhere-%d", i), VolumeID: "vol-wal-" + replicaID, State: snapset.StatePending})
				}
			},
			run:        func(h *harness) (backup.Result, error) { return h.run(context.Background(), "main") },
			want:       []string{"vol-wal-" + replicaID, "2 pending snapshots", "skipped"},
			wantStatus: "skipped",
		},
		{
			name:   "malformed event",
			run:    handle(`{"cluster":`),
			wantIs: []error{fleet.ErrBadRequest},
			want:   []string{"malformed event"},
		},
		{
			name:   "event with a typo",
			run:    handle(`{"clustr":"main"}`),
			wantIs: []error{fleet.ErrBadRequest},
			want:   []string{"clustr"},
		},
		{
			name:   "scheduled event without a detail",
			run:    handle(`{"version":"0","detail-type":"Scheduled Event","source":"aws.scheduler","detail":{}}`),
			wantIs: []error{fleet.ErrBadRequest},
			want:   []string{"empty detail"},
		},
		{
			name:   "event naming an invalid cluster",
			run:    handle(`{"detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"Main DB"}}`),
			wantIs: []error{fleet.ErrBadRequest},
			want:   []string{`"Main DB"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			res, err := tc.run(h)
			if tc.wantStatus == "skipped" {
				if err != nil || res.Status != "skipped" {
					t.Fatalf("got %+v, %v; want skipped", res, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(res.Reason, w) {
						t.Errorf("reason does not mention %q: %s", w, res.Reason)
					}
				}
			} else {
				if err == nil {
					t.Fatalf("no error: %+v", res)
				}
				for _, target := range tc.wantIs {
					if !errors.Is(err, target) {
						t.Errorf("errors.Is(err, %v) = false: %v", target, err)
					}
				}
				assertMentions(t, err, tc.want...)
				if res.Status != "failed" || res.Reason != err.Error() {
					t.Errorf("status %q reason %q", res.Status, res.Reason)
				}
			}
			h.assertNothingChanged(t)
		})
	}
}

func TestRunRetention(t *testing.T) {
	tests := []struct {
		name string
		// newState is the EBS state of the new set's snapshots after the run.
		newState    snapset.SnapshotState
		setup       func(h *harness)
		wantDeleted []string // by seed label
		wantWarning []string
		// wantFailedLeft are seeded sets, by label, that must be left visibly failed.
		wantFailedLeft []string
	}{
		{
			name:        "expired and failed sets go whole, the newest are kept",
			newState:    snapset.StateCompleted,
			wantDeleted: []string{"day-2", "day-3", "failed-day-4"},
		},
		{
			name:        "a new set still being copied does not push out the newest completed",
			newState:    snapset.StatePending,
			wantDeleted: []string{"day-3", "failed-day-4"},
		},
		{
			name:     "a failed delete is a warning, and the half-deleted set is marked failed",
			newState: snapset.StateCompleted,
			setup: func(h *harness) {
				n := 0
				h.store.Hook(fleetfake.OpDeleteSnapshot, func(context.Context) error {
					if n++; n == 2 {
						return errors.New("InvalidSnapshot.InUse: snapshot is in use by ami-123")
					}
					return nil
				})
			},
			wantDeleted:    []string{"day-3", "failed-day-4"},
			wantWarning:    []string{"retention", "InvalidSnapshot.InUse"},
			wantFailedLeft: []string{"day-2"},
		},
		{
			name:     "listing for retention fails",
			newState: snapset.StateCompleted,
			setup: func(h *harness) {
				n := 0
				h.store.Hook(fleetfake.OpListSnapshots, func(context.Context) error {
					if n++; n == 2 {
						return errors.New("RequestLimitExceeded")
					}
					return nil
				})
			},
			wantWarning: []string{"retention", "RequestLimitExceeded"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.configs.Put(clusterConfig(t, `"retention": {"keepLast": 2}`))
			h.store.NewState = tc.newState
			now := h.clock.peek()
			seeded := map[string]snapset.Set{
				"day-1":        h.seedSet("main", now.Add(-24*time.Hour), snapset.StatusCompleted, snapset.StateCompleted),
				"day-2":        h.seedSet("main", now.Add(-48*time.Hour), snapset.StatusCompleted, snapset.StateCompleted),
				"day-3":        h.seedSet("main", now.Add(-72*time.Hour), snapset.StatusCompleted, snapset.StateCompleted),
				"failed-day-4": h.seedSet("main", now.Add(-96*time.Hour), snapset.StatusFailed, snapset.StateCompleted),
				"other":        h.seedSet("other", now.Add(-96*time.Hour), snapset.StatusCompleted, snapset.StateCompleted),
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			res, err := h.run(context.Background(), "main")
			if err != nil || res.Status != "completed" {
				t.Fatalf("Run: %+v, %v", res, err)
			}
			var wantIDs []string
			for _, label := range tc.wantDeleted {
				wantIDs = append(wantIDs, seeded[label].SetID)
			}
			if !slices.Equal(res.DeletedSets, wantIDs) {
				t.Errorf("deleted %q, want %q", res.DeletedSets, wantIDs)
			}
			for label, s := range seeded {
				left := h.store.BySet(s.SetID)
				switch {
				case slices.Contains(tc.wantDeleted, label):
					if len(left) != 0 {
						t.Errorf("set %s (%s) deleted in part: %d snapshots left", label, s.SetID, len(left))
					}
				case slices.Contains(tc.wantFailedLeft, label):
					sets, _ := snapset.Group(left)
					if len(sets) != 1 || !sets[0].Failed() || sets[0].Completed() {
						t.Errorf("set %s left as %+v, want visibly failed", label, sets)
					}
				default:
					if len(left) != len(s.Snapshots) {
						t.Errorf("kept set %s (%s) has %d of %d snapshots", label, s.SetID, len(left), len(s.Snapshots))
					}
					for _, sn := range left {
						if sn.Tags[snapset.TagStatus] != string(s.Status) {
							t.Errorf("kept set %s: snapshot %s status %q changed", label, sn.ID, sn.Tags[snapset.TagStatus])
						}
					}
				}
			}
			if len(h.store.BySet(res.SetID)) != 2 {
				t.Errorf("the new set was touched by retention")
			}
			warnings := strings.Join(res.Warnings, "; ")
			for _, w := range tc.wantWarning {
				if !strings.Contains(warnings, w) {
					t.Errorf("warnings %q, want %q", warnings, w)
				}
			}
			if len(tc.wantWarning) == 0 && warnings != "" {
				t.Errorf("unexpected warnings %q", warnings)
			}
			// A retention failure does not fail the backup, but an alarm can see it.
			wantStatus, wantFailed := "ok", 0.0
			if len(tc.wantWarning) > 0 {
				wantStatus, wantFailed = "failed", 1
			}
			if v, ok := h.metrics.Get("RetentionFailed"); !ok || v != wantFailed || res.RetentionStatus != wantStatus {
				t.Errorf("RetentionFailed %v (published %v), retentionStatus %q; want %v, %q", v, ok, res.RetentionStatus, wantFailed, wantStatus)
			}
			if v, _ := h.metrics.Get("SetsDeleted"); v != float64(len(tc.wantDeleted)) {
				t.Errorf("SetsDeleted %v", v)
			}
			if v, _ := h.metrics.Get("BackupSuccess"); v != 1 {
				t.Errorf("BackupSuccess %v", v)
			}
		})
	}
}

func TestRunWritesBlockedFromHostClocks(t *testing.T) {
	tests := []struct {
		name            string
		consistency     string
		freeze          func(*hostscripts.FreezeResult)
		thaw            func(*hostscripts.ThawResult)
		wantMS          float64
		wantTag         string // frozen-ms; "" means absent
		wantConsistency string
	}{
		{name: "freeze start to thaw return on the host clock", wantMS: 35.5, wantTag: "36", wantConsistency: "freeze"},
		{
			name:            "crash-consistent: nothing frozen",
			consistency:     "crash",
			freeze:          nothingFrozen,
			wantConsistency: "crash",
		},
		{
			name: "ZFS is never frozen",
			freeze: func(fr *hostscripts.FreezeResult) {
				nothingFrozen(fr)
				fr.ZFS = true
			},
			wantConsistency: "crash-zfs",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.consistency != "" {
				h.configs.Put(clusterConfig(t, `"consistency": "`+tc.consistency+`"`))
			}
			fr, tr := freezeResult(mountsOf(h.members[replicaID])...), thawResult()
			if tc.freeze != nil {
				tc.freeze(&fr)
			}
			if tc.thaw != nil {
				tc.thaw(&tr)
			}
			h.hosts.Respond(hostscripts.Freeze, fleetfake.JSON(fr))
			h.hosts.Respond(hostscripts.Thaw, fleetfake.JSON(tr))
			res, err := h.run(context.Background(), "main")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.WritesBlockedMS != tc.wantMS {
				t.Errorf("writes blocked %v ms, want %v", res.WritesBlockedMS, tc.wantMS)
			}
			if v, _ := h.metrics.Get("WritesBlockedMs"); v != tc.wantMS {
				t.Errorf("WritesBlockedMs metric %v", v)
			}
			for _, sn := range h.store.BySet(res.SetID) {
				if got := sn.Tags[snapset.TagFrozenMS]; got != tc.wantTag {
					t.Errorf("frozen-ms tag %q, want %q", got, tc.wantTag)
				}
				if got := sn.Tags[snapset.TagConsistency]; got != tc.wantConsistency {
					t.Errorf("consistency tag %q, want %q", got, tc.wantConsistency)
				}
			}
			wantArg := cmp.Or(tc.consistency, "freeze")
			if fz := h.hosts.CallsOf(hostscripts.Freeze); fz[0].Args["consistency"] != wantArg {
				t.Errorf("freeze consistency argument %q, want %q", fz[0].Args["consistency"], wantArg)
			}
		})
	}
}

// nothingFrozen turns a freeze result into the one freeze.sh prints when it froze nothing
// (crash consistency, ZFS).
func nothingFrozen(fr *hostscripts.FreezeResult) {
	for i := range fr.Mounts {
		fr.Mounts[i].Frozen = false
	}
	*fr = fleetfake.FreezeOK(freezeStartUS, fr.Mounts...)
}

func TestRunMarkingTheSet(t *testing.T) {
	t.Run("CreateTags throttled once", func(t *testing.T) {
		h := newHarness(t)
		h.store.FailNext(fleetfake.OpTagSnapshots, 1, errors.New("RequestLimitExceeded"))
		res, err := h.run(context.Background(), "main")
		if err != nil || res.Status != "completed" {
			t.Fatalf("Run: %+v, %v", res, err)
		}
		if n := h.store.Count(fleetfake.OpTagSnapshots); n != 2 {
			t.Errorf("%d TagSnapshots calls, want 2", n)
		}
		for _, sn := range h.store.BySet(res.SetID) {
			if sn.Tags[snapset.TagStatus] != "completed" {
				t.Errorf("snapshot %s status %q", sn.ID, sn.Tags[snapset.TagStatus])
			}
		}
	})

	t.Run("CreateTags fails every time: the next run marks the set failed", func(t *testing.T) {
		h := newHarness(t)
		h.store.FailAlways(fleetfake.OpTagSnapshots, errors.New("UnauthorizedOperation"))
		res, err := h.run(context.Background(), "main")
		if err == nil {
			t.Fatalf("no error: %+v", res)
		}
		assertMentions(t, err, "mark set "+res.SetID, "UnauthorizedOperation", "the next run marks it failed")
		if n := h.store.Count(fleetfake.OpTagSnapshots); n != 3 {
			t.Errorf("%d TagSnapshots calls, want 3", n)
		}
		h.assertThawed(t)
		h.assertLeaseFree(t)

		h.store.Clear(fleetfake.OpTagSnapshots)
		first := res.SetID
		res, err = h.run(context.Background(), "main")
		if err != nil {
			t.Fatalf("second run: %v", err)
		}
		if !slices.Equal(res.AbandonedMarked, []string{first}) {
			t.Fatalf("abandoned %q, want [%s]", res.AbandonedMarked, first)
		}
		for _, sn := range h.store.BySet(first) {
			if sn.Tags[snapset.TagStatus] != "failed" {
				t.Errorf("snapshot %s of the first set has status %q", sn.ID, sn.Tags[snapset.TagStatus])
			}
		}
	})
}

// harness is a Backup wired to fakes, with a cluster "main" of a primary and a replica.
type harness struct {
	t       *testing.T
	journal *fleetfake.Journal
	configs *fleetfake.ConfigSource
	finder  *fleetfake.Finder
	hosts   *fleetfake.HostRunner
	store   *fleetfake.SnapshotStore
	lease   *fleetfake.Lease
	metrics *metrics.Recorder
	clock   *clock
	logs    *bytes.Buffer
	members map[string]fleet.Member
	b       *backup.Backup
}

// newHarness builds the harness; with no members given, the cluster has a running primary and a
// running replica, each with a root volume and two data volumes (/data xfs, /wal ext4).
func newHarness(t *testing.T, members ...fleet.Member) *harness {
	t.Helper()
	if len(members) == 0 {
		members = []fleet.Member{member(primaryID, "primary", "running"), member(replicaID, "replica", "running")}
	}
	j := &fleetfake.Journal{}
	h := &harness{
		t:       t,
		journal: j,
		configs: fleetfake.NewConfigSource(clusterConfig(t)),
		finder:  fleetfake.NewFinder(members...),
		hosts:   fleetfake.NewHostRunner(),
		store:   fleetfake.NewSnapshotStore(),
		lease:   fleetfake.NewLease(),
		metrics: &metrics.Recorder{},
		clock:   &clock{t: time.Date(2026, 3, 10, 3, 0, 0, 0, time.UTC)},
		logs:    &bytes.Buffer{},
		members: map[string]fleet.Member{},
	}
	h.configs.Journal, h.finder.Journal, h.hosts.Journal, h.store.Journal, h.lease.Journal = j, j, j, j, j
	h.store.Now, h.lease.Now = h.clock.Now, h.clock.Now
	for _, m := range members {
		h.members[m.InstanceID] = m
		h.store.AddInstance(m.InstanceID, m.Volumes...)
		for i, v := range m.DataVolumes() {
			h.store.SetVolumeSize(v.VolumeID, []int64{100, 20, 5, 5}[i])
		}
	}
	if r, ok := h.members[replicaID]; ok {
		h.hosts.Default(hostscripts.Freeze, fleetfake.JSON(freezeResult(mountsOf(r)...)))
	}
	h.hosts.Default(hostscripts.Thaw, fleetfake.JSON(thawResult()))
	h.b = &backup.Backup{
		Configs:   h.configs,
		Members:   h.finder,
		Hosts:     h.hosts,
		Snapshots: h.store,
		Lease:     h.lease,
		Metrics:   h.metrics,
		Log:       slog.New(slog.NewJSONHandler(h.logs, nil)),
		Now:       h.clock.Now,
		Owner:     "run-test",
		Timeouts:  backup.Timeouts{Freeze: 5 * time.Second, Snapshot: 5 * time.Second, Thaw: 5 * time.Second},
		ThawRetry: retry.Backoff{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond},
		MarkRetry: retry.Backoff{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond},
	}
	return h
}

func (h *harness) run(ctx context.Context, cluster string) (backup.Result, error) {
	h.t.Helper()
	return h.b.Run(ctx, backup.Request{Cluster: cluster})
}

func (h *harness) assertThawed(t *testing.T) {
	t.Helper()
	if frozen := h.hosts.FrozenHosts(); len(frozen) > 0 {
		t.Errorf("hosts left frozen: %q", frozen)
	}
}

func (h *harness) assertLeaseFree(t *testing.T) {
	t.Helper()
	if hd, ok := h.lease.Holder("backup/main"); ok {
		t.Errorf("lease still held by %+v", hd)
	}
}

// assertNothingChanged: no script ran, no snapshot was made, tagged or deleted, no lease of
// ours is held, no host is frozen.
func (h *harness) assertNothingChanged(t *testing.T) {
	t.Helper()
	if calls := h.hosts.Calls(); len(calls) > 0 {
		t.Errorf("host scripts ran: %+v", calls)
	}
	for _, op := range []string{fleetfake.OpCreateSet, fleetfake.OpTagSnapshots, fleetfake.OpDeleteSnapshot} {
		if n := h.store.Count(op); n > 0 {
			t.Errorf("%d %s calls", n, op)
		}
	}
	if hd, ok := h.lease.Holder("backup/main"); ok && hd.Owner == h.b.Owner {
		t.Errorf("our lease is still held")
	}
	h.assertThawed(t)
}

// seedSet stores a two-volume set of an earlier run of cluster.
func (h *harness) seedSet(cluster string, createdAt time.Time, status snapset.Status, state snapset.SnapshotState) snapset.Set {
	m := snapset.Meta{
		Cluster: cluster, SetID: snapset.NewSetID(cluster, createdAt), Status: status, SourceInstance: replicaID,
		SourceRole: "replica", Consistency: "freeze", CreatedAt: createdAt, VolumeCount: 2,
	}
	set := snapset.Set{Meta: m}
	for i, dev := range []string{"/dev/sdf", "/dev/sdg"} {
		tags := m.Tags()
		tags[snapset.TagDevice] = dev
		sn := snapset.Snapshot{
			ID:        fmt.Sprintf("snap-seed-%s-%d", m.SetID, i),
			VolumeID:  fmt.Sprintf("vol-%d-%s", i, replicaID),
			Device:    dev,
			State:     state,
			StartTime: createdAt,
			Tags:      tags,
		}
		h.store.Put(sn)
		set.Snapshots = append(set.Snapshots, sn)
	}
	return set
}

// clock is the orchestrator's clock: every reading moves it on by a millisecond.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// clusterConfig parses the cluster "main" with extra top-level fields, e.g. `"snapshotSource": "primary"`.
func clusterConfig(t *testing.T, extra ...string) config.Cluster {
	t.Helper()
	fields := map[string]string{
		"name":      `"main"`,
		"members":   `{"tags": {"pgfleet:cluster": "main"}}`,
		"postgres":  `{"version": "15", "pgdata": "/data/pg/15/main"}`,
		"volumes":   `{"mounts": ["/data", "/wal"]}`,
		"retention": `{"keepLast": 3}`,
	}
	for _, e := range extra {
		k, v, _ := strings.Cut(e, ":")
		fields[strings.Trim(strings.TrimSpace(k), `"`)] = v
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		parts = append(parts, fmt.Sprintf("%q: %s", k, fields[k]))
	}
	c, err := config.Parse([]byte("{" + strings.Join(parts, ",") + "}"))
	if err != nil {
		t.Fatalf("cluster config: %v", err)
	}
	return c
}

// member builds a member of cluster "main" with a root volume and, unless given, two data volumes.
func member(id, role, state string, data ...fleet.AttachedVolume) fleet.Member {
	if len(data) == 0 {
		data = dataVolumes(id, 2)
	}
	return memberWithVolumes(id, role, state,
		append([]fleet.AttachedVolume{{VolumeID: "vol-root-" + id, Device: "/dev/xvda", Root: true}}, data...)...)
}

func memberWithVolumes(id, role, state string, vols ...fleet.AttachedVolume) fleet.Member {
	tags := map[string]string{"pgfleet:cluster": "main", "Name": "pg-" + id}
	if role != "" {
		tags[config.DefaultRoleTag] = role
	}
	return fleet.Member{InstanceID: id, State: state, PrivateIP: "10.0.0.10", Tags: tags, Volumes: vols}
}

// dataVolumes: /dev/sdf vol-data-<id>, /dev/sdg vol-wal-<id>, then /dev/sdh vol-v3-<id>...
func dataVolumes(id string, n int) []fleet.AttachedVolume {
	names := []string{"data", "wal", "v3", "v4"}
	var out []fleet.AttachedVolume
	for i := 0; i < n; i++ {
		out = append(out, fleet.AttachedVolume{VolumeID: fmt.Sprintf("vol-%s-%s", names[i], id), Device: fmt.Sprintf("/dev/sd%c", 'f'+i)})
	}
	return out
}

// mountsOf maps a member's data volumes to mounts: the first /data (xfs), the second /wal (ext4),
// further ones /vN (xfs).
func mountsOf(m fleet.Member) []hostscripts.MountResult {
	var out []hostscripts.MountResult
	for i, v := range m.DataVolumes() {
		mr := hostscripts.MountResult{Path: fmt.Sprintf("/v%d", i+1), FSType: "xfs", VolumeID: v.VolumeID, Frozen: true, Source: "/dev/nvme1n1"}
		switch i {
		case 0:
			mr.Path = "/data"
		case 1:
			mr.Path, mr.FSType = "/wal", "ext4"
		}
		out = append(out, mr)
	}
	return out
}

// freezeResult is the line freeze.sh prints after freezing the given mounts (those with Frozen
// set), and thawResult the thaw's that follows 35.5 ms later: fleetfake's lines, which pass
// the orchestrator's own parser.
func freezeResult(mounts ...hostscripts.MountResult) hostscripts.FreezeResult {
	return fleetfake.FreezeOK(freezeStartUS, mounts...)
}

func freezeFailure(msg string, stillFrozen ...string) hostscripts.FreezeResult {
	return fleetfake.FreezeFailed(freezeStartUS, msg, stillFrozen...)
}

func thawResult() hostscripts.ThawResult { return fleetfake.ThawOK(thawedUS, "/data", "/wal") }

func thawFailure(msg string, stillFrozen ...string) hostscripts.ThawResult {
	return fleetfake.ThawFailed(thawedUS, msg, stillFrozen...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func assertMentions(t *testing.T, err error, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q:\n%v", s, err)
		}
	}
}

func runWithMembers(members ...fleet.Member) func(h *harness) (backup.Result, error) {
	return func(h *harness) (backup.Result, error) {
		h.b.Members = fleetfake.NewFinder(members...)
		for _, m := range members {
			h.store.AddInstance(m.InstanceID, m.Volumes...)
		}
		return h.run(context.Background(), "main")
	}
}

func handle(event string) func(h *harness) (backup.Result, error) {
	return func(h *harness) (backup.Result, error) {
		return h.b.Handle(context.Background(), json.RawMessage(event))
	}
}
