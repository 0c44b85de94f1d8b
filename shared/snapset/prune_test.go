package snapset_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/snapset"
)

const mib16 = 16 << 20

// pruneSet builds a set of two snapshots, tagged as backup tags them, whose checkpoint redo
// point is segment number segNo (16 MiB segments) on timeline tli, 0x28 bytes in. edit, when
// given, changes the tags of snapshot i before the set is grouped.
type pruneSet struct {
	id      string
	age     time.Duration // created t0 minus age
	status  snapset.Status
	states  []snapset.SnapshotState
	tli     int
	segNo   uint64
	edit    func(i int, tags map[string]string)
	volumes int // volume-count tag; 0 means one per state
}

var pruneT0 = time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)

func (p pruneSet) snapshots() []snapset.Snapshot {
	states := p.states
	if len(states) == 0 {
		states = []snapset.SnapshotState{snapset.StateCompleted, snapset.StateCompleted}
	}
	status := p.status
	if status == "" {
		status = snapset.StatusCompleted
	}
	tli := p.tli
	if tli == 0 {
		tli = 1
	}
	lsn := p.segNo*mib16 + 0x28
	m := snapset.Meta{
		Cluster: "main", SetID: p.id, Status: status, SourceInstance: "i-0abc", PGVersion: "15",
		Timeline: tli, RedoLSN: fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn)),
		RedoWALFile: fmt.Sprintf("%08X%08X%08X", tli, p.segNo/256, p.segNo%256),
		CreatedAt:   pruneT0.Add(-p.age), VolumeCount: len(states),
	}
	if p.volumes > 0 {
		m.VolumeCount = p.volumes
	}
	var out []snapset.Snapshot
	for i, st := range states {
		tags := m.Tags()
		tags[snapset.TagDevice] = fmt.Sprintf("/dev/sd%c", 'f'+i)
		if p.edit != nil {
			p.edit(i, tags)
		}
		out = append(out, snapset.Snapshot{ID: fmt.Sprintf("snap-%s-%d", p.id, i), State: st, Tags: tags})
	}
	return out
}

func groupSets(t *testing.T, ps []pruneSet) []snapset.Set {
	t.Helper()
	var snaps []snapset.Snapshot
	for _, p := range ps {
		snaps = append(snaps, p.snapshots()...)
	}
	sets, unreadable := snapset.Group(snaps)
	if len(unreadable) > 0 {
		t.Fatalf("%d unreadable snapshots", len(unreadable))
	}
	return sets
}

// setTag sets key to v on every snapshot ("" removes it).
func setTag(key, v string) func(int, map[string]string) {
	return func(_ int, tags map[string]string) {
		if v == "" {
			delete(tags, key)
			return
		}
		tags[key] = v
	}
}

// onSecond sets key to v on the second snapshot only.
func onSecond(key, v string) func(int, map[string]string) {
	return func(i int, tags map[string]string) {
		if i == 1 {
			tags[key] = v
		}
	}
}

