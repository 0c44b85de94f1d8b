package s3archive_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/pgfleet/pgfleet/shared/aws/s3archive"
	"github.com/pgfleet/pgfleet/shared/retry"
	"github.com/pgfleet/pgfleet/shared/wal"
)

// fastRetry keeps retried tests quick.
var fastRetry = retry.Backoff{Attempts: 4, Initial: time.Millisecond, Max: 4 * time.Millisecond}

func apiErr(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code + " (test)"}
}

// httpErr is an error as the SDK returns it for an answer with a status and no error code.
func httpErr(status int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      fmt.Errorf("http %d", status),
	}}
}

// fakeS3 answers DeleteObjects from a script (one entry per call; past its end every key is
// deleted) and records the calls.
type fakeS3 struct {
	s3archive.API // the operations a test does not set panic

	mu       sync.Mutex
	script   []func(keys []string) (*s3.DeleteObjectsOutput, error)
	calls    [][]string
	quiet    []bool
	delay    time.Duration
	inflight atomic.Int64
	peak     atomic.Int64

	head       error
	versioning error
	status     types.BucketVersioningStatus
}

func (f *fakeS3) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, _ ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error) {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	keys := make([]string, len(in.Delete.Objects))
	for i, o := range in.Delete.Objects {
		keys[i] = aws.ToString(o.Key)
	}
	f.mu.Lock()
	i := len(f.calls)
	f.calls = append(f.calls, keys)
	f.quiet = append(f.quiet, aws.ToBool(in.Delete.Quiet))
	var step func([]string) (*s3.DeleteObjectsOutput, error)
	if i < len(f.script) {
		step = f.script[i]
	}
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if step != nil {
		return step(keys)
	}
	return &s3.DeleteObjectsOutput{}, nil
}

func (f *fakeS3) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, []string{"HeadBucket"})
	return &s3.HeadBucketOutput{}, f.head
}

func (f *fakeS3) GetBucketVersioning(context.Context, *s3.GetBucketVersioningInput, ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, []string{"GetBucketVersioning"})
	if f.versioning != nil {
		return nil, f.versioning
	}
	return &s3.GetBucketVersioningOutput{Status: f.status}, nil
}

func failWith(err error) func([]string) (*s3.DeleteObjectsOutput, error) {
	return func([]string) (*s3.DeleteObjectsOutput, error) { return nil, err }
}

// keyErrors answers with a per-key error for each of the keys named in codes.
func keyErrors(codes map[string]string) func([]string) (*s3.DeleteObjectsOutput, error) {
	return func(keys []string) (*s3.DeleteObjectsOutput, error) {
		out := &s3.DeleteObjectsOutput{}
		for _, k := range keys {
			if c, ok := codes[k]; ok {
				out.Errors = append(out.Errors, types.Error{Key: aws.String(k), Code: aws.String(c), Message: aws.String(c + " (test)")})
			}
		}
		return out, nil
	}
}

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return out
}

