package snapset_test

import (
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgfleet/pgfleet/shared/snapset"
)

func TestPolicyApply(t *testing.T) {
	tests := []struct {
		name   string
		policy snapset.Policy
		sets   []snapset.Set
		keep   []string
		// why pins the reason of some decisions (kept sets: one of the reasons; deleted: the reason).
		why map[string]string
	}{
		{
			name:   "keepLast only keeps the newest N completed sets",
			policy: snapset.Policy{KeepLast: 3},
			sets: []snapset.Set{
				completed("d1", at("2026-03-01T10:00:00Z"), 2),
				completed("d2", at("2026-03-02T10:00:00Z"), 2),
				completed("d3", at("2026-03-03T10:00:00Z"), 2),
				completed("d4", at("2026-03-04T10:00:00Z"), 2),
				completed("d5", at("2026-03-05T10:00:00Z"), 2),
			},
			keep: []string{"d5", "d4", "d3"},
			why:  map[string]string{"d5": "newest completed", "d3": "last 3", "d2": "expired", "d1": "expired"},
		},
		{
			name:   "daily keeps the newest set of each day",
			policy: snapset.Policy{KeepLast: 1, Daily: 3},
			sets: []snapset.Set{
				completed("day1-am", at("2026-03-01T08:00:00Z"), 1),
				completed("day1-pm", at("2026-03-01T20:00:00Z"), 1),
				completed("day2-am", at("2026-03-02T06:00:00Z"), 1),
				completed("day2-pm", at("2026-03-02T18:00:00Z"), 1),
				completed("day3", at("2026-03-03T12:00:00Z"), 1),
				completed("day4-early", at("2026-03-04T00:00:00Z"), 1),
				completed("day4-late", at("2026-03-04T23:59:59Z"), 1),
			},
			keep: []string{"day4-late", "day3", "day2-pm"},
			why:  map[string]string{"day4-late": "daily 2026-03-04", "day3": "daily 2026-03-03", "day2-pm": "daily 2026-03-02", "day4-early": "expired"},
		},
		{
			name:   "a Sunday belongs to the ISO week before the next Monday",
			policy: snapset.Policy{KeepLast: 1, Weekly: 2},
			sets: []snapset.Set{
				completed("mon-w10", at("2026-03-02T10:00:00Z"), 1),
				completed("sat-w10", at("2026-03-07T10:00:00Z"), 1),
				completed("sun-w10", at("2026-03-08T23:00:00Z"), 1),
				completed("mon-w11", at("2026-03-09T01:00:00Z"), 1),
			},
			keep: []string{"mon-w11", "sun-w10"},
			why:  map[string]string{"mon-w11": "weekly 2026-W11", "sun-w10": "weekly 2026-W10", "sat-w10": "expired"},
		},
		{
			name:   "ISO week 2026-W53 spans the new year, 2027-W01 starts on Monday 4 January",
			policy: snapset.Policy{KeepLast: 1, Weekly: 3},
			sets: []snapset.Set{
				completed("w51", at("2026-12-20T10:00:00Z"), 1),
				completed("w52-sun", at("2026-12-27T10:00:00Z"), 1),
				completed("w53-thu", at("2026-12-31T10:00:00Z"), 1),
				completed("w53-sun-2027", at("2027-01-03T10:00:00Z"), 1),
				completed("w01-mon", at("2027-01-04T10:00:00Z"), 1),
			},
			keep: []string{"w01-mon", "w53-sun-2027", "w52-sun"},
			why:  map[string]string{"w01-mon": "weekly 2027-W01", "w53-sun-2027": "weekly 2026-W53", "w52-sun": "weekly 2026-W52", "w53-thu": "expired", "w51": "expired"},
		},
		{
			name:   "months are UTC calendar months",
			policy: snapset.Policy{KeepLast: 1, Monthly: 3},
			sets: []snapset.Set{
				completed("dec", at("2025-12-31T23:59:59Z"), 1),
				completed("jan-last-second", at("2026-01-31T23:59:59Z"), 1),
				completed("feb-first-second", at("2026-02-01T00:00:00Z"), 1),
				completed("feb-end", at("2026-02-28T12:00:00Z"), 1),
				// 2026-02-28T23:30 in UTC-2 is 2026-03-01T01:30 UTC: March.
				completed("mar-by-utc", at("2026-02-28T23:30:00-02:00"), 1),
			},
			keep: []string{"mar-by-utc", "feb-end", "jan-last-second"},
			why:  map[string]string{"mar-by-utc": "monthly 2026-03", "feb-end": "monthly 2026-02", "jan-last-second": "monthly 2026-01", "feb-first-second": "expired", "dec": "expired"},
		},
		{
			name:   "buckets count only completed sets",
			policy: snapset.Policy{KeepLast: 1, Daily: 2},
			sets: []snapset.Set{
				completed("day1", at("2026-03-01T10:00:00Z"), 1),
				completed("day2", at("2026-03-02T10:00:00Z"), 1),
				completed("day3", at("2026-03-03T10:00:00Z"), 1),
				withStatus(completed("day4-failed", at("2026-03-04T10:00:00Z"), 1), snapset.StatusFailed),
			},
			keep: []string{"day3", "day2"},
			why:  map[string]string{"day4-failed": "failed", "day1": "expired"},
		},
		{
			name:   "the newest completed set survives keepLast 1 and empty buckets",
			policy: snapset.Policy{KeepLast: 1},
			sets: []snapset.Set{
				completed("old", at("2026-03-01T10:00:00Z"), 2),
				completed("newest-completed", at("2026-03-02T10:00:00Z"), 2),
				withStatus(completed("newer-failed", at("2026-03-03T10:00:00Z"), 2), snapset.StatusFailed),
				withStatus(completed("newest-pending", at("2026-03-04T10:00:00Z"), 2), snapset.StatusPending),
			},
			keep: []string{"newest-pending", "newest-completed"},
			why:  map[string]string{"newest-completed": "newest completed", "newest-pending": "in progress", "newer-failed": "failed", "old": "expired"},
		},
		{
			name:   "an invalid keepLast 0 still keeps the newest completed set",
			policy: snapset.Policy{KeepLast: 0},
			sets: []snapset.Set{
				completed("old", at("2026-03-01T10:00:00Z"), 1),
				completed("new", at("2026-03-02T10:00:00Z"), 1),
			},
			keep: []string{"new"},
			why:  map[string]string{"new": "newest completed", "old": "expired"},
		},
		{
			name:   "sets in progress are never deleted, however old",
			policy: snapset.Policy{KeepLast: 1},
			sets: []snapset.Set{
				withStatus(completed("pending-status", at("2019-01-01T00:00:00Z"), 2), snapset.StatusPending),
				withState(completed("pending-snapshot", at("2019-02-01T00:00:00Z"), 2), 1, snapset.StatePending),
				withState(withStatus(completed("failed-still-writing", at("2019-03-01T00:00:00Z"), 2), snapset.StatusFailed), 0, snapset.StatePending),
				completed("current", at("2026-03-01T00:00:00Z"), 2),
				completed("expired", at("2026-02-01T00:00:00Z"), 2),
			},
			keep: []string{"current", "failed-still-writing", "pending-snapshot", "pending-status"},
			why:  map[string]string{"pending-status": "in progress", "pending-snapshot": "in progress", "failed-still-writing": "in progress", "expired": "expired"},
		},
		{
			name:   "failed sets are deleted",
			policy: snapset.Policy{KeepLast: 5, Daily: 5, Weekly: 5, Monthly: 5},
			sets: []snapset.Set{
				completed("ok", at("2026-03-01T00:00:00Z"), 2),
				withStatus(completed("failed", at("2026-03-02T00:00:00Z"), 2), snapset.StatusFailed),
			},
			keep: []string{"ok"},
			why:  map[string]string{"failed": "failed"},
		},
		{
			name:   "status completed with a snapshot in error is not a completed set",
			policy: snapset.Policy{KeepLast: 1},
			sets: []snapset.Set{
				completed("older-good", at("2026-03-01T00:00:00Z"), 2),
				withState(completed("newer-error", at("2026-03-02T00:00:00Z"), 2), 1, snapset.StateError),
			},
			keep: []string{"older-good"},
			why:  map[string]string{"older-good": "newest completed", "newer-error": "failed"},
		},
		{
			name:   "a set missing a snapshot of its volume count is not completed",
			policy: snapset.Policy{KeepLast: 1},
			sets: []snapset.Set{
				completed("older-good", at("2026-03-01T00:00:00Z"), 3),
				withoutSnapshot(completed("newer-short", at("2026-03-02T00:00:00Z"), 3)),
			},
			keep: []string{"older-good"},
			why:  map[string]string{"older-good": "newest completed", "newer-short": "incomplete"},
		},
		{
			name:   "no sets, no decisions",
			policy: snapset.Policy{KeepLast: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := tc.policy.Apply(tc.sets)
			checkDecisionsWhole(t, tc.sets, ds)
			var kept []string
			for _, d := range ds {
				if d.Keep {
					kept = append(kept, d.SetID)
				}
				if want, ok := tc.why[d.SetID]; ok && !slices.Contains(d.Reasons, want) {
					t.Errorf("set %s: reasons %q, want %q among them", d.SetID, d.Reasons, want)
				}
			}
			if !slices.Equal(kept, tc.keep) {
				t.Errorf("kept %q, want %q (decisions %s)", kept, tc.keep, describe(ds))
			}
			retained := snapset.Retained(ds)
			if len(retained) != len(tc.keep) {
				t.Errorf("Retained returned %d sets, want %d", len(retained), len(tc.keep))
			}
		})
	}
}

