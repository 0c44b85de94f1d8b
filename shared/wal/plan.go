package wal

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxBatch is the most keys one S3 DeleteObjects call accepts.
const MaxBatch = 1000

// ErrBoundaryAhead is returned by NewPlan when there is something to delete but no archived
// segment at or after the boundary: the boundary is ahead of the archive (a wrong boundary, or an
// archive that is behind), and pruning to it could delete WAL a snapshot set needs.
var ErrBoundaryAhead = errors.New("wal boundary is ahead of the newest archived segment")

// Options tunes NewPlan.
type Options struct {
	// MaxDeletes caps the deletions of one run (0: no cap). The oldest files are planned first,
	// so a capped run deletes the oldest and the next run continues from there.
	MaxDeletes int
	// CleanBackupHistory also deletes backup history files (.backup) before the boundary, like
	// pg_archivecleanup -b of PostgreSQL 17. Off, as in PostgreSQL 15, they are kept.
	CleanBackupHistory bool
	// AllowBoundaryAhead plans deletions even when no archived segment is at or after the
	// boundary (pg_archivecleanup does not check this).
	AllowBoundaryAhead bool
}

// Plan is what a prune run deletes and what it leaves, for one boundary.
type Plan struct {
	// Boundary is the first segment kept (timeline ignored).
	Boundary Segment
	// Delete lists the objects to delete, oldest first.
	Delete []ObjectInfo
	// DeleteBytes is the total size of Delete.
	DeleteBytes int64
	// Kept counts WAL files at or after the boundary (and backup history files when they are
	// not cleaned).
	Kept int
	// Deferred counts files before the boundary left for a later run by MaxDeletes.
	Deferred int
	// Protected counts archive metadata and timeline history files, which are never deleted.
	Protected int
	// Unrecognized counts keys of the archive whose names match no known form; they are kept.
	Unrecognized int
	// Outside counts keys that are not part of the archive's layout; they are ignored.
	Outside int
	// Newest is the newest archived complete segment seen (timeline ignored, the higher timeline
	// on a tie); HasNewest is false when no segment was seen.
	Newest    Segment
	HasNewest bool
}

// Batches splits Delete into groups of at most size keys (MaxBatch when size is not between 1
// and MaxBatch), oldest first: one S3 DeleteObjects call each.
func (p Plan) Batches(size int) [][]ObjectInfo {
	if size <= 0 || size > MaxBatch {
		size = MaxBatch
	}
	var out [][]ObjectInfo
	for i := 0; i < len(p.Delete); i += size {
		end := min(i+size, len(p.Delete))
		out = append(out, p.Delete[i:end:end])
	}
	return out
}

type candidate struct {
	obj  ObjectInfo
	seg  Segment
	kind FileKind
}

// NewPlan decides which objects to delete so that nothing the boundary segment and later needs
// is lost, with the rules of pg_archivecleanup 15 (see the package documentation): segments and
// partial segments whose position, ignoring the timeline, is strictly before the boundary are
// deleted; backup history files only with Options.CleanBackupHistory; timeline history files,
// archive metadata and unrecognized names never.
func NewPlan(objects []ObjectInfo, layout Layout, boundary Segment, opts Options) (Plan, error) {
	if layout == nil {
		return Plan{}, fmt.Errorf("plan wal prune: layout is required")
	}
	if opts.MaxDeletes < 0 {
		return Plan{}, fmt.Errorf("plan wal prune: max deletes must be 0 (no cap) or positive, got %d", opts.MaxDeletes)
	}
	p := Plan{Boundary: boundary}
	var cands []candidate
	boundaryArchived := false
	for _, o := range objects {
		f, ok := layout.Parse(o.Key)
		if !ok {
			p.Outside++
			continue
		}
		switch f.Kind {
		case KindMetadata, KindHistory:
			p.Protected++
			continue
		case KindUnknown:
			p.Unrecognized++
			continue
		case KindSegment:
			if !p.HasNewest || newer(f.Segment, p.Newest) {
				p.Newest, p.HasNewest = f.Segment, true
			}
			if f.Segment.Compare(boundary) >= 0 {
				boundaryArchived = true
			}
		}
		deletable := f.Segment.Less(boundary)
		if f.Kind == KindBackup && !opts.CleanBackupHistory {
			deletable = false
		}
		if deletable {
			cands = append(cands, candidate{obj: o, seg: f.Segment, kind: f.Kind})
		} else {
			p.Kept++
		}
	}
	slices.SortFunc(cands, compareCandidates)
	cands = dedupe(cands)
	if len(cands) > 0 && !boundaryArchived && !opts.AllowBoundaryAhead {
		newest := "none"
		if p.HasNewest {
			newest = p.Newest.String()
		}
		return Plan{}, fmt.Errorf("plan wal prune to %s (newest archived segment: %s, %d files before it): %w",
			boundary, newest, len(cands), ErrBoundaryAhead)
	}
	if opts.MaxDeletes > 0 && len(cands) > opts.MaxDeletes {
		p.Deferred = len(cands) - opts.MaxDeletes
		cands = cands[:opts.MaxDeletes]
	}
	p.Delete = make([]ObjectInfo, len(cands))
	for i, c := range cands {
		p.Delete[i] = c.obj
		p.DeleteBytes += c.obj.Size
	}
	return p, nil
}