func TestDeleteBatch(t *testing.T) {
	batch := keys("k", 5)
	tests := []struct {
		name       string
		script     []func([]string) (*s3.DeleteObjectsOutput, error)
		wantCalls  [][]string
		wantFailed []wal.KeyError
		wantErr    error // nil: no batch error
		errAny     bool
	}{
		{name: "deleted at once", wantCalls: [][]string{batch}},
		{
			name:      "SlowDown is retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("SlowDown")), failWith(apiErr("SlowDown"))},
			wantCalls: [][]string{batch, batch, batch},
		},
		{
			name:      "503 without an error code is retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(httpErr(503))},
			wantCalls: [][]string{batch, batch},
		},
		{
			name:      "InternalError is retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("InternalError"))},
			wantCalls: [][]string{batch, batch},
		},
		{
			name:      "throttling is retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("ThrottlingException"))},
			wantCalls: [][]string{batch, batch},
		},
		{
			name:      "retries are bounded",
			script:    slices.Repeat([]func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("SlowDown"))}, 10),
			wantCalls: [][]string{batch, batch, batch, batch},
			errAny:    true,
		},
		{
			name:      "AccessDenied is not retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("AccessDenied"))},
			wantCalls: [][]string{batch},
			wantErr:   wal.ErrAccessDenied,
		},
		{
			name:      "NoSuchBucket is not retried",
			script:    []func([]string) (*s3.DeleteObjectsOutput, error){failWith(apiErr("NoSuchBucket"))},
			wantCalls: [][]string{batch},
			wantErr:   wal.ErrNoSuchBucket,
		},
		{
			name:       "per-key errors are returned",
			script:     []func([]string) (*s3.DeleteObjectsOutput, error){keyErrors(map[string]string{batch[1]: "AccessDenied", batch[3]: "NoSuchVersion"})},
			wantCalls:  [][]string{batch},
			wantFailed: []wal.KeyError{{Key: batch[1], Code: "AccessDenied"}, {Key: batch[3], Code: "NoSuchVersion"}},
		},
		{
			name: "per-key SlowDown is resent, other per-key errors kept",
			script: []func([]string) (*s3.DeleteObjectsOutput, error){
				keyErrors(map[string]string{batch[0]: "SlowDown", batch[2]: "AccessDenied", batch[4]: "InternalError"}),
				keyErrors(map[string]string{batch[4]: "InternalError"}),
			},
			wantCalls:  [][]string{batch, {batch[0], batch[4]}, {batch[4]}},
			wantFailed: []wal.KeyError{{Key: batch[2], Code: "AccessDenied"}},
		},
		{
			name:       "per-key retries are bounded",
			script:     slices.Repeat([]func([]string) (*s3.DeleteObjectsOutput, error){keyErrors(map[string]string{batch[2]: "SlowDown"})}, 10),
			wantCalls:  [][]string{batch, {batch[2]}, {batch[2]}, {batch[2]}},
			wantFailed: []wal.KeyError{{Key: batch[2], Code: "SlowDown"}},
		},
		{
			name: "a request failing while resending keys fails only those keys",
			script: []func([]string) (*s3.DeleteObjectsOutput, error){
				keyErrors(map[string]string{batch[1]: "SlowDown"}),
				failWith(apiErr("AccessDenied")),
			},
			wantCalls:  [][]string{batch, {batch[1]}},
			wantFailed: []wal.KeyError{{Key: batch[1], Code: "AccessDenied"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{script: tc.script}
			a := s3archive.New(f)
			a.Retry = fastRetry
			r := a.DeleteBatch(context.Background(), "b", batch)
			if tc.wantErr != nil || tc.errAny {
				if r.Err == nil || (tc.wantErr != nil && !errors.Is(r.Err, tc.wantErr)) {
					t.Fatalf("err %v, want %v", r.Err, tc.wantErr)
				}
			} else if r.Err != nil {
				t.Fatalf("err %v", r.Err)
			}
			if !slices.EqualFunc(f.calls, tc.wantCalls, slices.Equal) {
				t.Fatalf("calls %q, want %q", f.calls, tc.wantCalls)
			}
			if r.Requests != len(tc.wantCalls) {
				t.Errorf("requests %d, want %d", r.Requests, len(tc.wantCalls))
			}
			for _, q := range f.quiet {
				if !q {
					t.Errorf("a request was not in quiet mode")
				}
			}
			got := make([]wal.KeyError, len(r.Failed))
			for i, ke := range r.Failed {
				got[i] = wal.KeyError{Key: ke.Key, Code: ke.Code}
			}
			slices.SortFunc(got, func(a, b wal.KeyError) int { return cmpStr(a.Key, b.Key) })
			if !slices.Equal(got, tc.wantFailed) {
				t.Fatalf("failed %+v, want %+v", got, tc.wantFailed)
			}
		})
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestDeleteBatchRefusesBadBatches(t *testing.T) {
	tests := []struct {
		name   string
		bucket string
		keys   []string
	}{
		{name: "no keys", bucket: "b"},
		{name: "more than 1000 keys", bucket: "b", keys: keys("k", 1001)},
		{name: "an empty key", bucket: "b", keys: []string{"a", ""}},
		{name: "no bucket", keys: []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{}
			r := s3archive.New(f).DeleteBatch(context.Background(), tc.bucket, tc.keys)
			if r.Err == nil || len(f.calls) != 0 || r.Requests != 0 {
				t.Fatalf("result %+v after %d calls", r, len(f.calls))
			}
		})
	}
}

