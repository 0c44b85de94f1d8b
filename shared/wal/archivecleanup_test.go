package wal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pgfleet/pgfleet/shared/testutil"
)

const pgArchiveCleanup = "/usr/lib/postgresql/15/bin/pg_archivecleanup"

// cleanupDirNames is a directory's worth of names around a log id change on three timelines, in
// every form pg_archivecleanup may meet, plus junk.
func cleanupDirNames(t testing.TB) []string {
	t.Helper()
	var names []string
	for tli := uint32(1); tli <= 3; tli++ {
		for n := uint64(0xFC); n <= 0x104; n++ {
			s := segName(t, tli, n)
			names = append(names,
				s, s+".gz", s+".bz2", s+".gz.gz", s+"-"+fakeSHA1(s)+".gz",
				s+".partial", s+".partial.gz", s+".partial.bz2",
				s+".00000028.backup", s+".00000028.backup.gz",
			)
			if lower := strings.ToLower(s); lower != s {
				names = append(names, lower, lower+".gz")
			}
		}
	}
	return append(names,
		"foo", "00000001000000000000000G", "000000010000000000000001.gz.tmp",
		"00000001000000000000001", "0000000100000000000000011", "000000000000000000000001",
		"00000002.history", "00000003.history", "00000003.history.gz", ".gz",
		"000000010000000100000000.gz.partial", "000000010000000100000000.28.backup",
		"000000010000000100000001.partial.partial",
	)
}

