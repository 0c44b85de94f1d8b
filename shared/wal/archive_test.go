package wal

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// tlRange is a run of segments of one timeline, [from, to] in segment numbers (16 MiB segments).
type tlRange struct {
	tli      uint32
	from, to uint64
	partial  bool // the timeline ends with a .partial of segment to+1 (a promotion)
}

// testArchive describes a generated archive independently of its layout.
type testArchive struct {
	ranges   []tlRange
	backups  []string // backup history files, <24 hex>.<8 hex>.backup
	history  []uint32 // timelines with a .history file
	junk     []string // names placed among the WAL files that are not WAL file names
	segBytes int64
}

// multiTimeline is a three-timeline archive crossing a log id: timeline 1 up to 0x104 and a
// partial 0x105 at the promotion, timeline 2 from 0x105 to 0x11F and a partial 0x120, timeline 3
// from 0x120 to 0x140.
func multiTimeline() testArchive {
	return testArchive{
		ranges: []tlRange{
			{tli: 1, from: 0xF0, to: 0x104, partial: true},
			{tli: 2, from: 0x105, to: 0x11F, partial: true},
			{tli: 3, from: 0x120, to: 0x140},
		},
		backups: []string{
			"0000000100000000000000F2.00000028.backup",
			"000000020000000100000010.00000060.backup",
			"000000030000000100000030.00000028.backup",
		},
		history:  []uint32{2, 3},
		junk:     []string{"foo", "00000001000000000000000G", "000000010000000000000001.gz.tmp", "00000001000000000000001", "0000000100000000000000f1"},
		segBytes: 16 << 20,
	}
}

func segName(t testing.TB, tli uint32, segNo uint64) string {
	t.Helper()
	s, err := SegmentFromSegNo(tli, segNo, DefaultSegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

func fakeSHA1(name string) string {
	sum := sha1.Sum([]byte(name))
	return hex.EncodeToString(sum[:])
}

// keyKind is what the test expects of a generated key, independently of the code under test.
type keyKind int

const (
	kkWAL       keyKind = iota // segment or partial: deletable when before the boundary
	kkBackup                   // backup history file
	kkProtected                // history or metadata
	kkJunk                     // unrecognized
	kkOutside                  // not part of the layout
)

type genKey struct {
	obj  ObjectInfo
	kind keyKind
	name string // bare 24-hex-based name for kkWAL and kkBackup
}

// keys renders the archive in a layout: "pgbackrest" (repo /r, stanza main, archive id 15-1 with
// compression gz), "wal-g" (prefix p, lz4) or "plain" (prefix confluence/local-db-wal-, .bz2).
func (a testArchive) keys(t testing.TB, layout string) []genKey {
	t.Helper()
	var out []genKey
	size := int64(1000)
	add := func(key string, kind keyKind, name string) {
		size++
		out = append(out, genKey{obj: ObjectInfo{Key: key, Size: size}, kind: kind, name: name})
	}
	walKey := func(name string) string {
		switch layout {
		case LayoutPgBackRest:
			return "r/archive/main/15-1/" + name[:16] + "/" + name + "-" + fakeSHA1(name) + ".gz"
		case LayoutWALG:
			return "p/wal_005/" + name + ".lz4"
		}
		return "confluence/local-db-wal-" + name + ".bz2"
	}
	for _, r := range a.ranges {
		for n := r.from; n <= r.to; n++ {
			name := segName(t, r.tli, n)
			add(walKey(name), kkWAL, name)
		}
		if r.partial {
			name := segName(t, r.tli, r.to+1) + ".partial"
			add(walKey(name), kkWAL, name)
		}
	}
	for _, b := range a.backups {
		switch layout {
		case LayoutPgBackRest:
			add("r/archive/main/15-1/"+b[:16]+"/"+b, kkBackup, b)
		case LayoutWALG:
			add("p/wal_005/"+b+".lz4", kkBackup, b)
		default:
			add("confluence/local-db-wal-"+b+".bz2", kkBackup, b)
		}
	}
	for _, tli := range a.history {
		h := fmt.Sprintf("%08X.history", tli)
		switch layout {
		case LayoutPgBackRest:
			add("r/archive/main/15-1/"+h, kkProtected, "")
		case LayoutWALG:
			add("p/wal_005/"+h+".lz4", kkProtected, "")
		default:
			add("confluence/local-db-wal-"+h+".bz2", kkProtected, "")
		}
	}
	for _, j := range a.junk {
		switch layout {
		case LayoutPgBackRest:
			add("r/archive/main/15-1/0000000100000000/"+j, kkJunk, "")
		case LayoutWALG:
			add("p/wal_005/"+j, kkJunk, "")
		default:
			add("confluence/local-db-wal-"+j, kkJunk, "")
		}
	}
	switch layout {
	case LayoutPgBackRest:
		add("r/archive/main/archive.info", kkProtected, "")
		add("r/archive/main/archive.info.copy", kkProtected, "")
		add("r/backup/main/backup.info", kkOutside, "")
		add("r/archive/other/15-1/0000000100000000/000000010000000000000001-"+fakeSHA1("x")+".gz", kkOutside, "")
	case LayoutWALG:
		add("p/basebackups_005/base_0000000100000000000000F0_backup_stop_sentinel.json", kkOutside, "")
		add("p/wal_005/nested/000000010000000000000001.lz4", kkOutside, "")
	default:
		add("confluence/attachments/000000010000000000000001.bz2", kkOutside, "")
	}
	return out
}

func objects(keys []genKey) []ObjectInfo {
	out := make([]ObjectInfo, len(keys))
	for i, k := range keys {
		out[i] = k.obj
	}
	return out
}

// oracleDeletes is pg_archivecleanup's rule written the way its C code reads: a segment or
// partial name whose characters after the timeline sort before the boundary's, by strcmp.
func oracleDeletes(keys []genKey, boundary string, withBackups bool) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		if k.kind == kkWAL || (withBackups && k.kind == kkBackup) {
			if strings.Compare(k.name[8:], boundary[8:]) < 0 {
				out[k.obj.Key] = true
			}
		}
	}
	return out
}

