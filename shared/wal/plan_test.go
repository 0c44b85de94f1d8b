package wal

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func mustLayout(t testing.TB, kind string) Layout {
	t.Helper()
	var opts LayoutOptions
	switch kind {
	case LayoutPgBackRest:
		opts = LayoutOptions{RepoPath: "/r", Stanza: "main"}
	case LayoutWALG:
		opts = LayoutOptions{Prefix: "p"}
	case LayoutPlain:
		opts = LayoutOptions{Prefix: "confluence/local-db-wal-", Extension: ".bz2"}
	}
	l, err := NewLayout(kind, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func keysOf(objs []ObjectInfo) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Key
	}
	return out
}

func TestNewPlanExplicit(t *testing.T) {
	const sha = testSHA1
	pgbr := []ObjectInfo{
		{Key: "r/archive/main/archive.info", Size: 1},
		{Key: "r/archive/main/archive.info.copy", Size: 1},
		{Key: "r/archive/main/15-1/00000002.history", Size: 1},
		{Key: "r/archive/main/15-1/0000000100000000/0000000100000000000000FE-" + sha + ".gz", Size: 10},
		{Key: "r/archive/main/15-1/0000000100000000/0000000100000000000000FF-" + sha + ".gz", Size: 20},
		{Key: "r/archive/main/15-1/0000000100000001/000000010000000100000000.partial-" + sha + ".gz", Size: 30},
		{Key: "r/archive/main/15-1/0000000100000001/000000010000000100000000.00000028.backup", Size: 1},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000000-" + sha + ".gz", Size: 40},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000001-" + sha + ".gz", Size: 50},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000002-" + sha + ".gz", Size: 60},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000001.00000060.backup", Size: 1},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000001.partial-" + sha + ".gz", Size: 70},
		{Key: "r/archive/main/15-1/0000000200000001/000000020000000100000001.gz", Size: 1},
		{Key: "r/archive/main/14-1/0000000100000000/000000010000000000000003-" + sha + ".gz", Size: 5},
		{Key: "r/backup/main/backup.info", Size: 1},
	}
	walg := []ObjectInfo{
		{Key: "p/wal_005/000000010000000000000005.lz4", Size: 1},
		{Key: "p/wal_005/000000010000000000000006.partial.lz4", Size: 2},
		{Key: "p/wal_005/00000002.history.lz4", Size: 3},
		{Key: "p/wal_005/000000020000000000000006.br", Size: 4},
		{Key: "p/wal_005/000000020000000000000007.zst", Size: 5},
		{Key: "p/wal_005/000000020000000000000007.00000028.backup.lz4", Size: 6},
		{Key: "p/wal_005/000000020000000000000008.lz4", Size: 7},
		{Key: "p/wal_005/000000020000000000000008.lz4.tmp", Size: 8},
		{Key: "p/basebackups_005/base_000000020000000000000007/metadata.json", Size: 9},
	}
	plain := []ObjectInfo{
		{Key: "confluence/local-db-wal-000000010000000000000001.bz2", Size: 1},
		{Key: "confluence/local-db-wal-000000010000000000000002.bz2", Size: 2},
		{Key: "confluence/local-db-wal-000000010000000000000003", Size: 3},
		{Key: "confluence/local-db-wal-000000010000000000000003.bz2", Size: 4},
		{Key: "confluence/local-db-wal-000000010000000000000002.gz", Size: 5},
		{Key: "confluence/local-db-wal-000000010000000000000002.00000028.backup.bz2", Size: 6},
		{Key: "confluence/local-db-wal-000000010000000000000004.bz2", Size: 7},
		{Key: "confluence/local-db-base-2007-04-01.tar", Size: 8},
	}
	tests := []struct {
		name       string
		layout     string
		objects    []ObjectInfo
		boundary   string
		opts       Options
		wantDelete []string
		wantBytes  int64
		want       Plan // counts only
	}{
		{
			name: "pgbackrest across log id and timelines", layout: LayoutPgBackRest, objects: pgbr,
			boundary: "000000020000000100000001",
			wantDelete: []string{
				"r/archive/main/14-1/0000000100000000/000000010000000000000003-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FE-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FF-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000001/000000010000000100000000.partial-" + sha + ".gz",
				"r/archive/main/15-1/0000000200000001/000000020000000100000000-" + sha + ".gz",
			},
			wantBytes: 5 + 10 + 20 + 30 + 40,
			// kept: 2 backups, segment 1 and 2 of timeline 2, partial 1 of timeline 2.
			want: Plan{Kept: 5, Protected: 3, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000020000000100000002"), HasNewest: true},
		},
		{
			name: "pgbackrest with backup history cleaning", layout: LayoutPgBackRest, objects: pgbr,
			boundary: "000000020000000100000001", opts: Options{CleanBackupHistory: true},
			wantDelete: []string{
				"r/archive/main/14-1/0000000100000000/000000010000000000000003-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FE-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FF-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000001/000000010000000100000000.partial-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000001/000000010000000100000000.00000028.backup",
				"r/archive/main/15-1/0000000200000001/000000020000000100000000-" + sha + ".gz",
			},
			wantBytes: 5 + 10 + 20 + 30 + 1 + 40,
			want:      Plan{Kept: 4, Protected: 3, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000020000000100000002"), HasNewest: true},
		},
		{
			name: "pgbackrest boundary given as a backup file name", layout: LayoutPgBackRest, objects: pgbr,
			boundary: "000000020000000100000000.00000028.backup",
			wantDelete: []string{
				"r/archive/main/14-1/0000000100000000/000000010000000000000003-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FE-" + sha + ".gz",
				"r/archive/main/15-1/0000000100000000/0000000100000000000000FF-" + sha + ".gz",
			},
			wantBytes: 5 + 10 + 20,
			want:      Plan{Kept: 7, Protected: 3, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000020000000100000002"), HasNewest: true},
		},
		{
			name: "wal-g", layout: LayoutWALG, objects: walg,
			boundary: "000000020000000000000007",
			wantDelete: []string{
				"p/wal_005/000000010000000000000005.lz4",
				"p/wal_005/000000010000000000000006.partial.lz4",
				"p/wal_005/000000020000000000000006.br",
			},
			wantBytes: 1 + 2 + 4,
			want:      Plan{Kept: 3, Protected: 1, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000020000000000000008"), HasNewest: true},
		},
		{
			name: "plain bz2 as in the archive_command of the seed", layout: LayoutPlain, objects: plain,
			boundary: "000000010000000000000003.partial",
			wantDelete: []string{
				"confluence/local-db-wal-000000010000000000000001.bz2",
				"confluence/local-db-wal-000000010000000000000002.bz2",
			},
			wantBytes: 3,
			// kept: 3, 3.bz2, 4.bz2, the backup; unrecognized: 2.gz.
			want: Plan{Kept: 4, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000010000000000000004"), HasNewest: true},
		},
		{
			name: "nothing before the first segment", layout: LayoutPlain, objects: plain,
			boundary:   "000000010000000000000001",
			wantDelete: []string{},
			want:       Plan{Kept: 6, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000010000000000000004"), HasNewest: true},
		},
		{
			name: "capped run deletes the oldest", layout: LayoutWALG, objects: walg,
			boundary: "000000020000000000000007", opts: Options{MaxDeletes: 2},
			wantDelete: []string{
				"p/wal_005/000000010000000000000005.lz4",
				"p/wal_005/000000010000000000000006.partial.lz4",
			},
			wantBytes: 1 + 2,
			want:      Plan{Kept: 3, Deferred: 1, Protected: 1, Unrecognized: 1, Outside: 1, Newest: mustSeg(t, "000000020000000000000008"), HasNewest: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBoundaryName(tt.boundary)
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewPlan(tt.objects, mustLayout(t, tt.layout), b, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(p.Delete); !reflect.DeepEqual(got, tt.wantDelete) {
				t.Fatalf("Delete =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.wantDelete, "\n"))
			}
			if p.DeleteBytes != tt.wantBytes {
				t.Fatalf("DeleteBytes = %d, want %d", p.DeleteBytes, tt.wantBytes)
			}
			if p.Boundary != b {
				t.Fatalf("Boundary = %s, want %s", p.Boundary, b)
			}
			counts := p
			counts.Delete, counts.DeleteBytes, counts.Boundary = nil, 0, Segment{}
			if !reflect.DeepEqual(counts, tt.want) {
				t.Fatalf("counts = %+v, want %+v", counts, tt.want)
			}
			if total := len(p.Delete) + p.Deferred + p.Kept + p.Protected + p.Unrecognized + p.Outside; total != len(tt.objects) {
				t.Fatalf("counts add up to %d, want %d objects", total, len(tt.objects))
			}
		})
	}
}

func TestNewPlanGenerated(t *testing.T) {
	a := multiTimeline()
	boundaries := []string{
		"000000010000000000000001", // before everything
		"0000000100000000000000F5", // inside timeline 1
		"000000020000000100000000", // the first segment of log id 1, on a timeline 2 name
		"000000010000000100000005", // the promotion to timeline 2, where timeline 1 has its partial
		"000000030000000100000010", // timeline 2 range on a timeline 3 name
		"000000030000000100000020", // the switch to timeline 3
		"000000030000000100000035", // inside timeline 3
		"000000030000000100000040", // the newest segment
	}
	for _, layout := range []string{LayoutPgBackRest, LayoutWALG, LayoutPlain} {
		keys := a.keys(t, layout)
		for _, boundary := range boundaries {
			for _, backups := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/backups=%v", layout, boundary, backups), func(t *testing.T) {
					p, err := NewPlan(objects(keys), mustLayout(t, layout), mustSeg(t, boundary), Options{CleanBackupHistory: backups})
					if err != nil {
						t.Fatal(err)
					}
					want := oracleDeletes(keys, boundary, backups)
					got := map[string]bool{}
					for _, o := range p.Delete {
						if got[o.Key] {
							t.Fatalf("%s planned twice", o.Key)
						}
						got[o.Key] = true
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("planned %d deletions, oracle %d; planned-only %v, oracle-only %v",
							len(got), len(want), diff(got, want), diff(want, got))
					}
					for i := 1; i < len(p.Delete); i++ {
						a, _ := mustLayout(t, layout).Parse(p.Delete[i-1].Key)
						b, _ := mustLayout(t, layout).Parse(p.Delete[i].Key)
						if b.Segment.Less(a.Segment) {
							t.Fatalf("not oldest first: %s before %s", p.Delete[i-1].Key, p.Delete[i].Key)
						}
					}
					if p.Protected != count(keys, kkProtected) || p.Unrecognized != count(keys, kkJunk) || p.Outside != count(keys, kkOutside) {
						t.Fatalf("protected/unrecognized/outside = %d/%d/%d, want %d/%d/%d", p.Protected, p.Unrecognized, p.Outside,
							count(keys, kkProtected), count(keys, kkJunk), count(keys, kkOutside))
					}
					if p.Kept != count(keys, kkWAL)+count(keys, kkBackup)-len(want) {
						t.Fatalf("kept = %d", p.Kept)
					}
					if !p.HasNewest || p.Newest.String() != "000000030000000100000040" {
						t.Fatalf("newest = %s, %v", p.Newest, p.HasNewest)
					}
				})
			}
		}
	}
}

func diff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	return out
}

func TestNewPlanMaxDeletesContinues(t *testing.T) {
	keys := multiTimeline().keys(t, LayoutPgBackRest)
	layout := mustLayout(t, LayoutPgBackRest)
	boundary := mustSeg(t, "000000030000000100000030")
	full, err := NewPlan(objects(keys), layout, boundary, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		max  int
	}{{"one", 1}, {"seven", 7}, {"exact", len(full.Delete)}, {"more than needed", len(full.Delete) + 10}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remaining := objects(keys)
			var deleted []string
			for run := 0; ; run++ {
				if run > len(full.Delete)+1 {
					t.Fatal("capped runs do not converge")
				}
				p, err := NewPlan(remaining, layout, boundary, Options{MaxDeletes: tt.max})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Delete) > tt.max {
					t.Fatalf("run %d deletes %d > cap %d", run, len(p.Delete), tt.max)
				}
				if len(p.Delete) == 0 {
					break
				}
				gone := map[string]bool{}
				for _, o := range p.Delete {
					gone[o.Key] = true
					deleted = append(deleted, o.Key)
				}
				var next []ObjectInfo
				for _, o := range remaining {
					if !gone[o.Key] {
						next = append(next, o)
					}
				}
				remaining = next
			}
			if want := keysOf(full.Delete); !reflect.DeepEqual(deleted, want) {
				t.Fatalf("capped runs deleted\n%v\nwant, in the same oldest-first order,\n%v", deleted, want)
			}
		})
	}
}

