package snapset_test

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgfleet/pgfleet/shared/snapset"
)

func TestMetaTagsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta snapset.Meta
	}{
		{name: "every field", meta: fullMeta()},
		{name: "only the required fields", meta: snapset.Meta{
			Cluster: "main", SetID: "main-20260301T100000.000Z", Status: snapset.StatusPending,
			SourceInstance: "i-0abc", CreatedAt: at("2026-03-01T10:00:00Z"),
		}},
		{name: "failed with a reason", meta: func() snapset.Meta {
			m := fullMeta()
			m.Status, m.StatusReason = snapset.StatusFailed, "snapshot failed: RequestLimitExceeded"
			return m
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tags := tc.meta.Tags()
			for k, v := range tags {
				if !strings.HasPrefix(k, snapset.TagPrefix) {
					t.Errorf("tag %q lacks the %q prefix", k, snapset.TagPrefix)
				}
				if v == "" {
					t.Errorf("tag %q written with an empty value", k)
				}
			}
			if tags[snapset.TagCreatedBy] != snapset.CreatedByValue {
				t.Errorf("created-by %q", tags[snapset.TagCreatedBy])
			}
			got, err := snapset.MetaFromTags(tags)
			if err != nil {
				t.Fatalf("MetaFromTags: %v", err)
			}
			if !reflect.DeepEqual(got, tc.meta) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.meta)
			}
		})
	}
}

func TestMetaTagsKeepCreatedAtToTheSecondInUTC(t *testing.T) {
	m := fullMeta()
	m.CreatedAt = time.Date(2026, 3, 1, 12, 30, 15, 987654321, time.FixedZone("UTC+2", 2*3600))
	tags := m.Tags()
	if tags[snapset.TagCreatedAt] != "2026-03-01T10:30:15Z" {
		t.Fatalf("created-at tag %q, want 2026-03-01T10:30:15Z", tags[snapset.TagCreatedAt])
	}
	got, err := snapset.MetaFromTags(tags)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(m.CreatedAt.Truncate(time.Second)) {
		t.Fatalf("created-at read back as %v", got.CreatedAt)
	}
}

func TestStatusReasonFitsATag(t *testing.T) {
	tests := []struct {
		name   string
		reason string
	}{
		{name: "long ASCII", reason: strings.Repeat("x", 400)},
		{name: "multi-byte rune across the cut", reason: strings.Repeat("a", 254) + "é" + strings.Repeat("b", 10)},
		{name: "three-byte runes", reason: strings.Repeat("€", 200)},
		{name: "invalid UTF-8 in an error message", reason: "read \xff\xfe failed " + strings.Repeat("z", 300)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := fullMeta()
			m.Status, m.StatusReason = snapset.StatusFailed, tc.reason
			v := m.Tags()[snapset.TagStatusReason]
			if !utf8.ValidString(v) {
				t.Fatalf("status reason is not valid UTF-8: %q", v)
			}
			if len(v) > 255 {
				t.Fatalf("status reason is %d bytes, want at most 255", len(v))
			}
			if len(v) < 200 {
				t.Fatalf("status reason cut too short: %d bytes", len(v))
			}
		})
	}
}

