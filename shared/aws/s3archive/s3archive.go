// Package s3archive implements the WAL pruner's archive port (wal.Archive) over S3:
// a wal.Lister that reads one ListObjectsV2 page per call, so that wal.Collect can stop at the
// boundary instead of listing the whole archive; batch deletion with DeleteObjects (quiet mode,
// at most 1000 keys a request, a few requests in flight, per-key errors returned); and a bucket
// check (exists, versioning status).
//
// Throttling (SlowDown, 503) and server errors are retried here, with capped exponential
// backoff and full jitter, for a bounded number of attempts; the SDK's own retries are turned
// off for these calls so that every request sent is one the caller can count. Keys a
// DeleteObjects answer reports as failed with a retryable code are sent again the same way.
//
// Keys are deleted without a version id. In a versioned bucket S3 then writes a delete marker
// and keeps the data as a noncurrent version, which the bucket's lifecycle rule
// (NoncurrentVersionExpiration) removes later.
package s3archive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdkretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	awsx "github.com/pgfleet/pgfleet/shared/aws"
	"github.com/pgfleet/pgfleet/shared/retry"
	"github.com/pgfleet/pgfleet/shared/wal"
)

// API is the part of S3 the archive calls.
type API interface {
	ListObjectsV2(ctx context.Context, params *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObjects(ctx context.Context, params *s3.DeleteObjectsInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error)
	GetBucketVersioning(ctx context.Context, params *s3.GetBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
	HeadBucket(ctx context.Context, params *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

var (
	_ API                = (*s3.Client)(nil)
	_ wal.Archive        = (*Archive)(nil)
	_ wal.Lister         = (*Lister)(nil)
	_ wal.RequestCounter = (*Lister)(nil)
)

// S3 request limits and defaults.
const (
	// MaxKeys is the most keys one ListObjectsV2 page or DeleteObjects request holds.
	MaxKeys = 1000
	// DefaultConcurrency is how many DeleteObjects requests are in flight at most by default.
	DefaultConcurrency = 4
)

// DefaultBackoff suits S3's 503 SlowDown: up to six requests spread over about ten seconds.
var DefaultBackoff = retry.Backoff{Attempts: 6, Initial: 200 * time.Millisecond, Max: 5 * time.Second}

// Archive lists and deletes the objects of WAL archives in S3 buckets.
type Archive struct {
	api API
	// PageSize is the MaxKeys of every ListObjectsV2 request (1-1000; 0 means 1000).
	PageSize int32
	// Concurrency is the most DeleteObjects requests in flight (0 means DefaultConcurrency).
	Concurrency int
	// Retry bounds the retries of throttled and failed requests.
	Retry retry.Backoff
}

// New returns an archive that calls api, typically s3.NewFromConfig(cfg) (with UsePathStyle
// for moto_server and other S3 endpoints without virtual-hosted buckets).
func New(api API) *Archive {
	return &Archive{api: api, Retry: DefaultBackoff}
}

// noSDKRetries turns the SDK's retries off for one call: the archive retries by itself.
func noSDKRetries(o *s3.Options) { o.RetryMaxAttempts = 1 }

// CheckBucket implements wal.Archive: HeadBucket, then GetBucketVersioning.
func (a *Archive) CheckBucket(ctx context.Context, bucket string) (wal.BucketInfo, error) {
	if bucket == "" {
		return wal.BucketInfo{}, errors.New("check bucket: empty bucket name")
	}
	_, _, err := withRetry(ctx, a.Retry, func() (*s3.HeadBucketOutput, error) {
		return a.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}, noSDKRetries)
	})
	if err != nil {
		return wal.BucketInfo{}, fmt.Errorf("head bucket %s: %w", bucket, classify(err))
	}
	out, _, err := withRetry(ctx, a.Retry, func() (*s3.GetBucketVersioningOutput, error) {
		return a.api.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket)}, noSDKRetries)
	})
	if err != nil {
		return wal.BucketInfo{}, fmt.Errorf("get versioning of bucket %s: %w", bucket, classify(err))
	}
	return wal.BucketInfo{Versioning: string(out.Status)}, nil
}

// Lister lists one bucket a page at a time and counts the requests it sends.
type Lister struct {
	archive  *Archive
	bucket   string
	requests atomic.Int64
}

