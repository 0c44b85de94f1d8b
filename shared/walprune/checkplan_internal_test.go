package walprune

import (
	"errors"
	"testing"

	"github.com/pgfleet/pgfleet/shared/wal"
)

// checkPlan is the last guard before anything is sent: wal.NewPlan never plans such keys, so
// this is tested on hand-made plans.
func TestCheckPlan(t *testing.T) {
	layout, err := wal.NewLayout(wal.LayoutPgBackRest, wal.LayoutOptions{RepoPath: "/repo", Stanza: "main"})
	if err != nil {
		t.Fatal(err)
	}
	roots := rootPrefixes(layout)
	boundary := wal.Segment{Timeline: 1, Log: 5, Seg: 0x10}
	const sum = "-0123456789abcdef0123456789abcdef01234567.gz"
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{name: "segment before the boundary", key: "repo/archive/main/15-1/0000000100000004/0000000100000004000000FF" + sum, ok: true},
		{name: "partial before the boundary", key: "repo/archive/main/15-1/0000000100000005/00000001000000050000000F.partial" + sum, ok: true},
		{name: "the boundary itself", key: "repo/archive/main/15-1/0000000100000005/000000010000000500000010" + sum},
		{name: "another stanza", key: "repo/archive/other/15-1/0000000100000004/0000000100000004000000FF" + sum},
		{name: "a neighbouring prefix", key: "repo/archive/main-old/15-1/0000000100000004/0000000100000004000000FF" + sum},
		{name: "the bucket root", key: "0000000100000004000000FF"},
		{name: "archive metadata", key: "repo/archive/main/archive.info"},
		{name: "timeline history", key: "repo/archive/main/15-1/00000002.history"},
		{name: "backup history", key: "repo/archive/main/15-1/0000000100000004/000000010000000400000001.00000028.backup"},
		{name: "unrecognized", key: "repo/archive/main/15-1/0000000100000004/notes.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := wal.Plan{Boundary: boundary, Delete: []wal.ObjectInfo{{Key: tc.key}}}
			err := checkPlan(plan, layout, roots, boundary)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrKeyOutside)) {
				t.Fatalf("checkPlan(%q) = %v, want ok %v", tc.key, err, tc.ok)
			}
		})
	}
}

// A plain archive at the bucket root owns the keys without a "/": they are inside, and nothing
// in a "directory" of the bucket is.
func TestCheckPlanAtTheBucketRoot(t *testing.T) {
	layout, err := wal.NewLayout(wal.LayoutPlain, wal.LayoutOptions{Extension: ".gz"})
	if err != nil {
		t.Fatal(err)
	}
	roots := rootPrefixes(layout)
	boundary := wal.Segment{Timeline: 1, Log: 5, Seg: 0x10}
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{name: "segment before the boundary", key: "0000000100000004000000FF.gz", ok: true},
		{name: "partial before the boundary", key: "00000001000000050000000F.partial.gz", ok: true},
		{name: "uncompressed segment before the boundary", key: "0000000100000004000000FF", ok: true},
		{name: "the boundary itself", key: "000000010000000500000010.gz"},
		{name: "in a directory of the bucket", key: "wal/0000000100000004000000FF.gz"},
		{name: "in a directory named like a segment", key: "0000000100000004000000FF.gz/x"},
		{name: "backup history", key: "000000010000000400000001.00000028.backup.gz"},
		{name: "timeline history", key: "00000002.history"},
		{name: "another extension", key: "0000000100000004000000FF.bz2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := wal.Plan{Boundary: boundary, Delete: []wal.ObjectInfo{{Key: tc.key}}}
			err := checkPlan(plan, layout, roots, boundary)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrKeyOutside)) {
				t.Fatalf("checkPlan(%q) = %v, want ok %v", tc.key, err, tc.ok)
			}
		})
	}
}
