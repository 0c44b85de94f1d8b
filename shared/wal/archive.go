package wal

import (
	"context"
	"errors"
)

// Archive is the object store a WAL archive lives in, as the pruner uses it: check a bucket,
// list it page by page (with Collect), delete keys in batches. s3archive.Archive implements it
// over S3. It lives here, beside the Lister it hands out, so that the S3 adapter depends on the
// WAL model and not on the pruner.
type Archive interface {
	// CheckBucket fails when the bucket does not exist (wrapping ErrNoSuchBucket) or cannot be
	// read (wrapping ErrAccessDenied), and reports its versioning status.
	CheckBucket(ctx context.Context, bucket string) (BucketInfo, error)
	// Lister returns a fresh lister of bucket for one run. When it also implements
	// RequestCounter, the run reports the requests it sent, retries included; otherwise it
	// reports the pages it read.
	Lister(bucket string) Lister
	// DeleteBatches deletes batches of keys (at most MaxBatch each), several batches at a
	// time, without version ids. Before it starts a batch it calls proceed, in batch order;
	// once proceed returns false, or a batch has failed as a whole, it starts no further batch
	// and lets the ones in flight finish. It returns the results of the batches it started,
	// in batch order.
	DeleteBatches(ctx context.Context, bucket string, batches [][]string, proceed func() bool) []BatchResult
}

// RequestCounter is implemented by listers that count the requests they send.
type RequestCounter interface {
	Requests() int64
}

// BucketInfo is what CheckBucket learns about a bucket.
type BucketInfo struct {
	// Versioning is the bucket's versioning status: "" when it was never enabled, "Enabled" or
	// "Suspended".
	Versioning string
}

// Versioned reports whether the bucket keeps object versions: deleting a key without a version
// id then writes a delete marker and leaves the data as a noncurrent version.
func (b BucketInfo) Versioned() bool { return b.Versioning != "" }

// KeyError is one key the store reported as not deleted.
type KeyError struct {
	Key     string `json:"key"`
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// BatchResult is the outcome of one batch of DeleteBatches.
type BatchResult struct {
	// Index is the batch's position in the batches given.
	Index int
	// Failed lists the keys of the batch the store answered with an error for; every other
	// key of the batch is deleted (when Err is nil).
	Failed []KeyError
	// Requests counts the delete requests sent for the batch, retries included.
	Requests int
	// Err is set when the batch failed as a whole after its retries: none of its keys counts
	// as deleted (the next run lists them again).
	Err error
}

// Errors an Archive wraps so that the pruner and its callers can tell them apart.
var (
	// ErrNoSuchBucket: the configured bucket does not exist.
	ErrNoSuchBucket = errors.New("bucket does not exist")
	// ErrAccessDenied: the credentials may not list, read or delete in the bucket.
	ErrAccessDenied = errors.New("access denied")
)