func count(keys []genKey, kind keyKind) int {
	n := 0
	for _, k := range keys {
		if k.kind == kind {
			n++
		}
	}
	return n
}

// memBucket is an in-memory S3 bucket answering ListObjectsV2 the way S3 does (UTF-8 binary key
// order, CommonPrefixes with a delimiter, StartAfter, pages of pageSize entries), recording every
// call.
type memBucket struct {
	keys     []ObjectInfo // sorted
	pageSize int
	requests int
	calls    []listCall
}

// listCall records one ListPage call.
type listCall struct {
	req         ListRequest
	token, next string
	keys        []string
}

func newMemBucket(objs []ObjectInfo, pageSize int) *memBucket {
	keys := append([]ObjectInfo(nil), objs...)
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	return &memBucket{keys: keys, pageSize: pageSize}
}

func (b *memBucket) ListPage(ctx context.Context, req ListRequest, token string) (Page, error) {
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	if token == "" {
		b.requests++
	}
	type entry struct {
		name  string
		obj   *ObjectInfo
		isDir bool
	}
	var entries []entry
	seen := map[string]bool{}
	for i := range b.keys {
		k := b.keys[i].Key
		if !strings.HasPrefix(k, req.Prefix) || k <= req.StartAfter {
			continue
		}
		if req.Delimiter != "" {
			if j := strings.Index(k[len(req.Prefix):], req.Delimiter); j >= 0 {
				cp := k[:len(req.Prefix)+j+len(req.Delimiter)]
				if !seen[cp] {
					seen[cp] = true
					entries = append(entries, entry{name: cp, isDir: true})
				}
				continue
			}
		}
		entries = append(entries, entry{name: k, obj: &b.keys[i]})
	}
	start := 0
	if token != "" {
		start = sort.Search(len(entries), func(i int) bool { return entries[i].name > token })
	}
	end := min(start+b.pageSize, len(entries))
	var p Page
	for _, e := range entries[start:end] {
		if e.isDir {
			p.CommonPrefixes = append(p.CommonPrefixes, e.name)
		} else {
			p.Objects = append(p.Objects, *e.obj)
		}
	}
	if end < len(entries) {
		p.NextToken = entries[end-1].name
	}
	call := listCall{req: req, token: token, next: p.NextToken}
	for _, o := range p.Objects {
		call.keys = append(call.keys, o.Key)
	}
	b.calls = append(b.calls, call)
	return p, nil
}