func TestMetaFromTagsErrorsNameTheTag(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(map[string]string)
		wantErr string
	}{
		{name: "no cluster", edit: func(m map[string]string) { delete(m, snapset.TagCluster) }, wantErr: snapset.TagCluster},
		{name: "no set id", edit: func(m map[string]string) { delete(m, snapset.TagSetID) }, wantErr: snapset.TagSetID},
		{name: "no status", edit: func(m map[string]string) { delete(m, snapset.TagStatus) }, wantErr: snapset.TagStatus},
		{name: "unknown status", edit: func(m map[string]string) { m[snapset.TagStatus] = "done" }, wantErr: snapset.TagStatus},
		{name: "bad timeline", edit: func(m map[string]string) { m[snapset.TagTimeline] = "one" }, wantErr: snapset.TagTimeline},
		{name: "bad frozen-ms", edit: func(m map[string]string) { m[snapset.TagFrozenMS] = "1.5" }, wantErr: snapset.TagFrozenMS},
		{name: "bad volume count", edit: func(m map[string]string) { m[snapset.TagVolumeCount] = "two" }, wantErr: snapset.TagVolumeCount},
		{name: "bad created-at", edit: func(m map[string]string) { m[snapset.TagCreatedAt] = "yesterday" }, wantErr: snapset.TagCreatedAt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tags := fullMeta().Tags()
			tc.edit(tags)
			m, err := snapset.MetaFromTags(tags)
			if err == nil {
				t.Fatalf("no error, read %+v", m)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not name %s", err, tc.wantErr)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	older := at("2026-03-01T10:00:00Z")
	newer := at("2026-03-02T10:00:00Z")
	tests := []struct {
		name       string
		snaps      []snapset.Snapshot
		wantSets   []string // newest first
		wantStatus map[string]snapset.Status
		wantSnaps  map[string][]string // snapshot ids in device order
		unreadable []string
	}{
		{
			name: "two sets, newest first, snapshots in device order",
			snaps: []snapset.Snapshot{
				taggedSnap("s-old-g", "old", older, snapset.StatusCompleted, "/dev/sdg"),
				taggedSnap("s-new-f", "new", newer, snapset.StatusCompleted, "/dev/sdf"),
				taggedSnap("s-old-f", "old", older, snapset.StatusCompleted, "/dev/sdf"),
				taggedSnap("s-new-g", "new", newer, snapset.StatusCompleted, "/dev/sdg"),
			},
			wantSets:   []string{"new", "old"},
			wantStatus: map[string]snapset.Status{"new": snapset.StatusCompleted, "old": snapset.StatusCompleted},
			wantSnaps:  map[string][]string{"new": {"s-new-f", "s-new-g"}, "old": {"s-old-f", "s-old-g"}},
		},
		{
			name: "pending beats completed",
			snaps: []snapset.Snapshot{
				taggedSnap("a", "mixed", older, snapset.StatusCompleted, "/dev/sdf"),
				taggedSnap("b", "mixed", older, snapset.StatusPending, "/dev/sdg"),
				taggedSnap("c", "mixed", older, snapset.StatusCompleted, "/dev/sdh"),
			},
			wantSets:   []string{"mixed"},
			wantStatus: map[string]snapset.Status{"mixed": snapset.StatusPending},
			wantSnaps:  map[string][]string{"mixed": {"a", "b", "c"}},
		},
		{
			name: "failed beats pending and completed",
			snaps: []snapset.Snapshot{
				taggedSnap("a", "mixed", older, snapset.StatusCompleted, "/dev/sdf"),
				taggedSnap("b", "mixed", older, snapset.StatusPending, "/dev/sdg"),
				taggedSnap("c", "mixed", older, snapset.StatusFailed, "/dev/sdh"),
			},
			wantSets:   []string{"mixed"},
			wantStatus: map[string]snapset.Status{"mixed": snapset.StatusFailed},
			wantSnaps:  map[string][]string{"mixed": {"a", "b", "c"}},
		},
		{
			name: "unreadable snapshots are reported, not dropped",
			snaps: []snapset.Snapshot{
				taggedSnap("ok", "set", older, snapset.StatusCompleted, "/dev/sdf"),
				{ID: "no-tags", State: snapset.StateCompleted},
				func() snapset.Snapshot {
					s := taggedSnap("bad-status", "set", older, snapset.StatusCompleted, "/dev/sdg")
					s.Tags[snapset.TagStatus] = "finished"
					return s
				}(),
				func() snapset.Snapshot {
					s := taggedSnap("bad-time", "set", older, snapset.StatusCompleted, "/dev/sdh")
					s.Tags[snapset.TagCreatedAt] = "2026-03-01"
					return s
				}(),
			},
			wantSets:   []string{"set"},
			wantStatus: map[string]snapset.Status{"set": snapset.StatusCompleted},
			wantSnaps:  map[string][]string{"set": {"ok"}},
			unreadable: []string{"bad-status", "bad-time", "no-tags"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewSource(7))
			// Every order of arrival must group the same way.
			for round := 0; round < 20; round++ {
				snaps := slices.Clone(tc.snaps)
				rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
				sets, unreadable := snapset.Group(snaps)
				var ids []string
				for _, s := range sets {
					ids = append(ids, s.SetID)
					if s.Status != tc.wantStatus[s.SetID] {
						t.Fatalf("round %d: set %s status %s, want %s", round, s.SetID, s.Status, tc.wantStatus[s.SetID])
					}
					if got := s.SnapshotIDs(); !slices.Equal(got, tc.wantSnaps[s.SetID]) {
						t.Fatalf("round %d: set %s snapshots %q, want %q", round, s.SetID, got, tc.wantSnaps[s.SetID])
					}
				}
				if !slices.Equal(ids, tc.wantSets) {
					t.Fatalf("round %d: sets %q, want %q", round, ids, tc.wantSets)
				}
				var bad []string
				for _, s := range unreadable {
					bad = append(bad, s.ID)
				}
				sort.Strings(bad)
				if !slices.Equal(bad, tc.unreadable) {
					t.Fatalf("round %d: unreadable %q, want %q", round, bad, tc.unreadable)
				}
			}
		})
	}
}

func TestGroupFillsVolumeFieldsFromTags(t *testing.T) {
	s := taggedSnap("snap-1", "set", at("2026-03-01T10:00:00Z"), snapset.StatusCompleted, "/dev/sdf")
	s.Device = ""
	s.Tags[snapset.TagMountPoint] = "/var/lib/postgresql"
	s.Tags[snapset.TagFilesystem] = "xfs"
	sets, _ := snapset.Group([]snapset.Snapshot{s})
	if len(sets) != 1 || len(sets[0].Snapshots) != 1 {
		t.Fatalf("got %+v", sets)
	}
	got := sets[0].Snapshots[0]
	if got.Device != "/dev/sdf" || got.MountPoint != "/var/lib/postgresql" || got.Filesystem != "xfs" {
		t.Fatalf("volume fields not read from tags: %+v", got)
	}
	if !reflect.DeepEqual(got.VolumeTags(), map[string]string{
		snapset.TagDevice: "/dev/sdf", snapset.TagMountPoint: "/var/lib/postgresql", snapset.TagFilesystem: "xfs",
	}) {
		t.Fatalf("VolumeTags %v", got.VolumeTags())
	}
}

func TestGroupTakesTheLatestCreationTime(t *testing.T) {
	a := taggedSnap("a", "set", at("2026-03-01T10:00:00Z"), snapset.StatusCompleted, "/dev/sdf")
	b := taggedSnap("b", "set", at("2026-03-01T10:00:01Z"), snapset.StatusCompleted, "/dev/sdg")
	for _, order := range [][]snapset.Snapshot{{a, b}, {b, a}} {
		sets, _ := snapset.Group(order)
		if len(sets) != 1 || !sets[0].CreatedAt.Equal(at("2026-03-01T10:00:01Z")) {
			t.Fatalf("got %+v", sets)
		}
	}
}

func TestSetPredicates(t *testing.T) {
	tests := []struct {
		name                          string
		set                           snapset.Set
		completed, inProgress, failed bool
	}{
		{name: "completed", set: completed("s", at("2026-03-01T00:00:00Z"), 2), completed: true},
		{name: "pending status", set: withStatus(completed("s", at("2026-03-01T00:00:00Z"), 2), snapset.StatusPending), inProgress: true},
		{name: "failed status", set: withStatus(completed("s", at("2026-03-01T00:00:00Z"), 2), snapset.StatusFailed), failed: true},
		{name: "snapshot still pending", set: withState(completed("s", at("2026-03-01T00:00:00Z"), 2), 0, snapset.StatePending), inProgress: true},
		{name: "snapshot in error", set: withState(completed("s", at("2026-03-01T00:00:00Z"), 2), 1, snapset.StateError), failed: true},
		{name: "missing a snapshot", set: withoutSnapshot(completed("s", at("2026-03-01T00:00:00Z"), 2))},
		{name: "no snapshots at all", set: snapset.Set{Meta: snapset.Meta{SetID: "s", Status: snapset.StatusCompleted}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.set.Completed(); got != tc.completed {
				t.Errorf("Completed() = %v", got)
			}
			if got := tc.set.InProgress(); got != tc.inProgress {
				t.Errorf("InProgress() = %v", got)
			}
			if got := tc.set.Failed(); got != tc.failed {
				t.Errorf("Failed() = %v", got)
			}
		})
	}
}

func TestNewSetIDSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var ids []string
	for _, d := range []time.Duration{0, time.Millisecond, time.Second, time.Hour, 400 * 24 * time.Hour} {
		ids = append(ids, snapset.NewSetID("main", t0.Add(d)))
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("set ids not strictly increasing with time: %q", ids)
	}
	if ids[0] != "main-20260301T100000.000Z" {
		t.Fatalf("set id %q", ids[0])
	}
}

func fullMeta() snapset.Meta {
	return snapset.Meta{
		Cluster:        "main",
		SetID:          "main-20260301T100000.000Z",
		Status:         snapset.StatusCompleted,
		SourceInstance: "i-0123456789abcdef0",
		SourceRole:     "replica",
		PGVersion:      "15",
		Timeline:       3,
		RedoLSN:        "0/5000028",
		RedoWALFile:    "000000030000000000000005",
		SnapshotLSN:    "0/5000100",
		Consistency:    "freeze",
		FrozenMS:       42,
		CreatedAt:      at("2026-03-01T10:00:00Z"),
		VolumeCount:    2,
	}
}

func taggedSnap(id, setID string, createdAt time.Time, status snapset.Status, device string) snapset.Snapshot {
	m := snapset.Meta{Cluster: "main", SetID: setID, Status: status, SourceInstance: "i-1", CreatedAt: createdAt}
	tags := m.Tags()
	tags[snapset.TagDevice] = device
	return snapset.Snapshot{
		ID:        id,
		VolumeID:  fmt.Sprintf("vol-%s", id),
		Device:    device,
		State:     snapset.StateCompleted,
		StartTime: createdAt,
		Tags:      tags,
	}
}
