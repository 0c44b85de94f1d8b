package walprune_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/pgfleet/pgfleet/events"
	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/wal"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

const bucket = "wal-archive"

// The unit archive: timeline 1 segments 0 to 12*256-1 (3072 segments in 12 directories) and the
// extras of pgbrFixture; the lowest redo WAL file of the sets that bound the prune (the oldest
// completed set's) is segment 10*256+0x40, so a prune deletes 2637 objects in three
// DeleteObjects batches.
var (
	unitEnd      = uint64(12 * segsPerLog)
	unitBoundary = seg(1, 10*segsPerLog+0x40)
)

// harness is a Pruner over fakes, with one cluster "main" whose sets need unitBoundary and
// later.
type harness struct {
	fix     archiveFixture
	arch    *memArchive
	snaps   *fleetfake.SnapshotStore
	configs *fleetfake.ConfigSource
	lease   *fleetfake.Lease
	metrics *metrics.Recorder
	logs    *bytes.Buffer
	clock   *clock
	p       *walprune.Pruner
}

var t0 = time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		fix:     pgbrFixture(unitEnd, unitBoundary),
		snaps:   fleetfake.NewSnapshotStore(),
		lease:   fleetfake.NewLease(),
		metrics: &metrics.Recorder{},
		logs:    &bytes.Buffer{},
		clock:   &clock{t: time.Now()},
	}
	cfg := clusterConfig("main", pgbrArchive(bucket))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h.configs = fleetfake.NewConfigSource(cfg)
	h.arch = newMemArchive(bucket, h.fix.Keys)
	// Sets, newest first: a pending one, a completed one, the oldest completed one (the lowest
	// redo point: the boundary), a failed and an errored one older still, with lower redo
	// points that do not count.
	h.snaps.Put(setSnapshots("main", "main-5", t0.Add(-1*time.Hour), snapset.StatusPending, seg(1, unitEnd-5).String(), snapset.StatePending, snapset.StatePending)...)
	h.snaps.Put(setSnapshots("main", "main-4", t0.Add(-24*time.Hour), snapset.StatusCompleted, seg(1, unitEnd-20).String())...)
	h.snaps.Put(setSnapshots("main", "main-3", t0.Add(-48*time.Hour), snapset.StatusCompleted, unitBoundary.String())...)
	h.snaps.Put(setSnapshots("main", "main-2", t0.Add(-72*time.Hour), snapset.StatusFailed, seg(1, 5*segsPerLog).String())...)
	h.snaps.Put(setSnapshots("main", "main-1", t0.Add(-96*time.Hour), snapset.StatusCompleted, seg(1, 2*segsPerLog).String(), snapset.StateCompleted, snapset.StateError)...)
	// Another cluster's older set must not matter.
	h.snaps.Put(setSnapshots("other", "other-1", t0.Add(-200*time.Hour), snapset.StatusCompleted, seg(1, 1).String())...)
	h.p = &walprune.Pruner{
		Configs:   h.configs,
		Snapshots: h.snaps,
		Archive:   h.arch,
		Lease:     h.lease,
		Metrics:   h.metrics,
		Log:       slog.New(slog.NewJSONHandler(h.logs, nil)),
		Now:       h.clock.Now,
		Owner:     "run-test",
	}
	return h
}

func (h *harness) run(ctx context.Context, req walprune.Request) (walprune.Result, error) {
	if req.Cluster == "" {
		req.Cluster = "main"
	}
	return h.p.Run(ctx, req)
}

// setArchive replaces cluster main's archive configuration.
func (h *harness) setArchive(edit func(a *config.Archive)) {
	c := clusterConfig("main", pgbrArchive(bucket))
	edit(c.Archive)
	h.configs.Put(c)
}

// assertNothingDeleted checks that no delete call was made and every key is still there.
func (h *harness) assertNothingDeleted(t *testing.T) {
	t.Helper()
	if n := h.arch.deleteCallCount(); n != 0 {
		t.Fatalf("%d delete calls, want none", n)
	}
	if got := h.arch.keys(bucket); !slices.Equal(got, h.fix.Keys) {
		t.Fatalf("%d keys left, want all %d", len(got), len(h.fix.Keys))
	}
}