func TestNewPlanSafety(t *testing.T) {
	walg := mustLayout(t, LayoutWALG)
	objs := []ObjectInfo{
		{Key: "p/wal_005/000000010000000000000001.lz4"},
		{Key: "p/wal_005/000000010000000000000002.lz4"},
		{Key: "p/wal_005/000000010000000000000003.partial.lz4"},
		{Key: "p/wal_005/00000002.history.lz4"},
	}
	tests := []struct {
		name       string
		objects    []ObjectInfo
		layout     Layout
		boundary   string
		opts       Options
		wantErr    string
		wantIs     error
		wantDelete int
	}{
		{name: "boundary ahead refused", objects: objs, layout: walg, boundary: "000000020000000000000010",
			wantErr: "newest archived segment: 000000010000000000000002, 3 files before it", wantIs: ErrBoundaryAhead},
		{name: "boundary one past the newest refused", objects: objs, layout: walg, boundary: "000000010000000000000003",
			wantIs: ErrBoundaryAhead},
		{name: "boundary at the newest", objects: objs, layout: walg, boundary: "000000010000000000000002", wantDelete: 1},
		{name: "boundary ahead allowed", objects: objs, layout: walg, boundary: "000000020000000000000010",
			opts: Options{AllowBoundaryAhead: true}, wantDelete: 3},
		{name: "only partials is not an archived boundary", objects: objs[2:], layout: walg, boundary: "000000010000000000000009",
			wantErr: "newest archived segment: none", wantIs: ErrBoundaryAhead},
		{name: "nothing to delete is not an error", objects: objs[3:], layout: walg, boundary: "000000010000000000000009"},
		{name: "empty archive", layout: walg, boundary: "000000010000000000000009"},
		{name: "nil layout", objects: objs, boundary: "000000010000000000000001", wantErr: "layout is required"},
		{name: "negative cap", objects: objs, layout: walg, boundary: "000000010000000000000001", opts: Options{MaxDeletes: -1},
			wantErr: "max deletes must be 0 (no cap) or positive, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan(tt.objects, tt.layout, mustSeg(t, tt.boundary), tt.opts)
			if tt.wantErr != "" || tt.wantIs != nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %v is not %v", err, tt.wantIs)
				}
				if len(p.Delete) != 0 {
					t.Fatalf("a refused plan still lists %d deletions", len(p.Delete))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Delete) != tt.wantDelete {
				t.Fatalf("deletes %v, want %d", keysOf(p.Delete), tt.wantDelete)
			}
		})
	}
}

