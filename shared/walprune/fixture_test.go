package walprune_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/wal"
)

// segsPerLog is the number of 16 MiB segments in one log id (one pgBackRest directory).
const segsPerLog = 256

// seg returns the segment at segment number n (16 MiB segments) on a timeline.
func seg(tli uint32, n uint64) wal.Segment {
	return wal.Segment{Timeline: tli, Log: uint32(n / segsPerLog), Seg: uint32(n % segsPerLog)}
}

func segNo(s wal.Segment) uint64 { return uint64(s.Log)*segsPerLog + uint64(s.Seg) }

func sha(name string) string {
	sum := sha1.Sum([]byte(name))
	return hex.EncodeToString(sum[:])
}

// pgbrKey is the pgBackRest key of a segment: <root><archive id>/<16 hex>/<24 hex>-<sha1>.gz.
func pgbrKey(root, archiveID string, s wal.Segment) string {
	name := s.String()
	return root + archiveID + "/" + name[:16] + "/" + name + "-" + sha(name) + ".gz"
}

// archiveFixture is a WAL archive in a bucket: every key, and which ones a prune to Boundary
// must delete.
type archiveFixture struct {
	Root     string
	Boundary wal.Segment
	// Keys lists every object, Delete the ones before the boundary that a prune deletes.
	Keys   []string
	Delete []string
	// Segs maps the keys of segments and partial segments to their segment.
	Segs map[string]wal.Segment
	// Counts of the other kinds (the listing sees only part of the kept segments).
	Protected, Unrecognized int
}

