package walprune_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/aws/s3archive"
	"github.com/pgfleet/pgfleet/shared/config"
	"github.com/pgfleet/pgfleet/shared/fleet/fleetfake"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/metrics"
	"github.com/pgfleet/pgfleet/shared/snapset"
	"github.com/pgfleet/pgfleet/shared/wal"
	"github.com/pgfleet/pgfleet/shared/walprune"
)

// motoSite is one moto server with a WAL archive bucket and a Pruner wired to it the way the
// Lambda wires it: s3archive over an S3 client, fleet fakes for the rest.
type motoSite struct {
	srv     *moto.Server
	cfg     aws.Config
	admin   *s3.Client // populates and inspects, not recorded
	configs *fleetfake.ConfigSource
	snaps   *fleetfake.SnapshotStore
	lease   *fleetfake.Lease
}

func newMotoSite(t testing.TB) *motoSite {
	t.Helper()
	srv := moto.StartForTest(t)
	cfg, err := moto.Config(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &motoSite{
		srv:   srv,
		cfg:   cfg,
		admin: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		snaps: fleetfake.NewSnapshotStore(),
		lease: fleetfake.NewLease(),
	}
}

// client returns an S3 client that records its calls, after the API options given (faults).
func (m *motoSite) client(rec *moto.Recorder, opts ...func(*middleware.Stack) error) *s3.Client {
	return s3.NewFromConfig(m.cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		o.APIOptions = append(o.APIOptions, opts...)
		if rec != nil {
			// Last in, so first in the stack: it also sees the calls a fault fails.
			o.APIOptions = append(o.APIOptions, rec.Middleware)
		}
	})
}

// pruner returns a Pruner for cluster "main" over client.
func (m *motoSite) pruner(client *s3.Client) *walprune.Pruner {
	return &walprune.Pruner{
		Configs:   m.configs,
		Snapshots: m.snaps,
		Archive:   s3archive.New(client),
		Lease:     m.lease,
		Metrics:   &metrics.Recorder{},
		Owner:     "moto-test",
	}
}

// setup configures cluster "main" with archive a, gives it a completed set whose redo WAL file
// is redo, creates the bucket and uploads keys.
func (m *motoSite) setup(t testing.TB, a *config.Archive, redo wal.Segment, versioning types.BucketVersioningStatus, keys []string) time.Duration {
	t.Helper()
	m.configs = fleetfake.NewConfigSource(clusterConfig("main", a))
	m.snaps.Put(setSnapshots("main", "main-1", t0, snapset.StatusCompleted, redo.String())...)
	ctx := context.Background()
	if _, err := m.admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(a.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if versioning != "" {
		if _, err := m.admin.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket: aws.String(a.Bucket), VersioningConfiguration: &types.VersioningConfiguration{Status: versioning},
		}); err != nil {
			t.Fatalf("bucket versioning: %v", err)
		}
	}
	start := time.Now()
	if err := putObjects(ctx, m.srv.URL, a.Bucket, keys); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// putObjects uploads one tiny object per key (the body is "x"), a few at a time. It sends
// plain PutObject requests over keep-alive connections: moto answers them the same as signed
// ones, and the SDK's signing and checksums would only add to the cost of 100,000 uploads.
// moto serves one request at a time (its Python process is CPU bound), about 2.2 to 4.4 ms each
// here whatever the number of connections: more than a few only queue up in moto.
func putObjects(ctx context.Context, url, bucket string, keys []string) error {
	const workers = 4
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}, Timeout: time.Minute}
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) || ctx.Err() != nil {
					return
				}
				err := putObject(ctx, hc, url+"/"+bucket+"/"+keys[i])
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("put %s: %w", keys[i], err) })
					next.Store(int64(len(keys)))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func putObject(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader("x"))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// listKeys returns every key of the bucket, sorted.
func (m *motoSite) listKeys(t testing.TB, bucket string) []string {
	t.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(m.admin, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
	}
	slices.Sort(out)
	return out
}