// runArchiveCleanup runs pg_archivecleanup -n and returns the names it would remove.
func runArchiveCleanup(t *testing.T, bin, dir, ext, restart string) ([]string, error) {
	t.Helper()
	args := []string{"-n"}
	if ext != "" {
		args = append(args, "-x", ext)
	}
	args = append(args, dir, restart)
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_archivecleanup %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		name, ok := strings.CutPrefix(line, dir+"/")
		if !ok {
			t.Fatalf("unexpected pg_archivecleanup output line %q", line)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// planNames plans a plain archive with an empty prefix over names, the way pgfleet would prune
// the same files in a bucket.
func planNames(t *testing.T, names []string, ext, restart string) []string {
	t.Helper()
	l, err := NewLayout(LayoutPlain, LayoutOptions{Extension: ext})
	if err != nil {
		t.Fatal(err)
	}
	// pg_archivecleanup trims the -x extension from its restart argument too.
	if ext != "" && len(restart) > len(ext) {
		restart = strings.TrimSuffix(restart, ext)
	}
	b, err := ParseBoundaryName(restart)
	if err != nil {
		t.Fatal(err)
	}
	objs := make([]ObjectInfo, len(names))
	for i, n := range names {
		objs[i] = ObjectInfo{Key: n, Size: 1}
	}
	p, err := NewPlan(objs, l, b, Options{AllowBoundaryAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	got := keysOf(p.Delete)
	sort.Strings(got)
	return got
}

func writeDir(t *testing.T, names []string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMatchesPgArchiveCleanup(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	names := cleanupDirNames(t)
	dir := writeDir(t, names)
	restarts := []string{
		"000000010000000000000001",
		"0000000200000000000000FC",
		"0000000200000000000000FE",
		"000000010000000100000000",
		"000000030000000100000000",
		"000000030000000100000002.partial",
		"000000020000000100000003.00000028.backup",
		"000000010000000100000004",
		"000000010000000100000010",
	}
	total, runs := 0, 0
	for _, ext := range []string{"", ".gz", ".bz2"} {
		cases := append([]string(nil), restarts...)
		if ext != "" {
			cases = append(cases, "0000000200000000000000FE"+ext, "000000030000000100000002.partial"+ext)
		}
		for _, restart := range cases {
			t.Run(fmt.Sprintf("x=%q/%s", ext, restart), func(t *testing.T) {
				want, err := runArchiveCleanup(t, bin, dir, ext, restart)
				if err != nil {
					t.Fatal(err)
				}
				got := planNames(t, names, ext, restart)
				if !sameNames(got, want) {
					t.Fatalf("pgfleet plans %d deletions, pg_archivecleanup %d\npgfleet only: %v\npg_archivecleanup only: %v",
						len(got), len(want), minus(got, want), minus(want, got))
				}
				total += len(want)
				runs++
			})
		}
	}
	if total < 100 {
		t.Fatalf("only %d deletions over all cases: the comparison does not exercise pg_archivecleanup", total)
	}
	t.Logf("pgfleet and pg_archivecleanup agree on %d deletions over %d runs on a directory of %d files", total, runs, len(names))
}

func TestMatchesPgArchiveCleanupRandom(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	all := cleanupDirNames(t)
	rng := rand.New(rand.NewPCG(15, 18))
	for i := 0; i < 20; i++ {
		var names []string
		for _, n := range all {
			if rng.IntN(3) > 0 {
				names = append(names, n)
			}
		}
		ext := []string{"", ".gz", ".bz2"}[rng.IntN(3)]
		restart := segName(t, uint32(1+rng.IntN(3)), 0xFB+uint64(rng.IntN(12)))
		switch rng.IntN(3) {
		case 1:
			restart += ".partial"
		case 2:
			restart += ".00000028.backup"
		}
		t.Run(fmt.Sprintf("%02d/x=%q/%s", i, ext, restart), func(t *testing.T) {
			dir := writeDir(t, names)
			want, err := runArchiveCleanup(t, bin, dir, ext, restart)
			if err != nil {
				t.Fatal(err)
			}
			if got := planNames(t, names, ext, restart); !sameNames(got, want) {
				t.Fatalf("pgfleet only: %v\npg_archivecleanup only: %v", minus(got, want), minus(want, got))
			}
		})
	}
}

func TestRejectsRestartNamesLikePgArchiveCleanup(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	dir := t.TempDir()
	tests := []struct {
		name    string
		restart string
	}{
		{name: "history", restart: "00000002.history"},
		{name: "junk", restart: "foo"},
		{name: "lower case", restart: "00000001000000000000000a"},
		{name: "compressed without -x", restart: "000000010000000000000001.gz"},
		{name: "short", restart: "00000001000000000000001"},
		{name: "partial typo", restart: "000000010000000000000001.partal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runArchiveCleanup(t, bin, dir, "", tt.restart)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(err.Error(), "invalid file name argument") {
				t.Fatalf("pg_archivecleanup accepted %q or failed otherwise: %v", tt.restart, err)
			}
			if _, err := ParseBoundaryName(tt.restart); err == nil {
				t.Fatalf("ParseBoundaryName accepted %q, which pg_archivecleanup refuses", tt.restart)
			}
		})
	}
}

// sameNames compares two sorted name lists, nil and empty alike.
func sameNames(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}

// cleanupArchive is one generated archive: the S3 objects of a layout and, for each key that
// pg_archivecleanup would see in a directory, the file name it sees there ("" for keys it never
// sees: metadata, junk outside the file name forms, keys outside the layout).
type cleanupArchive struct {
	objs    []ObjectInfo
	dirName map[string]string
	// hasSegmentAtBoundary: a complete segment at or past the boundary is archived, so pgfleet
	// must plan exactly what pg_archivecleanup deletes (else it refuses: ErrBoundaryAhead).
	hasSegmentAtBoundary bool
	// markerBeforeSegment: a .backup or .partial file at or past the boundary sorts, in its
	// listing, before the first complete segment at or past it (what stopped listings early).
	markerBeforeSegment bool
}

// cleanupLayout renders WAL file names as the keys of one layout.
type cleanupLayout struct {
	name   string
	layout Layout
	// ext is pg_archivecleanup's -x for the names the directory gets.
	ext string
	// key returns the object key of a WAL file name (bare: no compression, no checksum) of a
	// kind, and the name pg_archivecleanup sees for it in a directory.
	key func(rng *rand.Rand, name string, kind FileKind) (key, dirName string)
	// extra returns keys that are not WAL files of the archive: metadata, junk, other
	// prefixes and sub-directories, each with the name pg_archivecleanup sees or "".
	extra func() map[string]string
}

func cleanupLayouts(t *testing.T) []cleanupLayout {
	t.Helper()
	mk := func(kind string, o LayoutOptions) Layout {
		l, err := NewLayout(kind, o)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var out []cleanupLayout
	for _, prefix := range []string{"", "db/main/"} {
		pgbrRoot := prefix + "archive/main/"
		out = append(out, cleanupLayout{
			name: "pgbackrest/" + prefix, layout: mk(LayoutPgBackRest, LayoutOptions{RepoPath: prefix, Stanza: "main"}),
			key: func(_ *rand.Rand, name string, kind FileKind) (string, string) {
				switch kind {
				case KindHistory:
					return pgbrRoot + "15-1/" + name, name
				case KindBackup:
					return pgbrRoot + "15-1/" + name[:16] + "/" + name, name
				}
				return pgbrRoot + "15-1/" + name[:16] + "/" + name + "-" + fakeSHA1(name) + ".gz", name
			},
			extra: func() map[string]string {
				return map[string]string{
					pgbrRoot + "archive.info": "", pgbrRoot + "archive.info.copy": "",
					pgbrRoot + "15-1/0000000100000000/README":                                                        "",
					prefix + "archive/other/15-1/0000000100000000/000000010000000000000001-" + fakeSHA1("a") + ".gz": "",
					prefix + "backup/main/backup.info":                                                               "",
				}
			},
		})
		walgRoot := prefix + "wal_005/"
		out = append(out, cleanupLayout{
			name: "wal-g/" + prefix, layout: mk(LayoutWALG, LayoutOptions{Prefix: prefix}), ext: ".lz4",
			key: func(rng *rand.Rand, name string, _ FileKind) (string, string) {
				// WAL-G compresses everything; an uncompressed upload is read the same way by
				// both sides.
				if rng.IntN(5) == 0 {
					return walgRoot + name, name
				}
				return walgRoot + name + ".lz4", name + ".lz4"
			},
			extra: func() map[string]string {
				return map[string]string{
					walgRoot + "foo": "foo", walgRoot + "000000010000000000000001.lz4.tmp": "000000010000000000000001.lz4.tmp",
					walgRoot + "nested/000000010000000000000001.lz4":                                   "",
					prefix + "basebackups_005/base_000000010000000000000001_backup_stop_sentinel.json": "",
				}
			},
		})
		for _, ext := range []string{"", ".gz"} {
			out = append(out, cleanupLayout{
				name: "plain" + ext + "/" + prefix, layout: mk(LayoutPlain, LayoutOptions{Prefix: prefix, Extension: ext}), ext: ext,
				key: func(_ *rand.Rand, name string, _ FileKind) (string, string) {
					return prefix + name + ext, name + ext
				},
				extra: func() map[string]string {
					m := map[string]string{
						prefix + "000000010000000000000001.bz2": "000000010000000000000001.bz2",
						prefix + "notes.txt":                    "notes.txt",
						prefix + "sub/000000010000000000000001": "",
						"elsewhere/000000010000000000000002":    "",
					}
					if prefix != "" {
						m["000000010000000000000003"+ext] = ""
					}
					return m
				},
			})
		}
	}
	return out
}

// genCleanupNames draws WAL file names around a boundary at segment number b: segments, partial
// and backup history files on three timelines, and history files.
func genCleanupNames(rng *rand.Rand, t testing.TB, b uint64) []string {
	var names []string
	for tli := uint32(1); tli <= 3; tli++ {
		for n := b - 6; n <= b+6; n++ {
			s := segName(t, tli, n)
			if rng.IntN(3) > 0 {
				names = append(names, s)
			}
			// Markers near the boundary, often enough that they precede its segment.
			near := n+2 >= b && n <= b+2
			if rng.IntN(8) == 0 || near && rng.IntN(3) == 0 {
				names = append(names, s+".partial")
			}
			if rng.IntN(8) == 0 || near && rng.IntN(3) == 0 {
				names = append(names, fmt.Sprintf("%s.%08X.backup", s, 0x28*(1+rng.IntN(4))))
			}
		}
		if tli > 1 && rng.IntN(2) == 0 {
			names = append(names, fmt.Sprintf("%08X.history", tli))
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

func (cl cleanupLayout) render(rng *rand.Rand, t testing.TB, names []string, boundary Segment) cleanupArchive {
	a := cleanupArchive{dirName: map[string]string{}}
	add := func(key, dirName string) {
		a.objs = append(a.objs, ObjectInfo{Key: key, Size: int64(len(key))})
		a.dirName[key] = dirName
	}
	for _, name := range names {
		f, err := ParseFileName(name)
		if err != nil {
			t.Fatalf("generated %q: %v", name, err)
		}
		key, dirName := cl.key(rng, name, f.Kind)
		add(key, dirName)
		if f.Kind == KindSegment && f.Segment.Compare(boundary) >= 0 {
			a.hasSegmentAtBoundary = true
		}
	}
	for key, dirName := range cl.extra() {
		add(key, dirName)
	}
	sort.Slice(a.objs, func(i, j int) bool { return a.objs[i].Key < a.objs[j].Key })
	// In each listing (a pgBackRest directory, a flat timeline), does a marker at or past the
	// boundary come before the first segment at or past it?
	seen := map[string]bool{}
	for _, o := range a.objs {
		f, ok := cl.layout.Parse(o.Key)
		if !ok || f.Segment.Compare(boundary) < 0 {
			continue
		}
		group := fmt.Sprintf("%s %08X", o.Key[:strings.LastIndexByte(o.Key, '/')+1], f.Segment.Timeline)
		switch f.Kind {
		case KindSegment:
			seen[group] = true
		case KindBackup, KindPartial:
			if !seen[group] {
				a.markerBeforeSegment = true
			}
		}
	}
	return a
}

// TestCollectAndPlanMatchPgArchiveCleanup drives the whole pruning path, Collect through an
// in-memory S3 listing (prefix, delimiter, StartAfter, pages) and then NewPlan, over random
// archives in every layout, at the bucket root and under a prefix, with .backup, .partial and
// .history files around the boundary, and compares what it deletes with what the real
// pg_archivecleanup deletes from a directory of the same WAL file names. When no complete
// segment at or past the boundary is archived, pgfleet must refuse instead (ErrBoundaryAhead).
func TestCollectAndPlanMatchPgArchiveCleanup(t *testing.T) {
	bin := testutil.RequireBinary(t, pgArchiveCleanup)
	rng := rand.New(rand.NewPCG(20261130, 9))
	const perLayout = 30
	var compared, deletions, markerCases, refusals int
	for _, cl := range cleanupLayouts(t) {
		for i := 0; i < perLayout; i++ {
			b := 0xFC + uint64(rng.IntN(8)) // around the change of log id
			boundarySeg, err := SegmentFromSegNo(uint32(1+rng.IntN(3)), b, DefaultSegmentSize)
			if err != nil {
				t.Fatal(err)
			}
			restart := boundarySeg.String()
			switch rng.IntN(4) {
			case 1:
				restart += ".partial"
			case 2:
				restart += ".00000028.backup"
			}
			names := genCleanupNames(rng, t, b)
			arch := cl.render(rng, t, names, boundarySeg)
			pageSize := []int{1, 2, 5, 1000}[rng.IntN(4)]
			t.Run(fmt.Sprintf("%s/%02d/%s/page=%d", cl.name, i, restart, pageSize), func(t *testing.T) {
				var dirNames []string
				for _, n := range arch.dirName {
					if n != "" {
						dirNames = append(dirNames, n)
					}
				}
				want, err := runArchiveCleanup(t, bin, writeDir(t, dirNames), cl.ext, restart)
				if err != nil {
					t.Fatal(err)
				}
				boundary, err := ParseBoundaryName(restart)
				if err != nil {
					t.Fatal(err)
				}
				bucket := newMemBucket(arch.objs, pageSize)
				objs, err := Collect(context.Background(), bucket, cl.layout, boundary)
				if err != nil {
					t.Fatalf("Collect: %v", err)
				}
				assertNoListingPastTheBoundary(t, bucket, cl.layout, boundary)
				plan, err := NewPlan(objs, cl.layout, boundary, Options{})
				if !arch.hasSegmentAtBoundary && len(want) > 0 {
					if !errors.Is(err, ErrBoundaryAhead) {
						t.Fatalf("no segment at or past the boundary is archived: NewPlan = %d deletions, %v; want ErrBoundaryAhead", len(plan.Delete), err)
					}
					refusals++
					return
				}
				if err != nil {
					t.Fatalf("NewPlan: %v (pg_archivecleanup deletes %d files)", err, len(want))
				}
				var got []string
				for _, o := range plan.Delete {
					n := arch.dirName[o.Key]
					if n == "" {
						t.Fatalf("planned %q, which pg_archivecleanup never sees", o.Key)
					}
					got = append(got, n)
				}
				sort.Strings(got)
				if !sameNames(got, want) {
					t.Fatalf("pgfleet plans %d deletions, pg_archivecleanup %d\npgfleet only: %v\npg_archivecleanup only: %v",
						len(got), len(want), minus(got, want), minus(want, got))
				}
				compared++
				deletions += len(want)
				if arch.markerBeforeSegment {
					markerCases++
				}
			})
		}
	}
	// The comparison must exercise what it is for: many deletions, and listings that meet a
	// .backup or .partial at or past the boundary before the segment that proves it archived.
	if compared < 150 || deletions < 2000 || markerCases < 40 {
		t.Fatalf("weak comparison: %d archives compared (%d deletions, %d with a marker before the boundary's segment), %d refusals",
			compared, deletions, markerCases, refusals)
	}
	t.Logf("Collect + NewPlan and pg_archivecleanup agree on %d archives (%d deletions; %d with a .backup or .partial at or past the boundary before its segment); %d refused as ahead of the archive",
		compared, deletions, markerCases, refusals)
}

// assertNoListingPastTheBoundary checks Collect's listings: no page was requested after a page
// in which the listing met a complete segment at or past the boundary (StopAfter).
func assertNoListingPastTheBoundary(t *testing.T, bucket *memBucket, l Layout, b Segment) {
	t.Helper()
	for _, c := range bucket.calls {
		reached := false
		for _, k := range c.keys {
			reached = reached || l.StopAfter(k, b)
		}
		if !reached || c.next == "" {
			continue
		}
		for _, d := range bucket.calls {
			if d.req == c.req && d.token == c.next {
				t.Fatalf("listing %+v continued past the page that reached the boundary", c.req)
			}
		}
	}
}
