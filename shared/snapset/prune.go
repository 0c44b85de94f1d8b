package snapset

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/pgfleet/pgfleet/shared/wal"
)

// Errors of PruneBoundary and Set.Redo.
var (
	// ErrNoCompletedSet: no set of the cluster is completed, so nothing proves which WAL a
	// restore would need; the pruner deletes nothing until a backup completes.
	ErrNoCompletedSet = errors.New("no completed snapshot set")
	// ErrBoundaryTag: a set that bounds the prune has redo tags that are missing, malformed,
	// disagree between its snapshots or contradict each other.
	ErrBoundaryTag = errors.New("snapshot set has no usable WAL boundary")
)

// Redo is a set's checkpoint redo point, the first WAL a restore of the set reads, from the set's
// tags after they have been checked against each other.
type Redo struct {
	LSN      wal.LSN
	Timeline uint32
	// WALFile is the pgfleet:redo-wal-file tag: the segment that holds LSN on Timeline.
	WALFile string
	Segment wal.Segment
}

// BoundsPrune reports whether the WAL pruner must keep what the set needs: the set is completed
// or may still become completed (a pending status, which is also what snapshots that disagree on
// status give, or a snapshot the storage layer has not finished), and nothing of it has failed.
// A failed set or a snapshot in error can never be restored, and a completed set with a volume
// missing is never usable either (retention deletes it as incomplete).
func (s Set) BoundsPrune() bool {
	return !s.Failed() && (s.Completed() || s.InProgress())
}

// Redo reads the set's redo point from the tags of every snapshot and cross-checks them:
// pgfleet:redo-lsn, pgfleet:timeline and pgfleet:redo-wal-file must be present and equal on every
// snapshot, and the WAL file must be the one that holds the LSN on that timeline for segments of
// segSizeBytes. A tag written wrong, or a segment size that is not the cluster's, would otherwise
// move the boundary to WAL the set needs. Every error wraps ErrBoundaryTag.
func (s Set) Redo(segSizeBytes int64) (Redo, error) {
	if len(s.Snapshots) == 0 {
		return Redo{}, fmt.Errorf("set %s: %w: it has no snapshots", s.SetID, ErrBoundaryTag)
	}
	tag := func(key string) (string, error) {
		v := ""
		for i, sn := range s.Snapshots {
			got, ok := sn.Tags[key]
			if !ok || got == "" {
				return "", fmt.Errorf("set %s: %w: snapshot %s has no %s tag", s.SetID, ErrBoundaryTag, sn.ID, key)
			}
			if i > 0 && got != v {
				return "", fmt.Errorf("set %s: %w: its snapshots disagree on %s (%q, %q)", s.SetID, ErrBoundaryTag, key, v, got)
			}
			v = got
		}
		return v, nil
	}
	lsnTag, err := tag(TagRedoLSN)
	if err != nil {
		return Redo{}, err
	}
	tliTag, err := tag(TagTimeline)
	if err != nil {
		return Redo{}, err
	}
	file, err := tag(TagRedoWALFile)
	if err != nil {
		return Redo{}, err
	}
	lsn, err := wal.ParseLSN(lsnTag)
	if err != nil {
		return Redo{}, fmt.Errorf("set %s: %w: %s: %w", s.SetID, ErrBoundaryTag, TagRedoLSN, err)
	}
	tli, err := strconv.ParseUint(tliTag, 10, 32)
	if err != nil || tli == 0 {
		return Redo{}, fmt.Errorf("set %s: %w: %s %q is not a timeline (1 to %d)", s.SetID, ErrBoundaryTag, TagTimeline, tliTag, uint32(1<<32-1))
	}
	seg, err := wal.ParseSegmentName(file)
	if err != nil {
		return Redo{}, fmt.Errorf("set %s: %w: %s is not a WAL segment name: %w", s.SetID, ErrBoundaryTag, TagRedoWALFile, err)
	}
	want, err := wal.SegmentOf(uint32(tli), lsn, segSizeBytes)
	if err != nil {
		return Redo{}, fmt.Errorf("set %s: %w: %w", s.SetID, ErrBoundaryTag, err)
	}
	if seg != want {
		return Redo{}, fmt.Errorf("set %s: %w: %s %s does not match %s %s on timeline %d with %d MiB segments, which is in %s%s",
			s.SetID, ErrBoundaryTag, TagRedoWALFile, file, TagRedoLSN, lsn, tli, segSizeBytes>>20, want, otherSizeHint(seg, lsn, uint32(tli), segSizeBytes))
	}
	return Redo{LSN: lsn, Timeline: uint32(tli), WALFile: file, Segment: seg}, nil
}

// otherSizeHint names the segment size the tags do agree with, if any: the usual cause of a
// mismatch is a configured segment size that is not the cluster's wal_segment_size.
func otherSizeHint(seg wal.Segment, lsn wal.LSN, tli uint32, segSizeBytes int64) string {
	for size := int64(1 << 20); size <= 1<<30; size <<= 1 {
		if size == segSizeBytes {
			continue
		}
		if s, err := wal.SegmentOf(tli, lsn, size); err == nil && s == seg {
			return fmt.Sprintf(" (the tags agree with %d MiB segments: is the configured segment size the cluster's wal_segment_size?)", size>>20)
		}
	}
	return ""
}

// PruneBound is what bounds a WAL prune.
type PruneBound struct {
	// Set is the set with the lowest redo point among the sets that bound the prune (the
	// oldest of them on a tie), and Redo that redo point.
	Set  Set
	Redo Redo
	// Bounding lists the ids of the sets the lowest redo point was taken over, newest first.
	Bounding []string
}

// PruneBoundary picks the redo point the WAL pruner must keep: the LOWEST redo position over
// every set that bounds the prune (Set.BoundsPrune: completed, or may still complete), not the
// redo point of the oldest set. A newer set can need older WAL: a snapshot taken from a lagging
// or rebuilt replica, or on a timeline that branched at an earlier position (positions compare
// across timelines, as LSNs do).
//
// It refuses with ErrNoCompletedSet when no set is completed (pending sets alone prove nothing
// restorable yet), and with ErrBoundaryTag when any bounding set's redo tags fail Set.Redo: a
// set whose redo point cannot be trusted may need WAL older than every other set's. Failed sets
// and sets with a volume missing are ignored, tags included.
func PruneBoundary(sets []Set, segSizeBytes int64) (PruneBound, error) {
	sorted := append([]Set(nil), sets...)
	SortNewestFirst(sorted)
	completed := 0
	var bounding []Set
	for _, s := range sorted {
		if !s.BoundsPrune() {
			continue
		}
		bounding = append(bounding, s)
		if s.Completed() {
			completed++
		}
	}
	if completed == 0 {
		return PruneBound{}, fmt.Errorf("%w among %d sets (%d may still complete)", ErrNoCompletedSet, len(sets), len(bounding))
	}
	var b PruneBound
	for i, s := range bounding {
		r, err := s.Redo(segSizeBytes)
		if err != nil {
			return PruneBound{}, err
		}
		b.Bounding = append(b.Bounding, s.SetID)
		// Newest first, so "not above" names the oldest of equal redo points.
		if i == 0 || r.LSN <= b.Redo.LSN {
			b.Set, b.Redo = s, r
		}
	}
	return b, nil
}