// DeleteFor lists, sorted, the keys a prune to boundary b deletes.
func (f archiveFixture) DeleteFor(b wal.Segment) []string {
	var out []string
	for k, s := range f.Segs {
		if s.Less(b) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Remaining is what a complete prune leaves: Keys without Delete, sorted.
func (f archiveFixture) Remaining() []string {
	del := make(map[string]bool, len(f.Delete))
	for _, k := range f.Delete {
		del[k] = true
	}
	var out []string
	for _, k := range f.Keys {
		if !del[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// pgbrFixture builds a pgBackRest archive under repo "pgbackrest", stanza "main": timeline 1
// segments from segment number 0 up to (not including) end, archive id 15-1, a boundary, and
// around them what real archives hold: archive.info and its copy, a timeline history file,
// backup markers, a partial segment, an older archive id, segments of another timeline, junk
// names, and keys just outside the archive's prefix.
func pgbrFixture(end uint64, boundary wal.Segment) archiveFixture {
	root := "pgbackrest/archive/main/"
	f := archiveFixture{Root: root, Boundary: boundary, Segs: map[string]wal.Segment{}}
	add := func(k string, s *wal.Segment) {
		f.Keys = append(f.Keys, k)
		if s != nil {
			f.Segs[k] = *s
		}
	}
	for n := uint64(0); n < end; n++ {
		s := seg(1, n)
		add(pgbrKey(root, "15-1", s), &s)
	}
	// An older archive id (before a major upgrade), all before the boundary.
	for n := uint64(1); n <= 10; n++ {
		s := seg(1, n)
		add(pgbrKey(root, "14-1", s), &s)
	}
	// Timeline 2: a few segments before the boundary (deleted, timeline ignored) and after.
	b := segNo(boundary)
	for _, n := range []uint64{b / 2, b/2 + 1, b + 3, b + 4} {
		s := seg(2, n)
		add(pgbrKey(root, "15-1", s), &s)
	}
	// A partial segment before the boundary is deleted, like pg_archivecleanup does.
	ps := seg(1, b/3)
	p := ps.String()
	add(root+"15-1/"+p[:16]+"/"+p+".partial-"+sha(p)+".gz", &ps)
	// Backup history files are kept (pg_archivecleanup 15 without -b).
	for _, n := range []uint64{b / 4, b + 1} {
		s := seg(1, n).String()
		add(root+"15-1/"+s[:16]+"/"+s+".00000028.backup", nil)
	}
	// Metadata and timeline history files are protected.
	for _, k := range []string{"archive.info", "archive.info.copy", "15-1/00000002.history"} {
		add(root+k, nil)
		f.Protected++
	}
	// Names of no known form inside the archive are kept and reported.
	d1, d2, d3 := seg(1, segsPerLog).String(), seg(1, 2*segsPerLog).String(), seg(1, 3*segsPerLog).String()
	wrongDir := seg(1, 4*segsPerLog+1).String()
	for _, k := range []string{
		"junk.txt",
		"15-1/notes.md",
		"15-1/" + d1[:16] + "/README.txt",
		"15-1/" + d2[:16] + "/" + seg(1, 2*segsPerLog+3).String(),                            // no checksum
		"15-1/" + d3[:16] + "/" + wrongDir + "-" + sha(wrongDir) + ".zst",                    // filed under the wrong directory
		"15-1/" + d1[:16] + "/" + seg(1, segsPerLog+7).String() + "-" + sha("x") + ".gz.tmp", // an upload's temporary name
	} {
		add(root+k, nil)
		f.Unrecognized++
	}
	// Keys outside the archive's prefix: never listed as part of it, never touched.
	first := seg(1, 1)
	for _, k := range []string{
		"pgbackrest/archive/main-old/15-1/" + first.String()[:16] + "/" + first.String() + "-" + sha(first.String()) + ".gz",
		"pgbackrest/archive/other/15-1/" + first.String()[:16] + "/" + first.String() + "-" + sha(first.String()) + ".gz",
		"pgbackrest/backup/main/backup.info",
		first.String(),
	} {
		add(k, nil)
	}
	sort.Strings(f.Keys)
	f.Delete = f.DeleteFor(boundary)
	return f
}

// plainFixture builds a plain archive_command archive: <prefix><24 hex>.bz2 on timelines 1 and
// 2, with a history file, junk, and keys beside the prefix.
func plainFixture(prefix string, end uint64, boundary wal.Segment) archiveFixture {
	f := archiveFixture{Root: prefix, Boundary: boundary, Segs: map[string]wal.Segment{}}
	add := func(k string, s *wal.Segment) {
		f.Keys = append(f.Keys, k)
		if s != nil {
			f.Segs[k] = *s
		}
	}
	switchAt := segNo(boundary) * 2 / 3
	for n := uint64(0); n < end; n++ {
		s := seg(1, n)
		if n >= switchAt {
			s.Timeline = 2
		}
		add(prefix+s.String()+".bz2", &s)
	}
	// Timeline 1 went on a little after the switch before it was abandoned, and left a
	// partial segment.
	for n := switchAt; n < switchAt+5; n++ {
		s := seg(1, n)
		add(prefix+s.String()+".bz2", &s)
	}
	ps := seg(1, switchAt+5)
	add(prefix+ps.String()+".partial.bz2", &ps)
	add(prefix+"00000002.history", nil)
	f.Protected++
	for _, k := range []string{prefix + "archive-status.json", prefix + seg(1, 3).String() + ".gz"} {
		add(k, nil)
		f.Unrecognized++
	}
	// A sub-directory under the prefix and neighbours of the prefix: not part of the archive.
	for _, k := range []string{prefix + "old/" + seg(1, 1).String() + ".bz2", "confluence/other-db-wal-" + seg(1, 1).String() + ".bz2", seg(1, 1).String() + ".bz2"} {
		add(k, nil)
	}
	sort.Strings(f.Keys)
	f.Delete = f.DeleteFor(boundary)
	return f
}

// pgbrArchive is the cluster's archive configuration for pgbrFixture.
func pgbrArchive(bucket string) *config.Archive {
	return &config.Archive{Layout: "pgbackrest", Bucket: bucket, Prefix: "/pgbackrest", Stanza: "main", SegmentSizeMiB: 16}
}

// clusterConfig returns a valid cluster configuration named name with the archive given.
func clusterConfig(name string, archive *config.Archive) config.Cluster {
	c := config.Cluster{
		Name:     name,
		Members:  config.Members{Tags: map[string]string{"pgfleet:cluster": name}},
		Postgres: config.Postgres{Version: "15", PGData: "/data/pg/15/main"},
		Volumes:  config.Volumes{Mounts: []string{"/data/pg"}},
		Archive:  archive,
	}
	c.Retention.KeepLast = 3
	c.ApplyDefaults()
	return c
}

// setSnapshots returns the snapshots of one set (two volumes), tagged as backup tags them: the
// redo WAL file redo and, when redo is a segment name, the timeline and a redo LSN inside that
// segment (16 MiB segments), as pg_control_checkpoint() reports them together.
func setSnapshots(cluster, setID string, created time.Time, status snapset.Status, redo string, states ...snapset.SnapshotState) []snapset.Snapshot {
	if len(states) == 0 {
		states = []snapset.SnapshotState{snapset.StateCompleted, snapset.StateCompleted}
	}
	m := snapset.Meta{
		Cluster: cluster, SetID: setID, Status: status, SourceInstance: "i-0123456789abcdef0",
		PGVersion: "15", Timeline: 1, RedoWALFile: redo, CreatedAt: created, VolumeCount: len(states),
	}
	if s, err := wal.ParseSegmentName(redo); err == nil && s.Seg < segsPerLog {
		m.Timeline = int(s.Timeline)
		m.RedoLSN = redoLSN(s)
	}
	var out []snapset.Snapshot
	for i, st := range states {
		tags := m.Tags()
		tags[snapset.TagDevice] = fmt.Sprintf("/dev/sd%c", 'f'+i)
		out = append(out, snapset.Snapshot{
			ID:    fmt.Sprintf("snap-%s-%d", setID, i),
			State: st,
			Tags:  tags,
		})
	}
	return out
}

// redoLSN is a checkpoint redo LSN inside segment s (16 MiB segments): 0x28 bytes in, past the
// page header, where a checkpoint's redo record typically starts.
func redoLSN(s wal.Segment) string {
	lsn := segNo(s)*(16<<20) + 0x28
	return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn))
}

// memArchive is an in-memory wal.Archive with S3's listing semantics. It records every
// listing and delete call, and fails on demand.
type memArchive struct {
	mu       sync.Mutex
	buckets  map[string]map[string]int64
	pageSize int

	versioning string
	checkErr   error
	listErr    error
	// keyErrs makes a delete of these keys fail with the given code.
	keyErrs map[string]string
	// failBatch makes the delete call with this number (1-based) fail as a whole.
	failBatch int
	// onBatch runs before each batch is deleted.
	onBatch func(n int)
	// onCheck runs at the start of every CheckBucket call, the first step after the lease.
	onCheck func()

	lists       []wal.ListRequest
	deleteCalls [][]string
	proceedArgs int
}

var _ wal.Archive = (*memArchive)(nil)

func newMemArchive(bucket string, keys []string) *memArchive {
	a := &memArchive{buckets: map[string]map[string]int64{bucket: {}}, pageSize: 1000}
	for _, k := range keys {
		a.buckets[bucket][k] = int64(len(k))
	}
	return a
}

func (a *memArchive) CheckBucket(_ context.Context, bucket string) (wal.BucketInfo, error) {
	if a.onCheck != nil {
		a.onCheck()
	}
	if a.checkErr != nil {
		return wal.BucketInfo{}, a.checkErr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.buckets[bucket]; !ok {
		return wal.BucketInfo{}, fmt.Errorf("head bucket %s: %w", bucket, wal.ErrNoSuchBucket)
	}
	return wal.BucketInfo{Versioning: a.versioning}, nil
}

func (a *memArchive) Lister(bucket string) wal.Lister { return memLister{a: a, bucket: bucket} }

type memLister struct {
	a      *memArchive
	bucket string
}

// ListPage lists like ListObjectsV2: keys in order after StartAfter (or the token), common
// prefixes rolled up under a delimiter, at most pageSize entries a page.
func (l memLister) ListPage(_ context.Context, req wal.ListRequest, token string) (wal.Page, error) {
	a := l.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lists = append(a.lists, req)
	if a.listErr != nil {
		return wal.Page{}, a.listErr
	}
	objs, ok := a.buckets[l.bucket]
	if !ok {
		return wal.Page{}, fmt.Errorf("list: %w", wal.ErrNoSuchBucket)
	}
	keys := make([]string, 0, len(objs))
	for k := range objs {
		if strings.HasPrefix(k, req.Prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	after := req.StartAfter
	if token != "" {
		after = token
	}
	var page wal.Page
	n := 0
	last := ""
	for _, k := range keys {
		if k <= after {
			continue
		}
		if n == a.pageSize {
			page.NextToken = last
			break
		}
		if req.Delimiter != "" {
			if i := strings.Index(k[len(req.Prefix):], req.Delimiter); i >= 0 {
				cp := k[:len(req.Prefix)+i+len(req.Delimiter)]
				if len(page.CommonPrefixes) > 0 && page.CommonPrefixes[len(page.CommonPrefixes)-1] == cp {
					continue
				}
				page.CommonPrefixes = append(page.CommonPrefixes, cp)
				// The next key to list comes after everything under the common prefix.
				last = cp + "\xff"
				n++
				continue
			}
		}
		page.Objects = append(page.Objects, wal.ObjectInfo{Key: k, Size: objs[k]})
		last = k
		n++
	}
	return page, nil
}

func (a *memArchive) DeleteBatches(ctx context.Context, bucket string, batches [][]string, proceed func() bool) []wal.BatchResult {
	var out []wal.BatchResult
	for i, keys := range batches {
		if ctx.Err() != nil || !proceed() {
			break
		}
		a.mu.Lock()
		a.proceedArgs++
		n := len(a.deleteCalls) + 1
		a.deleteCalls = append(a.deleteCalls, slices.Clone(keys))
		hook := a.onBatch
		a.mu.Unlock()
		if hook != nil {
			hook(n)
		}
		r := wal.BatchResult{Index: i, Requests: 1}
		a.mu.Lock()
		if n == a.failBatch {
			r.Err = fmt.Errorf("delete objects: %w", wal.ErrAccessDenied)
		} else {
			for _, k := range keys {
				if code, bad := a.keyErrs[k]; bad {
					r.Failed = append(r.Failed, wal.KeyError{Key: k, Code: code, Message: "injected"})
					continue
				}
				delete(a.buckets[bucket], k)
			}
		}
		a.mu.Unlock()
		out = append(out, r)
		if r.Err != nil {
			break
		}
	}
	return out
}

// keys returns the keys left in bucket, sorted.
func (a *memArchive) keys(bucket string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.buckets[bucket]))
	for k := range a.buckets[bucket] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// deleted returns every key sent for deletion, in order.
func (a *memArchive) deleted() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, c := range a.deleteCalls {
		out = append(out, c...)
	}
	return out
}

func (a *memArchive) deleteCallCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.deleteCalls)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
