package moto

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
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
