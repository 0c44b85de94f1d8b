package wal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// wideArchive spans four log ids on three timelines, so that listings have directories and
// timelines on both sides of every boundary.
func wideArchive() testArchive {
	return testArchive{
		ranges: []tlRange{
			{tli: 1, from: 0x0F0, to: 0x1A0, partial: true},
			{tli: 2, from: 0x1A1, to: 0x2F0, partial: true},
			{tli: 3, from: 0x2F1, to: 0x3A0},
		},
		backups: []string{
			"0000000100000001000000A0.00000028.backup",
			"000000020000000200000010.00000028.backup",
			"000000030000000300000001.00000028.backup",
		},
		history:  []uint32{2, 3},
		junk:     []string{"foo", "00000001000000000000000G", "0000000100000000000000f1"},
		segBytes: 16 << 20,
	}
}

func TestCollectMatchesFullListing(t *testing.T) {
	boundaries := []string{
		"000000010000000000000001", // before everything
		"0000000100000000000000F8", // inside the first log id
		"000000010000000100000000", // first segment of a log id
		"0000000200000001000000A1", // the switch to timeline 2
		"000000030000000200000050", // timeline 2 positions on a timeline 3 name
		"0000000300000003000000A0", // the newest segment
		"0000000100000001000000A0", // a backup history file at the boundary, the end of timeline 1
		"000000020000000200000010", // a backup history file at the boundary, mid timeline
	}
	for _, layout := range []string{LayoutPgBackRest, LayoutWALG, LayoutPlain} {
		keys := wideArchive().keys(t, layout)
		objs := objects(keys)
		if layout == LayoutPgBackRest {
			// A stanza upgraded from 14: the older archive id still holds WAL.
			for n := uint64(0x10); n < 0x20; n++ {
				name := segName(t, 1, n)
				objs = append(objs, ObjectInfo{Key: "r/archive/main/14-1/" + name[:16] + "/" + name + "-" + fakeSHA1(name) + ".gz", Size: 1})
			}
			objs = append(objs, ObjectInfo{Key: "r/archive/main/14-1/00000002.history", Size: 1})
		}
		l := mustLayout(t, layout)
		for _, boundary := range boundaries {
			for _, pageSize := range []int{1, 7, 1000} {
				t.Run(fmt.Sprintf("%s/%s/page=%d", layout, boundary, pageSize), func(t *testing.T) {
					b := mustSeg(t, boundary)
					bucket := newMemBucket(objs, pageSize)
					got, err := Collect(context.Background(), bucket, l, b)
					if err != nil {
						t.Fatal(err)
					}
					full, err := NewPlan(objs, l, b, Options{})
					if err != nil {
						t.Fatal(err)
					}
					listed, err := NewPlan(got, l, b, Options{})
					if err != nil {
						t.Fatalf("plan on the collected keys: %v", err)
					}
					if !reflect.DeepEqual(keysOf(listed.Delete), keysOf(full.Delete)) {
						t.Fatalf("collected listing plans %d deletions, full listing %d", len(listed.Delete), len(full.Delete))
					}
					// Collect keeps nothing twice and, per directory and timeline, at most the one
					// complete segment at or past the boundary where the listing stopped, with
					// no WAL file of that listing after it.
					seen := map[string]bool{}
					stop := map[string]string{}
					for _, o := range got {
						if seen[o.Key] {
							t.Fatalf("%s collected twice", o.Key)
						}
						seen[o.Key] = true
						f, ok := l.Parse(o.Key)
						if !ok {
							t.Fatalf("collected %s, which is not part of the archive", o.Key)
						}
						group := fmt.Sprintf("%s %08X", o.Key[:strings.LastIndexByte(o.Key, '/')], f.Segment.Timeline)
						switch f.Kind {
						case KindSegment, KindPartial, KindBackup:
							if s, stopped := stop[group]; stopped {
								t.Fatalf("collected %s after %s, where the listing of %s reached the boundary", o.Key, s, group)
							}
							if f.Kind == KindSegment && f.Segment.Compare(b) >= 0 {
								stop[group] = o.Key
							}
						}
					}
					assertNoListingPastTheBoundary(t, bucket, l, b)
				})
			}
		}
	}
}

func TestCollectListsOnlyUpToTheBoundary(t *testing.T) {
	keys := wideArchive().keys(t, LayoutPgBackRest)
	bucket := newMemBucket(objects(keys), 1000)
	l := mustLayout(t, LayoutPgBackRest)
	got, err := Collect(context.Background(), bucket, l, mustSeg(t, "0000000100000000000000F2"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, k := range keysOf(got) {
		if f, _ := l.Parse(k); f.Kind == KindSegment || f.Kind == KindPartial {
			dir := k[:strings.LastIndexByte(k, '/')]
			if len(dirs) == 0 || dirs[len(dirs)-1] != dir {
				dirs = append(dirs, dir)
			}
		}
	}
	want := []string{"r/archive/main/15-1/0000000100000000"}
	if !reflect.DeepEqual(dirs, want) {
		t.Fatalf("listed WAL from directories %v, want only %v", dirs, want)
	}
	// F0 and F1 before the boundary, F2 where the listing stops; junk sorting before F2.
	var names []string
	for _, k := range keysOf(got) {
		names = append(names, k[strings.LastIndexByte(k, '/')+1:])
	}
	sort.Strings(names)
	wantNames := []string{
		"00000001000000000000000G",
		"0000000100000000000000F0-" + fakeSHA1("0000000100000000000000F0") + ".gz",
		"0000000100000000000000F1-" + fakeSHA1("0000000100000000000000F1") + ".gz",
		"0000000100000000000000F2-" + fakeSHA1("0000000100000000000000F2") + ".gz",
		"00000002.history", "00000003.history", "archive.info", "archive.info.copy",
	}
	sort.Strings(wantNames)
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("listed\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(wantNames, "\n"))
	}
	if bucket.requests != 3 {
		t.Fatalf("%d listings, want 3 (stanza, archive id, one 16-hex directory)", bucket.requests)
	}
}

type failingLister struct {
	err   error
	token string
}

func (f failingLister) ListPage(ctx context.Context, req ListRequest, token string) (Page, error) {
	if f.err != nil {
		return Page{}, f.err
	}
	return Page{NextToken: f.token}, nil
}

func TestCollectErrors(t *testing.T) {
	l := mustLayout(t, LayoutWALG)
	boom := errors.New("access denied")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		lister  Lister
		layout  Layout
		wantErr string
		wantIs  error
	}{
		{name: "lister error wrapped", ctx: context.Background(), lister: failingLister{err: boom}, layout: l,
			wantErr: `list "p/wal_005/": access denied`, wantIs: boom},
		{name: "canceled", ctx: canceled, lister: newMemBucket(nil, 10), layout: l, wantIs: context.Canceled},
		{name: "token loop", ctx: context.Background(), lister: failingLister{token: "same"}, layout: l, wantErr: "continuation token \"same\" repeated"},
		{name: "no lister", ctx: context.Background(), layout: l, wantErr: "lister and layout are required"},
		{name: "no layout", ctx: context.Background(), lister: newMemBucket(nil, 10), wantErr: "lister and layout are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Collect(tt.ctx, tt.lister, tt.layout, Segment{Timeline: 1, Seg: 5})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}