// assertDeleted checks that exactly want (sorted) was deleted, each key once, and nothing else.
func (h *harness) assertDeleted(t *testing.T, want []string) {
	t.Helper()
	sent := h.arch.deleted()
	sorted := slices.Clone(sent)
	slices.Sort(sorted)
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		t.Fatalf("a key was sent twice")
	}
	if !slices.Equal(sorted, want) {
		t.Fatalf("deleted %d keys, want %d (first got %q, first want %q)", len(sorted), len(want), first(sorted), first(want))
	}
	for _, k := range sent {
		if !strings.HasPrefix(k, h.fix.Root) {
			t.Fatalf("key %q outside %q sent", k, h.fix.Root)
		}
	}
	left := h.arch.keys(bucket)
	wantLeft := slices.DeleteFunc(slices.Clone(h.fix.Keys), func(k string) bool { _, found := slices.BinarySearch(want, k); return found })
	if !slices.Equal(left, wantLeft) {
		t.Fatalf("%d keys left, want %d", len(left), len(wantLeft))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestRunDeletesBeforeTheBoundary: the harness's sets put the lowest redo point on the oldest
// completed set, main-3; a pending set and a newer completed one need later WAL.
func TestRunDeletesBeforeTheBoundary(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(context.Background(), walprune.Request{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertDeleted(t, h.fix.Delete)
	want := walprune.Result{
		Cluster: "main", Status: walprune.StatusCompleted, Layout: "pgbackrest", Bucket: bucket,
		Prefix: "pgbackrest/archive/main/", Boundary: unitBoundary.String(), BoundarySource: "set",
		BoundarySetID: "main-3", SetRedoWALFile: unitBoundary.String(), MaxDeletes: config.DefaultMaxDeletesPerRun,
		Planned: len(h.fix.Delete), Deleted: len(h.fix.Delete), Protected: h.fix.Protected,
		Unrecognized: h.fix.Unrecognized, Complete: true,
	}
	if res.Cluster != want.Cluster || res.Status != want.Status || res.Layout != want.Layout || res.Bucket != want.Bucket ||
		res.Prefix != want.Prefix || res.Boundary != want.Boundary || res.BoundarySource != want.BoundarySource ||
		res.BoundarySetID != want.BoundarySetID || res.SetRedoWALFile != want.SetRedoWALFile || res.MaxDeletes != want.MaxDeletes ||
		res.Planned != want.Planned || res.Deleted != want.Deleted || res.Protected != want.Protected ||
		res.Unrecognized != want.Unrecognized || res.Complete != want.Complete || res.StoppedBy != "" || res.Versioned {
		t.Fatalf("result\n got %+v\nwant %+v", res, want)
	}
	var bytes int64
	for _, k := range h.fix.Delete {
		bytes += int64(len(k))
	}
	if res.DeletedBytes != bytes || res.PlannedBytes != bytes {
		t.Errorf("deleted bytes %d, planned bytes %d, want %d", res.DeletedBytes, res.PlannedBytes, bytes)
	}
	if res.DeleteRequests != 3 || res.ListRequests != len(h.arch.lists) || res.Requests != res.ListRequests+3 {
		t.Errorf("requests: list %d (fake saw %d), delete %d, total %d", res.ListRequests, len(h.arch.lists), res.DeleteRequests, res.Requests)
	}
	// Kept: the listing stops in each directory at the first segment at or past the boundary,
	// and backup history files before it are kept.
	if res.Kept < 2 {
		t.Errorf("kept %d, want at least the boundary segment and the backup marker", res.Kept)
	}
	if res.PlannedKeys != nil {
		t.Errorf("planned keys listed outside a dry run")
	}
	if calls := h.lease.Calls(); len(calls) != 2 || calls[0].Key != "walprune/main" || calls[0].Owner != "run-test" || calls[1].Op != fleetfake.OpRelease {
		t.Errorf("lease calls %+v", calls)
	}
	for name, v := range map[string]float64{
		"WALDeletedObjects": float64(len(h.fix.Delete)), "WALDeletedBytes": float64(bytes), "WALPruneComplete": 1,
		"WALPruneSuccess": 1, "WALUnrecognized": float64(h.fix.Unrecognized), "WALPruneRequests": float64(res.Requests),
		"WALProtectedObjects": float64(h.fix.Protected), "WALDeleteErrors": 0,
	} {
		if got, ok := h.metrics.Get(name); !ok || got != v {
			t.Errorf("metric %s = %v (recorded %v), want %v", name, got, ok, v)
		}
	}
	// No listing went past the boundary's directory.
	for _, l := range h.arch.lists {
		if dir, ok := strings.CutPrefix(l.Prefix, h.fix.Root+"15-1/"); ok && len(dir) == 17 && dir[8:16] > unitBoundary.String()[8:16] {
			t.Errorf("listed %q, past the boundary's directory", l.Prefix)
		}
	}
}

func TestBoundary(t *testing.T) {
	redo := unitBoundary // the lowest redo WAL file of the sets that bound the prune
	tests := []struct {
		name       string
		margin     int
		keepFrom   string
		want       wal.Segment
		wantSource string
		warns      bool
	}{
		{name: "the set with the lowest redo point", want: redo, wantSource: "set"},
		{name: "margin", margin: 3, want: seg(1, segNo(redo)-3), wantSource: "set"},
		{name: "margin across a log boundary", margin: 0x41, want: seg(1, segNo(redo)-0x41), wantSource: "set"},
		{name: "margin past the start of WAL", margin: 1 << 20, want: seg(1, 0), wantSource: "set"},
		{name: "keepFrom earlier wins", keepFrom: seg(1, 3*segsPerLog).String(), want: seg(1, 3*segsPerLog), wantSource: "keepFrom"},
		{name: "keepFrom on another timeline compares without it", keepFrom: seg(7, 4*segsPerLog).String(), want: seg(7, 4*segsPerLog), wantSource: "keepFrom"},
		{name: "keepFrom later is ignored", keepFrom: seg(1, segNo(redo)+100).String(), want: redo, wantSource: "set", warns: true},
		{name: "keepFrom equal is ignored", keepFrom: redo.String(), want: redo, wantSource: "set", warns: true},
		{name: "keepFrom earlier than margin wins", margin: 10, keepFrom: seg(1, segNo(redo)-11).String(), want: seg(1, segNo(redo)-11), wantSource: "keepFrom"},
		{name: "margin earlier than keepFrom wins", margin: 10, keepFrom: seg(1, segNo(redo)-9).String(), want: seg(1, segNo(redo)-10), wantSource: "set", warns: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setArchive(func(a *config.Archive) { a.MarginSegments = tc.margin })
			res, err := h.run(context.Background(), walprune.Request{KeepFrom: tc.keepFrom})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Boundary != tc.want.String() || res.BoundarySource != tc.wantSource || res.BoundarySetID != "main-3" {
				t.Fatalf("boundary %s from %s (set %s), want %s from %s", res.Boundary, res.BoundarySource, res.BoundarySetID, tc.want, tc.wantSource)
			}
			if warned := slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "keepFrom") }); warned != tc.warns {
				t.Errorf("keepFrom warning %v, want %v: %q", warned, tc.warns, res.Warnings)
			}
			h.assertDeleted(t, h.fix.DeleteFor(tc.want))
			if !res.Complete || res.Deleted != len(h.fix.DeleteFor(tc.want)) {
				t.Errorf("complete %v, deleted %d", res.Complete, res.Deleted)
			}
		})
	}
}