// TestPolicyApplyProperties checks the retention invariants on random inputs: the newest
// completed set is kept, a set in progress is kept, every snapshot of a set shares its decision,
// failed and incomplete sets go, and every kept completed set has a rule that keeps it.
func TestPolicyApplyProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(20260301))
	base := at("2026-01-01T00:00:00Z")
	for i := 0; i < 1000; i++ {
		sets := randomSets(rng, base)
		p := snapset.Policy{KeepLast: rng.Intn(5), Daily: rng.Intn(5), Weekly: rng.Intn(4), Monthly: rng.Intn(4)}
		ds := p.Apply(sets)
		name := fmt.Sprintf("input %d (policy %+v, %d sets)", i, p, len(sets))

		checkDecisionsWhole(t, sets, ds)

		byID := map[string]snapset.Decision{}
		for _, d := range ds {
			byID[d.SetID] = d
		}
		sorted := append([]snapset.Set(nil), sets...)
		snapset.SortNewestFirst(sorted)
		var completedSets []snapset.Set
		for _, s := range sorted {
			if s.Completed() {
				completedSets = append(completedSets, s)
			}
		}
		if newest, ok := snapset.NewestCompleted(sets); ok {
			if !byID[newest.SetID].Keep {
				t.Fatalf("%s: newest completed set %s deleted: %s", name, newest.SetID, describe(ds))
			}
			if newest.SetID != completedSets[0].SetID {
				t.Fatalf("%s: NewestCompleted says %s, retention's order says %s", name, newest.SetID, completedSets[0].SetID)
			}
		}
		if oldest, ok := snapset.OldestCompleted(sets); ok && oldest.SetID != completedSets[len(completedSets)-1].SetID {
			t.Fatalf("%s: OldestCompleted says %s, retention's order says %s", name, oldest.SetID, completedSets[len(completedSets)-1].SetID)
		}

		justified := map[string]bool{}
		for j, s := range completedSets {
			if j < max(p.KeepLast, 1) {
				justified[s.SetID] = true
			}
		}
		for _, b := range []struct {
			n   int
			key func(time.Time) string
		}{
			{p.Daily, func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
			{p.Weekly, func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprint(y, w) }},
			{p.Monthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
		} {
			var keys []string
			for _, s := range completedSets {
				if k := b.key(s.CreatedAt); !slices.Contains(keys, k) && len(keys) < b.n {
					keys = append(keys, k)
					justified[s.SetID] = true // the first (newest) completed set of the bucket
				}
			}
		}

		for _, s := range sets {
			d := byID[s.SetID]
			switch {
			case s.InProgress():
				if !d.Keep {
					t.Fatalf("%s: set %s in progress deleted: %s", name, s.SetID, describe(ds))
				}
			case s.Completed():
				if d.Keep != justified[s.SetID] {
					t.Fatalf("%s: completed set %s keep=%v, want %v: %s", name, s.SetID, d.Keep, justified[s.SetID], describe(ds))
				}
			default:
				if d.Keep {
					t.Fatalf("%s: set %s neither completed nor in progress kept: %s", name, s.SetID, describe(ds))
				}
				want := "incomplete"
				if s.Failed() {
					want = "failed"
				}
				if !slices.Equal(d.Reasons, []string{want}) {
					t.Fatalf("%s: set %s reasons %q, want [%s]", name, s.SetID, d.Reasons, want)
				}
			}
			if d.Keep && len(d.Reasons) == 0 {
				t.Fatalf("%s: set %s kept without a reason", name, s.SetID)
			}
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		policy  snapset.Policy
		wantErr string
	}{
		{name: "minimal", policy: snapset.Policy{KeepLast: 1}},
		{name: "all buckets", policy: snapset.Policy{KeepLast: 7, Daily: 7, Weekly: 4, Monthly: 12}},
		{name: "keepLast 0", policy: snapset.Policy{}, wantErr: "retention.keepLast"},
		{name: "negative daily", policy: snapset.Policy{KeepLast: 1, Daily: -1}, wantErr: "retention.daily"},
		{name: "huge monthly", policy: snapset.Policy{KeepLast: 1, Monthly: 1001}, wantErr: "retention.monthly"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// checkDecisionsWhole asserts one decision per input set, newest first, each carrying every
// snapshot of its set, so a set is never split between keep and delete.
func checkDecisionsWhole(t *testing.T, sets []snapset.Set, ds []snapset.Decision) {
	t.Helper()
	if len(ds) != len(sets) {
		t.Fatalf("%d decisions for %d sets", len(ds), len(sets))
	}
	in := map[string]snapset.Set{}
	for _, s := range sets {
		in[s.SetID] = s
	}
	seen := map[string]bool{}
	for i, d := range ds {
		if seen[d.SetID] {
			t.Fatalf("set %s decided twice", d.SetID)
		}
		seen[d.SetID] = true
		s, ok := in[d.SetID]
		if !ok {
			t.Fatalf("decision for unknown set %s", d.SetID)
		}
		if d.Set.SetID != d.SetID {
			t.Fatalf("decision %s carries set %s", d.SetID, d.Set.SetID)
		}
		got, want := d.Set.SnapshotIDs(), s.SnapshotIDs()
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("decision %s carries snapshots %q, the set has %q", d.SetID, got, want)
		}
		if i > 0 {
			prev := ds[i-1].Set
			if prev.CreatedAt.Before(d.Set.CreatedAt) || (prev.CreatedAt.Equal(d.Set.CreatedAt) && prev.SetID < d.SetID) {
				t.Fatalf("decisions not newest first: %s before %s", prev.SetID, d.SetID)
			}
		}
	}
}

func describe(ds []snapset.Decision) string {
	s := ""
	for _, d := range ds {
		s += fmt.Sprintf("\n  %s %s keep=%v %q", d.SetID, d.Set.CreatedAt.UTC().Format(time.RFC3339), d.Keep, d.Reasons)
	}
	return s
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// completed builds a completed set of n volumes.
func completed(id string, createdAt time.Time, n int) snapset.Set {
	s := snapset.Set{Meta: snapset.Meta{
		Cluster:     "main",
		SetID:       id,
		Status:      snapset.StatusCompleted,
		CreatedAt:   createdAt,
		VolumeCount: n,
	}}
	for i := 0; i < n; i++ {
		s.Snapshots = append(s.Snapshots, snapset.Snapshot{
			ID:        fmt.Sprintf("snap-%s-%d", id, i),
			VolumeID:  fmt.Sprintf("vol-%d", i),
			Device:    fmt.Sprintf("/dev/sd%c", 'f'+i),
			State:     snapset.StateCompleted,
			StartTime: createdAt,
		})
	}
	return s
}

func withStatus(s snapset.Set, st snapset.Status) snapset.Set {
	s.Status = st
	return s
}

func withState(s snapset.Set, i int, st snapset.SnapshotState) snapset.Set {
	s.Snapshots = append([]snapset.Snapshot(nil), s.Snapshots...)
	s.Snapshots[i].State = st
	return s
}

func withoutSnapshot(s snapset.Set) snapset.Set {
	s.Snapshots = append([]snapset.Snapshot(nil), s.Snapshots[:len(s.Snapshots)-1]...)
	return s
}

// randomSets builds up to 25 sets over about 100 days, with some creation times shared (tag
// times have second precision) and every mix of status, snapshot state and missing snapshot.
func randomSets(rng *rand.Rand, base time.Time) []snapset.Set {
	n := rng.Intn(26)
	sets := make([]snapset.Set, 0, n)
	var times []time.Time
	for i := 0; i < n; i++ {
		var created time.Time
		if len(times) > 0 && rng.Intn(8) == 0 {
			created = times[rng.Intn(len(times))]
		} else {
			created = base.Add(time.Duration(rng.Int63n(int64(100 * 24 * time.Hour)))).Truncate(time.Second)
		}
		times = append(times, created)
		s := completed(fmt.Sprintf("set-%02d", i), created, 1+rng.Intn(3))
		switch r := rng.Intn(10); {
		case r == 0:
			s = withStatus(s, snapset.StatusPending)
		case r == 1:
			s = withStatus(s, snapset.StatusFailed)
		case r == 2:
			s = withState(s, rng.Intn(len(s.Snapshots)), snapset.StatePending)
		case r == 3:
			s = withState(s, rng.Intn(len(s.Snapshots)), snapset.StateError)
		case r == 4 && len(s.Snapshots) > 1:
			s = withoutSnapshot(s)
		}
		sets = append(sets, s)
	}
	rng.Shuffle(len(sets), func(i, j int) { sets[i], sets[j] = sets[j], sets[i] })
	return sets
}