// Lister implements wal.Archive: a new lister of bucket, its request count at zero.
func (a *Archive) Lister(bucket string) wal.Lister { return a.NewLister(bucket) }

// NewLister is Lister with the concrete type.
func (a *Archive) NewLister(bucket string) *Lister { return &Lister{archive: a, bucket: bucket} }

// Requests implements wal.RequestCounter: the ListObjectsV2 requests sent so far, retries
// included.
func (l *Lister) Requests() int64 { return l.requests.Load() }

// ListPage implements wal.Lister: one ListObjectsV2 request (retried when throttled) with the
// request's prefix, delimiter and start-after key, continuing at token when it is not empty.
func (l *Lister) ListPage(ctx context.Context, req wal.ListRequest, token string) (wal.Page, error) {
	if l.bucket == "" {
		return wal.Page{}, errors.New("list objects: empty bucket name")
	}
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(l.bucket),
		Prefix:  aws.String(req.Prefix),
		MaxKeys: aws.Int32(l.archive.pageSize()),
	}
	if req.Delimiter != "" {
		in.Delimiter = aws.String(req.Delimiter)
	}
	if req.StartAfter != "" {
		in.StartAfter = aws.String(req.StartAfter)
	}
	if token != "" {
		in.ContinuationToken = aws.String(token)
	}
	out, n, err := withRetry(ctx, l.archive.Retry, func() (*s3.ListObjectsV2Output, error) {
		return l.archive.api.ListObjectsV2(ctx, in, noSDKRetries)
	})
	l.requests.Add(int64(n))
	if err != nil {
		return wal.Page{}, fmt.Errorf("bucket %s: %w", l.bucket, classify(err))
	}
	page := wal.Page{Objects: make([]wal.ObjectInfo, 0, len(out.Contents))}
	for _, o := range out.Contents {
		page.Objects = append(page.Objects, wal.ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size)})
	}
	for _, p := range out.CommonPrefixes {
		page.CommonPrefixes = append(page.CommonPrefixes, aws.ToString(p.Prefix))
	}
	if aws.ToBool(out.IsTruncated) {
		page.NextToken = aws.ToString(out.NextContinuationToken)
		if page.NextToken == "" {
			return wal.Page{}, fmt.Errorf("list s3://%s/%s: truncated answer without a continuation token", l.bucket, req.Prefix)
		}
	}
	return page, nil
}

func (a *Archive) pageSize() int32 {
	if a.PageSize <= 0 || a.PageSize > MaxKeys {
		return MaxKeys
	}
	return a.PageSize
}

func (a *Archive) concurrency() int {
	if a.Concurrency <= 0 {
		return DefaultConcurrency
	}
	return a.Concurrency
}

