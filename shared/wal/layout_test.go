package wal

import (
	"reflect"
	"strings"
	"testing"
)

func TestNewLayoutValidation(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		opts     LayoutOptions
		wantErr  string
		wantRoot string
	}{
		{name: "pgbackrest", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "/wal-archive/main", Stanza: "main"}, wantRoot: "wal-archive/main/archive/main/"},
		{name: "pgbackrest bucket root", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "/", Stanza: "db1"}, wantRoot: "archive/db1/"},
		{name: "pgbackrest empty repo path", kind: "pgbackrest", opts: LayoutOptions{Stanza: "db1"}, wantRoot: "archive/db1/"},
		{name: "pgbackrest trailing slash", kind: "PgBackRest", opts: LayoutOptions{RepoPath: "repo/", Stanza: "a.b_c-d", ArchiveID: "15-2"}, wantRoot: "repo/archive/a.b_c-d/"},
		{name: "pgbackrest old version archive id", kind: "pgbackrest", opts: LayoutOptions{Stanza: "main", ArchiveID: "9.6-1"}, wantRoot: "archive/main/"},
		{name: "pgbackrest no stanza", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "/repo"}, wantErr: "stanza is required"},
		{name: "pgbackrest stanza slash", kind: "pgbackrest", opts: LayoutOptions{Stanza: "a/b"}, wantErr: `stanza "a/b"`},
		{name: "pgbackrest stanza dot", kind: "pgbackrest", opts: LayoutOptions{Stanza: ".."}, wantErr: `stanza ".."`},
		{name: "pgbackrest bad archive id", kind: "pgbackrest", opts: LayoutOptions{Stanza: "main", ArchiveID: "15"}, wantErr: `archive id "15"`},
		{name: "pgbackrest url repo", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "s3://bucket/repo", Stanza: "main"}, wantErr: "not a URL"},
		{name: "pgbackrest dotdot repo", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "/a/../b", Stanza: "main"}, wantErr: `relative path element ".."`},
		{name: "pgbackrest double slash", kind: "pgbackrest", opts: LayoutOptions{RepoPath: "/a//b", Stanza: "main"}, wantErr: "empty path element"},
		{name: "pgbackrest foreign option", kind: "pgbackrest", opts: LayoutOptions{Stanza: "main", Prefix: "x", Extension: ".gz"}, wantErr: "option(s) extension, prefix do not apply"},
		{name: "walg", kind: "wal-g", opts: LayoutOptions{Prefix: "pg/cluster1"}, wantRoot: "pg/cluster1/wal_005/"},
		{name: "walg alias and slashes", kind: "walg", opts: LayoutOptions{Prefix: "/pg/cluster1/"}, wantRoot: "pg/cluster1/wal_005/"},
		{name: "walg bucket root", kind: "wal-g", opts: LayoutOptions{}, wantRoot: "wal_005/"},
		{name: "walg url", kind: "wal-g", opts: LayoutOptions{Prefix: "s3://bucket/pg"}, wantErr: "not a URL"},
		{name: "walg stanza", kind: "wal-g", opts: LayoutOptions{Stanza: "main"}, wantErr: "option(s) stanza do not apply"},
		{name: "plain", kind: "plain", opts: LayoutOptions{Prefix: "confluence/local-db-wal-", Extension: ".bz2"}, wantRoot: "confluence/local-db-wal-"},
		{name: "plain bucket root", kind: "plain", opts: LayoutOptions{}, wantRoot: ""},
		{name: "plain extension without dot", kind: "plain", opts: LayoutOptions{Extension: "gz"}, wantErr: `must start with '.', as in ".gz"`},
		{name: "plain extension slash", kind: "plain", opts: LayoutOptions{Extension: ".g/z"}, wantErr: "character '/' not allowed"},
		{name: "plain extension dot only", kind: "plain", opts: LayoutOptions{Extension: "."}, wantErr: "must start with '.'"},
		{name: "plain leading slash", kind: "plain", opts: LayoutOptions{Prefix: "/wal/"}, wantErr: "do not start with '/'"},
		{name: "plain control character", kind: "plain", opts: LayoutOptions{Prefix: "wal\n"}, wantErr: "control character"},
		{name: "plain stanza", kind: "plain", opts: LayoutOptions{Stanza: "main", RepoPath: "/r"}, wantErr: "option(s) repo path, stanza do not apply"},
		{name: "unknown kind", kind: "barman", wantErr: `unknown kind, want "pgbackrest", "wal-g" or "plain"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLayout(tt.kind, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewLayout error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			roots := l.Roots()
			if len(roots) != 1 || roots[0].Prefix != tt.wantRoot || roots[0].Delimiter != "/" {
				t.Fatalf("Roots() = %+v, want prefix %q with delimiter /", roots, tt.wantRoot)
			}
		})
	}
}

type parseCase struct {
	name     string
	key      string
	wantOK   bool
	wantKind FileKind
	wantSeg  string // segment name for segment, partial and backup files
}

// runParseCases checks Parse on each case; root is the layout's key prefix, which a File's name
// never includes.
func runParseCases(t *testing.T, l Layout, root string, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := l.Parse(tt.key)
			if ok != tt.wantOK {
				t.Fatalf("Parse(%q) ok = %v, want %v (file %+v)", tt.key, ok, tt.wantOK, f)
			}
			if !ok {
				return
			}
			if f.Kind != tt.wantKind {
				t.Fatalf("Parse(%q) kind = %s, want %s", tt.key, f.Kind, tt.wantKind)
			}
			if tt.wantSeg != "" && f.Segment.String() != tt.wantSeg {
				t.Fatalf("Parse(%q) segment = %s, want %s", tt.key, f.Segment, tt.wantSeg)
			}
			rest := strings.TrimPrefix(tt.key, root)
			if last := rest[strings.LastIndexByte(rest, '/')+1:]; f.Name != last {
				t.Fatalf("Parse(%q) name = %q, want %q", tt.key, f.Name, last)
			}
		})
	}
}

func TestPgBackRestParse(t *testing.T) {
	l, err := NewLayout(LayoutPgBackRest, LayoutOptions{RepoPath: "/wal-archive/main", Stanza: "main"})
	if err != nil {
		t.Fatal(err)
	}
	const root = "wal-archive/main/archive/main/"
	runParseCases(t, l, root, []parseCase{
		{name: "segment gz", key: root + "15-1/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindSegment, wantSeg: "000000010000000000000003"},
		{name: "segment lz4", key: root + "15-1/0000000200000001/0000000200000001000000A3-" + testSHA1 + ".lz4", wantOK: true, wantKind: KindSegment, wantSeg: "0000000200000001000000A3"},
		{name: "segment uncompressed", key: root + "15-1/0000000100000000/000000010000000000000003-" + testSHA1, wantOK: true, wantKind: KindSegment},
		{name: "segment older archive id", key: root + "14-1/0000000100000000/000000010000000000000003-" + testSHA1 + ".zst", wantOK: true, wantKind: KindSegment},
		{name: "partial", key: root + "15-1/0000000100000000/000000010000000000000004.partial-" + testSHA1 + ".gz", wantOK: true, wantKind: KindPartial, wantSeg: "000000010000000000000004"},
		{name: "backup marker", key: root + "15-1/0000000100000000/00000001000000000000000E.00000028.backup", wantOK: true, wantKind: KindBackup, wantSeg: "00000001000000000000000E"},
		{name: "history", key: root + "15-1/00000002.history", wantOK: true, wantKind: KindHistory},
		{name: "archive.info", key: root + "archive.info", wantOK: true, wantKind: KindMetadata},
		{name: "archive.info.copy", key: root + "archive.info.copy", wantOK: true, wantKind: KindMetadata},

		{name: "segment without sha1", key: root + "15-1/0000000100000000/000000010000000000000003.gz", wantOK: true, wantKind: KindUnknown},
		{name: "segment in wrong directory", key: root + "15-1/0000000100000001/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "segment in wrong timeline directory", key: root + "15-1/0000000200000000/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "compressed backup marker", key: root + "15-1/0000000100000000/00000001000000000000000E.00000028.backup.gz", wantOK: true, wantKind: KindUnknown},
		{name: "backup marker with sha1", key: root + "15-1/0000000100000000/00000001000000000000000E.00000028.backup-" + testSHA1, wantOK: true, wantKind: KindUnknown},
		{name: "history in 16-hex directory", key: root + "15-1/0000000100000000/00000002.history", wantOK: true, wantKind: KindUnknown},
		{name: "segment directly in archive id", key: root + "15-1/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "lower-case directory", key: root + "15-1/000000010000000a/000000010000000a00000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "temporary upload", key: root + "15-1/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz.tmp", wantOK: true, wantKind: KindUnknown},
		{name: "bad archive id", key: root + "main/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "too deep", key: root + "15-1/0000000100000000/x/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindUnknown},
		{name: "junk in stanza dir", key: root + "archive.info.bak", wantOK: true, wantKind: KindUnknown},

		{name: "other stanza", key: "wal-archive/main/archive/other/15-1/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz"},
		{name: "backup dir", key: "wal-archive/main/backup/main/backup.info"},
		{name: "stanza prefix lookalike", key: "wal-archive/main/archive/main2/archive.info"},
		{name: "outside repo", key: "elsewhere/000000010000000000000003"},
	})
}

func TestPgBackRestArchiveIDFilter(t *testing.T) {
	l, err := NewLayout(LayoutPgBackRest, LayoutOptions{Stanza: "main", ArchiveID: "15-2"})
	if err != nil {
		t.Fatal(err)
	}
	runParseCases(t, l, "archive/main/", []parseCase{
		{name: "selected", key: "archive/main/15-2/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz", wantOK: true, wantKind: KindSegment},
		{name: "other archive id", key: "archive/main/14-1/0000000100000000/000000010000000000000003-" + testSHA1 + ".gz"},
		{name: "other archive id history", key: "archive/main/14-1/00000002.history"},
		{name: "metadata still protected", key: "archive/main/archive.info", wantOK: true, wantKind: KindMetadata},
	})
	got := l.PrefixesToList([]string{"archive/main/14-1/", "archive/main/15-2/"}, mustSeg(t, "000000010000000000000005"))
	want := []ListRequest{{Prefix: "archive/main/15-2/", Delimiter: "/"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PrefixesToList = %+v, want %+v", got, want)
	}
}

func TestWALGParse(t *testing.T) {
	l, err := NewLayout(LayoutWALG, LayoutOptions{Prefix: "pg/c1"})
	if err != nil {
		t.Fatal(err)
	}
	const root = "pg/c1/wal_005/"
	runParseCases(t, l, root, []parseCase{
		{name: "segment lz4", key: root + "000000010000000000000003.lz4", wantOK: true, wantKind: KindSegment, wantSeg: "000000010000000000000003"},
		{name: "segment lzma", key: root + "000000010000000000000003.lzma", wantOK: true, wantKind: KindSegment},
		{name: "segment zst", key: root + "000000010000000000000003.zst", wantOK: true, wantKind: KindSegment},
		{name: "segment br", key: root + "000000010000000000000003.br", wantOK: true, wantKind: KindSegment},
		{name: "segment uncompressed", key: root + "000000010000000000000003", wantOK: true, wantKind: KindSegment},
		{name: "partial", key: root + "000000010000000000000004.partial.lz4", wantOK: true, wantKind: KindPartial, wantSeg: "000000010000000000000004"},
		{name: "backup", key: root + "000000010000000000000004.00000028.backup.lz4", wantOK: true, wantKind: KindBackup},
		{name: "history", key: root + "00000002.history.lz4", wantOK: true, wantKind: KindHistory},
		{name: "sha1 suffix is not wal-g", key: root + "000000010000000000000003-" + testSHA1 + ".lz4", wantOK: true, wantKind: KindUnknown},
		{name: "junk", key: root + "walg_data_marker.json", wantOK: true, wantKind: KindUnknown},
		{name: "base backups", key: "pg/c1/basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json"},
		{name: "sub-directory", key: root + "sub/000000010000000000000003.lz4"},
		{name: "other prefix", key: "pg/c2/wal_005/000000010000000000000003.lz4"},
	})
}

func TestPlainParse(t *testing.T) {
	l, err := NewLayout(LayoutPlain, LayoutOptions{Prefix: "confluence/local-db-wal-", Extension: ".bz2"})
	if err != nil {
		t.Fatal(err)
	}
	const root = "confluence/local-db-wal-"
	runParseCases(t, l, root, []parseCase{
		{name: "segment bz2", key: root + "000000010000000000000003.bz2", wantOK: true, wantKind: KindSegment, wantSeg: "000000010000000000000003"},
		{name: "segment without extension", key: root + "000000010000000000000003", wantOK: true, wantKind: KindSegment},
		{name: "partial bz2", key: root + "000000010000000000000004.partial.bz2", wantOK: true, wantKind: KindPartial},
		{name: "backup bz2", key: root + "000000010000000000000004.00000028.backup.bz2", wantOK: true, wantKind: KindBackup},
		{name: "history bz2", key: root + "00000002.history.bz2", wantOK: true, wantKind: KindHistory},
		{name: "other compression", key: root + "000000010000000000000003.gz", wantOK: true, wantKind: KindUnknown},
		{name: "double extension", key: root + "000000010000000000000003.bz2.bz2", wantOK: true, wantKind: KindUnknown},
		{name: "lower case", key: root + "00000001000000000000000a.bz2", wantOK: true, wantKind: KindUnknown},
		{name: "junk", key: root + "foo", wantOK: true, wantKind: KindUnknown},
		{name: "other prefix", key: "confluence/attachments/1.bin"},
		{name: "nested", key: root + "x/000000010000000000000003.bz2"},
		{name: "prefix itself", key: root},
	})
	f, _ := l.Parse(root + "000000010000000000000003.bz2")
	if f.Compression != "bz2" || f.Name != "000000010000000000000003.bz2" {
		t.Fatalf("compression/name = %q/%q", f.Compression, f.Name)
	}
}

func TestPgBackRestPrefixesToList(t *testing.T) {
	l, err := NewLayout(LayoutPgBackRest, LayoutOptions{RepoPath: "/r", Stanza: "main"})
	if err != nil {
		t.Fatal(err)
	}
	b := mustSeg(t, "000000030000000100000040")
	tests := []struct {
		name string
		cps  []string
		want []ListRequest
	}{
		{
			name: "archive ids are all descended, in key order",
			cps:  []string{"r/archive/main/15-2/", "r/archive/main/14-1/", "r/archive/main/9.6-3/", "r/archive/main/tmp/", "r/archive/other/15-1/"},
			want: []ListRequest{
				{Prefix: "r/archive/main/14-1/", Delimiter: "/"},
				{Prefix: "r/archive/main/15-2/", Delimiter: "/"},
				{Prefix: "r/archive/main/9.6-3/", Delimiter: "/"},
			},
		},
		{
			name: "16-hex directories up to the boundary's log id, any timeline",
			cps: []string{
				"r/archive/main/15-2/0000000100000000/",
				"r/archive/main/15-2/0000000100000001/",
				"r/archive/main/15-2/0000000100000002/",
				"r/archive/main/15-2/0000000200000001/",
				"r/archive/main/15-2/0000000300000001/",
				"r/archive/main/15-2/0000000300000002/",
				"r/archive/main/15-2/0000000400000000/",
				"r/archive/main/15-2/000000040000000a/",
				"r/archive/main/15-2/junk/",
			},
			want: []ListRequest{
				{Prefix: "r/archive/main/15-2/0000000100000000/"},
				{Prefix: "r/archive/main/15-2/0000000100000001/"},
				{Prefix: "r/archive/main/15-2/0000000200000001/"},
				{Prefix: "r/archive/main/15-2/0000000300000001/"},
				{Prefix: "r/archive/main/15-2/0000000400000000/"},
			},
		},
		{name: "nothing", cps: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := l.PrefixesToList(tt.cps, b)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("PrefixesToList =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestStopAndResume(t *testing.T) {
	pgbr, err := NewLayout(LayoutPgBackRest, LayoutOptions{Stanza: "main"})
	if err != nil {
		t.Fatal(err)
	}
	walg, err := NewLayout(LayoutWALG, LayoutOptions{Prefix: "p"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewLayout(LayoutPlain, LayoutOptions{Prefix: "w/", Extension: ".gz"})
	if err != nil {
		t.Fatal(err)
	}
	b := mustSeg(t, "000000020000000100000010")
	tests := []struct {
		name       string
		layout     Layout
		key        string
		wantStop   bool
		wantResume string // "" when ResumeAfter is false
	}{
		{name: "pgbackrest before", layout: pgbr, key: "archive/main/15-1/0000000200000001/00000002000000010000000F-" + testSHA1 + ".gz"},
		{name: "pgbackrest at boundary", layout: pgbr, key: "archive/main/15-1/0000000200000001/000000020000000100000010-" + testSHA1 + ".gz", wantStop: true},
		{name: "pgbackrest lower timeline at boundary", layout: pgbr, key: "archive/main/15-1/0000000100000001/000000010000000100000010-" + testSHA1 + ".gz", wantStop: true},
		// A backup history or partial file does not prove the boundary archived: the listing
		// goes on to the first complete segment.
		{name: "pgbackrest backup marker past", layout: pgbr, key: "archive/main/15-1/0000000200000001/000000020000000100000011.00000028.backup"},
		{name: "pgbackrest partial at boundary", layout: pgbr, key: "archive/main/15-1/0000000200000001/000000020000000100000010.partial-" + testSHA1 + ".gz"},
		{name: "pgbackrest history", layout: pgbr, key: "archive/main/15-1/00000009.history"},
		{name: "pgbackrest junk", layout: pgbr, key: "archive/main/15-1/0000000200000001/zzz"},
		{name: "walg before", layout: walg, key: "p/wal_005/000000020000000100000001.lz4"},
		{name: "walg past", layout: walg, key: "p/wal_005/000000020000000200000000.lz4", wantStop: true, wantResume: "p/wal_005/00000003"},
		{name: "walg partial at boundary", layout: walg, key: "p/wal_005/000000010000000100000010.partial.lz4"},
		{name: "walg backup at boundary", layout: walg, key: "p/wal_005/000000020000000100000010.00000028.backup.lz4"},
		{name: "walg segment at boundary on a lower timeline", layout: walg, key: "p/wal_005/000000010000000100000010.lz4", wantStop: true, wantResume: "p/wal_005/00000002"},
		{name: "walg last timeline", layout: walg, key: "p/wal_005/FFFFFFFF0000000200000000.lz4", wantStop: true},
		{name: "plain past", layout: plain, key: "w/000000050000000100000010.gz", wantStop: true, wantResume: "w/00000006"},
		{name: "plain other extension", layout: plain, key: "w/000000050000000100000010.bz2"},
		{name: "plain backup past", layout: plain, key: "w/000000050000000100000010.00000028.backup.gz"},
		{name: "plain partial past", layout: plain, key: "w/000000050000000100000011.partial.gz"},
		{name: "outside", layout: plain, key: "x/000000050000000100000010.gz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.layout.StopAfter(tt.key, b); got != tt.wantStop {
				t.Fatalf("StopAfter(%q) = %v, want %v", tt.key, got, tt.wantStop)
			}
			if !tt.wantStop {
				return
			}
			next, ok := tt.layout.ResumeAfter(tt.key)
			if ok != (tt.wantResume != "") || next != tt.wantResume {
				t.Fatalf("ResumeAfter(%q) = %q, %v, want %q", tt.key, next, ok, tt.wantResume)
			}
			if ok && next <= tt.key {
				t.Fatalf("ResumeAfter(%q) = %q does not move forward", tt.key, next)
			}
		})
	}
}

func TestOverlap(t *testing.T) {
	pgbr := func(repo, stanza string) Layout {
		l, err := NewLayout(LayoutPgBackRest, LayoutOptions{RepoPath: repo, Stanza: stanza})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	walg := func(prefix string) Layout {
		l, err := NewLayout(LayoutWALG, LayoutOptions{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	plain := func(prefix, ext string) Layout {
		l, err := NewLayout(LayoutPlain, LayoutOptions{Prefix: prefix, Extension: ext})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name string
		a, b Layout
		want bool
	}{
		{name: "pgbackrest, same repo and stanza", a: pgbr("/r", "main"), b: pgbr("r/", "main"), want: true},
		{name: "pgbackrest, same repo, other stanza", a: pgbr("/r", "main"), b: pgbr("/r", "main-old")},
		{name: "pgbackrest, other repo", a: pgbr("/r", "main"), b: pgbr("/s", "main")},
		{name: "pgbackrest repo inside another's stanza", a: pgbr("/r", "main"), b: pgbr("/r/archive/main/x", "main"), want: true},
		{name: "wal-g, same prefix", a: walg("p"), b: walg("/p/"), want: true},
		{name: "wal-g, nested prefixes do not share keys", a: walg("p"), b: walg("p/q")},
		{name: "plain, same prefix, other extension", a: plain("wal/", ".gz"), b: plain("wal/", ""), want: true},
		{name: "plain, a prefix extending the other within a name", a: plain("wal/", ""), b: plain("wal/db1-", ""), want: true},
		{name: "plain, bucket root and a name prefix", a: plain("", ""), b: plain("db1-", ".gz"), want: true},
		{name: "plain, bucket root and a directory", a: plain("", ""), b: plain("wal/", "")},
		{name: "plain, sibling directories", a: plain("wal/a/", ""), b: plain("wal/b/", "")},
		{name: "plain at the bucket root beside pgbackrest", a: plain("", ".gz"), b: pgbr("", "main")},
		{name: "plain inside a pgbackrest stanza", a: pgbr("/r", "main"), b: plain("r/archive/main/15-1/0000000100000000/", ""), want: true},
		{name: "plain above a pgbackrest stanza", a: plain("r/archive/", ""), b: pgbr("/r", "main")},
		{name: "plain on wal-g's directory", a: plain("p/wal_005/", ".lz4"), b: walg("p"), want: true},
		{name: "wal-g at the bucket root beside plain at the root", a: walg(""), b: plain("", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Overlap(tt.a, tt.b); got != tt.want {
				t.Fatalf("Overlap = %v, want %v", got, tt.want)
			}
			if got := Overlap(tt.b, tt.a); got != tt.want {
				t.Fatalf("Overlap reversed = %v, want %v", got, tt.want)
			}
		})
	}
	if !Overlap(pgbr("/r", "main"), otherLayout{}) {
		t.Fatal("a layout Overlap does not know must be taken to overlap")
	}
}

// otherLayout is a Layout implementation from outside the package.
type otherLayout struct{ Layout }