// assertListingsStopAtTheBoundary checks every ListObjectsV2 request a run sent: inside the
// archive's root, no StartAfter (pgBackRest directories hold one timeline), and no listing of a
// 16-hex directory whose log id is past the boundary's.
func assertListingsStopAtTheBoundary(t *testing.T, rec *moto.Recorder, root string, boundary wal.Segment) {
	t.Helper()
	dirs := 0
	for _, in := range rec.Inputs("ListObjectsV2") {
		in := in.(*s3.ListObjectsV2Input)
		prefix := aws.ToString(in.Prefix)
		if !strings.HasPrefix(prefix, root) {
			t.Errorf("listing of %q, outside %q", prefix, root)
		}
		if in.StartAfter != nil {
			t.Errorf("listing of %q starts after %q", prefix, aws.ToString(in.StartAfter))
		}
		parts := strings.Split(strings.TrimPrefix(prefix, root), "/")
		if len(parts) == 3 && len(parts[1]) == 16 {
			dirs++
			if parts[1][8:] > boundary.String()[8:16] {
				t.Errorf("listing of directory %q, past the boundary %s", prefix, boundary)
			}
		}
	}
	if dirs == 0 {
		t.Errorf("no directory listed")
	}
}

// pgbr100k is the big archive: 100,000 timeline 1 segments in 391 directories, the boundary
// 98,432 segments in (in the middle of directory 0x180), and the extras of pgbrFixture.
var (
	pgbr100kEnd      = uint64(100_000)
	pgbr100kBoundary = seg(1, 0x180*segsPerLog+0x80)
)

func TestMotoPrune100kPgBackRest(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000-object moto test: skipped with -short")
	}
	t.Parallel()
	m := newMotoSite(t)
	fix := pgbrFixture(pgbr100kEnd, pgbr100kBoundary)
	populate := m.setup(t, pgbrArchive("wal-100k"), pgbr100kBoundary, "", fix.Keys)
	t.Logf("populated %d objects in %s (%.2f ms each)", len(fix.Keys), populate.Round(time.Millisecond), float64(populate.Milliseconds())/float64(len(fix.Keys)))
	if len(fix.Keys) < 100_000 {
		t.Fatalf("only %d objects", len(fix.Keys))
	}

	rec := &moto.Recorder{}
	start := time.Now()
	res, err := m.pruner(m.client(rec)).Run(context.Background(), walprune.Request{Cluster: "main"})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	n := len(fix.Delete)
	t.Logf("pruned %d of %d objects in %s: %d ListObjectsV2 + %d DeleteObjects requests", res.Deleted, len(fix.Keys), elapsed.Round(time.Millisecond), res.ListRequests, res.DeleteRequests)

	if !res.Complete || res.Status != walprune.StatusCompleted || res.Deleted != n || res.DeletedBytes != int64(n) ||
		res.Protected != fix.Protected || res.Unrecognized != fix.Unrecognized || res.Boundary != pgbr100kBoundary.String() {
		t.Fatalf("result %s", summary(res))
	}
	if want := (n + 999) / 1000; rec.Count("DeleteObjects") != want || res.DeleteRequests != want {
		t.Fatalf("%d DeleteObjects requests (result says %d) for %d deletions, want %d", rec.Count("DeleteObjects"), res.DeleteRequests, n, want)
	}
	if got := rec.Count("ListObjectsV2"); got != res.ListRequests || res.Requests != got+res.DeleteRequests {
		t.Errorf("%d ListObjectsV2 requests sent, result says %d (total %d)", got, res.ListRequests, res.Requests)
	}
	for _, in := range rec.Inputs("DeleteObjects") {
		in := in.(*s3.DeleteObjectsInput)
		if !aws.ToBool(in.Delete.Quiet) || len(in.Delete.Objects) > 1000 {
			t.Fatalf("DeleteObjects with quiet %v and %d keys", aws.ToBool(in.Delete.Quiet), len(in.Delete.Objects))
		}
		for _, o := range in.Delete.Objects {
			if !strings.HasPrefix(aws.ToString(o.Key), fix.Root) {
				t.Fatalf("DeleteObjects sent %q", aws.ToString(o.Key))
			}
		}
	}
	assertListingsStopAtTheBoundary(t, rec, fix.Root, pgbr100kBoundary)
	if left, want := m.listKeys(t, "wal-100k"), fix.Remaining(); !slices.Equal(left, want) {
		t.Fatalf("%d keys left, want %d", len(left), len(want))
	}
	t.Logf("test total %s", time.Since(start.Add(-populate)).Round(time.Millisecond))
}

// failAfter fails every call of operation name after the first ok ones, before it is sent.
func failAfter(name string, ok int) func(*middleware.Stack) error {
	var calls atomic.Int64
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.failAfter", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if middleware.GetOperationName(ctx) == name && calls.Add(1) > int64(ok) {
				return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "AccessDenied", Message: "injected after " + fmt.Sprint(ok) + " calls"}
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	}
}