// DeleteBatches implements wal.Archive with at most Concurrency DeleteObjects requests in
// flight. A batch that fails as a whole (after its retries) stops the start of further batches:
// the error would most likely repeat (access denied, a missing bucket, the context ending).
func (a *Archive) DeleteBatches(ctx context.Context, bucket string, batches [][]string, proceed func() bool) []wal.BatchResult {
	results := make([]wal.BatchResult, len(batches))
	started := make([]bool, len(batches))
	var (
		mu      sync.Mutex
		next    int
		stopped bool
		wg      sync.WaitGroup
	)
	// take hands out the next batch, asking proceed first, in batch order.
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if stopped || next >= len(batches) || ctx.Err() != nil {
			return 0, false
		}
		if proceed != nil && !proceed() {
			stopped = true
			return 0, false
		}
		i := next
		next++
		started[i] = true
		return i, true
	}
	for w := 0; w < min(a.concurrency(), len(batches)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := take()
				if !ok {
					return
				}
				r := a.DeleteBatch(ctx, bucket, batches[i])
				r.Index = i
				results[i] = r
				if r.Err != nil {
					mu.Lock()
					stopped = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	out := results[:0]
	for i, r := range results {
		if started[i] {
			out = append(out, r)
		}
	}
	return out
}

// DeleteBatch deletes up to 1000 keys with DeleteObjects in quiet mode, retrying the whole
// request when it is throttled or fails with a server error, and the keys the answer reports
// with a retryable error code, within the Retry budget. Keys still failing are returned in
// Failed with S3's code and message.
func (a *Archive) DeleteBatch(ctx context.Context, bucket string, keys []string) wal.BatchResult {
	var r wal.BatchResult
	if bucket == "" {
		r.Err = errors.New("delete objects: empty bucket name")
		return r
	}
	if len(keys) == 0 || len(keys) > MaxKeys {
		r.Err = fmt.Errorf("delete objects in %s: %d keys, want 1 to %d", bucket, len(keys), MaxKeys)
		return r
	}
	for _, k := range keys {
		if k == "" {
			r.Err = fmt.Errorf("delete objects in %s: empty key", bucket)
			return r
		}
	}
	attempts := max(a.Retry.Attempts, 1)
	pending := keys
	for attempt := 1; ; attempt++ {
		ids := make([]types.ObjectIdentifier, len(pending))
		for i, k := range pending {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := a.api.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		}, noSDKRetries)
		r.Requests++
		if err != nil {
			if attempt < attempts && retryable(err) && retry.Sleep(ctx, a.Retry.Pause(attempt)) == nil {
				continue
			}
			err = fmt.Errorf("delete %d objects in %s (attempt %d): %w", len(pending), bucket, attempt, classify(err))
			if len(pending) == len(keys) && len(r.Failed) == 0 {
				r.Err = err
				return r
			}
			// S3 answered an earlier request of this batch: only the keys resent are in doubt.
			code := awsx.ErrorCode(err)
			if code == "" {
				code = "RequestFailed"
			}
			for _, k := range pending {
				r.Failed = append(r.Failed, wal.KeyError{Key: k, Code: code, Message: err.Error()})
			}
			return r
		}
		var again []string
		var failed []wal.KeyError
		for _, e := range out.Errors {
			ke := wal.KeyError{Key: aws.ToString(e.Key), Code: aws.ToString(e.Code), Message: aws.ToString(e.Message)}
			if retryableKeyCode(ke.Code) {
				again = append(again, ke.Key)
			}
			failed = append(failed, ke)
		}
		if len(again) == 0 || attempt >= attempts || retry.Sleep(ctx, a.Retry.Pause(attempt)) != nil {
			r.Failed = append(r.Failed, failed...)
			return r
		}
		// Keep the final errors, resend the retryable ones.
		for _, ke := range failed {
			if !retryableKeyCode(ke.Code) {
				r.Failed = append(r.Failed, ke)
			}
		}
		pending = again
	}
}

// withRetry calls fn until it succeeds, fails with an error that is not worth retrying, or the
// attempts are spent. It returns how many requests it sent.
func withRetry[T any](ctx context.Context, b retry.Backoff, fn func() (T, error)) (T, int, error) {
	return retry.Value(ctx, b, retryable, func(int) (T, error) { return fn() })
}

// throttleCodes are S3's answers to too many requests, and the server errors worth retrying.
var throttleCodes = []string{"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}

// retryable reports whether a failed request is worth sending again: throttling, 5xx, a
// connection reset. A cancelled or expired context never is.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if awsx.IsCode(err, throttleCodes...) {
		return true
	}
	return sdkretry.IsErrorRetryables(sdkretry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// retryableKeyCode reports whether a per-key error of a DeleteObjects answer is transient.
func retryableKeyCode(code string) bool {
	switch code {
	case "SlowDown", "InternalError", "ServiceUnavailable":
		return true
	}
	return false
}

// classify wraps the errors the pruner tells apart: a missing bucket and denied access.
func classify(err error) error {
	var re *awshttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case awsx.IsCode(err, "NoSuchBucket", "NotFound") || (status == http.StatusNotFound && awsx.ErrorCode(err) != "NoSuchKey"):
		return fmt.Errorf("%w: %w", wal.ErrNoSuchBucket, err)
	case awsx.IsCode(err, "AccessDenied", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken") || status == http.StatusForbidden:
		return fmt.Errorf("%w: %w", wal.ErrAccessDenied, err)
	case awsx.IsCode(err, "PermanentRedirect", "MovedPermanently", "AuthorizationHeaderMalformed") || status == http.StatusMovedPermanently:
		return fmt.Errorf("the bucket is in another region than the client's: %w", err)
	}
	return err
}