func TestPruneBoundary(t *testing.T) {
	tests := []struct {
		name string
		sets []pruneSet
		size int64 // 0: 16 MiB
		// wantSet and wantFile name the bounding set and its redo WAL file; wantBounding lists
		// the sets the lowest redo was taken over, newest first.
		wantSet      string
		wantFile     string
		wantBounding []string
		wantErr      error
		wantMsg      []string
	}{
		{
			name:    "the lowest redo, not the oldest set",
			sets:    []pruneSet{{id: "new-low", segNo: 0x200}, {id: "old-high", age: time.Hour, segNo: 0x600}},
			wantSet: "new-low", wantFile: "000000010000000200000000", wantBounding: []string{"new-low", "old-high"},
		},
		{
			name:    "the oldest completed set when it is also the lowest",
			sets:    []pruneSet{{id: "new", segNo: 0x600}, {id: "old", age: time.Hour, segNo: 0x200}},
			wantSet: "old", wantFile: "000000010000000200000000", wantBounding: []string{"new", "old"},
		},
		{
			name: "a pending set may still complete: it bounds",
			sets: []pruneSet{
				{id: "pending", status: snapset.StatusPending, states: []snapset.SnapshotState{snapset.StatePending, snapset.StatePending}, segNo: 0x100},
				{id: "done", age: time.Hour, segNo: 0x300},
			},
			wantSet: "pending", wantFile: "000000010000000100000000", wantBounding: []string{"pending", "done"},
		},
		{
			name: "tagged completed, a snapshot still pending in EBS: it bounds",
			sets: []pruneSet{
				{id: "ebs-pending", states: []snapset.SnapshotState{snapset.StateCompleted, snapset.StatePending}, segNo: 0x100},
				{id: "done", age: time.Hour, segNo: 0x300},
			},
			wantSet: "ebs-pending", wantFile: "000000010000000100000000", wantBounding: []string{"ebs-pending", "done"},
		},
		{
			name: "snapshots disagree on status: the least finished, pending, bounds",
			sets: []pruneSet{
				{id: "half", segNo: 0x100, edit: onSecond(snapset.TagStatus, "pending")},
				{id: "done", age: time.Hour, segNo: 0x300},
			},
			wantSet: "half", wantFile: "000000010000000100000000", wantBounding: []string{"half", "done"},
		},
		{
			name: "failed, errored and incomplete sets do not bound",
			sets: []pruneSet{
				{id: "done", segNo: 0x300},
				{id: "failed", age: time.Hour, status: snapset.StatusFailed, segNo: 0x10},
				{id: "error", age: 2 * time.Hour, states: []snapset.SnapshotState{snapset.StateCompleted, snapset.StateError}, segNo: 0x10},
				{id: "pending-error", age: 3 * time.Hour, status: snapset.StatusPending, states: []snapset.SnapshotState{snapset.StatePending, snapset.StateError}, segNo: 0x10},
				{id: "missing-volume", age: 4 * time.Hour, volumes: 3, segNo: 0x10},
			},
			wantSet: "done", wantFile: "000000010000000300000000", wantBounding: []string{"done"},
		},
		{
			name: "sets that do not bound are not cross-checked",
			sets: []pruneSet{
				{id: "done", segNo: 0x300},
				{id: "failed-no-tags", age: time.Hour, status: snapset.StatusFailed, segNo: 0x10, edit: setTag(snapset.TagRedoLSN, "")},
			},
			wantSet: "done", wantFile: "000000010000000300000000", wantBounding: []string{"done"},
		},
		{
			name: "a timeline branched at an earlier position",
			sets: []pruneSet{
				{id: "branch", tli: 2, segNo: 0x205},
				{id: "old", age: time.Hour, tli: 1, segNo: 0x300},
			},
			wantSet: "branch", wantFile: "000000020000000200000005", wantBounding: []string{"branch", "old"},
		},
		{
			name:    "equal redo points: the oldest set is named",
			sets:    []pruneSet{{id: "b", segNo: 0x300}, {id: "a", age: time.Hour, segNo: 0x300}},
			wantSet: "a", wantFile: "000000010000000300000000", wantBounding: []string{"b", "a"},
		},
		{
			name: "the tags were made with another segment size",
			size: 64 << 20,
			// Tagged by a 16 MiB cluster: 3/5000028 is in ...0300000005 there, ...0300000001 with 64 MiB.
			sets:    []pruneSet{{id: "x", segNo: 0x305}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"000000010000000300000005", "000000010000000300000001", "64 MiB", "16 MiB"},
		},
		{name: "no set at all", wantErr: snapset.ErrNoCompletedSet},
		{
			name: "only sets that may complete: no completed set yet",
			sets: []pruneSet{
				{id: "pending", status: snapset.StatusPending, segNo: 0x100},
				{id: "ebs-pending", age: time.Hour, states: []snapset.SnapshotState{snapset.StateCompleted, snapset.StatePending}, segNo: 0x100},
			},
			wantErr: snapset.ErrNoCompletedSet,
		},
		{
			name:    "only failed sets",
			sets:    []pruneSet{{id: "failed", status: snapset.StatusFailed, segNo: 0x100}},
			wantErr: snapset.ErrNoCompletedSet,
		},
		{
			name:    "a bounding set without redo-lsn",
			sets:    []pruneSet{{id: "done", segNo: 0x300}, {id: "old", age: time.Hour, segNo: 0x400, edit: setTag(snapset.TagRedoLSN, "")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"set old", snapset.TagRedoLSN},
		},
		{
			name:    "a pending set without timeline",
			sets:    []pruneSet{{id: "done", segNo: 0x300}, {id: "pending", status: snapset.StatusPending, segNo: 0x400, edit: setTag(snapset.TagTimeline, "")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"set pending", snapset.TagTimeline},
		},
		{
			name:    "no redo-wal-file",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: setTag(snapset.TagRedoWALFile, "")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{snapset.TagRedoWALFile},
		},
		{
			name:    "redo-wal-file in another segment than redo-lsn",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: setTag(snapset.TagRedoWALFile, "000000010000000200000000")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"000000010000000200000000", "3/28", "000000010000000300000000"},
		},
		{
			name:    "redo-wal-file on another timeline",
			sets:    []pruneSet{{id: "done", tli: 2, segNo: 0x300, edit: setTag(snapset.TagRedoWALFile, "000000010000000300000000")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"timeline 2", "000000020000000300000000"},
		},
		{
			name:    "redo-wal-file is a backup history file name",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: setTag(snapset.TagRedoWALFile, "000000010000000300000000.00000028.backup")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"segment name"},
		},
		{
			name:    "malformed redo-lsn",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: setTag(snapset.TagRedoLSN, "3/XYZ")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"3/XYZ"},
		},
		{
			name:    "timeline 0",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: setTag(snapset.TagTimeline, "0")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{snapset.TagTimeline},
		},
		{
			name:    "snapshots disagree on redo-lsn",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: onSecond(snapset.TagRedoLSN, "3/30")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"disagree", snapset.TagRedoLSN},
		},
		{
			name:    "snapshots disagree on redo-wal-file",
			sets:    []pruneSet{{id: "done", segNo: 0x300, edit: onSecond(snapset.TagRedoWALFile, "000000010000000300000001")}},
			wantErr: snapset.ErrBoundaryTag, wantMsg: []string{"disagree", snapset.TagRedoWALFile},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == 0 {
				size = mib16
			}
			sets := groupSets(t, tc.sets)
			got, err := snapset.PruneBoundary(sets, size)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("PruneBoundary = set %q, %v; want an error wrapping %v", got.Set.SetID, err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("PruneBoundary: %v", err)
			}
			if got.Set.SetID != tc.wantSet || got.Redo.WALFile != tc.wantFile || got.Redo.Segment.String() != tc.wantFile {
				t.Fatalf("bound by set %s redo %s (%s), want set %s redo %s", got.Set.SetID, got.Redo.WALFile, got.Redo.Segment, tc.wantSet, tc.wantFile)
			}
			if !slices.Equal(got.Bounding, tc.wantBounding) {
				t.Errorf("bounding sets %v, want %v", got.Bounding, tc.wantBounding)
			}
			// The bound is the lowest redo over the bounding sets.
			for _, s := range sets {
				if !slices.Contains(got.Bounding, s.SetID) {
					continue
				}
				r, err := s.Redo(size)
				if err != nil {
					t.Fatal(err)
				}
				if r.LSN < got.Redo.LSN {
					t.Errorf("set %s has redo %s, below the bound %s", s.SetID, r.LSN, got.Redo.LSN)
				}
			}
		})
	}
}

