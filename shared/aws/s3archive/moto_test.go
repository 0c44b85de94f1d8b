package s3archive_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgfleet/pgfleet/shared/aws/s3archive"
	"github.com/pgfleet/pgfleet/shared/local/moto"
	"github.com/pgfleet/pgfleet/shared/wal"
)

// motoS3 starts a moto server for the test and returns an S3 client on it that records its
// calls, with extra API options (fault injection) applied.
func motoS3(t *testing.T, opts ...func(*middleware.Stack) error) (*s3.Client, *moto.Recorder) {
	t.Helper()
	srv := moto.StartForTest(t)
	cfg, err := moto.Config(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &moto.Recorder{}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		// The recorder goes in last so that it sits first and also sees the calls a fault fails.
		o.APIOptions = append(o.APIOptions, opts...)
		o.APIOptions = append(o.APIOptions, rec.Middleware)
	})
	return client, rec
}

func createBucket(t *testing.T, c *s3.Client, bucket string, versioning types.BucketVersioningStatus, keys ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	if versioning != "" {
		_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  aws.String(bucket),
			VersioningConfiguration: &types.VersioningConfiguration{Status: versioning},
		})
		if err != nil {
			t.Fatalf("put bucket versioning: %v", err)
		}
	}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
}

func listAll(t *testing.T, c *s3.Client, bucket string) []string {
	t.Helper()
	var out []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key))
		}
	}
	return out
}