// deleteTracker records the keys of the DeleteObjects calls that succeeded. Its middleware goes
// first in a client's API options, so that it sits after the faults.
type deleteTracker struct {
	mu   sync.Mutex
	keys []string
}

func (d *deleteTracker) Middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.deleteTracker", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		out, md, err := next.HandleInitialize(ctx, in)
		if del, ok := in.Parameters.(*s3.DeleteObjectsInput); ok && err == nil {
			d.mu.Lock()
			for _, o := range del.Delete.Objects {
				d.keys = append(d.keys, aws.ToString(o.Key))
			}
			d.mu.Unlock()
		}
		return out, md, err
	}), middleware.Before)
}

// Keys returns the keys deleted, sorted.
func (d *deleteTracker) Keys() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.keys)
	slices.Sort(out)
	return out
}

// countCalls calls fn before every call of operation name is sent.
func countCalls(name string, fn func()) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test.countCalls", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if middleware.GetOperationName(ctx) == name {
				fn()
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	}
}

func TestMotoPruneInterruptedThenResumed(t *testing.T) {
	t.Parallel()
	m := newMotoSite(t)
	boundary := seg(1, 20*segsPerLog+0x10)
	fix := pgbrFixture(22*segsPerLog, boundary)
	populate := m.setup(t, pgbrArchive("wal-resume"), boundary, "", fix.Keys)
	t.Logf("populated %d objects in %s", len(fix.Keys), populate.Round(time.Millisecond))
	ctx := context.Background()
	req := walprune.Request{Cluster: "main"}
	done := &deleteTracker{}

	// Run 1: DeleteObjects fails after two successful calls, four batches in flight.
	rec1 := &moto.Recorder{}
	res1, err := m.pruner(m.client(rec1, done.Middleware, failAfter("DeleteObjects", 2))).Run(ctx, req)
	if !errors.Is(err, walprune.ErrIncompleteDelete) || !errors.Is(err, wal.ErrAccessDenied) {
		t.Fatalf("run 1: err %v", err)
	}
	if res1.Complete || res1.Deleted != 2000 || res1.StoppedBy != walprune.StopError || res1.Deleted+res1.DeleteErrors+res1.NotSent != len(fix.Delete) {
		t.Fatalf("run 1: %s", summary(res1))
	}

	// Run 2: less than the safety margin is left after two batches (one at a time; every
	// DeleteObjects call moves the pruner's clock a minute closer to the deadline).
	rec2 := &moto.Recorder{}
	var skew atomic.Int64
	p2 := m.pruner(m.client(rec2, done.Middleware, countCalls("DeleteObjects", func() { skew.Add(int64(time.Minute)) })))
	p2.Archive.(*s3archive.Archive).Concurrency = 1
	p2.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	p2.SafetyMargin = 8*time.Minute + 30*time.Second
	dctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	res2, err := p2.Run(dctx, req)
	cancel()
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	if res2.Complete || res2.StoppedBy != walprune.StopDeadline || rec2.Count("DeleteObjects") != 2 || res2.Deleted != 2000 {
		t.Fatalf("run 2: %s after %d DeleteObjects", summary(res2), rec2.Count("DeleteObjects"))
	}

	// Run 3 finishes.
	rec3 := &moto.Recorder{}
	res3, err := m.pruner(m.client(rec3, done.Middleware)).Run(ctx, req)
	if err != nil || !res3.Complete || res3.Deleted != len(fix.Delete)-4000 {
		t.Fatalf("run 3: %s, %v", summary(res3), err)
	}

	sent := done.Keys()
	if !slices.Equal(sent, fix.Delete) {
		t.Fatalf("the runs deleted %d keys, want the %d planned", len(sent), len(fix.Delete))
	}
	if left, want := m.listKeys(t, "wal-resume"), fix.Remaining(); !slices.Equal(left, want) {
		t.Fatalf("%d keys left, want %d", len(left), len(want))
	}
}