// newer reports whether a is after b: by position, then by timeline.
func newer(a, b Segment) bool {
	if c := a.Compare(b); c != 0 {
		return c > 0
	}
	return a.Timeline > b.Timeline
}

// compareCandidates orders deletions oldest first: position, timeline, kind, key.
func compareCandidates(a, b candidate) int {
	if c := a.seg.Compare(b.seg); c != 0 {
		return c
	}
	if c := cmp.Compare(a.seg.Timeline, b.seg.Timeline); c != 0 {
		return c
	}
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	return strings.Compare(a.obj.Key, b.obj.Key)
}

// dedupe drops repeated keys from a sorted candidate list (a key parses the same every time, so
// repeats are adjacent).
func dedupe(c []candidate) []candidate {
	out := c[:0]
	for i := range c {
		if i > 0 && c[i].obj.Key == out[len(out)-1].obj.Key {
			continue
		}
		out = append(out, c[i])
	}
	return out
}

// NewestArchived returns the newest complete segment among files (timeline ignored, the higher
// timeline on a tie), so that a caller can refuse a boundary ahead of it. Partial, backup and
// history files do not count. ok is false when there is no segment.
func NewestArchived(files []File) (newest Segment, ok bool) {
	for _, f := range files {
		if f.Kind != KindSegment {
			continue
		}
		if !ok || newer(f.Segment, newest) {
			newest, ok = f.Segment, true
		}
	}
	return newest, ok
}

// Boundary computes the first segment to keep for a snapshot set: the set's checkpoint-redo WAL
// file name (a segment, .partial or .backup name), moved margin segments further back (clamped at
// the first segment of WAL), and, when keepFrom (an operator override, a segment name) is not
// empty, the earlier of the two, compared without timeline: the override can only keep more.
// segSizeBytes is the cluster's wal_segment_size (0 means DefaultSegmentSize); it sets how many
// segments one log id holds (0x100000000 / segSizeBytes).
func Boundary(redoWALFile string, margin int, keepFrom string, segSizeBytes int64) (Segment, error) {
	if segSizeBytes == 0 {
		segSizeBytes = DefaultSegmentSize
	}
	if err := ValidateSegmentSize(segSizeBytes); err != nil {
		return Segment{}, fmt.Errorf("wal boundary: %w", err)
	}
	if margin < 0 {
		return Segment{}, fmt.Errorf("wal boundary: margin must be 0 or more segments, got %d", margin)
	}
	if redoWALFile == "" {
		return Segment{}, fmt.Errorf("wal boundary: the set's redo WAL file name is missing")
	}
	redo, err := ParseBoundaryName(redoWALFile)
	if err != nil {
		return Segment{}, fmt.Errorf("wal boundary: redo WAL file: %w", err)
	}
	segNo, err := redo.SegNo(segSizeBytes)
	if err != nil {
		return Segment{}, fmt.Errorf("wal boundary: redo WAL file: %w", err)
	}
	if uint64(margin) > segNo {
		segNo = 0
	} else {
		segNo -= uint64(margin)
	}
	b, err := SegmentFromSegNo(redo.Timeline, segNo, segSizeBytes)
	if err != nil {
		return Segment{}, fmt.Errorf("wal boundary: %w", err)
	}
	if keepFrom == "" {
		return b, nil
	}
	keep, err := ParseSegmentName(keepFrom)
	if err != nil {
		return Segment{}, fmt.Errorf("wal boundary: keep-from override: %w", err)
	}
	if _, err := keep.SegNo(segSizeBytes); err != nil {
		return Segment{}, fmt.Errorf("wal boundary: keep-from override: %w", err)
	}
	if keep.Less(b) {
		return keep, nil
	}
	return b, nil
}