func TestMotoListPage(t *testing.T) {
	t.Parallel()
	c, rec := motoS3(t, moto.FailOperationWith("ListObjectsV2", 1, &smithy.GenericAPIError{Code: "SlowDown", Message: "injected"}))
	all := []string{"a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "a/d", "a/e", "b/6"}
	createBucket(t, c, "list-me", "", all...)
	a := s3archive.New(c)
	a.Retry = fastRetry
	a.PageSize = 2
	l := a.NewLister("list-me")
	ctx := context.Background()

	// collect reads every page of a request.
	collect := func(req wal.ListRequest) (objs, prefixes []string, pages int) {
		t.Helper()
		token := ""
		for {
			p, err := l.ListPage(ctx, req, token)
			if err != nil {
				t.Fatalf("list %+v: %v", req, err)
			}
			pages++
			for _, o := range p.Objects {
				objs = append(objs, o.Key)
				if o.Size != int64(len(o.Key)) {
					t.Errorf("%s: size %d", o.Key, o.Size)
				}
			}
			prefixes = append(prefixes, p.CommonPrefixes...)
			if p.NextToken == "" {
				return objs, prefixes, pages
			}
			token = p.NextToken
		}
	}
	tests := []struct {
		name         string
		req          wal.ListRequest
		wantObjs     []string
		wantPrefixes []string
		wantPages    int
	}{
		{name: "delimited", req: wal.ListRequest{Prefix: "a/", Delimiter: "/"}, wantObjs: []string{"a/1", "a/2", "a/d", "a/e"}, wantPrefixes: []string{"a/b/", "a/c/"}, wantPages: 3},
		{name: "flat", req: wal.ListRequest{Prefix: "a/"}, wantObjs: all[:7], wantPages: 4},
		{name: "start after", req: wal.ListRequest{Prefix: "a/", StartAfter: "a/b/3"}, wantObjs: []string{"a/b/4", "a/c/5", "a/d", "a/e"}, wantPages: 2},
		{name: "nothing", req: wal.ListRequest{Prefix: "z/"}, wantPages: 1},
	}
	for _, tc := range tests {
		objs, prefixes, pages := collect(tc.req)
		if !slices.Equal(objs, tc.wantObjs) || !slices.Equal(prefixes, tc.wantPrefixes) || pages != tc.wantPages {
			t.Errorf("%s: objects %q, prefixes %q, %d pages; want %q, %q, %d pages", tc.name, objs, prefixes, pages, tc.wantObjs, tc.wantPrefixes, tc.wantPages)
		}
	}
	// Every page is one request with MaxKeys set; the injected SlowDown cost one more.
	inputs := rec.Inputs("ListObjectsV2")
	if l.Requests() != int64(len(inputs)) || len(inputs) != 3+4+2+1+1 {
		t.Errorf("lister counted %d requests, %d sent", l.Requests(), len(inputs))
	}
	for _, in := range inputs {
		if in := in.(*s3.ListObjectsV2Input); aws.ToInt32(in.MaxKeys) != 2 {
			t.Errorf("MaxKeys %d", aws.ToInt32(in.MaxKeys))
		}
	}

	_, err := a.Lister("no-such-bucket").ListPage(ctx, wal.ListRequest{Prefix: "a/"}, "")
	if !errors.Is(err, wal.ErrNoSuchBucket) {
		t.Errorf("missing bucket: %v", err)
	}
}

func TestMotoListAccessDenied(t *testing.T) {
	t.Parallel()
	c, rec := motoS3(t, moto.FailOperationWith("ListObjectsV2", 0, &smithy.GenericAPIError{Code: "AccessDenied", Message: "injected"}))
	createBucket(t, c, "denied", "", "a")
	_, err := s3archive.New(c).Lister("denied").ListPage(context.Background(), wal.ListRequest{}, "")
	if !errors.Is(err, wal.ErrAccessDenied) {
		t.Fatalf("err %v, want ErrAccessDenied", err)
	}
	if n := rec.Count("ListObjectsV2"); n != 1 {
		t.Errorf("%d requests, want 1 (access denied is not retried)", n)
	}
}

func TestMotoCheckBucket(t *testing.T) {
	t.Parallel()
	c, _ := motoS3(t)
	createBucket(t, c, "plain-bucket", "")
	createBucket(t, c, "versioned-bucket", types.BucketVersioningStatusEnabled)
	createBucket(t, c, "suspended-bucket", types.BucketVersioningStatusEnabled)
	_, err := c.PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{
		Bucket: aws.String("suspended-bucket"), VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusSuspended},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := s3archive.New(c)
	tests := []struct {
		bucket  string
		want    string
		wantErr error
	}{
		{bucket: "plain-bucket"},
		{bucket: "versioned-bucket", want: "Enabled"},
		{bucket: "suspended-bucket", want: "Suspended"},
		{bucket: "no-such-bucket", wantErr: wal.ErrNoSuchBucket},
	}
	for _, tc := range tests {
		info, err := a.CheckBucket(context.Background(), tc.bucket)
		if !errors.Is(err, tc.wantErr) || info.Versioning != tc.want {
			t.Errorf("%s: %+v, %v; want %q, %v", tc.bucket, info, err, tc.want, tc.wantErr)
		}
	}
}

func TestMotoDeleteBatches(t *testing.T) {
	t.Parallel()
	c, rec := motoS3(t, moto.FailOperationWith("DeleteObjects", 1, &smithy.GenericAPIError{Code: "SlowDown", Message: "injected"}))
	del := keys("wal/", 2100)
	keep := keys("keep/", 20)
	createBucket(t, c, "del-me", "")
	putMany(t, c, "del-me", append(slices.Clone(del), keep...))
	a := s3archive.New(c)
	a.Retry = fastRetry
	batches := [][]string{del[:1000], del[1000:2000], append(slices.Clone(del[2000:]), "wal/never-existed")}
	res := a.DeleteBatches(context.Background(), "del-me", batches, func() bool { return true })
	requests := 0
	for i, r := range res {
		if r.Err != nil || len(r.Failed) != 0 || r.Index != i {
			t.Fatalf("batch %d: %+v", i, r)
		}
		requests += r.Requests
	}
	// Three batches, one SlowDown retried.
	if n := rec.Count("DeleteObjects"); len(res) != 3 || requests != 4 || n != 4 {
		t.Fatalf("%d results, %d requests counted, %d sent", len(res), requests, n)
	}
	for _, in := range rec.Inputs("DeleteObjects") {
		in := in.(*s3.DeleteObjectsInput)
		if !aws.ToBool(in.Delete.Quiet) || len(in.Delete.Objects) > 1000 {
			t.Errorf("request with quiet %v and %d keys", aws.ToBool(in.Delete.Quiet), len(in.Delete.Objects))
		}
		for _, o := range in.Delete.Objects {
			if o.VersionId != nil {
				t.Errorf("version id sent for %s", aws.ToString(o.Key))
			}
		}
	}
	if left := listAll(t, c, "del-me"); !slices.Equal(left, keep) {
		t.Fatalf("left %d keys, want the %d kept", len(left), len(keep))
	}
}

func TestMotoDeleteVersioned(t *testing.T) {
	t.Parallel()
	c, _ := motoS3(t)
	del := keys("wal/", 30)
	createBucket(t, c, "versions", types.BucketVersioningStatusEnabled, del...)
	a := s3archive.New(c)
	info, err := a.CheckBucket(context.Background(), "versions")
	if err != nil || !info.Versioned() {
		t.Fatalf("check: %+v, %v", info, err)
	}
	r := a.DeleteBatch(context.Background(), "versions", del)
	if r.Err != nil || len(r.Failed) != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if left := listAll(t, c, "versions"); len(left) != 0 {
		t.Fatalf("%d keys still listed", len(left))
	}
	// The data stays as noncurrent versions behind delete markers, for the lifecycle rule.
	out, err := c.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String("versions")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.DeleteMarkers) != len(del) || len(out.Versions) != len(del) {
		t.Fatalf("%d delete markers and %d versions, want %d of each", len(out.DeleteMarkers), len(out.Versions), len(del))
	}
	for _, v := range out.Versions {
		if aws.ToBool(v.IsLatest) {
			t.Errorf("version of %s is still the latest", aws.ToString(v.Key))
		}
	}
}

// putMany uploads tiny objects (the key as body) with several requests in flight.
func putMany(t *testing.T, c *s3.Client, bucket string, keys []string) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan string)
	errs := make(chan error, 1)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(k)})
				if err != nil {
					select {
					case errs <- fmt.Errorf("put %s: %w", k, err):
					default:
					}
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