func TestMotoPrunePlainLayout(t *testing.T) {
	t.Parallel()
	m := newMotoSite(t)
	const prefix = "confluence/local-db-wal-"
	boundary := seg(2, 2500)
	fix := plainFixture(prefix, 3000, boundary)
	arch := &config.Archive{Layout: "plain", Bucket: "confluence-wal", Prefix: prefix, Extension: ".bz2", SegmentSizeMiB: 16}
	populate := m.setup(t, arch, boundary, "", fix.Keys)
	t.Logf("populated %d objects in %s", len(fix.Keys), populate.Round(time.Millisecond))
	rec := &moto.Recorder{}
	res, err := m.pruner(m.client(rec)).Run(context.Background(), walprune.Request{Cluster: "main"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	n := len(fix.Delete)
	if !res.Complete || res.Deleted != n || res.Layout != "plain" || res.Prefix != prefix || res.Protected != fix.Protected || res.Unrecognized != fix.Unrecognized {
		t.Fatalf("result %s", summary(res))
	}
	if rec.Count("DeleteObjects") != (n+999)/1000 {
		t.Errorf("%d DeleteObjects for %d keys", rec.Count("DeleteObjects"), n)
	}
	// Timeline 1 is listed up to the boundary, then timeline 2 from its start.
	for _, in := range rec.Inputs("ListObjectsV2") {
		in := in.(*s3.ListObjectsV2Input)
		if aws.ToString(in.Prefix) != prefix || aws.ToString(in.Delimiter) != "/" {
			t.Errorf("listing %q delimiter %q", aws.ToString(in.Prefix), aws.ToString(in.Delimiter))
		}
	}
	if left, want := m.listKeys(t, "confluence-wal"), fix.Remaining(); !slices.Equal(left, want) {
		t.Fatalf("%d keys left, want %d", len(left), len(want))
	}
}

func TestMotoPruneVersionedBucket(t *testing.T) {
	t.Parallel()
	m := newMotoSite(t)
	boundary := seg(1, segsPerLog+0x20)
	fix := pgbrFixture(2*segsPerLog, boundary)
	m.setup(t, pgbrArchive("wal-versioned"), boundary, types.BucketVersioningStatusEnabled, fix.Keys)
	res, err := m.pruner(m.client(nil)).Run(context.Background(), walprune.Request{Cluster: "main"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Complete || !res.Versioned || res.Versioning != "Enabled" || res.Deleted != len(fix.Delete) {
		t.Fatalf("result %s", summary(res))
	}
	if left, want := m.listKeys(t, "wal-versioned"), fix.Remaining(); !slices.Equal(left, want) {
		t.Fatalf("%d keys left, want %d", len(left), len(want))
	}
	markers := 0
	p := s3.NewListObjectVersionsPaginator(m.admin, &s3.ListObjectVersionsInput{Bucket: aws.String("wal-versioned")})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		markers += len(page.DeleteMarkers)
	}
	if markers != len(fix.Delete) {
		t.Fatalf("%d delete markers, want %d", markers, len(fix.Delete))
	}
}

func TestMotoPruneRefusals(t *testing.T) {
	t.Parallel()
	m := newMotoSite(t)
	boundary := seg(1, 0x30)
	fix := pgbrFixture(0x40, boundary)
	m.setup(t, pgbrArchive("wal-small"), boundary, "", fix.Keys)
	tests := []struct {
		name    string
		bucket  string
		opts    []func(*middleware.Stack) error
		wantErr error
	}{
		{name: "bucket does not exist", bucket: "no-such-bucket", wantErr: wal.ErrNoSuchBucket},
		{name: "credentials cannot list", opts: []func(*middleware.Stack) error{
			moto.FailOperationWith("ListObjectsV2", 0, &smithy.GenericAPIError{Code: "AccessDenied", Message: "injected"}),
		}, wantErr: wal.ErrAccessDenied},
		{name: "credentials cannot read the bucket", opts: []func(*middleware.Stack) error{
			moto.FailOperationWith("HeadBucket", 0, &smithy.GenericAPIError{Code: "Forbidden", Message: "injected"}),
		}, wantErr: wal.ErrAccessDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := pgbrArchive("wal-small")
			if tc.bucket != "" {
				a.Bucket = tc.bucket
			}
			m.configs.Put(clusterConfig("main", a))
			rec := &moto.Recorder{}
			_, err := m.pruner(m.client(rec, tc.opts...)).Run(context.Background(), walprune.Request{Cluster: "main"})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if n := rec.Count("DeleteObjects"); n != 0 {
				t.Fatalf("%d DeleteObjects calls", n)
			}
		})
	}
	if left := m.listKeys(t, "wal-small"); !slices.Equal(left, fix.Keys) {
		t.Fatalf("%d keys left, want all %d", len(left), len(fix.Keys))
	}
}