func TestDeleteBatchesConcurrency(t *testing.T) {
	var batches [][]string
	for i := range 20 {
		batches = append(batches, keys(fmt.Sprintf("b%02d/", i), 10))
	}
	tests := []struct {
		name        string
		concurrency int
		script      map[int]error // batch index -> error of its first request
		stopAfter   int           // proceed returns false from this call on (0: never)
		wantResults int
		wantPeak    int64
	}{
		{name: "default concurrency", wantResults: 20, wantPeak: s3archive.DefaultConcurrency},
		{name: "one at a time", concurrency: 1, wantResults: 20, wantPeak: 1},
		{name: "eight in flight", concurrency: 8, wantResults: 20, wantPeak: 8},
		{name: "proceed stops new batches", concurrency: 1, stopAfter: 5, wantResults: 5, wantPeak: 1},
		{name: "a failed batch stops new batches", concurrency: 1, script: map[int]error{2: apiErr("AccessDenied")}, wantResults: 3, wantPeak: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{delay: 20 * time.Millisecond}
			// The script is per call; with one batch in flight calls and batches line up.
			for i := 0; i < len(batches); i++ {
				if err, ok := tc.script[i]; ok {
					f.script = append(f.script, failWith(err))
				} else {
					f.script = append(f.script, nil)
				}
			}
			a := s3archive.New(f)
			a.Retry = fastRetry
			a.Concurrency = tc.concurrency
			proceeds := 0
			res := a.DeleteBatches(context.Background(), "b", batches, func() bool {
				proceeds++
				return tc.stopAfter == 0 || proceeds <= tc.stopAfter
			})
			if len(res) != tc.wantResults {
				t.Fatalf("%d results, want %d", len(res), tc.wantResults)
			}
			for i, r := range res {
				if r.Index != i {
					t.Fatalf("result %d has index %d", i, r.Index)
				}
				if _, failed := tc.script[i]; failed != (r.Err != nil) {
					t.Errorf("batch %d: err %v", i, r.Err)
				}
			}
			if p := f.peak.Load(); p != tc.wantPeak {
				t.Errorf("peak in flight %d, want %d", p, tc.wantPeak)
			}
		})
	}

	t.Run("a cancelled context stops new batches", func(t *testing.T) {
		f := &fakeS3{delay: 20 * time.Millisecond}
		a := s3archive.New(f)
		a.Concurrency = 1
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		res := a.DeleteBatches(ctx, "b", batches, func() bool {
			n++
			if n == 3 {
				cancel()
			}
			return true
		})
		if len(res) > 3 {
			t.Fatalf("%d batches started after the cancel", len(res))
		}
	})
}

func TestCheckBucket(t *testing.T) {
	tests := []struct {
		name       string
		head       error
		versioning error
		status     types.BucketVersioningStatus
		want       wal.BucketInfo
		wantErr    error
		errAny     bool
		wantCalls  int
	}{
		{name: "never versioned", wantCalls: 2},
		{name: "versioned", status: types.BucketVersioningStatusEnabled, want: wal.BucketInfo{Versioning: "Enabled"}, wantCalls: 2},
		{name: "versioning suspended", status: types.BucketVersioningStatusSuspended, want: wal.BucketInfo{Versioning: "Suspended"}, wantCalls: 2},
		{name: "missing bucket", head: apiErr("NotFound"), wantErr: wal.ErrNoSuchBucket, wantCalls: 1},
		{name: "missing bucket, HTTP 404", head: httpErr(404), wantErr: wal.ErrNoSuchBucket, wantCalls: 1},
		{name: "forbidden", head: apiErr("Forbidden"), wantErr: wal.ErrAccessDenied, wantCalls: 1},
		{name: "forbidden, HTTP 403", head: httpErr(403), wantErr: wal.ErrAccessDenied, wantCalls: 1},
		{name: "another region", head: httpErr(301), errAny: true, wantCalls: 1},
		{name: "versioning denied", versioning: apiErr("AccessDenied"), wantErr: wal.ErrAccessDenied, wantCalls: 2},
		{name: "head throttled, retried until spent", head: apiErr("SlowDown"), errAny: true, wantCalls: fastRetry.Attempts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeS3{head: tc.head, versioning: tc.versioning, status: tc.status}
			a := s3archive.New(f)
			a.Retry = fastRetry
			got, err := a.CheckBucket(context.Background(), "b")
			if tc.wantErr != nil || tc.errAny {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if len(f.calls) != tc.wantCalls {
				t.Errorf("%d calls, want %d", len(f.calls), tc.wantCalls)
			}
			if got.Versioned() != (tc.want.Versioning != "") {
				t.Errorf("Versioned() = %v", got.Versioned())
			}
		})
	}
}