// TestBoundarySetChoice pins invariant 5: the boundary is the lowest redo position over every
// set that is completed or may still complete, whatever their creation order and timelines.
func TestBoundarySetChoice(t *testing.T) {
	tests := []struct {
		name    string
		sets    [][]snapset.Snapshot
		wantSet string
		want    wal.Segment
	}{
		{
			name: "failed, errored and incomplete sets do not bound",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "a-new", t0, snapset.StatusCompleted, seg(1, 11*segsPerLog).String()),
				setSnapshots("main", "a-old", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 9*segsPerLog).String()),
				setSnapshots("main", "c-failed", t0.Add(-3*time.Hour), snapset.StatusFailed, seg(1, 1*segsPerLog).String()),
				setSnapshots("main", "d-error", t0.Add(-4*time.Hour), snapset.StatusCompleted, seg(1, 1*segsPerLog).String(), snapset.StateCompleted, snapset.StateError),
				setSnapshots("main", "e-missing-volume", t0.Add(-5*time.Hour), snapset.StatusCompleted, seg(1, 1*segsPerLog).String())[:1],
				setSnapshots("main", "f-pending-error", t0.Add(-6*time.Hour), snapset.StatusPending, seg(1, 1*segsPerLog).String(), snapset.StateCompleted, snapset.StateError),
			},
			wantSet: "a-old", want: seg(1, 9*segsPerLog),
		},
		{
			name: "a single completed set",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "only", t0, snapset.StatusCompleted, seg(1, 4*segsPerLog+0x10).String()),
			},
			wantSet: "only", want: seg(1, 4*segsPerLog+0x10),
		},
		{
			name: "the lowest redo, not the oldest by creation time",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "newer-but-lower", t0, snapset.StatusCompleted, seg(1, 2*segsPerLog).String()),
				setSnapshots("main", "older", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 6*segsPerLog).String()),
			},
			wantSet: "newer-but-lower", want: seg(1, 2*segsPerLog),
		},
		{
			name: "a timeline branched at an earlier position",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "branch", t0, snapset.StatusCompleted, seg(2, 3*segsPerLog+5).String()),
				setSnapshots("main", "old-timeline", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 4*segsPerLog).String()),
			},
			wantSet: "branch", want: seg(2, 3*segsPerLog+5),
		},
		{
			name: "a pending set may still complete",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "pending-lagging-replica", t0, snapset.StatusPending, seg(1, 2*segsPerLog).String()),
				setSnapshots("main", "completed", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 7*segsPerLog).String()),
			},
			wantSet: "pending-lagging-replica", want: seg(1, 2*segsPerLog),
		},
		{
			name: "tagged completed, still pending in EBS",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "ebs-pending", t0, snapset.StatusCompleted, seg(1, 3*segsPerLog).String(), snapset.StateCompleted, snapset.StatePending),
				setSnapshots("main", "completed", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 7*segsPerLog).String()),
			},
			wantSet: "ebs-pending", want: seg(1, 3*segsPerLog),
		},
		{
			name: "snapshots disagree on status: the least finished, pending, counts",
			sets: [][]snapset.Snapshot{
				func() []snapset.Snapshot {
					s := setSnapshots("main", "half-marked", t0, snapset.StatusCompleted, seg(1, 3*segsPerLog).String())
					s[1].Tags[snapset.TagStatus] = string(snapset.StatusPending)
					return s
				}(),
				setSnapshots("main", "completed", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 7*segsPerLog).String()),
			},
			wantSet: "half-marked", want: seg(1, 3*segsPerLog),
		},
		{
			name: "equal redo positions: the oldest set is named",
			sets: [][]snapset.Snapshot{
				setSnapshots("main", "b-new", t0, snapset.StatusCompleted, seg(1, 5*segsPerLog).String()),
				setSnapshots("main", "a-old", t0.Add(-time.Hour), snapset.StatusCompleted, seg(1, 5*segsPerLog).String()),
			},
			wantSet: "a-old", want: seg(1, 5*segsPerLog),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.snaps = fleetfake.NewSnapshotStore()
			for _, s := range tc.sets {
				h.snaps.Put(s...)
			}
			h.p.Snapshots = h.snaps
			res, err := h.run(context.Background(), walprune.Request{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.BoundarySetID != tc.wantSet || res.Boundary != tc.want.String() || res.SetRedoWALFile != tc.want.String() {
				t.Fatalf("boundary %s from set %s (redo %s), want %s from %s", res.Boundary, res.BoundarySetID, res.SetRedoWALFile, tc.want, tc.wantSet)
			}
			h.assertDeleted(t, h.fix.DeleteFor(tc.want))
		})
	}
}

