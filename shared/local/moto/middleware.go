package moto

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// InjectedFaultCode is the API error code of the errors FailOperation injects.
const InjectedFaultCode = "InjectedFault"

var middlewareSeq atomic.Int64

// FailOperation returns an API option (for aws.Config.APIOptions or a client's Options.APIOptions)
// that fails the first `times` calls of the operation named `name` (e.g. "CreateSnapshots")
// before anything is sent, with an API error coded InjectedFaultCode; times <= 0 fails every
// call. The count is shared by every client built from the option.
func FailOperation(name string, times int) func(*middleware.Stack) error {
	return FailOperationWith(name, times, &smithy.GenericAPIError{
		Code:    InjectedFaultCode,
		Message: "injected failure of " + name,
		Fault:   smithy.FaultServer,
	})
}

// FailOperationWith is FailOperation returning err, e.g. a smithy.GenericAPIError with the code
// of the failure under test.
func FailOperationWith(name string, times int, err error) func(*middleware.Stack) error {
	var calls atomic.Int64
	id := fmt.Sprintf("pgfleet.FailOperation.%s.%d", name, middlewareSeq.Add(1))
	mw := middleware.InitializeMiddlewareFunc(id, func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if middleware.GetOperationName(ctx) == name {
			if n := calls.Add(1); times <= 0 || n <= int64(times) {
				return middleware.InitializeOutput{}, middleware.Metadata{}, fmt.Errorf("%s (call %d): %w", name, n, err)
			}
		}
		return next.HandleInitialize(ctx, in)
	})
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(mw, middleware.Before)
	}
}

// Call is one recorded API call: the operation name and the input the caller passed.
type Call struct {
	Operation string
	Input     any
}

// Recorder records every API call made through clients that carry its Middleware, so tests can
// count calls and inspect the exact inputs. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls []Call
	id    string
}

// Middleware is the API option that records calls (add it to APIOptions).
func (r *Recorder) Middleware(stack *middleware.Stack) error {
	r.mu.Lock()
	if r.id == "" {
		r.id = fmt.Sprintf("pgfleet.Recorder.%d", middlewareSeq.Add(1))
	}
	id := r.id
	r.mu.Unlock()
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc(id, func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		r.mu.Lock()
		r.calls = append(r.calls, Call{Operation: middleware.GetOperationName(ctx), Input: in.Parameters})
		r.mu.Unlock()
		return next.HandleInitialize(ctx, in)
	}), middleware.Before)
}

// Calls returns every recorded call in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Count is the number of recorded calls of an operation.
func (r *Recorder) Count(operation string) int {
	return len(r.Inputs(operation))
}

// Inputs returns the inputs of an operation's calls in order (e.g. *ec2.DescribeSnapshotsInput).
func (r *Recorder) Inputs(operation string) []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []any
	for _, c := range r.calls {
		if c.Operation == operation {
			out = append(out, c.Input)
		}
	}
	return out
}

// Reset forgets the recorded calls.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// StableRequestBody is an API option (moto.Config installs it on every client) that hands the
// HTTP transport a request body smithy-go cannot break under it.
//
// smithy-go wraps the body in a reader that returns io.EOF from WriteTo once closed, and it closes
// that reader as soon as client.Do returns, which is when the response headers arrive. net/http's
// writer goroutine, after writing the body, reads it once more for extra bytes: with io.Copy that
// read is WriteTo, so when the response beat the writer goroutine to that read, the EOF counts as
// a failed write, the transport closes the connection and the caller's read of the response body
// fails with "use of closed network connection" (aws/aws-sdk-go-v2 issues 1825 and 2737). moto on
// loopback answers in about a millisecond, so a writer goroutine that loses the CPU for that long
// (a loaded 2-core machine) loses the race; in AWS the SDK's retryer absorbs it, but moto clients
// make one attempt. Hiding WriteTo makes that extra read a plain Read, whose io.EOF io.Copy takes
// for the end of the body: the write succeeds whichever goroutine runs first.
func StableRequestBody(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("pgfleet.StableRequestBody",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			req, ok := in.Request.(*smithyhttp.Request)
			if !ok {
				return next.HandleDeserialize(ctx, in)
			}
			if _, writerTo := req.GetStream().(io.WriterTo); writerTo {
				r, err := req.SetStream(readOnly{req.GetStream()})
				if err != nil {
					return middleware.DeserializeOutput{}, middleware.Metadata{}, fmt.Errorf("wrap request body: %w", err)
				}
				in.Request = r
			}
			return next.HandleDeserialize(ctx, in)
		}), middleware.After)
}

// readOnly exposes only Read, so io.Copy never calls a WriteTo that misreports a closed body.
type readOnly struct{ r io.Reader }

func (o readOnly) Read(p []byte) (int, error) { return o.r.Read(p) }

// SerializeCalls returns an API option that lets one call at a time through the clients that
// carry it (the same option value shares one lock), from sending the request until the response
// is read.
//
// moto evaluates a DynamoDB condition expression and then writes the item without a lock, on
// whichever werkzeug thread serves the request, so two concurrent conditional puts on one item
// can both succeed; DynamoDB never allows that. A test of conditional writes under concurrency
// serializes its calls so moto gives the per-item atomicity DynamoDB guarantees; the callers still
// race for the order.
func SerializeCalls() func(*middleware.Stack) error {
	var mu sync.Mutex
	id := fmt.Sprintf("pgfleet.SerializeCalls.%d", middlewareSeq.Add(1))
	mw := middleware.DeserializeMiddlewareFunc(id, func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
		mu.Lock()
		defer mu.Unlock()
		return next.HandleDeserialize(ctx, in)
	})
	return func(stack *middleware.Stack) error {
		return stack.Deserialize.Add(mw, middleware.Before)
	}
}