func TestSetRedo(t *testing.T) {
	sets := groupSets(t, []pruneSet{{id: "x", tli: 3, segNo: 0x1B3}})
	r, err := sets[0].Redo(mib16)
	if err != nil {
		t.Fatal(err)
	}
	if r.Timeline != 3 || r.LSN.String() != "1/B3000028" || r.WALFile != "0000000300000001000000B3" || r.Segment.String() != r.WALFile {
		t.Fatalf("redo %+v", r)
	}
	if _, err := (snapset.Set{Meta: snapset.Meta{SetID: "empty"}}).Redo(mib16); !errors.Is(err, snapset.ErrBoundaryTag) {
		t.Fatalf("a set without snapshots: %v, want ErrBoundaryTag", err)
	}
}

func TestBoundsPrune(t *testing.T) {
	tests := []struct {
		name string
		set  pruneSet
		want bool
	}{
		{name: "completed", set: pruneSet{id: "a"}, want: true},
		{name: "pending", set: pruneSet{id: "a", status: snapset.StatusPending}, want: true},
		{name: "completed tag, pending in EBS", set: pruneSet{id: "a", states: []snapset.SnapshotState{snapset.StatePending, snapset.StateCompleted}}, want: true},
		{name: "failed", set: pruneSet{id: "a", status: snapset.StatusFailed}},
		{name: "a snapshot in error", set: pruneSet{id: "a", states: []snapset.SnapshotState{snapset.StateError, snapset.StateCompleted}}},
		{name: "pending with a snapshot in error", set: pruneSet{id: "a", status: snapset.StatusPending, states: []snapset.SnapshotState{snapset.StateError, snapset.StatePending}}},
		{name: "completed, a volume missing", set: pruneSet{id: "a", volumes: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sets := groupSets(t, []pruneSet{tc.set})
			if got := sets[0].BoundsPrune(); got != tc.want {
				t.Fatalf("BoundsPrune = %v, want %v", got, tc.want)
			}
		})
	}
}