func TestRefusals(t *testing.T) {
	onlySets := func(sets ...[]snapset.Snapshot) func(h *harness) {
		return func(h *harness) {
			h.snaps = fleetfake.NewSnapshotStore()
			for _, s := range sets {
				h.snaps.Put(s...)
			}
			h.p.Snapshots = h.snaps
		}
	}
	// withTag leaves one completed set whose snapshots carry redo as their redo WAL file tag
	// ("" removes the tag); other, when set, goes on the second snapshot instead.
	withTag := func(redo, other string) func(h *harness) {
		return func(h *harness) {
			snaps := setSnapshots("main", "x", t0, snapset.StatusCompleted, unitBoundary.String())
			for i := range snaps {
				snaps[i].Tags[snapset.TagRedoWALFile] = redo
				if redo == "" {
					delete(snaps[i].Tags, snapset.TagRedoWALFile)
				}
			}
			if other != "" {
				snaps[1].Tags[snapset.TagRedoWALFile] = other
			}
			onlySets(snaps)(h)
		}
	}
	// withTags adds to the harness's sets one that bounds the prune (completed or pending),
	// with the lowest redo point, and its tags changed by edit.
	withTags := func(status snapset.Status, edit func(tags map[string]string)) func(h *harness) {
		return func(h *harness) {
			snaps := setSnapshots("main", "edited", t0, status, seg(1, segNo(unitBoundary)-10).String())
			for i := range snaps {
				edit(snaps[i].Tags)
			}
			h.snaps.Put(snaps...)
		}
	}
	tests := []struct {
		name    string
		setup   func(h *harness)
		req     walprune.Request
		wantErr error
		// noLease: refused before the lease is taken.
		noLease bool
	}{
		{name: "redo-lsn tag missing", setup: withTags(snapset.StatusCompleted, func(tags map[string]string) {
			delete(tags, snapset.TagRedoLSN)
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "timeline tag missing", setup: withTags(snapset.StatusCompleted, func(tags map[string]string) {
			delete(tags, snapset.TagTimeline)
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "a pending set without redo tags", setup: withTags(snapset.StatusPending, func(tags map[string]string) {
			delete(tags, snapset.TagRedoLSN)
			delete(tags, snapset.TagRedoWALFile)
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "redo-wal-file later than its redo-lsn", setup: withTags(snapset.StatusCompleted, func(tags map[string]string) {
			tags[snapset.TagRedoWALFile] = seg(1, segNo(unitBoundary)+100).String()
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "redo-wal-file on another timeline than the timeline tag", setup: withTags(snapset.StatusCompleted, func(tags map[string]string) {
			tags[snapset.TagTimeline] = "2"
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "redo-lsn malformed", setup: withTags(snapset.StatusCompleted, func(tags map[string]string) {
			tags[snapset.TagRedoLSN] = "A3F000028"
		}), wantErr: walprune.ErrBoundaryTag},
		{name: "segment size is not the cluster's", setup: func(h *harness) {
			h.setArchive(func(a *config.Archive) { a.SegmentSizeMiB = 32 })
		}, wantErr: walprune.ErrBoundaryTag},
		{name: "no snapshot set at all", setup: onlySets(), wantErr: walprune.ErrNoCompletedSet},
		{name: "no completed set", setup: onlySets(
			setSnapshots("main", "p", t0, snapset.StatusPending, unitBoundary.String()),
			setSnapshots("main", "f", t0.Add(-time.Hour), snapset.StatusFailed, unitBoundary.String()),
			setSnapshots("main", "e", t0.Add(-2*time.Hour), snapset.StatusCompleted, unitBoundary.String(), snapset.StateCompleted, snapset.StatePending),
		), wantErr: walprune.ErrNoCompletedSet},
		{name: "only another cluster's set", setup: onlySets(setSnapshots("other", "o", t0, snapset.StatusCompleted, unitBoundary.String())), wantErr: walprune.ErrNoCompletedSet},
		{name: "boundary tag missing", setup: withTag("", ""), wantErr: walprune.ErrBoundaryTag},
		{name: "boundary tag malformed", setup: withTag("00000001000000A00000004G", ""), wantErr: walprune.ErrBoundaryTag},
		{name: "boundary tag lower case", setup: withTag(strings.ToLower(seg(1, 0xAB).String()), ""), wantErr: walprune.ErrBoundaryTag},
		{name: "boundary tag a history file", setup: withTag("00000002.history", ""), wantErr: walprune.ErrBoundaryTag},
		{name: "boundary tag out of range for the segment size", setup: withTag("0000000100000002000001FF", ""), wantErr: walprune.ErrBoundaryTag},
		{name: "snapshots of the set disagree", setup: withTag(unitBoundary.String(), seg(1, 3).String()), wantErr: walprune.ErrBoundaryTag},
		{name: "unreadable snapshot of the cluster", setup: func(h *harness) {
			bad := setSnapshots("main", "bad", t0, snapset.StatusCompleted, seg(1, 1).String())[0]
			bad.Tags[snapset.TagStatus] = "done"
			h.snaps.Put(bad)
		}, wantErr: walprune.ErrUnreadableSet},
		{name: "boundary ahead of the newest archived segment", setup: onlySets(
			setSnapshots("main", "ahead", t0, snapset.StatusCompleted, seg(1, unitEnd+segsPerLog).String()),
		), wantErr: wal.ErrBoundaryAhead},
		{name: "no archive section", setup: func(h *harness) { h.configs.Put(clusterConfig("main", nil)) }, wantErr: walprune.ErrNoArchive, noLease: true},
		{name: "archive layout options that do not apply", setup: func(h *harness) {
			h.setArchive(func(a *config.Archive) { a.Extension = ".gz" })
		}, wantErr: errAny, noLease: true},
		{name: "bucket does not exist", setup: func(h *harness) {
			h.setArchive(func(a *config.Archive) { a.Bucket = "no-such-bucket" })
		}, wantErr: wal.ErrNoSuchBucket},
		{name: "credentials cannot list", setup: func(h *harness) {
			h.arch.listErr = errors.Join(wal.ErrAccessDenied, errors.New("api error AccessDenied"))
		}, wantErr: wal.ErrAccessDenied},
		{name: "bucket check denied", setup: func(h *harness) { h.arch.checkErr = wal.ErrAccessDenied }, wantErr: wal.ErrAccessDenied},
		{name: "snapshots cannot be listed", setup: func(h *harness) {
			h.snaps.FailAlways(fleetfake.OpListSnapshots, errors.New("UnauthorizedOperation"))
		}, wantErr: errAny},
		{name: "unknown cluster", req: walprune.Request{Cluster: "nosuch"}, wantErr: config.ErrUnknownCluster, noLease: true},
		{name: "invalid cluster name", req: walprune.Request{Cluster: "Main!"}, wantErr: fleet.ErrBadRequest, noLease: true},
		{name: "keepFrom not a WAL name", req: walprune.Request{KeepFrom: "000000010000000A"}, wantErr: fleet.ErrBadRequest, noLease: true},
		{name: "keepFrom a partial name", req: walprune.Request{KeepFrom: seg(1, 5).String() + ".partial"}, wantErr: fleet.ErrBadRequest, noLease: true},
		{name: "keepFrom lower case", req: walprune.Request{KeepFrom: strings.ToLower(seg(1, 0xAB).String())}, wantErr: fleet.ErrBadRequest, noLease: true},
		{name: "keepFrom out of range for the segment size", req: walprune.Request{KeepFrom: "000000010000000100000100"}, wantErr: fleet.ErrBadRequest},
		{name: "negative maxDeletes", req: walprune.Request{MaxDeletes: -1}, wantErr: fleet.ErrBadRequest, noLease: true},
		{name: "lease held by another run", setup: func(h *harness) {
			h.lease.Hold("walprune/main", "other-run", time.Now().Add(time.Hour))
		}, wantErr: fleet.ErrLeaseHeld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			res, err := h.run(context.Background(), tc.req)
			if err == nil {
				t.Fatalf("Run succeeded: %s", summary(res))
			}
			if tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if res.Status != walprune.StatusFailed || res.Reason != err.Error() || res.Complete || res.Deleted != 0 {
				t.Fatalf("result %s", summary(res))
			}
			h.assertNothingDeleted(t)
			calls := h.lease.Calls()
			if tc.noLease && len(calls) != 0 {
				t.Errorf("lease calls %+v, want none", calls)
			}
			if hd, held := h.lease.Holder("walprune/main"); held && hd.Owner == "run-test" {
				t.Errorf("lease left held by this run")
			}
			if !strings.Contains(h.logs.String(), `"msg":"wal prune failed"`) {
				t.Errorf("no failure logged: %s", h.logs)
			}
		})
	}
}

// errAny matches any error in TestRefusals.
var errAny = errors.New("any error")

func TestDryRunDeletesNothing(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(context.Background(), walprune.Request{DryRun: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	h.assertNothingDeleted(t)
	if res.Status != walprune.StatusPlanned || !res.DryRun || res.Complete || res.Deleted != 0 || res.Planned != len(h.fix.Delete) {
		t.Fatalf("result %s", summary(res))
	}
	planned := make([]string, 0, len(res.Plan.Delete))
	for _, o := range res.Plan.Delete {
		planned = append(planned, o.Key)
	}
	slices.Sort(planned)
	if !slices.Equal(planned, h.fix.Delete) {
		t.Fatalf("plan holds %d keys, want %d", len(planned), len(h.fix.Delete))
	}
	if len(res.PlannedKeys) != walprune.MaxResultKeys || res.PlannedKeysOmitted != len(h.fix.Delete)-walprune.MaxResultKeys {
		t.Fatalf("planned keys %d listed, %d omitted", len(res.PlannedKeys), res.PlannedKeysOmitted)
	}
	if res.PlannedKeys[0] != res.Plan.Delete[0].Key {
		t.Errorf("planned keys do not start with the oldest")
	}
	if v, _ := h.metrics.Get("WALDeletedObjects"); v != 0 {
		t.Errorf("WALDeletedObjects %v", v)
	}
}

func TestMaxDeletes(t *testing.T) {
	tests := []struct {
		name       string
		configured int
		event      int
		want       int
		warns      bool
	}{
		{name: "configured cap", configured: 1500, want: 1500},
		{name: "event lowers the cap", configured: 1500, event: 700, want: 700},
		{name: "event cannot raise the cap", configured: 1500, event: 100000, want: 1500, warns: true},
		{name: "event lowers the default cap", event: 2001, want: 2001},
		{name: "cap of exactly one batch", configured: 1000, want: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.setArchive(func(a *config.Archive) { a.MaxDeletesPerRun = tc.configured })
			res, err := h.run(context.Background(), walprune.Request{MaxDeletes: tc.event})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			// Exactly the oldest N: the plan is oldest first.
			oldest := oldestKeys(h.fix, tc.want)
			h.assertDeleted(t, oldest)
			if res.Complete || res.Status != walprune.StatusPartial || res.StoppedBy != walprune.StopMaxDeletes ||
				res.Deleted != tc.want || res.Deferred != len(h.fix.Delete)-tc.want || res.MaxDeletes != tc.want {
				t.Fatalf("result %s", summary(res))
			}
			if n := h.arch.deleteCallCount(); n != (tc.want+999)/1000 {
				t.Errorf("%d delete calls for %d keys", n, tc.want)
			}
			if warned := slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "maxDeletes") }); warned != tc.warns {
				t.Errorf("warnings %q", res.Warnings)
			}
			if v, _ := h.metrics.Get("WALPruneComplete"); v != 0 {
				t.Errorf("WALPruneComplete %v", v)
			}
			// The next runs continue from there.
			for run := 2; ; run++ {
				res, err := h.run(context.Background(), walprune.Request{})
				if err != nil || run > 10 {
					t.Fatalf("run %d: %s, %v", run, summary(res), err)
				}
				if res.Complete {
					break
				}
			}
			h.assertDeleted(t, h.fix.Delete)
		})
	}
}

// oldestKeys returns, sorted, the n keys of f.Delete that are oldest by position, timeline, key.
func oldestKeys(f archiveFixture, n int) []string {
	keys := slices.Clone(f.Delete)
	slices.SortFunc(keys, func(a, b string) int {
		sa, sb := f.Segs[a], f.Segs[b]
		if c := sa.Compare(sb); c != 0 {
			return c
		}
		if sa.Timeline != sb.Timeline {
			if sa.Timeline < sb.Timeline {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	keys = keys[:n]
	slices.Sort(keys)
	return keys
}

func TestDeadlineStopsBetweenBatches(t *testing.T) {
	h := newHarness(t)
	h.p.SafetyMargin = 8*time.Minute + 30*time.Second
	// Each batch takes a minute of the fake clock; the run has ten minutes: batches start at
	// 0 and 1 minute, and at 2 minutes less than the margin is left.
	h.arch.onBatch = func(int) { h.clock.Advance(time.Minute) }
	ctx, cancel := context.WithDeadline(context.Background(), h.clock.Now().Add(10*time.Minute))
	defer cancel()
	res, err := h.p.Run(ctx, walprune.Request{Cluster: "main"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Complete || res.StoppedBy != walprune.StopDeadline || res.Status != walprune.StatusPartial {
		t.Fatalf("result %s", summary(res))
	}
	if n := h.arch.deleteCallCount(); n != 2 {
		t.Fatalf("%d batches before the deadline stop, want 2", n)
	}
	if res.Deleted+res.NotSent != len(h.fix.Delete) || res.NotSent == 0 {
		t.Fatalf("deleted %d, not sent %d, planned %d", res.Deleted, res.NotSent, len(h.fix.Delete))
	}
	firstRun := h.arch.deleted()

	// A second run without the deadline finishes the job.
	h.arch.onBatch = nil
	res2, err := h.run(context.Background(), walprune.Request{})
	if err != nil || !res2.Complete || res2.Deleted != res.NotSent {
		t.Fatalf("second run: %+v, %v", res2, err)
	}
	h.assertDeleted(t, h.fix.Delete)
	if secondRun := h.arch.deleted()[len(firstRun):]; slices.ContainsFunc(secondRun, func(k string) bool { return slices.Contains(firstRun, k) }) {
		t.Fatalf("the second run deleted a key the first had deleted")
	}
}

func TestDeadlineTooCloseToList(t *testing.T) {
	h := newHarness(t)
	h.p.SafetyMargin = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	_, err := h.run(ctx, walprune.Request{})
	if err == nil || !strings.Contains(err.Error(), "safety margin") {
		t.Fatalf("err %v, want a refusal naming the safety margin", err)
	}
	h.assertNothingDeleted(t)
}

func TestDeleteErrorsAreReported(t *testing.T) {
	t.Run("per-key errors", func(t *testing.T) {
		h := newHarness(t)
		bad := []string{h.fix.Delete[5], h.fix.Delete[1500], h.fix.Delete[len(h.fix.Delete)-1]}
		h.arch.keyErrs = map[string]string{bad[0]: "AccessDenied", bad[1]: "InternalError", bad[2]: "AccessDenied"}
		res, err := h.run(context.Background(), walprune.Request{})
		if !errors.Is(err, walprune.ErrIncompleteDelete) {
			t.Fatalf("err %v, want ErrIncompleteDelete", err)
		}
		if res.DeleteErrors != 3 || len(res.Errors) != 3 || res.Deleted != len(h.fix.Delete)-3 || res.Complete || res.Status != walprune.StatusFailed {
			t.Fatalf("result %s", summary(res))
		}
		for _, ke := range res.Errors {
			if !slices.Contains(bad, ke.Key) || ke.Code == "" {
				t.Errorf("error entry %+v", ke)
			}
		}
		left := h.arch.keys(bucket)
		for _, k := range bad {
			if _, found := slices.BinarySearch(left, k); !found {
				t.Errorf("%s was deleted", k)
			}
		}
		if v, _ := h.metrics.Get("WALDeleteErrors"); v != 3 {
			t.Errorf("WALDeleteErrors %v", v)
		}
		if v, _ := h.metrics.Get("WALPruneSuccess"); v != 0 {
			t.Errorf("WALPruneSuccess %v", v)
		}
	})
	t.Run("a batch failing as a whole stops the run", func(t *testing.T) {
		h := newHarness(t)
		h.arch.failBatch = 2
		res, err := h.run(context.Background(), walprune.Request{})
		if !errors.Is(err, walprune.ErrIncompleteDelete) || !errors.Is(err, wal.ErrAccessDenied) {
			t.Fatalf("err %v", err)
		}
		if res.Deleted != 1000 || res.DeleteErrors != 1000 || res.NotSent != len(h.fix.Delete)-2000 || res.StoppedBy != walprune.StopError {
			t.Fatalf("result %s", summary(res))
		}
		if n := h.arch.deleteCallCount(); n != 2 {
			t.Fatalf("%d delete calls, want 2", n)
		}
	})
}

func TestKeysOutsideThePrefixAreNeverSent(t *testing.T) {
	h := newHarness(t)
	// A lister that answers with keys outside what was asked (a misbehaving store) must not
	// get them deleted.
	stray := []string{
		"pgbackrest/archive/other/15-1/0000000100000000/000000010000000000000001-" + sha("000000010000000000000001") + ".gz",
		"000000010000000000000002",
		"pgbackrest/archive/main-old/15-1/0000000100000000/000000010000000000000003-" + sha("000000010000000000000003") + ".gz",
	}
	h.p.Archive = &strayArchive{memArchive: h.arch, stray: stray}
	res, err := h.run(context.Background(), walprune.Request{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, k := range h.arch.deleted() {
		if !strings.HasPrefix(k, "pgbackrest/archive/main/") {
			t.Fatalf("sent %q", k)
		}
	}
	if res.Outside != len(stray) {
		t.Errorf("outside %d, want %d", res.Outside, len(stray))
	}
	h.assertDeleted(t, h.fix.Delete)
}

// strayArchive adds keys outside the requested prefix to the first page of every listing.
type strayArchive struct {
	*memArchive
	stray []string
}

func (s *strayArchive) Lister(bucket string) wal.Lister {
	return strayLister{next: s.memArchive.Lister(bucket), stray: s.stray}
}

type strayLister struct {
	next  wal.Lister
	stray []string
}

func (l strayLister) ListPage(ctx context.Context, req wal.ListRequest, token string) (wal.Page, error) {
	p, err := l.next.ListPage(ctx, req, token)
	if err == nil && token == "" && req.Delimiter == "/" && strings.Count(req.Prefix, "/") == 3 {
		for _, k := range l.stray {
			p.Objects = append(p.Objects, wal.ObjectInfo{Key: k, Size: 1})
		}
	}
	return p, err
}

func TestVersionedBucket(t *testing.T) {
	h := newHarness(t)
	h.arch.versioning = "Enabled"
	res, err := h.run(context.Background(), walprune.Request{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Versioned || res.Versioning != "Enabled" || !res.Complete {
		t.Fatalf("result %s", summary(res))
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "delete markers") && strings.Contains(w, "lifecycle") }) {
		t.Errorf("no versioning warning: %q", res.Warnings)
	}
	h.assertDeleted(t, h.fix.Delete)
}

func TestLayouts(t *testing.T) {
	tests := []struct {
		archive config.Archive
		key     string
		wantErr bool
	}{
		{archive: config.Archive{Layout: "pgbackrest", Prefix: "/repo", Stanza: "main"}, key: "repo/archive/main/15-1/0000000100000000/000000010000000000000001-" + sha("a") + ".gz"},
		{archive: config.Archive{Layout: "pgbackrest", Stanza: "main"}, key: "archive/main/15-1/0000000100000000/000000010000000000000001-" + sha("a") + ".gz"},
		{archive: config.Archive{Layout: "walg", Prefix: "wal/main"}, key: "wal/main/wal_005/000000010000000000000001.lz4"},
		{archive: config.Archive{Layout: "plain", Prefix: "confluence/local-db-wal-", Extension: ".bz2"}, key: "confluence/local-db-wal-000000010000000000000001.bz2"},
		{archive: config.Archive{Layout: "plain", Prefix: "wal/"}, key: "wal/000000010000000000000001"},
		{archive: config.Archive{Layout: "pgbackrest", Stanza: "main", Extension: ".gz"}, wantErr: true},
		{archive: config.Archive{Layout: "walg", Stanza: "main"}, wantErr: true},
		{archive: config.Archive{Layout: "pgbackrest"}, wantErr: true},
		{archive: config.Archive{Layout: "wal-e"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.archive.Layout+tc.archive.Prefix+tc.archive.Extension, func(t *testing.T) {
			l, err := walprune.NewLayout(tc.archive)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("layout %+v accepted", tc.archive)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, ok := l.Parse(tc.key)
			if !ok || f.Kind != wal.KindSegment {
				t.Fatalf("%s parses as %+v, %v", tc.key, f, ok)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		wantErr   error
		wantOwner string
		dryRun    bool
	}{
		{name: "constant input", raw: `{"cluster":"main"}`, wantOwner: "req-1/"},
		{name: "dry run", raw: `{"cluster":"main","dryRun":true}`, wantOwner: "req-1/", dryRun: true},
		{name: "scheduled event envelope", raw: `{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{"cluster":"main","keepFrom":"000000010000000500000000"}}`, wantOwner: "req-1/"},
		{name: "malformed", raw: `{"cluster":`, wantErr: fleet.ErrBadRequest},
		{name: "unknown field", raw: `{"cluster":"main","dry_run":true}`, wantErr: events.ErrMalformed},
		{name: "empty envelope detail", raw: `{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}`, wantErr: fleet.ErrBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
			res, err := h.p.Handle(ctx, json.RawMessage(tc.raw))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || res.Status != walprune.StatusFailed {
					t.Fatalf("err %v, result %s", err, summary(res))
				}
				h.assertNothingDeleted(t)
				return
			}
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			// The request id names the run in the lease; a random suffix keeps it unique.
			if calls := h.lease.Calls(); len(calls) == 0 || !strings.HasPrefix(calls[0].Owner, tc.wantOwner) || len(calls[0].Owner) <= len(tc.wantOwner) {
				t.Errorf("lease calls %+v, want an owner starting with %s", calls, tc.wantOwner)
			}
			if res.DryRun != tc.dryRun {
				t.Errorf("dry run %v", res.DryRun)
			}
		})
	}
}

// TestDuplicateDeliveriesDoNotOverlap: EventBridge and Lambda deliver at least once, and two
// deliveries of one event can run at the same time with the same request id. The lease owner
// is unique to each run, so exactly one of them holds the lease and prunes; the other is
// refused with ErrLeaseHeld and changes nothing.
func TestDuplicateDeliveriesDoNotOverlap(t *testing.T) {
	h := newHarness(t)
	h.p.Owner = ""
	// The first run to get past the lease waits there until the other has finished.
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.arch.onCheck = func() {
		first := false
		once.Do(func() { first = true })
		if first {
			close(inside)
			<-release
		}
	}
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-dup"})
	type outcome struct {
		res walprune.Result
		err error
	}
	results := make(chan outcome, 2)
	invoke := func() {
		res, err := h.p.Handle(ctx, json.RawMessage(`{"cluster":"main"}`))
		results <- outcome{res, err}
	}
	go invoke()
	<-inside
	go invoke()
	second := <-results // the duplicate, while the first holds the lease
	close(release)
	first := <-results

	if first.err != nil || !first.res.Complete {
		t.Fatalf("the run holding the lease: %v, %s", first.err, summary(first.res))
	}
	if !errors.Is(second.err, fleet.ErrLeaseHeld) || second.res.Status != walprune.StatusFailed || second.res.Deleted != 0 {
		t.Fatalf("the duplicate delivery ran alongside: %v, %s", second.err, summary(second.res))
	}
	h.assertDeleted(t, h.fix.Delete)
	var owners []string
	for _, c := range h.lease.Calls() {
		if c.Op == fleetfake.OpAcquire {
			owners = append(owners, c.Owner)
		}
	}
	if len(owners) != 2 || owners[0] == owners[1] || !strings.HasPrefix(owners[0], "req-dup/") || !strings.HasPrefix(owners[1], "req-dup/") {
		t.Fatalf("lease owners %q: want two owners, distinct, both naming the request", owners)
	}
}

// TestRunOwnersAreUnique: without a Lambda context and without an Owner, every run still gets
// an owner of its own (the harness's clock stands still, so a time-based owner would repeat).
func TestRunOwnersAreUnique(t *testing.T) {
	h := newHarness(t)
	h.p.Owner = ""
	for range 2 {
		if _, err := h.run(context.Background(), walprune.Request{DryRun: true}); err != nil {
			t.Fatal(err)
		}
	}
	var owners []string
	for _, c := range h.lease.Calls() {
		if c.Op == fleetfake.OpAcquire && c.Err == nil {
			owners = append(owners, c.Owner)
		}
	}
	if len(owners) != 2 || owners[0] == owners[1] || owners[0] == "" {
		t.Fatalf("lease owners %q, want two distinct ones", owners)
	}
}

func TestResultJSON(t *testing.T) {
	h := newHarness(t)
	res, err := h.run(context.Background(), walprune.Request{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cluster", "status", "boundary", "boundarySource", "boundarySetId", "setRedoWalFile", "deleted", "deletedBytes",
		"kept", "protected", "unrecognized", "listRequests", "deleteRequests", "requests", "complete", "versioned", "maxDeletes", "durationMs"} {
		if _, ok := m[f]; !ok {
			t.Errorf("result JSON has no %q: %s", f, raw)
		}
	}
	if _, ok := m["Plan"]; ok {
		t.Errorf("the plan is in the JSON")
	}
	if len(raw) > 4096 {
		t.Errorf("result JSON is %d bytes", len(raw))
	}
}

// summary is the result as JSON, without the plan.
func summary(res walprune.Result) string {
	res.PlannedKeys = nil
	raw, err := json.Marshal(res)
	if err != nil {
		return err.Error()
	}
	return string(raw)
}

// listingConfigs is a configuration source that can also list its clusters (config.Lister), as
// config.DirSource and paramstore.Source can.
type listingConfigs struct {
	*fleetfake.ConfigSource
	names []string
	err   error
}

func (l listingConfigs) List(context.Context) ([]string, error) { return l.names, l.err }

// TestSharedArchiveIsRefused: when the configuration source can list clusters, an archive that
// another cluster's configuration shares (same bucket, keys that either pruner may list) is
// refused before anything is listed or deleted, and a source that cannot list is not asked.
func TestSharedArchiveIsRefused(t *testing.T) {
	other := func(a *config.Archive) config.Cluster { return clusterConfig("other", a) }
	tests := []struct {
		name    string
		others  []config.Cluster
		names   []string // List's answer; nil: the clusters of others plus main
		listErr error
		wantErr error // nil: the run prunes
	}{
		{name: "same bucket and stanza", others: []config.Cluster{other(pgbrArchive(bucket))}, wantErr: walprune.ErrSharedArchive},
		{name: "same bucket, a repo inside this stanza", others: []config.Cluster{other(&config.Archive{
			Layout: "pgbackrest", Bucket: bucket, Prefix: "/pgbackrest/archive/main/old", Stanza: "main", SegmentSizeMiB: 16,
		})}, wantErr: walprune.ErrSharedArchive},
		{name: "same bucket, a plain prefix inside this stanza", others: []config.Cluster{other(&config.Archive{
			Layout: "plain", Bucket: bucket, Prefix: "pgbackrest/archive/main/", SegmentSizeMiB: 16,
		})}, wantErr: walprune.ErrSharedArchive},
		{name: "same repo, another stanza", others: []config.Cluster{other(&config.Archive{
			Layout: "pgbackrest", Bucket: bucket, Prefix: "/pgbackrest", Stanza: "other", SegmentSizeMiB: 16,
		})}},
		{name: "same prefix in another bucket", others: []config.Cluster{other(pgbrArchive("another-bucket"))}},
		{name: "plain at the root of the same bucket", others: []config.Cluster{other(&config.Archive{
			Layout: "plain", Bucket: bucket, SegmentSizeMiB: 16,
		})}},
		{name: "no archive section", others: []config.Cluster{other(nil)}},
		{name: "one of several", others: []config.Cluster{
			other(nil), clusterConfig("third", pgbrArchive("another-bucket")), clusterConfig("fourth", pgbrArchive(bucket)),
		}, wantErr: walprune.ErrSharedArchive},
		{name: "the clusters cannot be listed", listErr: errors.New("AccessDeniedException: ssm:GetParametersByPath"), wantErr: errAny},
		{name: "a listed cluster cannot be read", names: []string{"main", "gone"}, wantErr: config.ErrUnknownCluster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			names := tc.names
			if names == nil {
				names = []string{"main"}
			}
			for _, c := range tc.others {
				h.configs.Put(c)
				if tc.names == nil {
					names = append(names, c.Name)
				}
			}
			h.p.Configs = listingConfigs{ConfigSource: h.configs, names: names, err: tc.listErr}
			res, err := h.run(context.Background(), walprune.Request{})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				h.assertDeleted(t, h.fix.Delete)
				return
			}
			if err == nil || (tc.wantErr != errAny && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Run: %v, want %v; result %s", err, tc.wantErr, summary(res))
			}
			if res.Status != walprune.StatusFailed || res.Reason != err.Error() {
				t.Fatalf("result %s", summary(res))
			}
			h.assertNothingDeleted(t)
			if len(h.arch.lists) != 0 || len(h.lease.Calls()) != 0 {
				t.Errorf("refused after %d listings and %d lease calls, want none", len(h.arch.lists), len(h.lease.Calls()))
			}
			t.Log(err)
		})
	}
}

// TestArchivesThatMustBePruned: archives a new user has, that pg_archivecleanup prunes, must be
// pruned too (invariant 5's progress half): a plain archive at the bucket root, and backup
// history or partial files at or past the boundary, which must not stop the listing before the
// first complete segment that proves the boundary is archived.
func TestArchivesThatMustBePruned(t *testing.T) {
	plainKeys := func(prefix, ext string, tli uint32, from, to uint64) []string {
		var out []string
		for n := from; n <= to; n++ {
			out = append(out, prefix+seg(tli, n).String()+ext)
		}
		return out
	}
	pgbrKeys := func(from, to uint64) []string {
		var out []string
		for n := from; n <= to; n++ {
			out = append(out, pgbrKey("pgbackrest/archive/main/", "15-1", seg(1, n)))
		}
		return out
	}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name     string
		archive  *config.Archive
		root     string
		boundary wal.Segment
		keys     []string // deletable keys, kept keys and keys outside the archive
		want     []string // what a prune deletes
	}{
		{
			name:     "plain at the bucket root",
			archive:  &config.Archive{Layout: "plain", Bucket: bucket, SegmentSizeMiB: 16},
			boundary: seg(1, 0x20),
			keys: cat(plainKeys("", "", 1, 0x01, 0x30), []string{
				"00000002.history", "notes.txt", "wal/" + seg(1, 1).String(), "other/" + seg(1, 2).String(),
			}),
			want: plainKeys("", "", 1, 0x01, 0x1F),
		},
		{
			name:     "plain at the bucket root, compressed, a backup file at the boundary",
			archive:  &config.Archive{Layout: "plain", Bucket: bucket, Extension: ".gz", SegmentSizeMiB: 16},
			boundary: seg(1, 0x20),
			keys: cat(plainKeys("", ".gz", 1, 0x01, 0x30), []string{
				seg(1, 0x20).String() + ".00000028.backup.gz", "wal/" + seg(1, 1).String() + ".gz",
			}),
			want: plainKeys("", ".gz", 1, 0x01, 0x1F),
		},
		{
			name:     "plain under a prefix, a backup file at the boundary (the issue's example)",
			archive:  &config.Archive{Layout: "plain", Bucket: bucket, Prefix: "wal/", Extension: ".gz", SegmentSizeMiB: 16},
			root:     "wal/",
			boundary: seg(1, 0x20),
			keys: cat(plainKeys("wal/", ".gz", 1, 0x01, 0x30), []string{
				"wal/" + seg(1, 0x20).String() + ".00000028.backup.gz", seg(1, 1).String() + ".gz",
			}),
			want: plainKeys("wal/", ".gz", 1, 0x01, 0x1F),
		},
		{
			name:     "plain, a partial file past the boundary and a backup file at it, one timeline",
			archive:  &config.Archive{Layout: "plain", Bucket: bucket, Prefix: "wal/", SegmentSizeMiB: 16},
			root:     "wal/",
			boundary: seg(1, 0x20),
			keys: cat(plainKeys("wal/", "", 1, 0x01, 0x1F), []string{
				"wal/" + seg(1, 0x20).String() + ".00000028.backup",
				"wal/" + seg(1, 0x20).String() + ".partial",
				"wal/" + seg(1, 0x21).String() + ".partial",
			}, plainKeys("wal/", "", 1, 0x22, 0x24)),
			want: plainKeys("wal/", "", 1, 0x01, 0x1F),
		},
		{
			name:     "wal-g, a backup file at the boundary",
			archive:  &config.Archive{Layout: "walg", Bucket: bucket, Prefix: "walg/main", SegmentSizeMiB: 16},
			root:     "walg/main/wal_005/",
			boundary: seg(1, 0x20),
			keys: cat(plainKeys("walg/main/wal_005/", ".lz4", 1, 0x01, 0x30), []string{
				"walg/main/wal_005/" + seg(1, 0x20).String() + ".00000028.backup.lz4",
				"walg/main/basebackups_005/base_" + seg(1, 0x20).String() + "_backup_stop_sentinel.json",
			}),
			want: plainKeys("walg/main/wal_005/", ".lz4", 1, 0x01, 0x1F),
		},
		{
			name:     "wal-g at the bucket root, promoted: the old timeline's partial past the boundary",
			archive:  &config.Archive{Layout: "walg", Bucket: bucket, SegmentSizeMiB: 16},
			root:     "wal_005/",
			boundary: seg(2, 0x20),
			keys: cat(plainKeys("wal_005/", ".br", 1, 0x01, 0x1F), []string{
				"wal_005/" + seg(1, 0x20).String() + ".partial.br",
				"wal_005/00000002.history.br",
				"wal_005/" + seg(2, 0x20).String() + ".00000028.backup.br",
			}, plainKeys("wal_005/", ".br", 2, 0x20, 0x30)),
			want: plainKeys("wal_005/", ".br", 1, 0x01, 0x1F),
		},
		{
			name:     "pgbackrest, a backup file where the boundary segment is not archived",
			archive:  pgbrArchive(bucket),
			root:     "pgbackrest/archive/main/",
			boundary: seg(1, 0x20),
			keys: cat(pgbrKeys(0x01, 0x1F), []string{
				"pgbackrest/archive/main/15-1/0000000100000000/" + seg(1, 0x20).String() + ".00000028.backup",
				"pgbackrest/archive/main/archive.info",
			}, pgbrKeys(0x21, 0x30)),
			want: pgbrKeys(0x01, 0x1F),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			keys := slices.Sorted(slices.Values(tc.keys))
			want := slices.Sorted(slices.Values(tc.want))
			h.fix = archiveFixture{Root: tc.root, Keys: keys, Delete: want}
			h.arch = newMemArchive(bucket, keys)
			h.arch.pageSize = 7
			h.p.Archive = h.arch
			h.configs.Put(clusterConfig("main", tc.archive))
			h.snaps = fleetfake.NewSnapshotStore()
			h.snaps.Put(setSnapshots("main", "only", t0, snapset.StatusCompleted, tc.boundary.String())...)
			h.p.Snapshots = h.snaps
			res, err := h.run(context.Background(), walprune.Request{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !res.Complete || res.Deleted != len(want) || res.Boundary != tc.boundary.String() {
				t.Fatalf("result %s", summary(res))
			}
			h.assertDeleted(t, want)
		})
	}
}