func TestNewPlanDuplicateKeys(t *testing.T) {
	o := ObjectInfo{Key: "p/wal_005/000000010000000000000001.lz4", Size: 7}
	objs := []ObjectInfo{o, {Key: "p/wal_005/000000010000000000000002.lz4"}, o}
	p, err := NewPlan(objs, mustLayout(t, LayoutWALG), mustSeg(t, "000000010000000000000002"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Delete) != 1 || p.DeleteBytes != 7 {
		t.Fatalf("Delete = %+v, bytes %d", p.Delete, p.DeleteBytes)
	}
}

func TestNewestArchived(t *testing.T) {
	parse := func(names ...string) []File {
		var out []File
		for _, n := range names {
			f, _ := ParseFileName(n)
			out = append(out, f)
		}
		return out
	}
	tests := []struct {
		name   string
		files  []File
		want   string
		wantOK bool
	}{
		{name: "empty"},
		{name: "only non segments", files: parse("00000002.history", "000000010000000000000009.partial", "000000010000000000000009.00000028.backup", "junk")},
		{name: "position wins over timeline", files: parse("000000030000000000000004", "000000010000000000000009.gz", "000000020000000000000008"),
			want: "000000010000000000000009", wantOK: true},
		{name: "tie goes to the higher timeline", files: parse("000000020000000100000000", "000000030000000100000000-"+testSHA1+".gz", "0000000100000000000000FF"),
			want: "000000030000000100000000", wantOK: true},
		{name: "partial ahead does not count", files: parse("000000010000000000000001", "000000010000000000000009.partial"),
			want: "000000010000000000000001", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NewestArchived(tt.files)
			if ok != tt.wantOK || (ok && got.String() != tt.want) {
				t.Fatalf("NewestArchived = %s, %v, want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestBatches(t *testing.T) {
	mk := func(n int) Plan {
		p := Plan{}
		for i := 0; i < n; i++ {
			p.Delete = append(p.Delete, ObjectInfo{Key: fmt.Sprint(i)})
		}
		return p
	}
	tests := []struct {
		name  string
		n     int
		size  int
		sizes []int
	}{
		{name: "none", n: 0, size: 1000},
		{name: "one", n: 1, size: 1000, sizes: []int{1}},
		{name: "exactly one batch", n: 1000, size: 1000, sizes: []int{1000}},
		{name: "one more", n: 1001, size: 0, sizes: []int{1000, 1}},
		{name: "oversized batch clamped", n: 2500, size: 5000, sizes: []int{1000, 1000, 500}},
		{name: "small batches", n: 5, size: 2, sizes: []int{2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mk(tt.n)
			var sizes []int
			next := 0
			for _, b := range p.Batches(tt.size) {
				sizes = append(sizes, len(b))
				for _, o := range b {
					if o.Key != fmt.Sprint(next) {
						t.Fatalf("batch order: got %s, want %d", o.Key, next)
					}
					next++
				}
			}
			if !reflect.DeepEqual(sizes, tt.sizes) {
				t.Fatalf("batch sizes = %v, want %v", sizes, tt.sizes)
			}
		})
	}
}

func TestBoundary(t *testing.T) {
	tests := []struct {
		name     string
		redo     string
		margin   int
		keepFrom string
		segSize  int64
		want     string
		wantErr  string
	}{
		{name: "no margin", redo: "000000010000000100000000", want: "000000010000000100000000"},
		{name: "margin crosses a log id", redo: "000000010000000100000000", margin: 1, want: "0000000100000000000000FF"},
		{name: "margin crosses two log ids", redo: "000000020000000200000001", margin: 0x102, want: "0000000200000000000000FF"},
		{name: "margin clamps at zero", redo: "000000010000000000000003", margin: 10, want: "000000010000000000000000"},
		{name: "margin exactly to zero", redo: "000000010000000000000003", margin: 3, want: "000000010000000000000000"},
		{name: "1 GiB segments", redo: "000000010000000100000000", margin: 1, segSize: 1 << 30, want: "000000010000000000000003"},
		{name: "64 MiB segments", redo: "000000010000000100000000", margin: 2, segSize: 64 << 20, want: "00000001000000000000003E"},
		{name: "redo as backup file", redo: "000000010000000000000010.00000028.backup", margin: 1, want: "00000001000000000000000F"},
		{name: "redo as partial", redo: "000000010000000000000010.partial", want: "000000010000000000000010"},
		{name: "keepFrom more conservative wins", redo: "000000030000000200000010", margin: 2, keepFrom: "000000010000000100000000", want: "000000010000000100000000"},
		{name: "keepFrom less conservative ignored", redo: "000000030000000200000010", margin: 2, keepFrom: "000000010000000300000000", want: "00000003000000020000000E"},
		{name: "keepFrom compared without timeline", redo: "000000010000000200000010", keepFrom: "000000090000000200000011", want: "000000010000000200000010"},
		{name: "keepFrom lower timeline earlier position", redo: "000000090000000200000010", keepFrom: "00000001000000020000000F", want: "00000001000000020000000F"},
		{name: "invalid keepFrom", redo: "000000010000000100000000", keepFrom: "00000001000000010000000g", wantErr: "keep-from override: segment name \"00000001000000010000000g\""},
		{name: "keepFrom not a plain segment", redo: "000000010000000100000000", keepFrom: "000000010000000100000000.partial", wantErr: "keep-from override"},
		{name: "keepFrom seg out of range", redo: "000000010000000100000000", keepFrom: "000000010000000000000100", wantErr: "keep-from override: segment 000000010000000000000100: seg field 00000100 out of range"},
		{name: "redo missing", redo: "", wantErr: "redo WAL file name is missing"},
		{name: "redo junk", redo: "0/5A000060", wantErr: "redo WAL file: boundary: file name \"0/5A000060\""},
		{name: "redo history", redo: "00000002.history", wantErr: "does not name a WAL position"},
		{name: "redo seg out of range", redo: "000000010000000000000100", wantErr: "out of range for 16777216-byte segments"},
		{name: "negative margin", redo: "000000010000000100000000", margin: -1, wantErr: "margin must be 0 or more"},
		{name: "bad segment size", redo: "000000010000000100000000", segSize: 1000, wantErr: "must be a power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Boundary(tt.redo, tt.margin, tt.keepFrom, tt.segSize)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Boundary error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Fatalf("Boundary = %s, want %s", got, tt.want)
			}
		})
	}
}

// BenchmarkPlan100k plans a 100,000-key pgBackRest archive on three timelines.
func BenchmarkPlan100k(b *testing.B) {
	layout := mustLayout(b, LayoutPgBackRest)
	objs := make([]ObjectInfo, 0, 100_000)
	for i := 0; len(objs) < 100_000; i++ {
		tli := uint32(1 + i/40_000)
		s, err := SegmentFromSegNo(tli, uint64(i), DefaultSegmentSize)
		if err != nil {
			b.Fatal(err)
		}
		name := s.String()
		objs = append(objs, ObjectInfo{Key: "r/archive/main/15-1/" + name[:16] + "/" + name + "-" + testSHA1 + ".gz", Size: 4 << 20})
	}
	boundary := mustSeg(b, objs[60_000].Key[37:61])
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := NewPlan(objs, layout, boundary, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Delete) != 60_000 {
			b.Fatalf("deletes %d", len(p.Delete))
		}
	}
}
